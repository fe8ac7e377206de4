"""Pictures a person looks at: colourised depth, comparison panels, bird's-eye views.

Images are (H, W, 3) uint8 RGB numpy arrays (write them with :func:`save_png`).
Depth colours use inverse depth on a fixed scale (near = bright), so panels of one run
are comparable; invalid pixels (NaN, or no LiDAR return) are black.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

NEAR_M, FAR_M = 2.0, 80.0


def colorize_depth(depth: np.ndarray, near: float = NEAR_M, far: float = FAR_M, sparse: bool = False) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) RGB (magma on inverse depth); invalid black.

    +Inf (beyond range) is drawn as the far colour. ``sparse`` dilates valid pixels
    (LiDAR ground truth) so single returns are visible.
    """
    d = np.where(np.isposinf(depth), far, depth)
    valid = np.isfinite(d) & (d > 0)
    inv = np.zeros(d.shape, np.float32)
    inv[valid] = (1.0 / np.clip(d[valid], near, far) - 1.0 / far) / (1.0 / near - 1.0 / far)
    img = cv2.applyColorMap((255 * inv).astype(np.uint8), cv2.COLORMAP_MAGMA)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img[~valid] = 0
    if sparse:
        mask = cv2.dilate(valid.astype(np.uint8), np.ones((3, 3), np.uint8))
        grown = cv2.dilate(img, np.ones((3, 3), np.uint8))
        img = np.where(mask[..., None] > 0, np.where(valid[..., None], img, grown), 0).astype(np.uint8)
    return img


def error_map(pred: np.ndarray, gt: np.ndarray, max_rel: float = 0.3) -> np.ndarray:
    """Absolute relative error |pred - gt| / gt at GT pixels, 0 (green) .. max_rel (red); else black."""
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    rel = np.zeros(gt.shape, np.float32)
    rel[valid] = np.clip(np.abs(pred[valid] - gt[valid]) / gt[valid] / max_rel, 0, 1)
    img = np.zeros(gt.shape + (3,), np.uint8)
    img[..., 0] = (255 * rel).astype(np.uint8)
    img[..., 1] = (255 * (1 - rel)).astype(np.uint8)
    img[~valid] = 0
    mask = cv2.dilate(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    grown = cv2.dilate(img, np.ones((3, 3), np.uint8))
    return np.where(mask[..., None], np.where(valid[..., None], img, grown), 0).astype(np.uint8)


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
              overlay: np.ndarray | None = None, overlay_color=(60, 255, 60)) -> np.ndarray:
    """Top-down image of optical-frame points (x right, z forward), camera at the bottom centre.

    Args:
        points: (..., 3) float points in metres (NaN rows ignored).
        colors: (..., 3) uint8 RGB per point, or None to colour by height above the camera
            (-y, turbo colour map over ``height_range``).
        resolution: metres per pixel.
        overlay: optional (..., 3) reference points (e.g. LiDAR) drawn on top in ``overlay_color``.

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
    cv2.drawMarker(img, cam, (255, 255, 255), cv2.MARKER_TRIANGLE_UP, 12, 2)
    return img


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')
    return path
