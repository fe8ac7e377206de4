"""Navigation outputs (packnet_ros.postprocess.obstacles): scan and obstacle cloud in the
vehicle frame, checked against hand-computed geometry (no ROS, no network)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from packnet_ros.pipeline import FrameInput, FrameState, PipelineSettings
from packnet_ros.pointcloud import depth_to_xyz
from packnet_ros.postprocess.obstacles import (
    ObstacleSettings,
    camera_pose_matrix,
    camera_to_target,
    fit_ground_plane,
    laser_scan,
    navigation_stages,
    obstacle_cloud,
    scan_fov,
    voxel_downsample,
)

W, H = 160, 120
K = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 59.5], [0.0, 0.0, 1.0]])


def _frame(depth: np.ndarray, confidence=None) -> FrameState:
    f = FrameState(FrameInput(np.zeros((H, W, 3), np.uint8), K, 0), want_cloud=False)
    f.depth, f.K, f.confidence = depth.astype(np.float32), K, confidence
    return f


def _render(T_target_camera: np.ndarray, box: tuple | None) -> np.ndarray:
    """Ray-cast depth (along the optical z axis, metres) of the ground z = 0 and an optional
    axis-aligned box ((x0, x1), (y0, y1), (z0, z1)) in the target frame; +Inf = no hit."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)  # optical z = 1
    d = rays @ T_target_camera[:3, :3].T
    o = T_target_camera[:3, 3]
    with np.errstate(divide='ignore', invalid='ignore'):
        t = np.where(d[..., 2] < 0, -o[2] / d[..., 2], np.inf)  # ground hit: depth = t (ray has optical z = 1)
        if box is not None:
            t0 = np.full(u.shape, -np.inf)
            t1 = np.full(u.shape, np.inf)
            for k, (lo, hi) in enumerate(box):
                a, b = (lo - o[k]) / d[..., k], (hi - o[k]) / d[..., k]
                t0, t1 = np.maximum(t0, np.minimum(a, b)), np.minimum(t1, np.maximum(a, b))
            hit = (t0 <= t1) & (t0 > 0)
            t = np.where(hit & (t0 < t), t0, t)
    return t


# ----------------------------------------------------------------------------- extrinsics
def test_camera_pose_applies_the_rep103_body_to_optical_rotation():
    T = camera_pose_matrix(0.3, -0.1, 1.65)
    # optical z (forward) -> target x; optical x (right) -> -y; optical y (down) -> -z
    np.testing.assert_allclose(T[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    np.testing.assert_allclose(camera_to_target(np.array([1.0, 2.0, 10.0]), T), [10.3, -1.1, -0.35])
    # pitch 10 deg (positive = looking down): the optical axis points forward and down
    a = math.radians(10)
    T = camera_pose_matrix(0, 0, 1.0, pitch=a)
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [math.cos(a), 0, -math.sin(a)], atol=1e-12)
    # yaw 90 deg: the camera looks along +y (left)
    T = camera_pose_matrix(0, 0, 0, yaw=math.pi / 2)
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [0, 1, 0], atol=1e-12)
    with pytest.raises(ValueError):
        camera_pose_matrix(0, 0, float('nan'))
    with pytest.raises(ValueError, match='rigid'):
        camera_to_target(np.zeros((2, 3)), np.diag([2.0, 1, 1, 1]))


def test_scan_fov_is_the_horizontal_field_of_view():
    lo, hi = scan_fov(K, W, H, camera_pose_matrix(0, 0, 1.0))
    # leftmost column u = 0: bearing atan(cx / fx); rightmost u = W - 1: -atan((W - 1 - cx) / fx)
    assert hi == pytest.approx(math.atan(79.5 / 100.0))
    assert lo == pytest.approx(-math.atan(79.5 / 100.0))


