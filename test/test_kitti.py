"""KittiDrive on the real KITTI raw drive 2011_09_26_drive_0023 (frames 0-6 of ../shared/data).

Numeric checks against independent evidence: the calibration file, the KITTI sensor-setup
geometry (camera ~1.65 m and IMU ~0.93 m above the road), the OXTS velocity, the images
(photometric consistency), and the stereo partner's LiDAR depth map.
"""
from __future__ import annotations

import math
import shutil

import cv2
import numpy as np
import pytest

from conftest import KITTI_DRIVE
from packnet_ros.io.kitti import OXTS_FIELDS, KittiDrive, KittiFormatError, parse_calib_file, parse_timestamp_ns

CALIB_DIR = KITTI_DRIVE.parent
N_DRIVE_FRAMES = 474


@pytest.fixture(scope='module')
def drive(kitti_drive) -> KittiDrive:
    return KittiDrive(kitti_drive)


@pytest.fixture(scope='module')
def drive3(kitti_drive) -> KittiDrive:
    return KittiDrive(kitti_drive, camera='image_03')


def _rot_angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(R[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))


def _rel_cam_pose(d: KittiDrive, a: int, b: int) -> np.ndarray:
    """T_camA_camB from OXTS: pose of the camera at frame b in the camera frame of frame a."""
    T_w_a, T_w_b = d.oxts_pose(a), d.oxts_pose(b)
    return d.T_cam_imu @ np.linalg.inv(T_w_a) @ T_w_b @ np.linalg.inv(d.T_cam_imu)


def _lidar_points_cam(d: KittiDrive, i: int):
    D = d.gt_depth(i)
    v, u = np.nonzero(np.isfinite(D))
    z = D[v, u].astype(np.float64)
    X = np.linalg.solve(d.K, np.stack([u, v, np.ones_like(u)]).astype(np.float64)) * z
    return u, v, X


# ------------------------------------------------------------------ layout, intrinsics, images
def test_frames_and_size(drive):
    assert drive.frames == list(range(7))
    assert len(drive) == 7
    assert drive.image_size == (375, 1242)
    assert drive.image_path(3) == KITTI_DRIVE / 'image_02' / 'data' / '0000000003.png'


def test_intrinsics_match_readme_and_calib(drive, drive3):
    K = drive.K
    assert K.shape == (3, 3) and K.dtype == np.float64
    np.testing.assert_allclose(K, [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]], atol=1e-9)
    calib = parse_calib_file(CALIB_DIR / 'calib_cam_to_cam.txt')
    for d, key in ((drive, 'P_rect_02'), (drive3, 'P_rect_03')):
        P = calib[key].reshape(3, 4)
        np.testing.assert_allclose(d.K, P[:, :3], rtol=1e-6)  # cam.txt agrees with calib
        np.testing.assert_array_equal(d.P_rect, P)


def test_intrinsics_fall_back_to_calib_without_cam_txt(tmp_path):
    drive_dir = _make_drive(tmp_path, cam_txt=False)
    d = KittiDrive(drive_dir)
    np.testing.assert_allclose(d.K, [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]], atol=1e-9)


