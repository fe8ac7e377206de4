"""Depth metrics (packnet_ros.evaluation.metrics) against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from packnet_ros.evaluation import (
    GARG_CROP,
    METRIC_NAMES,
    FrameMetrics,
    NoValidPixels,
    aggregate,
    compute_depth_metrics,
    default_bin_edges,
    format_bins_table,
    format_table,
    garg_crop_mask,
    valid_mask,
)

NAN, INF = float('nan'), float('inf')
LN2 = math.log(2.0)


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def a(rows):
    return np.array(rows, dtype=np.float64)


#######################################################################################
# Hand-computed metrics

def test_hand_computed_example():
    # gt = [[2, 4], [8, NaN]], pred = [[1, 4], [16, 5]]; the NaN GT pixel is dropped.
    # used: (gt, pred) = (2, 1), (4, 4), (8, 16)
    # abs_rel = mean(|2-1|/2, 0/4, |8-16|/8) = mean(0.5, 0, 1) = 0.5
    # sq_rel  = mean(1/2, 0/4, 64/8) = (0.5 + 0 + 8) / 3 = 8.5 / 3
    # rmse    = sqrt((1 + 0 + 64) / 3) = sqrt(65 / 3)
    # mae     = (1 + 0 + 8) / 3 = 3
    # rmse_log = sqrt(((ln2 - ln1)^2 + 0 + (ln8 - ln16)^2) / 3) = ln2 * sqrt(2 / 3)
    # thresh = max(gt/pred, pred/gt) = (2, 1, 2): only the middle one is < 1.25, 1.5625, 1.953
    # scale_ratio = median(2, 4, 8) / median(1, 4, 16) = 4 / 4 = 1
    m = compute_depth_metrics(a([[1, 4], [16, 5]]), a([[2, 4], [8, NAN]]), crop=None)
    assert isinstance(m, FrameMetrics)
    assert m.abs_rel == approx(0.5)
    assert m.sq_rel == approx(8.5 / 3)
    assert m.rmse == approx(math.sqrt(65 / 3))
    assert m.mae == approx(3.0)
    assert m.rmse_log == approx(LN2 * math.sqrt(2 / 3))
    assert m.a1 == approx(1 / 3)
    assert m.a2 == approx(1 / 3)
    assert m.a3 == approx(1 / 3)
    assert m.scale_ratio == approx(1.0)
    assert m.n_pixels == 3
    assert m.n_pred_invalid == 0


def test_zero_gt_is_invalid_like_nan():
    # KITTI marks missing GT with 0; same frame as above with 0 instead of NaN.
    m_nan = compute_depth_metrics(a([[1, 4], [16, 5]]), a([[2, 4], [8, NAN]]), crop=None)
    m_zero = compute_depth_metrics(a([[1, 4], [16, 5]]), a([[2, 4], [8, 0]]), crop=None)
    m_inf = compute_depth_metrics(a([[1, 4], [16, 5]]), a([[2, 4], [8, INF]]), crop=None)
    np.testing.assert_equal(m_zero.as_dict(), m_nan.as_dict())  # NaN == NaN here
    assert m_inf.abs_rel == m_nan.abs_rel and m_inf.n_pixels == 3


def test_delta_thresholds_separate():
    # gt = 10 everywhere, pred = 11, 15, 19, 25 -> thresh = 1.1, 1.5, 1.9, 2.5
    # 1.25: only 1.1 -> a1 = 1/4; 1.5625: 1.1, 1.5 -> a2 = 2/4; 1.953125: 1.1, 1.5, 1.9 -> a3 = 3/4
    # abs_rel = (1 + 5 + 9 + 15) / 10 / 4 = 0.75; sq_rel = (1 + 25 + 81 + 225) / 10 / 4 = 8.3
    # rmse = sqrt(332 / 4) = sqrt(83); rmse_log = sqrt(mean(ln(pred/10)^2))
    gt = a([[10, 10, 10, 10]])
    pred = a([[11, 15, 19, 25]])
    m = compute_depth_metrics(pred, gt, crop=None)
    assert (m.a1, m.a2, m.a3) == (approx(0.25), approx(0.5), approx(0.75))
    assert m.abs_rel == approx(0.75)
    assert m.sq_rel == approx(8.3)
    assert m.rmse == approx(math.sqrt(83))
    logs = [math.log(p / 10) ** 2 for p in (11, 15, 19, 25)]
    assert m.rmse_log == approx(math.sqrt(sum(logs) / 4))
    # scale_ratio = median(gt) / median(pred) = 10 / ((15 + 19) / 2) = 10 / 17
    assert m.scale_ratio == approx(10 / 17)


def test_inputs_not_modified():
    pred = a([[INF, -INF], [NAN, 100]])
    gt = a([[10, 10], [10, 10]])
    before = pred.copy()
    compute_depth_metrics(pred, gt, crop=None, median_scaling=True)
    np.testing.assert_array_equal(pred, before)


#######################################################################################
# Crop and valid mask

def test_garg_crop_kitti_size():
    # int(0.40810811 * 375) = int(153.04) = 153, int(0.99189189 * 375) = int(371.96) = 371
    # int(0.03594771 * 1242) = int(44.65) = 44, int(0.96405229 * 1242) = int(1197.35) = 1197
    mask = garg_crop_mask(375, 1242)
    assert mask.shape == (375, 1242) and mask.dtype == bool
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    assert (rows[0], rows[-1]) == (153, 370)
    assert (cols[0], cols[-1]) == (44, 1196)
    assert mask.sum() == (371 - 153) * (1197 - 44)
    assert mask[153:371, 44:1197].all()
    assert GARG_CROP == (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def test_crop_changes_result():
    # (20, 30): rows int(8.16)=8 .. int(19.84)=19, cols int(1.08)=1 .. int(28.92)=28
    # -> 11 * 27 = 297 pixels inside. gt = 10 everywhere; pred = 10 inside, 20 outside.
    gt = np.full((20, 30), 10.0)
    pred = np.full((20, 30), 20.0)
    pred[8:19, 1:28] = 10.0
    cropped = compute_depth_metrics(pred, gt, crop='garg')
    assert cropped.n_pixels == 297
    assert cropped.abs_rel == approx(0.0) and cropped.a1 == approx(1.0)
    full = compute_depth_metrics(pred, gt, crop=None)
    # 303 of 600 pixels have |10 - 20| / 10 = 1
    assert full.n_pixels == 600
    assert full.abs_rel == approx(303 / 600)
    assert full.a1 == approx(297 / 600)
    np.testing.assert_equal(compute_depth_metrics(pred, gt, crop='').as_dict(), full.as_dict())


def test_valid_mask():
    gt = a([[NAN, 0, -1, 0.5], [1, 5, 80, INF]])
    # (0, 80): 0.5, 1, 5 valid; 80 excluded (strict), NaN/0/-1/Inf invalid
    np.testing.assert_array_equal(valid_mask(gt, crop=None),
                                  [[False, False, False, True], [True, True, False, False]])
    # (1, 80): 1 excluded too (strict)
    np.testing.assert_array_equal(valid_mask(gt, min_depth=1.0, crop=''),
                                  [[False, False, False, False], [False, True, False, False]])
    with pytest.raises(ValueError, match='crop'):
        valid_mask(gt, crop='eigen')
    with pytest.raises(ValueError):
        valid_mask(gt, min_depth=80.0, max_depth=80.0, crop=None)


#######################################################################################
# Median scaling and clamping

def test_median_scaling_makes_scaled_prediction_perfect():
    rng = np.random.default_rng(0)
    gt = rng.uniform(2.0, 70.0, size=(30, 40))
    gt[rng.random(gt.shape) < 0.3] = 0.0
    factor = 3.7
    pred = gt / factor
    pred[gt == 0] = rng.uniform(1, 5, size=int((gt == 0).sum()))  # ignored (GT invalid)
    m = compute_depth_metrics(pred, gt, crop=None, median_scaling=True)
    assert m.scale_ratio == pytest.approx(factor, rel=1e-12)
    assert m.abs_rel == pytest.approx(0.0, abs=1e-12)
    assert m.rmse == pytest.approx(0.0, abs=1e-10)
    assert m.rmse_log == pytest.approx(0.0, abs=1e-12)
    assert (m.a1, m.a2, m.a3) == (1.0, 1.0, 1.0)
    # without scaling the ratio is still reported and the error is 1 - 1/3.7 everywhere
    raw = compute_depth_metrics(pred, gt, crop=None)
    assert raw.scale_ratio == pytest.approx(factor, rel=1e-12)
    assert raw.abs_rel == pytest.approx(1 - 1 / factor, rel=1e-12)
    assert raw.a1 == 0.0


def test_scale_ratio_even_count_uses_mean_of_middle_values():
    # median(1, 2, 3, 4) = 2.5, median(1, 1, 2, 2) = 1.5 -> ratio 5/3
    m = compute_depth_metrics(a([[1, 1, 2, 2]]), a([[1, 2, 3, 4]]), crop=None)
    assert m.scale_ratio == approx(2.5 / 1.5)


def test_prediction_clamped_to_range():
    # gt = 50, pred = 100 -> clamped to 80: abs_rel = 30/50 = 0.6, rmse = 30
    m = compute_depth_metrics(a([[100.0]]), a([[50.0]]), crop=None)
    assert m.abs_rel == approx(0.6) and m.rmse == approx(30.0)
    # pred = 0 -> clamped to 1e-3 (not min_depth = 0): finite log error
    m = compute_depth_metrics(a([[0.0]]), a([[2.0]]), crop=None)
    assert m.rmse_log == approx(abs(math.log(2.0) - math.log(1e-3)))
    assert m.abs_rel == approx((2.0 - 1e-3) / 2.0)
    # min_depth = 1: pred 0.5 -> 1; abs_rel = |2 - 1| / 2
    m = compute_depth_metrics(a([[0.5]]), a([[2.0]]), min_depth=1.0, crop=None)
    assert m.abs_rel == approx(0.5)


def test_median_scaling_then_clamp():
    # gt = (10, 10, 10, 70), pred = (5, 5, 5, 70): ratio = 10 / 5 = 2 -> pred (10, 10, 10, 140)
    # then clamped to 80: abs_rel = (0 + 0 + 0 + 10/70) / 4
    m = compute_depth_metrics(a([[5, 5, 5, 70]]), a([[10, 10, 10, 70]]), crop=None,
                              median_scaling=True)
    assert m.scale_ratio == approx(2.0)
    assert m.abs_rel == approx(10 / 70 / 4)


def test_median_scaling_needs_positive_median():
    gt, pred = a([[10, 10, 10]]), a([[-1, 0, 5]])
    m = compute_depth_metrics(pred, gt, crop=None)  # fine without scaling
    assert math.isnan(m.scale_ratio)
    with pytest.raises(ValueError, match='median'):
        compute_depth_metrics(pred, gt, crop=None, median_scaling=True)


#######################################################################################
# Non-finite predictions (REP 117)

def test_pos_inf_prediction_is_max_depth():
    # gt = (40, 10), pred = (+Inf, 10) -> +Inf counts as 80: abs_rel = (40/40 + 0) / 2 = 0.5
    m = compute_depth_metrics(a([[INF, 10]]), a([[40, 10]]), crop=None)
    assert m.abs_rel == approx(0.5)
    assert m.rmse == approx(math.sqrt(40 ** 2 / 2))
    assert m.n_pixels == 2 and m.n_pred_invalid == 0
    m = compute_depth_metrics(a([[INF, 10]]), a([[40, 10]]), max_depth=50.0, crop=None)
    assert m.abs_rel == approx(10 / 40 / 2)


def test_neg_inf_prediction_is_lower_clamp():
    # min_depth = 1: gt = (2, 10), pred = (-Inf, 10) -> -Inf counts as 1: abs_rel = (0.5 + 0) / 2
    m = compute_depth_metrics(a([[-INF, 10]]), a([[2, 10]]), min_depth=1.0, crop=None)
    assert m.abs_rel == approx(0.25)
    # min_depth = 0: -Inf counts as 1e-3
    m = compute_depth_metrics(a([[-INF, 10]]), a([[2, 10]]), crop=None)
    assert m.abs_rel == approx((2 - 1e-3) / 2 / 2)


def test_inf_keeps_bound_under_median_scaling():
    # gt = (10, 10, 10, 40), pred = (20, 20, 20, +Inf): median pred = median(20, 20, 20, 80) = 20,
    # ratio = 10 / 20 = 0.5 -> (10, 10, 10) and the +Inf pixel stays 80 (not 40):
    # abs_rel = (0 + 0 + 0 + |40 - 80| / 40) / 4 = 0.25
    m = compute_depth_metrics(a([[20, 20, 20, INF]]), a([[10, 10, 10, 40]]), crop=None,
                              median_scaling=True)
    assert m.scale_ratio == approx(0.5)
    assert m.abs_rel == approx(0.25)


def test_nan_prediction_excluded_and_counted():
    # gt = (2, 4, 8, 16, NaN), pred = (2, NaN, 8, 8, NaN): the NaN pred on valid GT (4) is
    # excluded and counted; the NaN pred on NaN GT is not counted.
    # used: (2, 2), (8, 8), (16, 8): abs_rel = (0 + 0 + 0.5) / 3
    m = compute_depth_metrics(a([[2, NAN, 8, 8, NAN]]), a([[2, 4, 8, 16, NAN]]), crop=None)
    assert m.n_pixels == 3
    assert m.n_pred_invalid == 1
    assert m.abs_rel == approx(0.5 / 3)
    assert m.a1 == approx(2 / 3)
    # scale_ratio over the used pixels only: median(2, 8, 16) / median(2, 8, 8) = 8 / 8
    assert m.scale_ratio == approx(1.0)


def test_all_nan_prediction_raises_with_counts():
    with pytest.raises(NoValidPixels) as info:
        compute_depth_metrics(a([[NAN, NAN], [NAN, 1]]), a([[2, 3], [NAN, NAN]]), crop=None)
    assert info.value.n_gt_valid == 2 and info.value.n_pred_invalid == 2


#######################################################################################
# Range filtering

def test_min_max_depth_filtering():
    # gt = (0.5, 1, 5, 79.9, 80, 85) with min 1, max 80: only 5 and 79.9 are used
    # (strict inequalities). pred = gt + 1 = (6, 80.9 -> clamped to 80)
    # -> abs_rel = (1/5 + 0.1/79.9) / 2
    gt = a([[0.5, 1, 5, 79.9, 80, 85]])
    m = compute_depth_metrics(gt + 1, gt, min_depth=1.0, max_depth=80.0, crop=None)
    assert m.n_pixels == 2
    assert m.abs_rel == approx((1 / 5 + 0.1 / 79.9) / 2)
    # 79.9 + 1 = 80.9 is clamped to 80 -> squared errors 1 and 0.01
    assert m.rmse == approx(math.sqrt((1 + 0.1 ** 2) / 2))
    # DDAD-like range keeps 80 and 85
    m = compute_depth_metrics(gt + 1, gt, min_depth=0.0, max_depth=200.0, crop=None)
    assert m.n_pixels == 6


#######################################################################################
# Bins

def test_default_bin_edges():
    np.testing.assert_array_equal(default_bin_edges(80.0), np.arange(0, 90, 10))
    np.testing.assert_array_equal(default_bin_edges(200.0), np.arange(0, 210, 10))
    np.testing.assert_array_equal(default_bin_edges(75.0), np.arange(0, 90, 10))


def test_bins_per_frame():
    # gt = (5, 9.99, 10, 15, 25, 79), pred = (5, 11, 12, 15, 20, 79)
    # [0,10):  (5, 5), (9.99, 11)      -> abs_rel (0 + 1.01/9.99)/2, rmse sqrt(1.01^2/2), a1 1
    # [10,20): (10, 12), (15, 15)      -> abs_rel (0.2 + 0)/2, rmse sqrt(4/2), a1 (1.2<1.25) 1
    # [20,30): (25, 20)                -> abs_rel 0.2, rmse 5, a1 (1.25 not < 1.25) 0
    # [70,80]: (79, 79)                -> 0, 0, 1; all other bins empty
    gt = a([[5, 9.99, 10, 15, 25, 79]])
    pred = a([[5, 11, 12, 15, 20, 79]])
    m = compute_depth_metrics(pred, gt, crop=None)
    assert [b['n_pixels'] for b in m.bins] == [2, 1 + 1, 1, 0, 0, 0, 0, 1]
    assert sum(b['n_pixels'] for b in m.bins) == m.n_pixels == 6
    assert [b['range'] for b in m.bins] == [(10.0 * i, 10.0 * i + 10) for i in range(8)]
    b0, b1, b2 = m.bins[:3]
    assert b0['abs_rel'] == approx((1.01 / 9.99) / 2)
    assert b0['rmse'] == approx(math.sqrt(1.01 ** 2 / 2))
    assert b0['a1'] == approx(1.0)
    assert b1['abs_rel'] == approx(0.1) and b1['rmse'] == approx(math.sqrt(2)) and b1['a1'] == 1
    assert b2['abs_rel'] == approx(0.2) and b2['rmse'] == approx(5.0) and b2['a1'] == 0
    assert m.bins[7]['abs_rel'] == 0 and m.bins[7]['a1'] == 1
    for b in m.bins[3:7]:
        assert b['n_pixels'] == 0
        assert math.isnan(b['abs_rel']) and math.isnan(b['rmse']) and math.isnan(b['a1'])
    # pixel-weighted bin sums give back the frame's metrics
    full = [b for b in m.bins if b['n_pixels']]
    assert sum(b['abs_rel'] * b['n_pixels'] for b in full) / 6 == approx(m.abs_rel)
    assert math.sqrt(sum(b['rmse'] ** 2 * b['n_pixels'] for b in full) / 6) == approx(m.rmse)


def test_custom_bins_and_last_edge_inclusive():
    # edges (0, 5, 20): gt 5 falls in [5, 20]; gt 20 in the last bin (upper edge included);
    # gt 30 is in no bin.
    gt = a([[1, 5, 20, 30]])
    m = compute_depth_metrics(gt, gt, crop=None, bins=[0, 5, 20])
    assert [b['range'] for b in m.bins] == [(0.0, 5.0), (5.0, 20.0)]
    assert [b['n_pixels'] for b in m.bins] == [1, 2]
    with pytest.raises(ValueError, match='bins'):
        compute_depth_metrics(gt, gt, crop=None, bins=[0, 10, 10])
    with pytest.raises(ValueError, match='bins'):
        compute_depth_metrics(gt, gt, crop=None, bins=[5])


#######################################################################################
# Aggregation

def _two_frames():
    # frame A: gt (4, 15), pred (5, 15)
    #   pixel errors: abs_rel (0.25, 0), sq (1, 0), thresh (1.25, 1) -> a1 (0, 1)
    #   frame: abs_rel 0.125, rmse sqrt(1/2), a1 0.5, scale median(4,15)/median(5,15) = 9.5/10
    # frame B: gt (2, 2, 2, 12), pred (2, 2, 3, 12)
    #   pixel errors: abs_rel (0, 0, 0.5, 0), sq (0, 0, 1, 0), a1 (1, 1, 0, 1)
    #   frame: abs_rel 0.125, rmse sqrt(1/4), a1 0.75, scale median(2,2,2,12)/median(2,2,3,12)
    #   = 2 / 2.5 = 0.8
    fa = compute_depth_metrics(a([[5, 15]]), a([[4, 15]]), crop=None)
    fb = compute_depth_metrics(a([[2, 2, 3, 12]]), a([[2, 2, 2, 12]]), crop=None)
    return fa, fb


def test_aggregate_is_per_frame_mean():
    fa, fb = _two_frames()
    assert (fa.a1, fb.a1) == (approx(0.5), approx(0.75))
    agg = aggregate([fa, fb])
    assert set(agg) == set(METRIC_NAMES) | {'scale_ratio', 'n_frames', 'n_pixels',
                                            'n_pred_invalid', 'bins'}
    for name in METRIC_NAMES:
        assert agg[name] == approx((getattr(fa, name) + getattr(fb, name)) / 2)
    assert agg['abs_rel'] == approx(0.125)
    assert agg['rmse'] == approx((math.sqrt(0.5) + 0.5) / 2)
    # per frame: a1 = (0.5 + 0.75) / 2 = 0.625; pixel-weighted would be (1 + 3) / 6 = 0.667
    assert agg['a1'] == approx(0.625)
    assert agg['a1'] != approx(4 / 6)
    assert agg['n_frames'] == 2 and agg['n_pixels'] == 6 and agg['n_pred_invalid'] == 0
    # median of the two ratios (0.95, 0.8) = 0.875
    assert (fa.scale_ratio, fb.scale_ratio) == (approx(0.95), approx(0.8))
    assert agg['scale_ratio'] == approx(0.875)


def test_aggregate_differs_from_pixel_weighted():
    # frame 1: one pixel, abs_rel 1 (gt 10, pred 20); frame 2: three perfect pixels.
    # per-frame mean = (1 + 0) / 2 = 0.5; pixel-weighted would be (1 + 0 + 0 + 0) / 4 = 0.25
    f1 = compute_depth_metrics(a([[20]]), a([[10]]), crop=None)
    f2 = compute_depth_metrics(a([[3, 4, 5]]), a([[3, 4, 5]]), crop=None)
    agg = aggregate([f1, f2])
    assert agg['abs_rel'] == approx(0.5)
    assert agg['a1'] == approx(0.5)
    # the bins are pixel-weighted: [0,10) has 3 perfect pixels, [10,20) the bad one
    assert agg['bins'][0]['n_pixels'] == 3 and agg['bins'][0]['abs_rel'] == approx(0.0)
    assert agg['bins'][1]['n_pixels'] == 1 and agg['bins'][1]['abs_rel'] == approx(1.0)


def test_aggregate_bins_pixel_weighted_by_hand():
    fa, fb = _two_frames()
    agg = aggregate([fa, fb])
    b0, b1 = agg['bins'][0], agg['bins'][1]
    assert set(b0) == {'min_m', 'max_m', 'n_pixels', 'abs_rel', 'rmse', 'a1'}
    # [0, 10): A pixel (4, 5) + B pixels (2,2), (2,2), (2,3) -> 4 pixels
    #   abs_rel = (0.25 + 0 + 0 + 0.5) / 4 = 0.1875
    #   rmse = sqrt((1 + 0 + 0 + 1) / 4) = sqrt(0.5)
    #   a1 = (0 + 1 + 1 + 0) / 4 = 0.5
    assert (b0['min_m'], b0['max_m'], b0['n_pixels']) == (0.0, 10.0, 4)
    assert b0['abs_rel'] == approx(0.1875)
    assert b0['rmse'] == approx(math.sqrt(0.5))
    assert b0['a1'] == approx(0.5)
    # [10, 20): A (15, 15) + B (12, 12) -> perfect
    assert (b1['n_pixels'], b1['abs_rel'], b1['rmse'], b1['a1']) == (2, 0.0, 0.0, 1.0)
    for b in agg['bins'][2:]:
        assert b['n_pixels'] == 0 and math.isnan(b['abs_rel']) and math.isnan(b['rmse'])
    assert sum(b['n_pixels'] for b in agg['bins']) == agg['n_pixels']


def test_aggregate_scale_ratio_median_and_counts():
    # ratios 1, 2, 10 -> median 2 (the mean would be 13/3)
    frames = [compute_depth_metrics(a([[10 / r, 10 / r]]), a([[10, 10]]), crop=None)
              for r in (1, 2, 10)]
    frames.append(compute_depth_metrics(a([[NAN, 10]]), a([[10, 10]]), crop=None))  # ratio 1
    agg = aggregate(frames[:3])
    assert agg['scale_ratio'] == approx(2.0)
    agg = aggregate(frames)
    assert agg['scale_ratio'] == approx(1.5)  # median(1, 1, 2, 10)
    assert agg['n_pixels'] == 7 and agg['n_pred_invalid'] == 1 and agg['n_frames'] == 4


def test_aggregate_empty_and_mismatched_bins():
    agg = aggregate([])
    assert agg['n_frames'] == 0 and agg['bins'] == [] and math.isnan(agg['abs_rel'])
    f1 = compute_depth_metrics(a([[10]]), a([[10]]), crop=None)
    f2 = compute_depth_metrics(a([[10]]), a([[10]]), crop=None, bins=[0, 50, 80])
    with pytest.raises(ValueError, match='bins'):
        aggregate([f1, f2])


#######################################################################################
# Errors

def test_no_valid_pixels():
    with pytest.raises(NoValidPixels):
        compute_depth_metrics(a([[1, 2]]), a([[NAN, 0]]), crop=None)
    with pytest.raises(ValueError):  # NoValidPixels is a ValueError
        compute_depth_metrics(a([[1, 2]]), a([[90, 100]]), crop=None)
    # valid GT only outside the Garg crop
    gt = np.zeros((20, 30))
    gt[0, 0] = 10.0
    with pytest.raises(NoValidPixels):
        compute_depth_metrics(np.ones((20, 30)), gt, crop='garg')


def test_shape_mismatch():
    with pytest.raises(ValueError) as info:
        compute_depth_metrics(np.ones((192, 640)), np.ones((375, 1242)))
    assert '(192, 640)' in str(info.value) and '(375, 1242)' in str(info.value)
    with pytest.raises(ValueError):
        compute_depth_metrics(np.ones((1, 4, 4)), np.ones((1, 4, 4)))


#######################################################################################
# Tables

def test_format_table():
    fa, fb = _two_frames()
    agg = aggregate([fa, fb])
    scaled = aggregate([compute_depth_metrics(a([[1, 2]]), a([[2, 4]]), crop=None,
                                              median_scaling=True)])
    text = format_table({'packnet_mr': agg, 'packnet_mr_gt': scaled}, title='KITTI Eigen')
    lines = text.splitlines()
    assert lines[0] == 'KITTI Eigen'
    assert lines[1].split() == ['name', 'abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3', 'mae',
                                'scale', 'n_frames']
    row = lines[3].split()
    assert row[0] == 'packnet_mr'
    assert row[1:] == [f"{agg[k]:.3f}" for k in METRIC_NAMES] + [f"{agg['scale_ratio']:.3f}", '2']
    assert '0.125' in lines[3] and '0.625' in lines[3] and '0.875' in lines[3]
    assert lines[4].split()[1] == '0.000' and lines[4].split()[9] == '2.000'
    # aligned: every line but the title has the same length (numbers right-aligned)
    assert len({len(line) for line in lines[1:]}) == 1
    assert '\n' not in format_table({'x': agg}).splitlines()[-1]


def test_format_table_nan_missing_and_frame():
    text = format_table({'empty': aggregate([]), 'partial': {'abs_rel': 0.1234}})
    assert 'nan' in text.splitlines()[2]
    assert text.splitlines()[3].split() == ['partial', '0.123'] + ['-'] * 9
    frame = compute_depth_metrics(a([[20]]), a([[10]]), crop=None)
    assert format_table({'f': frame}).splitlines()[2].split()[1] == '1.000'


def test_format_bins_table():
    fa, fb = _two_frames()
    text = format_bins_table(aggregate([fa, fb]))
    lines = text.splitlines()
    assert lines[0].split() == ['range_m', 'n_pixels', 'abs_rel', 'rmse', 'a1']
    assert lines[2].split() == ['0-10', '4', '0.188', f'{math.sqrt(0.5):.3f}', '0.500']
    assert lines[3].split() == ['10-20', '2', '0.000', '0.000', '1.000']
    assert lines[4].split() == ['20-30', '0', 'nan', 'nan', 'nan']
    assert len(lines) == 2 + 8
