"""packnet_node with depth completion (``completion.method: ipbasic``) across two processes on
real kitti_traffic frames.

The node runs as its own process with the shipped model, ``output_resolution: camera`` (so
that ~/depth is scored pixel for pixel against the frame's ``proj_depth``) and the drive's
``T_cam_velo`` as ``completion.extrinsics`` (the venv has no tf2_msgs); this process
publishes the camera image, its CameraInfo and the frame's Velodyne scan subsampled to 16
beams as a PointCloud2 in the ``velodyne`` frame on ``/lidar/points``. Checked: completion
is far better than the monocular depth of the same image on the LiDAR pixels that were not
input; ``~/stats`` names the mode and the point count; without a cloud, with a stale one, a
malformed one or no transform the node publishes monocular depth and says why, and completes
again when a good cloud comes back. Image and cloud travel on two topics without an order
between them: a frame the node took before its cloud arrived is sent again with a new stamp
(waits are on messages, never on time).
"""
from __future__ import annotations

import contextlib
import copy
import time

import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from conftest import DATA
from packnet_ros.completion import Subsample, beam_rings
from packnet_ros.completion.sparse import project_to_depth, project_with_count
from packnet_ros.completion.stage import transform_points
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.msg import DepthStats
from packnet_ros.msgdata import depth_msg_to_meters, header_ns
from packnet_ros.pointcloud import cloud_msg_to_arrays
from packnet_ros.ros.conversions import lidar_to_cloud_msg, make_camera_info, make_header, rgb_to_image_msg
from packnet_ros.ros.harness import NodeProcess, RosHarness

pytestmark = pytest.mark.slow

TRAFFIC = DATA / 'kitti_traffic' / '2011_09_26' / '2011_09_26_traffic_sync'
NODE = '/packnet_node'
FRAME_ID = 'cam2_optical'
LIDAR_FRAME = 'velodyne'
TOPIC = '/lidar/points'
FRAME = 10  # a kitti_traffic frame (trucks and cars under the bridge)


@pytest.fixture(scope='module')
def drive() -> KittiDrive:
    if not TRAFFIC.is_dir():
        pytest.fail(f'real KITTI data missing at {TRAFFIC} (../shared/data must be beside the repo)')
    return KittiDrive(TRAFFIC)


def _matrix_text(T: np.ndarray) -> str:
    return ' '.join(repr(float(v)) for v in np.asarray(T).ravel())


@pytest.fixture(scope='module')
def scan(drive):
    """Frame FRAME's Velodyne scan, every 4th of the 64 beams (16 beams), float32 x, y, z, reflectance."""
    v = drive.velodyne(FRAME)
    return v[Subsample.parse('beams:16').mask(len(v), beam_rings(v[:, :3]))]


@pytest.fixture(scope='module')
def node(tmp_path_factory, drive):
    log = tmp_path_factory.mktemp('completion') / 'node.log'
    # the monocular reference must not have seen kitti_traffic: the default model was trained on it
    params = {'checkpoint': 'selfsup', 'output_resolution': 'camera', 'completion.method': 'ipbasic',
              'completion.extrinsics': _matrix_text(drive.T_cam_velo)}
    with NodeProcess(params, remap={'image': '/cam/image', 'camera_info': '/cam/info'}, log_path=log,
                     use_sim_time=False) as proc:
        proc.log = log
        yield proc


@pytest.fixture(scope='module')
def harness(node):
    with RosHarness('node_completion_test', node_process=node) as h:
        h.subscribe(DepthStats, f'{NODE}/stats')
        h.subscribe(Image, f'{NODE}/depth')
        h.subscribe(PointCloud2, f'{NODE}/points')
        h.pub_image = h.publisher(Image, '/cam/image')
        h.pub_info = h.publisher(CameraInfo, '/cam/info')
        h.pub_cloud = h.publisher(PointCloud2, TOPIC)  # sensor-data QoS, as a LiDAR driver
        h.clouds_sent = 0
        assert h.wait_for_subscribers([h.pub_image, h.pub_info, h.pub_cloud], f'{NODE}/stats', 180), \
            f'node did not come up; log:\n{node.log.read_text()}'
        yield h


