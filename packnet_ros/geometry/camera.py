"""Pinhole camera geometry: intrinsics scaling, unprojection and projection.

Convention (REP 103 optical frame): x right, y down, z forward; pixel (u, v) is column
u, row v, with pixel centres at integer coordinates (as ``image_geometry`` and
depth_image_proc). Depth is the z coordinate in metres, not the ray length. K is the
3x3 intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]].
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def intrinsics_from_camera_info(k: Sequence[float], p: Sequence[float] | None = None) -> np.ndarray:
    """3x3 K from a CameraInfo's ``p`` (rectified, 3x4 row-major) if non-zero, else ``k`` (3x3).

    depth_image_proc / image_geometry read the projection matrix P; an all-zero P means
    the camera is not rectified and K applies.

    Returns:
        (3, 3) float64 array.

    Raises:
        ValueError: neither P nor K holds a calibration (fx == 0), i.e. an uncalibrated
            camera; or the chosen matrix has non-finite entries or a negative focal length.
    """
    use_p = p is not None and len(p) == 12 and float(p[0]) != 0.0
    if use_p:
        K = np.asarray(p, dtype=np.float64).reshape(3, 4)[:, :3].copy()
    else:
        K = np.asarray(k, dtype=np.float64).reshape(3, 3).copy()
    which = 'P' if use_p else 'K'
    if not np.isfinite(K).all():
        raise ValueError(f'camera_info {which} has non-finite entries (NaN or Inf): {K.ravel().tolist()}')
    if K[0, 0] == 0 or K[1, 1] == 0:
        raise ValueError('camera_info is uncalibrated (fx or fy is 0 in both P and K)')
    if K[0, 0] < 0 or K[1, 1] < 0:
        raise ValueError(f'camera_info {which} has a negative focal length (fx {K[0, 0]:g}, fy {K[1, 1]:g})')
    return K


def scale_intrinsics(K, sx: float, sy: float):
    """Intrinsics of an image resized by (sx, sy) = (new_w / old_w, new_h / old_h).

    fx, cx scale by sx and fy, cy by sy: the image_proc ``ResizeNode`` convention, used
    everywhere in this project (training, inference, published CameraInfo). It differs
    from the half-pixel form cx' = (cx + 0.5) sx - 0.5 by 0.5 (sx - 1) px.

    Args:
        K: (..., 3, 3) numpy array or tensor. Not modified.

    Returns:
        A scaled copy of the same type and shape.
    """
    K = K.clone() if isinstance(K, torch.Tensor) else np.array(K, dtype=np.float64, copy=True)
    K[..., 0, 0] *= sx
    K[..., 0, 2] *= sx
    K[..., 1, 1] *= sy
    K[..., 1, 2] *= sy
    return K


def pixel_grid(height: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Homogeneous pixel coordinates (3, H, W): rows (u, v, 1) with u = column, v = row."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                          torch.arange(width, dtype=dtype, device=device), indexing='ij')
    return torch.stack([u, v, torch.ones_like(u)], 0)


def unproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Back-project a depth map into 3D points in the camera's optical frame.

    X = (u - cx) z / fx, Y = (v - cy) z / fy, Z = z (depth_image_proc's formula).
    Non-finite depth gives non-finite points.

    Args:
        depth: (B, 1, H, W) depth along z, metres.
        K: (B, 3, 3) or (3, 3) intrinsics of that depth map's resolution.

    Returns:
        (B, 3, H, W) points (X, Y, Z), metres.
    """
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f'depth must be (B, 1, H, W), got {tuple(depth.shape)}')
    B, _, H, W = depth.shape
    K = K.to(device=depth.device, dtype=depth.dtype)
    K = K.expand(B, 3, 3) if K.dim() == 2 else K
    fx, fy = K[:, 0, 0].view(B, 1, 1), K[:, 1, 1].view(B, 1, 1)
    cx, cy = K[:, 0, 2].view(B, 1, 1), K[:, 1, 2].view(B, 1, 1)
    grid = pixel_grid(H, W, depth.dtype, depth.device)
    z = depth[:, 0]
    x = (grid[0] - cx) / fx * z
    y = (grid[1] - cy) / fy * z
    return torch.stack([x, y, z], 1)


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Project optical-frame points to pixel coordinates.

    Args:
        points: (B, 3, H, W) points, metres.
        K: (B, 3, 3) or (3, 3) intrinsics.
        eps: lower clamp of z to avoid division by zero (points behind the camera
            project far outside the image).

    Returns:
        (B, 2, H, W) pixel coordinates (u, v).
    """
    B = points.shape[0]
    K = K.to(device=points.device, dtype=points.dtype)
    K = K.expand(B, 3, 3) if K.dim() == 2 else K
    flat = points.reshape(B, 3, -1)
    uvw = K @ flat
    z = uvw[:, 2:3].clamp(min=eps)
    uv = uvw[:, :2] / z
    return uv.reshape(B, 2, *points.shape[2:])


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply T_a_b (B, 4, 4) to points (B, 3, H, W) expressed in frame b; returns frame a."""
    B = points.shape[0]
    flat = points.reshape(B, 3, -1)
    out = T[:, :3, :3] @ flat + T[:, :3, 3:4]
    return out.reshape(points.shape)
