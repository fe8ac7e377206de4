"""ResNet-18/34/50 encoders (packnet_ros.networks.resnet): exact parameter counts, feature
shapes/strides/channels, module names, init and input checks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from packnet_ros.networks.resnet import ResNetEncoder

# Exact counts without the 1000-class fc layer; with it they are the well-known ImageNet
# totals 11,689,512 / 21,797,672 / 25,557,032 (11.69 M / 21.80 M / 25.56 M).
PARAMS = {'resnet18': 11_176_512, 'resnet34': 21_284_672, 'resnet50': 23_508_032}
PARAMS_WITH_FC = {'resnet18': 11_689_512, 'resnet34': 21_797_672, 'resnet50': 25_557_032}
CHANNELS = {'resnet18': (64, 64, 128, 256, 512), 'resnet34': (64, 64, 128, 256, 512),
            'resnet50': (64, 256, 512, 1024, 2048)}


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('name', sorted(PARAMS))
def test_parameter_counts_match_the_imagenet_resnets(name):
    net = ResNetEncoder(name)
    assert _count(net) == PARAMS[name]
    fc = net.channels[-1] * 1000 + 1000  # the ImageNet classifier this encoder leaves out
    assert _count(net) + fc == PARAMS_WITH_FC[name]
    assert net.channels == CHANNELS[name]


@pytest.mark.parametrize('name', ['resnet18', 'resnet50'])
def test_features_have_strides_2_to_32_and_the_documented_channels(name):
    torch.manual_seed(0)
    net = ResNetEncoder(name).eval()
    with torch.no_grad():
        feats = net(torch.rand(1, 3, 64, 96))
    assert net.strides == (2, 4, 8, 16, 32)
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 96 // s)
                                               for c, s in zip(net.channels, net.strides)]
    assert all(torch.isfinite(f).all() and (f >= 0).all() for f in feats)  # all after a ReLU


def test_module_names_follow_the_imagenet_layout_and_normalisation_is_not_state():
    keys = ResNetEncoder('resnet18').state_dict().keys()
    for k in ('conv1.weight', 'bn1.running_mean', 'layer1.0.conv2.weight', 'layer2.0.downsample.0.weight',
              'layer4.1.bn2.bias'):
        assert k in keys
    assert not any(k.startswith(('fc.', 'mean', 'std')) for k in keys)
    assert 'layer1.0.conv3.weight' in ResNetEncoder('resnet50').state_dict()


def test_kaiming_init_and_unit_batchnorm():
    torch.manual_seed(0)
    net = ResNetEncoder('resnet18')
    w = net.layer3[0].conv1.weight  # 3x3, 128 -> 256: fan_out = 256 * 9
    assert abs(w.std().item() - (2.0 / (256 * 9)) ** 0.5) < 0.05 * (2.0 / (256 * 9)) ** 0.5
    assert torch.equal(net.bn1.weight, torch.ones(64)) and torch.equal(net.bn1.bias, torch.zeros(64))


def test_normalisation_is_imagenet_mean_std():
    a, b = ResNetEncoder('resnet18', normalize_input=True).eval(), ResNetEncoder('resnet18', normalize_input=False)
    b.load_state_dict(a.state_dict())
    b.eval()
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(a(x)[0], b((x - mean) / std)[0])


def test_bad_inputs_and_names_raise():
    net = ResNetEncoder('resnet18')
    with pytest.raises(ValueError, match='multiples of 32'):
        net(torch.rand(1, 3, 60, 96))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        net(torch.rand(1, 1, 64, 96))
    with pytest.raises(ValueError, match='Unknown ResNet'):
        ResNetEncoder('resnet101')
