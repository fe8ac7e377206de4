"""Edge-aware refinement of the pipeline's depth, guided by the camera image (no ROS).

Three methods, one stage (:class:`RefineStage`, name ``refine``, inserted after ``depth``):

* ``guided``: joint guided filter (He, Sun & Tang, "Guided Image Filtering", TPAMI 2013;
  ``cv2.ximgproc.guidedFilter``) of the inverse depth, the RGB image as the guide: locally the output is an affine function of the image, so depth edges that
  coincide with image edges stay sharp while flat regions are averaged over the window.
* ``fgs``: fast global smoother (Min et al., "Fast Global Image Smoothing Based on Weighted
  Least Squares", TIP 2014; ``cv2.ximgproc.fastGlobalSmootherFilter``): weighted least
  squares with edge weights from the RGB image, solved by separable 1-D passes.
* ``crf``: dense CRF (Kraehenbuehl & Koltun, "Efficient Inference in Fully Connected CRFs
  with Gaussian Edge Potentials", NeurIPS 2011; ``pydensecrf2``) over K depth labels
  spaced uniformly in log depth (equal relative steps, as abs_rel weighs errors) between
  the frame's smallest and largest finite depth, with two extra labels beyond each end so
  that the extreme pixels are not pulled inwards. Unary:
  ``-log softmax(-(x - l_k)^2 / (2 sigma^2))`` with x the pixel's log inverse depth and
  sigma in label spacings (the network's depth is the evidence); pairwise: a Gaussian (smoothness) and a
  bilateral (position + RGB) kernel with a truncated-linear label compatibility
  ``w * min(|i - j|, t) / t`` (neighbouring labels cost little, far ones at most ``w``);
  mean-field inference; decoded as the expectation of the log depth under the
  marginals (``expectation``, continuous) or the most probable label (``map``).

All methods work on inverse depth (1/m: bounded, the network's own output, and the
quantity in which the depth of a distant surface is well conditioned). Non-finite pixels
(REP 117: +Inf beyond ``max_depth_m``, -Inf below ``min_depth_m``, NaN invalid) never enter
a filter: the linear filters are normalised by the filtered validity mask
(``F(m * x) / F(m)``, normalised convolution), the CRF gets a uniform unary there. After
filtering the marking is restored on those pixels and re-applied to refined values that
leave the range.

Dependencies: ``opencv-contrib-python-headless`` (``cv2.ximgproc``) for guided / fgs,
``pydensecrf2`` (imports as ``pydensecrf``) for crf; both imported when a stage is built.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

REFINEMENTS = ('none', 'guided', 'fgs', 'crf')
"""Refinement methods; ``none`` means no stage."""
CRF_DECODES = ('expectation', 'map')
DOMAINS = ('log', 'inverse')
_MIN_WEIGHT = 1e-3  # filtered validity below this: too far from any valid pixel, keep the input


@dataclass(frozen=True)
class RefineSettings:
    """Refinement method and its parameters (pixel sizes at the depth's resolution: the
    network input, 640x192 for the shipped model, or the camera with
    ``output_resolution: camera``).

    Attributes:
        method: ``guided``, ``fgs`` or ``crf`` (``none`` is allowed and does nothing).
        domain: what guided / fgs filter: ``log`` (log inverse depth = -log depth) or
            ``inverse`` (inverse depth); the CRF's labels are always uniform in log depth.
        guided_radius: guided filter window radius in pixels (window 2r+1).
        guided_eps: guided filter regularisation, in (RGB in [0, 1])^2 units: image
            variations with a variance well below eps are smoothed over, above it followed.
        fgs_lambda: fast global smoother regularisation (larger: smoother).
        fgs_sigma_color: fast global smoother colour sigma, RGB 0..255 units.
        fgs_iterations: fast global smoother passes (3 is the usual).
        crf_labels: CRF depth labels K (uniform in log depth over the frame's range).
        crf_iterations: mean-field iterations.
        crf_unary_sigma: width of the unary in label spacings.
        crf_gaussian_sxy, crf_gaussian_weight: smoothness kernel (pixels, weight).
        crf_bilateral_sxy, crf_bilateral_srgb, crf_bilateral_weight: appearance kernel
            (pixels, RGB 0..255 units, weight).
        crf_truncation: labels after which the compatibility stops growing.
        crf_decode: ``expectation`` or ``map``.

    Raises:
        ValueError: (at construction) an unknown method / decode or a value out of range.
    """

    method: str = 'guided'
    domain: str = 'log'
    guided_radius: int = 4
    guided_eps: float = 1e-3
    fgs_lambda: float = 30.0
    fgs_sigma_color: float = 8.0
    fgs_iterations: int = 3
    crf_labels: int = 32
    crf_iterations: int = 5
    crf_unary_sigma: float = 1.0
    crf_gaussian_sxy: float = 3.0
    crf_gaussian_weight: float = 3.0
    crf_bilateral_sxy: float = 20.0
    crf_bilateral_srgb: float = 13.0
    crf_bilateral_weight: float = 5.0
    crf_truncation: int = 4
    crf_decode: str = 'expectation'

    def __post_init__(self):
        errors = []
        if self.method not in REFINEMENTS:
            errors.append(f'method must be one of {REFINEMENTS}, got {self.method!r}')
        if self.domain not in DOMAINS:
            errors.append(f'domain must be one of {DOMAINS}, got {self.domain!r}')
        if self.crf_decode not in CRF_DECODES:
            errors.append(f'crf_decode must be one of {CRF_DECODES}, got {self.crf_decode!r}')
        for name in ('guided_radius', 'fgs_iterations', 'crf_iterations', 'crf_truncation'):
            if int(getattr(self, name)) < 1:
                errors.append(f'{name} must be >= 1, got {getattr(self, name)}')
        if int(self.crf_labels) < 2:
            errors.append(f'crf_labels must be >= 2, got {self.crf_labels}')
        for name in ('guided_eps', 'fgs_lambda', 'fgs_sigma_color', 'crf_unary_sigma', 'crf_gaussian_sxy',
                     'crf_bilateral_sxy', 'crf_bilateral_srgb'):
            if not float(getattr(self, name)) > 0:
                errors.append(f'{name} must be > 0, got {getattr(self, name)}')
        for name in ('crf_gaussian_weight', 'crf_bilateral_weight'):
            if not float(getattr(self, name)) >= 0:
                errors.append(f'{name} must be >= 0, got {getattr(self, name)}')
        if errors:
            raise ValueError('; '.join(errors))

    def replace(self, **changes) -> 'RefineSettings':
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- imports
def _ximgproc() -> Any:
    import cv2
    if not hasattr(cv2, 'ximgproc'):
        raise ImportError('cv2.ximgproc is missing: refinement "guided" / "fgs" needs opencv-contrib-python-headless '
                          '(uninstall opencv-python-headless first: both provide cv2)')
    return cv2.ximgproc


def _densecrf() -> Any:
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:
        raise ImportError(f'refinement "crf" needs pydensecrf2 (pip install pydensecrf2; imports as pydensecrf): '
                          f'{exc}') from None
    return dcrf


def check_available(method: str) -> None:
    """Raise ImportError (with what to install) when ``method``'s library is missing."""
    if method in ('guided', 'fgs'):
        _ximgproc()
    elif method == 'crf':
        _densecrf()


# ----------------------------------------------------------------------------- helpers
def _check(depth: np.ndarray, rgb: np.ndarray) -> None:
    if depth.ndim != 2:
        raise ValueError(f'depth must be (H, W), got {depth.shape}')
    if rgb.shape[:2] != depth.shape or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'rgb must be (H, W, 3) with the depth\'s (H, W) {depth.shape}, got {rgb.shape}')


