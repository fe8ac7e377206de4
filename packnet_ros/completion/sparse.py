"""Sparse depth input from a LiDAR scan: projection, ring (beam) index, subsampling.

Plain numpy (no ROS, no file reading; KITTI ``.bin`` scans are read by
:mod:`packnet_ros.io.kitti`).

Frames and units:
    * LiDAR frame (e.g. KITTI's ``velo``): x forward, y left, z up, metres; the sensor's
      rotation axis is z. Ring indices are computed here.
    * Camera optical frame (REP 103): x right, y down, z forward, metres. Projection works
      on points already transformed into it (``T_camera_lidar @ p``).

Projection (the convention of :func:`packnet_ros.evaluation.lidar.project_points` and of
KITTI's ``proj_depth``): a point (x, y, z) with z > 0 lands on pixel
``(floor(fx x / z + s y / z + cx + 0.5), floor(fy y / z + cy + 0.5))`` (pixel centres at
integer coordinates), its depth is z; when several points hit one pixel the nearest
(smallest z) wins; pixels without a return are 0.

Ring index from the elevation angle (for scans without a ``ring`` field, e.g. KITTI's
Velodyne HDL-64E ``.bin`` files), :func:`beam_rings`:

1. Elevation corrected for the beam origin: a laser of the spinning head does not fire
   from the sensor origin but from a point ``h`` above it (HDL-64E: ~0.2 m upper block,
   ~0.13 m lower block), so a ring with elevation theta holds ``z = r tan(theta) + h``
   (r = sqrt(x^2 + y^2)) and the naive ``atan2(z, r)`` of a point 5 m away is ~2.5 deg too
   high, more than the 1/3 deg between beams. ``phi = atan2(z - h, r)``, with ``h`` of the
   nominal beam nearest to ``atan2(z - h_0, r)`` (two passes).
2. Histogram of phi in 0.02 deg bins, smoothed [1 2 1]; each beam is a narrow peak
   (within-ring spread ~0.1 deg after the correction): a peak is a bin that is the maximum
   within +-0.1 deg and holds at least ``min_points`` points within that window; the
   boundary between two neighbouring peaks is the histogram minimum between them; every
   point takes the peak of its interval (no point is left without a ring).
3. Peaks are numbered from the top down; the step between two neighbours is the number
   of nominal beams between their angles (``round`` of the difference of their fractional
   positions in the nominal table, at least 1), so beams without a return in the scan
   (sky, a cropped field of view) keep their index gap.
4. The whole numbering is shifted by the integer offset that best fits the nominal table
   (least absolute deviation). Result: ring 0 = the top beam, ``model.n_beams - 1`` the
   lowest.

Measured on kitti_traffic (Velodyne scans cropped to the camera's field of view, no ring
field, 14.7-16.6 k points): 38-45 of the 64 beams are seen (the lower ones miss the image),
and 96-99 % of the points of each scan-order ring run (the ``.bin`` files store the points
ring by ring) get the same index (``test/test_completion.py``). The nominal
HDL-64E table and beam origin heights are :data:`HDL64E`; another sensor needs its own
:class:`BeamModel` (or a ``ring`` field in its clouds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..geometry import scale_intrinsics


@dataclass(frozen=True)
class BeamModel:
    """A spinning LiDAR's beams for :func:`beam_rings`.

    Attributes:
        name: for reports.
        angles_deg: nominal elevation of each beam in degrees, ring 0 = the top beam,
            strictly decreasing.
        origin_height_m: per beam, height of its firing point above the sensor origin (m).
    """

    name: str
    angles_deg: tuple[float, ...]
    origin_height_m: tuple[float, ...]

    @property
    def n_beams(self) -> int:
        return len(self.angles_deg)

    def __post_init__(self):
        a = np.asarray(self.angles_deg, dtype=np.float64)
        if a.ndim != 1 or a.size < 1 or np.any(np.diff(a) >= 0):
            raise ValueError(f'{self.name}: angles_deg must be strictly decreasing (ring 0 = top)')
        if len(self.origin_height_m) != a.size:
            raise ValueError(f'{self.name}: one origin height per beam ({a.size}), got {len(self.origin_height_m)}')


def _hdl64e() -> BeamModel:
    upper = [2.0 - k / 3.0 for k in range(32)]  # +2 .. -8.33 deg, 1/3 deg steps
    lower = [-8.83 - k * (24.8 - 8.83) / 31.0 for k in range(32)]  # -8.83 .. -24.8 deg, ~0.52 deg steps
    return BeamModel('Velodyne HDL-64E (KITTI)', tuple(upper + lower), tuple([0.22] * 32 + [0.135] * 32))


HDL64E = _hdl64e()
"""Velodyne HDL-64E as mounted on the KITTI car: nominal elevations from the data sheet
(26.8 deg vertical field of view, +2 to -24.8 deg; upper block of 32 lasers in 1/3 deg
steps down to -8.33 deg, lower block of 32 from -8.83 deg); beam origin heights 0.22 m
(upper) and 0.135 m (lower), fitted on kitti_traffic scans (``z = r tan(theta) + h`` per
ring; fits gave 0.21-0.26 m and 0.12-0.16 m)."""


def elevation_deg(points: np.ndarray, height_m: float | np.ndarray = 0.0) -> np.ndarray:
    """Elevation ``atan2(z - h, sqrt(x^2 + y^2))`` in degrees of (N, 3+) LiDAR-frame points."""
    p = np.asarray(points, dtype=np.float64)
    return np.degrees(np.arctan2(p[:, 2] - height_m, np.hypot(p[:, 0], p[:, 1])))


def _fractional_index(model: BeamModel, angles: np.ndarray) -> np.ndarray:
    """Position of ``angles`` in the nominal table as a fractional ring index (extrapolated
    linearly beyond its ends)."""
    a = np.asarray(model.angles_deg, dtype=np.float64)
    idx = np.arange(a.size, dtype=np.float64)
    out = np.interp(angles, a[::-1], idx[::-1])
    if a.size > 1:
        top_step, bottom_step = a[0] - a[1], a[-2] - a[-1]
        out = np.where(angles > a[0], (a[0] - angles) / top_step, out)
        out = np.where(angles < a[-1], a.size - 1 + (a[-1] - angles) / bottom_step, out)
    return out


def beam_rings(points: np.ndarray, model: BeamModel = HDL64E, bin_deg: float = 0.02, window_deg: float = 0.1,
               min_points: int = 5) -> np.ndarray:
    """Ring (beam) index of every point of one scan, from its elevation angle.

    The method (beam origin correction, histogram peaks, numbering with gaps, fit to the
    nominal table) is described in the module docstring.

    Args:
        points: (N, 3+) float points in the LiDAR frame (x forward, y left, z up = the
            rotation axis), metres; columns beyond 3 are ignored.
        model: the sensor's nominal beams (default: KITTI's HDL-64E).
        bin_deg: histogram bin width in degrees.
        window_deg: a peak is the maximum within +- this many degrees (below half the
            smallest beam spacing).
        min_points: points a peak needs within its window.

    Returns:
        (N,) int64 ring index in [0, model.n_beams), 0 = top beam; -1 for non-finite points.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 3:
        raise ValueError(f'points must be (N, 3+), got {p.shape}')
    rings = np.full(len(p), -1, dtype=np.int64)
    ok = np.all(np.isfinite(p[:, :3]), axis=1) & (np.hypot(p[:, 0], p[:, 1]) > 1e-6)
    if not ok.any():
        return rings
    q = p[ok]
    heights = np.asarray(model.origin_height_m, dtype=np.float64)
    guess = np.clip(np.rint(_fractional_index(model, elevation_deg(q, heights[0]))), 0, model.n_beams - 1)
    phi = elevation_deg(q, heights[guess.astype(np.int64)])

    lo = float(phi.min()) - 2 * window_deg
    nb = int(math.ceil((float(phi.max()) + 2 * window_deg - lo) / bin_deg)) + 1
    counts = np.bincount(((phi - lo) / bin_deg).astype(np.int64), minlength=nb).astype(np.float64)
    smooth = np.convolve(counts, [0.25, 0.5, 0.25], mode='same')
    w = max(1, int(round(window_deg / bin_deg)))
    padded = np.pad(smooth, w, constant_values=-1.0)
    local_max = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1).max(axis=1)
    csum = np.concatenate([[0.0], np.cumsum(counts)])
    i = np.arange(nb)
    in_window = csum[np.minimum(i + w + 1, nb)] - csum[np.maximum(i - w, 0)]
    cand = np.flatnonzero((smooth >= local_max) & (smooth > 0) & (in_window >= min_points))
    if cand.size == 0:  # too few points for a histogram peak: one cluster
        cand = np.array([int(np.argmax(smooth))])
    peaks = [int(cand[0])]
    for c in cand[1:]:  # a flat top gives neighbouring candidates: keep one per window
        if c - peaks[-1] > w:
            peaks.append(int(c))
    peak_bins = np.array(peaks)
    peak_deg = lo + (peak_bins + 0.5) * bin_deg  # ascending
    bounds = np.array([a + int(np.argmin(smooth[a:b])) for a, b in zip(peak_bins[:-1], peak_bins[1:])],
                      dtype=np.int64)
    cluster = np.searchsorted(lo + (bounds + 0.5) * bin_deg, phi)  # ascending elevation

    top_down = peak_deg[::-1]
    frac = _fractional_index(model, top_down)
    steps = np.maximum(1, np.rint(np.diff(frac))).astype(np.int64)
    index = np.concatenate([[0], np.cumsum(steps)])
    nominal = np.asarray(model.angles_deg, dtype=np.float64)
    if index[-1] <= model.n_beams - 1:
        offsets = range(0, model.n_beams - int(index[-1]))
        costs = [float(np.abs(nominal[index + o] - top_down).sum()) for o in offsets]
        index = index + int(np.argmin(costs))
    else:  # more peaks than beams: not this sensor; keep the order, clip
        index = np.minimum(index, model.n_beams - 1)
    ring_of_cluster = index[::-1]
    rings[ok] = ring_of_cluster[cluster]
    return rings


