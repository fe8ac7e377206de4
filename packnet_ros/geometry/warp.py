"""View synthesis: warp a context image into the target view (paper Sec. 3.1, Eq. 1-2)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .camera import project, transform_points, unproject


def view_synthesis(ref_image: torch.Tensor, depth: torch.Tensor, K: torch.Tensor,
                   T_ref_target: torch.Tensor, K_ref: torch.Tensor | None = None,
                   padding_mode: str = 'zeros') -> torch.Tensor:
    """Reconstruct the target image by sampling the reference (context) image.

    Each target pixel is back-projected with its depth, moved into the reference camera
    with T_ref_target, projected with the reference intrinsics and bilinearly sampled
    (``grid_sample``, align_corners=True, i.e. pixel centres at integer coordinates).

    Args:
        ref_image: (B, C, H, W) reference image.
        depth: (B, 1, H, W) target depth, metres.
        K: (B, 3, 3) or (3, 3) target intrinsics at this resolution.
        T_ref_target: (B, 4, 4) transform mapping target-camera points into the
            reference camera (PoseNet's output converted by ``pose_vec_to_mat``).
        K_ref: reference intrinsics (defaults to K, one camera).
        padding_mode: ``grid_sample`` padding for pixels projecting outside ("zeros" as
            packnet-sfm).

    Returns:
        (B, C, H, W) the reference image warped into the target view.
    """
    points = transform_points(T_ref_target, unproject(depth, K))
    uv = project(points, K if K_ref is None else K_ref)
    H, W = depth.shape[-2:]
    grid = torch.stack([2.0 * uv[:, 0] / (W - 1) - 1.0, 2.0 * uv[:, 1] / (H - 1) - 1.0], -1)
    return F.grid_sample(ref_image, grid.to(ref_image.dtype), mode='bilinear',
                         padding_mode=padding_mode, align_corners=True)
