"""Supervised depth losses: SILog, scale-and-shift-invariant, semi-supervised, SID.

Implemented from the published formulas (sources per function; BTS is GPL-3.0, so no
code is taken from it):

* :func:`silog_loss`: BTS (Lee et al. 2019, arXiv 1907.10326), ``silog_loss`` of
  ``cleinc/bts:pytorch/bts.py`` as described in ``docs/SEEDS_BRIEF.md`` A; the same form is
  packnet-sfm's ``SilogLoss`` (``supervised_method='sparse-silog'``, PackNet-SAN).
* :func:`ssi_loss`: MiDaS (Ranftl et al., "Towards Robust Monocular Depth Estimation:
  Mixing Datasets for Zero-shot Cross-dataset Transfer", TPAMI 2020), Eqs. 2-4 (least-
  squares alignment), 5 (residual) and 11 (multi-scale gradient matching).
* :func:`semi_supervised_loss`: PackNet's self-supervised objective
  (:func:`packnet_ros.losses.sfm_loss`) plus a sparse LiDAR term (packnet-sfm
  ``SemiSupModel`` / ``SupervisedLoss``).
* :func:`sid_ordinal_loss`, :func:`sid_cross_entropy_loss`: DORN (Fu et al., CVPR 2018)
  Eq. 4 and the plain per-pixel cross-entropy over SID bins (DORN's classification
  baseline); the discretisation is :mod:`packnet_ros.networks.sid`.

Masks: (B, 1, H, W) bool (or 0/1) tensors; a pixel counts only where the mask is true AND
its ground truth is finite and > 0 (0 = no return for projected LiDAR, as the design's
sparse-depth convention). Every loss computes in float32 with autocast off (as the other
losses of this package) and returns a scalar float32 tensor, 0 when no pixel is valid.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from ..networks.sid import SidBins, as_sid_bins, sid_labels, sid_ordinal_targets
from .photometric import float32_region

__all__ = ['silog_loss', 'ssi_loss', 'semi_supervised_loss', 'sid_ordinal_loss',
           'sid_cross_entropy_loss', 'SUPERVISED_METHODS']

SUPERVISED_METHODS = ('silog', 'l1', 'l1-inv')

_MIN_DEPTH_M = 1e-6
"""Predictions are clamped to this before log / inverse (BTS has no epsilon; the clamp only
keeps masked-out zeros from producing inf/NaN gradients)."""


def _valid_mask(gt: torch.Tensor, mask: torch.Tensor | None, positive: bool = True) -> torch.Tensor:
    valid = torch.isfinite(gt)
    if positive:
        valid = valid & (gt > 0)
    if mask is not None:
        if mask.shape != gt.shape:
            raise ValueError(f'mask {tuple(mask.shape)} and ground truth {tuple(gt.shape)} differ in shape')
        valid = valid & mask.to(device=gt.device).bool()
    return valid


def _check_pair(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.dim() != 4 or pred.shape[1] != 1 or pred.shape != gt.shape:
        raise ValueError(f'prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} must both be '
                         '(B, 1, H, W)')


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """sqrt(v) for v > 0, else 0, with a finite gradient everywhere."""
    positive = v > 0
    return torch.where(positive, v.clamp(min=1e-30).sqrt(), torch.zeros_like(v))


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None,
               variance_focus: float = 0.85, scale: float = 10.0) -> torch.Tensor:
    """BTS's scale-invariant logarithmic loss.

    L = scale * sqrt(mean(d^2) - variance_focus * mean(d)^2), d = log pred - log gt, with
    both means over ALL valid pixels of the batch pooled together (BTS indexes
    ``depth_est[mask]`` over the whole batch before the means; packnet-sfm's sparse-silog
    does the same). BTS: variance_focus (``--variance_focus``) 0.85, scale 10; its mask is
    gt > 1.0 m on KITTI, gt > 0.1 m on NYU (pass that as ``mask``).

    With variance_focus = 1 this is Eigen et al.'s scale-invariant error (a constant
    factor on pred costs nothing); 0.85 keeps 15 % of the squared mean log error, so for
    pred = c * gt, L = scale * sqrt(1 - variance_focus) * |log c|. Since
    log(1/p) - log(1/g) = -(log p - log g), the value is the same on inverse depths.

    Args:
        pred: (B, 1, H, W) predicted depth, metres (> 0; clamped at 1e-6 m).
        gt: (B, 1, H, W) ground-truth depth, metres; <= 0 or non-finite = invalid.
        mask: optional (B, 1, H, W) validity mask, ANDed with gt > 0.
        variance_focus: lambda of BTS (0 = log-MSE, 1 = fully scale invariant).
        scale: the outer factor (BTS 10).

    Returns:
        Scalar float32 tensor (0 if no pixel is valid). The square root has a zero (not
        infinite) gradient when its argument is 0, e.g. pred == gt.
    """
    _check_pair(pred, gt)
    with float32_region(pred):
        pred, gt = pred.float(), gt.to(device=pred.device, dtype=torch.float32)
        valid = _valid_mask(gt, mask)
        n = valid.sum()
        if int(n) == 0:
            return pred.new_zeros(())
        gt_safe = torch.where(valid, gt, torch.ones_like(gt))
        d = torch.where(valid, torch.log(pred.clamp(min=_MIN_DEPTH_M)) - torch.log(gt_safe),
                        torch.zeros_like(pred))
        mean_d2 = (d * d).sum() / n
        mean_d = d.sum() / n
        return scale * _safe_sqrt(mean_d2 - variance_focus * mean_d * mean_d)


def _align_least_squares(pred: torch.Tensor, target: torch.Tensor,
                         valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (s, t) minimising sum_valid (s p + t - y)^2; each (B, 1, 1, 1).

    The normal equations of MiDaS Eq. 4 in centred form: s = cov(p, y) / var(p),
    t = mean(y) - s mean(p) over the valid pixels. Degenerate images (a constant
    prediction, fewer than 2 valid pixels) get s = 0, t = mean(y) (the least-squares
    solution with s fixed at 0); images without valid pixels get s = t = 0.
    """
    m = valid.float()
    count = m.sum((1, 2, 3), keepdim=True)
    safe = count.clamp(min=1.0)
    p_mean = (m * pred).sum((1, 2, 3), keepdim=True) / safe
    y_mean = (m * target).sum((1, 2, 3), keepdim=True) / safe
    pc, yc = m * (pred - p_mean), m * (target - y_mean)
    var = (pc * pc).sum((1, 2, 3), keepdim=True)
    cov = (pc * yc).sum((1, 2, 3), keepdim=True)
    # "constant prediction": var below float32 rounding of the values themselves
    scale_ref = (m * pred * pred).sum((1, 2, 3), keepdim=True)
    ok = var > 1e-10 * scale_ref + 1e-30
    s = torch.where(ok, cov / var.clamp(min=1e-30), torch.zeros_like(var))
    t = y_mean - s * p_mean
    return s, t