_stamp = [1_317_043_079_000_000_000]


def _next_stamp() -> int:
    _stamp[0] += 1_000_000_000  # 1 s apart: a frame never matches an earlier frame's cloud (max 0.1 s)
    return _stamp[0]


def _send_image(h, drive, t: int, timeout: float = 180) -> tuple[DepthStats, Image]:
    """Publish frame FRAME's image and CameraInfo with stamp ``t``; wait for its stats and depth
    (of the node ``h.node_name``)."""
    node = getattr(h, 'node_name', NODE)
    rgb = drive.image(FRAME)
    header = make_header(t, FRAME_ID)
    info, image = make_camera_info(header, drive.K, rgb.shape[1], rgb.shape[0]), rgb_to_image_msg(rgb, header)
    answered = lambda: h.by_stamp(f'{node}/stats', t) and h.by_stamp(f'{node}/depth', t)  # noqa: E731
    # best-effort (sensor-data) messages: a fresh connection may lose the first one (the node's
    # reader can match after ours did), so the same frame is sent again until it is answered
    deadline = time.monotonic() + timeout
    while not answered() and time.monotonic() < deadline:
        h.pub_info.publish(info)
        h.pub_image.publish(image)
        h.spin_until(answered, min(5.0, max(0.1, deadline - time.monotonic())))
    assert answered(), f'no ~/stats or ~/depth for stamp {t}'
    stats, depth = h.by_stamp(f'{node}/stats', t)[0], h.by_stamp(f'{node}/depth', t)[0]
    assert depth.header.frame_id == FRAME_ID and header_ns(depth) == t == header_ns(stats)
    return stats, depth


def _send_with_cloud(h, drive, cloud: PointCloud2, want, attempts: int = 4) -> tuple[int, DepthStats, Image]:
    """Publish ``cloud`` and the image with one new stamp until the frame's stats satisfy ``want``
    (the node may take the image before the cloud has arrived: then it is sent again)."""
    seen = []
    for _ in range(attempts):
        t = _next_stamp()
        cloud.header = make_header(t, cloud.header.frame_id)
        h.pub_cloud.publish(cloud)
        h.clouds_sent += 1
        stats, depth = _send_image(h, drive, t)
        if want(stats):
            return t, stats, depth
        seen.append(stats.depth_mode)
    raise AssertionError(f'no frame as wanted in {attempts} attempts: {seen}')


