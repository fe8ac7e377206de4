"""IP-Basic: classical depth completion with image morphology (no learning, no RGB).

Ku, Harakeh & Waslander, "In Defense of Classical Image Processing: Fast Depth Completion
on the CPU", CRV 2018 (arXiv 1802.00036; reference code MIT). Written here from the paper's
description of the steps (facts in SEEDS_BRIEF C, "IP-Basic").

Both variants work on **inverted** depth ``d' = max_depth - d`` on the valid pixels
(d > 0.1 m; empty pixels stay 0). Greyscale dilation (a max filter) then spreads the
*nearest* return of a neighbourhood, so foreground edges win over the background, and a
closing fills small gaps without eroding near objects. At the end the valid pixels are
inverted back.

``fill_in_fast`` (the paper's method):
    1. invert; 2. dilate with the 5x5 diamond kernel; 3. close with a 5x5 full kernel;
    4. fill the still-empty pixels from a 7x7 full dilation; 5. optionally extrapolate:
    copy each column's top valid value up to row 0, then fill the remaining empty pixels
    from a 31x31 full dilation; 6. 5x5 median blur; 7. ``bilateral`` (d 5, sigma colour 1.5,
    sigma space 2.0) or ``gaussian`` (5x5, applied to the valid pixels only); 8. re-invert.

``fill_in_multiscale``:
    1. invert; 2. dilate by depth range, each range on its own (<= 15 m: cross 7x7,
    15-30 m: cross 5x5, > 30 m: cross 3x3) and merged far -> near (nearer overrides);
    3. close 5x5 full; 4. 5x5 median on the valid pixels; 5. top mask (pixels above each
    column's top valid pixel) and fill of the empty pixels below it from a 9x9 full dilation;
    6. extend each column's top value to row 0 (``extrapolate``) or keep the top mask;
    7. six rounds of filling the empty pixels under the mask from a 5x5 full dilation;
    8. 5x5 median on the valid masked pixels; 9. ``bilateral`` (5, 0.5, 2.0) or ``gaussian``
    5x5 on the valid masked pixels; 10. re-invert.

Input and output: (H, W) float32 depth in metres along the optical axis, 0 = empty
(NaN and non-positive values are read as empty; returns at or beyond ``max_depth - 0.1``
cannot be represented in the inverted image and are dropped). The output has 0 where the
method leaves a pixel empty (above the top return of a column without extrapolation, or a
frame without any return). The image frame is the camera's (row 0 = top), since
"extrapolation to the top" assumes the sky side is up.
"""
from __future__ import annotations

import cv2
import numpy as np

MODES = ('fast', 'multiscale')
BLURS = ('gaussian', 'bilateral')
MAX_DEPTH_M = 100.0
"""Inversion constant of IP-Basic (``d' = 100 - d``)."""
_VALID = 0.1  # IP-Basic's validity threshold (metres, on depth and inverted depth alike)


def _full(n: int) -> np.ndarray:
    return np.ones((n, n), np.uint8)


