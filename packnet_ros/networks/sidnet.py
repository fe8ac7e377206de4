"""SIDNet: a ResNet encoder + a small U-Net decoder + the SID head (:class:`~.sid.SIDHead`).

A DORN-style depth model (Fu et al., CVPR 2018: spacing-increasing discretisation, ordinal
or classification logits) on this project's building blocks, not DORN's own scene
understanding module: the decoder upsamples the 1/32 ResNet features to 1/2 resolution
(four steps, each nearest x2 -> concat the encoder skip -> 3x3 conv + BN + ReLU), the
head's 1x1 convolutions give logits at 1/2 resolution, which are upsampled bilinearly to
the input size (as DORN's Interp layer before its decode layer) and decoded with
:func:`~.sid.sid_decode` ('soft' by default).

Convention: input (B, 3, H, W) RGB in [0, 1] (the encoder applies ImageNet mean/std),
H, W multiples of 32. **Output: depth (B, 1, H, W) in metres** in
[centre_0, centre_{K-1}] (``output_kind = 'depth'``, as BTS); ``forward_with_confidence``
also returns the per-pixel confidence 1 - H(p) / log K in [0, 1].
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .resnet import ResNetEncoder
from .sid import SID_METHODS, SID_MODES, SIDHead, sid_depth
from .sparse_branch import SparseBranch, check_sparse_options, fuse_sparse

SIDNET_DECODER_CHANNELS = (256, 128, 64, 32)
"""Decoder widths at 1/16, 1/8, 1/4, 1/2 for ``width=1.0``."""


def sidnet_channels(width: float = 1.0) -> tuple[int, ...]:
    """Decoder widths for a channel multiplier: each rounded to a multiple of 8, >= 8."""
    if not width > 0:
        raise ValueError(f'width must be > 0, got {width}')
    return tuple(max(8, int(round(c * width / 8)) * 8) for c in SIDNET_DECODER_CHANNELS)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SIDNet(nn.Module):
    """SID depth model: :class:`ResNetEncoder` + U-Net decoder + :class:`SIDHead`.

    Args:
        encoder: "resnet18", "resnet34" or "resnet50".
        num_bins: K SID intervals (71 = DORN's KITTI head).
        mode: 'ordinal' (2K logits) or 'classification' (K logits).
        alpha, beta: depth range of the discretisation, metres.
        width: decoder channel multiplier (the encoder is never scaled).
        method: decoding, 'soft' (default) or 'argmax' (see :func:`~.sid.sid_decode`).
        normalize_input: let the encoder apply ImageNet mean/std to the [0, 1] input.
        sparse_branch: add a sparse auxiliary branch
            (:class:`~packnet_ros.networks.sparse_branch.SparseBranch`, fused into the five
            encoder features) for depth completion; max depth of its input scaling = beta.
        sparse_guide: 'none' or 'ipbasic' (a second input channel, see :mod:`.sparse_branch`).

    Attributes:
        output_kind: ``'depth'`` (metres).
        sparse_branch: the branch, or None.

    Forward:
        rgb (B, 3, H, W) [, sparse (B, 1, H, W) metres, 0 = no return; networks with a sparse
        branch only; None = plain monocular] -> depth (B, 1, H, W) metres.
        ``forward_with_confidence`` -> (depth, confidence (B, 1, H, W) in [0, 1]); ``logits``
        -> full-resolution logits (all three take the optional ``sparse``).
    """

    output_kind = 'depth'

    def __init__(self, encoder: str = 'resnet18', num_bins: int = 71, mode: str = 'ordinal',
                 alpha: float = 1.0, beta: float = 80.0, width: float = 1.0, method: str = 'soft',
                 normalize_input: bool = True, sparse_branch: bool = False,
                 sparse_guide: str = 'none'):
        super().__init__()
        if mode not in SID_MODES:
            raise ValueError(f'mode must be one of {SID_MODES}, got {mode!r}')
        if method not in SID_METHODS:
            raise ValueError(f'method must be one of {SID_METHODS}, got {method!r}')
        self.method = method
        self.encoder = ResNetEncoder(encoder, normalize_input=normalize_input)
        c0, c1, c2, c3, c4 = self.encoder.channels
        d16, d8, d4, d2 = sidnet_channels(width)
        self.up4 = _conv_bn_relu(c4 + c3, d16)  # 1/16
        self.up3 = _conv_bn_relu(d16 + c2, d8)  # 1/8
        self.up2 = _conv_bn_relu(d8 + c1, d4)   # 1/4
        self.up1 = _conv_bn_relu(d4 + c0, d2)   # 1/2
        self.head = SIDHead(d2, num_bins, mode, alpha=alpha, beta=beta)
        self.max_depth = float(beta)
        check_sparse_options(sparse_branch, sparse_guide)
        self.sparse_branch = (SparseBranch(self.encoder.channels, beta, guide=sparse_guide == 'ipbasic')
                              if sparse_branch else None)

    def logits(self, rgb: torch.Tensor, sparse: torch.Tensor | None = None) -> torch.Tensor:
        """SID logits (B, 2K or K, H, W), bilinearly upsampled from 1/2 resolution."""
        f0, f1, f2, f3, f4 = fuse_sparse(self.sparse_branch, self.encoder(rgb), sparse, 'SID')
        x = f4
        for block, skip in ((self.up4, f3), (self.up3, f2), (self.up2, f1), (self.up1, f0)):
            x = block(torch.cat((F.interpolate(x, size=skip.shape[-2:], mode='nearest'), skip), 1))
        out = self.head(x)
        return F.interpolate(out, size=rgb.shape[-2:], mode='bilinear', align_corners=False)

    def forward_with_confidence(self, rgb: torch.Tensor, sparse: torch.Tensor | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(depth (B, 1, H, W) metres, confidence (B, 1, H, W) in [0, 1])."""
        depth, confidence = self.head.decode(self.logits(rgb, sparse), self.method)
        return depth.to(rgb.dtype), confidence.to(rgb.dtype)

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor | None = None) -> torch.Tensor:
        return sid_depth(self.logits(rgb, sparse), self.head.bins, self.head.mode, self.method).to(rgb.dtype)