def _abs_rel(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    m = mask & np.isfinite(pred)
    return float(np.mean(np.abs(pred[m] - gt[m]) / gt[m]))


def test_without_a_cloud_the_depth_is_monocular_and_the_stats_say_why(harness, drive):
    stats, depth = _send_image(harness, drive, _next_stamp())
    assert stats.depth_mode.startswith('monocular (fallback: ') and stats.sparse_points == 0
    if harness.clouds_sent == 0:
        assert stats.depth_mode == f'monocular (fallback: no PointCloud2 received on {TOPIC})'
    d = depth_msg_to_meters(depth)
    assert d.shape == drive.image_size and not np.isnan(d).any()


def test_completion_is_far_better_than_monocular_on_held_out_lidar_pixels(harness, drive, scan):
    h = harness
    t, stats, depth_msg = _send_with_cloud(h, drive, lidar_to_cloud_msg(scan, make_header(0, LIDAR_FRAME)),
                                           lambda s: s.depth_mode == DepthStats.DEPTH_MODE_COMPLETION)
    cam = transform_points(scan[:, :3], drive.T_cam_velo)
    shape = drive.image_size
    _, n_inside = project_with_count(cam, drive.K, shape)
    assert stats.sparse_points == n_inside > 3000
    completed = depth_msg_to_meters(depth_msg)
    assert completed.shape == shape and not np.isnan(completed).any()
    assert np.all(np.isfinite(completed) | (completed == np.inf))  # REP 117: +Inf beyond max_depth_m only
    # ~/points is the completed depth unprojected (organized, same header)
    assert h.spin_until(lambda: h.by_stamp(f'{NODE}/points', t), 60)
    [cloud] = h.by_stamp(f'{NODE}/points', t)
    xyz, _ = cloud_msg_to_arrays(cloud)
    finite = np.isfinite(completed)
    np.testing.assert_allclose(xyz[..., 2][finite], completed[finite], rtol=1e-6)
    assert cloud.header.frame_id == FRAME_ID

    # the LiDAR stops: the same image 1 s later has only a stale cloud -> monocular, still published
    stats_m, mono_msg = _send_image(h, drive, _next_stamp())
    assert stats_m.depth_mode.startswith('monocular (fallback: stale: the nearest sparse input is 1.000 s'), \
        stats_m.depth_mode
    assert stats_m.sparse_points == 0
    stats_m2, _ = _send_image(h, drive, _next_stamp())
    assert stats_m2.depth_mode.startswith('monocular (fallback: stale: ')
    mono = depth_msg_to_meters(mono_msg)

    gt = np.nan_to_num(drive.gt_depth(FRAME))
    held_out = (gt > 0) & (gt <= 80.0) & (project_to_depth(cam, drive.K, shape) == 0)
    assert held_out.sum() > 5000
    a_completion, a_mono = _abs_rel(completed, gt, held_out), _abs_rel(mono, gt, held_out)
    print(f'\nframe {FRAME}, 16 of 64 beams as input ({n_inside} points), {int(held_out.sum())} held-out '
          f'LiDAR pixels: abs_rel completion {a_completion:.3f}, monocular {a_mono:.3f}; '
          f'completion {stats.completion_ms:.1f} ms of {stats.latency_ms:.0f} ms latency (1242x375); '
          f'monocular frame {stats_m.latency_ms:.0f} ms')
    assert a_completion < 0.5 * a_mono and a_completion < 0.3
    assert stats.completion_ms > 0 and stats_m.completion_ms < stats.completion_ms


def test_a_malformed_cloud_falls_back_and_the_node_recovers(harness, drive, scan):
    h = harness
    bad = lidar_to_cloud_msg(scan, make_header(0, LIDAR_FRAME))
    bad.fields = copy.deepcopy(bad.fields)
    bad.fields[0].name = 'a'  # no x field
    _, stats, depth = _send_with_cloud(h, drive, bad, lambda s: 'without float32 x, y, z' in s.depth_mode)
    assert stats.depth_mode.startswith(f'monocular (fallback: unusable PointCloud2 on {TOPIC}: ')
    assert stats.sparse_points == 0 and depth.height == drive.image_size[0]
    nan_cloud = lidar_to_cloud_msg(np.full((50, 4), np.nan, np.float32), make_header(0, LIDAR_FRAME))
    _send_with_cloud(h, drive, nan_cloud, lambda s: 'no finite point' in s.depth_mode)
    assert h.node_process.alive()
    _, stats, _ = _send_with_cloud(h, drive, lidar_to_cloud_msg(scan, make_header(0, LIDAR_FRAME)),
                                   lambda s: s.depth_mode == 'completion')
    assert stats.sparse_points > 3000


def test_extrinsics_apply_at_runtime_and_without_them_there_is_no_transform(harness, drive, scan):
    h = harness
    client = h.node.create_client(SetParameters, f'{NODE}/set_parameters')
    assert client.wait_for_service(timeout_sec=30)

    def set_param(name: str, value: str | float):
        if isinstance(value, str):
            v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        else:
            v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=v)]))
        assert h.spin_until(future.done, 30)
        return future.result().results[0]

    r = set_param('completion.extrinsics', '1 2 3')
    assert not r.successful and 'completion.extrinsics' in r.reason and 'expected 6 numbers' in r.reason
    r = set_param('completion.method', 'none')
    assert not r.successful and 'read-only' in r.reason
    assert set_param('completion.extrinsics', '').successful
    cloud = lidar_to_cloud_msg(scan, make_header(0, LIDAR_FRAME))
    _, stats, _ = _send_with_cloud(h, drive, cloud, lambda s: 'no transform' in s.depth_mode)
    assert f'"{LIDAR_FRAME}"' in stats.depth_mode and 'completion.extrinsics' in stats.depth_mode
    # the calibration as x y z roll pitch yaw
    T = drive.T_cam_velo
    R = T[:3, :3]
    rpy = (np.arctan2(R[2, 1], R[2, 2]), np.arcsin(-R[2, 0]), np.arctan2(R[1, 0], R[0, 0]))
    assert set_param('completion.extrinsics', _matrix_text([*T[:3, 3], *rpy])).successful
    assert set_param('completion.max_staleness_s', 0.05).successful
    _, stats, _ = _send_with_cloud(h, drive, cloud, lambda s: s.depth_mode == 'completion')
    assert stats.sparse_points > 3000