def _gradient_matching(residual: torch.Tensor, valid: torch.Tensor, scales: int) -> torch.Tensor:
    """Per-image MiDaS Eq. 11: sum_k (sum |grad_x R^k| + |grad_y R^k|) / M_k; (B,).

    R^k = R[..., ::2^k, ::2^k] (MiDaS subsamples by stride 2^k, halving the resolution
    each level); a gradient counts only where both of its pixels are valid; M_k = number
    of valid pixels at level k (a level without any contributes 0).
    """
    B = residual.shape[0]
    total = residual.new_zeros(B)
    for k in range(scales):
        step = 2 ** k
        r = residual[..., ::step, ::step]
        m = valid[..., ::step, ::step].float()
        r = r * m
        gx = (r[..., :, 1:] - r[..., :, :-1]).abs() * (m[..., :, 1:] * m[..., :, :-1])
        gy = (r[..., 1:, :] - r[..., :-1, :]).abs() * (m[..., 1:, :] * m[..., :-1, :])
        count = m.sum((1, 2, 3))
        level = gx.sum((1, 2, 3)) + gy.sum((1, 2, 3))
        total = total + torch.where(count > 0, level / count.clamp(min=1.0), torch.zeros_like(level))
    return total


def ssi_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
             gradient_matching_weight: float = 0.0, scales: int = 4) -> torch.Tensor:
    """Scale-and-shift-invariant loss (MiDaS, Ranftl et al. 2020).

    Per image (over its valid pixels, M of them):

    1. (s, t) = argmin sum_i (s p_i + t - y_i)^2, closed form (MiDaS Eqs. 3-4; the normal
       equations solved in centred form, gradients flow through s and t as in MiDaS);
    2. R_i = s p_i + t - y_i and the data term mean_i |R_i| (MiDaS Eq. 5 with rho = |.|;
       MiDaS writes 1/(2M) sum, i.e. 0.5 x this value: fold it into the weight);
    3. optional gradient matching (MiDaS Eq. 11), ``gradient_matching_weight`` x
       sum_{k<scales} (sum |grad_x R^k| + |grad_y R^k|) / M_k over levels subsampled by 2^k
       (MiDaS: alpha = 0.5, 4 scales).

    The loss is the mean over the images that have at least one valid pixel. Only the
    prediction is aligned (as MiDaS); the target is taken as is. MiDaS's ssitrim variant
    (median/MAD alignment, 20 % trimming) is not implemented.

    What to pass: the quantity in which the target's unknown ambiguity is affine. For a
    relative-depth teacher (MiDaS, Depth Anything: affine-invariant *disparity*) pass
    inverse depths, 1/m: PackNet's ``inv_depths`` output and the teacher's disparity.
    An affine map of inverse depth is not affine in depth, so do not mix the two. For
    metric LiDAR/ground-truth depth use :func:`silog_loss` instead.

    Args:
        pred: (B, 1, H, W) prediction (inverse depth, see above).
        target: (B, 1, H, W) target in the same kind of quantity.
        mask: optional (B, 1, H, W) validity mask. Unlike the other losses here, a 0 target
            is valid (a disparity of 0 is a point at infinity); only non-finite targets are
            dropped automatically, so pass a mask for sparse targets.
        gradient_matching_weight: weight of the gradient term (0 = off).
        scales: number of gradient-matching levels (>= 1).

    Returns:
        Scalar float32 tensor, 0 if no image has a valid pixel.
    """
    _check_pair(pred, target)
    if scales < 1:
        raise ValueError(f'scales must be >= 1, got {scales}')
    with float32_region(pred):
        pred = pred.float()
        target = target.to(device=pred.device, dtype=torch.float32)
        valid = _valid_mask(target, mask, positive=False) & torch.isfinite(pred)
        count = valid.float().sum((1, 2, 3))
        has = count > 0
        if not bool(has.any()):
            return pred.new_zeros(())
        p = torch.where(valid, pred, torch.zeros_like(pred))
        y = torch.where(valid, target, torch.zeros_like(target))
        s, t = _align_least_squares(p, y, valid)
        residual = torch.where(valid, s * p + t - y, torch.zeros_like(p))
        per_image = residual.abs().sum((1, 2, 3)) / count.clamp(min=1.0)
        if gradient_matching_weight > 0.0:
            per_image = per_image + gradient_matching_weight * _gradient_matching(residual, valid, scales)
        return per_image[has].mean()


