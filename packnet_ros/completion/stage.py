"""Depth completion as a stage of the per-frame pipeline (core: numpy + OpenCV, no ROS).

:class:`CompletionStage` (name ``completion``) runs after ``depth`` (after ``refine`` when
there is one) and before ``cloud``. It takes the frame's sparse input
(``FrameInput.sparse``, a :class:`SparseInput`: LiDAR points already moved into the
camera's optical frame, or a sparse depth image in the camera image), projects it at the
depth output's resolution with the frame's intrinsics (``frame.K``,
:func:`packnet_ros.completion.sparse.project_with_count`), completes it with IP-Basic and
replaces the monocular depth by the completed depth wherever IP-Basic gives a value. The
pixels IP-Basic leaves empty (farther than its kernels reach from any return: image
columns without a return, the sides of a LiDAR with a narrower field of view) keep the
monocular depth, so the output stays dense. The completed values get the REP 117 marking
of the monocular depth (+Inf beyond ``max_depth_m``, -Inf below ``min_depth_m``); a
confidence map (SID heads) is set to 1 on the completed pixels.

Without usable sparse input the frame keeps the monocular depth and
``frame.completion`` (:class:`CompletionStatus`) says why: no input, an input farther than
``max_staleness_s`` from the image stamp, a problem the caller found while converting it
(``SparseInput.problem``: a malformed cloud, no transform into the camera frame), no
finite point, no return inside the image, no intrinsics. Non-finite points of a cloud are
ignored (organized LiDAR clouds mark missing returns with NaN); a cloud of NaN points only
falls back.

Extrinsics as text (:func:`parse_extrinsics`, the node's ``completion.extrinsics``):
``T_camera_lidar`` maps LiDAR points into the camera's optical frame (x right, y down,
z forward), as 6 numbers ``x y z roll pitch yaw`` (the LiDAR frame's pose in the optical
frame, metres and radians, R = Rz(yaw) Ry(pitch) Rx(roll) as URDF ``rpy`` and tf2's
``static_transform_publisher --x --y --z --roll --pitch --yaw --frame-id <camera optical>
--child-frame-id <lidar>``) or 12 / 16 numbers (the 3x4 / 4x4 matrix, row-major).
"""
from __future__ import annotations

import math
import re
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import scale_intrinsics
from . import COMPLETION_PREFIX, CompletionMethod, parse_completion, sparse_network_input
from .sparse import project_with_count

DEPTH_MODE_COMPLETION = 'completion'
DEPTH_MODE_MONOCULAR = 'monocular'
LEARNED = 'learned'
NODE_METHODS = ('none', 'ipbasic', 'ipbasic:multiscale', LEARNED)
"""``completion.method`` values of packnet_node (``none`` = no stage; ``learned`` = the
checkpoint's own sparse branch, :class:`LearnedCompletionStage`)."""


@dataclass
class SparseInput:
    """The sparse depth input of one camera frame.

    Attributes:
        stamp_ns: its capture time (header stamp), integer nanoseconds.
        points: (N, 3+) float points in the camera's optical frame (metres), or None.
        depth: (h, w) float sparse depth image in the camera image (metres; 0, NaN or
            negative = no value; any size: rows and columns are scaled to the output), or None.
        problem: why the caller could not convert its input (a malformed cloud, no
            transform into the camera frame, ...); the frame then falls back to monocular.
        problem_kind: short key of the problem (throttled warnings).
    """

    stamp_ns: int
    points: np.ndarray | None = None
    depth: np.ndarray | None = None
    problem: str | None = None
    problem_kind: str = 'input'


@dataclass(frozen=True)
class CompletionSettings:
    """Runtime settings of :class:`CompletionStage` (replaced as a whole).

    Attributes:
        max_staleness_s: the sparse input's stamp may be at most this far (seconds, either
            side) from the image stamp; >= 0.

    Raises:
        ValueError: a negative or non-finite staleness.
    """

    max_staleness_s: float = 0.1

    def __post_init__(self):
        if not (math.isfinite(self.max_staleness_s) and self.max_staleness_s >= 0):
            raise ValueError(f'max_staleness_s must be a finite number >= 0, got {self.max_staleness_s}')