# ----------------------------------------------------------------------------- scan
def test_wall_at_5m_gives_5_over_cos_bearing_in_every_beam():
    depth = np.full((H, W), 5.0)  # fronto-parallel wall 5 m ahead of the camera
    scan_stage, _ = navigation_stages(ObstacleSettings(T_target_camera=camera_pose_matrix(0, 0, 1.0),
                                                       scan_angle_increment=math.radians(1.0),
                                                       scan_range_min_m=0.1, scan_range_max_m=20.0))
    frame = _frame(depth)
    scan_stage(frame, PipelineSettings())
    assert scan_stage.last_error is None
    s = frame.scan
    half = math.atan(79.5 / 100.0)
    n = int(math.floor(2 * half / math.radians(1.0))) + 1
    assert len(s.ranges) == n and s.angle_min == pytest.approx(-half)
    assert s.angle_max == pytest.approx(-half + (n - 1) * math.radians(1.0))
    assert s.frame_id == 'base_link' and s.ranges.dtype == np.float32
    # hand computation: column u sees the wall at x = 5, y = -(u - cx) 5 / fx, bearing
    # -atan((u - cx) / fx), range 5 / cos(bearing); a beam keeps its nearest column
    bearing_u = -np.arctan((np.arange(W) - 79.5) / 100.0)
    beam_u = np.rint((bearing_u - s.angle_min) / s.angle_increment).astype(int)
    for i in range(n):
        cols = bearing_u[beam_u == i]
        assert len(cols), f'beam {i} has no column'
        assert s.ranges[i] == pytest.approx(5.0 / math.cos(np.abs(cols).min()), rel=1e-5)
    angles = s.angle_min + np.arange(n) * s.angle_increment
    np.testing.assert_allclose(s.ranges, 5.0 / np.cos(angles), rtol=0.01)  # within half a beam