def _supervised_term(pred: torch.Tensor, lidar: torch.Tensor, method: str,
                     variance_focus: float) -> torch.Tensor:
    if tuple(pred.shape[-2:]) != tuple(lidar.shape[-2:]):
        pred = F.interpolate(pred, size=tuple(lidar.shape[-2:]), mode='nearest')
    if method == 'silog':
        return silog_loss(pred, lidar, None, variance_focus=variance_focus)
    valid = _valid_mask(lidar, None)
    n = valid.sum()
    if int(n) == 0:
        return pred.new_zeros(())
    if method == 'l1':
        err = pred - lidar
    else:  # 'l1-inv'
        err = 1.0 / pred.clamp(min=_MIN_DEPTH_M) - 1.0 / torch.where(valid, lidar, torch.ones_like(lidar))
    return torch.where(valid, err.abs(), torch.zeros_like(err)).sum() / n


def semi_supervised_loss(self_supervised_terms: dict,
                         pred_depth: torch.Tensor | Sequence[torch.Tensor],
                         lidar_depth: torch.Tensor, lidar_weight: float = 1.0,
                         method: str = 'silog', variance_focus: float = 0.85) -> dict:
    """PackNet's self-supervised loss plus a sparse LiDAR term where LiDAR exists.

    loss = L_self + lidar_weight * L_sup, where L_self = ``self_supervised_terms['loss']``
    (the output of :func:`packnet_ros.losses.sfm_loss`: photometric + smoothness +
    velocity) and L_sup is computed only over the pixels with a LiDAR return
    (``lidar_depth > 0``), so images of the batch without LiDAR contribute nothing to it.
    If no pixel of the batch has a return, ``loss`` is L_self itself (not L_self + 0).

    L_sup (``method``):

    * 'silog' (default): :func:`silog_loss` (scale 10, ``variance_focus``) over the
      returns of the whole batch; packnet-sfm's 'sparse-silog' (PackNet-SAN's config).
    * 'l1': mean |d_pred - d_lidar| over the returns, metres.
    * 'l1-inv': mean |1/d_pred - 1/d_lidar| over the returns, 1/m (packnet-sfm's default
      'sparse-l1', which works on inverse depths).

    Multi-scale: with a sequence of predictions (finest first, e.g. 1 / each of sfm_loss's
    ``inv_depths``), each is nearest-upsampled to the LiDAR resolution (as sfm_loss's
    ``upsample_depth_maps``) and L_sup is the mean over the scales. packnet-sfm instead
    nearest-downsamples the GT to each scale, which drops returns.

    packnet-sfm's SemiSupModel combines convexly, (1 - w) L_self + w L_sup with
    w = ``supervised_loss_weight`` = 0.9, for every image. Here the self-supervised term
    keeps its own scale, so frames without LiDAR train exactly as self-supervised ones;
    the packnet-sfm balance corresponds to lidar_weight = w / (1 - w) = 9.

    Args:
        self_supervised_terms: dict returned by ``sfm_loss`` (needs 'loss').
        pred_depth: (B, 1, h, w) predicted depth in metres (or a sequence of scales).
        lidar_depth: (B, 1, H, W) projected sparse LiDAR depth, metres, 0 = no return.
            Per the design these must not be points the network was given as input.
        lidar_weight: weight of L_sup.
        method: 'silog', 'l1' or 'l1-inv'.
        variance_focus: SILog's lambda.

    Returns:
        dict: every entry of ``self_supervised_terms``, with 'loss' replaced by the total,
        plus 'self_supervised' (L_self), 'supervised' (unweighted L_sup, 0 without LiDAR)
        and 'lidar_images' (number of images with at least one return, float32).
    """
    if method not in SUPERVISED_METHODS:
        raise ValueError(f'method must be one of {SUPERVISED_METHODS}, got {method!r}')
    preds = [pred_depth] if isinstance(pred_depth, torch.Tensor) else list(pred_depth)
    if not preds:
        raise ValueError('pred_depth is empty')
    if lidar_depth.dim() != 4 or lidar_depth.shape[1] != 1:
        raise ValueError(f'lidar_depth must be (B, 1, H, W), got {tuple(lidar_depth.shape)}')
    self_loss = self_supervised_terms['loss']
    with float32_region(preds[0]):
        lidar = lidar_depth.to(device=preds[0].device, dtype=torch.float32)
        valid = _valid_mask(lidar, None)
        lidar_images = valid.flatten(1).any(1).float().sum()
        if int(lidar_images) == 0:
            supervised = preds[0].new_zeros((), dtype=torch.float32)
            loss = self_loss
        else:
            terms = [_supervised_term(p.float(), lidar, method, variance_focus) for p in preds]
            supervised = torch.stack(terms).mean()
            loss = self_loss + lidar_weight * supervised
    return {**self_supervised_terms, 'loss': loss, 'self_supervised': self_loss,
            'supervised': supervised, 'lidar_images': lidar_images}


