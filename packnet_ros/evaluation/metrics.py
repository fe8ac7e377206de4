"""Monocular depth metrics: the standard KITTI/DDAD protocol as packnet-sfm applies it.

Plain numpy; nothing here imports torch or ROS.

Sources:
    * Metrics (abs_rel, sq_rel, rmse, rmse_log, delta < 1.25^k): Eigen, Puhrsch & Fergus,
      "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network", NeurIPS 2014;
      mae (mean absolute error, metres) as the KITTI depth-completion benchmark reports it.
    * Crop: Garg, Kumar, Carneiro & Reid, "Unsupervised CNN for Single View Depth
      Estimation: Geometry to the Rescue", ECCV 2016 (the fractions used by packnet-sfm
      and monodepth2).
    * Procedure: packnet-sfm ``packnet_sfm/utils/depth.py::compute_depth_metrics``:
      valid = min_depth < gt < max_depth (and the crop), optional median scaling
      ``pred *= median(gt) / median(pred)``, clamp of the prediction to [min, max],
      metrics computed per image and averaged over images.

Conventions:
    * Depths are (H, W) float arrays in metres. The caller resizes the prediction to the
      ground-truth resolution beforehand (packnet-sfm: bilinear, align_corners=True).
    * Invalid ground truth is any non-finite value or a value <= 0 (NaN is this project's
      convention for "no measurement", 0 is KITTI's; both are accepted).
    * Non-finite predictions follow REP 117: +Inf ("beyond range") counts as ``max_depth``,
      -Inf ("too close") counts as the lower clamp ``max(min_depth, 1e-3)``; NaN
      ("no return") pixels where the GT is valid are left out of the metrics but counted
      in ``FrameMetrics.n_pred_invalid``.

Differences from packnet-sfm (deliberate, all negligible or corner cases):
    * The prediction's lower clamp is ``max(min_depth, 1e-3)`` instead of ``min_depth``
      so that a zero prediction cannot produce log(0) or a division by zero (monodepth2
      uses MIN_DEPTH = 1e-3 for the same reason). With min_depth = 0 packnet-sfm would
      return inf/NaN for such pixels.
    * Medians are ``np.median`` (mean of the two middle values for an even count);
      ``torch.median`` returns the lower middle value. The difference is of the order of
      one pixel's depth step and invisible at three decimals on real frames.
    * packnet-sfm skips a frame without valid pixels but still divides by the batch size
      (counting it as all-zero errors); here such a frame raises :class:`NoValidPixels`
      and the caller leaves it out of :func:`aggregate` (and reports how many there were).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    'GARG_CROP', 'METRIC_NAMES', 'DEFAULT_BIN_WIDTH_M', 'PRED_FLOOR_M',
    'NoValidPixels', 'FrameMetrics',
    'garg_crop_mask', 'valid_mask', 'default_bin_edges', 'compute_depth_metrics',
    'aggregate', 'format_table', 'format_bins_table',
]

GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
"""Garg crop as fractions: rows [top, bottom), cols [left, right) of (H, W)."""

METRIC_NAMES = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3', 'mae')
"""The seven Eigen et al. metrics, in the order packnet-sfm reports them, then the mean
absolute error (metres) of the depth-completion benchmark."""

DEFAULT_BIN_WIDTH_M = 10.0
"""Width of the default GT-distance bins (edges 0, 10, ..., max_depth)."""

PRED_FLOOR_M = 1e-3
"""Lowest value the prediction is clamped to (avoids log(0), as monodepth2's MIN_DEPTH)."""

_CROPS = ('garg', '', None)


class NoValidPixels(ValueError):
    """A frame has no pixel with both a valid GT and a non-NaN prediction.

    Attributes:
        n_gt_valid: pixels whose GT passed the validity/range/crop test.
        n_pred_invalid: how many of those had a NaN prediction.
    """

    def __init__(self, message: str, n_gt_valid: int = 0, n_pred_invalid: int = 0):
        super().__init__(message)
        self.n_gt_valid = int(n_gt_valid)
        self.n_pred_invalid = int(n_pred_invalid)


@dataclass
class FrameMetrics:
    """Metrics of one frame (see :func:`compute_depth_metrics`).

    Attributes:
        abs_rel, sq_rel, rmse, rmse_log: errors (rmse in metres, sq_rel in metres).
        mae: mean absolute error in metres.
        a1, a2, a3: fractions of pixels with max(gt/pred, pred/gt) < 1.25, 1.25^2, 1.25^3.
        scale_ratio: median(gt) / median(pred) over the used pixels, before any scaling
            (NaN if the prediction's median is not positive).
        n_pixels: pixels the metrics were computed on.
        n_pred_invalid: pixels with a valid GT but a NaN prediction (excluded, counted).
        bins: one dict per GT-distance bin with keys ``range`` ((min_m, max_m)), ``min_m``,
            ``max_m``, ``n_pixels``, ``abs_rel``, ``rmse``, ``a1``; empty bins have
            n_pixels 0 and NaN metrics.
    """

    abs_rel: float
    sq_rel: float
    rmse: float
    rmse_log: float
    a1: float
    a2: float
    a3: float
    scale_ratio: float
    n_pixels: int
    n_pred_invalid: int
    bins: list[dict] = field(default_factory=list)
    mae: float = float('nan')

    def as_dict(self) -> dict:
        """Plain dict (JSON-serialisable except for the ``range`` tuples, which become lists)."""
        d = asdict(self)
        for b in d['bins']:
            b['range'] = list(b['range'])
        return d


def _check_2d(name: str, a: np.ndarray) -> None:
    if a.ndim != 2:
        raise ValueError(f'{name} must be a 2-D (H, W) depth map, got shape {a.shape}')


def _check_range(min_depth: float, max_depth: float) -> None:
    if not (np.isfinite(max_depth) and max_depth > 0 and min_depth < max_depth):
        raise ValueError(f'need min_depth < max_depth and a finite positive max_depth, '
                         f'got min_depth={min_depth}, max_depth={max_depth}')


def garg_crop_mask(height: int, width: int) -> np.ndarray:
    """Boolean mask of the Garg et al. (2016) evaluation crop.

    Bounds are truncated with ``int()`` exactly as packnet-sfm does
    (``y1, y2 = int(0.40810811 * H), int(0.99189189 * H)``, likewise x), and the slice is
    half-open: rows ``y1 <= r < y2``, cols ``x1 <= c < x2``. For KITTI's 375 x 1242 this is
    rows 153..370 and cols 44..1196 (inclusive).

    Args:
        height, width: GT image size in pixels.

    Returns:
        (H, W) bool array, True inside the crop.
    """
    top, bottom, left, right = GARG_CROP
    y1, y2 = int(top * height), int(bottom * height)
    x1, x2 = int(left * width), int(right * width)
    mask = np.zeros((int(height), int(width)), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def valid_mask(gt: np.ndarray, min_depth: float = 0.0, max_depth: float = 80.0,
               crop: str | None = 'garg') -> np.ndarray:
    """Pixels where the ground truth takes part in the evaluation.

    Args:
        gt: (H, W) ground-truth depth in metres; NaN/Inf/<= 0 mean "no measurement".
        min_depth, max_depth: open range ``min_depth < gt < max_depth`` in metres
            (KITTI 0 and 80, DDAD 0 and 200).
        crop: ``'garg'`` for the Garg crop, ``''`` or ``None`` for no crop.

    Returns:
        (H, W) bool array.

    Raises:
        ValueError: gt not 2-D, an unknown crop, or min_depth >= max_depth.
    """
    gt = np.asarray(gt)
    _check_2d('gt', gt)
    _check_range(min_depth, max_depth)
    if crop not in _CROPS:
        raise ValueError(f"crop must be 'garg', '' or None, got {crop!r}")
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(gt) & (gt > 0) & (gt > min_depth) & (gt < max_depth)
    if crop == 'garg':
        valid &= garg_crop_mask(*gt.shape)
    return valid


def default_bin_edges(max_depth: float = 80.0, width: float = DEFAULT_BIN_WIDTH_M) -> np.ndarray:
    """Edges 0, width, 2*width, ... up to the first multiple >= max_depth (0..80 for KITTI)."""
    n = max(1, int(math.ceil(max_depth / width - 1e-9)))
    return np.arange(n + 1, dtype=np.float64) * width


def _bin_edges(bins: Sequence[float] | None, max_depth: float) -> np.ndarray:
    if bins is None:
        return default_bin_edges(max_depth)
    edges = np.asarray(bins, dtype=np.float64).ravel()
    if edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f'bins must be at least two finite, strictly increasing edges in metres, '
                         f'got {list(edges)}')
    return edges


def compute_depth_metrics(pred: np.ndarray, gt: np.ndarray, min_depth: float = 0.0,
                          max_depth: float = 80.0, crop: str | None = 'garg',
                          median_scaling: bool = False,
                          bins: Sequence[float] | None = None) -> FrameMetrics:
    """Eigen et al. (2014) depth metrics of one frame, following packnet-sfm's
    ``compute_depth_metrics``.

    Steps:
        1. Used pixels: :func:`valid_mask` (finite gt > 0, ``min_depth < gt < max_depth``,
           crop) and a non-NaN prediction. NaN predictions on valid GT are counted in
           ``n_pred_invalid``.
        2. +Inf predictions become ``max_depth``, -Inf become ``max(min_depth, 1e-3)``
           (REP 117 "beyond range" / "too close"); they keep those values after scaling.
        3. ``scale_ratio = median(gt) / median(pred)`` over the used pixels, always computed,
           before any scaling; with ``median_scaling`` the prediction is multiplied by it.
        4. The prediction is clamped to ``[max(min_depth, 1e-3), max_depth]``
           (packnet-sfm clamps to [min_depth, max_depth]; the 1e-3 floor avoids log(0)
           and division by zero, like monodepth2's MIN_DEPTH).
        5. Over the used pixels: abs_rel = mean(|gt - pred| / gt),
           sq_rel = mean((gt - pred)^2 / gt), rmse = sqrt(mean((gt - pred)^2)),
           rmse_log = sqrt(mean((ln gt - ln pred)^2)), mae = mean(|gt - pred|),
           a_k = mean(max(gt / pred, pred / gt) < 1.25^k) for k = 1, 2, 3.
        6. The same per-pixel errors are split by GT distance into bins
           (``lo <= gt < hi``; the last bin also includes its upper edge) giving
           n_pixels, abs_rel, rmse and a1 per bin.

    Args:
        pred: (H, W) predicted depth in metres, already at GT resolution.
        gt: (H, W) ground-truth depth in metres; NaN, +-Inf or <= 0 are invalid.
        min_depth, max_depth: evaluation range in metres (KITTI 0/80, DDAD 0/200).
        crop: ``'garg'``, ``''`` or ``None``.
        median_scaling: scale the prediction by ``scale_ratio`` first (the ``_gt`` modes).
        bins: GT-distance bin edges in metres (at least two, strictly increasing);
            ``None`` gives 10 m bins from 0 to ``max_depth`` (0, 10, ..., 80 for KITTI).

    Returns:
        :class:`FrameMetrics`.

    Raises:
        ValueError: pred and gt shapes differ or are not 2-D, bad crop/range/bins, or
            ``median_scaling`` with a non-positive prediction median.
        NoValidPixels: no pixel is left to evaluate.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f'pred shape {pred.shape} differs from gt shape {gt.shape}; '
                         f'resize the prediction to the GT resolution first')
    _check_2d('pred', pred)
    edges = _bin_edges(bins, max_depth)
    gt_valid = valid_mask(gt, min_depth, max_depth, crop)

    pred_nan = np.isnan(pred) & gt_valid
    n_pred_invalid = int(pred_nan.sum())
    used = gt_valid & ~pred_nan
    n = int(used.sum())
    if n == 0:
        raise NoValidPixels(
            f'no pixel to evaluate: {int(gt_valid.sum())} valid GT pixels in '
            f'({min_depth}, {max_depth}) m with crop={crop!r}, {n_pred_invalid} of them with a '
            f'NaN prediction', n_gt_valid=int(gt_valid.sum()), n_pred_invalid=n_pred_invalid)

    lo = max(float(min_depth), PRED_FLOOR_M)
    hi = float(max_depth)
    g = gt[used]
    p = pred[used].copy()
    pos_inf, neg_inf = np.isposinf(p), np.isneginf(p)
    p[pos_inf] = hi
    p[neg_inf] = lo

    med_p = float(np.median(p))
    scale_ratio = float(np.median(g)) / med_p if med_p > 0 else float('nan')
    if median_scaling:
        if not (np.isfinite(scale_ratio) and scale_ratio > 0):
            raise ValueError(f'median scaling impossible: median prediction is {med_p} m')
        p *= scale_ratio
        p[pos_inf] = hi
        p[neg_inf] = lo
    p = np.clip(p, lo, hi)

    diff = g - p
    abs_rel_px = np.abs(diff) / g
    sq_px = diff ** 2
    thresh = np.maximum(g / p, p / g)
    a1_px = thresh < 1.25

    bin_list = []
    last = len(edges) - 2
    for i in range(len(edges) - 1):
        b_lo, b_hi = float(edges[i]), float(edges[i + 1])
        in_bin = (g >= b_lo) & ((g <= b_hi) if i == last else (g < b_hi))
        k = int(in_bin.sum())
        nan = float('nan')
        bin_list.append({
            'range': (b_lo, b_hi), 'min_m': b_lo, 'max_m': b_hi, 'n_pixels': k,
            'abs_rel': float(abs_rel_px[in_bin].mean()) if k else nan,
            'rmse': float(np.sqrt(sq_px[in_bin].mean())) if k else nan,
            'a1': float(a1_px[in_bin].mean()) if k else nan,
        })

    return FrameMetrics(
        abs_rel=float(abs_rel_px.mean()),
        sq_rel=float((sq_px / g).mean()),
        rmse=float(np.sqrt(sq_px.mean())),
        rmse_log=float(np.sqrt(((np.log(g) - np.log(p)) ** 2).mean())),
        a1=float(a1_px.mean()),
        a2=float((thresh < 1.25 ** 2).mean()),
        a3=float((thresh < 1.25 ** 3).mean()),
        scale_ratio=scale_ratio,
        n_pixels=n,
        n_pred_invalid=n_pred_invalid,
        bins=bin_list,
        mae=float(np.abs(diff).mean()),
    )


def aggregate(frames: Sequence[FrameMetrics]) -> dict:
    """Combine per-frame metrics over a data set.

    * The metrics (the seven of Eigen et al. and mae) are the plain mean over frames of the per-frame values
      (per-image averaging, as packnet-sfm and monodepth2 do; every frame weighs the same
      whatever its number of valid pixels).
    * ``scale_ratio`` is the MEDIAN over frames of the per-frame ratios (NaN ratios
      ignored), the robust global factor to report for a scale-ambiguous model.
    * ``n_frames`` = len(frames); ``n_pixels`` and ``n_pred_invalid`` are sums.
    * Bins are aggregated PIXEL-WEIGHTED over frames: per bin, abs_rel = (sum over frames
      of the per-pixel abs_rel errors) / (total pixels in the bin), a1 likewise,
      rmse = sqrt(total squared error / total pixels); an empty bin has NaN metrics.
      The per-frame sums are recovered as mean * n_pixels (rmse^2 * n_pixels).

    Frames that raised :class:`NoValidPixels` are simply not in ``frames``; count them
    separately.

    Args:
        frames: per-frame results of :func:`compute_depth_metrics`, all with the same bins.

    Returns:
        dict with keys abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3, mae, scale_ratio, n_frames,
        n_pixels, n_pred_invalid, bins (list of dicts with 'min_m', 'max_m', 'n_pixels',
        'abs_rel', 'rmse', 'a1'). With no frames the metrics are NaN, the counts 0 and
        bins an empty list.

    Raises:
        ValueError: the frames do not share the same bin edges.
    """
    frames = list(frames)
    nan = float('nan')
    out: dict = {}
    if not frames:
        out.update({m: nan for m in METRIC_NAMES})
        out.update(scale_ratio=nan, n_frames=0, n_pixels=0, n_pred_invalid=0, bins=[])
        return out
    for m in METRIC_NAMES:
        out[m] = float(np.mean([getattr(f, m) for f in frames]))
    ratios = np.array([f.scale_ratio for f in frames], dtype=np.float64)
    ratios = ratios[np.isfinite(ratios)]
    out['scale_ratio'] = float(np.median(ratios)) if ratios.size else nan
    out['n_frames'] = len(frames)
    out['n_pixels'] = int(sum(f.n_pixels for f in frames))
    out['n_pred_invalid'] = int(sum(f.n_pred_invalid for f in frames))

    ranges = [tuple(b['range']) for b in frames[0].bins]
    for f in frames[1:]:
        if [tuple(b['range']) for b in f.bins] != ranges:
            raise ValueError('frames were computed with different bins; cannot aggregate')
    agg_bins = []
    for i, (b_lo, b_hi) in enumerate(ranges):
        n = 0
        s_abs = s_sq = s_a1 = 0.0
        for f in frames:
            b = f.bins[i]
            k = int(b['n_pixels'])
            if k == 0:
                continue
            n += k
            s_abs += b['abs_rel'] * k
            s_sq += b['rmse'] ** 2 * k
            s_a1 += b['a1'] * k
        agg_bins.append({
            'min_m': float(b_lo), 'max_m': float(b_hi), 'n_pixels': n,
            'abs_rel': s_abs / n if n else nan,
            'rmse': math.sqrt(s_sq / n) if n else nan,
            'a1': s_a1 / n if n else nan,
        })
    out['bins'] = agg_bins
    return out


#######################################################################################
# Text tables

_TABLE_COLUMNS = (  # (header, key, kind)
    ('abs_rel', 'abs_rel', 'f'), ('sq_rel', 'sq_rel', 'f'), ('rmse', 'rmse', 'f'),
    ('rmse_log', 'rmse_log', 'f'), ('a1', 'a1', 'f'), ('a2', 'a2', 'f'), ('a3', 'a3', 'f'),
    ('mae', 'mae', 'f'), ('scale', 'scale_ratio', 'f'), ('n_frames', 'n_frames', 'd'),
)
_DECIMALS = 3  # errors and deltas alike, as the papers' tables


def _as_mapping(row) -> Mapping:
    if isinstance(row, FrameMetrics):
        d = row.as_dict()
        d['n_frames'] = 1
        return d
    return row


def _fmt(value, kind: str) -> str:
    if value is None:
        return '-'
    if kind == 'd':
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return 'nan'
    return f'{value:.{_DECIMALS}f}'


def _render(header: Sequence[str], body: list[list[str]], title: str | None,
            left_cols: int = 1) -> str:
    widths = [max(len(header[c]), *(len(r[c]) for r in body)) if body else len(header[c])
              for c in range(len(header))]

    def line(cells):
        return '  '.join(cell.ljust(w) if c < left_cols else cell.rjust(w)
                         for c, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    lines = []
    if title:
        lines.append(title)
    lines.append(line(header))
    lines.append('  '.join('-' * w for w in widths))
    lines.extend(line(r) for r in body)
    return '\n'.join(lines)


def format_table(rows: Mapping[str, Mapping | FrameMetrics], title: str | None = None) -> str:
    """Plain-text table, one row per name (checkpoint, mode, ...).

    Columns: abs_rel sq_rel rmse rmse_log a1 a2 a3 mae scale n_frames, three decimals for the
    errors, the deltas and the scale; names left-aligned, numbers right-aligned. A missing
    key prints as ``-``, NaN as ``nan``.

    Args:
        rows: name -> :func:`aggregate` dict (or a :class:`FrameMetrics`, shown as 1 frame).
        title: optional first line.

    Returns:
        The table without a trailing newline.
    """
    header = ['name'] + [h for h, _, _ in _TABLE_COLUMNS]
    body = []
    for name, row in rows.items():
        row = _as_mapping(row)
        body.append([str(name)] + [_fmt(row.get(k), kind) for _, k, kind in _TABLE_COLUMNS])
    return _render(header, body, title)


def format_bins_table(agg: Mapping | FrameMetrics, title: str | None = None) -> str:
    """Plain-text table of the per-distance bins of an :func:`aggregate` dict (or a frame).

    Columns: range_m (``lo-hi``), n_pixels, abs_rel, rmse, a1 (three decimals).
    """
    agg = _as_mapping(agg)
    header = ['range_m', 'n_pixels', 'abs_rel', 'rmse', 'a1']
    body = []
    for b in agg.get('bins', []):
        body.append([f"{b['min_m']:g}-{b['max_m']:g}", str(int(b['n_pixels'])),
                     _fmt(b['abs_rel'], 'f'), _fmt(b['rmse'], 'f'), _fmt(b['a1'], 'f')])
    return _render(header, body, title)
