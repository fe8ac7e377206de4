"""KITTI raw drive -> rosbag2 (packnet_ros.ros.bag.write_kitti_bag) read back with
packnet_ros.io.bag, for MCAP and sqlite3 storage, plus the ``packnet-ros bag`` CLI verb.

Every value is compared with the KITTI files read independently here (PNG pixels,
timestamps.txt, the LiDAR .npz, the OXTS packet, calib_imu_to_velo.txt), not only with
the reader the converter uses.
"""
from __future__ import annotations

import calendar
import os
import subprocess
import sys
import time
from collections import Counter

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image

from conftest import ROOT
from packnet_ros.io.bag import bag_topics, iter_messages
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.ros.bag import KittiBagTopics, write_kitti_bag

TOPICS = KittiBagTopics()
N = 7


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _kitti_times_ns(path) -> list[int]:
    """KITTI timestamps.txt -> ns (UTC), parsed here without the project's reader."""
    out = []
    for line in path.read_text().splitlines()[:N]:
        date, frac = line.strip().split('.')
        out.append(calendar.timegm(time.strptime(date, '%Y-%m-%d %H:%M:%S')) * 1_000_000_000 + int(frac.ljust(9, '0')))
    return out


def _quat_to_matrix(x, y, z, w) -> np.ndarray:
    n = np.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@pytest.fixture(scope='module')
def drive(kitti_drive):
    return KittiDrive(kitti_drive)


@pytest.fixture(scope='module', params=['mcap', 'sqlite3'])
def bag(request, drive, tmp_path_factory):
    out = tmp_path_factory.mktemp(f'bag_{request.param}') / 'kitti'
    summary = write_kitti_bag(drive, out, storage=request.param)
    msgs = list(iter_messages(out))
    by_topic: dict[str, list] = {}
    for m in msgs:
        by_topic.setdefault(m.topic, []).append(m)
    return request.param, out, summary, msgs, by_topic


def test_storage_files_and_counts(bag):
    storage, out, summary, msgs, by_topic = bag
    suffix = '.mcap' if storage == 'mcap' else '.db3'
    assert any(p.suffix == suffix for p in out.iterdir()) and (out / 'metadata.yaml').is_file()
    expected = {TOPICS.image: N, TOPICS.camera_info: N, TOPICS.depth_gt: N, TOPICS.odom: N, TOPICS.tf_static: 1}
    assert Counter(m.topic for m in msgs) == expected
    assert summary.counts == expected
    assert summary.frames == list(range(N)) and summary.skipped == []
    assert bag_topics(out) == {TOPICS.image: 'sensor_msgs/msg/Image',
                               TOPICS.camera_info: 'sensor_msgs/msg/CameraInfo',
                               TOPICS.depth_gt: 'sensor_msgs/msg/Image', TOPICS.odom: 'nav_msgs/msg/Odometry',
                               TOPICS.tf_static: 'tf2_msgs/msg/TFMessage'}
    log_times = [m.log_time_ns for m in msgs]
    assert log_times == sorted(log_times)


def test_images_equal_png_pixels_and_stamps(bag, kitti_drive):
    _, _, _, _, by_topic = bag
    times = _kitti_times_ns(kitti_drive / 'image_02' / 'timestamps.txt')
    images = by_topic[TOPICS.image]
    for i, m in enumerate(images):
        img = m.msg
        png = cv2.cvtColor(cv2.imread(str(kitti_drive / 'image_02' / 'data' / f'{i:010d}.png')), cv2.COLOR_BGR2RGB)
        assert (img.height, img.width, img.encoding, img.step) == (375, 1242, 'rgb8', 1242 * 3)
        assert not img.is_bigendian
        np.testing.assert_array_equal(np.asarray(img.data, np.uint8).reshape(375, 1242, 3), png)
        assert _stamp_ns(img.header.stamp) == times[i] == m.log_time_ns
        assert img.header.frame_id == TOPICS.camera_frame
    assert times[0] == 1_317_043_079_287_203_584  # "2011-09-26 13:17:59.287203584" as UTC
    assert 0.09e9 < np.diff(times).mean() < 0.11e9  # ~10 Hz