def _to_inverse(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inverse depth with 0 on invalid pixels, validity mask) of a REP 117 depth map."""
    with np.errstate(invalid='ignore', divide='ignore'):
        valid = np.isfinite(depth) & (depth > 0)
        inv = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0).astype(np.float32)
    return inv, valid


def _from_inverse(inv: np.ndarray, depth: np.ndarray, valid: np.ndarray, max_depth: float,
                  min_depth: float) -> np.ndarray:
    """Refined inverse depth -> depth on the valid pixels, the input's marking elsewhere;
    values leaving the range are marked as the pipeline does (+Inf deeper than
    ``max_depth``, also for inverse depth <= 0; -Inf shallower than ``min_depth`` > 0)."""
    out = depth.astype(np.float32, copy=True)
    with np.errstate(divide='ignore', invalid='ignore'):
        d = np.where(inv > 0, 1.0 / np.where(inv > 0, inv, 1.0), np.inf).astype(np.float32)
    d[d > max_depth] = np.inf
    if min_depth > 0:
        d[d < min_depth] = -np.inf
    out[valid] = d[valid]
    return out


def _normalised(filt, inv: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``filt(valid * inv) / filt(valid)`` (the input where the filtered mask is ~0)."""
    if valid.all():
        return filt(inv)
    m = valid.astype(np.float32)
    num = filt(inv * m)
    den = filt(m)
    with np.errstate(divide='ignore', invalid='ignore'):
        out = np.where(den > _MIN_WEIGHT, num / np.maximum(den, _MIN_WEIGHT), inv)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- the methods
