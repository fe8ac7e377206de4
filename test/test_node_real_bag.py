"""packnet_node on a real KITTI bag (issue 12): every output of every frame carries the input's stamp.

A few kitti_traffic frames (stop-and-go city traffic, a vehicle standing ~4.5 m ahead) are
written to a rosbag2 with :func:`packnet_ros.ros.bag.write_kitti_bag` and replayed on sim
time into a ``packnet_node`` process running the shipped default model (BTS-ResNet18,
640x192) with every output on and KITTI's camera mounting as the obstacle extrinsics.

What the replay guarantees: the next image goes out only after the node's ``~/stats`` for
the current one came back (resent once after a silence, 60 s per frame), so no frame is
dropped on a slow machine; ``~/stats`` is the node's last publication of a frame, and the
recording keeps spinning while the next frames are processed (plus a drain after the last).
``lazy: false`` makes what the node computes independent of when discovery matches the
replayer's output subscriptions.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA
from packnet_ros.checkpoint import DEFAULT_CHECKPOINT
from packnet_ros.io.bag import iter_messages
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.msgdata import header_ns
from packnet_ros.node_config import defaults
from packnet_ros.pointcloud import cloud_msg_to_arrays
from packnet_ros.ros.bag import KittiBagTopics, write_kitti_bag
from packnet_ros.ros.harness import NodeProcess
from packnet_ros.ros.replay import OUTPUT_TYPES, replay_into_node

pytestmark = pytest.mark.slow

TRAFFIC_DRIVE = DATA / 'kitti_traffic' / '2011_09_26' / '2011_09_26_traffic_sync'
FRAMES = [60, 61, 62, 63]  # the car ahead stands ~4.5 m in front (Velodyne), the ego car too
NODE = '/packnet_node'
OUTPUTS = ('depth', 'camera_info', 'points', 'stats', 'scan', 'obstacles')  # no ~/confidence: not a SID model
KITTI_CAMERA = {'obstacles.camera_x_m': 0.27, 'obstacles.camera_z_m': 1.65}  # cam2 over the road, level
PARAMS = {'checkpoint': 'default', 'lazy': False, 'publish_cloud': True, **KITTI_CAMERA}
VELODYNE_HEIGHT_M = 1.73  # KITTI's Velodyne above the road
AHEAD = dict(x=(2.0, 8.0), half_width=2.0, min_points=100)  # the lane ahead, in the target frame (m)


def _ahead(xyz: np.ndarray, x=AHEAD['x'], half_width=AHEAD['half_width']) -> np.ndarray:
    return (xyz[:, 0] > x[0]) & (xyz[:, 0] < x[1]) & (np.abs(xyz[:, 1]) < half_width)


@pytest.fixture(scope='module')
def traffic_drive() -> KittiDrive:
    if not TRAFFIC_DRIVE.is_dir():
        pytest.fail(f'real KITTI data missing at {TRAFFIC_DRIVE} (../shared/data must be beside the repo)')
    return KittiDrive(TRAFFIC_DRIVE)


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason='needs the shipped default checkpoint')
def test_node_publishes_every_output_with_the_input_stamp_on_the_kitti_traffic_bag(traffic_drive, tmp_path):
    topics = KittiBagTopics()
    summary = write_kitti_bag(traffic_drive, tmp_path / 'kitti', topics=topics, frames=FRAMES)
    assert summary.frames == FRAMES
    images = [m.msg for m in iter_messages(summary.path, [topics.image])]
    infos = [m.msg for m in iter_messages(summary.path, [topics.camera_info])]
    stamps = [header_ns(m) for m in images]
    assert len(stamps) == len(FRAMES) and len(set(stamps)) == len(stamps)
    assert stamps == [traffic_drive.timestamp_ns(i) for i in FRAMES]
    [camera_frame] = {m.header.frame_id for m in infos}  # the optical frame the bag's CameraInfo names
    target_frame = defaults()['obstacles.target_frame']
    assert camera_frame and target_frame == 'base_link'

    log = tmp_path / 'node.log'
    with NodeProcess(PARAMS, remap={'image': topics.image, 'camera_info': topics.camera_info},
                     log_path=log) as node:
        rep = replay_into_node(summary.path, tmp_path / 'out', topics.image, [topics.camera_info],
                               node_name=NODE, outputs=OUTPUTS, node_process=node)
    text = log.read_text()
    assert rep.frames_answered == rep.frames_sent == len(FRAMES), (rep.missing, text[-3000:])
    assert not rep.missing and not rep.read_issues and not rep.skipped_topics

    recorded = {short: [m.msg for m in iter_messages(rep.out_bag, [f'{NODE}/{short}'])] for short in OUTPUTS}
    assert set(OUTPUTS) <= set(OUTPUT_TYPES)
    for short, msgs in recorded.items():
        got = [header_ns(m) for m in msgs]
        # exactly one message per input image, each with that image's stamp (nothing restamped)
        assert sorted(got) == sorted(stamps), (short, got, stamps, text[-3000:])
        want_frame = target_frame if short in ('scan', 'obstacles') else camera_frame
        assert {m.header.frame_id for m in msgs} == {want_frame}, short

    # the outputs are the shipped model's, at its input size
    for s in recorded['stats']:
        assert (s.input_width, s.input_height) == (640, 192), s
        assert s.valid_ratio > 0.5 and 1.0 < s.depth_median_m < 80.0, s
    for d, info, cloud in zip(recorded['depth'], recorded['camera_info'], recorded['points']):
        assert (d.width, d.height, d.encoding) == (640, 192, '32FC1')
        assert (info.width, info.height) == (640, 192)
        assert (cloud.width, cloud.height) == (640, 192)

    # vehicles ahead: the LiDAR confirms a car in the lane within the obstacle range, and the
    # monocular obstacle cloud of every frame (target frame, height band 0.2-2 m) sees it
    velo = traffic_drive.velodyne(FRAMES[0])[:, :3].astype(np.float64)
    h = velo[:, 2] + VELODYNE_HEIGHT_M
    lidar_ahead = _ahead(velo) & (h > 0.2) & (h < 2.0)
    assert lidar_ahead.sum() > AHEAD['min_points'], 'premise: no vehicle ahead in the LiDAR scan'
    by_stamp = {header_ns(m): m for m in recorded['obstacles']}
    counts = []
    for t in stamps:
        xyz, _ = cloud_msg_to_arrays(by_stamp[t])
        assert xyz.ndim == 2 and np.isfinite(xyz).all()
        counts.append(int(_ahead(xyz).sum()))
    assert min(counts) > AHEAD['min_points'], (counts, float(np.median(velo[lidar_ahead, 0])))
    # and the scan's beam straight ahead hits it (finite, within the same stretch of road)
    for scan in recorded['scan']:
        ahead = int(round(-scan.angle_min / scan.angle_increment))
        assert AHEAD['x'][0] < scan.ranges[ahead] < AHEAD['x'][1], (header_ns(scan), scan.ranges[ahead])