@dataclass(frozen=True)
class CompletionStatus:
    """What the completion stage did with one frame.

    Attributes:
        mode: ``completion`` (the depth comes from the sparse input where IP-Basic gave a
            value) or ``monocular``.
        reason: why a frame fell back to monocular ('' otherwise).
        kind: short key of the reason (``no_input``, ``stale``, ``empty``,
            ``no_intrinsics``, or the input's ``problem_kind``).
        sparse_points: points (pixels of a sparse depth image) that landed in the image.
        sparse_pixels: pixels of the sparse image at the output resolution with a value.
        completed_ratio: fraction of the output pixels taken from the completion.
    """

    mode: str
    reason: str = ''
    kind: str = ''
    sparse_points: int = 0
    sparse_pixels: int = 0
    completed_ratio: float = 0.0

    @property
    def label(self) -> str:
        """``completion``, ``monocular`` or ``monocular (fallback: <reason>)`` (``~/stats.depth_mode``)."""
        if self.mode == DEPTH_MODE_MONOCULAR and self.reason:
            return f'{DEPTH_MODE_MONOCULAR} (fallback: {self.reason})'
        return self.mode


def _fallback(reason: str, kind: str) -> CompletionStatus:
    return CompletionStatus(DEPTH_MODE_MONOCULAR, reason, kind)


