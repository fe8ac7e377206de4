"""Training sequences from KITTI raw drives, rosbag2 recordings and dash-cam videos.

Every reader turns its source into the same :class:`Sample`: a target image, its context
images (chosen by time), the intrinsics of these (undistorted / rectified) images, the
vehicle speed when known and the distance driven between target and each context, which is
what PackNet's weak velocity supervision needs (only ``||t||`` is supervised, packnet-sfm
issues #82 and #91).

Context selection (all readers): a sequence is a time-ordered list of frames with stamps.
Each requested context is a time offset ``dt`` from the target: ``context_offsets=(-1, 1)``
(the default) means ``dt = -p, +p`` with ``p`` the nominal frame period of the sequence (the
median spacing of its frames); ``context_dt_s=(-0.1, 0.1)`` gives the offsets in seconds
directly. The context is the frame whose stamp is nearest to ``target + dt``, accepted only
within ``tolerance_s`` (default ``p / 2``), so a dropped frame is never silently replaced by
the one after it. Targets that lack a context are listed in ``skipped`` as
``(source id, reason)``, never dropped silently. ``Sample.context_dt`` holds the *actual*
signed stamp differences.

Distance driven (``Sample.expected_translation``)::

    d_k = |dt_k| * (v(t) + v(t + dt_k)) / 2        (trapezoid, both speeds known)
    d_k = |dt_k| * v(t)                             (speed at the context unknown)

At 10 Hz and highway speed the two differ by ``|dt| * |dv| / 2`` (a few mm on KITTI);
the trapezoid is exact for constant acceleration. ``None`` when the target speed is unknown.

Plain numpy / OpenCV / rosbags: no ROS runtime and no torch model code is needed here.
"""
from __future__ import annotations

import bisect
import csv
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from ..geometry import intrinsics_from_camera_info
from ..imageproc import COLOR_ENCODINGS, ImageFormatError, decode_image, to_rgb8
from ..odometry import SpeedTrack
from .kitti import KittiDrive, KittiFormatError

__all__ = ['Sample', 'DataError', 'CameraIntrinsics', 'load_camera_yaml', 'expected_translation',
           'select_context', 'FrameSequence', 'KittiSequence', 'BagSequence', 'VideoSequence',
           'load_sequences']

_NS = 1_000_000_000


class DataError(ValueError):
    """A data source that cannot be used for training (missing file, missing calibration,
    unreadable video, bad configuration); the message names the source and what to do."""


@dataclass
class Sample:
    """One training sample: a target image, its context images and what is known about them.

    Attributes:
        target: (H, W, 3) uint8 RGB.
        contexts: N images of the same size, in the order of ``context_dt``.
        K: (3, 3) float64 intrinsics of these (undistorted / rectified) images.
        stamp_ns: target stamp, integer nanoseconds.
        context_dt: signed seconds, context stamp - target stamp (e.g. [-0.1, +0.1]).
        speed: m/s at the target stamp; None = unknown (no velocity supervision).
        expected_translation: distance driven between target and each context in metres
            (see :func:`expected_translation`), None when the speed is unknown.
        gt_depth: (H, W) float32 metres, NaN invalid (KITTI projected LiDAR), or None.
        source: e.g. ``'kitti:2011_09_26_drive_0023_sync:3'``, ``'bag:/path:1317...'``,
            ``'video:segment_a.mp4:57'``.
    """

    target: np.ndarray
    contexts: list
    K: np.ndarray
    stamp_ns: int
    context_dt: list
    speed: float | None
    expected_translation: list | None
    gt_depth: np.ndarray | None
    source: str


# ---------------------------------------------------------------------------------------- helpers
def expected_translation(speed_target: float | None, speed_contexts: Sequence[float | None],
                         context_dt: Sequence[float]) -> list[float] | None:
    """Distance driven between the target and each context (metres).

    Trapezoid of the speed at both stamps, ``|dt| * (v_t + v_c) / 2``, when the context speed
    is known, else ``|dt| * v_t``. Returns None when the target speed is unknown.
    """
    if speed_target is None:
        return None
    out = []
    for v_c, dt in zip(speed_contexts, context_dt):
        v = speed_target if v_c is None else 0.5 * (speed_target + v_c)
        out.append(abs(float(dt)) * float(v))
    return out


def select_context(stamps_ns: Sequence[int], target: int, dt_s: float, tolerance_s: float) -> int | None:
    """Index of the frame nearest to ``stamps_ns[target] + dt_s`` within ``tolerance_s``.

    ``stamps_ns`` must be sorted ascending. The target itself is never returned. None when no
    other frame lies within the tolerance.
    """
    want = stamps_ns[target] + dt_s * _NS
    i = bisect.bisect_left(stamps_ns, want)
    best, best_err = None, None
    for j in (i - 1, i):
        if 0 <= j < len(stamps_ns) and j != target:
            err = abs(stamps_ns[j] - want)
            if best_err is None or err < best_err:
                best, best_err = j, err
    if best is None or best_err > tolerance_s * _NS:
        return None
    return best


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def _index(i, n: int) -> int:
    i = operator.index(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f'sample index {i} out of range for {n} samples')
    return i


# ---------------------------------------------------------------------------------------- camera YAML
@dataclass
class CameraIntrinsics:
    """Pinhole camera with OpenCV distortion, from a YAML file (:func:`load_camera_yaml`).

    Attributes:
        K: (3, 3) float64 camera matrix of the *distorted* (raw) images.
        D: (n,) float64 distortion coefficients, OpenCV order (k1, k2, p1, p2[, k3[, k4, k5, k6]]),
            or (k1, k2, k3, k4) for ``model == 'equidistant'`` (fisheye).
        width, height: image size the calibration is for (pixels).
        model: ``'plumb_bob'``, ``'rational_polynomial'`` or ``'equidistant'``.
    """

    K: np.ndarray
    D: np.ndarray
    width: int
    height: int
    model: str = 'plumb_bob'


