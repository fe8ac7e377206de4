"""Supervised losses (packnet_ros.losses.supervised) on hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from packnet_ros.losses import (
    SfmLossConfig,
    semi_supervised_loss,
    sfm_loss,
    sid_cross_entropy_loss,
    sid_ordinal_loss,
    silog_loss,
    ssi_loss,
)
from packnet_ros.networks.sid import sid_edges

LN2 = math.log(2.0)


def _img(values, shape=None) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float32)
    return t.view(shape) if shape else t.view(1, 1, *t.shape)


# --------------------------------------------------------------------------- SILog

@pytest.mark.parametrize('c', [2.0, 0.5, 3.7])
def test_silog_of_a_constant_factor(c):
    # d = log c everywhere: mean(d^2) - 0.85 mean(d)^2 = 0.15 (log c)^2
    gt = torch.rand(2, 1, 3, 4, generator=torch.Generator().manual_seed(0)) * 50 + 1
    expected = 10 * math.sqrt(1 - 0.85) * abs(math.log(c))
    assert silog_loss(c * gt, gt).item() == pytest.approx(expected, abs=1e-5)
    if c == 2.0:
        assert silog_loss(c * gt, gt).item() == pytest.approx(2.6845474867792936, abs=1e-5)


def test_silog_hand_computed_with_mask_and_zero_gt():
    # valid pixels: d = (log 2, 0); mean d^2 = ln2^2 / 2, mean d = ln2 / 2
    # L = 10 ln2 sqrt(1/2 - 0.85 / 4) = 10 ln2 sqrt(0.2875) = 3.7165877...
    pred = _img([[4.0, 3.0], [0.0, 7.0]])
    gt = _img([[2.0, 3.0], [5.0, 0.0]])     # the 0 is no return
    mask = _img([[1, 1], [0, 1]]).bool()    # pred 0 at the masked pixel must not matter
    pred.requires_grad_(True)
    loss = silog_loss(pred, gt, mask)
    assert loss.item() == pytest.approx(3.7165877024696043, abs=1e-5)
    loss.backward()
    assert bool(torch.isfinite(pred.grad).all())
    assert pred.grad[0, 0, 1, 0].item() == 0.0 and pred.grad[0, 0, 1, 1].item() == 0.0


def test_silog_perfect_prediction_and_no_valid_pixel():
    gt = _img([[2.0, 3.0]])
    pred = gt.clone().requires_grad_(True)
    loss = silog_loss(pred, gt)
    assert loss.item() == 0.0
    loss.backward()
    assert bool(torch.isfinite(pred.grad).all())
    assert silog_loss(gt, torch.zeros_like(gt)).item() == 0.0
    # variance_focus = 1: fully scale invariant
    assert silog_loss(3 * gt, gt, variance_focus=1.0).item() == pytest.approx(0.0, abs=1e-3)


# --------------------------------------------------------------------------- SSI

@pytest.mark.parametrize('a,b', [(2.5, -0.7), (0.3, 4.0), (1.0, 0.0)])
def test_ssi_of_an_affine_prediction_is_zero(a, b):
    target = torch.rand(2, 1, 4, 5, generator=torch.Generator().manual_seed(1)) + 0.2
    pred = (target - b) / a  # so that a * pred + b == target
    assert ssi_loss(pred, target).item() == pytest.approx(0.0, abs=1e-6)
    assert ssi_loss(pred, target, gradient_matching_weight=0.5).item() == pytest.approx(0.0, abs=1e-6)
    # and the other way round: pred = a * gt + b
    assert ssi_loss(a * target + b, target).item() == pytest.approx(0.0, abs=1e-6)


def test_ssi_hand_computed_residual():
    # valid p = (0, 1, 2), y = (0, 0, 3): p_mean = y_mean = 1, cov = 3, var = 2
    # s = 1.5, t = -0.5, fitted (-0.5, 1, 2.5), R = (-0.5, 1, -0.5), mean |R| = 2/3
    pred = _img([[0.0, 1.0], [2.0, 99.0]])
    target = _img([[0.0, 0.0], [3.0, -50.0]])
    mask = _img([[1, 1], [1, 0]]).bool()
    assert ssi_loss(pred, target, mask).item() == pytest.approx(2 / 3, abs=1e-6)
    # gradient matching, 1 level: x pair (0,0)-(0,1): |1 - (-0.5)| = 1.5; y pair (0,0)-(1,0):
    # |-0.5 - (-0.5)| = 0; pairs touching the masked pixel are skipped; / M = 3 -> 0.5
    loss = ssi_loss(pred, target, mask, gradient_matching_weight=0.5, scales=1)
    assert loss.item() == pytest.approx(2 / 3 + 0.5 * 0.5, abs=1e-6)
    # level 2 subsamples to the single pixel (0,0): no gradient, adds 0
    loss2 = ssi_loss(pred, target, mask, gradient_matching_weight=0.5, scales=2)
    assert loss2.item() == pytest.approx(2 / 3 + 0.25, abs=1e-6)
    # per-image mean: with a perfectly affine second image the batch loss halves
    pred_b = torch.cat([pred, 2 * target + 1])
    target_b = torch.cat([target, target])
    mask_b = torch.cat([mask, mask])
    assert ssi_loss(pred_b, target_b, mask_b).item() == pytest.approx(1 / 3, abs=1e-6)


def test_ssi_degenerate_cases():
    # constant prediction: s = 0, t = mean(y); residual y - mean(y) = (-1, 1) -> 1
    assert ssi_loss(_img([[5.0, 5.0]]), _img([[1.0, 3.0]])).item() == pytest.approx(1.0, abs=1e-6)
    # nothing valid -> 0; gradients stay finite
    pred = _img([[1.0, 2.0]]).requires_grad_(True)
    loss = ssi_loss(pred, _img([[1.0, 3.0]]), mask=torch.zeros(1, 1, 1, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    pred2 = torch.rand(1, 1, 4, 4, requires_grad=True)
    ssi_loss(pred2, torch.rand(1, 1, 4, 4), gradient_matching_weight=0.5).backward()
    assert bool(torch.isfinite(pred2.grad).all())


# --------------------------------------------------------------------------- semi-supervised

def _self_supervised_terms(batch: int = 2) -> dict:
    """A real sfm_loss output on tiny random images (identity pose, 1 scale)."""
    g = torch.Generator().manual_seed(2)
    target = torch.rand(batch, 3, 8, 8, generator=g)
    context = torch.rand(batch, 3, 8, 8, generator=g)
    inv = torch.full((batch, 1, 8, 8), 0.5)
    K = torch.tensor([[4.0, 0.0, 3.5], [0.0, 4.0, 3.5], [0.0, 0.0, 1.0]])
    pose = torch.eye(4).expand(batch, 4, 4).clone()
    return sfm_loss(target, [context], [inv], [pose], K, cfg=SfmLossConfig(num_scales=1))


def test_semi_supervised_without_lidar_is_the_self_supervised_loss():
    terms = _self_supervised_terms()
    pred = torch.full((2, 1, 8, 8), 2.0)
    out = semi_supervised_loss(terms, pred, torch.zeros(2, 1, 8, 8), lidar_weight=0.5)
    assert torch.equal(out['loss'], terms['loss'])
    assert out['supervised'].item() == 0.0 and out['lidar_images'].item() == 0.0
    assert torch.equal(out['photometric'], terms['photometric'])


@pytest.mark.parametrize('method,expected', [
    ('silog', 3.7165877024696043),  # d = (log(2/4), 0): 10 ln2 sqrt(0.2875)
    ('l1', 1.0),                    # (|2 - 4| + |2 - 2|) / 2 m
    ('l1-inv', 0.125),              # (|1/2 - 1/4| + 0) / 2 1/m
])
def test_semi_supervised_adds_the_lidar_term(method, expected):
    terms = _self_supervised_terms()
    pred = torch.full((2, 1, 8, 8), 2.0)
    pred[1] = 123.0  # image 1 has no LiDAR: its prediction must not matter
    lidar = torch.zeros(2, 1, 8, 8)
    lidar[0, 0, 1, 2] = 4.0
    lidar[0, 0, 5, 6] = 2.0
    out = semi_supervised_loss(terms, pred, lidar, lidar_weight=0.5, method=method)
    assert out['supervised'].item() == pytest.approx(expected, abs=1e-5)
    assert out['loss'].item() == pytest.approx(terms['loss'].item() + 0.5 * expected, abs=1e-5)
    assert out['self_supervised'] is terms['loss']
    assert out['lidar_images'].item() == 1.0


def test_semi_supervised_multi_scale_upsamples_to_the_lidar():
    terms = _self_supervised_terms(1)
    lidar = torch.zeros(1, 1, 8, 8)
    lidar[0, 0, 1, 2] = 4.0
    lidar[0, 0, 5, 6] = 2.0
    # scale 0: 2 m -> L1 (2 + 0) / 2 = 1; scale 1 (4x4, nearest up): 5 m -> (1 + 3) / 2 = 2
    preds = [torch.full((1, 1, 8, 8), 2.0), torch.full((1, 1, 4, 4), 5.0)]
    out = semi_supervised_loss(terms, preds, lidar, lidar_weight=1.0, method='l1')
    assert out['supervised'].item() == pytest.approx(1.5, abs=1e-6)
    with pytest.raises(ValueError):
        semi_supervised_loss(terms, preds, lidar, method='berhu')


# --------------------------------------------------------------------------- SID losses

def test_sid_ordinal_loss_hand_computed():
    bins = sid_edges(1.0, 4.0, 2)  # edges 1, 2, 4
    # pixel 0: gt 3 -> label 1, targets (1, 0); P_0 = 1/2 (0, 0), P_1 = 3/4 (0, ln 3):
    #   -log(1/2) - log(1 - 3/4) = 3 ln 2
    # pixel 1: gt 1.5 -> label 0, targets (0, 0); P_0 = 1/4 (ln 3, 0), P_1 = 1/2:
    #   -log(3/4) - log(1/2) = ln(4/3) + ln 2
    # pixel 2: masked out (garbage logits)
    logits = torch.tensor([[0.0, math.log(3.0), 9.0],     # x_0 (pair 0, "<")
                           [0.0, 0.0, -9.0],              # x_1 (pair 0, ">=")
                           [0.0, 0.0, 9.0],               # x_2 (pair 1, "<")
                           [math.log(3.0), 0.0, -9.0]]).view(1, 4, 1, 3)
    gt = _img([[3.0, 1.5, 7.0]])
    mask = _img([[1, 1, 0]]).bool()
    loss = sid_ordinal_loss(logits, gt, mask, bins)
    expected = (3 * LN2 + math.log(4 / 3) + LN2) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.530135397345781)
    # single pixel: 3 ln 2
    assert sid_ordinal_loss(logits[..., :1], gt[..., :1], None, bins).item() == pytest.approx(3 * LN2, abs=1e-6)


def test_sid_cross_entropy_loss_hand_computed():
    bins = sid_edges(1.0, 8.0, 3)  # edges 1, 2, 4, 8
    # logits (0, ln 2, 0): p = (1/4, 1/2, 1/4)
    logits = torch.tensor([0.0, math.log(2.0), 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    # gt 3 -> label 1 -> ln 2; gt 1.2 -> label 0 -> ln 4; 0 -> no return; 20 -> label 2 -> ln 4
    gt = _img([[3.0, 1.2], [0.0, 20.0]])
    mask = _img([[1, 1], [1, 0]]).bool()
    assert sid_cross_entropy_loss(logits, gt, mask, bins).item() == pytest.approx(1.5 * LN2, abs=1e-6)
    assert sid_cross_entropy_loss(logits, gt, None, bins).item() == pytest.approx(5 * LN2 / 3, abs=1e-6)


def test_sid_losses_reject_wrong_shapes_and_handle_empty_masks():
    bins = sid_edges(1.0, 8.0, 3)
    gt = torch.full((1, 1, 2, 2), 3.0)
    with pytest.raises(ValueError):
        sid_ordinal_loss(torch.zeros(1, 3, 2, 2), gt, None, bins)
    with pytest.raises(ValueError):
        sid_cross_entropy_loss(torch.zeros(1, 3, 4, 4), gt, None, bins)
    logits = torch.zeros(1, 6, 2, 2, requires_grad=True)
    assert sid_ordinal_loss(logits, torch.zeros_like(gt), None, bins).item() == 0.0
    loss = sid_ordinal_loss(logits, gt, None, bins)
    loss.backward()
    assert bool(torch.isfinite(logits.grad).all())