def test_camera_info_matches_drive(bag, drive):
    _, _, _, _, by_topic = bag
    stamps = [_stamp_ns(m.msg.header.stamp) for m in by_topic[TOPICS.image]]
    for m, t in zip(by_topic[TOPICS.camera_info], stamps):
        info = m.msg
        assert _stamp_ns(info.header.stamp) == t and info.header.frame_id == TOPICS.camera_frame
        assert (info.width, info.height) == (1242, 375)
        np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), drive.K)
        np.testing.assert_allclose(np.asarray(info.k)[[0, 2, 4, 5]], [721.5377, 609.5593, 721.5377, 172.854])
        P = np.asarray(info.p).reshape(3, 4)
        np.testing.assert_array_equal(P[:, :3], drive.K)
        np.testing.assert_array_equal(P[:, 3], 0.0)
        assert np.all(np.asarray(info.d) == 0.0)


def test_depth_nan_exactly_where_lidar_is_zero(bag, kitti_drive):
    _, _, _, _, by_topic = bag
    images = by_topic[TOPICS.image]
    for i, m in enumerate(by_topic[TOPICS.depth_gt]):
        d = m.msg
        assert (d.encoding, d.height, d.width, d.step) == ('32FC1', 375, 1242, 1242 * 4)
        assert _stamp_ns(d.header.stamp) == _stamp_ns(images[i].msg.header.stamp)
        assert d.header.frame_id == TOPICS.camera_frame
        depth = np.frombuffer(np.asarray(d.data, np.uint8).tobytes(), '<f4').reshape(375, 1242)
        with np.load(kitti_drive / 'proj_depth' / 'velodyne' / 'image_02' / f'{i:010d}.npz') as z:
            lidar = np.squeeze(z['velodyne_depth']).astype(np.float32)
        np.testing.assert_array_equal(np.isnan(depth), lidar == 0)
        np.testing.assert_array_equal(depth[lidar > 0], lidar[lidar > 0])
        assert 10_000 < int((lidar > 0).sum()) < 30_000


def test_odometry(bag, drive, kitti_drive):
    _, _, _, _, by_topic = bag
    odom = by_topic[TOPICS.odom]
    times = _kitti_times_ns(kitti_drive / 'oxts' / 'timestamps.txt')
    for i, m in enumerate(odom):
        o = m.msg
        assert o.header.frame_id == TOPICS.odom_frame and o.child_frame_id == TOPICS.base_frame
        assert _stamp_ns(o.header.stamp) == times[i] == m.log_time_ns
        packet = [float(v) for v in (kitti_drive / 'oxts' / 'data' / f'{i:010d}.txt').read_text().split()]
        vf, vl, vu = packet[8:11]
        lin = o.twist.twist.linear
        assert lin.x == pytest.approx(vf, abs=1e-9) and lin.y == pytest.approx(vl, abs=1e-9)
        assert lin.z == pytest.approx(vu, abs=1e-9)
        assert np.linalg.norm([lin.x, lin.y, lin.z]) == pytest.approx(drive.speed(i), rel=1e-12)
        assert 8.0 < lin.x < 9.5
        ang = o.twist.twist.angular
        assert (ang.x, ang.y, ang.z) == pytest.approx(tuple(packet[20:23]), abs=1e-9)  # wf, wl, wu
    p0 = odom[0].msg.pose.pose
    assert (p0.position.x, p0.position.y, p0.position.z) == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)
    q = p0.orientation
    np.testing.assert_allclose(_quat_to_matrix(q.x, q.y, q.z, q.w), np.eye(3), atol=1e-9)
    # the vehicle drives forward: ~8.8 m/s * 0.6 s along its own x axis by frame 6
    p6 = odom[-1].msg.pose.pose.position
    assert 4.5 < p6.x < 6.5 and abs(p6.y) < 0.5 and abs(p6.z) < 0.5
    T = drive.oxts_pose(6)
    rel = np.linalg.inv(drive.oxts_pose(0)) @ T
    np.testing.assert_allclose([p6.x, p6.y, p6.z], rel[:3, 3], atol=1e-6)


