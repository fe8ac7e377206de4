"""Edge-aware inverse-depth smoothness.

Mirrors packnet-sfm ``packnet_sfm/utils/depth.py`` (``inv_depths_normalize``,
``calc_smoothness``) and ``packnet_sfm/utils/image.py`` (``gradient_x``, ``gradient_y``)
for one scale; the per-scale weighting (1 / 2^i, mean over scales, x 0.001) is applied
by :func:`packnet_ros.losses.sfm.sfm_loss`.
"""
from __future__ import annotations

import torch

from .photometric import float32_region

__all__ = ['edge_aware_smoothness']


def _grad_x(t: torch.Tensor) -> torch.Tensor:
    return t[:, :, :, :-1] - t[:, :, :, 1:]


def _grad_y(t: torch.Tensor) -> torch.Tensor:
    return t[:, :, :-1, :] - t[:, :, 1:, :]


def edge_aware_smoothness(inv_depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of one inverse-depth map (scalar, unweighted).

    As packnet-sfm's ``calc_smoothness`` followed by the per-scale term of
    ``calc_smoothness_loss``:

    1. mean-normalise: d = inv_depth / clamp(mean_HW(inv_depth), min=1e-6), per image;
    2. forward differences d[..., :-1] - d[..., 1:] along x and y;
    3. weights exp(-mean_c |image gradient|) along the same axis (so depth changes
       across image edges are cheap);
    4. return mean|dx * wx| + mean|dy * wy| (the two means are added, not averaged).

    Args:
        inv_depth: (B, 1, H, W) inverse depth.
        image: (B, C, H, W) image at the same resolution (packnet-sfm: the target image
            matched to the inverse depth's resolution; full resolution when the depth
            maps are upsampled).

    Returns:
        Scalar float32 tensor.
    """
    if inv_depth.shape[-2:] != image.shape[-2:]:
        raise ValueError(f'inv_depth {tuple(inv_depth.shape)} and image {tuple(image.shape)} '
                         'must have the same resolution')
    with float32_region(inv_depth):
        inv_depth, image = inv_depth.float(), image.float()
        mean = inv_depth.mean(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        d = inv_depth / mean
        wx = torch.exp(-_grad_x(image).abs().mean(1, keepdim=True))
        wy = torch.exp(-_grad_y(image).abs().mean(1, keepdim=True))
        return (_grad_x(d) * wx).abs().mean() + (_grad_y(d) * wy).abs().mean()
