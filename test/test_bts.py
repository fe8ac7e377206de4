"""BTS (packnet_ros.networks.bts): local planar guidance on known planes, the plane
parametrisation, the decoder's shapes/range, its parameter count and the registry."""
from __future__ import annotations

import math

import pytest
import torch

from packnet_ros.networks import (
    BTSNet,
    PackNetSlim01,
    build_depth_model,
    build_depth_net,
    depth_output_kind,
    local_planar_guidance,
)
from packnet_ros.networks.bts import bts_num_features, plane_params_from_coefficients


def _normal(theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    return torch.stack((theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()))


def _expected_depth(n: torch.Tensor, d: torch.Tensor, k: int) -> torch.Tensor:
    """Per-pixel ray-plane intersection written out pixel by pixel.

    n (3, h, w) unit normals, d (h, w) distances -> depth (h*k, w*k): pixel (i, j) looks
    along r = (u, v, 1), u = (j % k - (k-1)/2) / k, v = (i % k - (k-1)/2) / k, and the
    plane n . X = d is hit at X = c r with c = d / (n . r).
    """
    h, w = d.shape
    out = torch.empty(h * k, w * k, dtype=d.dtype)
    for i in range(h * k):
        for j in range(w * k):
            u, v = (j % k - (k - 1) / 2) / k, (i % k - (k - 1) / 2) / k
            nb, db = n[:, i // k, j // k], d[i // k, j // k]
            out[i, j] = db / (nb[0] * u + nb[1] * v + nb[2])
    return out


@pytest.mark.parametrize('k', [1, 2, 4, 8])
def test_lpg_returns_each_blocks_plane_depth(k):
    g = torch.Generator().manual_seed(k)
    h, w = 2, 3
    theta = torch.rand(h, w, generator=g, dtype=torch.float64) * math.radians(55)
    phi = torch.rand(h, w, generator=g, dtype=torch.float64) * 2 * math.pi
    d = 1.0 + 79.0 * torch.rand(h, w, generator=g, dtype=torch.float64)
    n = _normal(theta, phi)
    params = torch.cat((n, d[None]))[None]  # (1, 4, h, w)
    depth = local_planar_guidance(params, k)
    assert depth.shape == (1, 1, h * k, w * k)
    expected = _expected_depth(n, d, k)
    torch.testing.assert_close(depth[0, 0], expected, rtol=1e-5, atol=1e-5)
    # and the back-projected points X = c (u, v, 1) lie on their block's plane
    offs = (torch.arange(k, dtype=torch.float64) - (k - 1) / 2) / k
    u = offs.repeat(w)[None, :].expand(h * k, w * k)
    v = offs.repeat(h)[:, None].expand(h * k, w * k)
    nf = n.repeat_interleave(k, 1).repeat_interleave(k, 2)
    on_plane = depth[0, 0] * (nf[0] * u + nf[1] * v + nf[2])
    torch.testing.assert_close(on_plane, d.repeat_interleave(k, 0).repeat_interleave(k, 1), rtol=1e-5, atol=1e-5)


def test_fronto_parallel_plane_gives_a_constant_block():
    d = torch.tensor([[[[3.0, 7.5], [12.0, 80.0]]]])
    params = torch.cat((torch.zeros(1, 2, 2, 2), torch.ones(1, 1, 2, 2), d), 1)
    depth = local_planar_guidance(params, 8)
    assert depth.shape == (1, 1, 16, 16)
    torch.testing.assert_close(depth, d.repeat_interleave(8, 2).repeat_interleave(8, 3), rtol=0, atol=0)


def test_a_tilted_plane_varies_linearly_in_inverse_depth_along_the_tilt():
    # n = (sin t, 0, cos t): 1/c = (u sin t + cos t) / d, linear in u, constant in v.
    t, d, k = math.radians(30), 10.0, 4
    params = torch.tensor([math.sin(t), 0.0, math.cos(t), d], dtype=torch.float64).view(1, 4, 1, 1)
    inv = 1 / local_planar_guidance(params, k)[0, 0]
    u = (torch.arange(k, dtype=torch.float64) - 1.5) / k
    torch.testing.assert_close(inv, ((u * math.sin(t) + math.cos(t)) / d).expand(k, k))


def test_plane_params_from_coefficients_inverts_the_sigmoid_parametrisation():
    theta_max, max_depth = math.pi / 3, 80.0
    theta = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    phi = torch.tensor([0.3, 2.0, 5.5], dtype=torch.float64)
    dist = torch.tensor([2.0, 20.0, 70.0], dtype=torch.float64)
    coeffs = torch.stack((torch.logit(theta / theta_max), torch.logit(phi / (2 * math.pi)),
                          torch.logit(dist / max_depth))).view(1, 3, 1, 3)
    params = plane_params_from_coefficients(coeffs, max_depth, theta_max)
    n = _normal(theta, phi)
    torch.testing.assert_close(params[0, :3, 0], n)
    torch.testing.assert_close(params[0, 3, 0], dist)
    torch.testing.assert_close(params[0, :3].norm(dim=0), torch.ones(1, 3, dtype=torch.float64))
    # through the LPG: each block is the depth of that plane
    torch.testing.assert_close(local_planar_guidance(params, 2)[0, 0],
                               _expected_depth(n.view(3, 1, 3), dist.view(1, 3), 2), rtol=1e-5, atol=1e-5)


def test_lpg_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r'\(B, 4, h, w\)'):
        local_planar_guidance(torch.ones(1, 3, 2, 2), 2)
    with pytest.raises(ValueError, match='block'):
        local_planar_guidance(torch.ones(1, 4, 2, 2), 0)


def test_bts_resnet18_smoke_64x96():
    torch.manual_seed(0)
    net = BTSNet('resnet18', max_depth=80.0).eval()
    rgb = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        depth = net(rgb)
        all_out = net.forward_all(rgb)
    assert depth.shape == (2, 1, 64, 96)
    assert torch.isfinite(depth).all() and (depth > 0).all() and (depth <= 80.0).all()
    assert set(all_out) == {'depth', 'depth_8x8', 'depth_4x4', 'depth_2x2', 'reduc1x1'}
    assert all(v.shape == (2, 1, 64, 96) for v in all_out.values())
    torch.testing.assert_close(all_out['depth'], depth)
    # LPG depths are positive while n3 > |n1 u + n2 v| (always for k <= 4; for k = 8 up to ~58 deg)
    assert all((all_out[k] > 0).all() for k in ('depth_8x8', 'depth_4x4', 'depth_2x2'))
    assert depth_output_kind(net) == 'depth'
    net.train()
    assert net(rgb[:1]).shape == (1, 1, 64, 96)  # the same output in train mode
    with pytest.raises(ValueError, match='multiples of 32'):
        net(torch.rand(1, 3, 60, 96))


def test_bts_resnet50_parameter_count_matches_the_published_49_5M():
    # 23,508,032 encoder + 23,973,936 decoder. The published 49.5 M (cleinc/bts README) also
    # counts the unused ImageNet fc of the torchvision ResNet-50 it wraps: + 2,049,000.
    net = BTSNet('resnet50')
    enc = sum(p.numel() for p in net.encoder.parameters())
    dec = sum(p.numel() for p in net.decoder.parameters())
    assert (enc, dec) == (23_508_032, 23_973_936)
    assert round((enc + dec + 2048 * 1000 + 1000) / 1e6, 1) == 49.5


def test_registry_builds_bts_and_keeps_packnet():
    net = build_depth_model('BTS', 'resnet18', max_depth=10.0)
    assert isinstance(net, BTSNet) and net.encoder.name == 'resnet18' and net.max_depth == 10.0
    assert net.decoder.num_features == 512
    named = build_depth_model('BTS-ResNet18', width=0.25)
    assert named.encoder.name == 'resnet18' and named.decoder.num_features == 128
    assert bts_num_features(1.0) == 512 and bts_num_features(0.5) == 256 and bts_num_features(0.1) == 128
    pack = build_depth_model('PackNetSlim01', width=0.25)
    ref = build_depth_net('PackNetSlim01', '1A', 0.25)
    assert isinstance(pack, PackNetSlim01) and depth_output_kind(pack) == 'inv_depth'
    assert pack.state_dict().keys() == ref.state_dict().keys()
    for bad, match in ((dict(head='BTS', encoder='vgg16'), 'Unknown encoder'),
                       (dict(head='Foo'), 'Unknown depth head'),
                       (dict(head='PackNet01', encoder='resnet18'), 'own packing encoder'),
                       (dict(head='BTS-ResNet18', encoder='resnet50'), 'names encoder'),
                       (dict(head='BTS', dropout=0.5), 'no dropout')):
        with pytest.raises(ValueError, match=match):
            build_depth_model(**bad)