def resample_sparse(depth: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """A sparse depth image at another size without losing returns: pixel (v, u) of the
    (H, W) input goes to (floor(v h / H + 0.5), floor(u w / W + 0.5)) of the (h, w) output
    (the intrinsics scale of image_proc's resize), the nearest return per output pixel.

    Returns:
        ((h, w) float32 metres, 0 = no value; the number of input pixels with a value).
    """
    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    H, W = d.shape
    h, w = int(shape[0]), int(shape[1])
    if (H, W) == (h, w):
        return np.where(valid, d, np.float32(0.0)), int(valid.sum())
    v, u = np.nonzero(valid)
    z = d[v, u]
    vo = np.minimum(np.floor(v * (h / H) + 0.5).astype(np.int64), h - 1)
    uo = np.minimum(np.floor(u * (w / W) + 0.5).astype(np.int64), w - 1)
    out = np.zeros(h * w, dtype=np.float32)
    if z.size:
        pix = vo * w + uo
        order = np.argsort(z, kind='stable')
        uniq, first = np.unique(pix[order], return_index=True)
        out[uniq] = z[order][first]
    return out.reshape(h, w), int(z.size)


def sparse_image_at(sparse: SparseInput | None, stamp_ns: int, K: np.ndarray | None, shape: tuple[int, int],
                    settings: CompletionSettings) -> tuple[np.ndarray | None, CompletionStatus]:
    """A frame's sparse input as an (h, w) depth image, or None and why the frame falls back.

    Args:
        sparse: the frame's input (None = none).
        stamp_ns: the image stamp (staleness check).
        K: (3, 3) intrinsics of the (h, w) image the points are projected into (None: a
            cloud cannot be projected).
        shape: (h, w).
        settings: the staleness limit.

    Returns:
        ((h, w) float32 metres, 0 = no value, or None; :class:`CompletionStatus`: mode
        ``completion`` with the point / pixel counts, or the fallback and its reason).
    """
    if sparse is None:
        return None, _fallback('no sparse input', 'no_input')
    dt = abs(int(sparse.stamp_ns) - int(stamp_ns)) / 1e9
    if dt > settings.max_staleness_s:
        return None, _fallback(f'stale: the nearest sparse input is {dt:.3f} s from the image '
                               f'(max_staleness_s {settings.max_staleness_s:g})', 'stale')
    if sparse.problem:
        return None, _fallback(sparse.problem, sparse.problem_kind or 'input')
    if sparse.points is not None:
        if K is None:
            return None, _fallback('no intrinsics to project the sparse points', 'no_intrinsics')
        p = np.asarray(sparse.points)
        if p.ndim != 2 or p.shape[1] < 3:
            return None, _fallback(f'sparse points must be (N, 3), got {p.shape}', 'input')
        if not np.isfinite(p[:, :3]).all(axis=1).any():
            return None, _fallback(f'no finite point in the sparse input ({len(p)} points)', 'empty')
        img, n = project_with_count(p, K, shape, max_depth=None)
    elif sparse.depth is not None:
        d = np.asarray(sparse.depth)
        if d.ndim != 2 or not d.size:
            return None, _fallback(f'sparse depth image must be (h, w), got {d.shape}', 'input')
        img, n = resample_sparse(d, shape)
    else:
        return None, _fallback('empty sparse input', 'empty')
    pixels = int(np.count_nonzero(img))
    if pixels == 0:
        return None, _fallback('no sparse return inside the image', 'empty')
    return img, CompletionStatus(DEPTH_MODE_COMPLETION, sparse_points=n, sparse_pixels=pixels)


class CompletionStage:
    """Pipeline stage ``completion``: the frame's sparse input completed by IP-Basic replaces
    the monocular depth where it gives a value (module docstring).

    Args:
        method: ``ipbasic``, ``ipbasic:multiscale`` or any ``[completion:]ipbasic[:OPTIONS]``
            text of :func:`packnet_ros.completion.parse_completion`, or a parsed method.
        settings: runtime settings (:attr:`settings` may be replaced between frames).

    After each frame ``frame.completion`` holds a :class:`CompletionStatus`; the stage keeps
    its last 1000 times (:meth:`median_ms`).

    Raises:
        ValueError: an unknown method.
    """

    name = 'completion'

    def __init__(self, method: str | CompletionMethod = 'ipbasic', settings: CompletionSettings | None = None):
        if isinstance(method, str):
            method = parse_completion(method if method.startswith(COMPLETION_PREFIX) else COMPLETION_PREFIX + method)
        self.method = method
        self.settings = settings or CompletionSettings()
        self.times_ms: deque[float] = deque(maxlen=1000)

    def sparse_image(self, frame) -> tuple[np.ndarray | None, CompletionStatus]:
        """The frame's sparse input at the depth's resolution, or None and the reason."""
        return sparse_image_at(getattr(frame.input, 'sparse', None), int(frame.input.stamp_ns), frame.K,
                               frame.depth.shape, self.settings)

    def __call__(self, frame, settings) -> None:
        if frame.depth is None:
            raise RuntimeError(f'stage {self.name!r} needs depth (insert it after "depth")')
        t = time.perf_counter()
        sparse, status = self.sparse_image(frame)
        if sparse is not None:
            dense = np.asarray(self.method(sparse), dtype=np.float32)
            filled = np.isfinite(dense) & (dense > 0)
            out = np.array(frame.depth, dtype=np.float32, copy=True)
            values = dense[filled]
            values = np.where(values > settings.max_depth_m, np.float32(np.inf), values)
            if settings.min_depth_m > 0:
                values = np.where(values < settings.min_depth_m, np.float32(-np.inf), values)
            out[filled] = values
            frame.depth = out
            if frame.confidence is not None and frame.confidence.shape == out.shape:
                conf = np.array(frame.confidence, dtype=np.float32, copy=True)
                conf[filled] = 1.0
                frame.confidence = conf
            status = CompletionStatus(DEPTH_MODE_COMPLETION, sparse_points=status.sparse_points,
                                      sparse_pixels=status.sparse_pixels,
                                      completed_ratio=float(filled.mean()))
        frame.completion = status
        self.times_ms.append(1e3 * (time.perf_counter() - t))

    def median_ms(self) -> float:
        """Median time of the stage over the frames it ran (NaN before the first)."""
        return statistics.median(self.times_ms) if self.times_ms else float('nan')


class LearnedCompletionStage:
    """Pipeline stage ``completion`` for a depth network with a sparse auxiliary branch
    (``completion.method: learned``; :mod:`packnet_ros.networks.sparse_branch`).

    Runs **before** ``infer``: projects the frame's sparse input at the network input's
    resolution (points with the frame's K scaled to it, image_proc's resize convention; a
    sparse depth image resampled keeping every return), adds the IP-Basic guide channel
    when the network takes one (:func:`packnet_ros.completion.sparse_network_input`) and
    leaves it in ``frame.network_sparse`` for ``infer``, which gives it to the network. The
    whole depth map then comes from the network (``completed_ratio`` 1). Without usable
    input (the reasons of :class:`CompletionStage`) ``network_sparse`` stays None: the
    network runs as the plain monocular one and ``frame.completion`` says why.

    Args:
        estimator: the pipeline's :class:`packnet_ros.inference.DepthEstimator`.
        settings: runtime settings (:attr:`settings` may be replaced between frames).

    Raises:
        ValueError: the estimator's network has no sparse branch.
    """

    name = 'completion'

    def __init__(self, estimator, settings: CompletionSettings | None = None):
        if not getattr(estimator, 'takes_sparse', False):
            raise ValueError(f'completion method "learned" needs a checkpoint whose depth network has a sparse branch '
                             f'(trained with model.sparse_branch: true); {getattr(estimator, "label", "this model")} '
                             f'has none: use completion.method ipbasic')
        self.estimator = estimator
        self.settings = settings or CompletionSettings()
        self.times_ms: deque[float] = deque(maxlen=1000)

    def __call__(self, frame, settings) -> None:
        t = time.perf_counter()
        h, w = (int(v) for v in self.estimator.input_shape)
        H, W = frame.input.rgb.shape[:2]
        K = frame.input.K
        K_net = None if K is None else scale_intrinsics(np.asarray(K, dtype=np.float64), w / W, h / H)
        img, status = sparse_image_at(getattr(frame.input, 'sparse', None), int(frame.input.stamp_ns), K_net, (h, w),
                                      self.settings)
        frame.network_sparse = None
        if img is not None:
            frame.network_sparse = sparse_network_input(img, self.estimator.sparse_guide)
            status = CompletionStatus(DEPTH_MODE_COMPLETION, sparse_points=status.sparse_points,
                                      sparse_pixels=status.sparse_pixels, completed_ratio=1.0)
        frame.completion = status
        self.times_ms.append(1e3 * (time.perf_counter() - t))

    def median_ms(self) -> float:
        """Median time of the stage (projection + guide, not the network) over the frames it ran."""
        return statistics.median(self.times_ms) if self.times_ms else float('nan')


def insert_completion(pipeline, method: str | CompletionMethod, settings: CompletionSettings | None = None
                      ) -> CompletionStage | LearnedCompletionStage | None:
    """Insert a :class:`CompletionStage` after ``refine`` (when the pipeline has one, so the
    refinement never smooths LiDAR depth) or ``depth``; for method ``learned`` a
    :class:`LearnedCompletionStage` before ``infer``; None for method ``none``.

    Raises:
        ValueError: an unknown method, or ``learned`` for a network without a sparse branch.
    """
    if isinstance(method, str) and method.strip().lower() == 'none':
        return None
    if isinstance(method, str) and method.strip().lower() == LEARNED:
        learned = LearnedCompletionStage(pipeline.estimator, settings)
        names = [s.name for s in pipeline.stages]
        pipeline.stages.insert(names.index('infer') if 'infer' in names else 0, learned)
        return learned
    stage = CompletionStage(method, settings)
    names = [s.name for s in pipeline.stages]
    pipeline.insert_stage(stage, after='refine' if 'refine' in names else 'depth')
    return stage


# ----------------------------------------------------------------------------- extrinsics
_SEPARATORS = re.compile(r'[\s,;\[\]()]+')


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll) (URDF ``rpy``, tf2's fixed-axis roll, pitch, yaw)."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), \
        math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def parse_extrinsics(text: Any) -> np.ndarray | None:
    """``T_camera_lidar`` (4, 4) float64 from text (module docstring): '' -> None;
    ``x y z roll pitch yaw``; or a 3x4 / 4x4 matrix as 12 / 16 numbers, row-major. Numbers
    may be separated by spaces, commas or semicolons, brackets are ignored.

    Raises:
        ValueError: not numbers, another count, non-finite values, or a matrix whose
            rotation is not orthonormal with determinant 1 (tolerance 1e-3) or whose last
            row is not 0 0 0 1.
    """
    s = str(text or '').strip()
    if not s:
        return None
    words = [w for w in _SEPARATORS.split(s) if w]
    try:
        values = [float(w) for w in words]
    except ValueError:
        raise ValueError(f'expected numbers ("x y z roll pitch yaw" or a 3x4 / 4x4 matrix), got {s!r}') from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f'extrinsics must be finite numbers, got {s!r}')
    T = np.eye(4)
    if len(values) == 6:
        x, y, z, roll, pitch, yaw = values
        T[:3, :3] = rotation_rpy(roll, pitch, yaw)
        T[:3, 3] = (x, y, z)
        return T
    if len(values) not in (12, 16):
        raise ValueError(f'expected 6 numbers (x y z roll pitch yaw) or 12 / 16 (a 3x4 / 4x4 matrix, row-major), '
                         f'got {len(values)}')
    T[:3] = np.asarray(values[:12], dtype=np.float64).reshape(3, 4)
    if len(values) == 16 and not np.allclose(values[12:], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise ValueError(f'the last row of a 4x4 transform must be 0 0 0 1, got {values[12:]}')
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or abs(np.linalg.det(R) - 1.0) > 1e-3:
        raise ValueError('the rotation part is not a rotation (orthonormal, determinant 1)')
    return T


def transform_points(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(N, 3+) points -> (N, 3) float64 ``T[:3, :3] @ p + T[:3, 3]`` (float64: a float32
    round trip moves points across pixel borders)."""
    p = np.asarray(points, dtype=np.float64)[:, :3]
    T = np.asarray(T, dtype=np.float64)
    return p @ T[:3, :3].T + T[:3, 3]


__all__ = ['CompletionSettings', 'CompletionStage', 'CompletionStatus', 'DEPTH_MODE_COMPLETION',
           'DEPTH_MODE_MONOCULAR', 'LEARNED', 'LearnedCompletionStage', 'NODE_METHODS', 'sparse_image_at', 'SparseInput', 'insert_completion', 'parse_extrinsics',
           'resample_sparse', 'rotation_rpy', 'transform_points']