# ----------------------------------------------------------------------------- message conversions
def test_cloud_and_depth_image_messages_to_sparse_input(drive, scan):
    from packnet_ros.ros.conversions import depth_to_image_msg, sparse_from_cloud_msg, sparse_from_depth_msg
    msg = lidar_to_cloud_msg(scan, make_header(5, LIDAR_FRAME))
    sparse = sparse_from_cloud_msg(msg, drive.T_cam_velo)
    assert sparse.stamp_ns == 5 and sparse.problem is None
    np.testing.assert_array_equal(sparse.points, transform_points(scan[:, :3], drive.T_cam_velo))
    short = copy.deepcopy(msg)
    short.data = bytes(msg.data)[:-16]  # one point short
    with pytest.raises(ValueError, match='malformed PointCloud2'):
        sparse_from_cloud_msg(short, drive.T_cam_velo)
    gt = drive.gt_depth(FRAME)  # NaN = no return
    sparse = sparse_from_depth_msg(depth_to_image_msg(gt, make_header(7, FRAME_ID)))
    assert sparse.stamp_ns == 7 and np.array_equal(np.isnan(sparse.depth), np.isnan(gt))
    bad = depth_to_image_msg(gt, make_header(7, FRAME_ID))
    bad.encoding = 'rgb8'
    with pytest.raises(ValueError):
        sparse_from_depth_msg(bad)


@contextlib.contextmanager
def _namespaced_node(tmp_path, params: dict, ns: str, sparse_type, sparse_topic: str):
    """A node of its own in namespace ``/ns`` with camera topics ``/cam_ns/image|info`` (the
    module's node may still be running) and a harness publishing images, camera_info and the
    sparse input (``sparse_type`` on ``sparse_topic``), subscribed to its stats and depth."""
    with NodeProcess(params, remap={'image': f'/cam_{ns}/image', 'camera_info': f'/cam_{ns}/info'},
                     namespace=f'/{ns}', log_path=tmp_path / 'node.log', use_sim_time=False) as proc, \
            RosHarness(f'node_completion_{ns}_test', node_process=proc) as h:
        h.node_name = f'/{ns}{NODE}'
        h.subscribe(DepthStats, f'{h.node_name}/stats')
        h.subscribe(Image, f'{h.node_name}/depth')
        h.pub_image = h.publisher(Image, f'/cam_{ns}/image')
        h.pub_info = h.publisher(CameraInfo, f'/cam_{ns}/info')
        h.pub_cloud = h.publisher(sparse_type, sparse_topic)
        h.clouds_sent = 0
        assert h.wait_for_subscribers([h.pub_image, h.pub_info, h.pub_cloud], f'{h.node_name}/stats', 180), \
            (tmp_path / 'node.log').read_text()
        yield h


