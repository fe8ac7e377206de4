"""Inverse depth <-> depth (PackNet's networks predict inverse depth in 1/m)."""
from __future__ import annotations

import torch

MIN_INV_DEPTH = 1e-6
"""Inverse depths are clamped here before inverting (packnet-sfm ``inv2depth``): depth <= 1e6 m."""


def inv_to_depth(inv_depth: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Depth = scale / max(inverse depth, 1e-6), any shape, same dtype (packnet-sfm ``inv2depth``).

    Args:
        inv_depth: inverse depth in 1/m, e.g. (B, 1, H, W).
        scale: metric scale factor applied to the depth.

    Returns:
        depth in metres, same shape.
    """
    return scale / inv_depth.clamp(min=MIN_INV_DEPTH)
