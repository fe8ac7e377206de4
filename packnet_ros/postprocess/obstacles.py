"""Navigation outputs from the metric depth: a laser scan and an obstacle cloud in the vehicle frame.

Pure numpy / torch (no ROS). The node publishes the results as sensor_msgs/LaserScan
(``~/scan``) and an unorganized sensor_msgs/PointCloud2 (``~/obstacles``) for Nav2's
obstacle / voxel / STVL layers (README "Navigation (Nav2)").

Frames (REP 103):
    * camera optical frame (``frame_id`` of the image): x right, y down, z forward; the
      organized cloud of :mod:`packnet_ros.pointcloud` is in it.
    * camera body frame: x forward, y left, z up, same origin. ``p_body = OPTICAL_TO_BODY @ p_optical``.
    * target frame (the vehicle, e.g. ``base_link``, REP 105): x forward, y left, z up,
      z = 0 on the ground under the vehicle, so a point's z is its height above the ground.
    * ``T_a_b`` (4, 4) maps points of frame b into frame a: ``p_a = T_a_b @ p_b``
      (the convention of :mod:`packnet_ros.evaluation.lidar`).

Scan (the pointcloud_to_laserscan algorithm on the whole image, not depthimage_to_laserscan's
row band at the principal point, which misses obstacles below the camera's height): every
finite point whose height is in ``[min_height, max_height]`` (inclusive) is binned by its
bearing ``atan2(y, x)`` to the nearest beam ``angle_min + i * angle_increment``; a beam's
range is the smallest ``hypot(x, y)`` of its points in ``[range_min, range_max]``
(inclusive). REP 117 marking of a beam without such a return: ``-Inf`` when it has
in-band points closer than ``range_min`` only (too close to measure), else ``+Inf``
(nothing within range). NaN is never used. The beams span the camera's horizontal field
of view (:func:`scan_fov`), not 360 degrees: bearings the camera cannot see are not
reported as free.

Obstacle cloud: finite points with confidence ``>= min_confidence`` (when a confidence
map is given), horizontal range ``hypot(x, y) <= max_range``, height above the ground in
``[min_height, max_height]``; the ground is z = 0 of the target frame, or a plane fitted
with RANSAC (scikit-learn's ``RANSACRegressor``) when ``ground_plane`` is set; then one
point per voxel of edge ``voxel_m`` (the centroid of the voxel's points).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..pipeline import FrameState, PipelineSettings
from ..pointcloud import depth_to_xyz

OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0],
                            [-1.0, 0.0, 0.0],
                            [0.0, -1.0, 0.0]])
"""(3, 3) rotation from the optical frame (x right, y down, z forward) to the body frame
(x forward, y left, z up) of a camera, REP 103: ``p_body = OPTICAL_TO_BODY @ p_optical``."""

GROUND_MAX_TILT_DEG = 15.0
"""A fitted ground plane steeper than this (against the target frame's xy plane) is
rejected (flat ground z = 0 is used)."""
GROUND_MAX_OFFSET_M = 0.5
"""A fitted ground plane further than this from z = 0 under the target origin is rejected."""
GROUND_SEARCH_M = 0.5
"""Ground candidates for the plane fit: points with |z| <= this in the target frame."""
GROUND_MIN_INLIERS = 200
"""A plane fit needs at least this many candidate points and inliers."""
GROUND_MAX_SAMPLES = 5000
"""Candidates are subsampled (deterministically) to this many for the RANSAC fit."""


# ----------------------------------------------------------------------------- geometry
def _rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(3, 3) R = Rz(yaw) Ry(pitch) Rx(roll) (fixed axes x, y, z; as tf2's setRPY / URDF)."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), \
        math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def camera_pose_matrix(x: float, y: float, z: float, roll: float = 0.0, pitch: float = 0.0,
                       yaw: float = 0.0) -> np.ndarray:
    """``T_target_optical`` (4, 4) from the camera *body* pose in the target frame.

    Args:
        x, y, z: position of the camera in the target frame, metres (z = height above the
            target origin; for ``base_link`` on the ground: the camera's height).
        roll, pitch, yaw: orientation of the camera body frame (x forward, y left, z up)
            in the target frame, radians, R = Rz(yaw) Ry(pitch) Rx(roll) (URDF ``rpy``);
            positive pitch tilts the camera's view down.

    Returns:
        (4, 4) float64 transform mapping points of the camera's *optical* frame into the
        target frame (the body -> optical rotation of REP 103 is applied here).

    Raises:
        ValueError: a non-finite value.
    """
    values = (x, y, z, roll, pitch, yaw)
    if not all(math.isfinite(float(v)) for v in values):
        raise ValueError(f'camera pose must be finite, got {values}')
    T = np.eye(4)
    T[:3, :3] = _rotation_rpy(float(roll), float(pitch), float(yaw)) @ OPTICAL_TO_BODY
    T[:3, 3] = (float(x), float(y), float(z))
    return T


def _check_transform(T: np.ndarray) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f'T_target_camera must be a finite 4x4 matrix, got shape {T.shape}')
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-4 or abs(np.linalg.det(R) - 1.0) > 1e-4 \
            or np.abs(T[3] - (0, 0, 0, 1)).max() > 1e-9:
        raise ValueError('T_target_camera is not a rigid transform (rotation not orthonormal or last row '
                         'not [0, 0, 0, 1])')
    return T


def camera_to_target(points_camera: np.ndarray, T_target_camera: np.ndarray) -> np.ndarray:
    """Points of the camera's optical frame in the target frame.

    Args:
        points_camera: (..., 3) metres in the optical frame (NaN points stay NaN).
        T_target_camera: (4, 4) rigid transform (see :func:`camera_pose_matrix`).

    Returns:
        (..., 3) float64 metres in the target frame.

    Raises:
        ValueError: ``points_camera`` is not (..., 3) or the transform is not rigid.
    """
    T = _check_transform(T_target_camera)
    p = np.asarray(points_camera, dtype=np.float64)
    if p.shape[-1] != 3:
        raise ValueError(f'points must be (..., 3), got {p.shape}')
    return p @ T[:3, :3].T + T[:3, 3]


def scan_fov(K: np.ndarray, width: int, height: int, T_target_camera: np.ndarray) -> tuple[float, float]:
    """Bearings (radians, target frame, counter-clockwise from x) spanned by the image.

    The rays through the border pixels of a (height, width) image with intrinsics ``K``
    are rotated into the target frame; the result is the smallest and largest
    ``atan2(y, x)`` among them (for a forward camera: its horizontal field of view, e.g.
    about +-0.71 rad for KITTI's colour cameras).

    Raises:
        ValueError: bad K / size, or a non-rigid transform.
    """
    T = _check_transform(T_target_camera)
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0 or width < 1 or height < 1:
        raise ValueError(f'bad intrinsics {K.tolist()} or image size {width}x{height}')
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    border = np.concatenate([np.stack([u, np.zeros_like(u)], 1), np.stack([u, np.full_like(u, height - 1)], 1),
                             np.stack([np.zeros_like(v), v], 1), np.stack([np.full_like(v, width - 1), v], 1)])
    rays = np.linalg.solve(K, np.concatenate([border, np.ones((len(border), 1))], 1).T).T
    d = rays @ T[:3, :3].T
    bearings = np.arctan2(d[:, 1], d[:, 0])
    return float(bearings.min()), float(bearings.max())


# ----------------------------------------------------------------------------- scan
@dataclass(frozen=True, eq=False)
class LaserScanData:
    """A planar scan in the target frame (the content of a sensor_msgs/LaserScan).

    Attributes:
        ranges: (N,) float32 metres; beam i is at bearing ``angle_min + i * angle_increment``
            (counter-clockwise from the target frame's x axis, REP 103). REP 117: +Inf =
            no return within range, -Inf = only returns closer than ``range_min``; never NaN.
        angle_min, angle_max, angle_increment: radians; angle_max = angle_min + (N - 1) increment.
        range_min, range_max: metres; the finite ranges lie in [range_min, range_max].
        frame_id: the target frame ('' when the caller did not name one).
    """

    ranges: np.ndarray
    angle_min: float
    angle_max: float
    angle_increment: float
    range_min: float
    range_max: float
    frame_id: str = ''


def _checked_points(points_target, min_height_m: float, max_height_m: float) -> np.ndarray:
    """(..., 3) float64 points, after checking their shape and the height band.

    Raises:
        ValueError: points not (..., 3), or min_height_m >= max_height_m.
    """
    p = np.asarray(points_target, dtype=np.float64)
    if p.shape[-1] != 3:
        raise ValueError(f'points must be (..., 3), got {p.shape}')
    if not min_height_m < max_height_m:
        raise ValueError(f'min_height_m ({min_height_m}) must be below max_height_m ({max_height_m})')
    return p


def laser_scan(points_target: np.ndarray, *, min_height_m: float, max_height_m: float, angle_min: float,
               angle_max: float, angle_increment: float, range_min: float, range_max: float,
               frame_id: str = '') -> LaserScanData:
    """Nearest return per bearing among the points inside a height band (module docstring).

    Args:
        points_target: (..., 3) metres in the target frame (x forward, y left, z up);
            non-finite points are ignored. All image rows count (an organized cloud may be passed).
        min_height_m, max_height_m: the height band, metres of z, inclusive.
        angle_min, angle_max: bearings of the first and (at most) last beam, radians.
        angle_increment: radians between beams (> 0).
        range_min, range_max: metres of ``hypot(x, y)``, inclusive (0 <= range_min < range_max).
        frame_id: stored in the result.

    Returns:
        :class:`LaserScanData` with ``floor((angle_max - angle_min) / angle_increment) + 1``
        beams; a point goes to the nearest beam (points beyond half an increment outside
        the span are ignored).

    Raises:
        ValueError: bad shapes or geometry (band, angles, ranges), each named.
    """
    p = _checked_points(points_target, min_height_m, max_height_m)
    if not (angle_increment > 0 and math.isfinite(angle_increment)):
        raise ValueError(f'angle_increment must be > 0, got {angle_increment}')
    if not (math.isfinite(angle_min) and math.isfinite(angle_max) and angle_min <= angle_max):
        raise ValueError(f'need finite angle_min <= angle_max, got {angle_min}, {angle_max}')
    if not (0 <= range_min < range_max and math.isfinite(range_max)):
        raise ValueError(f'need 0 <= range_min < range_max (finite), got {range_min}, {range_max}')
    n = int(math.floor((angle_max - angle_min) / angle_increment + 1e-9)) + 1
    p = p.reshape(-1, 3)
    p = p[np.all(np.isfinite(p), axis=1)]
    z = p[:, 2]
    p = p[(z >= min_height_m) & (z <= max_height_m)]
    rng = np.hypot(p[:, 0], p[:, 1])
    beam = np.rint((np.arctan2(p[:, 1], p[:, 0]) - angle_min) / angle_increment)
    inside = (beam >= 0) & (beam < n)
    beam, rng = beam[inside].astype(np.int64), rng[inside]
    ranges = np.full(n, np.inf)
    ok = (rng >= range_min) & (rng <= range_max)
    np.minimum.at(ranges, beam[ok], rng[ok])
    too_close = np.zeros(n, bool)
    too_close[beam[rng < range_min]] = True
    ranges[too_close & np.isinf(ranges)] = -np.inf
    return LaserScanData(ranges.astype(np.float32), float(angle_min), float(angle_min + (n - 1) * angle_increment),
                         float(angle_increment), float(range_min), float(range_max), frame_id)


# ----------------------------------------------------------------------------- obstacle cloud
@dataclass(frozen=True, eq=False)
class ObstacleCloud:
    """Obstacle points in the target frame (the content of an unorganized PointCloud2).

    Attributes:
        points: (N, 3) float32 metres in the target frame (x forward, y left, z up), all finite.
        frame_id: the target frame ('' when the caller did not name one).
        ground_plane: (a, b, c) of the fitted ground z = a x + b y + c (metres), or None
            when the flat ground z = 0 was used.
        ground_status: why that ground was used ("flat", "fitted", or why a fit was rejected).
        n_input: finite input points; n_band: points that passed confidence, range and height.
    """

    points: np.ndarray
    frame_id: str = ''
    ground_plane: tuple[float, float, float] | None = None
    ground_status: str = 'flat'
    n_input: int = 0
    n_band: int = 0


def voxel_downsample(points: np.ndarray, voxel_m: float) -> np.ndarray:
    """One point per occupied voxel: the centroid of the points in it.

    Args:
        points: (N, 3) finite metres.
        voxel_m: voxel edge in metres (voxels are ``floor(p / voxel_m)``, aligned to the
            frame's origin); <= 0 returns the points unchanged.

    Returns:
        (M, 3) float32, M <= N, sorted by voxel index (deterministic).
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if voxel_m <= 0 or len(p) == 0:
        return p.astype(np.float32)
    keys = np.floor(p / voxel_m).astype(np.int64)
    keys -= keys.min(axis=0)  # non-negative per axis, so one scalar key keeps the lexicographic order
    span = keys.max(axis=0) + 1
    flat = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)  # 1-D sort: fast
    sums = np.stack([np.bincount(inverse, weights=p[:, i], minlength=len(counts)) for i in range(3)], -1)
    return (sums / counts[:, None]).astype(np.float32)


def fit_ground_plane(points_target: np.ndarray, tolerance_m: float = 0.1, seed: int = 0
                     ) -> tuple[tuple[float, float, float] | None, str]:
    """Ground plane z = a x + b y + c by RANSAC (scikit-learn ``RANSACRegressor``).

    Candidates are the finite points with |z| <= :data:`GROUND_SEARCH_M` (the ground is
    near z = 0 in a target frame on the ground), subsampled to :data:`GROUND_MAX_SAMPLES`.
    The fit is rejected when there are fewer than :data:`GROUND_MIN_INLIERS` candidates
    or inliers, or when the plane is tilted more than :data:`GROUND_MAX_TILT_DEG` or
    offset more than :data:`GROUND_MAX_OFFSET_M` (a wall or a car side is not the ground).

    Args:
        points_target: (..., 3) metres in the target frame.
        tolerance_m: RANSAC inlier threshold on z residuals, metres.
        seed: RANSAC random state (reproducible fits).

    Returns:
        ((a, b, c), "fitted"), or (None, reason) when no acceptable plane was found.

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
    """
    from sklearn.linear_model import RANSACRegressor

    p = np.asarray(points_target, dtype=np.float64).reshape(-1, 3)
    p = p[np.all(np.isfinite(p), axis=1)]
    p = p[np.abs(p[:, 2]) <= GROUND_SEARCH_M]
    if len(p) < GROUND_MIN_INLIERS:
        return None, f'too few ground candidates ({len(p)})'
    if len(p) > GROUND_MAX_SAMPLES:
        p = p[np.random.default_rng(seed).choice(len(p), GROUND_MAX_SAMPLES, replace=False)]
    ransac = RANSACRegressor(residual_threshold=tolerance_m, max_trials=100, random_state=seed)
    try:
        ransac.fit(p[:, :2], p[:, 2])
    except ValueError as exc:  # no consensus set
        return None, f'RANSAC failed: {exc}'
    inliers = int(np.count_nonzero(ransac.inlier_mask_))
    a, b = (float(v) for v in ransac.estimator_.coef_)
    c = float(ransac.estimator_.intercept_)
    if inliers < GROUND_MIN_INLIERS:
        return None, f'too few ground inliers ({inliers})'
    tilt = math.degrees(math.atan(math.hypot(a, b)))
    if tilt > GROUND_MAX_TILT_DEG or abs(c) > GROUND_MAX_OFFSET_M:
        return None, f'implausible ground plane (tilt {tilt:.1f} deg, offset {c:.2f} m)'
    return (a, b, c), 'fitted'


def obstacle_cloud(points_target: np.ndarray, *, min_height_m: float, max_height_m: float, max_range_m: float,
                   voxel_m: float = 0.0, ground_plane: bool = False, confidence: np.ndarray | None = None,
                   min_confidence: float = 0.0, ground_tolerance_m: float = 0.1,
                   frame_id: str = '') -> ObstacleCloud:
    """Points that are obstacles for a ground robot (module docstring).

    Args:
        points_target: (..., 3) metres in the target frame (an organized (H, W, 3) cloud
            or (N, 3)); non-finite points are ignored.
        min_height_m, max_height_m: band of heights above the ground, metres, inclusive
            (below = ground / curbs too low to matter, above = overhangs the robot passes under).
        max_range_m: keep points with horizontal range ``hypot(x, y) <= max_range_m`` (> 0).
        voxel_m: voxel edge for downsampling (0 = keep every point).
        ground_plane: measure heights from a RANSAC ground plane (:func:`fit_ground_plane`,
            on the in-range points) instead of z = 0; falls back to z = 0 when no plausible
            plane is found (``ground_status`` says why).
        confidence: optional per-point confidence of the same leading shape as the points
            (e.g. (H, W)); points below ``min_confidence`` (or NaN) are dropped.
        min_confidence: threshold for ``confidence``.
        ground_tolerance_m: RANSAC inlier threshold.
        frame_id: stored in the result.

    Returns:
        :class:`ObstacleCloud` (float32 points; with ``voxel_m`` > 0 one centroid per voxel).

    Raises:
        ValueError: bad shapes (a confidence map of another shape) or parameters, each named.
        ImportError: ``ground_plane`` without scikit-learn.
    """
    p = _checked_points(points_target, min_height_m, max_height_m)
    if not (max_range_m > 0 and math.isfinite(max_range_m)):
        raise ValueError(f'max_range_m must be > 0 and finite, got {max_range_m}')
    if voxel_m < 0:
        raise ValueError(f'voxel_m must be >= 0, got {voxel_m}')
    keep = np.all(np.isfinite(p), axis=-1)
    if confidence is not None:
        conf = np.asarray(confidence)
        if conf.shape != p.shape[:-1]:
            raise ValueError(f'confidence shape {conf.shape} does not match the points {p.shape[:-1]}')
        n_input = int(np.count_nonzero(keep))
        keep &= conf >= min_confidence  # NaN confidence compares False: dropped
    else:
        n_input = int(np.count_nonzero(keep))
    p = p[keep]
    p = p[np.hypot(p[:, 0], p[:, 1]) <= max_range_m]
    plane, status = None, 'flat'
    if ground_plane:
        plane, status = fit_ground_plane(p, ground_tolerance_m)
    height = p[:, 2] if plane is None else p[:, 2] - (plane[0] * p[:, 0] + plane[1] * p[:, 1] + plane[2])
    p = p[(height >= min_height_m) & (height <= max_height_m)]
    return ObstacleCloud(voxel_downsample(p, voxel_m), frame_id, plane, status, n_input, len(p))


# ----------------------------------------------------------------------------- pipeline stages
@dataclass(frozen=True, eq=False)
class ObstacleSettings:
    """Settings of the navigation stages (replaced as a whole, never mutated).

    Attributes:
        target_frame: the vehicle frame the outputs are in (REP 105 ``base_link``).
        T_target_camera: (4, 4) optical frame -> target frame (:func:`camera_pose_matrix`).
        min_height_m, max_height_m: height band above the ground, metres (scan and cloud).
        max_range_m: horizontal range limit of the obstacle cloud, metres (> 0).
        voxel_m: voxel edge of the obstacle cloud, metres (0 = no downsampling).
        ground_plane: heights from a RANSAC ground plane (obstacle cloud only).
        min_confidence: drop points whose confidence is below this (when the frame has one).
        scan_angle_increment: radians between scan beams (> 0).
        scan_range_min_m, scan_range_max_m: the scan's range limits, metres.

    Raises:
        ValueError: (at construction) a value out of range, each named.
    """

    target_frame: str = 'base_link'
    T_target_camera: np.ndarray = field(default_factory=lambda: camera_pose_matrix(0.0, 0.0, 0.0))
    min_height_m: float = 0.2
    max_height_m: float = 2.0
    max_range_m: float = 8.0
    voxel_m: float = 0.1
    ground_plane: bool = False
    min_confidence: float = 0.0
    scan_angle_increment: float = math.radians(0.5)
    scan_range_min_m: float = 0.3
    scan_range_max_m: float = 8.0

    def __post_init__(self):
        errors = []
        try:
            object.__setattr__(self, 'T_target_camera', _check_transform(self.T_target_camera))
        except ValueError as exc:
            errors.append(str(exc))
        if not self.target_frame:
            errors.append('target_frame must not be empty')
        if not self.min_height_m < self.max_height_m:
            errors.append(f'min_height_m ({self.min_height_m}) must be below max_height_m ({self.max_height_m})')
        if not self.max_range_m > 0:
            errors.append(f'max_range_m must be > 0, got {self.max_range_m}')
        if self.voxel_m < 0:
            errors.append(f'voxel_m must be >= 0, got {self.voxel_m}')
        if not self.scan_angle_increment > 0:
            errors.append(f'scan_angle_increment must be > 0, got {self.scan_angle_increment}')
        if not 0 <= self.scan_range_min_m < self.scan_range_max_m:
            errors.append(f'need 0 <= scan_range_min_m ({self.scan_range_min_m}) < scan_range_max_m '
                          f'({self.scan_range_max_m})')
        if errors:
            raise ValueError('; '.join(errors))

    def replace(self, **changes) -> ObstacleSettings:
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)


class TargetPoints:
    """The frame's depth unprojected (``frame.depth``, ``frame.K``) and moved into the
    target frame, computed once per frame and transform for both stages.

    Independent of ``~/points`` (its decimation, colour, and whether it is built)."""

    def __init__(self):
        self._frame: FrameState | None = None  # references (not ids): no reuse of a dead frame's id
        self._depth: np.ndarray | None = None
        self._T: bytes = b''
        self._points: np.ndarray | None = None

    def __call__(self, frame: FrameState, T_target_camera: np.ndarray) -> np.ndarray:
        """(h, w, 3) float64 metres in the target frame, NaN where the depth is not finite.

        Raises:
            ValueError: the frame has no depth or no intrinsics.
        """
        if frame.depth is None or frame.K is None:
            raise ValueError('the frame has no depth or no intrinsics (camera_info)')
        T = np.asarray(T_target_camera, dtype=np.float64).tobytes()
        if self._points is None or frame is not self._frame or frame.depth is not self._depth or T != self._T:
            self._points = camera_to_target(depth_to_xyz(frame.depth, frame.K), T_target_camera)
            self._frame, self._depth, self._T = frame, frame.depth, T
        return self._points


class _NavStage:
    """Common part of the navigation stages.

    Attributes:
        settings: the :class:`ObstacleSettings` the next frame uses (replace it as a whole).
        enabled: compute the output for the next frame (the node sets it per frame: a
            subscriber exists or ``lazy`` is off).
        last_error: why the last frame has no output (bad input), else None. The stage
            never raises: the frame continues without this output.
    """

    name = ''

    def __init__(self, settings: ObstacleSettings | None = None, points: TargetPoints | None = None):
        self.settings = settings or ObstacleSettings()
        self.points = points or TargetPoints()
        self.enabled = True
        self.last_error: str | None = None

    def _run(self, frame: FrameState, settings: ObstacleSettings):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, frame: FrameState, settings: PipelineSettings) -> None:
        """Fill this stage's field of ``frame`` (``settings``, the pipeline's, are not used)."""
        self.last_error = None
        if not self.enabled:
            return
        nav = self.settings  # one consistent set for this frame
        try:
            self._run(frame, nav)
        except (ValueError, ImportError, np.linalg.LinAlgError) as exc:
            self.last_error = f'{type(exc).__name__}: {exc}'


class ScanStage(_NavStage):
    """Fills ``frame.scan`` (:class:`LaserScanData`) from ``frame.depth`` / ``frame.K``;
    beams span the image's field of view (:func:`scan_fov`)."""

    name = 'scan'

    def _run(self, frame: FrameState, s: ObstacleSettings) -> None:
        pts = self.points(frame, s.T_target_camera)
        h, w = pts.shape[:2]
        lo, hi = scan_fov(np.asarray(frame.K), w, h, s.T_target_camera)
        frame.scan = laser_scan(pts, min_height_m=s.min_height_m, max_height_m=s.max_height_m, angle_min=lo,
                                angle_max=hi, angle_increment=s.scan_angle_increment, range_min=s.scan_range_min_m,
                                range_max=s.scan_range_max_m, frame_id=s.target_frame)


class ObstacleStage(_NavStage):
    """Fills ``frame.obstacles`` (:class:`ObstacleCloud`) from ``frame.depth`` / ``frame.K``
    and, when set and of the depth's shape, ``frame.confidence``."""

    name = 'obstacles'

    def _run(self, frame: FrameState, s: ObstacleSettings) -> None:
        pts = self.points(frame, s.T_target_camera)
        conf = frame.confidence if (frame.confidence is not None and s.min_confidence > 0) else None
        if conf is not None:
            conf = np.asarray(conf).reshape(pts.shape[:2]) if np.size(conf) == pts.shape[0] * pts.shape[1] \
                else conf
        frame.obstacles = obstacle_cloud(pts, min_height_m=s.min_height_m, max_height_m=s.max_height_m,
                                         max_range_m=s.max_range_m, voxel_m=s.voxel_m, ground_plane=s.ground_plane,
                                         confidence=conf, min_confidence=s.min_confidence,
                                         frame_id=s.target_frame)


def navigation_stages(settings: ObstacleSettings | None = None) -> tuple[ScanStage, ObstacleStage]:
    """A :class:`ScanStage` and an :class:`ObstacleStage` sharing settings and one
    :class:`TargetPoints` (the depth is unprojected once per frame). Insert them with
    ``pipeline.insert_stage(scan, after='cloud')`` then ``insert_stage(obstacles, after='scan')``."""
    points = TargetPoints()
    settings = settings or ObstacleSettings()
    return ScanStage(settings, points), ObstacleStage(settings, points)


__all__ = ['OPTICAL_TO_BODY', 'LaserScanData', 'ObstacleCloud', 'ObstacleSettings', 'ObstacleStage', 'ScanStage',
           'TargetPoints', 'camera_pose_matrix', 'camera_to_target', 'fit_ground_plane', 'laser_scan',
           'navigation_stages', 'obstacle_cloud', 'scan_fov', 'voxel_downsample']
