"""One scoring path for every prediction source: predictions + ground truth -> metrics.

Follows packnet-sfm's ``evaluate_depth``: the prediction is resized to the ground
truth's resolution (bilinear, align_corners=True), then scored per frame with
:func:`compute_depth_metrics` in two modes, ``metric`` (as published, tells whether the
scale is right) and ``median`` (median-scaled, the standard monocular comparison), and
averaged over frames. Next to them, ``edge_abs_rel`` (:mod:`.edges`): abs_rel over the
ground-truth pixels near depth discontinuities, pixel-weighted over frames
(``n_edge_pixels``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..jsonio import json_safe
from .edges import depth_edge_mask, edge_abs_rel
from .metrics import METRIC_NAMES, NoValidPixels, aggregate, compute_depth_metrics

MODES = ('metric', 'median')
"""``metric``: prediction as published; ``median``: scaled by median(gt) / median(pred)."""


@dataclass
class EvalSettings:
    """Evaluation protocol (FIELD_BRIEF A4; packnet-sfm KITTI defaults).

    Attributes:
        min_depth, max_depth: GT validity range in metres (0 < gt < 80 for KITTI).
        crop: "garg" or "" (none).
        bins: GT-distance bin edges in metres (None: 0, 10, ..., max_depth).
        flip_pp: the predictions used flip post-processing (recorded for the report).
        stamp_tolerance_s: maximum |stamp(pred) - stamp(gt)| for association.
    """

    min_depth: float = 0.0
    max_depth: float = 80.0
    crop: str = 'garg'
    bins: list | None = None
    flip_pp: bool = False
    stamp_tolerance_s: float = 0.05

    def as_dict(self) -> dict:
        return asdict(self)


def resize_depth(depth: np.ndarray, shape: tuple[int, int], max_depth: float) -> np.ndarray:
    """Resize a prediction (h, w) to the GT shape (H, W) bilinearly (align_corners=True).

    REP 117 values are made finite first (+Inf -> max_depth, -Inf -> 1e-3 m) so they do not
    smear into neighbours; NaN stays NaN (its neighbourhood becomes NaN and is counted as
    invalid prediction by the metrics).
    """
    if tuple(depth.shape) == tuple(shape):
        return depth.astype(np.float32, copy=False)
    d = np.where(np.isposinf(depth), max_depth, depth)
    d = np.where(np.isneginf(d), 1e-3, d).astype(np.float32)
    t = torch.from_numpy(d)[None, None]
    return F.interpolate(t, size=tuple(shape), mode='bilinear', align_corners=True)[0, 0].numpy()


@dataclass
class EvalResult:
    """Aggregated metrics per mode, per-frame rows, counts of what could not be scored."""

    settings: EvalSettings
    modes: dict
    per_frame: list
    counts: dict
    label: str = ''

    @property
    def metric(self) -> dict:
        return self.modes.get('metric', {})

    @property
    def median(self) -> dict:
        return self.modes.get('median', {})

    def to_json(self) -> dict:
        """JSON document: top-level keys are the metric-mode values (abs_rel ... a3,
        scale_ratio, n_frames, n_pixels, bins, edge_abs_rel, n_edge_pixels), ``median_scaled`` holds the same keys for
        median scaling, plus ``settings``, ``counts`` and ``label``."""
        doc = dict(self.metric)
        doc['median_scaled'] = dict(self.median)
        doc['settings'] = self.settings.as_dict()
        doc['counts'] = dict(self.counts)
        doc['label'] = self.label
        return json_safe(doc)


class Evaluator:
    """Accumulates frames and scores them in both modes.

    Args:
        settings: the protocol.
        label: name of the prediction source (checkpoint, topic) for reports.
    """

    def __init__(self, settings: EvalSettings | None = None, label: str = ''):
        self.settings = settings or EvalSettings()
        self.label = label
        self._frames: dict[str, list] = {m: [] for m in MODES}
        self._edge_sum: dict[str, float] = {m: 0.0 for m in MODES}  # sum of per-pixel abs_rel at edges
        self._edge_n: dict[str, int] = {m: 0 for m in MODES}  # edge pixels
        self.per_frame: list[dict] = []
        self.counts: Counter = Counter()

    def skip(self, reason: str, n: int = 1) -> None:
        """Count a frame (or message) that could not be scored, with the reason."""
        self.counts[reason] += n

    def add(self, stamp_ns: int, pred: np.ndarray, gt: np.ndarray | None, index: int | None = None) -> dict | None:
        """Score one frame; returns its per-frame row (both modes) or None if it was skipped.

        Args:
            stamp_ns: the frame's stamp.
            pred: (h, w) predicted depth in metres (any resolution).
            gt: (H, W) ground truth in metres, NaN invalid; None = no ground truth found.
        """
        if gt is None:
            self.skip('no ground truth within the stamp tolerance')
            return None
        s = self.settings
        pred = resize_depth(pred, gt.shape, s.max_depth)
        row: dict = {'index': len(self.per_frame) if index is None else index, 'stamp_ns': int(stamp_ns)}
        try:
            results = {m: compute_depth_metrics(pred, gt, s.min_depth, s.max_depth, s.crop,
                                                median_scaling=(m == 'median'), bins=s.bins)
                       for m in MODES}
        except NoValidPixels:
            self.skip('no valid ground-truth pixel (after crop and range)')
            return None
        edges = depth_edge_mask(gt)
        for m, fm in results.items():
            self._frames[m].append(fm)
            for k in METRIC_NAMES:
                row[f'{m}_{k}'] = getattr(fm, k)
            scale = results['metric'].scale_ratio if m == 'median' else 1.0
            e_abs, e_n = edge_abs_rel(pred, gt, edges, s.min_depth, s.max_depth, s.crop, scale)
            row[f'{m}_edge_abs_rel'] = e_abs
            if e_n:
                self._edge_sum[m] += e_abs * e_n
                self._edge_n[m] += e_n
        row['scale_ratio'] = results['metric'].scale_ratio
        row['n_pixels'] = results['metric'].n_pixels
        row['n_pred_invalid'] = results['metric'].n_pred_invalid
        self.per_frame.append(row)
        return row

    def result(self) -> EvalResult:
        counts = dict(self.counts)
        counts['frames_scored'] = len(self.per_frame)
        modes = {m: aggregate(f) for m, f in self._frames.items()}
        for m, n in self._edge_n.items():
            modes[m]['edge_abs_rel'] = self._edge_sum[m] / n if n else float('nan')
            modes[m]['n_edge_pixels'] = n
        return EvalResult(self.settings, modes, list(self.per_frame), counts, self.label)


__all__ = ['MODES', 'EvalSettings', 'EvalResult', 'Evaluator', 'resize_depth']