def test_image_is_rgb_uint8(drive):
    img = drive.image(0)
    assert img.shape == (375, 1242, 3) and img.dtype == np.uint8
    bgr = cv2.imread(str(drive.image_path(0)), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(img, bgr[..., ::-1])
    assert 20 < img.mean() < 235 and img.std() > 20  # a real picture, not a blank


# ------------------------------------------------------------------ timestamps
def test_parse_timestamp_ns_keeps_all_digits():
    assert parse_timestamp_ns('1970-01-01 00:00:00.000000001') == 1
    assert parse_timestamp_ns('2011-09-26 13:04:32.349659964') == 1317042272_349659964
    assert parse_timestamp_ns('2011-09-26 13:04:32.5') == 1317042272_500000000
    assert parse_timestamp_ns('2011-09-26 13:04:32') == 1317042272_000000000
    for bad in ('2011-09-26T13:04:32.1', '2011-09-26 13:04:32.1234567890', 'garbage',
                '2011-13-40 00:00:00.0'):
        with pytest.raises(KittiFormatError):
            parse_timestamp_ns(bad)


def test_camera_timestamps(drive):
    ts = np.array([drive.timestamp_ns(i) for i in range(N_DRIVE_FRAMES)], dtype=np.int64)
    assert ts[0] == 1317043079_287203584  # "2011-09-26 13:17:59.287203584" as UTC, exact
    assert drive.timestamp_ns(473) == 1317043128_304248064  # whole drive, beyond the 7 images
    dt = np.diff(ts) * 1e-9
    assert (dt > 0).all()
    assert 0.09 < dt.min() and dt.max() < 0.115 and abs(np.median(dt) - 0.1037) < 0.001
    assert isinstance(drive.timestamp_ns(0), int)
    with pytest.raises(KittiFormatError, match='timestamps.txt has no line 475'):
        drive.timestamp_ns(N_DRIVE_FRAMES)


def test_oxts_timestamps_close_to_camera(drive):
    to = np.array([drive.oxts_timestamp_ns(i) for i in range(N_DRIVE_FRAMES)], dtype=np.int64)
    assert to[0] == 1317043079_293761040
    assert (np.diff(to) > 0).all()
    for i in drive.frames:
        assert abs(drive.oxts_timestamp_ns(i) - drive.timestamp_ns(i)) < 20_000_000  # < 20 ms


# ------------------------------------------------------------------ OXTS
def test_oxts_fields(drive):
    o = drive.oxts(0)
    assert list(o) == list(OXTS_FIELDS) and len(o) == 30
    assert o['lat'] == pytest.approx(49.032806841152) and o['lon'] == pytest.approx(8.4385595703734)
    assert o['vf'] == pytest.approx(8.7424908583432)
    # dataformat.txt names the 14th field 'ay' a second time: it is z acceleration (gravity)
    assert o['az'] == pytest.approx(9.8901658673859)
    assert o['ay'] == pytest.approx(0.23382035769103)
    # velocity direction (north/east) matches heading yaw (0 = east, counter-clockwise)
    for i in drive.frames:
        o = drive.oxts(i)
        heading = math.atan2(o['vn'], o['ve'])
        assert abs(math.remainder(heading - o['yaw'], 2 * math.pi)) < math.radians(1.5)


def test_speed_and_velocity(drive):
    for i in drive.frames:
        s = drive.speed(i)
        assert 8.6 <= s <= 9.0
        v, w = drive.velocity(i)
        assert v.shape == (3,) and w.shape == (3,) and v.dtype == np.float64
        assert np.linalg.norm(v) == pytest.approx(s)
        assert v[0] > 8.5 and abs(v[1]) < 0.2 and abs(v[2]) < 0.2  # forward, x = front
        assert np.abs(w).max() < 0.05  # driving straight
    assert drive.speed(6) > drive.speed(0)  # accelerating slightly (8.74 -> 8.91 m/s)


def test_oxts_pose_is_rigid_and_devkit_mercator(drive):
    o0 = drive.oxts(0)
    T = drive.oxts_pose(0)
    assert T.shape == (4, 4) and T.dtype == np.float64
    R = T[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    s = math.cos(math.radians(o0['lat']))
    assert drive.mercator_scale == pytest.approx(s)
    assert T[0, 3] == pytest.approx(s * 6378137.0 * math.radians(o0['lon']))
    assert T[1, 3] == pytest.approx(s * 6378137.0 * math.log(math.tan(math.radians(90 + o0['lat']) / 2)))
    assert T[2, 3] == o0['alt']
    # forward axis of the IMU in the world (x east, y north) points along yaw
    assert math.atan2(R[1, 0], R[0, 0]) == pytest.approx(o0['yaw'], abs=1e-9)


def test_oxts_pose_distance_matches_haversine(drive):
    """The scaled Mercator is locally metric: compare with a great-circle distance."""
    o0, o6 = drive.oxts(0), drive.oxts(6)
    p0, p6 = map(math.radians, (o0['lat'], o6['lat']))
    dlat, dlon = p6 - p0, math.radians(o6['lon'] - o0['lon'])
    a = math.sin(dlat / 2) ** 2 + math.cos(p0) * math.cos(p6) * math.sin(dlon / 2) ** 2
    great_circle = 2 * 6378137.0 * math.asin(math.sqrt(a))
    d = drive.oxts_pose(6)[:2, 3] - drive.oxts_pose(0)[:2, 3]
    assert np.linalg.norm(d) == pytest.approx(great_circle, rel=2e-3)
    # direction of travel = heading
    assert math.atan2(d[1], d[0]) == pytest.approx(drive.oxts(3)['yaw'], abs=math.radians(1))


def test_distance_travelled_matches_speed_times_dt(drive):
    fr = drive.frames
    dist = np.array([np.linalg.norm(drive.oxts_pose(b)[:3, 3] - drive.oxts_pose(a)[:3, 3])
                     for a, b in zip(fr[:-1], fr[1:])])
    v = np.array([drive.speed(i) for i in fr])
    dt_cam = np.diff([drive.timestamp_ns(i) for i in fr]) * 1e-9
    expected = 0.5 * (v[1:] + v[:-1]) * dt_cam
    assert dist.sum() == pytest.approx(expected.sum(), rel=0.04)  # 5.62 m vs 5.50 m
    np.testing.assert_allclose(dist, expected, rtol=0.10)  # GPS steps alternate 0.89 / 0.98 m
    # Data observation: the alternation follows the OXTS clock shifted by one sample
    # (step k of the positions ~ speed x oxts dt of step k+1, within 1 %).
    dt_oxts = np.diff([drive.oxts_timestamp_ns(i) for i in fr]) * 1e-9
    np.testing.assert_allclose(dist[:-1], (0.5 * (v[1:] + v[:-1]) * dt_oxts)[1:], rtol=0.02)


def test_relative_camera_motion_from_oxts(drive):
    T = _rel_cam_pose(drive, 0, 6)
    t = T[:3, 3]
    assert np.linalg.norm(t) == pytest.approx(5.63, abs=0.05)
    assert t[2] > 0.99 * np.linalg.norm(t)  # the camera moves along its optical axis (z forward)
    assert _rot_angle_deg(T) < 1.5


# ------------------------------------------------------------------ calibration
def test_parse_calib_file():
    c = parse_calib_file(CALIB_DIR / 'calib_cam_to_cam.txt')
    assert 'calib_time' not in c
    assert c['P_rect_02'].shape == (12,) and c['P_rect_02'][0] == 721.5377
    assert c['S_rect_02'].tolist() == [1242.0, 375.0]
    v = parse_calib_file(CALIB_DIR / 'calib_velo_to_cam.txt')
    assert set(v) == {'R', 'T', 'delta_f', 'delta_c'}


def test_calibration_transforms(drive):
    for T in (drive.T_cam_velo, drive.T_velo_imu, drive.T_cam_imu):
        assert T.shape == (4, 4) and T.dtype == np.float64
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-5)
        assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    np.testing.assert_allclose(drive.T_cam_imu, drive.T_cam_velo @ drive.T_velo_imu)
    # axes: camera z (forward) = Velodyne x, camera x (right) = -Velodyne y, camera y (down) = -z
    R = drive.T_cam_velo[:3, :3]
    np.testing.assert_allclose(R, [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=0.02)
    # KITTI setup: colour camera ~0.27 m ahead of and ~0.08 m below the Velodyne,
    # IMU 0.81 m behind, 0.32 m left of and 0.80 m below it.
    cam_in_velo = np.linalg.inv(drive.T_cam_velo)[:3, 3]
    np.testing.assert_allclose(cam_in_velo, [0.27, 0.06, -0.08], atol=0.02)
    np.testing.assert_allclose(drive.T_velo_imu[:3, 3], [-0.81, 0.32, -0.80], atol=0.01)


def test_road_heights_match_sensor_setup(drive):
    """LiDAR road points below the camera: camera ~1.65 m, IMU ~0.93 m above the road."""
    for i in (0, 6):
        u, v, X = _lidar_points_cam(drive, i)
        road = (v > 330) & (np.abs(u - 620) < 200)
        assert road.sum() > 500
        assert 1.6 < np.median(X[1, road]) < 1.8  # y down in the camera optical frame
        X_imu = np.linalg.inv(drive.T_cam_imu) @ np.vstack([X, np.ones(X.shape[1])])
        assert -1.0 < np.median(X_imu[2, road]) < -0.8  # z up in the IMU frame


def test_stereo_partner_depth_reprojects(drive, drive3):
    """Camera 2 LiDAR depth moved into camera 3 with our transforms equals camera 3's depth map."""
    T_3_2 = drive3.T_cam_velo @ np.linalg.inv(drive.T_cam_velo)
    np.testing.assert_allclose(T_3_2[:3, :3], np.eye(3), atol=1e-9)
    assert T_3_2[0, 3] == pytest.approx(-0.5327, abs=1e-3)  # baseline ~0.54 m, camera 3 on the right
    u, v, X = _lidar_points_cam(drive, 0)
    X3 = T_3_2[:3, :3] @ X + T_3_2[:3, 3:]
    q = drive3.K @ X3
    uu, vv = np.round(q[0] / q[2]).astype(int), np.round(q[1] / q[2]).astype(int)
    inside = (uu >= 0) & (uu < 1242) & (vv >= 0) & (vv < 375)
    ref = drive3.gt_depth(0)[vv[inside], uu[inside]]
    both = np.isfinite(ref)
    assert both.sum() > 10_000
    rel = np.abs(X3[2, inside][both] - ref[both]) / ref[both]
    assert np.median(rel) < 1e-4 and np.mean(rel < 0.01) > 0.97


def _photometric_error(d: KittiDrive, a: int, b: int, T_a_b: np.ndarray) -> float:
    """Mean |I_a - I_b(warp)| over LiDAR pixels of frame a, given the pose of camera b in a."""
    Ia = d.image(a).astype(np.float32).mean(axis=2)
    Ib = d.image(b).astype(np.float32).mean(axis=2)
    u, v, X = _lidar_points_cam(d, a)
    T_b_a = np.linalg.inv(T_a_b)
    Xb = T_b_a[:3, :3] @ X + T_b_a[:3, 3:]
    q = d.K @ Xb
    ub, vb = q[0] / q[2], q[1] / q[2]
    ok = (Xb[2] > 0.5) & (ub >= 0) & (ub < Ia.shape[1] - 1) & (vb >= 0) & (vb < Ia.shape[0] - 1)
    sampled = cv2.remap(Ib, ub[ok].astype(np.float32)[None], vb[ok].astype(np.float32)[None],
                        cv2.INTER_LINEAR)[0]
    return float(np.mean(np.abs(sampled - Ia[v[ok], u[ok]])))


def test_oxts_motion_explains_the_images(drive):
    """Warping frame 1 into frame 0 with LiDAR depth + OXTS motion + T_cam_imu beats no motion."""
    e_oxts = _photometric_error(drive, 0, 1, _rel_cam_pose(drive, 0, 1))
    e_still = _photometric_error(drive, 0, 1, np.eye(4))
    assert e_oxts < 0.5 * e_still  # ~14 vs ~40 grey levels


# ------------------------------------------------------------------ depth
def test_gt_depth(drive):
    assert all(drive.has_gt(i) for i in drive.frames) and not drive.has_gt(7)
    for i in (0, 6):
        D = drive.gt_depth(i)
        assert D.shape == (375, 1242) and D.dtype == np.float32
        finite = np.isfinite(D)
        assert 18_000 < finite.sum() < 21_000
        assert np.isnan(D[~finite]).all()
        assert 1.0 < np.nanmin(D) and np.nanmax(D) < 80.0
    raw = np.load(KITTI_DRIVE / 'proj_depth/velodyne/image_02/0000000000.npz')['velodyne_depth']
    D = drive.gt_depth(0)
    assert np.isfinite(D).sum() == (raw > 0).sum() == 19214
    assert np.nanmax(D) == pytest.approx(77.97323)


# ------------------------------------------------------------------ poses.txt
def test_poses_file_is_not_the_oxts_trajectory(drive, drive3):
    P = drive.poses_file()
    assert P.shape == (N_DRIVE_FRAMES, 4, 4)
    np.testing.assert_allclose(P[0], np.eye(4), atol=1e-8)
    np.testing.assert_allclose(P[:, :3, :3] @ P[:, :3, :3].transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), (N_DRIVE_FRAMES, 3, 3)), atol=1e-5)
    assert P[6, 2, 3] > 0.99 * np.linalg.norm(P[6, :3, 3])  # moves along camera z: optical frame
    np.testing.assert_array_equal(P, drive3.poses_file())  # image_03's copy is identical
    # ... but it disagrees with OXTS (and with the images, see the docstring):
    T_oxts = _rel_cam_pose(drive, 0, 6)
    assert np.linalg.norm(P[6, :3, 3]) == pytest.approx(2.99, abs=0.01)
    assert np.linalg.norm(T_oxts[:3, 3]) == pytest.approx(5.63, abs=0.01)
    assert _rot_angle_deg(P[6]) == pytest.approx(6.53, abs=0.01)
    assert _rot_angle_deg(T_oxts) == pytest.approx(0.76, abs=0.01)
    e_oxts = _photometric_error(drive, 0, 3, _rel_cam_pose(drive, 0, 3))
    e_file = _photometric_error(drive, 0, 3, np.linalg.inv(P[0]) @ P[3])
    assert e_oxts < 0.6 * e_file


