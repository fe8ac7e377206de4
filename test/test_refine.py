"""packnet_ros.postprocess.refine (edge-aware refinement stage) and the edge metric
(packnet_ros.evaluation.edges).

Checked with numbers: a constant depth stays constant under every method; a depth step that
coincides with an image edge stays sharp under the guided filter and the fast global
smoother (error at the edge below a bound derived from the guided filter's eps) while a
plain box blur would not; noise on flat regions drops; REP 117 marking (+Inf, -Inf, NaN)
is kept and does not leak into neighbours; the stage runs inside a real DepthPipeline on a
KITTI frame and changes the depth; the edge mask finds a depth jump in sparse ground truth
and the evaluator reports edge_abs_rel in both modes; `evaluate`'s pipeline and packnet_node's
`refinement` parameter insert the stage.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from packnet_ros.evaluation.edges import depth_edge_mask, edge_abs_rel
from packnet_ros.evaluation.scoring import EvalSettings, Evaluator
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.pipeline import FrameInput, PipelineSettings, pipeline_from_weights
from packnet_ros.postprocess.refine import (
    REFINEMENTS,
    RefineSettings,
    RefineStage,
    crf_labels,
    crf_unary,
    insert_refinement,
    refine_depth,
)
from packnet_ros.weights import resolve_weights

METHODS = ('guided', 'fgs', 'crf')
H, W = 64, 96
NEAR, FAR = 5.0, 20.0          # metres, left and right of the step
DARK, BRIGHT = 40, 200         # the image edge at the same column


def _step_scene(noise: float = 0.0, seed: int = 0):
    """Depth step NEAR | FAR at column W/2 with an image edge DARK | BRIGHT at the same column;
    optional multiplicative noise on inverse depth (relative sigma ``noise``)."""
    left = np.arange(W)[None, :] < W // 2
    depth = np.where(left, NEAR, FAR) * np.ones((H, 1))
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = np.where(left, DARK, BRIGHT)[..., None]
    if noise:
        rng = np.random.default_rng(seed)
        depth = depth / (1.0 + noise * rng.standard_normal((H, W)))
    return depth.astype(np.float32), rgb


# ----------------------------------------------------------------------------- settings
def test_settings_validate_and_none_is_identity():
    with pytest.raises(ValueError, match='method'):
        RefineSettings(method='bilateral')
    with pytest.raises(ValueError, match='crf_labels'):
        RefineSettings(method='crf', crf_labels=1)
    with pytest.raises(ValueError, match='guided_eps'):
        RefineSettings(guided_eps=0.0)
    with pytest.raises(ValueError, match='domain'):
        RefineSettings(domain='depth')
    assert REFINEMENTS == ('none', 'guided', 'fgs', 'crf')
    depth, rgb = _step_scene(noise=0.05)
    np.testing.assert_array_equal(refine_depth(depth, rgb, RefineSettings(method='none')), depth)
    with pytest.raises(ValueError, match='rgb'):
        refine_depth(depth, rgb[:, :-1], RefineSettings())


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize('method', METHODS)
def test_constant_depth_stays_constant(method):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)  # texture must not leak into a flat depth
    depth = np.full((H, W), 7.5, np.float32)
    out = refine_depth(depth, rgb, RefineSettings(method=method), max_depth=80.0)
    assert out.dtype == np.float32 and out.shape == depth.shape
    np.testing.assert_allclose(out, 7.5, rtol=1e-4)


@pytest.mark.parametrize('domain', ('log', 'inverse'))
@pytest.mark.parametrize('method', ('guided', 'fgs'))
def test_step_edge_aligned_with_image_edge_stays_sharp(method, domain):
    """Bound (guided filter, He et al.): in a window straddling the edge with a fraction f of
    its pixels on one side, a = cov(I, p) / (var(I) + eps) is shrunk by eps / (var(I) + eps)
    with var(I) = f (1 - f) dI^2 >= (1/9)(8/9) dI^2 for radius 4 (dI = 160/255), i.e. by at
    most 2.5 %. The filtered quantity's error is at most that fraction of its step:
    inverse depth |1/NEAR - 1/FAR| relative to the far side's 1/FAR (bound ~0.075); log depth
    ln(FAR/NEAR), a relative depth error exp(.) - 1 (bound ~0.035). A box blur of the same
    radius errs by up to ~0.55. The fast global smoother is held to the same bound."""
    s = RefineSettings(method=method, domain=domain)
    d_i = (BRIGHT - DARK) / 255.0
    var_min = (1 / 9) * (8 / 9) * d_i ** 2
    shrink = s.guided_eps / (var_min + s.guided_eps)
    if domain == 'inverse':
        bound = shrink * (1 / NEAR - 1 / FAR) / (1 / FAR)
        assert 0.05 < bound < 0.1
    else:
        bound = math.exp(shrink * math.log(FAR / NEAR)) - 1
        assert 0.02 < bound < 0.05
    depth, rgb = _step_scene()
    out = refine_depth(depth, rgb, s, max_depth=80.0)
    band = slice(W // 2 - 3, W // 2 + 3)
    err = np.abs(out[:, band] - depth[:, band]) / depth[:, band]
    assert err.max() < bound, err.max()
    # the same step under a plain (unguided) box filter of the same radius is far off
    import cv2
    inv = (1.0 / depth).astype(np.float32)
    box = 1.0 / cv2.blur(inv, (2 * s.guided_radius + 1, 2 * s.guided_radius + 1))
    assert (np.abs(box[:, band] - depth[:, band]) / depth[:, band]).max() > 4 * bound


@pytest.mark.parametrize('method,domain', [('guided', 'log'), ('guided', 'inverse'), ('fgs', 'log'),
                                           ('fgs', 'inverse'), ('crf', 'log')])
def test_noise_on_flat_regions_drops_and_edge_survives(method, domain):
    depth, rgb = _step_scene(noise=0.05, seed=3)
    clean, _ = _step_scene()
    out = refine_depth(depth, rgb, RefineSettings(method=method, domain=domain), max_depth=80.0)
    flat = {'left': (slice(None), slice(8, W // 2 - 8)), 'right': (slice(None), slice(W // 2 + 8, W - 8))}
    for name, region in flat.items():
        before, after = float(np.std(depth[region])), float(np.std(out[region]))
        assert after < 0.6 * before, (name, before, after)  # guided/fgs ~0.1x, crf ~0.5x
    # the refined map sits on the two sides of the step, not in between (no blur across it)
    band = slice(W // 2 - 2, W // 2 + 2)
    rel = np.abs(out[:, band] - clean[:, band]) / clean[:, band]
    assert float(np.median(rel)) < 0.1


@pytest.mark.parametrize('method', METHODS)
def test_non_finite_marking_is_kept_and_does_not_leak(method):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = np.full((H, W), 10.0, np.float32)
    depth[5:15, 5:25] = np.inf        # beyond max_depth (sky)
    depth[30:34, 40:60] = np.nan      # invalid
    depth[50:52, 70:80] = -np.inf     # below min_depth
    out = refine_depth(depth, rgb, RefineSettings(method=method), max_depth=80.0, min_depth=0.5)
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(depth))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(depth))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(depth))
    finite = np.isfinite(depth)
    np.testing.assert_allclose(out[finite], 10.0, rtol=1e-3)  # neighbours of the marks unchanged


def test_refined_values_leaving_the_range_are_marked():
    depth, rgb = _step_scene(noise=0.05, seed=4)
    out = refine_depth(depth, rgb, RefineSettings(method='guided'), max_depth=FAR, min_depth=NEAR)
    finite = out[np.isfinite(out)]
    assert finite.size and finite.max() <= FAR and finite.min() >= NEAR
    assert np.isposinf(out).any() and np.isneginf(out).any()  # noise pushed some values out


def test_crf_unary_prefers_the_nearest_label():
    x = np.log(np.array([[0.05, 0.1, 0.2]]))  # log inverse depth
    valid = np.array([[True, True, False]])
    labels = crf_labels(x, valid, 11)  # 2 margin labels each side, 7 spanning the range
    assert labels[2] == pytest.approx(x[0, 0]) and labels[-3] == pytest.approx(x[0, 1])
    np.testing.assert_allclose(np.diff(labels), (x[0, 1] - x[0, 0]) / 6)
    u = crf_unary(x, valid, labels)
    assert u.shape == (11, 3) and u.flags.c_contiguous and u.dtype == np.float32
    assert int(np.argmin(u[:, 0])) == 2 and int(np.argmin(u[:, 1])) == 8
    np.testing.assert_allclose(u[:, 2], math.log(11), rtol=1e-6)  # invalid pixel: no evidence
    for decode in ('expectation', 'map'):
        depth, rgb = _step_scene()
        out = refine_depth(depth, rgb, RefineSettings(method='crf', crf_decode=decode), max_depth=80.0)
        np.testing.assert_allclose(out[:, :W // 2 - 3], NEAR, rtol=0.02)
        np.testing.assert_allclose(out[:, W // 2 + 3:], FAR, rtol=0.02)


# ----------------------------------------------------------------------------- in the pipeline
@pytest.fixture(scope='module')
def kitti_frame(kitti_drive):
    d = KittiDrive(kitti_drive)
    return FrameInput(d.image(0), d.K.copy(), d.timestamp_ns(d.frames[0]))


@pytest.mark.usefixtures('one_intra_op_thread')
@pytest.mark.parametrize('method', METHODS)
def test_stage_in_a_real_pipeline_changes_the_depth(kitti_frame, method):
    weights = resolve_weights('untrained:PackNetSlim01:0.25', with_pose=False)
    settings = PipelineSettings(cloud=True)
    plain = pipeline_from_weights(weights.checkpoint, settings, device='cpu', precision='fp32', input_shape=(64, 224))
    refined = pipeline_from_weights(weights.checkpoint, settings, device='cpu', precision='fp32',
                                    input_shape=(64, 224))
    stage = insert_refinement(refined, method)
    assert isinstance(stage, RefineStage) and stage.name == 'refine'
    assert [s.name for s in refined.stages] == ['infer', 'scale', 'depth', 'refine', 'cloud']
    assert insert_refinement(plain, 'none') is None and 'refine' not in [s.name for s in plain.stages]
    a = plain.process(kitti_frame)
    b = refined.process(kitti_frame)
    assert b.depth.shape == a.depth.shape == (64, 224) and b.depth.dtype == np.float32
    np.testing.assert_array_equal(np.isfinite(a.depth), np.isfinite(b.depth))
    fin = np.isfinite(a.depth)
    change = np.abs(b.depth[fin] - a.depth[fin]) / a.depth[fin]
    assert change.max() > 1e-3 and float(np.median(change)) < 0.2
    assert b.timings_ms['refine_ms'] > 0 and len(stage.times_ms) == 1 and stage.median_ms() > 0
    # the cloud is built from the refined depth
    assert b.cloud is not None
    np.testing.assert_allclose(b.cloud['z'][fin], b.depth[fin], rtol=1e-6)


def test_evaluate_pipeline_inserts_the_stage():
    from packnet_ros.apps.evaluate import Source, _pipeline
    from packnet_ros.weights import parse_weights
    src = Source('u', parse_weights('untrained:PackNetSlim01:0.25'))
    args = argparse.Namespace(network='PackNetSlim01', network_width=0.25, device='cpu', precision='fp32',
                              refinement='fgs')
    p = _pipeline(src, args, EvalSettings())
    assert [s.name for s in p.stages] == ['infer', 'scale', 'depth', 'refine', 'cloud']
    assert p.stages[3].settings.method == 'fgs'  # type: ignore[attr-defined]
    args.refinement = 'none'
    assert 'refine' not in [s.name for s in _pipeline(src, args, EvalSettings()).stages]


# ----------------------------------------------------------------------------- edge metric
def _sparse_gt():
    """Sparse 'LiDAR' rows every 4 pixels, 10 m left of column 40 and 30 m right of it."""
    gt = np.full((60, 80), np.nan)
    gt[::4, :40] = 10.0
    gt[::4, 40:] = 30.0
    return gt


def test_depth_edge_mask_finds_the_jump_in_sparse_ground_truth():
    gt = _sparse_gt()
    edges = depth_edge_mask(gt, radius=2, rel_jump=0.10)
    cols = np.unique(np.nonzero(edges)[1])
    np.testing.assert_array_equal(cols, [38, 39, 40, 41])  # two returns either side of the jump
    assert not edges[np.isnan(gt)].any()
    gt[::4, 40:] = 10.5  # a 5 % change is no edge
    assert not depth_edge_mask(gt).any()
    with pytest.raises(ValueError):
        depth_edge_mask(gt, radius=0)


def test_edge_abs_rel_and_evaluator_report_it():
    gt = _sparse_gt()
    edges = depth_edge_mask(gt)
    blurred = np.where(np.arange(80)[None, :] < 40, 10.0, 30.0) * np.ones((60, 1))
    blurred[:, 38:42] = 20.0  # a prediction that is wrong only at the jump
    e, n = edge_abs_rel(blurred, gt, edges, crop='')
    # edge pixels: 15 rows x 4 columns, errors 1.0 (10 m side) and 1/3 (30 m side)
    assert n == 60 and e == pytest.approx((1.0 + 1 / 3) / 2)
    ev = Evaluator(EvalSettings(crop=''))
    ev.add(1, blurred.astype(np.float32), gt)
    r = ev.result()
    assert r.metric['edge_abs_rel'] == pytest.approx(e) and r.metric['n_edge_pixels'] == 60
    assert 'edge_abs_rel' in r.median and r.per_frame[0]['median_edge_abs_rel'] > 0
    assert r.metric['abs_rel'] < r.metric['edge_abs_rel']  # the full frame hides the edge error
    doc = r.to_json()
    assert doc['edge_abs_rel'] == pytest.approx(e) and 'edge_abs_rel' in doc['median_scaled']


# ----------------------------------------------------------------------------- the node
def test_node_parameter_inserts_the_stage():
    import rclpy
    from rclpy.parameter import Parameter

    from packnet_ros.ros.packnet_node import PackNetNode, ParameterError
    small = [Parameter('checkpoint', value='untrained:PackNetSlim01:0.25'), Parameter('input_height', value=64),
             Parameter('input_width', value=224), Parameter('device', value='cpu'),
             Parameter('precision', value='fp32')]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        for value, expected in (('none', None), ('fgs', 'fgs')):
            node = PackNetNode(context=ctx, parameter_overrides=small + [Parameter('refinement', value=value)])
            try:
                stages = {s.name: s for s in node.pipeline.stages}
                assert list(stages)[:4] == ['infer', 'scale', 'depth', 'refine' if expected else 'cloud']
                if expected:
                    assert stages['refine'].settings.method == expected  # type: ignore[attr-defined]
            finally:
                node.destroy_node()
        with pytest.raises(ParameterError, match='refinement'):
            PackNetNode(context=ctx, parameter_overrides=small + [Parameter('refinement', value='bilateral')])
    finally:
        rclpy.shutdown(context=ctx)
