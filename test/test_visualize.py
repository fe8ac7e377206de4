"""Depth pictures (packnet_ros.evaluation.visualize): the monodepth2 colour mapping, its
colour bar, fixed colours for NaN/Inf, sparse ground truth and the evaluator's panel."""
from __future__ import annotations

import numpy as np
import pytest

from packnet_ros.evaluation import visualize as V
from packnet_ros.evaluation.report import sample_panel


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _ramp(near: float, far: float, shape=(60, 80)) -> np.ndarray:
    return np.geomspace(near, far, shape[0] * shape[1]).reshape(shape).astype(np.float32)


@pytest.mark.parametrize('cmap', [V.DepthColormap.fixed(1.0, 100.0), V.DepthColormap.for_depth(_ramp(2, 70))])
def test_colormap_monotonic_in_depth(cmap):
    depth = np.geomspace(0.3, 300.0, 2000)[None, :]
    pos = cmap.position(depth)[0]
    assert np.all(np.diff(pos) <= 0), 'nearer must never sit lower on the colour map'
    luma = _luma(cmap.colours(depth))[0]
    # (OpenCV's magma table has one 0.06-level wiggle in brightness at index 49)
    assert np.all(np.diff(luma) <= 0.1), 'magma brightness must not increase with depth'
    assert luma[0] > 200 and luma[-1] < 10      # pale yellow near, black-purple far
    inside = (depth[0] > cmap.near_m * 1.05) & (depth[0] < cmap.far_m / 1.05)
    assert len(np.unique(cmap.colours(depth)[0][inside], axis=0)) > 100   # not a few flat bands


def test_percentile_normalisation_ignores_one_near_outlier():
    depth = _ramp(10.0, 50.0, (100, 100))
    depth[0, 0] = 0.05                           # one absurdly near pixel
    cmap = V.DepthColormap.for_depth(depth)
    disp = 1.0 / depth.ravel()
    assert cmap.vmax == pytest.approx(np.percentile(disp, 95))
    assert cmap.vmin == pytest.approx(disp.min())
    rest = np.ones(depth.shape, bool)
    rest[0, 0] = False
    pos = cmap.position(depth)[rest]
    assert pos.min() == 0.0 and pos.max() == 1.0   # the rest spans the whole colour map
    colours = cmap.colours(depth)
    assert len(np.unique(colours[rest], axis=0)) > 200
    assert tuple(colours[0, 0]) == tuple(V.magma(np.array(1.0)))   # the outlier saturates
    # a plain min-max over disparity would squash the rest into the bottom 1 % of the map
    naive = (disp - disp.min()) / (disp.max() - disp.min())
    assert naive[rest.ravel()].max() < 0.01