# ----------------------------------------------------------------------------- a sparse depth image as input
def test_a_sparse_depth_image_is_completed_in_the_camera_frame_only(tmp_path, drive):
    """completion.kind depth_image: a 32FC1 image of LiDAR returns in the camera image (here
    every 4th row of the frame's proj_depth), at the network's resolution."""
    sparse = np.nan_to_num(drive.gt_depth(FRAME))
    sparse[np.arange(sparse.shape[0]) % 4 != 0] = 0.0
    params = {'checkpoint': 'default', 'completion.method': 'ipbasic:multiscale', 'completion.kind': 'depth_image',
              'completion.topic': 'lidar/depth'}  # relative: in the node's namespace
    # its own namespace and camera topics: the module's node may still be running
    with _namespaced_node(tmp_path, params, 'b', Image, '/b/lidar/depth') as h:
        from packnet_ros.ros.conversions import depth_to_image_msg
        _, stats, depth = _send_with_cloud(h, drive, depth_to_image_msg(sparse, make_header(0, FRAME_ID)),
                                           lambda s: s.depth_mode == 'completion')
        assert stats.sparse_points == int((sparse > 0).sum()) and depth.width == 640
        wrong = depth_to_image_msg(sparse, make_header(0, 'cam3_optical'))
        _, stats, _ = _send_with_cloud(h, drive, wrong, lambda s: 'cam3_optical' in s.depth_mode)
        assert stats.depth_mode == ('monocular (fallback: the sparse depth image on /b/lidar/depth is in frame '
                                    f'"cam3_optical", not the camera\'s "{FRAME_ID}")')


# ----------------------------------------------------------------------------- learned completion (sparse branch)
def test_learned_completion_feeds_the_sparse_branch_and_falls_back(tmp_path, drive, scan):
    """completion.method learned: the checkpoint's own sparse branch (a BTS-ResNet18 with
    ``sparse_branch``, fresh weights: the network's output is not judged here, only the
    plumbing) gets the cloud projected at the network input; without a cloud the same network
    runs monocular and ~/stats says why."""
    import torch

    from packnet_ros.checkpoint import ModelSpec, save_checkpoint
    spec = ModelSpec(depth_net='BTS-ResNet18', width=0.25, image_shape=(64, 224), pose_net=None,
                     options={'max_depth': 80.0, 'sparse_branch': True, 'sparse_guide': 'ipbasic'})
    torch.manual_seed(0)
    net = spec.build_depth_net()
    ckpt = save_checkpoint(tmp_path / 'learned.ckpt', net, spec)
    params = {'checkpoint': str(ckpt), 'completion.method': 'learned', 'device': 'cpu', 'completion.topic': 'lidar/points',
              'completion.extrinsics': _matrix_text(drive.T_cam_velo)}
    with _namespaced_node(tmp_path, params, 'c', PointCloud2, '/c/lidar/points') as h:
        stats_m, mono_msg = _send_image(h, drive, _next_stamp())
        assert stats_m.depth_mode.startswith('monocular (fallback: ') and stats_m.sparse_points == 0
        _, stats, depth_msg = _send_with_cloud(h, drive, lidar_to_cloud_msg(scan, make_header(0, LIDAR_FRAME)),
                                               lambda s: s.depth_mode == DepthStats.DEPTH_MODE_COMPLETION)
        cam = transform_points(scan[:, :3], drive.T_cam_velo)
        H, W = drive.image_size
        from packnet_ros.geometry import scale_intrinsics
        _, n_inside = project_with_count(cam, scale_intrinsics(drive.K, 224 / W, 64 / H), (64, 224))
        assert stats.sparse_points == n_inside > 1000 and stats.completion_ms > 0
        mono, completed = depth_msg_to_meters(mono_msg), depth_msg_to_meters(depth_msg)
        assert completed.shape == mono.shape == (64, 224) and not np.isnan(completed).any()
        assert not np.array_equal(completed, mono)  # the sparse branch changed the depth
