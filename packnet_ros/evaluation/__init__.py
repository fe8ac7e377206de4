"""Depth evaluation (KITTI/DDAD protocol as packnet-sfm applies it); plain numpy."""
from __future__ import annotations

from .metrics import (
    DEFAULT_BIN_WIDTH_M,
    GARG_CROP,
    METRIC_NAMES,
    PRED_FLOOR_M,
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

__all__ = [
    'GARG_CROP', 'METRIC_NAMES', 'DEFAULT_BIN_WIDTH_M', 'PRED_FLOOR_M',
    'NoValidPixels', 'FrameMetrics',
    'garg_crop_mask', 'valid_mask', 'default_bin_edges', 'compute_depth_metrics',
    'aggregate', 'format_table', 'format_bins_table',
]
