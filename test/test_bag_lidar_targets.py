"""LiDAR targets of bag training sources from PointCloud2 scans (``cloud_topic``).

Real data: the first frames of the kitti_traffic drive (Velodyne scans, KITTI calibration)
written to a rosbag2 by ``packnet-ros bag``'s writer (:func:`packnet_ros.ros.bag.write_kitti_bag`:
scans on /lidar/points in frame ``velodyne``, images in ``cam2_optical``, the chain
base_link -> velodyne / base_link -> cam2_optical on /tf_static). The scans, moved into the
camera with that chain and projected with the CameraInfo's K, must give KITTI's own
``proj_depth`` maps: the same pixels, depths 2.75 mm apart (``proj_depth`` stores z of the
rectified camera-0 frame, the projection z of camera 2's optical frame; see
test_completion.py).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA
from packnet_ros.completion.sparse import project_to_depth
from packnet_ros.data import count_depth_samples, load_sequences
from packnet_ros.io.bag import BagWriter, iter_messages
from packnet_ros.io.bag_sequence import BagSequence
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.io.sequence import DataError

TRAFFIC = DATA / 'kitti_traffic' / '2011_09_26' / '2011_09_26_traffic_sync'
FRAMES = [0, 1, 2, 3]
CLOUDS = '/lidar/points'


@pytest.fixture(scope='module')
def traffic() -> KittiDrive:
    if not TRAFFIC.is_dir():
        pytest.fail(f'real KITTI data missing at {TRAFFIC} (../shared/data must be beside the repo)')
    return KittiDrive(TRAFFIC)


@pytest.fixture(scope='module')
def traffic_bag(traffic, tmp_path_factory):
    from packnet_ros.ros.bag import write_kitti_bag
    out = tmp_path_factory.mktemp('lidar_bags') / 'traffic'
    summary = write_kitti_bag(traffic, out, frames=FRAMES)
    assert summary.counts[CLOUDS] == len(FRAMES) and summary.counts['/tf_static'] == 1
    return out


def _copy_bag(src, dst, edit):
    """Copy a bag message by message; ``edit(topic, msg, frame_position)`` returns the message
    to write (changed in place or not) or None to leave it out. Header stamps of the
    ``/lidar/points`` messages and log times stay consistent (log time = header stamp)."""
    seen: dict[str, int] = {}
    with BagWriter(dst) as bag:
        for m in iter_messages(src):
            k = seen.get(m.topic, 0)
            seen[m.topic] = k + 1
            msg = edit(m.topic, m.msg, k)
            if msg is None:
                continue
            t = m.log_time_ns
            if hasattr(msg, 'header') and m.topic == CLOUDS:
                t = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            bag.write(m.topic, m.msgtype, t, bag.ts.serialize_cdr(msg, m.msgtype))
    return dst


def _shift(msg, dt_ns: int):
    s = msg.header.stamp
    t = s.sec * 1_000_000_000 + s.nanosec + dt_ns
    s.sec, s.nanosec = divmod(t, 1_000_000_000)
    return msg


def test_projected_scans_equal_kitti_proj_depth(traffic_bag, traffic):
    seq = BagSequence(traffic_bag, cloud_topic=CLOUDS, context_offsets=[])
    assert len(seq) == len(FRAMES) and not seq.skipped
    assert seq.cloud_pairing == {'exact': len(FRAMES), 'nearest': 0, 'none': 0}
    assert seq.warnings == ['no odometry on /odom (topics: %s): speed unknown, no velocity supervision'
                            % sorted(['/camera/image_raw', '/camera/camera_info', '/lidar/depth', CLOUDS,
                                      '/tf_static'])]  # kitti_traffic has no OXTS
    assert f'LiDAR {CLOUDS} (tolerance 50 ms) per target: exact {len(FRAMES)}' in seq.describe()
    tz = traffic.P_rect[2, 3] / traffic.K[2, 2]   # 2.746 mm: camera 2's optical centre behind camera 0's
    for i, s in enumerate(seq):
        assert s.contexts == [] and s.stamp_ns == traffic.timestamp_ns(FRAMES[i])
        gt = traffic.gt_depth(FRAMES[i])
        d = s.gt_depth
        assert d.dtype == np.float32 and d.shape == gt.shape == s.target.shape[:2]
        ours, theirs = np.isfinite(d), np.isfinite(gt) & (gt > 0)
        assert not np.any(d == 0) and np.all(d[ours] > 0)
        both = ours & theirs
        diff = d[both] - gt[both]
        differ = int((ours != theirs).sum())
        print(f'\nframe {FRAMES[i]}: {theirs.sum()} proj_depth pixels, {ours.sum()} projected, {differ} differ; '
              f'depth - proj_depth: mean {diff.mean() * 1e3:.3f} mm, max |.| {np.abs(diff).max() * 1e3:.3f} mm, '
              f'max |. - tz| {np.abs(diff - tz).max() * 1e3:.4f} mm')
        assert differ <= 0.001 * theirs.sum()
        assert np.abs(diff).max() < 0.01                # within 1 cm
        assert np.abs(diff - tz).max() < 1e-4           # the constant camera-0 / camera-2 offset


def test_load_sequences_and_count_depth_samples(traffic_bag):
    specs = [{'type': 'bag', 'path': traffic_bag.name, 'cloud_topic': CLOUDS, 'cloud_tolerance_s': 0.02,
              'context_offsets': []},
             {'type': 'bag', 'path': traffic_bag.name, 'cloud_topic': CLOUDS}]   # contexts -1, +1
    target_only, with_contexts = load_sequences(specs, base_dir=traffic_bag.parent)
    assert target_only.cloud_tolerance_s == 0.02
    assert count_depth_samples(target_only) == len(FRAMES)
    assert len(with_contexts) == len(FRAMES) - 2 and count_depth_samples(with_contexts) == len(FRAMES) - 2
    assert with_contexts[0].gt_depth is not None and len(with_contexts[0].contexts) == 2
    # without cloud_topic the same bag gives no depth
    plain = load_sequences([{'type': 'bag', 'path': str(traffic_bag), 'context_offsets': []}])[0]
    assert count_depth_samples(plain) == 0 and plain[0].gt_depth is None


def test_scans_paired_by_nearest_stamp_within_tolerance(traffic_bag, tmp_path):
    """Scan 1 recorded 30 ms after its image (nearest, within 50 ms), scan 2 missing: frame 2
    has no scan within 50 ms (frame 1's is 70 ms away, frame 3's 100 ms) and no depth."""
    def edit(topic, msg, k):
        if topic != CLOUDS:
            return msg
        return None if k == 2 else _shift(msg, 30_000_000) if k == 1 else msg
    bag = _copy_bag(traffic_bag, tmp_path / 'shifted', edit)
    seq = BagSequence(bag, cloud_topic=CLOUDS, context_offsets=[])
    assert seq.cloud_pairing == {'exact': 2, 'nearest': 1, 'none': 1}
    assert any(f'1 of {len(FRAMES)} targets have no scan on {CLOUDS} within 50 ms' in w for w in seq.warnings)
    assert seq[2].gt_depth is None and count_depth_samples(seq) == len(FRAMES) - 1
    exact = BagSequence(traffic_bag, cloud_topic=CLOUDS, context_offsets=[])
    np.testing.assert_array_equal(seq[1].gt_depth, exact[1].gt_depth)    # the same scan, 30 ms later
    np.testing.assert_array_equal(seq[3].gt_depth, exact[3].gt_depth)
    # a wider tolerance pairs frame 2 with the nearer of its neighbours' scans (frame 1's, 70 ms)
    wide = BagSequence(bag, cloud_topic=CLOUDS, context_offsets=[], cloud_tolerance_s=0.08)
    assert wide.cloud_pairing == {'exact': 2, 'nearest': 2, 'none': 0}
    np.testing.assert_array_equal(wide[2].gt_depth, exact[1].gt_depth)
    # a tolerance of 0 takes exact stamps only
    strict = BagSequence(bag, cloud_topic=CLOUDS, context_offsets=[], cloud_tolerance_s=0)
    assert strict.cloud_pairing == {'exact': 2, 'nearest': 0, 'none': 2}


def test_camera_info_rectification_rotation_is_applied(traffic_bag, traffic, tmp_path):
    """A CameraInfo R (stereo rectification) rotates the camera's optical frame into the
    rectified frame the images and K are for: the scan is projected after R."""
    a = np.radians(2.0)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])

    def edit(topic, msg, k):
        if topic == '/camera/camera_info':
            msg.r = R.reshape(-1).copy()
        return msg
    bag = _copy_bag(traffic_bag, tmp_path / 'rotated', edit)
    s = BagSequence(bag, cloud_topic=CLOUDS, context_offsets=[])[0]
    p = traffic.velodyne(FRAMES[0])[:, :3].astype(np.float32).astype(np.float64)
    T = traffic.T_cam_velo
    want = project_to_depth((p @ T[:3, :3].T + T[:3, 3]) @ R.T, traffic.K, traffic.image_size)
    got = np.nan_to_num(s.gt_depth)
    assert int(((got > 0) != (want > 0)).sum()) <= 0.001 * (want > 0).sum()   # tf chain vs calib: ~1e-7 m
    both = (got > 0) & (want > 0)
    assert np.abs(got[both] - want[both]).max() < 1e-4
    unrotated = np.nan_to_num(BagSequence(traffic_bag, cloud_topic=CLOUDS, context_offsets=[])[0].gt_depth)
    assert ((unrotated > 0) != (got > 0)).mean() > 0.01   # R moves the returns


def test_cloud_topic_user_errors(traffic_bag, tmp_path):
    with pytest.raises(DataError, match=r"no cloud_topic /velodyne_points \(PointCloud2 topics: \['/lidar/points'\]"):
        BagSequence(traffic_bag, cloud_topic='/velodyne_points', context_offsets=[])
    with pytest.raises(DataError, match='cloud_topic /lidar/depth is sensor_msgs/msg/Image, expected '
                                        'sensor_msgs/msg/PointCloud2'):
        BagSequence(traffic_bag, cloud_topic='/lidar/depth', context_offsets=[])
    with pytest.raises(DataError, match='depth_topic .* or cloud_topic .* not both'):
        BagSequence(traffic_bag, cloud_topic=CLOUDS, depth_topic='/lidar/depth')
    with pytest.raises(ValueError, match='cloud_tolerance_s'):
        BagSequence(traffic_bag, cloud_topic=CLOUDS, cloud_tolerance_s=-1)
    with pytest.raises(DataError, match=r"unknown keys \['cloud_topics'\]"):
        load_sequences([{'type': 'bag', 'path': str(traffic_bag), 'cloud_topics': CLOUDS}])
    # no /tf_static in the bag: the frames are named at construction
    no_tf = _copy_bag(traffic_bag, tmp_path / 'no_tf', lambda topic, msg, k: None if topic == '/tf_static' else msg)
    with pytest.raises(DataError, match='no transform from LiDAR frame "velodyne" \\(/lidar/points\\) to camera '
                                        'frame "cam2_optical" .*frames known: none: the bag has no transforms'):
        BagSequence(no_tf, cloud_topic=CLOUDS, context_offsets=[])
    # a /tf_static that does not reach the scans' frame
    def rename(topic, msg, k):
        if topic == CLOUDS:
            msg.header.frame_id = 'lidar_top'
        return msg
    other = _copy_bag(traffic_bag, tmp_path / 'other_frame', rename)
    with pytest.raises(DataError, match='no transform from LiDAR frame "lidar_top" .* camera frame "cam2_optical" '
                                        '.*frames known: base_link, cam2_optical, velodyne'):
        BagSequence(other, cloud_topic=CLOUDS, context_offsets=[])
    # the depth image topic alone is still read as before
    seq = BagSequence(traffic_bag, depth_topic='/lidar/depth', context_offsets=[])
    assert count_depth_samples(seq) == len(FRAMES) and seq.cloud_pairing['exact'] == 0
