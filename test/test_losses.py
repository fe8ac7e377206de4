"""Self-supervised losses (packnet_ros.losses) on hand-computed values and a synthetic scene."""
from __future__ import annotations

import math

import pytest
import torch

from packnet_ros.geometry import pose_vec_to_mat
from packnet_ros.losses import (
    SfmLossConfig,
    edge_aware_smoothness,
    min_reprojection,
    photometric_error,
    sfm_loss,
    ssim,
    velocity_loss,
)

C1, C2 = 1e-4, 9e-4


#######################################################################################
# Synthetic scene: a textured fronto-parallel plane at Z = 10 m.
# fx = fy = 40 px and a baseline of 0.5 m give a disparity of exactly 2 px, so bilinear
# sampling is exact and the true depth/poses reconstruct the target perfectly (up to the
# borders, which the other context covers).

H, W = 48, 64
FX = FY = 40.0
CX, CY = (W - 1) / 2.0, (H - 1) / 2.0
PLANE_Z = 10.0
BASELINE = 0.5


def intrinsics(batch: int = 1) -> torch.Tensor:
    K = torch.tensor([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])
    return K.expand(batch, 3, 3).clone()


def texture(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] as a function of plane coordinates (metres)."""
    chans = []
    for c, (px, py, ph) in enumerate([(2.3, 3.1, 0.3), (1.7, 2.6, 1.1), (2.9, 1.9, 2.0)]):
        v = (0.5 + 0.2 * torch.sin(2 * math.pi * X / px + ph) * torch.cos(2 * math.pi * Y / py)
             + 0.15 * torch.sin(2 * math.pi * (X + 0.7 * Y) / (px * 1.9) + c))
        chans.append(v)
    return torch.stack(chans, 0).clamp(0.0, 1.0)


def render(camera_x: float, batch: int = 1) -> torch.Tensor:
    """Image of a camera at (camera_x, 0, 0) in the target frame, same orientation."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                          torch.arange(W, dtype=torch.float32), indexing='ij')
    X = camera_x + (u - CX) * PLANE_Z / FX
    Y = (v - CY) * PLANE_Z / FY
    return texture(X, Y).expand(batch, 3, H, W).clone()


def T_context_target(camera_x: float, batch: int = 1) -> torch.Tensor:
    """A context camera centred at (camera_x, 0, 0): p_context = p_target - c."""
    T = torch.eye(4).expand(batch, 4, 4).clone()
    T[:, 0, 3] = -camera_x
    return T