def _matrix(value, rows: int, cols: int, where: str) -> np.ndarray:
    if isinstance(value, dict):  # ROS camera_calibration format: {rows, cols, data}
        value = value.get('data')
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f'{where}: expected {rows}x{cols} numbers: {e}') from e
    if a.size != rows * cols:
        raise DataError(f'{where}: expected {rows}x{cols} numbers, got {a.size}')
    return a.reshape(rows, cols) if rows > 1 else a.reshape(-1)


def load_camera_yaml(path: str | Path) -> CameraIntrinsics:
    """Read camera intrinsics and distortion from a YAML file.

    Format (this package's; ``image_size`` is ``[width, height]``)::

        camera_matrix: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
        distortion: [k1, k2, p1, p2, k3]          # OpenCV order; [] or zeros = none
        image_size: [1280, 720]
        distortion_model: plumb_bob               # optional; or rational_polynomial, equidistant

    The YAML written by ROS ``camera_calibration`` (``camera_matrix: {rows, cols, data}``,
    ``distortion_coefficients: {data}``, ``image_width``, ``image_height``,
    ``distortion_model``) is accepted as well.

    Raises:
        DataError: unreadable file or missing / malformed entries.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f'cannot read camera YAML {path}: {e}') from e
    if not isinstance(doc, dict) or 'camera_matrix' not in doc:
        raise DataError(f'{path}: expected a mapping with camera_matrix [[fx,0,cx],[0,fy,cy],[0,0,1]], '
                        f'distortion [k1,k2,p1,p2,k3] and image_size [width, height]')
    K = _matrix(doc['camera_matrix'], 3, 3, f'{path}: camera_matrix')
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise DataError(f'{path}: camera_matrix must be [[fx,0,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0, '
                        f'got {K.tolist()}')
    d = doc.get('distortion', doc.get('distortion_coefficients', []))
    if isinstance(d, dict):
        d = d.get('data', [])
    D = np.asarray(d if d is not None else [], dtype=np.float64).reshape(-1)
    model = str(doc.get('distortion_model') or 'plumb_bob')
    if model not in ('plumb_bob', 'rational_polynomial', 'equidistant'):
        raise DataError(f'{path}: distortion_model {model!r} is not supported '
                        f'(plumb_bob, rational_polynomial, equidistant)')
    if model == 'equidistant' and D.size != 4:
        raise DataError(f'{path}: equidistant (fisheye) distortion needs 4 coefficients, got {D.size}')
    if model != 'equidistant' and D.size not in (0, 4, 5, 8, 12, 14):
        raise DataError(f'{path}: {D.size} distortion coefficients; OpenCV takes 4, 5, 8, 12 or 14')
    if 'image_size' in doc:
        size = doc['image_size']
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise DataError(f'{path}: image_size must be [width, height], got {size!r}')
        width, height = (int(v) for v in size)
    elif 'image_width' in doc and 'image_height' in doc:
        width, height = int(doc['image_width']), int(doc['image_height'])
    else:
        raise DataError(f'{path}: missing image_size [width, height] (the size the calibration is for)')
    return CameraIntrinsics(K, D, width, height, model)


def _undistort_maps(cam: CameraIntrinsics, new_K: np.ndarray, R: np.ndarray | None = None):
    size = (cam.width, cam.height)
    if cam.model == 'equidistant':
        return cv2.fisheye.initUndistortRectifyMap(cam.K, cam.D, np.eye(3) if R is None else R, new_K, size,
                                                   cv2.CV_16SC2)
    return cv2.initUndistortRectifyMap(cam.K, cam.D, R, new_K, size, cv2.CV_16SC2)


def _invalid_fraction(maps, width: int, height: int) -> float:
    """Fraction of undistorted pixels whose source lies outside the raw image (black border)."""
    x, y = cv2.convertMaps(maps[0], maps[1], cv2.CV_32FC1)
    bad = (x < 0) | (y < 0) | (x > width - 1) | (y > height - 1)
    return float(bad.mean())


def _has_distortion(D) -> bool:
    return D is not None and len(D) > 0 and bool(np.any(np.asarray(D, dtype=np.float64) != 0))


# ---------------------------------------------------------------------------------------- base
class FrameSequence:
    """Base of the sequence readers: time-ordered frames, context selection, Sample assembly.

    Subclasses fill ``self._stamps`` (sorted int ns) and implement ``_rgb(j)``, ``_K(j)``,
    ``_speed(j)``, ``_gt(j)``, ``_source(j)`` for frame ``j`` (position in ``_stamps``), then
    call :meth:`_build` with the candidate target positions.

    Attributes:
        skipped: ``[(source id, reason), ...]`` for every frame or target that was left out.
        warnings: notes about the whole source (no odometry, distortion handling, ...).
        context_dts: the requested context offsets in seconds (after converting frame offsets).
        period_s: nominal frame period (median spacing of the frames).
        tolerance_s: how far a context stamp may be from ``target + dt``.
    """

    kind = 'frames'

    def __init__(self, context_offsets: Sequence[int] = (-1, 1), context_dt_s: Sequence[float] | None = None,
                 tolerance_s: float | None = None):
        if context_dt_s is not None:
            dts = [float(v) for v in context_dt_s]
            if not dts or any(v == 0 or not math.isfinite(v) for v in dts):
                raise ValueError(f'context_dt_s must be non-zero finite seconds, got {context_dt_s!r}')
            self._offsets = None
        else:
            offs = [operator.index(v) for v in context_offsets]
            if not offs or 0 in offs or len(set(offs)) != len(offs):
                raise ValueError(f'context_offsets must be distinct non-zero frame offsets, got {context_offsets!r}')
            self._offsets = offs
            dts = None
        self._dts_given = dts
        self._tolerance_given = tolerance_s
        self.skipped: list[tuple[str, str]] = []
        self.warnings: list[str] = []
        self._stamps: list[int] = []
        self._items: list[tuple[int, list[int]]] = []
        self.context_dts: list[float] = []
        self.period_s = float('nan')
        self.tolerance_s = float('nan')

    # -- to implement
    def _rgb(self, j: int) -> np.ndarray:
        raise NotImplementedError

    def _K(self, j: int) -> np.ndarray:
        raise NotImplementedError

    def _speed(self, j: int) -> float | None:
        return None

    def _gt(self, j: int) -> np.ndarray | None:
        return None

    def _source(self, j: int) -> str:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return '?'

    # -- shared
    def _nominal_period_s(self) -> float:
        d = np.diff(np.asarray(self._stamps, dtype=np.int64))
        d = d[d > 0]
        return float(np.median(d)) / _NS if d.size else float('nan')

    def _build(self, candidates: Sequence[int]) -> None:
        """Choose contexts for each candidate target position; fill ``_items`` and ``skipped``."""
        self.period_s = self._nominal_period_s()
        if self._offsets is not None:
            self.context_dts = [o * self.period_s for o in self._offsets]
        else:
            self.context_dts = list(self._dts_given)
        self.tolerance_s = (self._tolerance_given if self._tolerance_given is not None
                            else 0.5 * self.period_s)
        for t in candidates:
            if not math.isfinite(self.period_s):
                self.skipped.append((self._source(t), 'fewer than 2 frames: no context frames exist'))
                continue
            ctx, why = [], None
            for k, dt in enumerate(self.context_dts):
                c = select_context(self._stamps, t, dt, self.tolerance_s)
                if c is None:
                    what = (f'frame offset {self._offsets[k]:+d}' if self._offsets is not None
                            else f'context dt {dt:+.3f} s')
                    why = (f'no context frame for {what}: no frame within {self.tolerance_s * 1e3:.0f} ms of '
                           f'target {dt:+.3f} s')
                    break
                ctx.append(c)
            if why is None:
                why = self._check_item(t, ctx)
            if why is not None:
                self.skipped.append((self._source(t), why))
            else:
                self._items.append((t, ctx))

    def _check_item(self, t: int, ctx: list[int]) -> str | None:
        """Reason why target ``t`` with contexts ``ctx`` cannot be used, or None."""
        return None

    @property
    def n_frames(self) -> int:
        return len(self._stamps)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def target_source(self, i: int) -> str:
        """Source id of sample ``i`` without loading images."""
        return self._source(self._items[_index(i, len(self))][0])

    def __getitem__(self, i) -> Sample:
        t, ctx = self._items[_index(i, len(self))]
        target = self._rgb(t)
        contexts = [self._rgb(c) for c in ctx]
        for c, img in zip(ctx, contexts):
            if img.shape != target.shape:
                raise DataError(f'{self._source(c)}: context image is {img.shape}, target '
                                f'{self._source(t)} is {target.shape}; contexts must have the target size')
        t0 = self._stamps[t]
        dts = [(self._stamps[c] - t0) / _NS for c in ctx]
        v = self._speed(t)
        return Sample(target=target, contexts=contexts, K=np.array(self._K(t), dtype=np.float64),
                      stamp_ns=int(t0), context_dt=dts, speed=v,
                      expected_translation=expected_translation(v, [self._speed(c) for c in ctx], dts),
                      gt_depth=self._gt(t), source=self._source(t))

    def describe(self) -> str:
        """What was found and what was skipped, one human-readable paragraph."""
        n_speed = sum(self._speed(t) is not None for t, _ in self._items)
        dts = ', '.join(f'{d:+.3f}' for d in self.context_dts) or '-'
        lines = [f'{self.kind} {self.name}: {self.n_frames} frames, period {self.period_s:.4f} s, '
                 f'{len(self)} targets with contexts at [{dts}] s (tolerance {self.tolerance_s * 1e3:.0f} ms), '
                 f'{n_speed} with speed, {len(self.skipped)} skipped']
        lines += [f'  skipped {src}: {why}' for src, why in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f'  ... and {len(self.skipped) - 20} more skipped')
        lines += [f'  warning: {w}' for w in self.warnings]
        return '\n'.join(lines)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.name!r}, samples={len(self)}, skipped={len(self.skipped)})'


# ---------------------------------------------------------------------------------------- KITTI
class KittiSequence(FrameSequence):
    """Samples from one KITTI raw drive (:class:`~packnet_ros.data.kitti.KittiDrive`).

    Args:
        drive: a drive folder or a :class:`KittiDrive`.
        targets: frame numbers to use as targets (default: every frame of the drive; those
            without both neighbours are skipped and reported).
        context_offsets / context_dt_s / tolerance_s: see :class:`FrameSequence` (the frame
            period is measured from the image timestamps, ~0.1037 s on KITTI).
        with_speed: read the OXTS forward/left/up velocity norm (:meth:`KittiDrive.speed`) of the
            target and context frames; missing OXTS then raises :class:`KittiFormatError`.
            False gives ``speed=None``.
        camera: camera folder when ``drive`` is a path.

    ``gt_depth`` is the projected LiDAR depth (``proj_depth``) when the target has one.
    """

    kind = 'kitti'

    def __init__(self, drive: str | Path | KittiDrive, targets: Sequence[int] | None = None,
                 context_offsets: Sequence[int] = (-1, 1), context_dt_s: Sequence[float] | None = None,
                 tolerance_s: float | None = None, with_speed: bool = True, camera: str = 'image_02'):
        super().__init__(context_offsets, context_dt_s, tolerance_s)
        self.drive = drive if isinstance(drive, KittiDrive) else KittiDrive(drive, camera)
        self.with_speed = with_speed
        self._frames = list(self.drive.frames)
        self._stamps = [self.drive.timestamp_ns(f) for f in self._frames]
        if any(b <= a for a, b in zip(self._stamps, self._stamps[1:])):
            raise KittiFormatError(f'{self.drive.path / self.drive.camera / "timestamps.txt"}: image timestamps '
                                   f'are not strictly increasing')
        pos = {f: j for j, f in enumerate(self._frames)}
        candidates = []
        for f in (self._frames if targets is None else targets):
            f = operator.index(f)
            if f not in pos:
                self.skipped.append((self._source_frame(f), f'no image for frame {f} in {self.drive.path}'))
            else:
                candidates.append(pos[f])
        self._speeds: dict[int, float | None] = {}
        self._build(candidates)
        if with_speed:  # read OXTS eagerly: a missing packet is an error now, not mid-training
            for t, ctx in self._items:
                for j in (t, *ctx):
                    self._speed(j)
        else:
            self.warnings.append('with_speed=False: no speed, no velocity supervision')

    def _nominal_period_s(self) -> float:
        # Per-frame spacing of consecutive frame numbers (robust to a sparse subset of frames).
        d = [(b - a) / (fb - fa) for (fa, a), (fb, b) in
             zip(zip(self._frames, self._stamps), zip(self._frames[1:], self._stamps[1:]))]
        return float(np.median(d)) / _NS if d else float('nan')

    @property
    def name(self) -> str:
        return self.drive.path.name

    def _source_frame(self, f: int) -> str:
        return f'kitti:{self.drive.path.name}:{f}'

    def _source(self, j: int) -> str:
        return self._source_frame(self._frames[j])

    def frame_of(self, i: int) -> int:
        """KITTI frame number of the target of sample ``i``."""
        return self._frames[self._items[_index(i, len(self))][0]]

    def context_frames_of(self, i: int) -> list[int]:
        """KITTI frame numbers of the contexts of sample ``i``."""
        return [self._frames[c] for c in self._items[_index(i, len(self))][1]]

    def _rgb(self, j: int) -> np.ndarray:
        return self.drive.image(self._frames[j])

    def _K(self, j: int) -> np.ndarray:
        return self.drive.K

    def _speed(self, j: int) -> float | None:
        if not self.with_speed:
            return None
        if j not in self._speeds:
            self._speeds[j] = self.drive.speed(self._frames[j])
        return self._speeds[j]

    def _gt(self, j: int) -> np.ndarray | None:
        f = self._frames[j]
        return self.drive.gt_depth(f) if self.drive.has_gt(f) else None


# ---------------------------------------------------------------------------------------- rosbag2
@dataclass
class _BagImage:
    stamp_ns: int
    msgtype: str
    height: int
    width: int
    encoding: str
    step: int
    is_bigendian: bool
    data: np.ndarray          # undecoded buffer (raw pixels or the compressed file)
    info: int = -1            # index into BagSequence._infos


@dataclass
class _BagCameraInfo:
    stamp_ns: int
    K: np.ndarray             # intrinsics of the (rectified) images the sequence returns
    width: int
    height: int
    raw: CameraIntrinsics | None   # set when the images must be undistorted
    R: np.ndarray | None


class BagSequence(FrameSequence):
    """Samples from a rosbag2 (MCAP or sqlite3) with camera images, CameraInfo and odometry.

    Args:
        bag_path: bag directory (or file).
        image_topic: ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) or
            ``sensor_msgs/CompressedImage`` (JPEG/PNG) topic.
        camera_info_topic: ``sensor_msgs/CameraInfo``; paired with each image by exact header
            stamp, else the latest one stamped at or before the image (the first one for images
            before any CameraInfo); ``k_pairing`` counts which happened.
        odom_topic: ``nav_msgs/Odometry`` (or ``geometry_msgs/TwistStamped``); speed = norm of
            the linear twist, linearly interpolated to each image stamp (:class:`SpeedTrack`).
            Missing topic: ``speed=None`` and a warning.
        depth_topic: optional ground-truth depth image topic (32FC1 m / 16UC1 mm) paired by
            exact stamp.
        context_offsets / context_dt_s / tolerance_s: see :class:`FrameSequence`.
        max_speed_gap_s: odometry may be at most this far from an image stamp (and neighbouring
            odometry samples at most twice this apart) for the speed to count.
        every: keep every N-th image message (offsets then count kept images).
        rectify: undistort the images with the CameraInfo's D, R, P (image_proc's rectify).
            None = automatically: when D is non-zero and the topic name has no ``rect``
            (a ``image_rect`` topic is already rectified although its CameraInfo keeps D).
        intrinsics: a camera YAML (:func:`load_camera_yaml`) to use instead of CameraInfo.

    Images are stored undecoded (the message buffer) and decoded on access: a bag of 1000
    1280x720 frames is not held as decoded RGB. Each image is validated once on load; an
    undecodable one (unsupported encoding, short buffer) is skipped and reported.

    Raises:
        DataError: no bag, no image topic, or no CameraInfo (and no ``intrinsics``).
    """

    kind = 'bag'

    def __init__(self, bag_path: str | Path, image_topic: str = '/camera/image_raw',
                 camera_info_topic: str = '/camera/camera_info', odom_topic: str | None = '/odom',
                 depth_topic: str | None = None, context_offsets: Sequence[int] = (-1, 1),
                 context_dt_s: Sequence[float] | None = None, tolerance_s: float | None = None,
                 max_speed_gap_s: float = 0.2, every: int = 1, rectify: bool | None = None,
                 intrinsics: str | Path | CameraIntrinsics | None = None):
        from ..bagio import bag_topics, iter_messages

        super().__init__(context_offsets, context_dt_s, tolerance_s)
        if operator.index(every) < 1:
            raise ValueError(f'every must be >= 1, got {every}')
        self.path = Path(bag_path)
        self.image_topic, self.camera_info_topic, self.odom_topic = image_topic, camera_info_topic, odom_topic
        self.max_speed_gap_s = float(max_speed_gap_s)
        self.k_pairing = {'exact': 0, 'latest': 0, 'first': 0, 'yaml': 0}
        if not self.path.exists():
            raise DataError(f'no bag at {self.path}')
        try:
            topics = bag_topics(self.path)
        except Exception as e:  # rosbags raises its own errors for non-bags
            raise DataError(f'cannot read bag {self.path}: {e}') from e
        if image_topic not in topics:
            raise DataError(f'{self.path}: no image topic {image_topic} (topics: {sorted(topics)}); '
                            f'pass image_topic=...')
        if isinstance(intrinsics, (str, Path)):
            intrinsics = load_camera_yaml(intrinsics)
        if intrinsics is None and camera_info_topic not in topics:
            raise DataError(f'{self.path}: no CameraInfo on {camera_info_topic}: K is needed for view synthesis; '
                            f'record camera_info with the images (ros2 bag record {image_topic} '
                            f'{camera_info_topic}), pass camera_info_topic=... if it has another name, or give '
                            f'intrinsics=<camera YAML> (see load_camera_yaml)')
        want = [image_topic]
        if intrinsics is None:
            want.append(camera_info_topic)
        if odom_topic and odom_topic in topics:
            want.append(odom_topic)
        elif odom_topic:
            self.warnings.append(f'no odometry on {odom_topic} (topics: {sorted(topics)}): speed unknown, '
                                 f'no velocity supervision')
        if depth_topic and depth_topic in topics:
            want.append(depth_topic)
        elif depth_topic:
            self.warnings.append(f'no depth topic {depth_topic}: gt_depth is None')

        images: list[_BagImage] = []
        infos: list[tuple[int, object]] = []
        self._depth_raw: dict[int, tuple] = {}
        self._track = SpeedTrack(max_samples=10 ** 9)
        n_odom = 0
        n_seen = 0
        try:
            for m in iter_messages(self.path, want):
                msg = m.msg
                if m.topic == image_topic:
                    n_seen += 1
                    if (n_seen - 1) % every:
                        continue
                    img = self._image_record(m, msg)
                    if img is not None:
                        images.append(img)
                elif m.topic == camera_info_topic:
                    infos.append((self._stamp_or_log(msg, m), msg))
                elif m.topic == odom_topic:
                    lin = msg.twist.twist.linear if hasattr(msg.twist, 'twist') else msg.twist.linear
                    self._track.add(self._stamp_or_log(msg, m), math.sqrt(lin.x ** 2 + lin.y ** 2 + lin.z ** 2))
                    n_odom += 1
                elif m.topic == depth_topic:
                    self._depth_raw[self._stamp_or_log(msg, m)] = (
                        msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian),
                        np.array(msg.data, dtype=np.uint8, copy=True))
        except DataError:
            raise
        except Exception as e:
            raise DataError(f'cannot read bag {self.path}: {e}') from e
        if not n_seen:
            raise DataError(f'{self.path}: topic {image_topic} has no messages')
        if odom_topic in want and not n_odom:
            self.warnings.append(f'{odom_topic} has no messages: speed unknown')

        # camera model per image
        self._infos: list[_BagCameraInfo] = []
        if intrinsics is not None:
            self._infos.append(self._info_from_yaml(intrinsics, image_topic, rectify))
            for img in images:
                img.info = 0
            self.k_pairing['yaml'] = len(images)
        else:
            if not infos:
                raise DataError(f'{self.path}: no CameraInfo on {camera_info_topic} (topic has no messages): '
                                f'K is needed for view synthesis; record camera_info or give intrinsics=<YAML>')
            infos.sort(key=lambda x: x[0])
            info_stamps = [s for s, _ in infos]
            cache: dict[int, int] = {}
            for img in images:
                k = bisect.bisect_right(info_stamps, img.stamp_ns) - 1
                if k >= 0 and info_stamps[k] == img.stamp_ns:
                    self.k_pairing['exact'] += 1
                elif k >= 0:
                    self.k_pairing['latest'] += 1
                else:
                    k = 0
                    self.k_pairing['first'] += 1
                if k not in cache:
                    try:
                        cache[k] = len(self._infos)
                        self._infos.append(self._info_from_msg(infos[k][1], image_topic, rectify))
                    except ValueError as e:
                        del cache[k]
                        self.skipped.append((self._src(img.stamp_ns), f'unusable CameraInfo: {e}'))
                        img.info = -2
                        continue
                img.info = cache[k]
            if self.k_pairing['latest'] or self.k_pairing['first']:
                self.warnings.append(f'CameraInfo stamps do not match every image: {self.k_pairing["exact"]} '
                                     f'exact, {self.k_pairing["latest"]} latest earlier, '
                                     f'{self.k_pairing["first"]} first (image before any CameraInfo)')
        kept = []
        for img in images:
            if img.info < 0:
                continue
            ci = self._infos[img.info]
            if ci.width and ci.height and (ci.width, ci.height) != (img.width, img.height):
                self.skipped.append((self._src(img.stamp_ns),
                                     f'image is {img.width}x{img.height} but its CameraInfo is for '
                                     f'{ci.width}x{ci.height}'))
                continue
            kept.append(img)
        kept.sort(key=lambda r: r.stamp_ns)
        self._images: list[_BagImage] = []
        for img in kept:
            if self._images and self._images[-1].stamp_ns == img.stamp_ns:
                self.skipped.append((self._src(img.stamp_ns), 'duplicate image stamp (kept the first)'))
                continue
            self._images.append(img)
        self._stamps = [img.stamp_ns for img in self._images]
        self._maps: dict[int, tuple] = {}
        self._build(range(len(self._images)))

    # -- loading
    @staticmethod
    def _stamp_or_log(msg, m) -> int:
        s = _stamp_ns(msg.header.stamp)
        return s if s > 0 else int(m.log_time_ns)

    def _src(self, stamp_ns: int) -> str:
        return f'bag:{self.path}:{stamp_ns}'

    def _image_record(self, m, msg) -> _BagImage | None:
        stamp = self._stamp_or_log(msg, m)
        if m.msgtype == 'sensor_msgs/msg/CompressedImage':
            data = np.array(msg.data, dtype=np.uint8, copy=True)
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            if bgr is None:
                self.skipped.append((self._src(stamp), f'undecodable CompressedImage (format {msg.format!r})'))
                return None
            return _BagImage(stamp, m.msgtype, bgr.shape[0], bgr.shape[1], msg.format, 0, False, data)
        if m.msgtype != 'sensor_msgs/msg/Image':
            raise DataError(f'{self.path}: {m.topic} is {m.msgtype}, expected sensor_msgs/msg/Image or '
                            f'CompressedImage')
        if msg.encoding not in COLOR_ENCODINGS:
            self.skipped.append((self._src(stamp), f'unsupported image encoding {msg.encoding!r} '
                                                   f'(decodable: {", ".join(COLOR_ENCODINGS)})'))
            return None
        try:
            decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))
        except ImageFormatError as e:
            self.skipped.append((self._src(stamp), f'undecodable image: {e}'))
            return None
        return _BagImage(stamp, m.msgtype, int(msg.height), int(msg.width), msg.encoding, int(msg.step),
                         bool(msg.is_bigendian), np.array(msg.data, dtype=np.uint8, copy=True))

    def _decide_rectify(self, D, image_topic: str, rectify: bool | None) -> bool:
        if not _has_distortion(D):
            return False
        if rectify is None:
            rectify = 'rect' not in image_topic.rsplit('/', 1)[-1]
            note = ('undistorting the images with D (image topic is not *rect*)' if rectify else
                    f'{image_topic} is taken as already rectified (its CameraInfo has non-zero D); '
                    f'pass rectify=True if it is not')
            if note not in self.warnings:
                self.warnings.append(note)
        return bool(rectify)

    def _info_from_msg(self, msg, image_topic: str, rectify: bool | None) -> _BagCameraInfo:
        K_rect = intrinsics_from_camera_info(msg.k, msg.p)   # P[:, :3] when set, else K
        D = np.asarray(msg.d, dtype=np.float64)
        w, h = int(msg.width), int(msg.height)
        if self._decide_rectify(D, image_topic, rectify):
            model = msg.distortion_model or 'plumb_bob'
            if model not in ('plumb_bob', 'rational_polynomial', 'equidistant'):
                raise ValueError(f'distortion model {model!r} cannot be undistorted (plumb_bob, '
                                 f'rational_polynomial, equidistant)')
            if not (w and h):
                raise ValueError('CameraInfo has no width/height; cannot build undistortion maps')
            K_raw = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            R = np.asarray(msg.r, dtype=np.float64).reshape(3, 3)
            R = None if not np.any(R) else R
            return _BagCameraInfo(0, K_rect, w, h, CameraIntrinsics(K_raw, D, w, h, model), R)
        return _BagCameraInfo(0, K_rect, w, h, None, None)

    def _info_from_yaml(self, cam: CameraIntrinsics, image_topic: str, rectify: bool | None) -> _BagCameraInfo:
        if self._decide_rectify(cam.D, image_topic, rectify):
            return _BagCameraInfo(0, cam.K.copy(), cam.width, cam.height, cam, None)
        return _BagCameraInfo(0, cam.K.copy(), cam.width, cam.height, None, None)

    # -- access
    @property
    def name(self) -> str:
        return str(self.path)

    def _source(self, j: int) -> str:
        return self._src(self._stamps[j])

    def _rgb(self, j: int) -> np.ndarray:
        img = self._images[j]
        if img.msgtype == 'sensor_msgs/msg/CompressedImage':
            bgr = cv2.imdecode(img.data, cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f'{self._source(j)}: undecodable CompressedImage')
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            rgb = to_rgb8(decode_image(img.height, img.width, img.encoding, img.step, img.data,
                                       img.is_bigendian), img.encoding)
        ci = self._infos[img.info]
        if ci.raw is not None:
            if img.info not in self._maps:
                self._maps[img.info] = _undistort_maps(ci.raw, ci.K, ci.R)
            m1, m2 = self._maps[img.info]
            rgb = cv2.remap(rgb, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return np.array(rgb, dtype=np.uint8, copy=True)   # own the memory (not a view of the buffer)

    def _K(self, j: int) -> np.ndarray:
        return self._infos[self._images[j].info].K

    def _speed(self, j: int) -> float | None:
        return self._track.speed_at(self._stamps[j], int(self.max_speed_gap_s * _NS))

    def _gt(self, j: int) -> np.ndarray | None:
        from ..imageproc import depth_image_to_meters

        rec = self._depth_raw.get(self._stamps[j])
        if rec is None:
            return None
        h, w, enc, step, big, data = rec
        return depth_image_to_meters(decode_image(h, w, enc, step, data, big), enc)

    def _check_item(self, t: int, ctx: list[int]) -> str | None:
        K = self._K(t)
        for c in ctx:
            if not np.allclose(self._K(c), K):
                return f'context {self._source(c)} has other intrinsics than the target'
            if (self._images[c].height, self._images[c].width) != (self._images[t].height, self._images[t].width):
                return f'context {self._source(c)} has another image size than the target'
        return None

    def describe(self) -> str:
        pairing = ', '.join(f'{k} {v}' for k, v in self.k_pairing.items() if v)
        return super().describe() + f'\n  K pairing: {pairing or "-"}; odometry samples: {len(self._track)}'


# ---------------------------------------------------------------------------------------- video
class VideoSequence(FrameSequence):
    """Samples from a video file (e.g. a dash-cam mp4), undistorted on load.

    Args:
        video_path: any file OpenCV's VideoCapture (FFmpeg) reads.
        intrinsics_yaml: camera YAML (:func:`load_camera_yaml`) for the video's resolution.
        frame_step: use every ``frame_step``-th frame (context offsets count used frames, so at
            25 fps ``frame_step=2`` gives contexts 0.08 s away).
        crop: ``(top, bottom, left, right)`` pixels removed after undistortion (e.g. the bonnet);
            K follows: ``cx -= left``, ``cy -= top``.
        context_offsets / context_dt_s / tolerance_s: see :class:`FrameSequence`.
        start, stop: frame range ``[start, stop)`` of the file to read (stop None = to the end).
        speed_csv: optional CSV of ``time_s, speed_mps`` rows (seconds from the first frame of the
            file, i.e. frame index / fps; a header row is allowed), linearly interpolated.
        max_speed_gap_s: see :class:`BagSequence` (for the CSV's samples).
        alpha: None (default) keeps the calibrated K for the undistorted image; a float in [0, 1]
            uses ``cv2.getOptimalNewCameraMatrix(K, D, size, alpha)`` instead.
        fps: override the container's frame rate.
        cache: ``'png'`` (default) keeps each undistorted frame losslessly PNG-compressed in
            memory (~3x smaller); ``'memory'`` keeps the arrays.

    Stamps are ``frame index / fps`` (``stamp_ns`` counts from the first frame of the file).

    Undistortion K: by default the undistorted image keeps the calibrated K (``newCameraMatrix
    = K``). For the barrel distortion of dash cams every output pixel then samples inside the
    raw image (no black border, which would corrupt the photometric loss), fx/fy stay as
    calibrated and only a thin outer rim of the raw field of view is lost; with ``alpha=0``
    OpenCV rescales fx and fy unequally (1044/1121 instead of 1156/1151 for the Udacity camera).
    A black border (pincushion lenses, ``alpha`` > 0) is reported in ``warnings``.

    Raises:
        DataError: missing / unreadable video, unreadable frame in [start, stop), video size
            other than the YAML's image_size, malformed YAML / crop / CSV.
    """

    kind = 'video'

    def __init__(self, video_path: str | Path, intrinsics_yaml: str | Path | CameraIntrinsics,
                 frame_step: int = 1, crop: Sequence[int] | None = None,
                 context_offsets: Sequence[int] = (-1, 1), context_dt_s: Sequence[float] | None = None,
                 tolerance_s: float | None = None, start: int = 0, stop: int | None = None,
                 speed_csv: str | Path | None = None, max_speed_gap_s: float = 1.0,
                 alpha: float | None = None, fps: float | None = None, cache: str = 'png'):
        super().__init__(context_offsets, context_dt_s, tolerance_s)
        self.path = Path(video_path)
        step = operator.index(frame_step)
        if step < 1:
            raise ValueError(f'frame_step must be >= 1, got {frame_step}')
        if cache not in ('png', 'memory'):
            raise ValueError(f"cache must be 'png' or 'memory', got {cache!r}")
        self.frame_step, self.cache = step, cache
        self.camera = intrinsics_yaml if isinstance(intrinsics_yaml, CameraIntrinsics) else \
            load_camera_yaml(intrinsics_yaml)
        cam = self.camera
        if not self.path.is_file():
            raise DataError(f'missing video {self.path}')
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                raise DataError(f'cannot open video {self.path}: not a file OpenCV/FFmpeg can decode '
                                f'(corrupt, truncated or unsupported codec)')
            self.fps = float(fps) if fps else float(cap.get(cv2.CAP_PROP_FPS))
            if not (self.fps > 0 and math.isfinite(self.fps)):
                raise DataError(f'{self.path}: the container has no frame rate; pass fps=...')
            self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if (w, h) != (cam.width, cam.height):
                raise DataError(f'{self.path} is {w}x{h} but the intrinsics are for {cam.width}x{cam.height}; '
                                f'calibrate at the video resolution or scale camera_matrix (fx, cx by '
                                f'{w}/{cam.width}; fy, cy by {h}/{cam.height}) and set image_size')
            # undistorted camera
            if alpha is None:
                self.K_undistorted = cam.K.copy()
            elif cam.model == 'equidistant':
                self.K_undistorted = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
                    cam.K, cam.D, (w, h), np.eye(3), balance=float(alpha))
            else:
                self.K_undistorted, _ = cv2.getOptimalNewCameraMatrix(cam.K, cam.D, (w, h), float(alpha))
            self._maps = _undistort_maps(cam, self.K_undistorted) if _has_distortion(cam.D) else None
            if self._maps is not None:
                bad = _invalid_fraction(self._maps, w, h)
                if bad > 0:
                    self.warnings.append(f'{bad:.1%} of the undistorted pixels lie outside the raw image '
                                         f'(black border): crop them')
            else:
                self.warnings.append('no distortion coefficients: frames used as read')
            # crop
            self.crop = (0, 0, 0, 0) if crop is None else tuple(operator.index(c) for c in crop)
            if len(self.crop) != 4 or min(self.crop) < 0 or self.crop[0] + self.crop[1] >= h or \
                    self.crop[2] + self.crop[3] >= w:
                raise DataError(f'crop must be (top, bottom, left, right) >= 0 pixels leaving an image of '
                                f'{w}x{h}, got {crop!r}')
            top, _, left, _ = self.crop
            self.K = self.K_undistorted.copy()
            self.K[0, 2] -= left
            self.K[1, 2] -= top
            # read
            start = operator.index(start)
            if start < 0:
                raise ValueError(f'start must be >= 0, got {start}')
            self._frames: list[int] = []
            self._data: list = []
            idx = 0
            while stop is None or idx < stop:
                use = idx >= start and (idx - start) % step == 0
                ok, bgr = cap.read() if use else (cap.grab(), None)
                if not ok:
                    if stop is not None:
                        raise DataError(f'{self.path}: frame {idx} is unreadable (the file reports '
                                        f'{self.frame_count} frames; stop={stop})')
                    if idx < self.frame_count:
                        self.warnings.append(f'stream ended at frame {idx} although the file reports '
                                             f'{self.frame_count} frames')
                    break
                if use:
                    if bgr is None or bgr.shape[:2] != (h, w):
                        raise DataError(f'{self.path}: frame {idx} is unreadable or not {w}x{h}')
                    self._frames.append(idx)
                    self._data.append(self._store(self._process(bgr)))
                idx += 1
        finally:
            cap.release()
        self.start, self.stop = start, stop
        self._stamps = [int(round(f * _NS / self.fps)) for f in self._frames]
        self._track = None
        if speed_csv is not None:
            self._track = _read_speed_csv(speed_csv)
            self.speed_csv = Path(speed_csv)
        else:
            self.warnings.append('no speed (video without speed_csv): no velocity supervision')
        self.max_speed_gap_s = float(max_speed_gap_s)
        self._build(range(len(self._frames)))

    def _nominal_period_s(self) -> float:
        return self.frame_step / self.fps if len(self._frames) > 1 else float('nan')

    def _process(self, bgr: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self._maps is not None:
            rgb = cv2.remap(rgb, self._maps[0], self._maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        top, bottom, left, right = self.crop
        H, W = rgb.shape[:2]
        return np.ascontiguousarray(rgb[top:H - bottom, left:W - right])

    def _store(self, rgb: np.ndarray):
        if self.cache == 'memory':
            return rgb
        ok, buf = cv2.imencode('.png', rgb, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise DataError(f'{self.path}: could not PNG-encode a frame for the in-memory cache')
        return buf

    @property
    def name(self) -> str:
        return self.path.name

    def _source(self, j: int) -> str:
        return f'video:{self.path.name}:{self._frames[j]}'

    def frame_of(self, i: int) -> int:
        """Frame index (in the file) of the target of sample ``i``."""
        return self._frames[self._items[_index(i, len(self))][0]]

    def _rgb(self, j: int) -> np.ndarray:
        d = self._data[j]
        if self.cache == 'memory':
            return d.copy()
        return cv2.imdecode(d, cv2.IMREAD_UNCHANGED)   # stored as RGB: no channel swap

    def _K(self, j: int) -> np.ndarray:
        return self.K

    def _speed(self, j: int) -> float | None:
        if self._track is None:
            return None
        return self._track.speed_at(self._stamps[j], int(self.max_speed_gap_s * _NS))


def _read_speed_csv(path: str | Path) -> SpeedTrack:
    path = Path(path)
    track = SpeedTrack(max_samples=10 ** 9)
    try:
        with open(path, newline='') as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or not ''.join(row).strip() or row[0].lstrip().startswith('#'):
                    continue
                try:
                    t, v = float(row[0]), float(row[1])
                except (ValueError, IndexError):
                    if lineno == 1:
                        continue  # header
                    raise DataError(f'{path}:{lineno}: expected "time_s, speed_mps", got {row!r}')
                track.add(int(round(t * _NS)), v)
    except OSError as e:
        raise DataError(f'cannot read speed CSV {path}: {e}') from e
    if not len(track):
        raise DataError(f'{path}: no "time_s, speed_mps" rows')
    return track


# ---------------------------------------------------------------------------------------- config
_SPEC_KEYS = {
    'kitti': ({'targets', 'context_offsets', 'context_dt_s', 'tolerance_s', 'with_speed', 'camera'}, set()),
    'bag': ({'image_topic', 'camera_info_topic', 'odom_topic', 'depth_topic', 'context_offsets', 'context_dt_s',
             'tolerance_s', 'max_speed_gap_s', 'every', 'rectify', 'intrinsics'}, {'intrinsics'}),
    'video': ({'intrinsics', 'frame_step', 'crop', 'context_offsets', 'context_dt_s', 'tolerance_s', 'start',
               'stop', 'speed_csv', 'max_speed_gap_s', 'alpha', 'fps', 'cache'}, {'intrinsics', 'speed_csv'}),
}


def load_sequences(specs: Sequence[dict], base_dir: str | Path | None = None) -> list[FrameSequence]:
    """Build sequence readers from config dicts.

    Examples::

        {'type': 'kitti', 'path': 'kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync', 'targets': [1, 2, 3]}
        {'type': 'bag', 'path': 'drive.bag', 'odom_topic': '/odom'}
        {'type': 'video', 'path': 'segment_a.mp4', 'intrinsics': 'camera.yaml', 'crop': [0, 80, 0, 0],
         'frame_step': 2}

    Every other key is the reader's keyword argument of the same name, except ``repeat``
    (int, default 1): the sequence is listed that many times, to weight a small sequence
    (e.g. the few frames that carry speed) against large ones. Relative ``path``,
    ``intrinsics`` and ``speed_csv`` are resolved against ``base_dir`` (default: the current
    directory).

    Raises:
        DataError: unknown type, missing path, unknown keys (or any reader's error).
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out: list[FrameSequence] = []
    for n, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise DataError(f'sequence spec #{n} must be a mapping, got {spec!r}')
        kind = spec.get('type')
        if kind not in _SPEC_KEYS:
            raise DataError(f'sequence spec #{n}: type must be one of {sorted(_SPEC_KEYS)}, got {kind!r}')
        if 'path' not in spec:
            raise DataError(f'sequence spec #{n} ({kind}): missing "path"')
        allowed, path_keys = _SPEC_KEYS[kind]
        unknown = set(spec) - allowed - {'type', 'path', 'repeat'}
        if unknown:
            raise DataError(f'sequence spec #{n} ({kind}): unknown keys {sorted(unknown)} '
                            f'(allowed: path, {", ".join(sorted(allowed))})')
        repeat = int(spec.get('repeat', 1))
        if repeat < 1:
            raise DataError(f'sequence spec #{n} ({kind}): repeat must be >= 1, got {repeat}')
        kwargs = {k: v for k, v in spec.items() if k not in ('type', 'path', 'repeat')}
        first = len(out)
        for k in path_keys & set(kwargs):
            if kwargs[k] is not None:
                kwargs[k] = base / Path(kwargs[k]).expanduser()
        path = base / Path(spec['path']).expanduser()
        if kind == 'kitti':
            out.append(KittiSequence(path, **kwargs))
        elif kind == 'bag':
            out.append(BagSequence(path, **kwargs))
        else:
            if 'intrinsics' not in kwargs:
                raise DataError(f'sequence spec #{n} (video): missing "intrinsics" (camera YAML; '
                                f'see load_camera_yaml)')
            out.append(VideoSequence(path, kwargs.pop('intrinsics'), **kwargs))
        out.extend([out[first]] * (repeat - 1))
    return out
