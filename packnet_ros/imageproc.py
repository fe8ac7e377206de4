"""Image buffers and preprocessing shared by the node, the bag tools and the data readers.

Nothing here imports ROS: functions take the fields of a ``sensor_msgs/Image``
(height, width, encoding, step, is_bigendian, data) so rclpy messages and rosbags
dataclasses are handled alike (cv_bridge's job, without its numpy-2 breakage).

Convention: RGB images are (H, W, 3) uint8 numpy arrays; network tensors are
(B, 3, H, W) float32 in [0, 1] (no mean/std normalisation, as packnet-sfm).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

# encoding -> (numpy dtype, channels)
ENCODINGS = {
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4), 'bgra8': (np.uint8, 4),
    'mono8': (np.uint8, 1), '8UC1': (np.uint8, 1), '8UC3': (np.uint8, 3),
    'mono16': (np.uint16, 1), '16UC1': (np.uint16, 1), '32FC1': (np.float32, 1),
}
COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '8UC1')
"""Encodings the depth node accepts as camera input (8UC1 is read as mono8)."""


class ImageFormatError(ValueError):
    """An image message that cannot be decoded.

    Attributes:
        kind: "encoding" (unsupported), "step" (row stride too small), "size" (buffer too
            short) or "empty" (zero width/height).
    """

    def __init__(self, message: str, kind: str = 'encoding'):
        super().__init__(message)
        self.kind = kind


def decode_image(height: int, width: int, encoding: str, step: int, data, is_bigendian: bool = False
                 ) -> np.ndarray:
    """View an image buffer as a numpy array, honouring row padding (``step``) and endianness.

    Returns:
        (H, W) for one channel, else (H, W, C), in the encoding's dtype and channel order.
        The array is a view of ``data`` where possible (read-only).

    Raises:
        ImageFormatError: unsupported encoding, step smaller than a row, or a buffer
            shorter than height * step.
    """
    if encoding not in ENCODINGS:
        raise ImageFormatError(f'unsupported encoding {encoding!r} (supported: {", ".join(ENCODINGS)})')
    if height <= 0 or width <= 0:
        raise ImageFormatError(f'empty image {width}x{height}', 'empty')
    base, channels = ENCODINGS[encoding]
    dtype = np.dtype(base).newbyteorder('>' if is_bigendian else '<')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError(f'step {step} is smaller than a row of {width} px {encoding} ({row_bytes} bytes)',
                               'step')
    buf = np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)
    if buf.size < height * step:
        raise ImageFormatError(f'data has {buf.size} bytes, expected height*step = {height * step}', 'size')
    rows = buf[:height * step].reshape(height, step)
    if step != row_bytes:  # drop the row padding (copies)
        rows = np.ascontiguousarray(rows[:, :row_bytes])
    flat = rows.view(dtype)
    arr = flat.reshape(height, width, channels) if channels > 1 else flat.reshape(height, width)
    return arr.astype(arr.dtype.newbyteorder('='), copy=False)


def camera_encoding_error(encoding: str) -> ImageFormatError:
    """The error for an image whose encoding a camera image may not have: it lists
    :data:`COLOR_ENCODINGS`, not every encoding :func:`decode_image` reads (depth ones)."""
    return ImageFormatError(f'unsupported encoding {encoding!r} (a camera image must be one of '
                            f'{", ".join(COLOR_ENCODINGS)})')


def check_camera_encoding(encoding: str) -> None:
    """Raise :func:`camera_encoding_error` unless ``encoding`` is in :data:`COLOR_ENCODINGS`."""
    if encoding not in COLOR_ENCODINGS:
        raise camera_encoding_error(encoding)


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded camera image to RGB uint8 (H, W, 3).

    Accepts :data:`COLOR_ENCODINGS`: rgb8, bgr8, rgba8, bgra8, and mono8 / 8UC1 (grey
    replicated to 3 channels).

    Raises:
        ImageFormatError: any other encoding (kind "encoding").
    """
    if encoding == 'rgb8':
        return image
    if encoding == 'bgr8':
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if encoding == 'rgba8':
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    if encoding == 'bgra8':
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if encoding in ('mono8', '8UC1'):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    raise camera_encoding_error(encoding)


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (H, W, 3) image to (height, width, 3).

    Area interpolation when shrinking (anti-aliased, as packnet-sfm's LANCZOS), linear
    when enlarging. Returns the input itself when the size already matches.
    """
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    interp = cv2.INTER_AREA if height * width < h * w else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interp)


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageFormatError(f'expected an (H, W, 3) RGB image, got shape {rgb.shape}')
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def depth_to_buffer(depth: np.ndarray) -> tuple[str, int, bytes]:
    """A float32 depth map (H, W) in metres as a REP 118 buffer: ('32FC1', step, data)."""
    d = np.ascontiguousarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f'depth must be (H, W), got {d.shape}')
    return '32FC1', d.shape[1] * 4, d.tobytes()


def depth_image_to_meters(image: np.ndarray, encoding: str) -> np.ndarray:
    """Decoded depth image -> float32 metres with NaN where invalid.

    32FC1 is metres (non-finite kept: NaN / +-Inf per REP 117, 0 treated as invalid);
    16UC1 / mono16 are millimetres with 0 = invalid (REP 118).

    Raises:
        ImageFormatError: not a depth encoding.
    """
    if encoding == '32FC1':
        out = image.astype(np.float32, copy=True)
        out[out == 0] = np.nan
        return out
    if encoding in ('16UC1', 'mono16'):
        out = image.astype(np.float32) * 1e-3
        out[image == 0] = np.nan
        return out
    raise ImageFormatError(f'encoding {encoding!r} is not a depth encoding (32FC1 or 16UC1)')
