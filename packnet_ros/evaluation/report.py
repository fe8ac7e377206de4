"""Reports people read: terminal tables, JSON, per-frame CSV, plots and sample panels."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..jsonio import write_json
from .metrics import format_bins_table, format_table
from .scoring import EvalResult
from .visualize import DepthColormap, depth_picture, error_colorbar, error_map, panel, save_png, with_colorbar


def modes_table(result: EvalResult, title: str | None = None) -> str:
    """Both modes of one result as a two-row table."""
    return format_table({'metric (as published)': result.metric, 'median-scaled': result.median}, title)


def compare_table(results: Mapping[str, EvalResult], mode: str = 'median') -> str:
    """Several prediction sources side by side (``--compare``), one row per source and mode."""
    rows = {}
    for name, r in results.items():
        rows[f'{name} [metric]'] = r.metric
        rows[f'{name} [median]'] = r.median
    return format_table(rows, 'comparison (same ground truth, same frames per source)')


def counts_text(result: EvalResult) -> str:
    """What could not be scored, by reason (never silently dropped)."""
    lines = [f'frames scored: {result.counts.get("frames_scored", 0)}']
    for k, v in sorted(result.counts.items()):
        if k != 'frames_scored':
            lines.append(f'  skipped/issue: {k}: {v}')
    return '\n'.join(lines)


def write_csv(path: str | Path, rows: Sequence[Mapping]) -> Path:
    """Per-frame CSV (one row per scored frame, columns from the first row)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='') as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    return path


def write_plots(result: EvalResult, out_dir: str | Path, results: Mapping[str, EvalResult] | None = None) -> list[Path]:
    """PNG plots: error by GT distance (abs_rel and rmse per bin) and abs_rel per frame.

    ``results`` (optional) overlays several sources in the same plots.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = results or {result.label or 'prediction': result}
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        for mode, style in (('metric', '-o'), ('median', '--s')):
            bins = r.modes[mode].get('bins', [])
            centres = [0.5 * (b['min_m'] + b['max_m']) for b in bins if b['n_pixels']]
            axes[0].plot(centres, [b['abs_rel'] for b in bins if b['n_pixels']], style, label=f'{name} {mode}')
            axes[1].plot(centres, [b['rmse'] for b in bins if b['n_pixels']], style, label=f'{name} {mode}')
    axes[0].set(xlabel='ground-truth distance (m)', ylabel='abs_rel', title='relative error by distance')
    axes[1].set(xlabel='ground-truth distance (m)', ylabel='rmse (m)', title='RMSE by distance')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / 'error_by_distance.png')
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 3.5))
    for name, r in results.items():
        idx = [row['index'] for row in r.per_frame]
        ax.plot(idx, [row['metric_abs_rel'] for row in r.per_frame], '-o', label=f'{name} metric')
        ax.plot(idx, [row['median_abs_rel'] for row in r.per_frame], '--s', label=f'{name} median-scaled')
    ax.set(xlabel='frame', ylabel='abs_rel', title='abs_rel per frame')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / 'abs_rel_per_frame.png')
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def sample_panel(rgb: np.ndarray, pred: np.ndarray, gt: np.ndarray | None, title: str = '',
                 with_error: bool = True) -> np.ndarray:
    """input | prediction | ground truth (| error map) stacked, at the GT/camera resolution.

    Prediction and ground truth share one colour mapping, normalised per frame as monodepth2
    does (:class:`~packnet_ros.evaluation.visualize.DepthColormap`) on the ground truth's
    depths (the prediction's without ground truth), so equal colours are equal depths; each
    depth row has a colour bar in metres on the right, the error map its own bar.
    """
    import cv2

    from .scoring import resize_depth
    H, W = (gt.shape if gt is not None else rgb.shape[:2])
    pred_full = resize_depth(pred, (H, W), 1e4)
    if rgb.shape[:2] != (H, W):
        rgb = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA)
    # One mapping for both depth rows: from the measured depth when there is ground truth (a
    # network's artefact, e.g. a band of 0.5 m along the bottom rows, then shows as
    # saturation instead of taking the colour range), else from the prediction as published.
    has_gt = gt is not None and bool((np.isfinite(gt) & (gt > 0)).any())
    cmap = DepthColormap.for_depth(gt if has_gt else pred)
    beyond = cv2.resize(np.isposinf(pred).astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
    pred_vis = np.where(beyond, np.inf, pred_full)
    rows = [(f'input {title}'.strip(), with_colorbar(rgb)),
            ('prediction', depth_picture(pred_vis, cmap))]
    if gt is not None:
        rows.append(('LiDAR ground truth (same colours)', depth_picture(gt, cmap, sparse=True)))
        if with_error:
            rows.append(('abs rel error |pred - gt| / gt', with_colorbar(error_map(pred_full, gt),
                                                                         error_colorbar(H))))
    return panel(rows)


def bins_text(result: EvalResult) -> str:
    """Per-distance-bin tables of both modes."""
    return '\n'.join([format_bins_table(result.metric, 'metric: error by ground-truth distance'),
                      format_bins_table(result.median, 'median-scaled: error by ground-truth distance')])


__all__ = ['modes_table', 'compare_table', 'counts_text', 'write_json', 'write_csv', 'write_plots',
           'sample_panel', 'bins_text', 'save_png']
