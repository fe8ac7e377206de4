"""Velocity (weak pose-scale) supervision.

Mirrors packnet-sfm ``packnet_sfm/losses/velocity_loss.py`` (``VelocityLoss``): only the
norm of the predicted translation is compared with the norm of the ground-truth one,
so a speed times the frame interval is enough (packnet-sfm issues #82, #91).
"""
from __future__ import annotations

import torch

from .photometric import float32_region

__all__ = ['velocity_loss']


def velocity_loss(translations: torch.Tensor, expected_norms: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between predicted and expected translation magnitudes.

    ``mean | ||t_pred||_2 - expected |`` over all valid (batch, context) entries. With every
    entry valid this equals packnet-sfm's mean over contexts of the batch mean. NaN
    expected values (unknown speed) are excluded; if none is valid the result is 0.

    Args:
        translations: (B, N, 3) predicted translations (the t column of T_context_target)
            of N context frames, metres.
        expected_norms: (B, N) expected |t| = speed * |dt|, metres (NaN = unknown).

    Returns:
        Scalar float32 tensor.
    """
    if translations.shape[:-1] != expected_norms.shape or translations.shape[-1] != 3:
        raise ValueError(f'translations {tuple(translations.shape)} must be (B, N, 3) and '
                         f'expected_norms {tuple(expected_norms.shape)} (B, N)')
    with float32_region(translations):
        t = translations.float()
        expected = expected_norms.to(device=t.device, dtype=torch.float32)
        valid = torch.isfinite(expected)
        # Fill invalid targets before the arithmetic so no NaN reaches the backward pass.
        expected = torch.where(valid, expected, torch.zeros_like(expected))
        diff = (t.norm(dim=-1) - expected).abs()
        count = valid.sum()
        if int(count) == 0:
            return t.new_zeros(())
        return torch.where(valid, diff, torch.zeros_like(diff)).sum() / count
