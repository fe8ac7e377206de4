"""Reader for one KITTI *raw* drive folder (plain numpy + OpenCV; no torch, no ROS).

Layout (KITTI raw devkit, Geiger et al., "Vision meets Robotics: The KITTI Dataset",
IJRR 2013)::

    <date>/                                 e.g. 2011_09_26/
        calib_cam_to_cam.txt                intrinsics, rectification, P_rect_0X
        calib_velo_to_cam.txt               R, T: Velodyne -> unrectified camera 0
        calib_imu_to_velo.txt               R, T: OXTS IMU -> Velodyne
        <date>_drive_<NNNN>_sync/           the drive folder given to :class:`KittiDrive`
            image_0X/data/%010d.png         rectified images (image_02 = left colour)
            image_0X/timestamps.txt         one capture time per frame of the whole drive
            image_0X/cam.txt                optional 3x3 K (PackNet-SfM "KITTI_tiny" addition)
            image_0X/poses.txt              optional 3x4 per frame (see KittiDrive.poses_file)
            oxts/data/%010d.txt             30 GPS/IMU values per frame
            oxts/dataformat.txt             names of the 30 values
            oxts/timestamps.txt             one OXTS time per frame of the whole drive
            proj_depth/velodyne/image_0X/%010d.npz   LiDAR depth projected into image_0X
                                            (PackNet-SfM layout, key 'velodyne_depth')
            velodyne_points/data/%010d.bin  optional Velodyne scans (float32 x, y, z, reflectance)

Frames (ROS REP 103 / REP 105 conventions):

* camera optical frame (``cam``): the *rectified* frame of the chosen camera,
  x right, y down, z forward, metres;
* Velodyne frame (``velo``): x forward, y left, z up, metres;
* IMU / vehicle frame (``imu``, REP 103 ``base_link``-like): x forward, y left, z up;
* OXTS world frame (``world``): x east, y north (both in the devkit's scaled Mercator
  projection, metres), z up = altitude above sea level in metres; see
  :meth:`KittiDrive.oxts_pose`.

Every transform ``T_a_b`` is a 4x4 float64 homogeneous matrix that maps points expressed in
frame ``b`` into frame ``a``: ``p_a = T_a_b @ p_b``.

All format problems raise :class:`KittiFormatError` (a ``ValueError``) whose message names the
offending path and what was expected; nothing is silently guessed.
"""
from __future__ import annotations

import calendar
import math
import operator
import re
import time
from pathlib import Path

import cv2
import numpy as np

__all__ = ['KittiDrive', 'KittiFormatError', 'parse_calib_file', 'parse_timestamp_ns', 'read_velodyne_bin',
           'OXTS_FIELDS', 'EARTH_RADIUS_M']

#: Earth radius used by the KITTI devkit's ``latToScale``/``latlonToMercator`` (metres).
EARTH_RADIUS_M = 6378137.0

#: The 30 OXTS fields in file order, as documented in the KITTI raw devkit readme
#: (``oxts/dataformat.txt`` ships the 14th one mistyped as a second ``ay``; it is ``az``).
OXTS_FIELDS: tuple[str, ...] = (
    'lat', 'lon', 'alt', 'roll', 'pitch', 'yaw',
    'vn', 've', 'vf', 'vl', 'vu',
    'ax', 'ay', 'az', 'af', 'al', 'au',
    'wx', 'wy', 'wz', 'wf', 'wl', 'wu',
    'pos_accuracy', 'vel_accuracy', 'navstat', 'numsats', 'posmode', 'velmode', 'orimode',
)

_CAMERAS = ('image_00', 'image_01', 'image_02', 'image_03')
_CALIB_FILES = ('calib_cam_to_cam.txt', 'calib_velo_to_cam.txt', 'calib_imu_to_velo.txt')
_TIMESTAMP_RE = re.compile(r'^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?$')
_FRAME_RE = re.compile(r'^\d+$')


KITTI_CAMERA_POSE = (0.27, 0.0, 1.65, 0.0, 0.0, 0.0)
"""Pose of the KITTI car's colour cameras in a ``base_link`` on the road below the Velodyne:
(x forward, y left, z up in metres; roll, pitch, yaw in radians) = 0.27 m ahead, 1.65 m
above the road, level (KITTI sensor setup, Geiger et al., IJRR 2013)."""