# ------------------------------------------------------------------ malformed drives
def _make_drive(tmp_path, frames=(0, 1), oxts=True, calib=True, cam_txt=True):
    """Copy a few files of the real drive into tmp_path/<date>/<drive>."""
    date = tmp_path / CALIB_DIR.name
    dst = date / KITTI_DRIVE.name
    (dst / 'image_02' / 'data').mkdir(parents=True)
    if calib:
        for f in ('calib_cam_to_cam.txt', 'calib_velo_to_cam.txt', 'calib_imu_to_velo.txt'):
            shutil.copy(CALIB_DIR / f, date / f)
    files = ['image_02/timestamps.txt'] + (['image_02/cam.txt'] if cam_txt else [])
    files += [f'image_02/data/{i:010d}.png' for i in frames]
    if oxts:
        (dst / 'oxts' / 'data').mkdir(parents=True)
        files += ['oxts/dataformat.txt', 'oxts/timestamps.txt'] + [f'oxts/data/{i:010d}.txt' for i in frames]
    for f in files:
        shutil.copy(KITTI_DRIVE / f, dst / f)
    return dst


def test_copied_drive_works(tmp_path):
    d = KittiDrive(_make_drive(tmp_path, frames=(0, 1, 2)))
    assert d.frames == [0, 1, 2]
    assert d.speed(2) == pytest.approx(8.8164, abs=1e-4)
    assert d.poses_file() is None and not d.has_gt(0)
    with pytest.raises(KittiFormatError, match=r'missing .*proj_depth/velodyne/image_02/0000000000\.npz'):
        d.gt_depth(0)


