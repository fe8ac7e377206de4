"""Training sequence of a video file (:class:`VideoSequence`) and speed CSVs (:func:`read_speed_csv`)."""
from __future__ import annotations

import csv
import math
import operator
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..msgdata import NS_PER_S
from ..odometry import SpeedTrack
from .camera_yaml import CameraIntrinsics, has_distortion, invalid_fraction, load_camera_yaml, undistort_maps
from .sequence import DataError, FrameSequence

__all__ = ['VideoSequence', 'read_speed_csv']


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
        ValueError: ``frame_step`` < 1, ``start`` < 0, unknown ``cache``, bad context offsets.
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
            self._maps = undistort_maps(cam, self.K_undistorted) if has_distortion(cam.D) else None
            if self._maps is not None:
                bad = invalid_fraction(self._maps, w, h)
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
        self._stamps = [int(round(f * NS_PER_S / self.fps)) for f in self._frames]
        self._track = None
        if speed_csv is not None:
            self._track = read_speed_csv(speed_csv)
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
        return self._frames[self._item(i)[0]]

    def _rgb(self, j: int) -> np.ndarray:
        d = self._data[j]
        if self.cache == 'memory':
            return d.copy()
        rgb = cv2.imdecode(d, cv2.IMREAD_UNCHANGED)   # stored as RGB: no channel swap
        if rgb is None:
            raise DataError(f'{self.name}: cached frame {j} cannot be decoded')
        return rgb

    def _K(self, j: int) -> np.ndarray:
        return self.K

    def _speed(self, j: int) -> float | None:
        if self._track is None:
            return None
        return self._track.speed_at(self._stamps[j], int(self.max_speed_gap_s * NS_PER_S))


def read_speed_csv(path: str | Path) -> SpeedTrack:
    """Vehicle speed samples from a CSV of ``time_s, speed_mps`` rows.

    ``time_s`` are seconds (stored as integer nanoseconds), ``speed_mps`` metres per second.
    Blank rows and ``#`` comments are skipped, and so is a first row that is not numeric (a
    header).

    Raises:
        DataError: unreadable file, a malformed row, or no rows at all.
    """
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
                track.add(int(round(t * NS_PER_S)), v)
    except OSError as e:
        raise DataError(f'cannot read speed CSV {path}: {e}') from e
    if not len(track):
        raise DataError(f'{path}: no "time_s, speed_mps" rows')
    return track