def test_low_obstacle_below_the_principal_row_is_seen():
    """depthimage_to_laserscan's blind spot: an obstacle 0.5 m high seen only in the lower rows."""
    T = camera_pose_matrix(0, 0, 1.65)
    depth = _render(T, ((4.0, 4.5), (-0.5, 0.5), (0.0, 0.5)))
    pts = camera_to_target(depth_to_xyz(depth, K), T)
    s = laser_scan(pts, min_height_m=0.2, max_height_m=2.0, angle_min=-0.5, angle_max=0.5,
                   angle_increment=math.radians(1), range_min=0.3, range_max=8.0)
    assert s.ranges[len(s.ranges) // 2] == pytest.approx(4.0, abs=1e-4)  # front face at x = 4
    # the rows at the principal point (depthimage_to_laserscan's band) look at the horizon: no return
    assert (depth[59:61, 70:90] > 100.0).all()  # horizon or road 330 m away, not the box


def test_scan_height_band_and_range_limits_are_inclusive_at_their_edges():
    kw = dict(angle_min=-math.pi / 2, angle_max=math.pi / 2, angle_increment=math.pi / 4,
              range_min=0.5, range_max=8.0)
    # beams at -90, -45, 0, 45, 90 degrees
    pts = np.array([[8.0, 0.0, 1.0],          # 0 deg: exactly range_max -> kept
                    [0.0, 8.001, 1.0],        # 90 deg: just beyond range_max -> +Inf
                    [0.0, -0.5, 1.0],         # -90 deg: exactly range_min -> kept
                    [0.49 / math.sqrt(2), 0.49 / math.sqrt(2), 1.0],  # 45 deg: too close only -> -Inf
                    [np.nan, 0.0, 1.0]])      # ignored
    s = laser_scan(pts, min_height_m=0.25, max_height_m=2.0, **kw)
    assert s.ranges.tolist() == [0.5, np.inf, 8.0, -np.inf, np.inf]
    # height band edges, bearing 0: z exactly at min / max kept, just outside dropped
    for z, kept in [(0.25, True), (0.2499, False), (2.0, True), (2.0001, False)]:
        s = laser_scan(np.array([[3.0, 0.0, z]]), min_height_m=0.25, max_height_m=2.0, **kw)
        assert s.ranges[2] == (3.0 if kept else np.inf), (z, s.ranges)


def test_empty_scan_is_all_plus_inf_never_nan():
    s = laser_scan(np.full((4, 5, 3), np.nan), min_height_m=0.2, max_height_m=2.0, angle_min=-1.0, angle_max=1.0,
                   angle_increment=0.1, range_min=0.3, range_max=8.0)
    assert len(s.ranges) == 21 and np.all(s.ranges == np.inf) and not np.isnan(s.ranges).any()
    with pytest.raises(ValueError, match='min_height_m'):
        laser_scan(np.zeros((1, 3)), min_height_m=2.0, max_height_m=0.2, angle_min=-1.0, angle_max=1.0,
                   angle_increment=0.1, range_min=0.3, range_max=8.0)


# ----------------------------------------------------------------------------- obstacle cloud
BOX = ((6.0, 7.0), (-1.0, 1.0), (0.0, 1.5))


def test_box_on_flat_ground_is_in_the_obstacle_cloud_and_the_ground_is_not():
    T = camera_pose_matrix(0, 0, 1.65)
    depth = _render(T, BOX)
    pts = camera_to_target(depth_to_xyz(depth, K), T)
    finite = np.all(np.isfinite(pts), -1)
    box_px = finite & (np.abs(pts[..., 0] - 6.0) < 1e-6) & (pts[..., 2] >= 0.2)  # visible front face above 0.2 m
    ground_px = finite & (np.abs(pts[..., 2]) < 1e-6) & (np.hypot(pts[..., 0], pts[..., 1]) <= 8.0)
    assert box_px.sum() > 100 and ground_px.sum() > 1000
    for plane in (False, True):
        out = obstacle_cloud(pts, min_height_m=0.2, max_height_m=2.0, max_range_m=8.0, voxel_m=0.0,
                             ground_plane=plane)
        assert len(out.points) == box_px.sum()
        np.testing.assert_allclose(out.points[:, 0], 6.0, atol=1e-4)   # all on the front face
        assert np.all(np.abs(out.points[:, 1]) <= 1.0 + 1e-4) and out.points[:, 2].min() >= 0.2 - 1e-4
        if plane:
            assert out.ground_status == 'fitted'
            np.testing.assert_allclose(out.ground_plane, (0, 0, 0), atol=5e-3)  # LSQ on the inliers


def test_fitted_ground_plane_removes_the_ground_under_a_wrong_pitch():
    """The camera really looks 2 deg down but the extrinsics say level: with the flat
    ground z = 0 the far road rises into the band; the RANSAC plane removes it."""
    true_T = camera_pose_matrix(0, 0, 1.65, pitch=math.radians(2.0))
    depth = _render(true_T, BOX)
    pts = camera_to_target(depth_to_xyz(depth, K), camera_pose_matrix(0, 0, 1.65))
    flat = obstacle_cloud(pts, min_height_m=0.2, max_height_m=2.0, max_range_m=8.0)
    fitted = obstacle_cloud(pts, min_height_m=0.2, max_height_m=2.0, max_range_m=8.0, ground_plane=True)
    assert np.sum(np.abs(flat.points[:, 1]) > 1.05) > 0  # ground beside the box leaks in
    assert fitted.ground_status == 'fitted'
    a, b, c = fitted.ground_plane
    assert a == pytest.approx(math.tan(math.radians(2.0)), abs=2e-3) and abs(b) < 1e-3
    assert np.all(np.abs(fitted.points[:, 1]) <= 1.0 + 1e-3)  # box only
    assert len(fitted.points) > 100


def test_implausible_or_missing_ground_falls_back_to_flat():
    plane, why = fit_ground_plane(np.zeros((10, 3)))
    assert plane is None and 'too few' in why
    wall = np.stack(np.meshgrid(np.linspace(0, 0.3, 40), np.linspace(-2, 2, 40), indexing='ij'), -1).reshape(-1, 2)
    steep = np.column_stack([wall[:, 0], wall[:, 1], wall[:, 0] * 1.0 - 0.2])  # 45 degree slope
    plane, why = fit_ground_plane(steep)
    assert plane is None and 'implausible' in why


def test_cloud_height_band_and_range_limit_are_inclusive_at_their_edges():
    pts = np.array([[3.0, 0.0, 0.25], [3.0, 0.0, 0.2499], [3.0, 0.0, 2.0], [3.0, 0.0, 2.0001],
                    [8.0, 0.0, 1.0], [8.001, 0.0, 1.0], [0.0, -8.0, 1.0], [np.inf, 0.0, 1.0]])
    out = obstacle_cloud(pts, min_height_m=0.25, max_height_m=2.0, max_range_m=8.0)
    assert out.points.tolist() == [[3.0, 0.0, 0.25], [3.0, 0.0, 2.0], [8.0, 0.0, 1.0], [0.0, -8.0, 1.0]]
    assert out.n_input == 7 and out.n_band == 4 and out.points.dtype == np.float32


def test_voxel_downsampling_keeps_one_centroid_per_voxel():
    pts = np.array([[0.01, 0.01, 0.01], [0.09, 0.05, 0.02],   # voxel (0, 0, 0)
                    [0.11, 0.0, 0.0],                         # voxel (1, 0, 0)
                    [-0.01, 0.01, 0.01]])                     # voxel (-1, 0, 0): floor, not truncation
    out = voxel_downsample(pts, 0.1)
    np.testing.assert_allclose(out, [[-0.01, 0.01, 0.01], [0.05, 0.03, 0.015], [0.11, 0.0, 0.0]], atol=1e-7)
    # a dense cloud: at most one point per voxel
    rng = np.random.default_rng(0)
    dense = rng.uniform(0, 1, (5000, 3))
    out = voxel_downsample(dense, 0.25)
    keys = np.floor(out / 0.25).astype(int)
    assert len(out) == len(np.unique(keys, axis=0)) == 64
    np.testing.assert_array_equal(voxel_downsample(pts, 0.0), pts.astype(np.float32))


def test_confidence_filter():
    pts = np.array([[[3.0, 0.0, 1.0], [4.0, 0.0, 1.0]], [[5.0, 0.0, 1.0], [6.0, 0.0, 1.0]]])
    conf = np.array([[0.9, 0.5], [np.nan, 0.49]])
    out = obstacle_cloud(pts, min_height_m=0.2, max_height_m=2.0, max_range_m=8.0, confidence=conf,
                         min_confidence=0.5)
    assert out.points[:, 0].tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match='confidence shape'):
        obstacle_cloud(pts, min_height_m=0.2, max_height_m=2.0, max_range_m=8.0, confidence=conf[:1],
                       min_confidence=0.5)