def test_missing_drive_folder(tmp_path):
    with pytest.raises(KittiFormatError, match='missing drive folder .*nope'):
        KittiDrive(tmp_path / 'nope')


def test_missing_camera_data(tmp_path):
    dst = _make_drive(tmp_path)
    shutil.rmtree(dst / 'image_02' / 'data')
    with pytest.raises(KittiFormatError, match=r'missing .*image_02/data: .*%010d\.png'):
        KittiDrive(dst)
    with pytest.raises(KittiFormatError, match=r'image_03/data'):
        KittiDrive(dst, camera='image_03')
    (dst / 'image_02' / 'data').mkdir()
    with pytest.raises(KittiFormatError, match=r'no images in .*image_02/data'):
        KittiDrive(dst)
    with pytest.raises(ValueError, match='camera must be one of'):
        KittiDrive(dst, camera='left')


def test_missing_calibration(tmp_path):
    dst = _make_drive(tmp_path, calib=False)
    with pytest.raises(KittiFormatError, match=r'missing calibration .*calib_cam_to_cam\.txt'):
        KittiDrive(dst)
    shutil.copy(CALIB_DIR / 'calib_cam_to_cam.txt', dst.parent)
    shutil.copy(CALIB_DIR / 'calib_velo_to_cam.txt', dst.parent)
    with pytest.raises(KittiFormatError, match=r'^missing calibration [^,]*/calib_imu_to_velo\.txt: '):
        KittiDrive(dst)  # names only the file still missing


