"""The self-supervised PackNet-SfM objective (photometric + smoothness + velocity).

Mirrors packnet-sfm:

* ``packnet_sfm/losses/multiview_photometric_loss.py`` (``MultiViewPhotometricLoss``:
  ``warp_ref_image``, ``calc_photometric_loss``, ``reduce_photometric_loss``,
  ``calc_smoothness_loss``, ``forward``);
* ``packnet_sfm/models/SfmModel.py`` (``compute_depth_net``: with
  ``upsample_depth_maps`` every inverse-depth scale is resized to full resolution by
  ``model_utils.upsample_output`` -> ``utils/image.interpolate_scales`` with
  ``mode='nearest'``);
* ``packnet_sfm/models/SelfSupModel.py`` (the target intrinsics are used for the
  context camera too);
* ``packnet_sfm/models/VelSupModel.py`` and ``losses/velocity_loss.py``
  (``loss += velocity_loss_weight * velocity_loss``);
* the values of ``configs/default_config.py`` (``cfg.model.loss``) as defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..geometry import inv_to_depth, view_synthesis
from .photometric import float32_region, min_reprojection, photometric_error
from .smoothness import edge_aware_smoothness
from .velocity import velocity_loss

__all__ = ['SfmLossConfig', 'sfm_loss']


@dataclass
class SfmLossConfig:
    """Hyper-parameters of :func:`sfm_loss` (packnet-sfm ``cfg.model.loss`` values).

    Attributes:
        ssim_weight: alpha of ``alpha * DSSIM + (1 - alpha) * L1`` (``ssim_loss_weight``).
        num_scales: inverse-depth scales used (the first ``num_scales`` of the list).
        automask: add the unwarped context images' errors to the per-pixel minimum
            (``automask_loss``; implies the 'min' reduction, as packnet-sfm asserts).
        upsample_depth_maps: nearest-upsample every scale to full resolution first.
        smooth_weight: ``smooth_loss_weight`` (0 disables the term).
        velocity_weight: ``velocity_loss_weight`` of VelSupModel.
        padding_mode: ``grid_sample`` padding of the warp.
        clip_loss: if > 0, clamp every photometric error map at mean + clip_loss * std.
    """

    ssim_weight: float = 0.85
    num_scales: int = 4
    automask: bool = True
    upsample_depth_maps: bool = True
    smooth_weight: float = 0.001
    velocity_weight: float = 0.1
    padding_mode: str = 'zeros'
    clip_loss: float = 0.0


def _scale_intrinsics_half_pixel(K: torch.Tensor, s: float) -> torch.Tensor:
    """packnet-sfm ``camera_utils.scale_intrinsics``: f' = f s, c' = (c + 0.5) s - 0.5."""
    K = K.clone()
    K[..., 0, 0] *= s
    K[..., 1, 1] *= s
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * s - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * s - 0.5
    return K


def _resize(image: torch.Tensor, size) -> torch.Tensor:
    """packnet-sfm ``match_scales``: bilinear, align_corners=True, no-op at equal size."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=tuple(size), mode='bilinear', align_corners=True)


def _clip(error: torch.Tensor, clip_loss: float) -> torch.Tensor:
    """packnet-sfm ``calc_photometric_loss`` clipping: max = mean + clip * std (constant)."""
    if clip_loss <= 0.0:
        return error
    limit = float(error.mean() + clip_loss * error.std())
    return error.clamp(max=limit)


