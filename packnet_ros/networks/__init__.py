"""Networks (nn.Modules only): PackNet01, PackNetSlim01, PoseNet and a small registry."""
from __future__ import annotations

from torch import nn

from .bts import BTSDecoder, BTSNet, bts_num_features, local_planar_guidance
from .packnet import PackNet, PackNet01, PackNetSlim01, scale_channels
from .posenet import PoseNet
from .resnet import RESNET_SPECS, ResNetEncoder

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


# --- Depth models = encoder + decoder head (BTS; PackNet's encoder is its own packing one) ---

__all__ += ['BTSDecoder', 'BTSNet', 'ResNetEncoder', 'local_planar_guidance', 'DEPTH_HEADS', 'ENCODERS',
            'build_depth_model', 'depth_output_kind']

ENCODERS = tuple(RESNET_SPECS)
"""Encoders a decoder head other than PackNet's can use: "resnet18", "resnet34", "resnet50"."""

DEPTH_HEADS = {'PackNet01': None, 'PackNetSlim01': None, 'BTS': 'resnet50'}
"""Decoder heads and their default encoder (None: the head's own encoder, not selectable)."""


def build_depth_model(head: str = 'PackNet01', encoder: str | None = None, version: str = '1A',
                      width: float = 1.0, **kwargs) -> nn.Module:
    """Build a depth model from a head and an encoder name.

    Args:
        head: "PackNet01", "PackNetSlim01" (same as :func:`build_depth_net`) or "BTS";
            "BTS-ResNet50" style names carry the encoder after the dash.
        encoder: for BTS one of :data:`ENCODERS` (default "resnet50"); must be None for PackNet.
        version: PackNet "1A"/"1B"; unused by BTS.
        width: channel multiplier; for BTS it scales the decoder width F = 512 (rounded to a
            multiple of 32, >= 128), the ResNet encoder is never scaled.
        kwargs: passed to the model, e.g. ``max_depth=80.0`` (metres) for BTS.

    Returns:
        An nn.Module; see :func:`depth_output_kind` for what its forward returns
        (PackNet: inverse depth in 1/m; BTS: depth in metres).

    Raises:
        ValueError: unknown head or encoder, an encoder given twice or to PackNet, or
            ``dropout`` for BTS.
    """
    name, _, suffix = head.partition('-')
    if suffix:
        if encoder is not None and encoder.lower() != suffix.lower():
            raise ValueError(f'{head!r} names encoder {suffix!r} but encoder={encoder!r} was given')
        encoder = suffix
    if name not in DEPTH_HEADS:
        raise ValueError(f'Unknown depth head {name!r}; known: {sorted(DEPTH_HEADS)}')
    default = DEPTH_HEADS[name]
    if default is None:
        if encoder is not None:
            raise ValueError(f'{name} has its own packing encoder; got encoder={encoder!r}')
        return build_depth_net(name, version, width, **kwargs)
    enc = (encoder or default).lower()
    if enc not in ENCODERS:
        raise ValueError(f'Unknown encoder {encoder!r} for {name}; known: {list(ENCODERS)}')
    if kwargs.pop('dropout', None) is not None:
        raise ValueError(f'{name} has no dropout')
    return BTSNet(enc, num_features=bts_num_features(width), **kwargs)


def depth_output_kind(net: nn.Module) -> str:
    """What a depth model's forward returns: "inv_depth" (1/m, PackNet) or "depth" (m, BTS)."""
    return str(getattr(net, 'output_kind', 'inv_depth'))