def test_tf_static(bag, drive, kitti_drive):
    _, _, _, _, by_topic = bag
    (m,) = by_topic[TOPICS.tf_static]
    transforms = {(t.header.frame_id, t.child_frame_id): t for t in m.msg.transforms}
    assert set(transforms) == {(TOPICS.base_frame, TOPICS.lidar_frame), (TOPICS.base_frame, TOPICS.camera_frame)}
    assert _stamp_ns(m.msg.transforms[0].header.stamp) == drive.timestamp_ns(0)

    def matrix(t):
        r, tr = t.transform.rotation, t.transform.translation
        M = np.eye(4)
        M[:3, :3] = _quat_to_matrix(r.x, r.y, r.z, r.w)
        M[:3, 3] = (tr.x, tr.y, tr.z)
        return M

    # calib_imu_to_velo.txt, parsed here: T_velo_imu; base_link -> velodyne is its inverse
    calib = {}
    for line in (kitti_drive.parent / 'calib_imu_to_velo.txt').read_text().splitlines():
        key, _, val = line.partition(':')
        try:
            calib[key.strip()] = np.array([float(v) for v in val.split()])
        except ValueError:
            pass
    T_velo_imu = np.eye(4)
    T_velo_imu[:3, :3] = calib['R'].reshape(3, 3)
    T_velo_imu[:3, 3] = calib['T']
    np.testing.assert_array_equal(T_velo_imu, drive.T_velo_imu)
    # The calibration rotations are orthonormal only to ~1e-7 (printed digits); a quaternion
    # is exactly a rotation, so rotations agree to that level and translations exactly.
    for key, expected in (((TOPICS.base_frame, TOPICS.lidar_frame), np.linalg.inv(T_velo_imu)),
                          ((TOPICS.base_frame, TOPICS.camera_frame), np.linalg.inv(drive.T_cam_imu))):
        M = matrix(transforms[key])
        np.testing.assert_allclose(M[:3, :3], expected[:3, :3], rtol=0, atol=1e-6)
        np.testing.assert_allclose(M[:3, 3], expected[:3, 3], rtol=0, atol=1e-9)
    # KITTI setup: the Velodyne sits ~0.8 m above the IMU; the camera looks along the vehicle's x
    assert 0.7 < np.linalg.inv(T_velo_imu)[2, 3] < 0.9
    R_base_cam = matrix(transforms[(TOPICS.base_frame, TOPICS.camera_frame)])[:3, :3]
    assert R_base_cam[:, 2] @ np.array([1.0, 0.0, 0.0]) > 0.99  # optical z = forward


def test_raw_messages_deserialise_with_rclpy(bag):
    _, _, _, _, by_topic = bag
    raw = by_topic[TOPICS.image][3]
    img = deserialize_message(raw.raw, Image)
    assert isinstance(img, Image)
    assert (img.height, img.width, img.encoding) == (375, 1242, 'rgb8')
    assert bytes(img.data) == np.asarray(raw.msg.data, np.uint8).tobytes()
    assert _stamp_ns(img.header.stamp) == _stamp_ns(raw.msg.header.stamp)
    info = deserialize_message(by_topic[TOPICS.camera_info][0].raw, CameraInfo)
    np.testing.assert_array_equal(np.asarray(info.k), np.asarray(by_topic[TOPICS.camera_info][0].msg.k))


def test_existing_bag_needs_overwrite(drive, tmp_path):
    out = tmp_path / 'b'
    write_kitti_bag(drive, out, frames=[0])
    with pytest.raises(FileExistsError, match='overwrite'):
        write_kitti_bag(drive, out, frames=[0])
    summary = write_kitti_bag(drive, out, frames=[1, 2], overwrite=True)
    assert summary.counts[TOPICS.image] == 2
    assert [m.log_time_ns for m in iter_messages(out, [TOPICS.image])] == [drive.timestamp_ns(1),
                                                                            drive.timestamp_ns(2)]
    with pytest.raises(ValueError, match='storage'):
        write_kitti_bag(drive, tmp_path / 'c', storage='rosbag1', frames=[0])
    with pytest.raises(FileNotFoundError):
        list(iter_messages(tmp_path / 'missing'))


# ----------------------------------------------------------------------------- CLI
def _cli(*args):
    exe = ROOT / '.venv' / 'bin' / 'packnet-ros'
    cmd = [str(exe)] if exe.is_file() else [sys.executable, '-m', 'packnet_ros.apps.cli']
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, cwd=str(ROOT),
                          env=dict(os.environ), timeout=300)


def test_cli_bag(kitti_drive, tmp_path):
    out = tmp_path / 'cli_bag'
    proc = _cli('bag', kitti_drive, out)
    assert proc.returncode == 0, proc.stderr
    for topic, n in ((TOPICS.image, 7), (TOPICS.camera_info, 7), (TOPICS.depth_gt, 7), (TOPICS.odom, 7),
                     (TOPICS.tf_static, 1)):
        assert f'{topic}: {n}' in proc.stdout
    assert Counter(m.topic for m in iter_messages(out, deserialize=False))[TOPICS.image] == 7
    again = _cli('bag', kitti_drive, out)
    assert again.returncode == 2 and 'exists' in again.stderr


def test_cli_bag_missing_drive(tmp_path):
    proc = _cli('bag', tmp_path / 'no_such_folder', tmp_path / 'out')
    assert proc.returncode == 2
    assert 'no KITTI raw drive' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out').exists()
