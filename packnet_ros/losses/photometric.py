"""Photometric reconstruction error: SSIM + L1 and the per-pixel minimum reprojection.

Mirrors packnet-sfm ``packnet_sfm/losses/multiview_photometric_loss.py`` (function
``SSIM`` and ``MultiViewPhotometricLoss.SSIM`` / ``calc_photometric_loss`` /
``reduce_photometric_loss`` with ``photometric_reduce_op='min'``).

Every function here computes in float32 with autocast disabled, so it gives the same
result inside ``torch.autocast(..., dtype=torch.bfloat16)`` as outside (inputs that are
already bf16 are upcast; only their own rounding remains).
"""
from __future__ import annotations

import contextlib

import torch
from torch.nn import functional as F

__all__ = ['ssim', 'photometric_error', 'min_reprojection', 'float32_region']


def float32_region(tensor: torch.Tensor):
    """Context manager that switches autocast off for ``tensor``'s device type.

    Under CPU/CUDA autocast, matmul/bmm/conv run in bf16/fp16 even on float32 inputs;
    for the losses (pixel coordinates of several hundred px, SSIM variances) that costs
    whole pixels of warp precision, hence float32 throughout.
    """
    device_type = tensor.device.type
    if device_type not in ('cpu', 'cuda', 'xpu', 'mps'):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def _avg3x3_reflect(x: torch.Tensor) -> torch.Tensor:
    """3x3 mean with stride 1 over a ReflectionPad(1)-padded map (output size == input)."""
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode='reflect'), kernel_size=3, stride=1)


def ssim(x: torch.Tensor, y: torch.Tensor, c1: float = 1e-4, c2: float = 9e-4) -> torch.Tensor:
    """Per-pixel structural similarity of two images.

    As packnet-sfm's ``SSIM``: local statistics from a 3x3 average pool (stride 1) over
    ReflectionPad2d(1)-padded inputs, sigma = E[x^2] - mu^2 (biased), and
    SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x + sigma_y + C2)).
    Not clamped (values lie in about [-1, 1]).

    Args:
        x, y: (B, C, H, W) images (H, W >= 2 for the reflection pad).
        c1, c2: stabilisers (packnet-sfm C1 = 1e-4, C2 = 9e-4 for [0, 1] images).

    Returns:
        (B, C, H, W) float32 SSIM map.
    """
    with float32_region(x):
        x, y = x.float(), y.float()
        mu_x, mu_y = _avg3x3_reflect(x), _avg3x3_reflect(y)
        mu_xy, mu_x2, mu_y2 = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
        sigma_x = _avg3x3_reflect(x * x) - mu_x2
        sigma_y = _avg3x3_reflect(y * y) - mu_y2
        sigma_xy = _avg3x3_reflect(x * y) - mu_xy
        num = (2.0 * mu_xy + c1) * (2.0 * sigma_xy + c2)
        den = (mu_x2 + mu_y2 + c1) * (sigma_x + sigma_y + c2)
        return num / den


def photometric_error(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85,
                      c1: float = 1e-4, c2: float = 9e-4) -> torch.Tensor:
    """Per-pixel photometric error between a synthesised and a real image.

    ``alpha * mean_c(clamp((1 - SSIM) / 2, 0, 1)) + (1 - alpha) * mean_c(|pred - target|)``:
    packnet-sfm ``MultiViewPhotometricLoss.calc_photometric_loss`` with
    ``ssim_loss_weight = alpha`` (both terms averaged over channels, ``mean(1, True)``).
    With ``alpha <= 0`` packnet-sfm returns the raw per-channel L1; here the L1 is
    channel-averaged in that case too so the shape stays (B, 1, H, W).

    Args:
        pred: (B, C, H, W) warped context image (or the unwarped one, for automasking).
        target: (B, C, H, W) target image.
        alpha: SSIM weight (0.85 in packnet-sfm's configs).

    Returns:
        (B, 1, H, W) float32 error.
    """
    with float32_region(pred):
        pred, target = pred.float(), target.float()
        l1 = (pred - target).abs().mean(1, keepdim=True)
        if alpha <= 0.0:
            return l1
        dssim = ((1.0 - ssim(pred, target, c1, c2)) / 2.0).clamp(0.0, 1.0).mean(1, keepdim=True)
        return alpha * dssim + (1.0 - alpha) * l1


def min_reprojection(errors: list[torch.Tensor]) -> torch.Tensor:
    """Per-pixel minimum over a list of (B, 1, H, W) error maps -> (B, 1, H, W).

    packnet-sfm ``reduce_photometric_loss`` with 'min': ``torch.cat(losses, 1).min(1, True)``
    (the gradient goes to the map that attains the minimum).
    """
    if len(errors) == 0:
        raise ValueError('min_reprojection needs at least one error map')
    return torch.cat([e.float() for e in errors], 1).min(1, keepdim=True)[0]