def _cross(n: int) -> np.ndarray:
    k = np.zeros((n, n), np.uint8)
    k[n // 2, :] = 1
    k[:, n // 2] = 1
    return k


def _diamond(n: int) -> np.ndarray:
    r = n // 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (np.abs(yy) + np.abs(xx) <= r).astype(np.uint8)


FULL_5, FULL_7, FULL_9, FULL_31 = _full(5), _full(7), _full(9), _full(31)
CROSS_3, CROSS_5, CROSS_7 = _cross(3), _cross(5), _cross(7)
DIAMOND_5, DIAMOND_7 = _diamond(5), _diamond(7)


def _prepare(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """Valid depths inverted (float32, contiguous), empty = 0."""
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f'depth must be a (H, W) image, got shape {d.shape}')
    if min(d.shape) < 5:
        raise ValueError(f'depth image too small for IP-Basic\'s 5x5 filters: {d.shape}')
    d = np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
    valid = (d > _VALID) & (d < max_depth - _VALID)
    return np.where(valid, max_depth - d, 0.0).astype(np.float32)


def _finish(inv: np.ndarray, max_depth: float) -> np.ndarray:
    valid = inv > _VALID
    return np.where(valid, max_depth - inv, 0.0).astype(np.float32)


def _fill_from(img: np.ndarray, kernel: np.ndarray, where: np.ndarray | None = None) -> None:
    """Empty pixels (< 0.1; and ``where``) take the value of a dilation with ``kernel`` (in place)."""
    empty = img < _VALID
    if where is not None:
        empty &= where
    dilated = cv2.dilate(img, kernel)
    img[empty] = dilated[empty]


def _top_rows(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of each column's top valid pixel, whether the column has one)."""
    valid = img > _VALID
    return np.argmax(valid, axis=0), np.asarray(valid.any(axis=0))


def _below_top(img: np.ndarray) -> np.ndarray:
    """True at and below each column's top valid pixel (a column without one is all True,
    as in IP-Basic: its first valid row is taken as row 0)."""
    top, _ = _top_rows(img)
    return np.arange(img.shape[0])[:, None] >= top[None, :]


def _extend_to_top(img: np.ndarray) -> None:
    """Copy each column's top valid value up to row 0 (in place)."""
    top, has = _top_rows(img)
    cols = np.arange(img.shape[1])
    values = img[top, cols]
    above = (np.arange(img.shape[0])[:, None] < top[None, :]) & has[None, :]
    img[above] = np.broadcast_to(values[None, :], img.shape)[above]


def _blur(img: np.ndarray, blur: str, where: np.ndarray, sigma_color: float) -> None:
    """The final smoothing on ``where`` (in place): bilateral (5, sigma_color, 2.0) or 5x5 Gaussian."""
    if blur == 'bilateral':
        out = cv2.bilateralFilter(img, 5, sigma_color, 2.0)
    elif blur == 'gaussian':
        out = cv2.GaussianBlur(img, (5, 5), 0)
    else:
        raise ValueError(f'blur must be one of {BLURS}, got {blur!r}')
    img[where] = out[where]


def fill_in_fast(depth: np.ndarray, max_depth: float = MAX_DEPTH_M, kernel: np.ndarray = DIAMOND_5,
                 extrapolate: bool = True, blur: str = 'gaussian') -> np.ndarray:
    """IP-Basic's fast completion (the paper's method; steps in the module docstring).

    Args:
        depth: (H, W) sparse depth in metres, 0 (or NaN) = empty.
        max_depth: inversion constant (100 m; returns beyond it are dropped).
        kernel: the first dilation's structuring element (uint8; default 5x5 diamond).
        extrapolate: extend each column's top value to row 0 and fill large holes (31x31).
        blur: ``gaussian`` (the paper's best RMSE) or ``bilateral``.

    Returns:
        (H, W) float32 dense depth in metres, 0 where still empty.
    """
    if blur not in BLURS:
        raise ValueError(f'blur must be one of {BLURS}, got {blur!r}')
    inv = _prepare(depth, max_depth)
    inv = cv2.dilate(inv, kernel)
    inv = cv2.morphologyEx(inv, cv2.MORPH_CLOSE, FULL_5)
    _fill_from(inv, FULL_7)
    if extrapolate:
        _extend_to_top(inv)
        _fill_from(inv, FULL_31)
    inv = cv2.medianBlur(inv, 5)
    if blur == 'bilateral':
        inv = cv2.bilateralFilter(inv, 5, 1.5, 2.0)
    else:
        _blur(inv, 'gaussian', inv > _VALID, 0.0)
    return _finish(inv, max_depth)


def fill_in_multiscale(depth: np.ndarray, max_depth: float = MAX_DEPTH_M, extrapolate: bool = False,
                       blur: str = 'bilateral') -> np.ndarray:
    """IP-Basic's multi-scale completion (steps in the module docstring).

    Args:
        depth: (H, W) sparse depth in metres, 0 (or NaN) = empty.
        max_depth: inversion constant (100 m).
        extrapolate: extend each column's top value to row 0 (else the region above the
            top return stays empty).
        blur: ``bilateral`` (published configuration) or ``gaussian``.

    Returns:
        (H, W) float32 dense depth in metres, 0 where still empty.
    """
    if blur not in BLURS:
        raise ValueError(f'blur must be one of {BLURS}, got {blur!r}')
    d = np.nan_to_num(np.asarray(depth, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    inv = _prepare(d, max_depth)
    valid = inv > _VALID
    near = valid & (d <= 15.0)
    med = valid & (d > 15.0) & (d <= 30.0)
    far = valid & (d > 30.0)
    merged = inv.copy()
    for mask, kernel in ((far, CROSS_3), (med, CROSS_5), (near, CROSS_7)):  # far -> near: nearer wins
        dilated = cv2.dilate(np.where(mask, inv, 0.0).astype(np.float32), kernel)
        hit = dilated > _VALID
        merged[hit] = dilated[hit]
    closed = cv2.morphologyEx(merged, cv2.MORPH_CLOSE, FULL_5)
    median = cv2.medianBlur(closed, 5)
    work = closed.copy()
    valid = closed > _VALID
    work[valid] = median[valid]
    _fill_from(work, FULL_9, where=_below_top(work))
    if extrapolate:
        _extend_to_top(work)
        mask = np.ones(work.shape, bool)
    else:
        mask = _below_top(work)
    for _ in range(6):
        _fill_from(work, FULL_5, where=mask)
    median = cv2.medianBlur(work, 5)
    valid = (work > _VALID) & mask
    work[valid] = median[valid]
    _blur(work, blur, (work > _VALID) & mask, 0.5)
    return _finish(work, max_depth)


__all__ = ['MODES', 'BLURS', 'MAX_DEPTH_M', 'fill_in_fast', 'fill_in_multiscale', 'FULL_5', 'FULL_7', 'FULL_9',
           'FULL_31', 'CROSS_3', 'CROSS_5', 'CROSS_7', 'DIAMOND_5', 'DIAMOND_7']
