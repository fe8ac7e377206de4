"""CPU/GPU fast path: the folded packing layers compute the same function (issue 5).

Equivalence is checked against the fp32 module on the packnet-sfm fidelity fixture: exact
in float64 (rounding only), within the fixture's tolerance in float32, and within 1 % mean
relative depth in bf16 (the precision the node uses on CPUs with native bf16) for
networks with packnet-sfm's initialisation and for the shipped model.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FIXTURES, fill_reference_params
from packnet_ros.checkpoint import SELFSUP_CHECKPOINT, ModelSpec, load_checkpoint
from packnet_ros.inference import DepthEstimator, cpu_supports_fast_bf16
from packnet_ros.networks import PackNet01, PackNetSlim01
from packnet_ros.networks.fast import FoldedPackLayer, fold_pack_layers, prepare_for_inference
from packnet_ros.networks.flops import conv_flops
from packnet_ros.networks.layers import PackLayerConv3d


@pytest.fixture(scope='module')
def rgb():
    return torch.from_numpy(np.load(FIXTURES / 'input_target.npy'))


@pytest.mark.parametrize('min_area', [0, 10 ** 9])  # folded + border strips / original path
@pytest.mark.parametrize('C,k,d,H,W', [(16, 3, 4, 12, 20), (16, 5, 8, 16, 24), (32, 3, 8, 6, 40), (16, 5, 4, 10, 10)])
def test_folded_pack_layer_is_exact_in_float64(C, k, d, H, W, min_area):
    torch.manual_seed(C + k + d)
    layer = PackLayerConv3d(C, k, d=d)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.3)  # non-trivial biases exercise the border handling
    layer = layer.double().eval()
    folded = FoldedPackLayer(layer, min_area)
    x = torch.randn(2, C, H, W, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), layer(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('name,cls', [('PackNet01', PackNet01), ('PackNetSlim01', PackNetSlim01)])
def test_folded_network_reproduces_the_fixture(name, cls, rgb):
    net = cls(version='1A')
    fill_reference_params(net, name)
    net.eval()
    expected = np.load(FIXTURES / f'{name}.expected.npy')
    with torch.inference_mode():
        fast32 = prepare_for_inference(net, torch.device('cpu'), torch.float32, 'fast')(rgb).numpy()
    err = np.abs(fast32 - expected)
    assert err.max() <= 1e-2 and err.mean() <= 2e-4, (err.max(), err.mean())  # fixture README tolerances
    assert sum(isinstance(m, FoldedPackLayer) for m in fold_pack_layers(net).modules()) == 5


def _mean_rel_depth(inv, inv_ref):
    depth, ref = 1.0 / inv.float(), 1.0 / inv_ref
    return float(((depth - ref).abs() / ref).mean())


def _bf16_fast(net, rgb):
    fast = prepare_for_inference(net, torch.device('cpu'), torch.bfloat16, 'fast')
    return fast(rgb.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))


@pytest.mark.skipif(not cpu_supports_fast_bf16(), reason='no native bf16 on this CPU')
def test_bf16_fast_path_depth_within_one_percent(rgb):
    """PackNetSlim01 (the shipped `selfsup` network) with packnet-sfm's initialisation, on the
    fixture's real KITTI frame: 0.49 % on an Intel Xeon with AMX, 0.5-0.6 % on AMD EPYC
    (AVX-512 bf16). PackNet01's raw bf16 fast path is NOT within 1 % on every CPU (2.5-2.6 % with
    oneDNN's AMX kernels, issue 14; 0.9 % on AMD): for it the guarantee is what ``precision:
    auto`` publishes, next test.

    Not with the fixture's parameters: they make an ill-conditioned network (1e-3 of input
    noise moves its depth by ~3 % on average, rounding only the input to bf16 by 0.6-2 %),
    which measures those parameters, not the fast path."""
    torch.manual_seed(0)
    net = PackNetSlim01(version='1A').eval()
    with torch.inference_mode():
        rel = _mean_rel_depth(_bf16_fast(net, rgb), net(rgb))
    assert rel <= 0.01, rel


@pytest.mark.skipif(not cpu_supports_fast_bf16(), reason='no native bf16 on this CPU')
@pytest.mark.parametrize('cls', [PackNet01, PackNetSlim01])
def test_auto_precision_publishes_within_one_percent(cls, rgb):
    """``precision: auto`` keeps bf16 only where its start-up check on a real street image finds
    the chosen path within 1 % of fp32; on the fixture's KITTI frame what it runs is then within
    1 % (plus margin for the other frame: limit 1.5 %), on any CPU."""
    torch.manual_seed(0)
    net = cls(version='1A').eval()
    est = DepthEstimator(net, ModelSpec(image_shape=(192, 640)), device='cpu', precision='auto', backend='fast')
    assert est.precision in ('bf16', 'fp32') and 'auto = ' in est.precision_reason
    assert est.backend_timings_ms['bf16_rel_diff'] >= 0.0
    with torch.inference_mode():
        rel = _mean_rel_depth(est.infer(rgb), net(rgb))
    assert rel <= (0.015 if est.precision == 'bf16' else 1e-4), (est.precision_reason, rel)


@pytest.mark.skipif(not cpu_supports_fast_bf16(), reason='no native bf16 on this CPU')
def test_auto_precision_falls_back_to_fp32_when_bf16_is_off(rgb, monkeypatch):
    """A CPU whose bf16 kernels are off by more than the limit gets fp32 (simulated by a zero
    limit: any rounding is then too much)."""
    import packnet_ros.inference as inference
    monkeypatch.setattr(inference, 'AUTO_MAX_REL_DIFF', 0.0)
    torch.manual_seed(0)
    net = PackNetSlim01(version='1A').eval()
    est = DepthEstimator(net, ModelSpec(image_shape=(192, 640)), device='cpu', precision='auto', backend='fast')
    assert est.precision == 'fp32' and est.dtype == torch.float32, est.precision_reason
    assert 'off fp32' in est.precision_reason
    with torch.inference_mode():
        assert _mean_rel_depth(est.infer(rgb), net(rgb)) < 1e-4
    explicit = DepthEstimator(net, ModelSpec(image_shape=(192, 640)), device='cpu', precision='bf16', backend='fast')
    assert explicit.precision == 'bf16'  # an explicit request is honoured


def test_fold_executes_fewer_operations():
    net = PackNet01(version='1A').eval()
    x = torch.rand(1, 3, 192, 640)
    nominal, folded = conv_flops(net, x), conv_flops(fold_pack_layers(net), x)
    always = conv_flops(fold_pack_layers(net, min_area=0), x)
    assert nominal == pytest.approx(410.3e9, rel=0.01)  # the paper's ~410 GFLOP per 640x192 frame
    assert always < 0.6 * nominal
    assert always < folded < nominal  # pack4/pack5 (12x40, 6x20 packed maps) keep the original layer


@pytest.mark.skipif(not cpu_supports_fast_bf16(), reason='no native bf16 on this CPU')
@pytest.mark.skipif(not SELFSUP_CHECKPOINT.is_file(), reason='no shipped PackNet checkpoint in this checkout')
def test_bf16_fast_path_on_the_shipped_packnet(rgb):
    net = load_checkpoint(SELFSUP_CHECKPOINT, with_pose=False).depth_net.float().eval()
    x = torch.nn.functional.interpolate(rgb, size=(192, 640), mode='bilinear', align_corners=False)
    with torch.inference_mode():
        rel = _mean_rel_depth(_bf16_fast(net, x), net(x))
    assert rel <= 0.01, rel