def guided_filter_inverse(inv: np.ndarray, valid: np.ndarray, rgb: np.ndarray, radius: int = 4,
                          eps: float = 1e-3) -> np.ndarray:
    """Joint guided filter of inverse depth (H, W) float32 with the RGB image (H, W, 3) uint8
    as guide (``eps`` in RGB-in-[0, 1] units); ``valid`` pixels only (normalised). Returns (H, W) float32."""
    xi = _ximgproc()
    # uint8 guide with eps in 0..255 units: OpenCV 5's 3-channel float32 guide path ignores
    # the guide (the output is a plain box blur; checked in test_refine)
    guide = np.ascontiguousarray(rgb, dtype=np.uint8)
    eps_255 = float(eps) * 255.0 ** 2
    return _normalised(lambda s: xi.guidedFilter(guide, np.ascontiguousarray(s, dtype=np.float32), int(radius),
                                                 eps_255, dDepth=-1), inv, valid)


def fgs_filter_inverse(inv: np.ndarray, valid: np.ndarray, rgb: np.ndarray, lam: float = 30.0,
                       sigma_color: float = 8.0, iterations: int = 3) -> np.ndarray:
    """Fast global smoother of inverse depth (H, W) float32, RGB (H, W, 3) uint8 guide;
    ``valid`` pixels only (normalised, the confidence form of Min et al.). Returns float32."""
    xi = _ximgproc()
    guide = np.ascontiguousarray(rgb, dtype=np.uint8)
    return _normalised(lambda s: xi.fastGlobalSmootherFilter(guide, np.ascontiguousarray(s, dtype=np.float32),
                                                             float(lam), float(sigma_color),
                                                             lambda_attenuation=0.25, num_iter=int(iterations)),
                       inv, valid)


CRF_LABEL_MARGIN = 2
"""Labels beyond each end of the frame's range (when K > 2 * margin + 1)."""


def crf_labels(x: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """K label values uniform between the smallest and largest valid value of ``x`` (log
    inverse depth), extended by :data:`CRF_LABEL_MARGIN` spacings beyond each end (a spread
    of at least 1e-6)."""
    lo, hi = float(x[valid].min()), float(x[valid].max())
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    k = int(k)
    m = CRF_LABEL_MARGIN if k > 2 * CRF_LABEL_MARGIN + 1 else 0
    step = (hi - lo) / (k - 1 - 2 * m)
    return np.linspace(lo - m * step, hi + m * step, k, dtype=np.float64)


def crf_unary(x: np.ndarray, valid: np.ndarray, labels: np.ndarray, sigma_labels: float = 1.0) -> np.ndarray:
    """Unary energies (K, H*W) float32, C-contiguous: ``-log softmax_k(-(x - l_k)^2 / (2 s^2))``
    with ``s = sigma_labels * spacing``; uniform (log K) on invalid pixels."""
    k = labels.size
    spacing = float(labels[1] - labels[0])
    s = max(sigma_labels * spacing, 1e-12)
    x = x.reshape(1, -1).astype(np.float64)
    logits = -((x - labels[:, None]) ** 2) / (2.0 * s * s)
    logits -= logits.max(axis=0, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=0, keepdims=True))
    u = -log_p
    u[:, ~valid.reshape(-1)] = np.log(k)
    return np.ascontiguousarray(u, dtype=np.float32)


def crf_refine_inverse(inv: np.ndarray, valid: np.ndarray, rgb: np.ndarray,
                       settings: RefineSettings | None = None) -> np.ndarray:
    """Dense-CRF refinement of inverse depth (module docstring; labels in log inverse depth =
    -log depth). Returns (H, W) float32."""
    s = settings or RefineSettings(method='crf')
    if not valid.any():
        return inv
    dcrf = _densecrf()
    h, w = inv.shape
    x = np.log(np.where(valid, inv, 1.0)).astype(np.float64)
    labels = crf_labels(x, valid, s.crf_labels)
    k = labels.size
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(crf_unary(x, valid, labels, s.crf_unary_sigma))
    idx = np.arange(k)
    t = int(s.crf_truncation)
    base = (np.minimum(np.abs(idx[:, None] - idx[None, :]), t) / t).astype(np.float32)
    if s.crf_gaussian_weight > 0:
        crf.addPairwiseGaussian(sxy=s.crf_gaussian_sxy, compat=np.ascontiguousarray(s.crf_gaussian_weight * base))
    if s.crf_bilateral_weight > 0:
        crf.addPairwiseBilateral(sxy=s.crf_bilateral_sxy, srgb=s.crf_bilateral_srgb,
                                 rgbim=np.ascontiguousarray(rgb, dtype=np.uint8),
                                 compat=np.ascontiguousarray(s.crf_bilateral_weight * base))
    q = np.asarray(crf.inference(int(s.crf_iterations)), dtype=np.float32).reshape(k, h * w)
    if s.crf_decode == 'map':
        out = labels[np.argmax(q, axis=0)]
    else:
        out = (labels[:, None] * q).sum(axis=0) / np.maximum(q.sum(axis=0), 1e-12)
    out = np.exp(out.reshape(h, w)).astype(np.float32)
    return np.where(valid, out, inv).astype(np.float32)


