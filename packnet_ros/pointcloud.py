"""Organized point clouds from a depth map and intrinsics (depth_image_proc conventions).

X = (u - cx) z / fx, Y = (v - cy) z / fy, Z = z in the camera's optical frame
(REP 103: x right, y down, z forward). The cloud keeps the depth map's H x W
organisation; every non-finite depth (NaN invalid, +Inf beyond range, -Inf too close,
REP 117) becomes a NaN point, exactly as depth_image_proc's point_cloud_xyz does.

The unprojection itself is :func:`packnet_ros.geometry.unproject` (one implementation
for training, inference and clouds).
"""
from __future__ import annotations

import numpy as np
import torch

from .geometry import unproject

XYZ_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4')])
"""PointCloud2 layout of an XYZ cloud: float32 x, y, z at offsets 0, 4, 8 (point_step 12)."""
XYZRGB_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('rgb', '<f4')])
"""XYZRGB layout: x, y, z, then ``rgb`` as a float32 holding 0x00RRGGBB bits (PCL packing)."""


def depth_to_xyz(depth, K) -> np.ndarray:
    """Organized XYZ points from a depth map.

    Args:
        depth: (H, W) float depth along z in metres (numpy or tensor); non-finite = no point.
        K: (3, 3) intrinsics of the depth map's resolution.

    Returns:
        (H, W, 3) float32 points in metres, NaN where the depth is not finite.
    """
    d = torch.as_tensor(np.asarray(depth, dtype=np.float32) if not isinstance(depth, torch.Tensor) else depth)
    if d.dim() != 2:
        raise ValueError(f'depth must be (H, W), got {tuple(d.shape)}')
    pts = unproject(d.float()[None, None], torch.as_tensor(np.asarray(K), dtype=torch.float32))
    pts = pts[0].permute(1, 2, 0)
    pts = torch.where(torch.isfinite(d)[..., None], pts, torch.full_like(pts, float('nan')))
    return pts.cpu().numpy()


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float32 whose bits are 0x00RRGGBB (PCL / RViz packing)."""
    rgb = rgb.astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return packed.astype(np.uint32).view(np.float32)


def make_cloud_array(points: np.ndarray, rgb: np.ndarray | None = None) -> np.ndarray:
    """Structured (H, W) array ready to be a PointCloud2's ``data``.

    Args:
        points: (H, W, 3) float32 points.
        rgb: optional (H, W, 3) uint8 colours of the same size (XYZRGB cloud).

    Returns:
        (H, W) array of XYZ_DTYPE or XYZRGB_DTYPE.

    Raises:
        ValueError: the colour image and the points differ in size.
    """
    H, W = points.shape[:2]
    if rgb is None:
        cloud = np.empty((H, W), XYZ_DTYPE)
    else:
        if rgb.shape[:2] != (H, W):
            raise ValueError(f'colour image {rgb.shape[:2]} and depth {(H, W)} differ in size')
        cloud = np.empty((H, W), XYZRGB_DTYPE)
        cloud['rgb'] = pack_rgb(rgb)
    cloud['x'], cloud['y'], cloud['z'] = points[..., 0], points[..., 1], points[..., 2]
    return cloud


def decimate(depth: np.ndarray, K: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep every ``step``-th row and column of a depth map; returns (depth, matching K).

    Pixel (u', v') of the result is pixel (step u', step v') of the input, so
    fx' = fx / step, cx' = cx / step (exact for this sampling, no half-pixel shift).
    """
    if step <= 1:
        return depth, K
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, :] /= step
    K[1, :] /= step
    K[2] = (0.0, 0.0, 1.0)
    return depth[::step, ::step], K


_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


def cloud_msg_to_arrays(msg) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 (rclpy or rosbags message) -> (points, colours).

    Args:
        msg: a cloud with float32 x, y, z fields (any point_step / row_step, either
            endianness) and optionally a packed float32 ``rgb`` field.

    Returns:
        points (H, W, 3) float32 for organised clouds (height > 1) else (N, 3); colours of
        the same leading shape (uint8 RGB) or None.

    Raises:
        ValueError: no float32 x, y, z fields.
    """
    fields = {f.name: (f.offset, f.datatype) for f in msg.fields}
    if not all(n in fields and fields[n][1] == _FLOAT32 for n in 'xyz'):
        raise ValueError(f'PointCloud2 without float32 x, y, z fields: {sorted(fields)}')
    names = [n for n in ('x', 'y', 'z', 'rgb') if n in fields]
    order = '>' if msg.is_bigendian else '<'
    dtype = np.dtype({'names': names, 'formats': [order + ('u4' if n == 'rgb' else 'f4') for n in names],
                      'offsets': [fields[n][0] for n in names], 'itemsize': msg.point_step})
    buf = np.frombuffer(memoryview(msg.data).cast('B'), dtype=np.uint8)
    rows = buf[:msg.height * msg.row_step].reshape(msg.height, msg.row_step)[:, :msg.width * msg.point_step]
    pts = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)
    xyz = np.stack([pts['x'], pts['y'], pts['z']], -1).astype(np.float32)
    rgb = None
    if 'rgb' in names:
        packed = pts['rgb'].astype(np.uint32)
        rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], -1).astype(np.uint8)
    if msg.height == 1:
        xyz = xyz[0]
        rgb = None if rgb is None else rgb[0]
    return xyz, rgb


_FIELD_DTYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}
"""sensor_msgs/PointField datatypes (INT8 .. FLOAT64) -> numpy type codes."""


def cloud_msg_field(msg, name: str) -> np.ndarray | None:
    """One scalar field of a PointCloud2 (rclpy or rosbags message), e.g. ``ring`` or
    ``intensity``.

    Returns:
        (H, W) array for organised clouds (height > 1) else (N,), in the field's own type
        (uint16 for a Velodyne driver's ``ring``, float32 for ``intensity``); None when the
        cloud has no such field.

    Raises:
        ValueError: the field has an unknown datatype.
    """
    field = next((f for f in msg.fields if f.name == name), None)
    if field is None:
        return None
    code = _FIELD_DTYPES.get(int(field.datatype))
    if code is None:
        raise ValueError(f'PointCloud2 field {name!r} has unknown datatype {field.datatype}')
    order = '>' if msg.is_bigendian else '<'
    dtype = np.dtype({'names': [name], 'formats': [order + code], 'offsets': [field.offset],
                      'itemsize': msg.point_step})
    buf = np.frombuffer(memoryview(msg.data).cast('B'), dtype=np.uint8)
    rows = buf[:msg.height * msg.row_step].reshape(msg.height, msg.row_step)[:, :msg.width * msg.point_step]
    values = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)[name]
    values = values.astype(values.dtype.newbyteorder('='))
    return values[0] if msg.height == 1 else values
