"""Networks (nn.Modules only): PackNet01, PackNetSlim01, PoseNet and a small registry."""
from __future__ import annotations

from torch import nn

from .packnet import PackNet, PackNet01, PackNetSlim01, scale_channels
from .posenet import PoseNet

__all__ = ['PackNet', 'PackNet01', 'PackNetSlim01', 'PoseNet', 'DEPTH_NETWORKS', 'POSE_NETWORKS',
           'build_depth_net', 'build_pose_net', 'depth_net_label', 'scale_channels']

DEPTH_NETWORKS = {'PackNet01': PackNet01, 'PackNetSlim01': PackNetSlim01}
POSE_NETWORKS = {'PoseNet': PoseNet}


def build_depth_net(name: str = 'PackNet01', version: str = '1A', width: float = 1.0,
                    dropout: float | None = None, **kwargs) -> nn.Module:
    """Build a depth network by packnet-sfm name.

    Args:
        name: "PackNet01" or "PackNetSlim01".
        version: "1A" or "1B".
        width: channel multiplier (1.0 = the published network).
        dropout: optional dropout.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in DEPTH_NETWORKS:
        raise ValueError(f'Unknown depth network {name!r}; known: {sorted(DEPTH_NETWORKS)}')
    return DEPTH_NETWORKS[name](dropout=dropout, version=version, width=width, **kwargs)


def build_pose_net(name: str = 'PoseNet', nb_ref_imgs: int = 2, **kwargs) -> nn.Module:
    """Build a pose network by packnet-sfm name ("PoseNet").

    Raises:
        ValueError: unknown name.
    """
    if name not in POSE_NETWORKS:
        raise ValueError(f'Unknown pose network {name!r}; known: {sorted(POSE_NETWORKS)}')
    return POSE_NETWORKS[name](nb_ref_imgs=nb_ref_imgs, **kwargs)


def depth_net_label(name: str, version: str = '1A', width: float = 1.0) -> str:
    """Human-readable network name, e.g. "PackNet01-1A" or "PackNetSlim01-1A-w0.5"."""
    label = f'{name}-{version}'
    return label if float(width) == 1.0 else f'{label}-w{float(width):g}'