@dataclass(frozen=True)
class Subsample:
    """Which points of a scan become the sparse input.

    Text forms (:meth:`parse`): ``all``; ``beams:N`` = keep N of the sensor's beams, every
    (n_beams / N)-th ring starting at ring 0 (64 beams: 32, 16, 8, 4, 2 or 1); ``ratio:R`` =
    a random subset of round(R * n) points (0 < R <= 1) drawn with ``numpy.random.default_rng(seed)``,
    the same seed for every scan (reproducible; the subset differs per scan because the
    scans differ).
    """

    kind: str = 'all'
    value: float = 1.0
    seed: int = 0

    KINDS = ('all', 'beams', 'ratio')

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> 'Subsample':
        """``all`` | ``beams:N`` | ``ratio:R``.

        Raises:
            ValueError: another text, N not a positive integer, R outside (0, 1].
        """
        t = (text or 'all').strip().lower()
        if t == 'all':
            return cls('all', 1.0, seed)
        kind, _, value = t.partition(':')
        if kind == 'beams':
            try:
                n = int(value)
            except ValueError:
                n = 0
            if n < 1:
                raise ValueError(f'beams:N needs a positive integer N (e.g. beams:16), got {text!r}')
            return cls('beams', float(n), seed)
        if kind == 'ratio':
            try:
                r = float(value)
            except ValueError:
                r = float('nan')
            if not (0.0 < r <= 1.0):
                raise ValueError(f'ratio:R needs 0 < R <= 1 (e.g. ratio:0.25), got {text!r}')
            return cls('ratio', r, seed)
        raise ValueError(f'subsample must be "all", "beams:N" or "ratio:R", got {text!r}')

    def __str__(self) -> str:
        if self.kind == 'beams':
            return f'beams:{int(self.value)}'
        if self.kind == 'ratio':
            return f'ratio:{self.value:g}'
        return 'all'

    @property
    def needs_rings(self) -> bool:
        return self.kind == 'beams'

    def mask(self, n: int, rings: np.ndarray | None = None, n_beams: int = HDL64E.n_beams) -> np.ndarray:
        """(n,) bool: the points kept as input.

        Args:
            n: number of points of the scan.
            rings: (n,) ring index per point (``beams:N`` only; -1 = unknown, dropped).
            n_beams: the sensor's beam count (``beams:N`` needs N to divide it).

        Raises:
            ValueError: ``beams:N`` without rings, or N does not divide ``n_beams``.
        """
        if self.kind == 'all':
            return np.ones(n, dtype=bool)
        if self.kind == 'ratio':
            keep = np.zeros(n, dtype=bool)
            k = int(round(self.value * n))
            keep[np.random.default_rng(self.seed).choice(n, size=k, replace=False)] = True
            return keep
        beams = int(self.value)
        if rings is None:
            raise ValueError(f'{self} needs a ring index per point (a PointCloud2 scan, not a depth image)')
        if beams > n_beams or n_beams % beams:
            raise ValueError(f'{self}: the number of beams kept must divide the sensor\'s {n_beams} '
                             f'(e.g. {", ".join(str(n_beams // k) for k in (2, 4, 8) if n_beams % k == 0)})')
        rings = np.asarray(rings)
        if rings.shape != (n,):
            raise ValueError(f'rings must be ({n},), got {rings.shape}')
        return (rings >= 0) & (rings % (n_beams // beams) == 0)


def project_to_depth(points: np.ndarray, K: np.ndarray, shape: tuple[int, int], max_depth: float | None = None
                     ) -> np.ndarray:
    """Sparse depth image of points in the camera optical frame.

    Args:
        points: (N, 3+) float points in the camera's optical frame (x right, y down,
            z forward), metres; non-finite points are ignored, columns beyond 3 too.
        K: (3, 3) intrinsics of the (H, W) image (a skew K[0, 1] is honoured).
        shape: (H, W).
        max_depth: returns with z beyond this are left out (None keeps all).

    Returns:
        (H, W) float32 depth z in metres, the nearest return per pixel, 0 = no return.
        Points with z <= 0 (behind the camera) or outside the image are dropped.
    """
    return project_with_count(points, K, shape, max_depth)[0]


def project_with_count(points: np.ndarray, K: np.ndarray, shape: tuple[int, int], max_depth: float | None = None
                       ) -> tuple[np.ndarray, int]:
    """:func:`project_to_depth` and the number of points that landed in the image (finite,
    in front of the camera, within ``max_depth``, inside the (H, W) image; several may share
    a pixel)."""
    H, W = int(shape[0]), int(shape[1])
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 3:
        raise ValueError(f'points must be (N, 3+), got {p.shape}')
    p = p[:, :3]
    p = p[np.all(np.isfinite(p), axis=1)]
    z = p[:, 2]
    keep = z > 0
    if max_depth is not None:
        keep &= z <= max_depth
    p, z = p[keep], z[keep]
    K = np.asarray(K, dtype=np.float64)
    u = np.floor(K[0, 0] * p[:, 0] / z + K[0, 1] * p[:, 1] / z + K[0, 2] + 0.5)
    v = np.floor(K[1, 1] * p[:, 1] / z + K[1, 2] + 0.5)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    pix = v[inside].astype(np.int64) * W + u[inside].astype(np.int64)
    z = z[inside]
    depth = np.zeros(H * W, dtype=np.float32)
    if z.size:
        order = np.argsort(z, kind='stable')  # nearest first
        uniq, first = np.unique(pix[order], return_index=True)
        depth[uniq] = z[order][first]
    return depth.reshape(H, W), int(z.size)


def sparse_depth(points: np.ndarray, K: np.ndarray, image_shape: tuple[int, int],
                 out_shape: tuple[int, int] | None = None, max_depth: float | None = None) -> np.ndarray:
    """:func:`project_to_depth` at any output size.

    Args:
        points: (N, 3+) points in the camera optical frame, metres.
        K: (3, 3) intrinsics of the camera image of size ``image_shape`` (H, W).
        out_shape: (H', W') of the sparse image (default: the image's); K is scaled by
            (W'/W, H'/H) as image_proc's resize does (:func:`packnet_ros.geometry.scale_intrinsics`).
        max_depth: see :func:`project_to_depth`.

    Returns:
        (H', W') float32 metres, 0 = no return.
    """
    H, W = int(image_shape[0]), int(image_shape[1])
    if out_shape is None or tuple(out_shape) == (H, W):
        return project_to_depth(points, K, (H, W), max_depth)
    h, w = int(out_shape[0]), int(out_shape[1])
    return project_to_depth(points, scale_intrinsics(np.asarray(K, dtype=np.float64), w / W, h / H), (h, w),
                            max_depth)


KITTI_T_CAMERA_LIDAR = np.array([
    [0.00023477, -0.99994415, -0.01056348, 0.05705245],
    [0.01044941, 0.01056535, -0.99988957, -0.07546672],
    [0.99994539, 0.00012437, 0.0104513, -0.26938691],
    [0.0, 0.0, 0.0, 1.0]])
"""KITTI 2011_09_26 (every drive of that day, incl. kitti_tiny and kitti_traffic): Velodyne
frame -> rectified optical frame of camera 2 (``image_02``), ``T_rect_shift @ R_rect_00 @
T_cam0_velo`` of :class:`packnet_ros.io.kitti.KittiDrive`, rounded to 1e-8."""


def pixel_beams(depth: np.ndarray, K: np.ndarray, T_camera_lidar: np.ndarray = KITTI_T_CAMERA_LIDAR,
                model: BeamModel = HDL64E, row_offset_px: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Nearest nominal beam of every pixel with depth, and the elevation offset from it.

    Each pixel with a return is unprojected with ``K`` (pixel (u, v + ``row_offset_px``),
    depth z: X = z K^-1 (u, v, 1)), moved into the LiDAR frame with ``T_camera_lidar``^-1,
    and gets the nominal beam nearest to its elevation, corrected for the beam origin height
    as in :func:`beam_rings` (two passes: the first guesses the beam, whose firing height the
    second uses); no histogram (pixel rows quantise the elevation too coarsely for one: at 192
    rows one pixel is ~0.16 deg, half the HDL-64E's upper beam spacing).

    Args:
        depth: (H, W) metres, 0 / NaN = no return.
        K: (3, 3) intrinsics of that image.
        T_camera_lidar: (4, 4) LiDAR frame -> camera optical frame (default: KITTI 2011_09_26).
        model: the sensor's beams.
        row_offset_px: added to the row of each pixel before unprojecting (see :func:`pixel_rings`).

    Returns:
        (rings (H, W) int64 in [0, model.n_beams), -1 where there is no return; offsets (H, W)
        float64 degrees, the elevation minus that beam's nominal elevation, NaN where there is
        no return).

    Raises:
        ValueError: ``depth`` is not (H, W).
    """
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f'depth must be (H, W), got {d.shape}')
    rings = np.full(d.shape, -1, dtype=np.int64)
    offsets = np.full(d.shape, np.nan)
    valid = np.isfinite(d) & (d > 0)
    if not valid.any():
        return rings, offsets
    v, u = np.nonzero(valid)
    z = d[v, u]
    K = np.asarray(K, dtype=np.float64)
    y = (v + float(row_offset_px) - K[1, 2]) * z / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y / z) * z / K[0, 0]
    T = np.linalg.inv(np.asarray(T_camera_lidar, dtype=np.float64))
    p = np.stack([x, y, z], 1) @ T[:3, :3].T + T[:3, 3]
    heights = np.asarray(model.origin_height_m, dtype=np.float64)
    guess = np.clip(np.rint(_fractional_index(model, elevation_deg(p, heights[0]))), 0, model.n_beams - 1)
    ring = np.clip(np.rint(_fractional_index(model, elevation_deg(p, heights[guess.astype(np.int64)]))),
                   0, model.n_beams - 1).astype(np.int64)
    rings[v, u] = ring
    offsets[v, u] = elevation_deg(p, heights[ring]) - np.asarray(model.angles_deg, dtype=np.float64)[ring]
    return rings, offsets


def pixel_rings(depth: np.ndarray, K: np.ndarray, T_camera_lidar: np.ndarray = KITTI_T_CAMERA_LIDAR,
                model: BeamModel = HDL64E, row_offset_px: float = 0.0) -> np.ndarray:
    """Approximate ring (beam) index of every return of a projected LiDAR depth image, for
    scans that are only available as depth images (training batches): the rings of
    :func:`pixel_beams`.

    Accuracy (kitti_traffic, scans projected at 192 x 640 as the training data,
    against :func:`beam_rings` on the scans): ~3/4 of the returns get the same ring, nearly
    all others a neighbouring one; "is the ring kept by ``beams:16``" agrees for ~90 %
    (``test/test_training_completion.py`` checks a lower bound).

    Args:
        depth, K, T_camera_lidar, model: as :func:`pixel_beams`.
        row_offset_px: added to the row of each pixel before unprojecting (0.5 for depth
            maps resized with packnet-sfm's ``resize_depth_preserve``, whose floor puts a
            return half a row above its position on average; 0 for a projection that rounds).

    Returns:
        (H, W) int64 ring index in [0, model.n_beams), -1 where there is no return.
    """
    return pixel_beams(depth, K, T_camera_lidar, model, row_offset_px)[0]


__all__ = ['BeamModel', 'KITTI_T_CAMERA_LIDAR', 'pixel_beams', 'pixel_rings', 'HDL64E', 'elevation_deg', 'beam_rings', 'Subsample', 'project_to_depth', 'project_with_count',
           'sparse_depth']
