"""Error at depth edges: abs_rel restricted to ground-truth pixels near depth discontinuities.

Plain numpy. Edge-aware refinement (``--refinement``) is meant to fix the error where the
depth jumps (object boundaries), which the full-frame abs_rel barely sees (few pixels).

Definition (computable from sparse LiDAR ground truth alone, so every prediction source is
scored on the same pixels of a frame, whatever it predicts):

    A valid ground-truth pixel is a *depth-edge pixel* when the valid ground-truth depths
    within its (2r + 1) x (2r + 1) window (r = :data:`EDGE_RADIUS_PX` = 2, at the
    ground-truth resolution) span a relative jump ``max / min > 1 + j`` (j =
    :data:`EDGE_REL_JUMP` = 0.10).

On KITTI's projected HDL-64 returns a 5x5 window holds the neighbouring returns of the same
and of the adjacent scan line, so the test finds object boundaries (and, at long range,
the ground, whose depth changes fast from one scan line to the next; a filter that
smooths across scan lines errs there too). The edge abs_rel is then the usual abs_rel
(:func:`~packnet_ros.evaluation.metrics.compute_depth_metrics`: same crop, range, clamp
and REP 117 handling) over the edge pixels only; in the median-scaled mode the prediction
is scaled by the frame's full-frame ``scale_ratio`` (not a ratio of the edge pixels).
Aggregated over frames pixel-weighted (sum of per-pixel errors / edge pixels), as the
distance bins.
"""
from __future__ import annotations

import numpy as np

from .metrics import NoValidPixels, compute_depth_metrics

EDGE_RADIUS_PX = 2
"""Half size of the window in ground-truth pixels (5x5)."""
EDGE_REL_JUMP = 0.10
"""Relative depth jump (max / min - 1) within the window that makes a pixel an edge pixel."""


def depth_edge_mask(gt: np.ndarray, radius: int = EDGE_RADIUS_PX, rel_jump: float = EDGE_REL_JUMP) -> np.ndarray:
    """Valid ground-truth pixels near a depth discontinuity (module docstring).

    Args:
        gt: (H, W) ground-truth depth in metres; non-finite or <= 0 = no measurement.
        radius: window half size in pixels (>= 1).
        rel_jump: relative jump (> 0).

    Returns:
        (H, W) bool, True on valid pixels whose window's valid depths span ``max/min > 1 + rel_jump``.
    """
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 2:
        raise ValueError(f'gt must be (H, W), got {gt.shape}')
    if int(radius) < 1 or not rel_jump > 0:
        raise ValueError(f'need radius >= 1 and rel_jump > 0, got {radius} and {rel_jump}')
    r = int(radius)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(gt) & (gt > 0)
    hi = np.pad(np.where(valid, gt, -np.inf), r, constant_values=-np.inf)
    lo = np.pad(np.where(valid, gt, np.inf), r, constant_values=np.inf)
    H, W = gt.shape
    wmax = np.full((H, W), -np.inf)
    wmin = np.full((H, W), np.inf)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            np.maximum(wmax, hi[dy:dy + H, dx:dx + W], out=wmax)
            np.minimum(wmin, lo[dy:dy + H, dx:dx + W], out=wmin)
    return valid & (wmax > (1.0 + rel_jump) * wmin)


def edge_abs_rel(pred: np.ndarray, gt: np.ndarray, edges: np.ndarray, min_depth: float = 0.0,
                 max_depth: float = 80.0, crop: str | None = 'garg', scale: float = 1.0) -> tuple[float, int]:
    """abs_rel of ``pred * scale`` over the ground-truth pixels in ``edges`` (module docstring).

    Args:
        pred, gt: (H, W) depth in metres at the ground-truth resolution (REP 117 predictions).
        edges: (H, W) bool, e.g. :func:`depth_edge_mask` of ``gt``.
        min_depth, max_depth, crop: the protocol, as :func:`compute_depth_metrics`.
        scale: factor applied to the prediction first (the frame's median ``scale_ratio``
            in the median-scaled mode; REP 117 infinities keep their meaning).

    Returns:
        (abs_rel, n_pixels); (NaN, 0) when no edge pixel is left.
    """
    gt_edges = np.where(edges, np.asarray(gt, dtype=np.float64), np.nan)
    p = np.asarray(pred, dtype=np.float64)
    if scale != 1.0:
        p = p * float(scale)
    try:
        m = compute_depth_metrics(p, gt_edges, min_depth, max_depth, crop, bins=[0.0, float(max_depth)])
    except NoValidPixels:
        return float('nan'), 0
    return m.abs_rel, m.n_pixels


__all__ = ['EDGE_RADIUS_PX', 'EDGE_REL_JUMP', 'depth_edge_mask', 'edge_abs_rel']