def inv_pyramid(inv_value: float, batch: int = 1, scales: int = 4) -> list[torch.Tensor]:
    return [torch.full((batch, 1, H // 2 ** i, W // 2 ** i), inv_value) for i in range(scales)]


@pytest.fixture
def scene():
    target = render(0.0)
    contexts = [render(-BASELINE), render(+BASELINE)]
    poses = [T_context_target(-BASELINE), T_context_target(+BASELINE)]
    return target, contexts, poses, intrinsics()


#######################################################################################
# Photometric error

def test_identical_images_ssim_one_error_zero():
    x = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones_like(x), atol=1e-5)
    err = photometric_error(x, x.clone())
    assert err.shape == (2, 1, 8, 10)
    assert err.abs().max() < 1e-5


def test_photometric_error_constant_images_by_hand():
    # Dyadic values keep E[x^2] - mu^2 exactly 0 in float32 (no variance round-off).
    a, b = 0.5, 0.625
    x, y = torch.full((1, 3, 4, 5), a), torch.full((1, 3, 4, 5), b)
    # Constant patches: sigma = 0, so SSIM = (2ab + C1) C2 / ((a^2 + b^2 + C1) C2).
    s = (2 * a * b + C1) * C2 / ((a * a + b * b + C1) * C2)
    assert torch.allclose(ssim(x, y), torch.full_like(x, s), rtol=1e-6)
    expected = 0.85 * min(max((1 - s) / 2, 0.0), 1.0) + 0.15 * abs(a - b)
    err = photometric_error(x, y)
    assert err.shape == (1, 1, 4, 5)
    assert torch.allclose(err, torch.full_like(err, expected), rtol=1e-5)
    # Pure L1 part (alpha = 0): channel mean of |x - y|.
    y2 = y.clone()
    y2[:, 0] = 0.875  # channel differences 0.375, 0.125, 0.125 -> mean 0.625 / 3
    assert torch.allclose(photometric_error(x, y2, alpha=0.0), torch.full((1, 1, 4, 5), 0.625 / 3), atol=1e-7)


def test_ssim_uses_reflection_padded_3x3_mean():
    # A single bright pixel in the corner. ReflectionPad(1) mirrors row/column 1 (not 0),
    # so the 3x3 window at (0, 0) holds the bright pixel once (replicate padding would
    # hold it 4 times, zero padding once but with a different window at other pixels).
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 0.9
    y = torch.zeros(1, 1, 4, 4)
    mu_x = 0.9 / 9
    ex2 = 0.81 / 9
    sx = ex2 - mu_x ** 2
    expected = (C1 * C2) / ((mu_x ** 2 + C1) * (sx + C2))
    assert ssim(x, y)[0, 0, 0, 0].item() == pytest.approx(expected, rel=1e-4)


def test_min_reprojection_picks_per_pixel_min():
    e1 = torch.tensor([[[[0.1, 0.5], [0.3, 0.9]]]])
    e2 = torch.tensor([[[[0.2, 0.4], [0.3, 0.1]]]])
    e3 = torch.tensor([[[[0.05, 0.6], [0.7, 0.8]]]])
    out = min_reprojection([e1, e2, e3])
    assert out.shape == (1, 1, 2, 2)
    assert torch.equal(out, torch.tensor([[[[0.05, 0.4], [0.3, 0.1]]]]))


#######################################################################################
# Smoothness

def test_smoothness_zero_for_constant_inverse_depth():
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert edge_aware_smoothness(torch.full((2, 1, 8, 8), 0.3), img).item() == 0.0


def test_smoothness_ramp_by_hand():
    # inv = 1 + 0.1 u on a flat image: weights 1, normalised x-gradient = 0.1 / mean(inv).
    u = torch.arange(8, dtype=torch.float32)
    inv = (1.0 + 0.1 * u).expand(1, 1, 6, 8).clone()
    flat = torch.full((1, 3, 6, 8), 0.4)
    expected = 0.1 / inv.mean().item()
    val = edge_aware_smoothness(inv, flat)
    assert val.item() == pytest.approx(expected, rel=1e-5)
    # Normalisation by the mean makes it scale invariant.
    assert edge_aware_smoothness(5.0 * inv, flat).item() == pytest.approx(expected, rel=1e-5)


def test_smoothness_is_edge_aware():
    inv = torch.full((1, 1, 6, 8), 0.1)
    inv[..., 4:] = 0.3  # depth step between columns 3 and 4
    flat = torch.zeros(1, 3, 6, 8)
    edge = flat.clone()
    edge[..., 4:] = 1.0  # image edge (all channels 0 -> 1) at the same place: weight exp(-1)
    s_flat = edge_aware_smoothness(inv, flat)
    s_edge = edge_aware_smoothness(inv, edge)
    assert s_flat.item() > 0
    assert s_edge.item() == pytest.approx(s_flat.item() * math.exp(-1.0), rel=1e-5)


#######################################################################################
# Velocity

def test_velocity_loss_known_pose():
    T = pose_vec_to_mat(torch.tensor([[0.0, 0.0, 1.2, 0.01, -0.02, 0.03]]))
    translations = T[:, :3, 3].unsqueeze(1)  # (1, 1, 3)
    expected = torch.tensor([[10.0 * 0.1]])  # 10 m/s for 0.1 s
    assert velocity_loss(translations, expected).item() == pytest.approx(0.2, abs=1e-6)


def test_velocity_loss_excludes_nan():
    t = torch.tensor([[[0.0, 0.0, 1.2], [3.0, 4.0, 0.0]],
                      [[0.0, 0.6, 0.8], [0.0, 0.0, 0.0]]], requires_grad=True)
    expected = torch.tensor([[1.0, float('nan')], [1.5, float('nan')]])
    loss = velocity_loss(t, expected)
    assert loss.item() == pytest.approx((0.2 + 0.5) / 2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(t.grad).all()
    assert t.grad[:, 1].abs().sum() == 0
    # Nothing known -> 0.
    assert velocity_loss(t.detach(), torch.full((2, 2), float('nan'))).item() == 0.0


#######################################################################################
# Full objective on the synthetic plane

def photometric(scene, inv_value=1.0 / PLANE_Z, poses=None, **cfg):
    target, contexts, true_poses, K = scene
    out = sfm_loss(target, contexts, inv_pyramid(inv_value), poses or true_poses, K, None,
                   SfmLossConfig(**cfg))
    return out


def test_default_config_matches_packnet_sfm():
    cfg = SfmLossConfig()
    assert (cfg.ssim_weight, cfg.num_scales, cfg.automask, cfg.upsample_depth_maps) == (0.85, 4, True, True)
    assert (cfg.smooth_weight, cfg.velocity_weight, cfg.padding_mode, cfg.clip_loss) == (0.001, 0.1, 'zeros', 0.0)


@pytest.mark.parametrize('automask', [True, False])
def test_true_depth_and_pose_beat_wrong_ones(scene, automask):
    true = photometric(scene, automask=automask)['photometric'].item()
    wrong_depth = photometric(scene, inv_value=1.0 / 5.0, automask=automask)['photometric'].item()
    wrong_pose = photometric(scene, automask=automask,
                             poses=[T_context_target(+BASELINE), T_context_target(-BASELINE)])
    wrong_pose = wrong_pose['photometric'].item()
    assert true < 1e-3
    assert wrong_depth > 20 * max(true, 1e-4)
    assert wrong_pose > 20 * max(true, 1e-4)
    if automask:
        assert photometric(scene)['automask_ratio'].item() < 0.05


def test_min_reprojection_covers_out_of_view_borders(scene):
    # Each single context leaves 2 columns out of view (zero padding); the minimum over
    # both contexts covers them, so two contexts do much better than one.
    target, contexts, poses, K = scene
    cfg = SfmLossConfig(automask=False)
    one = sfm_loss(target, contexts[:1], inv_pyramid(0.1), poses[:1], K, None, cfg)['photometric']
    two = sfm_loss(target, contexts, inv_pyramid(0.1), poses, K, None, cfg)['photometric']
    assert two.item() < 1e-3 < one.item()


def test_automask_static_scene():
    # Car standing still (all frames identical) while the poses claim motion: the
    # identity errors are 0 and win almost everywhere, so the loss is ~0.
    target = render(0.0)
    contexts = [target.clone(), target.clone()]
    poses = [T_context_target(-BASELINE), T_context_target(+BASELINE)]
    out = sfm_loss(target, contexts, inv_pyramid(0.1), poses, intrinsics(), None, SfmLossConfig())
    assert out['automask_ratio'].item() > 0.95
    assert out['photometric'].item() < 1e-4
    off = sfm_loss(target, contexts, inv_pyramid(0.1), poses, intrinsics(), None,
                   SfmLossConfig(automask=False))
    assert off['automask_ratio'].item() == 0.0
    assert off['photometric'].item() > 0.01


def test_loss_composition_and_scale_handling(scene):
    target, contexts, poses, K = scene
    g = torch.Generator().manual_seed(3)
    inv = [0.1 + 0.02 * torch.rand(1, 1, H // 2 ** i, W // 2 ** i, generator=g) for i in range(4)]
    expected_t = torch.tensor([[0.45, float('nan')]])
    out = sfm_loss(target, contexts, inv, poses, K, expected_t, SfmLossConfig())
    # Velocity: |0.5 - 0.45| on the first context only, weight 0.1.
    assert out['velocity'].item() == pytest.approx(0.05, abs=1e-6)
    total = out['photometric'] + out['smoothness'] + 0.1 * out['velocity']
    assert out['loss'].item() == pytest.approx(total.item(), rel=1e-6)
    # Smoothness with upsampled maps: full-resolution target for every scale, / 2^i, mean, x 0.001.
    up = [torch.nn.functional.interpolate(d, size=(H, W), mode='nearest') for d in inv]
    smooth = 0.001 * sum(edge_aware_smoothness(d, target) / 2 ** i for i, d in enumerate(up)) / 4
    assert out['smoothness'].item() == pytest.approx(smooth.item(), rel=1e-5)
    # Photometric: mean over scales of the single-scale losses of the upsampled maps.
    single = [sfm_loss(target, contexts, [d], poses, K, None, SfmLossConfig(num_scales=1))['photometric']
              for d in up]
    assert out['photometric'].item() == pytest.approx(sum(single).item() / 4, rel=1e-5)
    # No expected translation -> no velocity term.
    none = sfm_loss(target, contexts, inv, poses, K, None, SfmLossConfig())
    assert none['velocity'].item() == 0.0
    assert none['loss'].item() == pytest.approx((none['photometric'] + none['smoothness']).item(), rel=1e-6)
    # Deterministic: no random tie-breaking noise (packnet-sfm adds none).
    again = sfm_loss(target, contexts, inv, poses, K, None, SfmLossConfig())
    assert torch.equal(again['loss'], none['loss'])


def test_multiscale_without_upsampling_and_clip(scene):
    target, contexts, poses, K = scene
    cfg = SfmLossConfig(upsample_depth_maps=False, automask=False)
    true = sfm_loss(target, contexts, inv_pyramid(0.1), poses, K, None, cfg)
    wrong = sfm_loss(target, contexts, inv_pyramid(0.2), poses, K, None, cfg)
    assert torch.isfinite(true['loss']) and true['photometric'] < 0.5 * wrong['photometric']
    plain = photometric(scene, inv_value=0.2)['photometric']
    clipped = photometric(scene, inv_value=0.2, clip_loss=0.5)['photometric']
    assert 0 < clipped.item() < plain.item()


def test_gradients_reach_depth_and_pose(scene):
    target, contexts, _, K = scene
    inv = [torch.full((1, 1, H // 2 ** i, W // 2 ** i), 0.12, requires_grad=True) for i in range(4)]
    vec = torch.tensor([[0.48, 0.01, 0.0, 0.0, 0.002, 0.0], [-0.52, 0.0, 0.01, 0.001, 0.0, 0.0]],
                       requires_grad=True)
    poses = [pose_vec_to_mat(vec[j:j + 1]) for j in range(2)]
    out = sfm_loss(target, contexts, inv, poses, K, torch.tensor([[0.5, 0.5]]), SfmLossConfig())
    out['loss'].backward()
    for d in inv:
        assert d.grad is not None and torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0
    assert torch.isfinite(vec.grad).all() and vec.grad.abs().sum() > 0


def test_bf16_autocast_matches_fp32(scene):
    target, contexts, poses, K = scene
    g = torch.Generator().manual_seed(5)
    inv = [0.09 + 0.03 * torch.rand(2, 1, H // 2 ** i, W // 2 ** i, generator=g) for i in range(4)]
    tgt2, ctx2 = target.expand(2, -1, -1, -1), [c.expand(2, -1, -1, -1) for c in contexts]
    poses2 = [T.expand(2, 4, 4) for T in poses]
    K2 = K.expand(2, 3, 3)
    vel = torch.tensor([[0.4, 0.6], [0.5, float('nan')]])
    ref = sfm_loss(tgt2, ctx2, inv, poses2, K2, vel, SfmLossConfig())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        same = sfm_loss(tgt2, ctx2, inv, poses2, K2, vel, SfmLossConfig())
        half = sfm_loss(tgt2.bfloat16(), [c.bfloat16() for c in ctx2], [d.bfloat16() for d in inv],
                        poses2, K2, vel, SfmLossConfig())
        assert photometric_error(target.bfloat16(), contexts[0].bfloat16()).dtype == torch.float32
        assert edge_aware_smoothness(inv[0].bfloat16(), tgt2.bfloat16()).dtype == torch.float32
    for k in ('loss', 'photometric', 'smoothness', 'velocity'):
        assert same[k].dtype == torch.float32
        assert same[k].item() == pytest.approx(ref[k].item(), rel=1e-5, abs=1e-7)
        assert half[k].item() == pytest.approx(ref[k].item(), rel=3e-2, abs=1e-4)
