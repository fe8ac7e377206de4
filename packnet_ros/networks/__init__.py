"""Networks (nn.Modules only): PackNet01, PackNetSlim01, PoseNet and a small registry."""
from __future__ import annotations

from torch import nn

from .bts import BTSDecoder, BTSNet, bts_num_features, local_planar_guidance
from .packnet import PackNet, PackNet01, PackNetSlim01, scale_channels
from .posenet import PoseNet
from .resnet import RESNET_SPECS, ResNetEncoder
from .sidnet import SIDNet
from .sparse_branch import SparseBranch, sparse_guide_of, takes_sparse

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
    """Human-readable network name, e.g. "PackNet01-1A", "PackNetSlim01-1A-w0.5" or (heads
    with a ResNet encoder, no version) "SID-ResNet18-w0.25"."""
    label = f'{name}-{version}' if name in DEPTH_NETWORKS else name
    return label if float(width) == 1.0 else f'{label}-w{float(width):g}'


# --- Depth models = encoder + decoder head (BTS; PackNet's encoder is its own packing one) ---

__all__ += ['SparseBranch', 'sparse_guide_of', 'takes_sparse', 'BTSDecoder', 'BTSNet', 'ResNetEncoder', 'SIDNet', 'local_planar_guidance', 'DEPTH_HEADS', 'ENCODERS',
            'build_depth_model', 'canonical_depth_model_name', 'depth_output_kind']

ENCODERS = tuple(RESNET_SPECS)
"""Encoders a decoder head other than PackNet's can use: "resnet18", "resnet34", "resnet50"."""

DEPTH_HEADS = {'PackNet01': None, 'PackNetSlim01': None, 'BTS': 'resnet50', 'SID': 'resnet18'}
"""Decoder heads and their default encoder (None: the head's own encoder, not selectable)."""


def build_depth_model(head: str = 'PackNet01', encoder: str | None = None, version: str = '1A',
                      width: float = 1.0, **kwargs) -> nn.Module:
    """Build a depth model from a head and an encoder name.

    Args:
        head: "PackNet01", "PackNetSlim01" (same as :func:`build_depth_net`), "BTS" or "SID";
            "BTS-ResNet50" / "SID-ResNet18" style names carry the encoder after the dash.
        encoder: for BTS / SID one of :data:`ENCODERS` (default "resnet50" / "resnet18");
            must be None for PackNet.
        version: PackNet "1A"/"1B"; unused by BTS and SID.
        width: channel multiplier; for BTS it scales the decoder width F = 512 (rounded to a
            multiple of 32, >= 128), for SID the U-Net decoder's widths
            (:func:`~.sidnet.sidnet_channels`); the ResNet encoder is never scaled.
        kwargs: passed to the model, e.g. ``max_depth=80.0`` (metres) for BTS, or
            ``num_bins``, ``mode``, ``alpha``, ``beta``, ``method`` for SID
            (:class:`~.sidnet.SIDNet`); ``sparse_branch=True`` (BTS, SID) adds the sparse
            auxiliary branch for depth completion (:mod:`.sparse_branch`).

    Returns:
        An nn.Module; see :func:`depth_output_kind` for what its forward returns
        (PackNet: inverse depth in 1/m; BTS, SID: depth in metres).

    Raises:
        ValueError: unknown head or encoder, an encoder given twice or to PackNet, or
            ``dropout`` for BTS / SID.
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
        if kwargs.pop('sparse_branch', False) or kwargs.pop('sparse_guide', 'none') != 'none' \
                or kwargs.pop('guide_residual', 'image') != 'image':
            raise ValueError(f'{name} has no sparse branch; use a BTS or SID head (e.g. BTS-ResNet18) '
                             f'for model.sparse_branch')
        return build_depth_net(name, version, width, **kwargs)
    enc = (encoder or default).lower()
    if enc not in ENCODERS:
        raise ValueError(f'Unknown encoder {encoder!r} for {name}; known: {list(ENCODERS)}')
    if kwargs.pop('dropout', None) is not None:
        raise ValueError(f'{name} has no dropout')
    if name == 'SID':
        return SIDNet(enc, width=width, **kwargs)
    return BTSNet(enc, num_features=bts_num_features(width), **kwargs)


def canonical_depth_model_name(name: str) -> str:
    """The registry's spelling of a depth model name: "PackNet01", "PackNetSlim01",
    "BTS-ResNet50", "SID-ResNet18" (a bare "BTS" / "SID" gets its default encoder; the
    encoder part is case-insensitive).

    Raises:
        ValueError: unknown head or encoder (the message lists the known ones).
    """
    head, _, suffix = str(name).partition('-')
    if head not in DEPTH_HEADS:
        raise ValueError(f'Unknown depth model {name!r}; known: {_model_names()}')
    default = DEPTH_HEADS[head]
    if default is None:
        if suffix:
            raise ValueError(f'{head} has its own packing encoder; got {name!r}')
        return head
    enc = (suffix or default).lower()
    if enc not in ENCODERS:
        raise ValueError(f'Unknown encoder {suffix!r} for {head}; known: {list(ENCODERS)}')
    return f'{head}-ResNet{enc[len("resnet"):]}'


def _model_names() -> str:
    return ', '.join(h if e is None else f'{h}-ResNet{{{",".join(x[6:] for x in ENCODERS)}}}'
                     for h, e in DEPTH_HEADS.items())


def depth_output_kind(net: nn.Module) -> str:
    """What a depth model's forward returns: "inv_depth" (1/m, PackNet) or "depth" (m, BTS, SID).
    A model whose forward gives depth may also have ``forward_with_confidence(x) -> (depth,
    confidence)`` (SID), confidence (B, 1, H, W) in [0, 1]."""
    return str(getattr(net, 'output_kind', 'inv_depth'))