def test_bad_calibration_content(tmp_path):
    dst = _make_drive(tmp_path)
    c2c = dst.parent / 'calib_cam_to_cam.txt'
    c2c.write_text('\n'.join(line for line in c2c.read_text().splitlines() if not line.startswith('P_rect_02')))
    with pytest.raises(KittiFormatError, match="calib_cam_to_cam.txt: missing key 'P_rect_02'"):
        KittiDrive(dst)
    shutil.copy(CALIB_DIR / 'calib_cam_to_cam.txt', c2c)
    (dst / 'image_02' / 'cam.txt').write_text('700 0 600\n0 700 170\n0 0 1\n')
    with pytest.raises(KittiFormatError, match=r'cam\.txt disagrees with P_rect_02'):
        KittiDrive(dst)
    (dst / 'image_02' / 'cam.txt').unlink()
    v2c = dst.parent / 'calib_velo_to_cam.txt'
    v2c.write_text(v2c.read_text().replace('R: 7.533745e-03', 'R: 9.533745e-01'))
    with pytest.raises(KittiFormatError, match=r'calib_velo_to_cam\.txt: R .* is not a rotation'):
        KittiDrive(dst)


def test_no_oxts_folder(tmp_path):
    d = KittiDrive(_make_drive(tmp_path, oxts=False))  # images alone are usable
    assert d.image(0).shape == (375, 1242, 3)
    for f in (d.oxts, d.speed, d.velocity, d.oxts_pose):
        with pytest.raises(KittiFormatError, match=r'missing .*oxts .*needs oxts/ for speed and pose'):
            f(0)
    with pytest.raises(KittiFormatError, match=r'missing .*oxts/timestamps\.txt'):
        d.oxts_timestamp_ns(0)


