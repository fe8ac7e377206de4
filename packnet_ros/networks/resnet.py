"""ResNet-18/34/50 encoders returning multi-scale features (He et al., "Deep Residual
Learning for Image Recognition", CVPR 2016, arXiv 1512.03385, Table 1).

Written from the paper's Table 1 (no torchvision here; ``timm`` needs torchvision and does
not import without it). Module names follow the usual ImageNet layout (``conv1``, ``bn1``,
``layer1`` .. ``layer4``, ``downsample.0/1``) so that an ImageNet state dict without its
``fc.*`` keys could be loaded later; this project has no pretrained weights (no downloads),
so every encoder starts from Kaiming-normal init (fan_out, ReLU gain) with BN weight 1 and
bias 0.

Stage layout (blocks per stage): ResNet-18 [2, 2, 2, 2] BasicBlock, ResNet-34 [3, 4, 6, 3]
BasicBlock, ResNet-50 [3, 4, 6, 3] Bottleneck (expansion 4, stride on the 3x3 conv).
Parameter counts (no fc layer; with the 1000-class fc add ``512*1000 + 1000`` or
``2048*1000 + 1000``): ResNet-18 11,176,512 (11,689,512 with fc), ResNet-34 21,284,672
(21,797,672), ResNet-50 23,508,032 (25,557,032).

Convention: input (B, 3, H, W) RGB in [0, 1], H and W multiples of 32. With
``normalize_input=True`` (default) the encoder applies the ImageNet mean/std itself, so
callers never normalise (project convention) and ImageNet weights would see their usual input.
"""
from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs with an identity (or 1x1 conv-BN) shortcut, then ReLU.

    Shapes: (B, in_channels, H, W) -> (B, channels, H / stride, W / stride).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand (x4), each with BN, plus shortcut.

    Shapes: (B, in_channels, H, W) -> (B, 4 * channels, H / stride, W / stride).
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_SPECS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    'resnet18': (BasicBlock, (2, 2, 2, 2)),
    'resnet34': (BasicBlock, (3, 4, 6, 3)),
    'resnet50': (Bottleneck, (3, 4, 6, 3)),
}
"""Block type and blocks per stage, from He et al. 2016, Table 1."""


class ResNetEncoder(nn.Module):
    """ResNet trunk without avgpool/fc, returning five feature maps (finest first).

    Args:
        name: "resnet18", "resnet34" or "resnet50".
        normalize_input: apply ImageNet mean/std to the [0, 1] input inside the encoder.

    Attributes:
        channels: channels of the five features, e.g. (64, 64, 128, 256, 512) for
            ResNet-18/34 and (64, 256, 512, 1024, 2048) for ResNet-50 (as BTS's
            ``feat_out_channels``).
        strides: (2, 4, 8, 16, 32), each feature's downsampling factor.

    Forward:
        rgb (B, 3, H, W) in [0, 1], H, W multiples of 32 ->
        [relu(bn1(conv1)) (B, c0, H/2, W/2), layer1 (B, c1, H/4, W/4),
         layer2 (B, c2, H/8, W/8), layer3 (B, c3, H/16, W/16), layer4 (B, c4, H/32, W/32)].

    Raises:
        ValueError: unknown name, or an input that is not (B, 3, H, W) with H, W multiples of 32.
    """

    strides = (2, 4, 8, 16, 32)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, name: str = 'resnet50', normalize_input: bool = True):
        super().__init__()
        key = name.lower().replace('-', '')
        if key not in RESNET_SPECS:
            raise ValueError(f'Unknown ResNet {name!r}; known: {sorted(RESNET_SPECS)}')
        block, layers = RESNET_SPECS[key]
        self.name = key
        self.normalize_input = normalize_input
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        e = block.expansion
        self.channels: tuple[int, ...] = (64, 64 * e, 128 * e, 256 * e, 512 * e)
        self.init_weights()

    def _make_layer(self, block, channels: int, num_blocks: int, stride: int) -> nn.Sequential:
        out_channels = channels * block.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(_conv1x1(self._in_channels, out_channels, stride),
                                       nn.BatchNorm2d(out_channels))
        units = [block(self._in_channels, channels, stride, downsample)]
        self._in_channels = out_channels
        units += [block(out_channels, channels) for _ in range(1, num_blocks)]
        return nn.Sequential(*units)

    def init_weights(self) -> None:
        """Kaiming-normal convs (fan_out, ReLU), BN weight 1 / bias 0; no pretrained weights."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f'ResNetEncoder expects (B, 3, H, W) input, got {tuple(rgb.shape)}')
        if rgb.shape[2] % 32 or rgb.shape[3] % 32:
            raise ValueError(f'ResNetEncoder input H, W must be multiples of 32, got {tuple(rgb.shape[2:])}')
        x = (rgb - self.mean) / self.std if self.normalize_input else rgb
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


def resnet_encoder(name: str = 'resnet50', **kwargs) -> ResNetEncoder:
    """Build a :class:`ResNetEncoder` by name ("resnet18", "resnet34", "resnet50")."""
    return ResNetEncoder(name, **kwargs)