def _sid_valid(logits: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if gt.dim() != 4 or gt.shape[1] != 1:
        raise ValueError(f'gt must be (B, 1, H, W), got {tuple(gt.shape)}')
    if logits.dim() != 4 or logits.shape[0] != gt.shape[0] or logits.shape[-2:] != gt.shape[-2:]:
        raise ValueError(f'logits {tuple(logits.shape)} must be (B, C, H, W) at the ground truth\'s '
                         f'size {tuple(gt.shape)}: interpolate the logits (bilinear) first')
    return _valid_mask(gt, mask)


def _sid_inputs(logits: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None, channels: int,
                what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 logits and ground truth, the valid-pixel mask and its count for the SID losses.

    Raises:
        ValueError: logits not (B, ``channels``, H, W) (the message starts with ``what``).
    """
    if logits.dim() != 4 or logits.shape[1] != channels:
        raise ValueError(f'{what} = {channels} channels, got {tuple(logits.shape)}')
    x = logits.float()
    gt = gt.to(device=x.device, dtype=torch.float32)
    valid = _sid_valid(x, gt, mask)
    return x, gt, valid, valid.sum()


def sid_ordinal_loss(logits: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None,
                     edges: SidBins | tuple | torch.Tensor) -> torch.Tensor:
    """DORN's ordinal regression loss (Fu et al. 2018, Eq. 4).

    Per valid pixel with label l (:func:`packnet_ros.networks.sid.sid_labels`):
    -sum_{k < l} log P_k - sum_{k >= l} log(1 - P_k) over the K classifiers,
    P_k = softmax of the pair (x_{2k}, x_{2k+1}) at 2k+1 = P(depth >= t_{k+1}); computed as
    log-sigmoids of x_{2k+1} - x_{2k} (no clamping). The targets are
    [gt >= t_{k+1}] (:func:`~packnet_ros.networks.sid.sid_ordinal_targets`); the last
    classifier (depth >= beta) is positive only for gt >= beta. The loss is the mean over
    valid pixels of the per-pixel sum over classifiers (DORN_pytorch divides the sum by
    the pixel count the same way).

    Args:
        logits: (B, 2K, H, W) ordinal logits at the ground truth's resolution.
        gt: (B, 1, H, W) depth, metres (<= 0 / non-finite = invalid).
        mask: optional (B, 1, H, W) validity mask.
        edges: the K-interval discretisation (:func:`~packnet_ros.networks.sid.sid_edges`).

    Returns:
        Scalar float32 tensor (0 if no pixel is valid).
    """
    bins = as_sid_bins(edges)
    K = bins.centres.numel()
    with float32_region(logits):
        x, gt, valid, n = _sid_inputs(logits, gt, mask, 2 * K, 'ordinal logits need 2K')
        if int(n) == 0:
            return x.new_zeros(())
        y = sid_ordinal_targets(torch.where(valid, gt, torch.zeros_like(gt)), bins)
        z = x[:, 1::2] - x[:, 0::2]
        nll = -(y * F.logsigmoid(z) + (1.0 - y) * F.logsigmoid(-z)).sum(1, keepdim=True)
        return torch.where(valid, nll, torch.zeros_like(nll)).sum() / n


def sid_cross_entropy_loss(logits: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None,
                           edges: SidBins | tuple | torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy of the SID bin index (classification over K bins).

    -log softmax(x)_l at the label l = :func:`~packnet_ros.networks.sid.sid_labels` of gt
    (clamped to 0..K-1), averaged over the valid pixels. (DORN's paper compares this
    "multi-class classification" form against its ordinal loss.)

    Args:
        logits: (B, K, H, W) classification logits at the ground truth's resolution.
        gt: (B, 1, H, W) depth, metres (<= 0 / non-finite = invalid).
        mask: optional (B, 1, H, W) validity mask.
        edges: the K-interval discretisation.

    Returns:
        Scalar float32 tensor (0 if no pixel is valid).
    """
    bins = as_sid_bins(edges)
    K = bins.centres.numel()
    with float32_region(logits):
        x, gt, valid, n = _sid_inputs(logits, gt, mask, K, 'classification logits need K')
        if int(n) == 0:
            return x.new_zeros(())
        labels = sid_labels(torch.where(valid, gt, torch.zeros_like(gt)), bins)  # (B, 1, H, W)
        nll = -torch.log_softmax(x, 1).gather(1, labels)
        return torch.where(valid, nll, torch.zeros_like(nll)).sum() / n