def test_missing_one_oxts_file(tmp_path):
    dst = _make_drive(tmp_path, frames=(0, 1, 2, 3))
    (dst / 'oxts' / 'data' / '0000000003.txt').unlink()
    d = KittiDrive(dst)
    assert d.speed(2) > 8
    with pytest.raises(KittiFormatError, match=r'missing .*oxts/data/0000000003\.txt: a KITTI raw drive '
                                               r'needs oxts/ for speed and pose'):
        d.speed(3)


def test_malformed_oxts_file(tmp_path):
    dst = _make_drive(tmp_path)
    p = dst / 'oxts' / 'data' / '0000000001.txt'
    p.write_text(' '.join(p.read_text().split()[:29]))
    with pytest.raises(KittiFormatError, match=r'0000000001\.txt: 29 numbers, expected 30'):
        KittiDrive(dst).oxts(1)


def test_corrupt_png(tmp_path):
    dst = _make_drive(tmp_path)
    png = dst / 'image_02' / 'data' / '0000000001.png'
    png.write_bytes(png.read_bytes()[:200])
    d = KittiDrive(dst)
    assert d.image(0).shape == (375, 1242, 3)
    with pytest.raises(KittiFormatError, match=r'unreadable image .*0000000001\.png'):
        d.image(1)
    with pytest.raises(KittiFormatError, match=r'missing .*0000000005\.png: frame 5 is not in this drive'):
        d.image(5)


def test_wrong_size_png(tmp_path):
    dst = _make_drive(tmp_path)
    cv2.imwrite(str(dst / 'image_02' / 'data' / '0000000001.png'), np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(KittiFormatError, match=r'0000000001\.png: image is 20x10, expected 1242x375'):
        KittiDrive(dst).image(1)


def test_corrupt_depth_and_timestamps(tmp_path):
    dst = _make_drive(tmp_path)
    gt = dst / 'proj_depth' / 'velodyne' / 'image_02'
    gt.mkdir(parents=True)
    (gt / '0000000000.npz').write_bytes(b'not a zip')
    np.savez(gt / '0000000001.npz', other=np.zeros((375, 1242), np.float32))
    ts = dst / 'image_02' / 'timestamps.txt'
    ts.write_text('2011-09-26 13:17:59.287203584\n2011/09/26 13:17:59\n')
    d = KittiDrive(dst)
    with pytest.raises(KittiFormatError, match=r'unreadable depth file .*0000000000\.npz'):
        d.gt_depth(0)
    with pytest.raises(KittiFormatError, match=r'0000000001\.npz: no key "velodyne_depth"'):
        d.gt_depth(1)
    assert d.timestamp_ns(0) == 1317043079_287203584
    with pytest.raises(KittiFormatError, match=r'timestamps\.txt:2: expected a timestamp'):
        d.timestamp_ns(1)
