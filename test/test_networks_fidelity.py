"""Fidelity: our PackNet01 / PackNetSlim01 / PoseNet reproduce packnet-sfm's reference outputs.

Reference: ../shared/fixtures/packnet_reference (README gives the acceptance tolerances:
max abs error <= 1e-2 and mean abs error <= 2e-4 in float32 on CPU).
"""
import numpy as np
import pytest
import torch

from conftest import FIXTURES, fill_reference_params, reference_rows
from packnet_ros.networks import PackNet01, PackNetSlim01, PoseNet

MAX_ABS, MEAN_ABS = 1e-2, 2e-4


def _build(name):
    return {'PackNet01': lambda: PackNet01(version='1A'),
            'PackNetSlim01': lambda: PackNetSlim01(version='1A'),
            'PoseNet': lambda: PoseNet(nb_ref_imgs=2)}[name]()


@pytest.mark.parametrize('name', ['PackNet01', 'PackNetSlim01', 'PoseNet'])
def test_state_dict_keys_and_shapes_match_reference(name):
    net = _build(name)
    ours = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    ref = [(r['key'], r['shape']) for r in reference_rows(name)]
    assert ours == ref  # same names, shapes and order: official checkpoints load strictly


@pytest.mark.parametrize('name,count', [('PackNet01', 128_294_020), ('PackNetSlim01', 76_997_796),
                                        ('PoseNet', None)])
def test_parameter_counts(name, count):
    n = sum(p.numel() for p in _build(name).parameters())
    expected = count or sum(int(np.prod(r['shape'])) for r in reference_rows(name))
    assert n == expected
    if name == 'PoseNet':
        assert abs(n / 1e6 - 1.59) < 0.01  # FIELD_BRIEF A2


@pytest.mark.parametrize('name', ['PackNet01', 'PackNetSlim01'])
def test_depth_network_reproduces_reference(name):
    torch.manual_seed(0)
    net = _build(name)
    fill_reference_params(net, name)
    net.eval()
    rgb = torch.from_numpy(np.load(FIXTURES / 'input_target.npy'))
    with torch.inference_mode():
        inv = net(rgb)
    expected = np.load(FIXTURES / f'{name}.expected.npy')
    assert inv.shape == expected.shape == (1, 1, 192, 640)
    err = np.abs(inv.numpy() - expected)
    assert err.max() <= MAX_ABS, err.max()
    assert err.mean() <= MEAN_ABS, err.mean()


def test_posenet_reproduces_reference():
    net = _build('PoseNet')
    fill_reference_params(net, 'PoseNet')
    net.eval()
    target = torch.from_numpy(np.load(FIXTURES / 'input_target.npy'))
    context = torch.from_numpy(np.load(FIXTURES / 'input_context.npy'))
    with torch.inference_mode():
        pose = net(target, [context[0:1], context[1:2]])
    expected = np.load(FIXTURES / 'PoseNet.expected.npy')
    assert pose.shape == expected.shape == (1, 2, 6)
    err = np.abs(pose.numpy() - expected)
    assert err.max() <= MAX_ABS and err.mean() <= MEAN_ABS, (err.max(), err.mean())


def test_training_mode_returns_four_scales():
    net = PackNetSlim01(version='1A', width=0.5).train()
    out = net(torch.rand(2, 3, 64, 96))
    assert [tuple(o.shape) for o in out] == [(2, 1, 64, 96), (2, 1, 32, 48), (2, 1, 16, 24), (2, 1, 8, 12)]
    for o in out:  # sigmoid / min_depth head: inverse depth in (0, 2)
        assert float(o.detach().min()) > 0 and float(o.detach().max()) < 2.0


def test_version_b_and_bad_inputs():
    net = PackNet01(version='1B', width=0.5).eval()
    assert net(torch.rand(1, 3, 32, 64)).shape == (1, 1, 32, 64)
    with pytest.raises(ValueError, match='multiples of 32'):
        net(torch.rand(1, 3, 40, 64))
    with pytest.raises(ValueError, match='Unknown PackNet version'):
        PackNet01(version='2C')
    with pytest.raises(ValueError, match='context images'):
        PoseNet(nb_ref_imgs=2)(torch.rand(1, 3, 64, 64), [torch.rand(1, 3, 64, 64)])
