"""Building blocks of PackNet (Guizilini et al., CVPR 2020, Sec. 3.2).

Module and parameter names follow packnet-sfm's ``layers01`` so that official
checkpoints load with ``strict=True`` (``conv_base``, ``normalize``, ``conv3d``, ...).

Convention: tensors are (B, C, H, W); all spatial paddings are zero paddings.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

GROUPS = 16
"""GroupNorm groups used by every PackNet layer: channel counts must be multiples of 16."""


def _check_groups(channels: int, where: str) -> None:
    if channels % GROUPS:
        raise ValueError(f'{where}: {channels} channels is not a multiple of {GROUPS} '
                         f'(GroupNorm({GROUPS}) needs it); choose another width')


class Conv2D(nn.Module):
    """Zero-padded convolution -> GroupNorm(16) -> ELU.

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride).
    The padding is ``kernel_size // 2`` on every side ("same" for odd kernels).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        _check_groups(out_channels, 'Conv2D')
        self.kernel_size = kernel_size
        self.conv_base = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                   padding=kernel_size // 2)
        self.normalize = nn.GroupNorm(GROUPS, out_channels)
        self.activ = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activ(self.normalize(self.conv_base(x)))


class ResidualConv(nn.Module):
    """Residual unit: two 3x3 Conv2D plus a 1x1 shortcut, then GroupNorm(16) and ELU.

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride).
    With ``dropout`` the shortcut becomes ``Sequential(conv, Dropout2d)`` (key ``conv3.0``),
    as in packnet-sfm.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 dropout: float | None = None):
        super().__init__()
        self.conv1 = Conv2D(in_channels, out_channels, 3, stride)
        self.conv2 = Conv2D(out_channels, out_channels, 3, 1)
        shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride)
        self.conv3 = nn.Sequential(shortcut, nn.Dropout2d(dropout)) if dropout else shortcut
        self.normalize = nn.GroupNorm(GROUPS, out_channels)
        self.activ = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return self.activ(self.normalize(out + self.conv3(x)))


def ResidualBlock(in_channels: int, out_channels: int, num_blocks: int, stride: int = 1,
                  dropout: float | None = None) -> nn.Sequential:
    """``num_blocks`` ResidualConv units in sequence; only the first changes channels/stride."""
    units = [ResidualConv(in_channels, out_channels, stride, dropout)]
    units += [ResidualConv(out_channels, out_channels, 1, dropout) for _ in range(1, num_blocks)]
    return nn.Sequential(*units)


class InvDepth(nn.Module):
    """Inverse-depth head: 3x3 conv -> sigmoid -> divide by ``min_depth``.

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H, W), values in
    (0, 1 / min_depth) 1/m; depth = 1 / inv_depth is therefore bounded below by
    ``min_depth`` (0.5 m) and unbounded above.
    """

    def __init__(self, in_channels: int, out_channels: int = 1, min_depth: float = 0.5):
        super().__init__()
        self.min_depth = min_depth
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.activ = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activ(self.conv1(x)) / self.min_depth


def packing(x: torch.Tensor, r: int = 2) -> torch.Tensor:
    """Space-to-depth: (B, C, H, W) -> (B, r*r*C, H/r, W/r); inverse of ``nn.PixelShuffle(r)``.

    Output channel ``c * r*r + i * r + j`` holds input pixel (r*y + i, r*x + j) of channel c,
    i.e. exactly ``F.pixel_unshuffle``.
    """
    return F.pixel_unshuffle(x, r)


class PackLayerConv3d(nn.Module):
    """Packing block (paper Fig. 3a): pack -> Conv3d(1 -> d, 3x3x3) -> Conv2D(d*r*r*C -> C, k).

    Shapes: (B, C, H, W) -> (B, C, H/r, W/r). The 3D convolution runs over the packed
    channel axis as if it were depth (zero-padded by 1 along channels, rows and columns);
    its d feature maps are then flattened to channels (feature-major) for the 2D conv.
    """

    def __init__(self, in_channels: int, kernel_size: int, r: int = 2, d: int = 8):
        super().__init__()
        self.r, self.d = r, d
        self.conv = Conv2D(in_channels * r * r * d, in_channels, kernel_size, 1)
        self.conv3d = nn.Conv3d(1, d, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(packing(x, self.r).unsqueeze(1))
        return self.conv(x.flatten(1, 2))


class UnpackLayerConv3d(nn.Module):
    """Unpacking block (paper Fig. 3b): Conv2D(Cin -> r*r*Cout/d, k) -> Conv3d(1 -> d) -> depth-to-space.

    Shapes: (B, Cin, H, W) -> (B, Cout, r*H, r*W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, r: int = 2, d: int = 8):
        super().__init__()
        if (out_channels * r * r) % d:
            raise ValueError(f'UnpackLayerConv3d: {out_channels}*{r * r} channels not divisible by d={d}')
        self.r, self.d = r, d
        self.conv = Conv2D(in_channels, out_channels * r * r // d, kernel_size, 1)
        self.conv3d = nn.Conv3d(1, d, kernel_size=3, stride=1, padding=1)
        self.unpack = nn.PixelShuffle(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(self.conv(x).unsqueeze(1))
        return self.unpack(x.flatten(1, 2))
