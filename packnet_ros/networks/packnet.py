"""PackNet depth networks (Guizilini et al., "3D Packing for Self-Supervised Monocular
Depth Estimation", CVPR 2020, Sec. 3.2 and Table 1).

``PackNet01`` and ``PackNetSlim01`` reproduce packnet-sfm's networks of the same
names (same module tree and parameter names/shapes, so official checkpoints load
with ``strict=True``). ``width`` scales every channel count for the reduced variants
this project trains on a CPU; the result is still named after its base network plus
the width (e.g. ``PackNetSlim01-1A-w0.5``).

Convention: input (B, 3, H, W) RGB in [0, 1] (no mean/std normalisation), H and W
multiples of 32 (five 2x packing stages). Output: inverse depth in 1/m.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import GROUPS, Conv2D, InvDepth, PackLayerConv3d, ResidualBlock, UnpackLayerConv3d


def scale_channels(channels: int, width: float, num_3d_features: int = 8) -> int:
    """Scale a channel count by ``width``, rounded to a valid PackNet width.

    GroupNorm(16) needs multiples of 16, and the unpacking conv produces
    ``channels * 4 / d`` channels, which must be a multiple of 16 too; so the result is a
    multiple of lcm(16, 4d) (16 for d=4, 32 for d=8), at least one unit.
    """
    if width <= 0:
        raise ValueError(f'width must be > 0, got {width}')
    unit = math.lcm(GROUPS, 4 * num_3d_features)
    return max(unit, int(round(channels * width / unit)) * unit)


class PackNet(nn.Module):
    """PackNet encoder-decoder with 3D packing/unpacking, four inverse-depth scales.

    Args:
        channels: (ni, n1, n2, n3, n4, n5): pre-calc width and the five stage widths.
        num_3d_features: d, feature maps of the packing/unpacking 3D convolutions.
        version: "1A" (skip concatenation, used by every packnet-sfm config) or "1B"
            (skip addition).
        dropout: optional dropout on the residual shortcuts.
        min_depth: lower depth bound of the sigmoid heads, metres (0.5 in packnet-sfm).

    Forward:
        rgb (B, 3, H, W) in [0, 1], H, W multiples of 32.
        eval mode -> inverse depth (B, 1, H, W), 1/m.
        train mode -> list of 4 inverse depths [(B,1,H,W), (B,1,H/2,W/2), (B,1,H/4,W/4),
        (B,1,H/8,W/8)], finest first.

    Raises:
        ValueError: unknown version, channel counts GroupNorm cannot split, or an input
            whose size is not a multiple of 32.
    """

    num_blocks = (2, 2, 3, 3)
    pack_kernel = (5, 3, 3, 3, 3)
    unpack_kernel = 3
    iconv_kernel = 3

    def __init__(self, channels=(64, 64, 64, 128, 256, 512), num_3d_features: int = 8,
                 version: str = '1A', dropout: float | None = None, min_depth: float = 0.5):
        super().__init__()
        if not version or version[1:] not in ('A', 'B'):
            raise ValueError(f'Unknown PackNet version {version!r} (expected "1A" or "1B")')
        self.version = version
        self.channels = tuple(int(c) for c in channels)
        self.num_3d_features = d = int(num_3d_features)
        self.min_depth = min_depth
        ni, n1, n2, n3, n4, n5 = self.channels
        no = 1
        concat = version[1:] == 'A'
        if concat:
            n1o, n1i = n1, n1 + ni + no
            n2o, n2i = n2, n2 + n1 + no
            n3o, n3i = n3, n3 + n2 + no
            n4o, n4i = n4, n4 + n3
            n5o, n5i = n5, n5 + n4
        else:
            n1o, n1i = n1, n1 + no
            n2o, n2i = n2, n2 + no
            n3o, n3i = n3 // 2, n3 // 2 + no
            n4o, n4i = n4 // 2, n4 // 2
            n5o, n5i = n5 // 2, n5 // 2
        self._concat = concat

        self.pre_calc = Conv2D(3, ni, 5, 1)
        # Encoder
        pk = self.pack_kernel
        self.pack1 = PackLayerConv3d(n1, pk[0], d=d)
        self.pack2 = PackLayerConv3d(n2, pk[1], d=d)
        self.pack3 = PackLayerConv3d(n3, pk[2], d=d)
        self.pack4 = PackLayerConv3d(n4, pk[3], d=d)
        self.pack5 = PackLayerConv3d(n5, pk[4], d=d)
        nb = self.num_blocks
        self.conv1 = Conv2D(ni, n1, 7, 1)
        self.conv2 = ResidualBlock(n1, n2, nb[0], 1, dropout)
        self.conv3 = ResidualBlock(n2, n3, nb[1], 1, dropout)
        self.conv4 = ResidualBlock(n3, n4, nb[2], 1, dropout)
        self.conv5 = ResidualBlock(n4, n5, nb[3], 1, dropout)
        # Decoder
        uk, ik = self.unpack_kernel, self.iconv_kernel
        self.unpack5 = UnpackLayerConv3d(n5, n5o, uk, d=d)
        self.unpack4 = UnpackLayerConv3d(n5, n4o, uk, d=d)
        self.unpack3 = UnpackLayerConv3d(n4, n3o, uk, d=d)
        self.unpack2 = UnpackLayerConv3d(n3, n2o, uk, d=d)
        self.unpack1 = UnpackLayerConv3d(n2, n1o, uk, d=d)
        self.iconv5 = Conv2D(n5i, n5, ik, 1)
        self.iconv4 = Conv2D(n4i, n4, ik, 1)
        self.iconv3 = Conv2D(n3i, n3, ik, 1)
        self.iconv2 = Conv2D(n2i, n2, ik, 1)
        self.iconv1 = Conv2D(n1i, n1, ik, 1)
        # Inverse-depth heads (coarser ones are nearest-upsampled into the next decoder stage)
        self.unpack_disps = nn.PixelShuffle(2)  # parameter-free; kept for module-tree parity
        self.unpack_disp4 = nn.Upsample(scale_factor=2, mode='nearest')
        self.unpack_disp3 = nn.Upsample(scale_factor=2, mode='nearest')
        self.unpack_disp2 = nn.Upsample(scale_factor=2, mode='nearest')
        self.disp4_layer = InvDepth(n4, 1, min_depth)
        self.disp3_layer = InvDepth(n3, 1, min_depth)
        self.disp2_layer = InvDepth(n2, 1, min_depth)
        self.disp1_layer = InvDepth(n1, 1, min_depth)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform convolution weights and zero biases (as packnet-sfm)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _merge(self, unpacked, skip, coarse=None):
        merged = torch.cat((unpacked, skip), 1) if self._concat else unpacked + skip
        return merged if coarse is None else torch.cat((merged, coarse), 1)

    def forward(self, rgb: torch.Tensor):
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f'PackNet expects (B, 3, H, W) input, got {tuple(rgb.shape)}')
        if rgb.shape[2] % 32 or rgb.shape[3] % 32:
            raise ValueError(f'PackNet input H, W must be multiples of 32, got {tuple(rgb.shape[2:])}')
        x = self.pre_calc(rgb)
        # Encoder
        x1 = self.conv1(x)
        x1p = self.pack1(x1)
        x2p = self.pack2(self.conv2(x1p))
        x3p = self.pack3(self.conv3(x2p))
        x4p = self.pack4(self.conv4(x3p))
        x5p = self.pack5(self.conv5(x4p))
        # Decoder with skips (x4p, x3p, x2p, x1p, x)
        iconv5 = self.iconv5(self._merge(self.unpack5(x5p), x4p))
        iconv4 = self.iconv4(self._merge(self.unpack4(iconv5), x3p))
        disp4 = self.disp4_layer(iconv4)
        iconv3 = self.iconv3(self._merge(self.unpack3(iconv4), x2p, self.unpack_disp4(disp4)))
        disp3 = self.disp3_layer(iconv3)
        iconv2 = self.iconv2(self._merge(self.unpack2(iconv3), x1p, self.unpack_disp3(disp3)))
        disp2 = self.disp2_layer(iconv2)
        iconv1 = self.iconv1(self._merge(self.unpack1(iconv2), x, self.unpack_disp2(disp2)))
        disp1 = self.disp1_layer(iconv1)
        if self.training:
            return [disp1, disp2, disp3, disp4]
        return disp1


class PackNet01(PackNet):
    """PackNet01 of packnet-sfm (128.29 M parameters for version 1A, width 1).

    ni = n1 = 64, n2..n5 = 64, 128, 256, 512, d = 8. ``width`` scales all channel
    counts (rounded to multiples of 16). See :class:`PackNet` for shapes.
    """

    base_channels = (64, 64, 64, 128, 256, 512)
    base_3d_features = 8

    def __init__(self, dropout: float | None = None, version: str = '1A', width: float = 1.0,
                 num_3d_features: int | None = None, **kwargs):
        d = num_3d_features or self.base_3d_features
        channels = tuple(scale_channels(c, width, d) for c in self.base_channels)
        super().__init__(channels, d, version, dropout, kwargs.pop('min_depth', 0.5))
        self.width = width


class PackNetSlim01(PackNet01):
    """PackNetSlim01 of packnet-sfm (77.0 M parameters for version 1A, width 1).

    ni = n1 = 32, n2..n5 = 64, 128, 256, 512, d = 4. See :class:`PackNet01`.
    """

    base_channels = (32, 32, 64, 128, 256, 512)
    base_3d_features = 4