def find_kitti_drive(path: str | Path) -> Path:
    """The KITTI raw drive folder at or under ``path`` (a ``*_sync`` folder with ``image_02/``;
    the first in sorted order when there are several).

    Raises:
        FileNotFoundError: none found.
    """
    path = Path(path)
    if (path / 'image_02').is_dir():
        return path
    found = sorted(p.parent for p in path.glob('**/image_02') if p.parent.name.endswith('_sync'))
    if not found:
        raise FileNotFoundError(f'no KITTI raw drive (a *_sync folder with image_02/) under {path}')
    return found[0]


class KittiFormatError(ValueError):
    """A KITTI raw drive (or one of its files) is missing or does not have the expected format.

    The message always names the offending path and what the reader expected there.
    """


def parse_calib_file(path: str | Path) -> dict[str, np.ndarray]:
    """Parse a KITTI calibration file of ``key: v1 v2 ...`` lines.

    Args:
        path: e.g. ``calib_cam_to_cam.txt`` (KITTI raw devkit format).

    Returns:
        ``{key: 1-D float64 array}`` for every line whose value is a list of numbers; lines
        whose value is not numeric (``calib_time: 09-Jan-2012 13:57:47``) and blank lines are
        skipped. Shapes are left flat (e.g. ``P_rect_02`` has 12 values, reshape to (3, 4)).

    Raises:
        KittiFormatError: the file is missing/unreadable, a non-blank line has no ``:``, or no
            numeric entry was found.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise KittiFormatError(f'cannot read calibration file {path}: {e}') from e
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(':')
        if not sep:
            raise KittiFormatError(f'{path}:{lineno}: expected "key: values", got {line!r}')
        try:
            out[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            continue  # e.g. calib_time
    if not out:
        raise KittiFormatError(f'{path}: no numeric "key: values" lines (not a KITTI calibration file?)')
    return out


def parse_timestamp_ns(text: str, where: str = '<string>') -> int:
    """Convert a KITTI timestamp ``"2011-09-26 13:04:32.349659964"`` to integer ns since the epoch.

    The wall-clock time is treated as UTC (KITTI does not state a time zone; the recordings were
    made in Karlsruhe, so the true UTC instant may differ by the local offset, but differences
    between timestamps are exact). All nine fractional digits are kept (no float round trip);
    fewer digits are right-padded with zeros.

    Raises:
        KittiFormatError: the text does not match ``YYYY-MM-DD HH:MM:SS[.fffffffff]``
            (``where`` is used in the message).
    """
    m = _TIMESTAMP_RE.match(text.strip())
    if not m:
        raise KittiFormatError(f'{where}: expected a timestamp "YYYY-MM-DD HH:MM:SS.fffffffff", '
                               f'got {text.strip()!r}')
    try:
        seconds = calendar.timegm(time.strptime(m.group(1), '%Y-%m-%d %H:%M:%S'))
    except ValueError as e:
        raise KittiFormatError(f'{where}: invalid date/time {m.group(1)!r}: {e}') from e
    frac = (m.group(2) or '').ljust(9, '0')
    return seconds * 1_000_000_000 + int(frac)


def read_velodyne_bin(path: str | Path) -> np.ndarray:
    """One KITTI Velodyne scan (``velodyne_points/data/%010d.bin``).

    The file is a flat little-endian float32 array of (x, y, z, reflectance) per point,
    x/y/z in metres in the Velodyne frame (x forward, y left, z up), reflectance in [0, 1]
    (KITTI raw devkit).

    Returns:
        (N, 4) float32 array.

    Raises:
        KittiFormatError: the file is missing/unreadable or its size is not a multiple of
            16 bytes (4 float32 per point).
    """
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype='<f4')
    except OSError as e:
        raise KittiFormatError(f'cannot read Velodyne scan {path}: {e}') from e
    if raw.size % 4:
        raise KittiFormatError(f'{path}: {raw.size * 4} bytes is not a whole number of points '
                               f'(expected float32 x, y, z, reflectance = 16 bytes per point)')
    return raw.reshape(-1, 4).astype(np.float32, copy=False)


def _rt_to_matrix(R: np.ndarray, T: np.ndarray) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3] = np.asarray(R, dtype=np.float64).reshape(3, 3)
    M[:3, 3] = np.asarray(T, dtype=np.float64).reshape(3)
    return M


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class KittiDrive:
    """One KITTI raw drive folder, e.g. ``.../2011_09_26/2011_09_26_drive_0023_sync``.

    Source: KITTI raw dataset and devkit (Geiger, Lenz, Stiller, Urtasun, "Vision meets
    Robotics: The KITTI Dataset", IJRR 2013); depth maps in the PackNet-SfM ``proj_depth``
    layout.

    Attributes:
        path: the drive folder (``Path``).
        camera: ``'image_00'`` .. ``'image_03'`` (``image_02`` = left colour camera).
        calib_dir: folder holding the three ``calib_*.txt`` files (the drive's parent, or the
            drive folder itself if they are there).
        frames: sorted frame indices that have an image ``<camera>/data/%010d.png``.
        K: (3, 3) float64 intrinsics of the *rectified* image of ``camera`` in pixels (from
            ``<camera>/cam.txt`` if present, otherwise ``P_rect_0X[:, :3]``; if both exist they
            must agree).
        P_rect: (3, 4) float64 rectified projection matrix ``P_rect_0X`` of ``camera``: it maps
            points in the rectified camera-0 frame to pixels of this camera.
        image_size: ``(H, W)`` of the rectified images (``S_rect_0X``), e.g. (375, 1242).
        T_cam_velo: (4, 4) Velodyne frame -> this camera's rectified optical frame
            (``[I | K^-1 P_rect[:, 3]] @ R_rect_00 @ T_cam0_velo``, devkit convention).
        T_velo_imu: (4, 4) IMU/vehicle frame -> Velodyne frame (``calib_imu_to_velo``).
        T_cam_imu: (4, 4) IMU/vehicle frame -> this camera's rectified optical frame.
        R_rect_00: (4, 4) rectifying rotation of camera 0 (homogeneous).
        T_cam0_velo: (4, 4) Velodyne -> *unrectified* camera 0 (``calib_velo_to_cam``).

    Raises (constructor):
        KittiFormatError: the drive folder, ``<camera>/data`` (or any PNG in it), a calibration
            file or one of its required keys is missing, a calibration rotation is not
            orthonormal, ``cam.txt`` is malformed or disagrees with ``P_rect_0X``.
        ValueError: ``camera`` is not one of ``image_00`` .. ``image_03``.
    """

    def __init__(self, path: str | Path, camera: str = 'image_02'):
        if camera not in _CAMERAS:
            raise ValueError(f'camera must be one of {_CAMERAS}, got {camera!r}')
        self.path = Path(path)
        self.camera = camera
        self._cam_idx = camera[-2:]  # '02'
        if not self.path.is_dir():
            raise KittiFormatError(f'missing drive folder {self.path}: expected a KITTI raw drive '
                                   f'such as <root>/2011_09_26/2011_09_26_drive_0023_sync')
        data_dir = self.path / camera / 'data'
        if not data_dir.is_dir():
            raise KittiFormatError(f'missing {data_dir}: a KITTI raw drive needs {camera}/data/%010d.png '
                                   f'images for camera {camera}')
        self.frames: list[int] = sorted(int(p.stem) for p in data_dir.glob('*.png')
                                        if _FRAME_RE.match(p.stem))
        if not self.frames:
            raise KittiFormatError(f'no images in {data_dir}: expected files named %010d.png '
                                   f'(e.g. 0000000000.png)')
        self._frame_set = set(self.frames)
        self._oxts_cache: dict[int, dict[str, float]] = {}
        self._timestamps: dict[str, list[str]] = {}
        self._oxts_names: list[str] | None = None
        self._mercator_scale: float | None = None
        self._load_calibration()

    # ------------------------------------------------------------------ calibration
    def _find_calib_dir(self) -> Path:
        for d in (self.path.parent, self.path):
            if all((d / f).is_file() for f in _CALIB_FILES):
                return d
        missing = [str(self.path.parent / f) for f in _CALIB_FILES if not (self.path.parent / f).is_file()]
        raise KittiFormatError(
            f'missing calibration {", ".join(missing)}: a KITTI raw drive needs '
            f'{", ".join(_CALIB_FILES)} in its parent (date) folder {self.path.parent}')

    @staticmethod
    def _need(calib: dict[str, np.ndarray], key: str, n: int, path: Path) -> np.ndarray:
        if key not in calib:
            raise KittiFormatError(f'{path}: missing key {key!r} (expected {n} numbers)')
        v = calib[key]
        if v.size != n:
            raise KittiFormatError(f'{path}: key {key!r} has {v.size} numbers, expected {n}')
        return v

    @staticmethod
    def _check_rotation(R: np.ndarray, what: str, path: Path) -> None:
        err = np.abs(R.T @ R - np.eye(3)).max()
        if err > 1e-4 or abs(np.linalg.det(R) - 1.0) > 1e-4:
            raise KittiFormatError(f'{path}: {what} is not a rotation matrix '
                                   f'(max |R^T R - I| = {err:.2e}, det = {np.linalg.det(R):.6f})')

    def _load_calibration(self) -> None:
        self.calib_dir = self._find_calib_dir()
        c2c_path, v2c_path, i2v_path = (self.calib_dir / f for f in _CALIB_FILES)
        c2c = parse_calib_file(c2c_path)
        v2c = parse_calib_file(v2c_path)
        i2v = parse_calib_file(i2v_path)
        n = self._cam_idx
        self.P_rect = self._need(c2c, f'P_rect_{n}', 12, c2c_path).reshape(3, 4)
        R_rect = self._need(c2c, 'R_rect_00', 9, c2c_path).reshape(3, 3)
        self._check_rotation(R_rect, 'R_rect_00', c2c_path)
        w, h = self._need(c2c, f'S_rect_{n}', 2, c2c_path)
        self.image_size: tuple[int, int] = (int(round(h)), int(round(w)))
        self.R_rect_00 = np.eye(4)
        self.R_rect_00[:3, :3] = R_rect

        R_v = self._need(v2c, 'R', 9, v2c_path).reshape(3, 3)
        self._check_rotation(R_v, 'R (Velodyne -> camera 0)', v2c_path)
        self.T_cam0_velo = _rt_to_matrix(R_v, self._need(v2c, 'T', 3, v2c_path))
        R_i = self._need(i2v, 'R', 9, i2v_path).reshape(3, 3)
        self._check_rotation(R_i, 'R (IMU -> Velodyne)', i2v_path)
        self.T_velo_imu = _rt_to_matrix(R_i, self._need(i2v, 'T', 3, i2v_path))

        K_calib = self.P_rect[:, :3].copy()
        cam_txt = self.path / self.camera / 'cam.txt'
        if cam_txt.is_file():
            try:
                K_file = np.loadtxt(cam_txt, dtype=np.float64)
            except ValueError as e:
                raise KittiFormatError(f'{cam_txt}: expected a 3x3 matrix of numbers: {e}') from e
            if K_file.shape != (3, 3):
                raise KittiFormatError(f'{cam_txt}: expected a 3x3 intrinsics matrix, '
                                       f'got shape {K_file.shape}')
            if not np.allclose(K_file, K_calib, rtol=1e-5, atol=1e-3):
                raise KittiFormatError(f'{cam_txt} disagrees with P_rect_{n}[:, :3] of {c2c_path}: '
                                       f'{K_file.tolist()} vs {K_calib.tolist()}')
            self.K = K_file
        else:
            self.K = K_calib

        # P_rect = K_calib [I | t]: t is this camera's offset from rectified camera 0.
        T_rect_shift = np.eye(4)
        T_rect_shift[:3, 3] = np.linalg.solve(K_calib, self.P_rect[:, 3])
        self.T_cam_velo = T_rect_shift @ self.R_rect_00 @ self.T_cam0_velo
        self.T_cam_imu = self.T_cam_velo @ self.T_velo_imu

    # ------------------------------------------------------------------ images
    def _index(self, i) -> int:
        try:
            i = operator.index(i)
        except TypeError as e:
            raise TypeError(f'frame index must be an integer, got {i!r}') from e
        if i < 0:
            raise KittiFormatError(f'frame index must be >= 0, got {i} (drive {self.path})')
        return i

    def image_path(self, i: int) -> Path:
        """Path of the rectified image of frame ``i``: ``<drive>/<camera>/data/%010d.png``.

        Raises:
            KittiFormatError: frame ``i`` has no image in this drive.
        """
        i = self._index(i)
        p = self.path / self.camera / 'data' / f'{i:010d}.png'
        if i not in self._frame_set:
            raise KittiFormatError(f'missing {p}: frame {i} is not in this drive '
                                   f'(frames {self.frames[0]}..{self.frames[-1]}, {len(self.frames)} images)')
        return p

    def image(self, i: int) -> np.ndarray:
        """Rectified image of frame ``i``.

        Returns:
            (H, W, 3) uint8 RGB (converted from OpenCV's BGR; grayscale cameras image_00/01
            are replicated to 3 channels), (H, W) == :attr:`image_size`.

        Raises:
            KittiFormatError: the PNG is missing, unreadable/corrupt, or not of size
                :attr:`image_size`.
        """
        p = self.image_path(i)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise KittiFormatError(f'unreadable image {p}: expected a valid {self.image_size[1]}x'
                                   f'{self.image_size[0]} PNG (file corrupt or truncated?)')
        if img.shape[:2] != self.image_size:
            raise KittiFormatError(f'{p}: image is {img.shape[1]}x{img.shape[0]}, expected '
                                   f'{self.image_size[1]}x{self.image_size[0]} (S_rect_{self._cam_idx})')
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    # ------------------------------------------------------------------ timestamps
    def _timestamp_lines(self, rel: str, purpose: str) -> list[str]:
        if rel not in self._timestamps:
            p = self.path / rel
            if not p.is_file():
                raise KittiFormatError(f'missing {p}: a KITTI raw drive needs {rel} for {purpose}')
            self._timestamps[rel] = p.read_text().splitlines()
        return self._timestamps[rel]

    def _timestamp(self, rel: str, i: int, purpose: str) -> int:
        i = self._index(i)
        lines = self._timestamp_lines(rel, purpose)
        p = self.path / rel
        if i >= len(lines) or not lines[i].strip():
            raise KittiFormatError(f'{p} has no line {i + 1} for frame {i} '
                                   f'(expected one timestamp per frame; it has {len(lines)} lines)')
        return parse_timestamp_ns(lines[i], f'{p}:{i + 1}')

    def timestamp_ns(self, i: int) -> int:
        """Capture time of frame ``i`` of ``camera`` in integer nanoseconds since the Unix epoch.

        Line ``i`` of ``<camera>/timestamps.txt`` (the file covers the whole drive, also frames
        whose image is absent). The wall-clock text is treated as UTC and all nine fractional
        digits are kept (see :func:`parse_timestamp_ns`).

        Raises:
            KittiFormatError: the file or line ``i`` is missing or malformed.
        """
        return self._timestamp(f'{self.camera}/timestamps.txt', i, 'image capture times')

    def oxts_timestamp_ns(self, i: int) -> int:
        """OXTS (GPS/IMU) time of frame ``i`` in integer ns since the epoch (line ``i`` of
        ``oxts/timestamps.txt``, treated as UTC, full ns precision).

        Raises:
            KittiFormatError: the file or line ``i`` is missing or malformed.
        """
        return self._timestamp('oxts/timestamps.txt', i, 'OXTS times')

    # ------------------------------------------------------------------ OXTS
    def _oxts_field_names(self) -> list[str]:
        if self._oxts_names is not None:
            return self._oxts_names
        fmt = self.path / 'oxts' / 'dataformat.txt'
        if not fmt.is_file():
            names = list(OXTS_FIELDS)  # the devkit's documented order
        else:
            names = [line.partition(':')[0].strip() for line in fmt.read_text().splitlines()
                     if line.strip()]
            if len(names) != len(OXTS_FIELDS):
                raise KittiFormatError(f'{fmt}: {len(names)} field names, expected the '
                                       f'{len(OXTS_FIELDS)} of the KITTI devkit')
            # Known typo in KITTI's dataformat.txt: the 14th field (z acceleration) is named 'ay'.
            if names[13] == 'ay' and names[12] == 'ay':
                names[13] = 'az'
            if len(set(names)) != len(names):
                dups = sorted({n for n in names if names.count(n) > 1})
                raise KittiFormatError(f'{fmt}: duplicate field names {dups}')
            if names != list(OXTS_FIELDS):
                raise KittiFormatError(f'{fmt}: field names {names} differ from the KITTI devkit '
                                       f'order {list(OXTS_FIELDS)}')
        self._oxts_names = names
        return names

    def _oxts_file(self, i: int) -> Path:
        oxts_dir = self.path / 'oxts'
        p = oxts_dir / 'data' / f'{i:010d}.txt'
        if not oxts_dir.is_dir():
            raise KittiFormatError(f'missing {oxts_dir} (needed for {p}): a KITTI raw drive needs '
                                   f'oxts/ for speed and pose')
        if not p.is_file():
            raise KittiFormatError(f'missing {p}: a KITTI raw drive needs oxts/ for speed and pose')
        return p

    def oxts(self, i: int) -> dict[str, float]:
        """The 30 GPS/IMU values of frame ``i`` (``oxts/data/%010d.txt``), by name.

        Names and units (KITTI raw devkit, ``oxts/dataformat.txt``): ``lat``, ``lon`` (deg),
        ``alt`` (m); ``roll``, ``pitch``, ``yaw`` (rad; yaw 0 = east, counter-clockwise);
        ``vn``, ``ve`` (m/s north/east); ``vf``, ``vl``, ``vu`` (m/s forward/left/up, axes
        parallel/perpendicular to the earth surface); ``ax``, ``ay``, ``az`` (m/s^2 body
        x/y/z); ``af``, ``al``, ``au`` (m/s^2 forward/left/up); ``wx``, ``wy``, ``wz`` and
        ``wf``, ``wl``, ``wu`` (rad/s); ``pos_accuracy`` (m), ``vel_accuracy`` (m/s),
        ``navstat``, ``numsats``, ``posmode``, ``velmode``, ``orimode`` (codes, as floats).

        Raises:
            KittiFormatError: ``oxts/`` or the frame's file is missing, it does not hold exactly
                30 numbers, or ``dataformat.txt`` lists other fields.
        """
        i = self._index(i)
        if i not in self._oxts_cache:
            p = self._oxts_file(i)
            names = self._oxts_field_names()
            try:
                values = [float(v) for v in p.read_text().split()]
            except ValueError as e:
                raise KittiFormatError(f'{p}: expected {len(names)} numbers: {e}') from e
            if len(values) != len(names):
                raise KittiFormatError(f'{p}: {len(values)} numbers, expected {len(names)} '
                                       f'(KITTI OXTS packet)')
            if not all(math.isfinite(v) for v in values):
                raise KittiFormatError(f'{p}: non-finite values in OXTS packet')
            self._oxts_cache[i] = dict(zip(names, values))
        return dict(self._oxts_cache[i])

    def speed(self, i: int) -> float:
        """Vehicle speed at frame ``i`` in m/s: ``||(vf, vl, vu)||`` from the OXTS packet.

        Raises:
            KittiFormatError: as :meth:`oxts`.
        """
        o = self.oxts(i)
        return math.sqrt(o['vf'] ** 2 + o['vl'] ** 2 + o['vu'] ** 2)

    def velocity(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Linear and angular velocity of the vehicle at frame ``i``.

        Returns:
            ``(v, w)``: ``v = (vf, vl, vu)`` in m/s and ``w = (wf, wl, wu)`` in rad/s, each a
            (3,) float64 array in the vehicle/IMU frame (x forward, y left, z up, REP 103
            ``base_link``). Strictly, the OXTS f/l/u axes are the heading-aligned axes levelled
            with the earth surface, which differ from the body axes (x/y/z) by roll and pitch
            (< 1 deg on normal roads).

        Raises:
            KittiFormatError: as :meth:`oxts`.
        """
        o = self.oxts(i)
        return (np.array([o['vf'], o['vl'], o['vu']], dtype=np.float64),
                np.array([o['wf'], o['wl'], o['wu']], dtype=np.float64))

    @property
    def mercator_scale(self) -> float:
        """Devkit Mercator scale ``s = cos(lat0 * pi / 180)`` with ``lat0`` the latitude of the
        lowest-numbered OXTS file of the drive (frame 0 for a complete drive, as in the devkit's
        ``convertOxtsToPose``).

        Raises:
            KittiFormatError: no ``oxts/data/*.txt`` exists.
        """
        if self._mercator_scale is None:
            data = self.path / 'oxts' / 'data'
            idx = sorted(int(p.stem) for p in data.glob('*.txt') if _FRAME_RE.match(p.stem)) \
                if data.is_dir() else []
            if not idx:
                raise KittiFormatError(f'missing {data}/%010d.txt: a KITTI raw drive needs oxts/ '
                                       f'for speed and pose')
            self._mercator_scale = math.cos(math.radians(self.oxts(idx[0])['lat']))
        return self._mercator_scale

    def oxts_pose(self, i: int) -> np.ndarray:
        """Pose of the IMU at frame ``i`` in the OXTS world frame: 4x4 float64 ``T_world_imu``.

        KITTI devkit convention (``convertOxtsToPose``/``latlonToMercator``): with earth radius
        ``r = 6378137 m`` and ``s = cos(lat0 * pi / 180)`` (:attr:`mercator_scale`, ``lat0`` from
        the first frame of the drive)::

            t = (s * r * lon * pi / 180,
                 s * r * log(tan((90 + lat) * pi / 360)),
                 alt)
            R = Rz(yaw) @ Ry(pitch) @ Rx(roll)

        World frame: x east, y north (scaled Mercator metres; locally metric near ``lat0``),
        z up = altitude in metres; origin at (lat 0, lon 0, sea level) in Mercator coordinates, so
        translations are large (~1e6 m): use ``inv(oxts_pose(j)) @ oxts_pose(i)`` for relative
        motion (the devkit normalises by the first pose). The IMU frame is x forward, y left,
        z up. The camera pose in the same world is ``oxts_pose(i) @ inv(T_cam_imu)``.

        Raises:
            KittiFormatError: as :meth:`oxts`.
        """
        o = self.oxts(i)
        s, r = self.mercator_scale, EARTH_RADIUS_M
        T = np.eye(4)
        T[0, 3] = s * r * math.radians(o['lon'])
        T[1, 3] = s * r * math.log(math.tan(math.radians(90.0 + o['lat']) / 2.0))
        T[2, 3] = o['alt']
        T[:3, :3] = _rot_z(o['yaw']) @ _rot_y(o['pitch']) @ _rot_x(o['roll'])
        return T

    # ------------------------------------------------------------------ depth
    def _gt_path(self, i: int) -> Path:
        return self.path / 'proj_depth' / 'velodyne' / self.camera / f'{self._index(i):010d}.npz'

    def has_gt(self, i: int) -> bool:
        """Whether frame ``i`` has a projected LiDAR depth map
        (``proj_depth/velodyne/<camera>/%010d.npz``)."""
        return self._gt_path(i).is_file()

    def gt_depth(self, i: int) -> np.ndarray:
        """Projected Velodyne depth of frame ``i`` (PackNet-SfM ``proj_depth`` layout).

        Returns:
            (H, W) float32 depth in metres along the optical axis (z of the rectified camera
            optical frame), NaN where the file stores 0 (no LiDAR return). Sparse: ~5 % of the
            pixels of a KITTI frame are valid.

        Raises:
            KittiFormatError: the ``.npz`` is missing/unreadable, lacks key ``velodyne_depth``,
                has another shape than :attr:`image_size`, or holds negative/non-finite depth.
        """
        p = self._gt_path(i)
        if not p.is_file():
            raise KittiFormatError(f'missing {p}: expected projected LiDAR depth '
                                   f'(proj_depth/velodyne/{self.camera}/%010d.npz) for frame {i}')
        try:
            with np.load(p) as z:
                if 'velodyne_depth' not in z.files:
                    raise KittiFormatError(f'{p}: no key "velodyne_depth" (keys: {z.files})')
                depth = np.array(z['velodyne_depth'], dtype=np.float32)
        except KittiFormatError:
            raise
        except Exception as e:  # zipfile/pickle/OS errors of a broken file
            raise KittiFormatError(f'unreadable depth file {p}: expected an .npz with key '
                                   f'"velodyne_depth": {e}') from e
        depth = np.squeeze(depth)
        if depth.shape != self.image_size:
            raise KittiFormatError(f'{p}: depth shape {depth.shape}, expected {self.image_size}')
        if not np.all(np.isfinite(depth)) or (depth < 0).any():
            raise KittiFormatError(f'{p}: depth must be finite and >= 0 (0 = no return)')
        depth[depth == 0] = np.nan
        return depth

    # ------------------------------------------------------------------ Velodyne scans
    def velodyne_path(self, i: int) -> Path:
        """``velodyne_points/data/%010d.bin`` of frame ``i`` (it may not exist)."""
        return self.path / 'velodyne_points' / 'data' / f'{self._index(i):010d}.bin'

    def has_velodyne(self, i: int | None = None) -> bool:
        """Whether frame ``i`` (None: any frame) has a Velodyne scan."""
        if i is None:
            d = self.path / 'velodyne_points' / 'data'
            return d.is_dir() and any(d.glob('*.bin'))
        return self.velodyne_path(i).is_file()

    def velodyne(self, i: int) -> np.ndarray:
        """Velodyne scan of frame ``i``: (N, 4) float32 x, y, z (metres, Velodyne frame: x
        forward, y left, z up) and reflectance; :attr:`T_cam_velo` maps the points into this
        camera's rectified optical frame (projection with :attr:`K` is then
        ``P_rect_0X @ R_rect_00 @ T_cam0_velo``).

        Raises:
            KittiFormatError: no scan for frame ``i`` or a malformed file.
        """
        p = self.velodyne_path(i)
        if not p.is_file():
            raise KittiFormatError(f'missing {p}: no Velodyne scan for frame {i} '
                                   f'(velodyne_points/data/%010d.bin)')
        return read_velodyne_bin(p)

    # ------------------------------------------------------------------ poses.txt
    def poses_file(self) -> np.ndarray | None:
        """The per-frame 3x4 matrices of ``<camera>/poses.txt`` as (N, 4, 4) float64, or None.

        This file is not part of KITTI raw; it comes with PackNet-SfM's "KITTI_tiny" copy
        (one line of 12 row-major numbers per frame of the whole drive, frame ``i`` = line ``i``,
        line 0 = identity, translation along +z, i.e. a camera-optical-frame trajectory
        ``T_cam0_camI``).

        As verified on 2011_09_26_drive_0023 (frames 0-6, see test/test_kitti.py) it is **not**
        the OXTS/GPS ground truth and does not match the images: from frame 0 to 6 it moves
        2.99 m and turns 6.53 deg (~0.5 m and ~1.1 deg per frame), while the OXTS pose mapped into
        the camera (``T_cam_imu @ inv(oxts_pose(0)) @ oxts_pose(6) @ inv(T_cam_imu)``) moves
        5.63 m and turns 0.76 deg, speed x time gives 5.50 m, and a PnP of image features against
        frame 0's LiDAR depth gives 5.52 m / 0.75 deg. Warping frame 3 into frame 0 with LiDAR
        depth has a much larger photometric error with this file's motion than with OXTS's.
        What produced it (perhaps an estimated, scale-ambiguous odometry, or another trajectory)
        could not be determined; ``image_03/poses.txt`` is byte-identical to ``image_02``'s.
        Do not use it as ground truth; use :meth:`oxts_pose` instead.

        Raises:
            KittiFormatError: the file exists but is not N lines of 12 numbers.
        """
        p = self.path / self.camera / 'poses.txt'
        if not p.is_file():
            return None
        try:
            a = np.loadtxt(p, dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise KittiFormatError(f'{p}: expected lines of 12 numbers (3x4 row-major): {e}') from e
        if a.shape[1] != 12:
            raise KittiFormatError(f'{p}: {a.shape[1]} numbers per line, expected 12 (3x4 row-major)')
        out = np.tile(np.eye(4), (a.shape[0], 1, 1))
        out[:, :3, :] = a.reshape(-1, 3, 4)
        return out

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return (f'KittiDrive({str(self.path)!r}, camera={self.camera!r}, '
                f'frames={self.frames[0]}..{self.frames[-1]} ({len(self.frames)}))')