def test_colorbar_labels_match_the_colours_beside_them():
    depth = _ramp(3.0, 60.0, (375, 400))
    cmap = V.DepthColormap.for_depth(depth)
    bar = V.depth_colorbar(cmap, 375)
    assert bar.image.shape == (375, V.BAR_STRIP_W, 3)
    assert len(bar.ticks) >= 4
    x0, x1 = bar.bar_columns
    rows = [row for row, _, _ in bar.ticks]
    assert rows == sorted(rows)                   # near at the top
    lut = V.magma(np.linspace(0, 1, 256))
    for row, d, label in bar.ticks:
        assert label == f'{d:g} m' and d in (1, 2, 3, 5, 10, 15, 20, 30, 40, 50, 60)
        drawn = bar.image[row, (x0 + x1) // 2].astype(int)
        expected = cmap.colours(np.array([[d]]))[0, 0].astype(int)
        # the bar's colour at the tick row is that depth's colour (within one colour-map step)
        assert np.abs(drawn - expected).max() <= 6, (label, drawn, expected)
        nearest = np.argmin(np.abs(lut.astype(int) - drawn).sum(1))
        assert abs(nearest / 255 - float(cmap.position(d))) <= 2.5 / 255
        text = bar.image[max(0, row - 8):row + 5, x1 + 7:]
        assert (text.max(-1) > 150).sum() > 10, f'no label drawn beside the {label} tick'
    # a frame's colours read off the bar: a pixel at a tick's depth has the tick row's colour
    row, d, _ = bar.ticks[len(bar.ticks) // 2]
    pixel = V.colorize_depth(np.full((2, 2), d, np.float32), cmap=cmap)[0, 0].astype(int)
    assert np.abs(pixel - bar.image[row, x0 + 2].astype(int)).max() <= 6


def test_error_colorbar():
    bar = V.error_colorbar(200)
    labels = [label for _, _, label in bar.ticks]
    assert labels[0] == '>=0.3' and labels[-1] == '0'
    x = sum(bar.bar_columns) // 2
    top, bottom = bar.ticks[0][0], bar.ticks[-1][0]
    assert tuple(bar.image[top, x]) == (255, 0, 0) and tuple(bar.image[bottom, x]) == (0, 255, 0)


def test_nan_and_inf_get_fixed_colours():
    depth = _ramp(2.0, 40.0, (20, 20))
    depth[0, :5] = np.nan
    depth[1, :5] = -np.inf
    depth[2, :5] = 0.0
    depth[3, :5] = np.inf
    for cmap in (None, V.DepthColormap.fixed(1.0, 10.0), V.DepthColormap.fixed(5.0, 200.0)):
        img = V.colorize_depth(depth, cmap=cmap)
        for r in range(3):
            assert (img[r, :5] == V.INVALID_RGB).all()
        assert (img[3, :5] == V.BEYOND_RGB).all()
        assert (img[4:] != V.BEYOND_RGB).any(-1).all()
    lut = V.magma(np.linspace(0, 1, 256)).astype(int)
    assert np.abs(lut - np.array(V.BEYOND_RGB)).sum(1).min() > 60   # not confusable with a depth
    pic = V.depth_picture(depth)
    assert pic.shape == (20, 20 + V.BAR_STRIP_W, 3)


def test_sparse_ground_truth_dilated_nearest_wins():
    gt = np.zeros((30, 30), np.float32)
    gt[10, 10], gt[10, 12], gt[25, 25] = 5.0, 40.0, 20.0
    cmap = V.DepthColormap.fixed(2.0, 80.0)
    img = V.colorize_depth(gt, sparse=True, cmap=cmap)
    near = cmap.colours(np.array([[5.0]]))[0, 0]
    far = cmap.colours(np.array([[40.0]]))[0, 0]
    assert (img[9:12, 9:12] == near).all()      # 3x3 around the 5 m return
    assert (img[9:12, 13] == far).all()          # the 40 m return's own side
    assert (img[10, 11] == near).all()           # overlap: the nearer return wins
    assert (img[0:5, 0:5] == 0).all() and (img[20:23, 0:5] == 0).all()   # no return: black
    assert (img[24:27, 24:27] == cmap.colours(np.array([[20.0]]))[0, 0]).all()


def test_sample_panel_shares_one_mapping_from_the_ground_truth():
    H, W = 60, 90
    rgb = np.full((H, W, 3), 128, np.uint8)
    gt = np.zeros((H, W), np.float32)
    gt[30:, ::3] = np.linspace(5, 30, H - 30)[:, None]
    pred = np.full((H // 2, W // 2), 12.0, np.float32)
    pred[-2:] = 0.5              # a network artefact: a band of very near depth
    pred[:3] = np.inf            # beyond range
    out = sample_panel(rgb, pred, gt, 'x')
    assert out.shape == (4 * H, W + V.BAR_STRIP_W, 3)
    cmap = V.DepthColormap.for_depth(gt)
    pred_row = out[H:2 * H, :W]
    assert (pred_row[H // 2, W // 2] == cmap.colours(np.array([[12.0]]))[0, 0]).all()
    assert (pred_row[0, W // 2] == V.BEYOND_RGB).all()
    gt_bar = out[2 * H:3 * H, W:]
    assert gt_bar.max() > 200                    # the ground truth row has its colour bar
    assert sample_panel(rgb, pred, None).shape == (2 * H, W + V.BAR_STRIP_W, 3)