def refine_depth(depth: np.ndarray, rgb: np.ndarray, settings: RefineSettings, max_depth: float = np.inf,
                 min_depth: float = 0.0) -> np.ndarray:
    """Refine a REP 117 depth map (H, W) float32 metres with its RGB image (H, W, 3) uint8.

    Inverse depth of the finite, positive pixels is filtered with ``settings.method``; the
    other pixels keep their value (+Inf, -Inf, NaN), refined values deeper than
    ``max_depth`` become +Inf and shallower than ``min_depth`` (> 0) -Inf.

    Returns:
        (H, W) float32 metres (the input unchanged for ``none`` or without a valid pixel).

    Raises:
        ValueError: shapes do not match.
        ImportError: the method's library is missing.
    """
    depth = np.asarray(depth)
    rgb = np.asarray(rgb)
    _check(depth, rgb)
    inv, valid = _to_inverse(depth)
    if settings.method == 'none' or not valid.any():
        return depth.astype(np.float32, copy=True)
    if settings.method in ('guided', 'fgs'):
        log = settings.domain == 'log'
        x = np.where(valid, np.log(np.where(valid, inv, 1.0)), 0.0).astype(np.float32) if log else inv
        if settings.method == 'guided':
            out = guided_filter_inverse(x, valid, rgb, settings.guided_radius, settings.guided_eps)
        else:
            out = fgs_filter_inverse(x, valid, rgb, settings.fgs_lambda, settings.fgs_sigma_color,
                                     settings.fgs_iterations)
        if log:
            out = np.exp(out).astype(np.float32)
    else:
        out = crf_refine_inverse(inv, valid, rgb, settings)
    return _from_inverse(out, depth, valid, float(max_depth), float(min_depth))


class RefineStage:
    """Pipeline stage ``refine`` (after ``depth``): refines ``frame.depth`` in place with the
    frame's image at the depth's resolution (``frame.rgb``) and the frame's REP 117 range.
    The pipeline times it as ``timings_ms['refine_ms']``; the stage also keeps its own
    last 1000 times (:attr:`times_ms`, :meth:`median_ms`) for offline reports.

    Args:
        settings: method and parameters (a method name is accepted for the defaults).

    Raises:
        ValueError: bad settings; ImportError: the method's library is missing.
    """

    name = 'refine'

    def __init__(self, settings: RefineSettings | str = 'guided'):
        self.settings = RefineSettings(method=settings) if isinstance(settings, str) else settings
        check_available(self.settings.method)
        self.times_ms: deque[float] = deque(maxlen=1000)

    def __call__(self, frame, settings) -> None:
        if frame.depth is None or frame.rgb is None:
            raise RuntimeError(f'stage {self.name!r} needs depth and the image (insert it after "depth")')
        t = time.perf_counter()
        frame.depth = refine_depth(frame.depth, frame.rgb, self.settings, max_depth=settings.max_depth_m,
                                   min_depth=settings.min_depth_m)
        self.times_ms.append(1e3 * (time.perf_counter() - t))

    def median_ms(self) -> float:
        """Median time of the stage over the frames it ran (NaN before the first)."""
        return statistics.median(self.times_ms) if self.times_ms else float('nan')


def insert_refinement(pipeline, refinement: str | RefineSettings) -> RefineStage | None:
    """Insert a :class:`RefineStage` after ``depth`` unless ``refinement`` is ``none``;
    returns the stage (or None)."""
    settings = RefineSettings(method=refinement) if isinstance(refinement, str) else refinement
    if settings.method == 'none':
        return None
    stage = RefineStage(settings)
    pipeline.insert_stage(stage, after='depth')
    return stage


__all__ = ['CRF_DECODES', 'REFINEMENTS', 'RefineSettings', 'RefineStage', 'check_available', 'crf_labels',
           'crf_refine_inverse', 'crf_unary', 'fgs_filter_inverse', 'guided_filter_inverse', 'insert_refinement',
           'refine_depth']
