"""packnet_ros.inference.DepthEstimator on a real KITTI frame (untrained small PackNetSlim01).

Checked: output sizes and the intrinsics that go with them (image_proc scaling), the
metric scale factor, REP 117 range marking (+Inf beyond max_depth, -Inf below min_depth,
NaN kept) on a constructed inverse depth, the flip post-processing blend worked out by
hand, precision selection, fp32 vs bf16 agreement, input validation, and that a saved
project checkpoint predicts the same depth as the network it was saved from.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from packnet_ros.checkpoint import ModelSpec, save_checkpoint
from packnet_ros.inference import (
    DepthEstimator,
    cpu_supports_fast_bf16,
    flip_post_process,
    resolve_device,
    resolve_precision,
)
from packnet_ros.io.kitti import KittiDrive

SPEC = ModelSpec('PackNetSlim01', width=0.25)
SMALL_SHAPE = (64, 224)  # cheap network input for the tests that do not need (192, 640)
FAR = 1e6


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


@pytest.fixture(scope='module')
def frame(kitti_drive):
    d = KittiDrive(kitti_drive)
    return d.image(0), d.K.copy()


@pytest.fixture(scope='module')
def est():
    return DepthEstimator.untrained(SPEC, device='cpu', precision='fp32', max_depth=FAR)


@pytest.fixture(scope='module')
def est_small():
    return DepthEstimator.untrained(SPEC, device='cpu', precision='fp32', max_depth=FAR, input_shape=SMALL_SHAPE)


@pytest.fixture(scope='module')
def pred_small(est_small, frame):
    rgb, K = frame
    return est_small.predict(rgb, K)


@pytest.fixture(scope='module')
def pred_network(est, frame):
    rgb, K = frame
    return est.predict(rgb, K, output='network')


# ----------------------------------------------------------------------------- outputs and K
def test_network_output_size_and_scaled_K(est, frame, pred_network):
    rgb, K = frame
    K_before = K.copy()
    r = pred_network
    assert est.input_shape == (192, 640)
    assert r.depth.shape == (192, 640) and r.depth.dtype == np.float32
    assert r.rgb.shape == (192, 640, 3) and r.rgb.dtype == np.uint8
    sx, sy = 640 / 1242, 192 / 375
    expected = np.array([[721.5377 * sx, 0.0, 609.5593 * sx], [0.0, 721.5377 * sy, 172.854 * sy], [0, 0, 1]])
    np.testing.assert_allclose(r.K, expected, rtol=1e-6)
    np.testing.assert_array_equal(K, K_before)
    # PackNet's sigmoid head: depth >= 0.5 m, everything finite with max_depth = 1e6
    assert np.isfinite(r.depth).all() and float(r.depth.min()) >= 0.5 - 1e-4
    assert r.scale == 1.0
    assert set(r.timings_ms) == {'preprocess_ms', 'inference_ms', 'postprocess_ms'}
    assert all(v >= 0 for v in r.timings_ms.values())


def test_camera_output_size_unscaled_K_and_interpolation(est_small, frame, pred_small):
    rgb, K = frame
    net = pred_small
    cam = est_small.predict(rgb, K, output='camera')
    assert cam.depth.shape == (375, 1242) and net.depth.shape == SMALL_SHAPE
    np.testing.assert_array_equal(cam.K, K)
    assert cam.K is not K
    assert cam.rgb is rgb
    sx, sy = SMALL_SHAPE[1] / 1242, SMALL_SHAPE[0] / 375
    np.testing.assert_allclose(net.K[0], [K[0, 0] * sx, 0, K[0, 2] * sx], rtol=1e-12)
    np.testing.assert_allclose(net.K[1], [0, K[1, 1] * sy, K[1, 2] * sy], rtol=1e-12)
    # camera depth = 1 / (inverse depth resized bilinearly, align_corners=True)
    inv = torch.from_numpy(1.0 / net.depth)[None, None]
    expected = 1.0 / F.interpolate(inv, size=(375, 1242), mode='bilinear', align_corners=True)[0, 0].numpy()
    np.testing.assert_allclose(cam.depth, expected, rtol=1e-4)
    # corners coincide exactly with network pixels (align_corners)
    for (a, b) in (((0, 0), (0, 0)), ((-1, -1), (-1, -1)), ((0, -1), (0, -1))):
        assert cam.depth[a] == pytest.approx(float(net.depth[b]), rel=1e-5)
    assert np.isfinite(cam.depth).all()


def test_scale_multiplies_depth(est_small, frame, pred_small):
    rgb, _ = frame
    b = est_small.predict(rgb, None, scale=2.5)
    assert b.scale == 2.5 and b.K is None
    np.testing.assert_allclose(b.depth, 2.5 * pred_small.depth, rtol=1e-6)


# ----------------------------------------------------------------------------- range marking
def _est_with(max_depth, min_depth=0.0):
    """An estimator around a parameter-free stand-in network: only its post-processing is used."""
    return DepthEstimator(torch.nn.Identity(), SPEC, device='cpu', precision='fp32', max_depth=max_depth,
                          min_depth=min_depth)


def test_to_depth_rep117_marking():
    depth_m = [0.3, 0.5, 1.0, 5.0, 39.9, 40.1, 100.0]
    inv = torch.tensor([[[[1.0 / d for d in depth_m] + [float('nan'), 0.0]]]])
    out = _est_with(40.0, 0.8).to_depth(inv)
    assert out.shape == (1, 9) and out.dtype == np.float32
    row = out[0]
    assert row[0] == -np.inf and row[1] == -np.inf            # below min_depth (0.8 m)
    np.testing.assert_allclose(row[2:5], [1.0, 5.0, 39.9], rtol=1e-6)
    assert row[5] == np.inf and row[6] == np.inf              # beyond max_depth (40 m)
    assert np.isnan(row[7])                                   # invalid stays NaN
    assert row[8] == np.inf                                   # zero inverse depth: infinitely far
    # min_depth 0 disables the lower marking; scale applies before the range test
    out = _est_with(40.0, 0.0).to_depth(inv, scale=2.0)[0]
    np.testing.assert_allclose(out[:4], [0.6, 1.0, 2.0, 10.0], rtol=1e-6)
    assert out[4] == np.inf  # 2 * 39.9 > 40
    assert np.isneginf(out).sum() == 0


def test_to_depth_resizes_inverse_depth():
    inv = torch.tensor([[[[1.0, 0.5], [0.25, 0.125]]]])
    out = _est_with(100.0).to_depth(inv, output_size=(3, 3))
    # bilinear (align_corners) in inverse depth, then inverted: the centre is 1 / mean(inv)
    assert out[1, 1] == pytest.approx(1.0 / ((1.0 + 0.5 + 0.25 + 0.125) / 4), rel=1e-6)
    assert out[0, 1] == pytest.approx(1.0 / 0.75, rel=1e-6)
    assert (out[0, 0], out[2, 2]) == (pytest.approx(1.0), pytest.approx(8.0))


# ----------------------------------------------------------------------------- flip post-processing
def test_flip_post_process_constant_by_hand():
    W = 41  # xs = 0, 0.025, ..., 1: columns 0-2 are the left 5 %, 38-40 the right 5 %
    inv = torch.full((1, 1, 2, W), 1.0)
    inv_flipped = torch.full((1, 1, 2, W), 3.0)
    out = flip_post_process(inv, inv_flipped)[0, 0, 0]
    np.testing.assert_allclose(out[:3].numpy(), 3.0, atol=1e-5)    # flipped-back prediction
    assert out[3].item() == pytest.approx(0.5 * 3.0 + 0.5 * 2.0, abs=1e-5)  # half-way into the mean
    np.testing.assert_allclose(out[4:37].numpy(), 2.0, atol=1e-6)  # mean of both
    assert out[37].item() == pytest.approx(0.5 * 1.0 + 0.5 * 2.0, abs=1e-5)
    np.testing.assert_allclose(out[38:].numpy(), 1.0, atol=1e-5)   # original prediction


def test_flip_post_process_flips_back():
    torch.manual_seed(0)
    W = 41
    inv = torch.rand(2, 1, 3, W)
    inv_flipped = torch.rand(2, 1, 3, W)
    out = flip_post_process(inv, inv_flipped)
    back = inv_flipped.flip(-1)
    torch.testing.assert_close(out[..., :3], back[..., :3], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[..., 38:], inv[..., 38:], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[..., 4:37], 0.5 * (inv + back)[..., 4:37], rtol=0, atol=1e-6)
    # a mirror-symmetric pair (prediction of the flipped image = flipped prediction) is unchanged
    torch.testing.assert_close(flip_post_process(inv, inv.flip(-1)), inv, rtol=0, atol=1e-6)


def test_infer_flip_pp_uses_mirrored_prediction(est_small, frame, pred_small):
    x, _ = est_small.preprocess(frame[0])
    inv = torch.from_numpy(1.0 / pred_small.depth)[None, None]  # the plain prediction, inverted back
    inv_mirror = est_small.infer(x.flip(-1))
    torch.testing.assert_close(est_small.infer(x, flip_pp=True), flip_post_process(inv, inv_mirror),
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- precision, device
def test_resolve_precision():
    cpu = torch.device('cpu')
    assert resolve_precision('auto', cpu) == ('bf16' if cpu_supports_fast_bf16() else 'fp32')
    assert resolve_precision('auto', torch.device('cuda')) == 'fp16'
    assert resolve_precision('fp32', cpu) == 'fp32' and resolve_precision('bf16', cpu) == 'bf16'
    with pytest.raises(ValueError, match='fp16'):
        resolve_precision('fp16', cpu)
    with pytest.raises(ValueError, match='int8'):
        resolve_precision('int8', cpu)
    with pytest.raises(ValueError, match='fp16'):
        DepthEstimator.untrained(SPEC, device='cpu', precision='fp16')


def test_resolve_device():
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA'):
            resolve_device('cuda:0')


def test_bf16_matches_fp32_on_kitti(frame, pred_network):
    rgb, K = frame
    bf16 = DepthEstimator.untrained(SPEC, device='cpu', precision='bf16', max_depth=FAR)
    assert bf16.precision == 'bf16' and next(bf16.net.parameters()).dtype == torch.bfloat16
    d16 = bf16.predict(rgb, K).depth
    d32 = pred_network.depth
    assert d16.dtype == np.float32 and d16.shape == d32.shape
    rel = np.abs(d16 - d32) / d32
    assert float(rel.mean()) < 0.02, float(rel.mean())
    assert float(rel.mean()) > 0.0  # really another precision


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize('shape', [(190, 640), (192, 600), (0, 64)])
def test_input_shape_must_be_multiple_of_32(shape):
    with pytest.raises(ValueError, match='multiples of 32'):
        DepthEstimator.untrained(SPEC, device='cpu', precision='fp32', input_shape=shape)


def test_bad_predict_arguments(est_small, frame):
    rgb, K = frame
    with pytest.raises(ValueError, match='output'):
        est_small.predict(rgb, K, output='both')
    with pytest.raises(ValueError, match='RGB'):
        est_small.predict(rgb[..., 0], K)


def test_max_depth_defaults_to_spec():
    spec = ModelSpec('PackNetSlim01', width=0.25, max_depth=55.0)
    e = DepthEstimator.untrained(spec, device='cpu', precision='fp32', min_depth=1.0)
    assert (e.max_depth, e.min_depth) == (55.0, 1.0)
    assert e.label == 'PackNetSlim01-1A-w0.25'


# ----------------------------------------------------------------------------- checkpoints
def test_from_checkpoint_predicts_like_the_network(tmp_path, frame, est_small, pred_small):
    rgb, K = frame
    spec = ModelSpec('PackNetSlim01', width=0.25, image_shape=SMALL_SHAPE, max_depth=FAR)
    path = save_checkpoint(tmp_path / 'm.ckpt', est_small.source_net, spec)
    loaded = DepthEstimator.from_checkpoint(str(path), device='cpu', precision='fp32')
    assert loaded.checkpoint is not None and loaded.checkpoint.path == str(path)
    assert loaded.input_shape == SMALL_SHAPE and loaded.spec == spec
    b = loaded.predict(rgb, K)
    np.testing.assert_allclose(b.depth, pred_small.depth, rtol=1e-6)
    np.testing.assert_array_equal(b.K, pred_small.K)
    # the weights really came from the file: a network of another seed predicts otherwise
    other = DepthEstimator.untrained(spec, seed=8, device='cpu', precision='fp32')
    assert any(not torch.equal(p, q) for p, q in zip(other.net.parameters(), loaded.net.parameters()))
