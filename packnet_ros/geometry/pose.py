"""SE(3) helpers for PoseNet's 6-vectors (packnet-sfm's Euler convention).

Convention: a pose is a (B, 4, 4) homogeneous matrix T_a_b that maps points from
frame b into frame a. PoseNet's vector (tx, ty, tz, rx, ry, rz) becomes
[R | t] with R = Rx(rx) @ Ry(ry) @ Rz(rz), angles in radians, and is T_context_target.
"""
from __future__ import annotations

import torch


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices R = Rx @ Ry @ Rz from Euler angles.

    Args:
        angles: (B, 3) angles (rx, ry, rz), radians.

    Returns:
        (B, 3, 3) rotation matrices.
    """
    x, y, z = angles[:, 0], angles[:, 1], angles[:, 2]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rx @ ry @ rz


def pose_vec_to_mat(vec: torch.Tensor) -> torch.Tensor:
    """(B, 6) pose vectors (tx, ty, tz, rx, ry, rz) -> (B, 4, 4) transforms."""
    B = vec.shape[0]
    T = torch.zeros(B, 4, 4, dtype=vec.dtype, device=vec.device)
    T[:, :3, :3] = euler_to_matrix(vec[:, 3:])
    T[:, :3, 3] = vec[:, :3]
    T[:, 3, 3] = 1.0
    return T


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms (B, 4, 4): T_b_a from T_a_b."""
    R, t = T[:, :3, :3], T[:, :3, 3:]
    out = torch.zeros_like(T)
    out[:, :3, :3] = R.transpose(1, 2)
    out[:, :3, 3:] = -R.transpose(1, 2) @ t
    out[:, 3, 3] = 1.0
    return out
