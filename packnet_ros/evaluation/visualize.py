"""Pictures a person looks at: colourised depth with a colour bar, comparison panels,
bird's-eye views.

Images are (H, W, 3) uint8 RGB numpy arrays (write them with :func:`save_png`).

Depth colours follow monodepth2: the magma colour map over inverse depth (disparity
1/d), normalised per frame with ``vmin`` = the frame's smallest disparity (its farthest
pixel, black-purple) and ``vmax`` = the 95th percentile of its disparities (the nearest 5 %
saturate to pale yellow), so one very near outlier does not squash the rest of the frame
into one colour. A :class:`DepthColormap` holds one such mapping; ground truth of a frame is
drawn with its prediction's mapping, so equal colours mean equal depths within one panel.
:func:`depth_colorbar` draws the mapping as a bar labelled at round depths in metres.

Fixed colours: NaN / -Inf (invalid, too close) and no LiDAR return are black
(``INVALID_RGB``); +Inf (beyond the published range, REP 117) is a flat blue-grey
(``BEYOND_RGB``) that the colour map never produces.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

NEAR_M, FAR_M = 2.0, 80.0
PERCENTILE = 95.0
INVALID_RGB = (0, 0, 0)
BEYOND_RGB = (70, 90, 110)
BAR_STRIP_W = 78
"""Width in pixels of the strip :func:`with_colorbar` adds on the right of an image."""

_MAGMA = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_MAGMA),
                      cv2.COLOR_BGR2RGB)[:, 0]          # (256, 3) RGB, index 0 = far (dark)
_ROUND_DEPTHS = (10.0, 20.0, 5.0, 50.0, 2.0, 30.0, 100.0, 1.0, 80.0, 40.0, 3.0, 15.0, 200.0, 0.5, 60.0, 7.0,
                 4.0, 25.0, 150.0, 300.0, 500.0, 1000.0, 0.2, 0.3, 0.1)   # most round first


def magma(t: np.ndarray) -> np.ndarray:
    """Colour-map positions ``t`` in [0, 1] (clipped; 0 dark, 1 bright) -> (..., 3) uint8 RGB."""
    idx = np.rint(255.0 * np.clip(np.nan_to_num(np.asarray(t, np.float64)), 0.0, 1.0)).astype(np.intp)
    return _MAGMA[idx]


@dataclass(frozen=True)
class DepthColormap:
    """Depth -> colour: position ``t = (1/depth - vmin) / (vmax - vmin)`` on magma, clipped.

    Attributes:
        vmin: disparity (1/m) drawn darkest (the far end, ``far_m = 1 / vmin``).
        vmax: disparity drawn brightest (the near end, ``near_m = 1 / vmax``); nearer saturates.
    """

    vmin: float
    vmax: float

    @classmethod
    def fixed(cls, near: float = NEAR_M, far: float = FAR_M) -> 'DepthColormap':
        """One mapping for ``near`` .. ``far`` metres (comparable between frames)."""
        if not 0 < near < far:
            raise ValueError(f'need 0 < near < far, got {near} and {far}')
        return cls(1.0 / far, 1.0 / near)

    @classmethod
    def for_depth(cls, depth: np.ndarray | None, percentile: float = PERCENTILE) -> 'DepthColormap':
        """Per-frame mapping (monodepth2): ``vmin`` = smallest finite disparity, ``vmax`` = its
        ``percentile``-th percentile. Without a finite positive depth: :meth:`fixed`."""
        if depth is None:
            return cls.fixed()
        d = np.asarray(depth, np.float64)
        ok = np.isfinite(d) & (d > 0)
        if not ok.any():
            return cls.fixed()
        disp = 1.0 / d[ok]
        vmin, vmax = float(disp.min()), float(np.percentile(disp, percentile))
        if not vmax > vmin * (1 + 1e-6):   # (nearly) constant depth: a small range around it
            vmin, vmax = vmin / 1.1, vmin * 1.1
        return cls(vmin, vmax)

    @property
    def near_m(self) -> float:
        return 1.0 / self.vmax

    @property
    def far_m(self) -> float:
        return 1.0 / self.vmin

    def position(self, depth) -> np.ndarray:
        """Colour-map position in [0, 1] of (finite, positive) depths; 1 = near."""
        d = np.asarray(depth, np.float64)
        with np.errstate(divide='ignore', invalid='ignore'):
            t = (1.0 / d - self.vmin) / (self.vmax - self.vmin)
        return np.clip(t, 0.0, 1.0)

    def colours(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) metres -> (H, W, 3) uint8 RGB; NaN / -Inf / <= 0 ``INVALID_RGB``, +Inf ``BEYOND_RGB``."""
        d = np.asarray(depth, np.float64)
        valid = np.isfinite(d) & (d > 0)
        img = magma(np.where(valid, self.position(np.where(valid, d, 1.0)), 0.0))
        img[~valid] = INVALID_RGB
        img[np.isposinf(d)] = BEYOND_RGB
        return img


