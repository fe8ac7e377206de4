"""Camera intrinsics and distortion from a YAML file, and undistortion with OpenCV.

Pixel conventions follow OpenCV / ``sensor_msgs/CameraInfo``: K maps camera-optical-frame
rays (x right, y down, z forward) to pixels with the origin at the centre of the top-left
pixel; D is in OpenCV order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .sequence import DataError

__all__ = ['CameraIntrinsics', 'load_camera_yaml', 'undistort_maps', 'invalid_fraction', 'has_distortion']


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
    """``rows`` x ``cols`` float64 array (1-D when ``rows == 1``) from a list or a ROS
    ``{rows, cols, data}`` mapping; DataError naming ``where`` otherwise."""
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


def undistort_maps(cam: CameraIntrinsics, new_K: np.ndarray,
                   R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV remap tables from the raw (distorted) image of ``cam`` to an undistorted image.

    Args:
        cam: raw camera (K, D, size, model; ``equidistant`` uses the fisheye model).
        new_K: (3, 3) intrinsics of the undistorted image (same size as the raw one).
        R: optional (3, 3) rectification rotation (CameraInfo ``R``); None = identity.

    Returns:
        ``(map1, map2)`` in ``CV_16SC2`` fixed-point form for :func:`cv2.remap`.
    """
    size = (cam.width, cam.height)
    if cam.model == 'equidistant':
        return cv2.fisheye.initUndistortRectifyMap(cam.K, cam.D, np.eye(3) if R is None else R, new_K, size,
                                                   cv2.CV_16SC2)
    return cv2.initUndistortRectifyMap(cam.K, cam.D, R, new_K, size, cv2.CV_16SC2)


def invalid_fraction(maps: tuple[np.ndarray, np.ndarray], width: int, height: int) -> float:
    """Fraction of undistorted pixels whose source lies outside the raw ``width`` x ``height``
    image (the black border), from :func:`undistort_maps` tables; 0..1."""
    x, y = cv2.convertMaps(maps[0], maps[1], cv2.CV_32FC1)
    bad = (x < 0) | (y < 0) | (x > width - 1) | (y > height - 1)
    return float(bad.mean())


def has_distortion(D: Sequence[float] | np.ndarray | None) -> bool:
    """True when the distortion coefficients ``D`` (any OpenCV order) are given and not all zero."""
    return D is not None and len(D) > 0 and bool(np.any(np.asarray(D, dtype=np.float64) != 0))