# ----------------------------------------------------------------------------- stages
def test_stages_skip_when_disabled_and_never_raise_on_bad_input():
    settings = ObstacleSettings(T_target_camera=camera_pose_matrix(0, 0, 1.65), min_confidence=0.5)
    scan_stage, obstacle_stage = navigation_stages(settings)
    frame = _frame(_render(settings.T_target_camera, BOX), confidence=np.ones((3, 3)))  # wrong shape
    obstacle_stage(frame, PipelineSettings())
    assert frame.obstacles is None and 'confidence shape' in obstacle_stage.last_error
    scan_stage.enabled = False
    scan_stage(frame, PipelineSettings())
    assert frame.scan is None and scan_stage.last_error is None
    frame.K = None  # no camera_info: no output, no exception
    scan_stage.enabled = True
    scan_stage(frame, PipelineSettings())
    assert frame.scan is None and 'intrinsics' in scan_stage.last_error


def test_settings_are_validated():
    with pytest.raises(ValueError, match='min_height_m'):
        ObstacleSettings(min_height_m=2.0, max_height_m=1.0)
    with pytest.raises(ValueError, match='scan_range_min_m'):
        ObstacleSettings(scan_range_min_m=9.0)
    with pytest.raises(ValueError, match='rigid'):
        ObstacleSettings(T_target_camera=np.ones((4, 4)))