def colorize_depth(depth: np.ndarray, near: float | None = None, far: float | None = None, sparse: bool = False,
                   cmap: DepthColormap | None = None) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) RGB (magma on inverse depth, see the module docstring).

    Args:
        depth: metres; NaN invalid, +Inf beyond range (REP 117), 0 / NaN no return (sparse).
        near, far: a fixed mapping for ``near`` .. ``far`` metres (both needed) instead of the
            per-frame normalisation.
        sparse: LiDAR ground truth: every return is dilated to 3x3 pixels so it is visible
            (the nearest return wins where they overlap); no return is black.
        cmap: the mapping to use (e.g. the prediction's for its ground truth); overrides
            ``near``/``far``.
    """
    if cmap is None:
        cmap = DepthColormap.fixed(near, far) if near is not None and far is not None else \
            DepthColormap.for_depth(depth)
    if not sparse:
        return cmap.colours(depth)
    d = np.asarray(depth, np.float32)
    disp = np.zeros(d.shape, np.float32)
    ok = np.isfinite(d) & (d > 0)
    disp[ok] = 1.0 / d[ok]
    grown = cv2.dilate(disp, np.ones((3, 3), np.uint8))     # max disparity = the nearest return
    with np.errstate(divide='ignore'):
        dense = np.where(grown > 0, 1.0 / grown, np.nan)
    return cmap.colours(dense)


@dataclass
class ColorBar:
    """A vertical colour bar image and where its labels are.

    Attributes:
        image: (H, w, 3) uint8 RGB strip.
        ticks: ``(row, value, label)`` per label, top to bottom; the bar's colour at ``row``
            is the colour of ``value`` (metres for depth bars).
        bar_columns: ``(first, last + 1)`` columns of the coloured bar in ``image``.
    """

    image: np.ndarray
    ticks: list
    bar_columns: tuple[int, int]


SWATCH_H = 15


def _bar_geometry(height: int, n_swatches: int = 0) -> tuple[int, int]:
    """First and last row of a bar in a strip of ``height`` rows (room for the end labels
    and ``n_swatches`` swatches under the bar)."""
    top = min(12, max(0, height // 10))
    return top, max(top + 1, height - 1 - top - SWATCH_H * n_swatches)


def colorbar(height: int, colour_at: Callable[[np.ndarray], np.ndarray],
             ticks: Sequence[tuple[float, float, str]], width: int = BAR_STRIP_W,
             swatches: Sequence[tuple[tuple[int, int, int], str]] = ()) -> ColorBar:
    """A vertical colour bar: position 1 at the top, 0 at the bottom.

    Args:
        height: rows of the strip (the image it goes beside).
        colour_at: positions (n,) in [0, 1] -> (n, 3) uint8 RGB.
        ticks: ``(position, value, label)``; drawn as a tick and its label beside the bar.
        width: columns of the strip.
        swatches: fixed colours explained under the labels (``(rgb, text)``), e.g. "beyond".
    """
    img = np.full((height, width, 3), 16, np.uint8)
    top, bottom = _bar_geometry(height, len(swatches))
    x0, x1 = 4, 18
    rows = np.arange(top, bottom + 1)
    pos = 1.0 - (rows - top) / max(1, bottom - top)
    img[top:bottom + 1, x0:x1] = colour_at(pos)[:, None, :]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4 if height >= 120 else 0.3
    drawn = []
    for p, value, label in ticks:
        row = int(round(top + (1.0 - float(p)) * (bottom - top)))
        cv2.line(img, (x1, row), (x1 + 4, row), (230, 230, 230), 1)
        (_, th), _ = cv2.getTextSize(label, font, scale, 1)
        y = int(np.clip(row + th // 2, th + 1, height - 2))
        cv2.putText(img, label, (x1 + 7, y), font, scale, (230, 230, 230), 1, cv2.LINE_AA)
        drawn.append((row, value, label))
    for k, (rgb, text) in enumerate(swatches):   # under the bar
        y1 = min(height - 2, bottom + SWATCH_H * (k + 1))
        cv2.rectangle(img, (x0, y1 - 9), (x1 - 1, y1), tuple(int(c) for c in rgb), -1)
        cv2.rectangle(img, (x0, y1 - 9), (x1 - 1, y1), (230, 230, 230), 1)
        cv2.putText(img, text, (x1 + 4, y1), font, scale, (230, 230, 230), 1, cv2.LINE_AA)
    return ColorBar(img, sorted(drawn, key=lambda t: t[0]), (x0, x1))


def depth_ticks(cmap: DepthColormap, height: int, max_ticks: int = 6, min_gap_px: int = 16,
                n_swatches: int = 0) -> list:
    """``(position, depth_m, label)`` at round depths inside the mapping's range, at least
    ``min_gap_px`` apart on a bar in a strip of ``height`` rows (the roundest depths first)."""
    top, bottom = _bar_geometry(height, n_swatches)
    span = max(1, bottom - top)
    lo, hi = cmap.near_m, cmap.far_m
    chosen: list[tuple[float, float, str]] = []
    for d in _ROUND_DEPTHS:
        if not lo <= d <= hi:
            continue
        p = float(cmap.position(d))
        if all(abs(p - q) * span >= min_gap_px for q, _, _ in chosen):
            chosen.append((p, d, f'{d:g} m'))
        if len(chosen) >= max_ticks:
            break
    if not chosen:   # a narrow range without a round depth inside: label its ends
        chosen = [(1.0, lo, f'{lo:.3g} m'), (0.0, hi, f'{hi:.3g} m')]
    return sorted(chosen, key=lambda c: -c[0])


def depth_colorbar(cmap: DepthColormap, height: int, width: int = BAR_STRIP_W, beyond: bool = False) -> ColorBar:
    """The colour bar of ``cmap`` labelled in metres (near at the top); ``beyond`` adds the
    swatch of +Inf pixels."""
    swatches = [(BEYOND_RGB, 'beyond')] if beyond else []
    return colorbar(height, magma, depth_ticks(cmap, height, n_swatches=len(swatches)), width, swatches)


def with_colorbar(img: np.ndarray, bar: ColorBar | None = None) -> np.ndarray:
    """``img`` with a colour bar strip on its right (a blank strip of the same width when
    ``bar`` is None, to keep rows of a panel aligned)."""
    strip = np.full((img.shape[0], BAR_STRIP_W, 3), 16, np.uint8) if bar is None else bar.image
    if strip.shape[0] != img.shape[0]:
        raise ValueError(f'colour bar has {strip.shape[0]} rows, image {img.shape[0]}')
    return np.concatenate([img, strip], 1)


def depth_picture(depth: np.ndarray, cmap: DepthColormap | None = None, sparse: bool = False) -> np.ndarray:
    """Colourised depth (per-frame mapping unless ``cmap``) with its colour bar on the right."""
    cmap = cmap or DepthColormap.for_depth(depth)
    beyond = bool(np.isposinf(depth).any())
    return with_colorbar(colorize_depth(depth, sparse=sparse, cmap=cmap),
                         depth_colorbar(cmap, depth.shape[0], beyond=beyond))


ERROR_MAX_REL = 0.3


def _error_colours(t: np.ndarray) -> np.ndarray:
    t = np.clip(np.asarray(t, np.float64), 0.0, 1.0)
    return np.stack([255 * t, 255 * (1 - t), np.zeros_like(t)], -1).astype(np.uint8)


def error_map(pred: np.ndarray, gt: np.ndarray, max_rel: float = ERROR_MAX_REL) -> np.ndarray:
    """Absolute relative error |pred - gt| / gt at GT pixels, 0 (green) .. max_rel (red); else black."""
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    rel = np.zeros(gt.shape, np.float32)
    rel[valid] = np.clip(np.abs(pred[valid] - gt[valid]) / gt[valid] / max_rel, 0, 1)
    img = _error_colours(rel)
    img[~valid] = 0
    mask = cv2.dilate(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    grown = cv2.dilate(img, np.ones((3, 3), np.uint8))
    return np.where(mask[..., None], np.where(valid[..., None], img, grown), 0).astype(np.uint8)


def error_colorbar(height: int, max_rel: float = ERROR_MAX_REL, width: int = BAR_STRIP_W) -> ColorBar:
    """The colour bar of :func:`error_map` (0 at the bottom, ``max_rel`` and above at the top)."""
    ticks = [(v / max_rel, v, f'{v:g}') for v in np.linspace(0, max_rel, 4)[:-1]]
    ticks.append((1.0, max_rel, f'>={max_rel:g}'))
    return colorbar(height, _error_colours, ticks, width)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def panel(rows: list[tuple[str, np.ndarray]], width: int | None = None) -> np.ndarray:
    """Stack labelled RGB images vertically, each resized to ``width`` (default: the first's)."""
    width = width or rows[0][1].shape[1]
    out = []
    for text, img in rows:
        h = int(round(img.shape[0] * width / img.shape[1]))
        out.append(_label(cv2.resize(img, (width, h), interpolation=cv2.INTER_NEAREST), text))
    return np.concatenate(out, 0)


def birds_eye(points: np.ndarray, colors: np.ndarray | None = None, x_range=(-20.0, 20.0),
              z_range=(0.0, 60.0), resolution: float = 0.1, height_range=(-3.0, 1.5),
              overlay: np.ndarray | None = None, overlay_color=(60, 255, 60),
              overlays: Sequence[tuple[np.ndarray, tuple[int, int, int], int]] = ()) -> np.ndarray:
    """Top-down image of optical-frame points (x right, z forward), camera at the bottom centre.

    Args:
        points: (..., 3) float points in metres (NaN rows ignored).
        colors: (..., 3) uint8 RGB per point, or None to colour by height above the camera
            (-y, turbo colour map over ``height_range``).
        resolution: metres per pixel.
        overlay: optional (..., 3) reference points (e.g. LiDAR) drawn on top in ``overlay_color``.
        overlays: further (points (..., 3) in the same optical frame, RGB colour, dot radius in
            pixels) drawn on top in order (e.g. the obstacle cloud and the scan returns).

    Returns:
        RGB image with 10 m range rings.
    """
    p = points.reshape(-1, 3)
    ok = np.isfinite(p).all(1)
    W = int(round((x_range[1] - x_range[0]) / resolution))
    H = int(round((z_range[1] - z_range[0]) / resolution))
    img = np.full((H, W, 3), 24, np.uint8)
    cam = (int(round(-x_range[0] / resolution)), H - 1)
    for r in range(10, int(z_range[1]) + 1, 10):
        cv2.circle(img, cam, int(r / resolution), (70, 70, 70), 1, cv2.LINE_AA)
        cv2.putText(img, f'{r} m', (cam[0] + 4, cam[1] - int(r / resolution) + 14), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (120, 120, 120), 1, cv2.LINE_AA)
    p = p[ok]
    u = ((p[:, 0] - x_range[0]) / resolution).astype(np.int64)
    v = (H - 1 - (p[:, 2] - z_range[0]) / resolution).astype(np.int64)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    if colors is not None:
        c = colors.reshape(-1, 3)[ok][inside]
    else:
        hgt = np.clip((-p[inside, 1] - height_range[0]) / (height_range[1] - height_range[0]), 0, 1)
        c = cv2.cvtColor(cv2.applyColorMap((255 * hgt).astype(np.uint8)[:, None], cv2.COLORMAP_TURBO),
                         cv2.COLOR_BGR2RGB)[:, 0]
    img[v[inside], u[inside]] = c
    if overlay is not None:
        q = overlay.reshape(-1, 3)
        q = q[np.isfinite(q).all(1)]
        qu = ((q[:, 0] - x_range[0]) / resolution).astype(np.int64)
        qv = (H - 1 - (q[:, 2] - z_range[0]) / resolution).astype(np.int64)
        ok_q = (qu >= 0) & (qu < W) & (qv >= 0) & (qv < H)
        img[qv[ok_q], qu[ok_q]] = overlay_color
    for pts, color, radius in overlays:
        q = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
        q = q[np.isfinite(q).all(1)]
        qu = ((q[:, 0] - x_range[0]) / resolution).astype(np.int64)
        qv = (H - 1 - (q[:, 2] - z_range[0]) / resolution).astype(np.int64)
        ok_q = (qu >= 0) & (qu < W) & (qv >= 0) & (qv < H)
        for a, b in zip(qu[ok_q], qv[ok_q]):
            cv2.circle(img, (int(a), int(b)), radius, color, -1)
    cv2.drawMarker(img, cam, (255, 255, 255), cv2.MARKER_TRIANGLE_UP, 12, 2)
    return img


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')
    return path