def sfm_loss(target: torch.Tensor, contexts: list[torch.Tensor], inv_depths: list[torch.Tensor],
             poses: list[torch.Tensor], K: torch.Tensor,
             expected_translation: torch.Tensor | None = None,
             cfg: SfmLossConfig | None = None) -> dict:
    """Self-supervised multi-view photometric objective of PackNet-SfM.

    Procedure (packnet-sfm ``MultiViewPhotometricLoss.forward`` + SfmModel/VelSupModel):

    1. Scales: the first ``n = min(cfg.num_scales, len(inv_depths))`` inverse depths. With
       ``upsample_depth_maps`` each is nearest-upsampled (``F.interpolate(mode='nearest')``)
       to the target image's resolution, so every warp uses the full-resolution images
       and the unscaled K. Otherwise the target/context images are bilinearly resized
       (align_corners=True) to each scale and K is scaled with packnet-sfm's half-pixel
       rule (f s, (c + 0.5) s - 0.5, s = w_scale / W for both axes).
    2. Depth = 1 / clamp(inv_depth, min=1e-6) (``inv2depth``).
    3. For every context j: warp it into the target view with ``view_synthesis`` (depth,
       K for both cameras, ``poses[j]`` = T_context_target, ``cfg.padding_mode``) and take
       :func:`photometric_error` against the target (0.85 DSSIM + 0.15 L1, channel mean).
       With ``automask``, the error of the unwarped context against the target is added
       to the same list (interleaved warped_j, identity_j as packnet-sfm). packnet-sfm adds
       NO tie-breaking noise to the identity errors (monodepth2 does); neither does this.
       With ``clip_loss > 0`` each map is clamped at mean + clip_loss * std first.
    4. Per scale: per-pixel minimum over the list, then the mean over (B, H, W); the
       photometric loss is the average over the n scales.
    5. Smoothness (if ``smooth_weight > 0``): ``smooth_weight * mean_i(S_i / 2^i)`` with
       S_i = :func:`edge_aware_smoothness` of scale i's (upsampled) inverse depth and the
       target image at that same resolution. With upsampled depth maps that is the
       full-resolution target for every scale.
    6. Velocity (only if ``expected_translation`` is given): L_v =
       :func:`velocity_loss` of the translation columns of ``poses``;
       ``loss += velocity_weight * L_v``.

    Everything runs in float32 with autocast disabled, so calling it inside
    ``torch.autocast(..., dtype=torch.bfloat16)`` is safe (bf16 inputs are upcast).
    packnet-sfm computes this loss on the un-jittered images (``rgb_original``): pass
    those as ``target``/``contexts``.

    Args:
        target: (B, 3, H, W) target image, RGB in [0, 1].
        contexts: N context images (B, 3, H, W), same camera and resolution.
        inv_depths: inverse depths (B, 1, h_i, w_i) of the target, finest first, 1/m.
        poses: N transforms (B, 4, 4) T_context_target (target points -> context camera).
        K: (B, 3, 3) or (3, 3) intrinsics at the resolution H x W.
        expected_translation: (B, N) expected |t| in metres per context (speed * |dt|;
            NaN = unknown, excluded), or None for no velocity supervision.
        cfg: hyper-parameters (default :class:`SfmLossConfig`).

    Returns:
        dict of scalar float32 tensors:
            'loss': photometric + smoothness + velocity_weight * velocity;
            'photometric': the scale-averaged minimum-reprojection loss;
            'smoothness': the weighted smoothness term (as packnet-sfm's
            'smoothness_loss' metric; 0 when disabled);
            'velocity': the unweighted L_v (as packnet-sfm's 'velocity_loss' metric; 0 when
            no expected translation is given);
            'automask_ratio': detached fraction of pixels (averaged over scales) where
            an identity (unwarped) error is strictly below every warped error (0 when
            automask is off).
    """
    cfg = cfg or SfmLossConfig()
    if len(contexts) == 0 or len(contexts) != len(poses):
        raise ValueError(f'need one pose per context image, got {len(contexts)} contexts '
                         f'and {len(poses)} poses')
    if len(inv_depths) == 0:
        raise ValueError('inv_depths is empty')
    if cfg.num_scales < 1:
        raise ValueError('num_scales must be >= 1')
    n = min(cfg.num_scales, len(inv_depths))
    B, _, H, W = target.shape

    with float32_region(target):
        target = target.float()
        contexts = [c.float() for c in contexts]
        poses = [T.float() for T in poses]
        K = K.to(device=target.device, dtype=torch.float32)
        K = K.expand(B, 3, 3) if K.dim() == 2 else K
        scales = []
        for inv in inv_depths[:n]:
            inv = inv.float()
            if cfg.upsample_depth_maps and tuple(inv.shape[-2:]) != (H, W):
                inv = F.interpolate(inv, size=(H, W), mode='nearest')
            scales.append(inv)

        photometric = target.new_zeros(())
        smoothness = target.new_zeros(())
        ratio = target.new_zeros(())
        identity_cache: dict = {}  # identity errors depend only on the images: once per resolution
        for i, inv in enumerate(scales):
            h, w = inv.shape[-2:]
            tgt_i = _resize(target, (h, w))
            ctx_i = [_resize(c, (h, w)) for c in contexts]
            K_i = K if (h, w) == (H, W) else _scale_intrinsics_half_pixel(K, w / float(W))
            depth = inv_to_depth(inv)
            warped_errors: list[torch.Tensor] = []
            identity_errors: list[torch.Tensor] = []
            all_errors: list[torch.Tensor] = []
            for ctx, T in zip(ctx_i, poses):
                warped = view_synthesis(ctx, depth, K_i, T, padding_mode=cfg.padding_mode)
                err = _clip(photometric_error(warped, tgt_i, cfg.ssim_weight), cfg.clip_loss)
                warped_errors.append(err)
                all_errors.append(err)
                if cfg.automask:
                    key = (h, w, len(identity_errors))
                    if key not in identity_cache:
                        with torch.no_grad():  # no parameter reaches these
                            identity_cache[key] = _clip(photometric_error(ctx, tgt_i, cfg.ssim_weight),
                                                        cfg.clip_loss)
                    ident = identity_cache[key]
                    identity_errors.append(ident)
                    all_errors.append(ident)
            photometric = photometric + min_reprojection(all_errors).mean()
            if identity_errors:
                with torch.no_grad():
                    won = min_reprojection(identity_errors) < min_reprojection(warped_errors)
                    ratio = ratio + won.float().mean()
            if cfg.smooth_weight > 0.0:
                smoothness = smoothness + edge_aware_smoothness(inv, tgt_i) / (2 ** i)
        photometric = photometric / n
        smoothness = cfg.smooth_weight * smoothness / n
        ratio = ratio / n

        velocity = target.new_zeros(())
        loss = photometric + smoothness
        if expected_translation is not None:
            translations = torch.stack([T[:, :3, 3] for T in poses], 1)
            velocity = velocity_loss(translations, expected_translation)
            loss = loss + cfg.velocity_weight * velocity

    return {'loss': loss, 'photometric': photometric, 'smoothness': smoothness,
            'velocity': velocity, 'automask_ratio': ratio.detach()}
