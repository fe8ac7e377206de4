"""packnet_node's navigation outputs (~/scan, ~/obstacles) across two processes on real KITTI frames.

The node runs as its own process with the untrained small network and the KITTI colour
camera's mounting (1.65 m above the road, looking forward) as extrinsics; this process
subscribes like Nav2 does (sensor-data QoS, best effort). conftest.py keeps discovery on
loopback in a per-run domain.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, LaserScan, PointCloud2

from packnet_ros.io.kitti import KittiDrive
from packnet_ros.msg import DepthStats
from packnet_ros.pointcloud import cloud_msg_to_arrays
from packnet_ros.ros.conversions import make_camera_info, make_header, rgb_to_image_msg
from packnet_ros.ros.harness import NodeProcess, RosHarness

pytestmark = pytest.mark.slow

NODE = '/packnet_node'
FRAME_ID = 'cam2_optical'
KITTI_CAMERA = {'obstacles.camera_x_m': 0.27, 'obstacles.camera_z_m': 1.65}  # cam2 over the road, level
PARAMS = {'checkpoint': 'untrained:PackNetSlim01:0.25', **KITTI_CAMERA}
EPS = 1e-4  # float32 points


@pytest.fixture(scope='module')
def drive(kitti_drive):
    return KittiDrive(kitti_drive)


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    log = tmp_path_factory.mktemp('nav') / 'node.log'
    with NodeProcess(PARAMS, remap={'image': '/cam/image', 'camera_info': '/cam/info'}, log_path=log,
                     use_sim_time=False) as proc:
        proc.log = log
        yield proc


@pytest.fixture(scope='module')
def harness(node):
    with RosHarness('node_nav_test', node_process=node) as h:
        h.subscribe(DepthStats, f'{NODE}/stats')
        h.subscribe(LaserScan, f'{NODE}/scan', qos_profile_sensor_data)  # as Nav2 (SensorDataQoS)
        h.subscribe(PointCloud2, f'{NODE}/obstacles', qos_profile_sensor_data)
        h.pub_image = h.publisher(Image, '/cam/image')
        h.pub_info = h.publisher(CameraInfo, '/cam/info')
        assert h.wait_for_subscribers([h.pub_image, h.pub_info], f'{NODE}/scan', 120), \
            f'node did not come up; log:\n{node.log.read_text()}'
        h.spin_until(lambda: False, 0.5)
        yield h


_next_stamp = [1_317_043_079_000_000_000]


def _send(h, drive, i: int, timeout: float = 60) -> int:
    """Publish KITTI frame ``i`` (image + CameraInfo, same stamp); wait for its scan and obstacles."""
    _next_stamp[0] += 100_000_000
    t = _next_stamp[0]
    rgb = drive.image(i)
    header = make_header(t, FRAME_ID)
    h.pub_info.publish(make_camera_info(header, drive.K, rgb.shape[1], rgb.shape[0]))
    h.pub_image.publish(rgb_to_image_msg(rgb, header))
    assert h.spin_until(lambda: h.by_stamp(f'{NODE}/stats', t), timeout), f'no output for stamp {t}'
    assert h.spin_until(lambda: h.by_stamp(f'{NODE}/scan', t) and h.by_stamp(f'{NODE}/obstacles', t), 10), \
        f'no ~/scan or ~/obstacles for stamp {t}'
    return t


def _check(h, drive, t: int, frame: str, min_h: float, max_h: float, max_range: float, scan_range: tuple[float, float]):
    [scan] = h.by_stamp(f'{NODE}/scan', t)
    [cloud] = h.by_stamp(f'{NODE}/obstacles', t)
    for msg in (scan, cloud):
        assert msg.header.frame_id == frame
        assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == t
    # scan: x-forward bearings across KITTI's ~81 deg horizontal field of view
    half_fov = math.atan(drive.K[0, 2] / drive.K[0, 0])  # input 1242 px, cx ~ 610: symmetric to 1 %
    assert scan.angle_min == pytest.approx(-half_fov, abs=0.02) and scan.angle_max == pytest.approx(half_fov, abs=0.02)
    n = len(scan.ranges)
    assert n == round((scan.angle_max - scan.angle_min) / scan.angle_increment) + 1  # angle_max = last beam
    assert (scan.range_min, scan.range_max) == pytest.approx(scan_range)
    r = np.asarray(scan.ranges)
    assert not np.isnan(r).any()
    finite = np.isfinite(r)
    assert np.all((r == np.inf) | (finite & (r >= scan.range_min - EPS) & (r <= scan.range_max + EPS))), r
    # obstacles: unorganized x, y, z float32, every point inside the height band and the range
    assert cloud.height == 1 and [f.name for f in cloud.fields] == ['x', 'y', 'z'] and cloud.point_step == 12
    xyz, _ = cloud_msg_to_arrays(cloud)
    assert xyz.shape == (cloud.width, 3) and np.isfinite(xyz).all()
    assert np.all((xyz[:, 2] >= min_h - EPS) & (xyz[:, 2] <= max_h + EPS)), xyz[:, 2].min()
    assert np.all(np.hypot(xyz[:, 0], xyz[:, 1]) <= max_range + EPS)
    return r, xyz


def test_scan_and_obstacles_arrive_with_the_image_stamp_in_the_target_frame(harness, drive):
    seen = 0
    for i in drive.frames[:2]:
        t = _send(harness, drive, i)
        r, xyz = _check(harness, drive, t, 'base_link', 0.2, 2.0, 8.0, (0.3, 8.0))
        seen += len(xyz) + int(np.isfinite(r).sum())
    assert seen > 0, 'neither output saw anything on two real frames'


def test_runtime_parameters_apply_to_the_next_frame(harness, drive):
    h = harness
    client = h.node.create_client(SetParameters, f'{NODE}/set_parameters')
    assert client.wait_for_service(timeout_sec=10)

    def param(name, value):
        if isinstance(value, str):
            return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))
        return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))

    req = SetParameters.Request(parameters=[
        param('obstacles.target_frame', 'base_footprint'), param('obstacles.max_range_m', 5.0),
        param('obstacles.max_height_m', 1.0), param('scan.range_max_m', 5.0),
        param('obstacles.min_height_m', 3.0),            # above max_height_m: rejected with a reason
        param('obstacles.extrinsics_source', 'tf')])     # read-only
    future = client.call_async(req)
    assert h.spin_until(future.done, 10)
    results = future.result().results
    assert all(r.successful for r in results[:4]), [r.reason for r in results]
    assert not results[4].successful and 'obstacles.min_height_m' in results[4].reason
    assert not results[5].successful and 'read-only' in results[5].reason
    t = _send(h, drive, drive.frames[2])
    _check(h, drive, t, 'base_footprint', 0.2, 1.0, 5.0, (0.3, 5.0))
