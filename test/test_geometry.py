"""packnet_ros.geometry: intrinsics, (un)projection, SE(3) poses and view synthesis.

Numbers are checked against hand-computed values: the image_proc scaling convention,
depth_image_proc's back-projection formula, Euler composition R = Rx @ Ry @ Rz on a case
worked out by hand, and a synthetic textured plane whose second view is rendered
analytically so that warping with the true depth and pose must reproduce the target.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from packnet_ros.geometry import (
    euler_to_matrix,
    intrinsics_from_camera_info,
    invert_pose,
    pixel_grid,
    pose_vec_to_mat,
    project,
    scale_intrinsics,
    transform_points,
    unproject,
    view_synthesis,
)

K_NP = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- intrinsics
def test_scale_intrinsics_numpy_follows_image_proc():
    K = K_NP.copy()
    sx, sy = 640 / 1242, 192 / 375
    out = scale_intrinsics(K, sx, sy)
    expected = np.array([[721.5377 * sx, 0.0, 609.5593 * sx],
                         [0.0, 721.5377 * sy, 172.854 * sy],
                         [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    assert out[0, 0] == pytest.approx(371.8069, abs=1e-3)   # 721.5377 * 640 / 1242
    assert out[1, 2] == pytest.approx(88.5012, abs=1e-3)    # 172.854 * 192 / 375
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(K, K_NP)  # input untouched
    assert out is not K


def test_scale_intrinsics_list_input_and_anisotropic():
    out = scale_intrinsics([[100.0, 0.0, 50.0], [0.0, 200.0, 40.0], [0.0, 0.0, 1.0]], 2.0, 0.5)
    np.testing.assert_array_equal(out, [[200.0, 0.0, 100.0], [0.0, 100.0, 20.0], [0.0, 0.0, 1.0]])


def test_scale_intrinsics_torch_batched_not_modified():
    K = torch.tensor(K_NP, dtype=torch.float32).repeat(2, 1, 1)
    K[1, 0, 0] = 500.0
    before = K.clone()
    out = scale_intrinsics(K, 0.5, 0.25)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 3) and out.dtype == torch.float32
    torch.testing.assert_close(K, before, rtol=0, atol=0)
    assert out[0, 0, 0].item() == pytest.approx(721.5377 * 0.5, rel=1e-6)
    assert out[1, 0, 0].item() == pytest.approx(250.0, rel=1e-6)
    assert out[0, 0, 2].item() == pytest.approx(609.5593 * 0.5, rel=1e-6)
    assert out[0, 1, 1].item() == pytest.approx(721.5377 * 0.25, rel=1e-6)
    assert out[0, 1, 2].item() == pytest.approx(172.854 * 0.25, rel=1e-6)
    assert out[0, 2].tolist() == [0.0, 0.0, 1.0]
    assert out[0, 0, 1].item() == 0.0 and out[0, 1, 0].item() == 0.0


def test_intrinsics_from_camera_info_prefers_p():
    k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    p = [450.0, 0.0, 300.0, -20.0, 0.0, 455.0, 230.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    K = intrinsics_from_camera_info(k, p)
    np.testing.assert_array_equal(K, [[450.0, 0.0, 300.0], [0.0, 455.0, 230.0], [0.0, 0.0, 1.0]])
    assert K.dtype == np.float64 and K.shape == (3, 3)


@pytest.mark.parametrize('p', [None, [0.0] * 12])
def test_intrinsics_from_camera_info_falls_back_to_k(p):
    k = np.array([500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0])
    K = intrinsics_from_camera_info(k, p)
    np.testing.assert_array_equal(K, k.reshape(3, 3))
    K[0, 0] = 1.0
    assert k[0] == 500.0  # a copy, not a view of the message's array


def test_intrinsics_from_camera_info_uncalibrated():
    with pytest.raises(ValueError, match='uncalibrated'):
        intrinsics_from_camera_info([0.0] * 9, [0.0] * 12)
    with pytest.raises(ValueError, match='uncalibrated'):
        intrinsics_from_camera_info([0.0] * 9)


def test_intrinsics_from_camera_info_rejects_nan_and_negative_focal_lengths():
    k = [500.0, 0, 320, 0, 500.0, 240, 0, 0, 1]
    p = [500.0, 0, 320, 0, 0, 500.0, 240, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match=r'camera_info P has non-finite entries'):
        intrinsics_from_camera_info(k, p[:2] + [float('nan')] + p[3:])
    with pytest.raises(ValueError, match=r'camera_info K has non-finite entries'):
        intrinsics_from_camera_info(k[:4] + [float('inf')] + k[5:])
    with pytest.raises(ValueError, match=r'camera_info K has a negative focal length \(fx -500, fy 500\)'):
        intrinsics_from_camera_info([-500.0] + k[1:])


# ----------------------------------------------------------------------------- (un)projection
def test_pixel_grid_layout():
    g = pixel_grid(2, 3)
    assert g.shape == (3, 2, 3)
    assert g[0].tolist() == [[0, 1, 2], [0, 1, 2]]  # u = column
    assert g[1].tolist() == [[0, 0, 0], [1, 1, 1]]  # v = row
    assert g[2].tolist() == [[1, 1, 1], [1, 1, 1]]


def test_unproject_matches_hand_computed_points():
    fx, fy, cx, cy = 2.0, 4.0, 1.0, 0.5
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    depth = torch.tensor([[[[1.0, 2.0, 4.0], [8.0, 0.5, float('nan')]]]])
    pts = unproject(depth, K)
    assert pts.shape == (1, 3, 2, 3)
    # X = (u - cx) z / fx, Y = (v - cy) z / fy, Z = z; worked out by hand:
    expected = {
        (0, 0): (-0.5, -0.125, 1.0),   # (0-1)*1/2, (0-0.5)*1/4
        (0, 1): (0.0, -0.25, 2.0),     # (1-1)*2/2, (0-0.5)*2/4
        (0, 2): (2.0, -0.5, 4.0),      # (2-1)*4/2, (0-0.5)*4/4
        (1, 0): (-4.0, 1.0, 8.0),      # (0-1)*8/2, (1-0.5)*8/4
        (1, 1): (0.0, 0.0625, 0.5),    # (1-1)*.5/2, (1-0.5)*.5/4
    }
    for (v, u), xyz in expected.items():
        np.testing.assert_allclose(pts[0, :, v, u].numpy(), xyz, rtol=0, atol=1e-7)
    assert torch.isnan(pts[0, :, 1, 2]).all()


def test_unproject_batched_intrinsics_and_bad_shape():
    depth = torch.full((2, 1, 2, 2), 3.0)
    K = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1]],
                      [[3.0, 0, 1], [0, 3.0, 1], [0, 0, 1]]])
    pts = unproject(depth, K)
    # batch 0: X = u * 3, batch 1: X = (u - 1) * 3 / 3
    np.testing.assert_allclose(pts[0, 0].numpy(), [[0.0, 3.0], [0.0, 3.0]])
    np.testing.assert_allclose(pts[1, 0].numpy(), [[-1.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(pts[1, 1].numpy(), [[-1.0, -1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r'\(B, 1, H, W\)'):
        unproject(torch.ones(1, 2, 2), K[0])


def test_project_inverts_unproject():
    torch.manual_seed(0)
    H, W = 6, 9
    K = torch.tensor([[7.0, 0.0, 4.3], [0.0, 6.0, 2.1], [0.0, 0.0, 1.0]], dtype=torch.float64)
    depth = 0.5 + 50.0 * torch.rand(2, 1, H, W, dtype=torch.float64)
    uv = project(unproject(depth, K), K)
    grid = pixel_grid(H, W, torch.float64)[:2]
    assert uv.shape == (2, 2, H, W)
    torch.testing.assert_close(uv, grid.expand(2, 2, H, W), rtol=0, atol=1e-9)


def test_project_hand_computed():
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 80.0, 40.0], [0.0, 0.0, 1.0]])
    pts = torch.tensor([1.0, -2.0, 10.0]).view(1, 3, 1, 1)
    uv = project(pts, K)
    assert uv[0, :, 0, 0].tolist() == pytest.approx([50.0 + 100.0 * 0.1, 40.0 - 80.0 * 0.2])


def test_transform_points_hand_computed():
    # T_a_b: rotate 90 deg about z, then translate (1, 2, 3): p_a = Rz(90) p_b + t
    T = torch.tensor([[0.0, -1.0, 0.0, 1.0],
                      [1.0, 0.0, 0.0, 2.0],
                      [0.0, 0.0, 1.0, 3.0],
                      [0.0, 0.0, 0.0, 1.0]]).unsqueeze(0)
    pts = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 5.0]]).T.reshape(1, 3, 1, 2)
    out = transform_points(T, pts)
    assert out.shape == (1, 3, 1, 2)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [1.0, 3.0, 3.0])    # (0, 1, 0) + t
    np.testing.assert_allclose(out[0, :, 0, 1].numpy(), [0.0, 2.0, 8.0])    # (-1, 0, 5) + t


# ----------------------------------------------------------------------------- poses
def _rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_euler_single_axes():
    a = 0.3
    R = euler_to_matrix(torch.tensor([[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]], dtype=torch.float64))
    c, s = math.cos(a), math.sin(a)
    np.testing.assert_allclose(R[0].numpy(), [[1, 0, 0], [0, c, -s], [0, s, c]], atol=1e-15)
    np.testing.assert_allclose(R[1].numpy(), [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-15)
    np.testing.assert_allclose(R[2].numpy(), [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-15)


def test_euler_order_is_rx_ry_rz():
    # rx = ry = 90 deg, by hand: Rx(90) = [[1,0,0],[0,0,-1],[0,1,0]], Ry(90) = [[0,0,1],[0,1,0],[-1,0,0]]
    # Rx @ Ry = [[0,0,1],[1,0,0],[0,1,0]]  whereas  Ry @ Rx = [[0,1,0],[0,0,-1],[-1,0,0]].
    R = euler_to_matrix(torch.tensor([[math.pi / 2, math.pi / 2, 0.0]], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(R, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12)
    assert not np.allclose(R, [[0, 1, 0], [0, 0, -1], [-1, 0, 0]], atol=1e-3)
    # a generic case against the composition of the elementary rotations
    ang = (0.2, -0.4, 1.1)
    R = euler_to_matrix(torch.tensor([ang], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(R, _rx(ang[0]) @ _ry(ang[1]) @ _rz(ang[2]), atol=1e-12)
    assert not np.allclose(R, _rz(ang[2]) @ _ry(ang[1]) @ _rx(ang[0]), atol=1e-3)


def test_euler_orthonormal_det_one():
    torch.manual_seed(1)
    angles = (torch.rand(16, 3, dtype=torch.float64) - 0.5) * 2 * math.pi
    R = euler_to_matrix(angles)
    eye = torch.eye(3, dtype=torch.float64).expand(16, 3, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(16, dtype=torch.float64), rtol=0, atol=1e-12)


def test_pose_vec_to_mat():
    vec = torch.tensor([[0.5, -1.0, 2.0, 0.0, 0.0, 0.0],
                        [1.0, 2.0, 3.0, 0.1, 0.2, 0.3]], dtype=torch.float64)
    T = pose_vec_to_mat(vec)
    assert T.shape == (2, 4, 4) and T.dtype == torch.float64
    expected0 = np.eye(4)
    expected0[:3, 3] = (0.5, -1.0, 2.0)
    np.testing.assert_array_equal(T[0].numpy(), expected0)  # pure translation: R = I exactly
    np.testing.assert_allclose(T[1, :3, :3].numpy(), _rx(0.1) @ _ry(0.2) @ _rz(0.3), atol=1e-12)
    np.testing.assert_array_equal(T[1, :3, 3].numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(T[:, 3].numpy(), [[0, 0, 0, 1], [0, 0, 0, 1]])


def test_invert_pose():
    torch.manual_seed(2)
    vec = torch.cat([torch.randn(8, 3, dtype=torch.float64) * 3, torch.randn(8, 3, dtype=torch.float64)], 1)
    T = pose_vec_to_mat(vec)
    Ti = invert_pose(T)
    eye = torch.eye(4, dtype=torch.float64).expand(8, 4, 4)
    torch.testing.assert_close(T @ Ti, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(Ti @ T, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(Ti, torch.linalg.inv(T), rtol=0, atol=1e-12)
    # a pure translation inverts to the negated translation
    Tt = pose_vec_to_mat(torch.tensor([[1.0, -2.0, 3.0, 0, 0, 0]], dtype=torch.float64))
    assert invert_pose(Tt)[0, :3, 3].tolist() == [-1.0, 2.0, -3.0]


# ----------------------------------------------------------------------------- view synthesis
H_VS, W_VS = 48, 96
FX_VS, Z_PLANE, BASELINE = 73.0, 10.0, 0.5
SHIFT_PX = FX_VS * BASELINE / Z_PLANE  # 3.65 px


def _texture(u, v):
    """Smooth analytic texture (periods 17 and 11 px: bilinear sampling is accurate)."""
    return 0.5 + 0.25 * np.sin(2 * np.pi * u / 17.0) + 0.2 * np.cos(2 * np.pi * v / 11.0 + 0.3)


def _plane_scene():
    """Fronto-parallel textured plane at z = 10 m seen by a target camera and by a reference
    camera whose centre is 0.5 m to the right (+x) of the target's.

    Target pixel u sees plane point X = (u - cx) z / fx; the reference camera sees it at
    X - 0.5, i.e. at column u - fx 0.5 / z. So the reference image is the texture shifted:
    I_ref(u, v) = f(u + SHIFT_PX, v).
    """
    v, u = np.meshgrid(np.arange(H_VS, dtype=np.float64), np.arange(W_VS, dtype=np.float64), indexing='ij')
    target = _texture(u, v)
    ref = _texture(u + SHIFT_PX, v)
    K = torch.tensor([[FX_VS, 0.0, W_VS / 2 - 0.3], [0.0, FX_VS, H_VS / 2 + 0.2], [0.0, 0.0, 1.0]])
    to_t = lambda a: torch.from_numpy(a).float()[None, None].repeat(1, 3, 1, 1)  # noqa: E731
    return to_t(target), to_t(ref), K


def _translation(tx):
    T = torch.eye(4).unsqueeze(0)
    T[0, 0, 3] = tx
    return T


def test_view_synthesis_reconstructs_plane_with_true_pose():
    target, ref, K = _plane_scene()
    depth = torch.full((1, 1, H_VS, W_VS), Z_PLANE)
    # T_ref_target maps target-camera points into the reference camera, whose centre is at
    # x = +0.5 m in the target frame: p_ref = p_target - (0.5, 0, 0).
    warped = view_synthesis(ref, depth, K, _translation(-BASELINE))
    assert warped.shape == target.shape
    interior = (slice(None), slice(None), slice(2, -2), slice(8, -8))
    err = (warped - target)[interior].abs()
    # only bilinear interpolation error of the 17 px sinusoid remains (<= ~0.004 by hand)
    assert float(err.mean()) < 4e-3, float(err.mean())
    assert float(err.max()) < 6e-3, float(err.max())
    # pixels whose source lies left of the reference image are zero-padded (u - 3.65 < 0)
    assert float(warped[..., :3].abs().max()) < float(target[..., :3].abs().min())


def test_view_synthesis_wrong_pose_gives_large_error():
    target, ref, K = _plane_scene()
    depth = torch.full((1, 1, H_VS, W_VS), Z_PLANE)
    interior = (slice(None), slice(None), slice(2, -2), slice(12, -12))
    good = (view_synthesis(ref, depth, K, _translation(-BASELINE)) - target)[interior].abs().mean()
    wrong_sign = (view_synthesis(ref, depth, K, _translation(+BASELINE)) - target)[interior].abs().mean()
    no_motion = (view_synthesis(ref, depth, K, _translation(0.0)) - target)[interior].abs().mean()
    wrong_depth = (view_synthesis(ref, 2 * depth, K, _translation(-BASELINE)) - target)[interior].abs().mean()
    assert float(wrong_sign) > 0.1 and float(no_motion) > 0.05 and float(wrong_depth) > 0.03
    assert float(wrong_sign) > 50 * float(good)


def test_view_synthesis_identity_is_exact():
    torch.manual_seed(3)
    img = torch.rand(2, 3, 8, 12)
    K = torch.tensor([[10.0, 0.0, 6.0], [0.0, 10.0, 4.0], [0.0, 0.0, 1.0]])
    out = view_synthesis(img, torch.full((2, 1, 8, 12), 5.0), K, torch.eye(4).repeat(2, 1, 1))
    torch.testing.assert_close(out, img, rtol=0, atol=1e-5)
