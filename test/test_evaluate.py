"""``packnet-ros evaluate``: LiDAR ground truth, the three prediction modes, reports,
``--compare`` and damaged recordings, on real KITTI frames (../shared/data/kitti_tiny).

Networks here are small untrained PackNetSlim01 (width 0.25, 96x320 input) saved as
project checkpoints, so offline and live runs use the very same weights.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sensor_msgs.msg import Image

from packnet_ros.apps.cli import main
from packnet_ros.checkpoint import ModelSpec, save_checkpoint
from packnet_ros.evaluation.lidar import (
    StaticTransforms,
    lidar_ground_truth,
    load_extrinsics,
    project_points,
    quaternion_to_rotation,
)
from packnet_ros.evaluation.metrics import garg_crop_mask
from packnet_ros.evaluation.runner import BagTopics
from packnet_ros.evaluation.sources import Issues
from packnet_ros.io.bag import BagWriter, TruncatedBagError, rotation_to_quaternion, salvage_mcap, write_tf_static
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.networks import build_depth_net
from packnet_ros.pointcloud import depth_to_xyz
from packnet_ros.ros.bag import write_kitti_bag, write_msg
from packnet_ros.ros.conversions import (
    cloud_to_msg,
    depth_to_image_msg,
    make_camera_info,
    make_header,
    rgb_to_image_msg,
)

CAM, LIDAR, BASE = 'cam2_optical', 'velodyne', 'base_link'
JSON_KEYS = {'abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3', 'scale_ratio', 'n_frames', 'n_pixels',
             'bins', 'median_scaled', 'settings', 'counts'}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def drive(kitti_drive):
    return KittiDrive(kitti_drive)


@pytest.fixture(scope='module')
def kitti_bag(drive, tmp_path_factory):
    """A real kitti_tiny bag (frames 0-3) as ``packnet-ros bag`` writes it."""
    out = tmp_path_factory.mktemp('eval') / 'kitti'
    write_kitti_bag(drive, out, frames=[0, 1, 2, 3])
    return out


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Two small untrained networks saved as project checkpoints (seeds 0 and 1)."""
    out = tmp_path_factory.mktemp('ckpt')
    paths = []
    for seed in (0, 1):
        spec = ModelSpec('PackNetSlim01', width=0.25, image_shape=(96, 320), pose_net=None)
        torch.manual_seed(seed)
        paths.append(save_checkpoint(out / f'slim_seed{seed}.ckpt',
                                     build_depth_net(spec.depth_net, spec.version, spec.width), spec))
    return paths


@pytest.fixture(scope='module')
def offline_run(kitti_bag, checkpoints, tmp_path_factory):
    """``evaluate --mode offline`` on the kitti bag with every report option."""
    out = tmp_path_factory.mktemp('offline')
    rc = main(['evaluate', '--bag', str(kitti_bag), '--checkpoint', str(checkpoints[0]), '--precision', 'fp32',
               '--json', str(out / 'm.json'), '--csv', str(out / 'f.csv'), '--plots', str(out / 'plots'),
               '--samples', str(out / 'samples'), '--samples-every', '2'])
    return rc, out


def _evaluate(capsys, *argv) -> tuple[int, str, str]:
    rc = main(['evaluate', *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _T(R=np.eye(3), t=(0, 0, 0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def _rot(axis: int, a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


# ----------------------------------------------------------------------------- transforms
def test_static_transforms_chain_invert_and_name_missing_frames():
    T_base_lidar = _T(_rot(2, 0.3), (1.0, 0.2, 1.5))
    T_base_cam = _T(_rot(0, -1.2) @ _rot(1, 0.1), (1.5, -0.1, 1.2))
    tree = StaticTransforms()
    tree.add(T_base_lidar, '/base_link', 'velodyne')  # a leading "/" is ignored, as tf2 does
    tree.add(T_base_cam, 'base_link', 'cam')
    expected = np.linalg.inv(T_base_cam) @ T_base_lidar
    np.testing.assert_allclose(tree.lookup('cam', 'velodyne'), expected, atol=1e-12)
    np.testing.assert_allclose(tree.lookup('velodyne', 'cam'), np.linalg.inv(expected), atol=1e-12)
    np.testing.assert_allclose(tree.lookup('base_link', 'cam'), T_base_cam, atol=1e-12)
    np.testing.assert_array_equal(tree.lookup('cam', 'cam'), np.eye(4))
    with pytest.raises(LookupError, match='"radar" and "cam".*base_link, cam, velodyne'):
        tree.lookup('cam', 'radar')


def test_quaternion_matches_the_bag_writer():
    R = _rot(2, 2.9) @ _rot(0, -1.4) @ _rot(1, 0.7)
    np.testing.assert_allclose(quaternion_to_rotation(*rotation_to_quaternion(R)), R, atol=1e-12)


def test_extrinsics_files(tmp_path):
    T = _T(_rot(1, 0.2), (0.1, -0.2, 0.3))
    (tmp_path / 'T.txt').write_text('\n'.join(' '.join(f'{v:.17g}' for v in row) for row in T[:3]))
    np.testing.assert_allclose(load_extrinsics(tmp_path / 'T.txt'), T)
    (tmp_path / 'T.yaml').write_text(f'T_camera_lidar: {T.tolist()}\n')
    np.testing.assert_allclose(load_extrinsics(tmp_path / 'T.yaml'), T)
    (tmp_path / 'bad.txt').write_text('1 2 3')
    with pytest.raises(ValueError, match='12 or 16'):
        load_extrinsics(tmp_path / 'bad.txt')


def test_projection_keeps_the_nearest_return_per_pixel():
    K = np.array([[100.0, 0, 2.0], [0, 100.0, 1.0], [0, 0, 1]])
    pts = np.array([
        [0.0, 0.0, 10.0],    # pixel (u=2, v=1)
        [0.0, 0.0, 5.0],     # same pixel, nearer: kept
        [0.0, 0.0, 20.0],    # same pixel, farther
        [0.049, 0.0, 10.0],  # u = 2.49 -> 2: pixel (2, 1) again, at 10 m
        [0.051, 0.0, 10.0],  # u = 2.51 -> 3
        [-0.25, 0.0, 10.0],  # u = -0.5 -> 0 (pixel centres at integers)
        [0.0, 0.0, -3.0],    # behind the camera
        [1.0, 0.0, 10.0],    # u = 12: outside
        [np.nan, 0.0, 1.0],  # invalid point
    ])
    d = project_points(pts, np.eye(4), K, (3, 5))
    expected = np.full((3, 5), np.nan, np.float32)
    expected[1, 2], expected[1, 3], expected[1, 0] = 5.0, 10.0, 10.0
    np.testing.assert_array_equal(d, expected)
    # the same with a LiDAR frame shifted 1 m back along the optical axis
    np.testing.assert_array_equal(project_points(pts - [0, 0, 1], _T(t=(0, 0, 1)), K, (3, 5)), expected)


# ----------------------------------------------------------------------------- LiDAR round trip
def _lidar_bag(drive, path, frames, with_tf=True, storage='mcap'):
    """Camera info + depth prediction (= the KITTI ground truth) + the ground truth as a
    Velodyne PointCloud2 (unorganised, with an intensity field; every third return has a
    second return 1.5x farther on the same ray) + /tf_static through base_link."""
    H, W = drive.image_size
    T_velo_cam = np.linalg.inv(drive.T_cam_velo)
    with BagWriter(path, storage) as bag:
        t0 = drive.timestamp_ns(frames[0])
        if with_tf:
            write_tf_static(bag, [(np.linalg.inv(drive.T_velo_imu), BASE, LIDAR),
                                  (np.linalg.inv(drive.T_cam_imu), BASE, CAM)], t0)
        for i in frames:
            t = drive.timestamp_ns(i)
            gt = drive.gt_depth(i)
            header = make_header(t, CAM)
            write_msg(bag, '/camera/camera_info', 'sensor_msgs/msg/CameraInfo', t,
                      make_camera_info(header, drive.K, W, H))
            write_msg(bag, '/pred/depth', 'sensor_msgs/msg/Image', t, depth_to_image_msg(gt, header))
            cam = depth_to_xyz(gt, drive.K).reshape(-1, 3)
            cam = cam[np.isfinite(cam[:, 2])].astype(np.float64)
            cam = np.concatenate([cam, 1.5 * cam[::3]])  # occluded second returns
            velo = cam @ T_velo_cam[:3, :3].T + T_velo_cam[:3, 3]
            cloud = np.zeros((1, len(velo)), np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                                                       ('intensity', '<f4')]))
            cloud['x'][0], cloud['y'][0], cloud['z'][0] = velo.T
            cloud['intensity'] = 0.5
            t_lidar = t + 3_000_000  # the scan is stamped 3 ms after the image
            write_msg(bag, '/velodyne_points', 'sensor_msgs/msg/PointCloud2', t_lidar,
                      cloud_to_msg(cloud, make_header(t_lidar, LIDAR)))
    return path


def test_lidar_round_trip_reproduces_kitti_ground_truth(drive, tmp_path):
    frames = [0, 5]
    bag = _lidar_bag(drive, tmp_path / 'lidar', frames)
    issues = Issues()
    out = lidar_ground_truth(bag, BagTopics(cloud_gt='/velodyne_points'), issues)
    assert not issues.counts
    assert [f.stamp_ns for f in out] == [drive.timestamp_ns(i) + 3_000_000 for i in frames]
    for f, i in zip(out, frames):
        gt = drive.gt_depth(i)
        assert f.frame_id == CAM and f.depth.shape == gt.shape
        # the same pixels, nothing else (occluded returns lost to the nearer ones) ...
        np.testing.assert_array_equal(np.isnan(f.depth), np.isnan(gt))
        # ... with the same depth up to the float32 storage of the cloud (about 1 ulp)
        valid = np.isfinite(gt)
        np.testing.assert_allclose(f.depth[valid], gt[valid], rtol=3e-7, atol=0)


def test_evaluate_with_lidar_cloud_ground_truth(drive, tmp_path, capsys):
    bag = _lidar_bag(drive, tmp_path / 'lidar', [0, 5])
    rc, out, _ = _evaluate(capsys, '--bag', bag, '--mode', 'recorded', '--depth-topic', '/pred/depth',
                           '--gt-cloud-topic', '/velodyne_points', '--json', tmp_path / 'm.json')
    assert rc == 0, out
    doc = json.loads((tmp_path / 'm.json').read_text())
    assert doc['n_frames'] == 2 and doc['counts'] == {'frames_scored': 2}
    assert doc['abs_rel'] < 1e-6 and doc['a1'] == 1.0 and doc['median_scaled']['abs_rel'] < 1e-6
    crop = garg_crop_mask(*drive.image_size)
    assert doc['n_pixels'] == sum(int((np.isfinite(drive.gt_depth(i)) & (drive.gt_depth(i) < 80) & crop).sum())
                                  for i in (0, 5))
    assert doc['settings']['topics']['ground_truth_kind'] == 'pointcloud2'

    # the same with the extrinsics given as a file instead of /tf_static
    np.savetxt(tmp_path / 'T_cam_velo.txt', drive.T_cam_velo)
    rc, out, _ = _evaluate(capsys, '--bag', bag, '--mode', 'recorded', '--depth-topic', '/pred/depth',
                           '--gt-cloud-topic', '/velodyne_points', '--tf-topic', '/none',
                           '--extrinsics', tmp_path / 'T_cam_velo.txt', '--json', tmp_path / 'e.json')
    assert rc == 0, out
    assert json.loads((tmp_path / 'e.json').read_text())['n_pixels'] == doc['n_pixels']


def test_missing_transform_is_counted_with_the_frames(drive, tmp_path, capsys):
    bag = _lidar_bag(drive, tmp_path / 'no_tf', [0], with_tf=False)
    issues = Issues()
    assert lidar_ground_truth(bag, BagTopics(cloud_gt='/velodyne_points'), issues) == []
    (reason, n), = issues.counts.items()
    assert n == 1 and '"velodyne"' in reason and '"cam2_optical"' in reason and '/tf_static' in reason
    rc, out, err = _evaluate(capsys, '--bag', bag, '--mode', 'recorded', '--depth-topic', '/pred/depth',
                             '--gt-cloud-topic', '/velodyne_points')
    assert rc == 1
    assert 'no chain from "velodyne" to camera frame "cam2_optical"' in out
    assert 'no ground truth within the stamp tolerance: 1' in out and 'nothing could be scored' in err


# ----------------------------------------------------------------------------- offline
def test_offline_mode_on_kitti_bag_writes_every_report(offline_run, kitti_bag, checkpoints, kitti_drive, capsys):
    rc, out = offline_run
    assert rc == 0
    doc = json.loads((out / 'm.json').read_text())
    assert JSON_KEYS <= set(doc) and JSON_KEYS - {'median_scaled', 'settings', 'counts'} <= set(doc['median_scaled'])
    assert doc['n_frames'] == 4 and doc['counts'] == {'frames_scored': 4}
    assert 0 < doc['abs_rel'] < 1 and 0 < doc['median_scaled']['abs_rel'] < doc['abs_rel'] + 1
    assert [b['min_m'] for b in doc['bins']] == [0, 10, 20, 30, 40, 50, 60, 70]
    assert sum(b['n_pixels'] for b in doc['bins']) == doc['n_pixels']
    s = doc['settings']
    assert (s['mode'], s['crop'], s['min_depth'], s['max_depth'], s['flip_pp']) == ('offline', 'garg', 0, 80, False)
    assert doc['source']['estimator'] == {'network': 'PackNetSlim01-1A-w0.25', 'device': 'cpu',
                                          'precision': 'fp32', 'input_shape': [96, 320]}
    rows = (out / 'f.csv').read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith('index,stamp_ns,metric_abs_rel')
    assert sorted(p.name for p in (out / 'plots').iterdir()) == ['abs_rel_per_frame.png', 'error_by_distance.png']
    assert sorted(p.name for p in (out / 'samples').iterdir()) == ['frame_0000.png', 'frame_0001.png']

    # the KITTI folder gives the same numbers for the same frames (bag conversion is lossless)
    rc, text, _ = _evaluate(capsys, '--kitti', kitti_drive, '--checkpoint', checkpoints[0], '--precision', 'fp32',
                            '--csv', out / 'kitti.csv')
    assert rc == 0 and 'frames scored: 7' in text
    kitti_rows = {r.split(',')[1]: r.split(',')[2:] for r in (out / 'kitti.csv').read_text().splitlines()[1:]}
    for r in rows[1:]:
        assert kitti_rows[r.split(',')[1]] == r.split(',')[2:]


def test_compare_two_checkpoints(kitti_bag, checkpoints, tmp_path, capsys):
    rc, out, _ = _evaluate(capsys, '--bag', kitti_bag, '--checkpoint', checkpoints[0], '--checkpoint', checkpoints[1],
                           '--precision', 'fp32', '--compare', '--json', tmp_path / 'c.json',
                           '--csv', tmp_path / 'c.csv')
    assert rc == 0
    table = out[out.index('comparison (same ground truth'):]
    for name in ('slim_seed0.ckpt', 'slim_seed1.ckpt'):
        assert f'{name} [metric]' in table and f'{name} [median]' in table
    doc = json.loads((tmp_path / 'c.json').read_text())
    a, b = doc['sources']['slim_seed0.ckpt'], doc['sources']['slim_seed1.ckpt']
    assert JSON_KEYS <= set(a) and a['n_frames'] == b['n_frames'] == 4 and a['abs_rel'] != b['abs_rel']
    assert f"{a['abs_rel']:.3f}" in table
    assert doc['settings']['mode'] == 'offline'
    assert (tmp_path / 'c.csv').read_text().splitlines()[1].startswith('slim_seed0.ckpt,')


# ----------------------------------------------------------------------------- recorded
def test_recorded_mode_hand_checkable_numbers(drive, tmp_path, capsys):
    """Predictions = 1.1 x the LiDAR depth, as 32FC1 metres and as 16UC1 millimetres (sqlite3 bag)."""
    H, W = drive.image_size
    frames = [0, 1, 2]
    bag = tmp_path / 'scaled'
    with BagWriter(bag, 'sqlite3') as w:
        for i in frames:
            t = drive.timestamp_ns(i)
            gt = drive.gt_depth(i)
            header = make_header(t, CAM)
            pred = 1.1 * np.nan_to_num(gt, nan=5.0)
            write_msg(w, '/lidar/depth', 'sensor_msgs/msg/Image', t, depth_to_image_msg(gt, header))
            write_msg(w, '/pred/m', 'sensor_msgs/msg/Image', t, depth_to_image_msg(pred.astype(np.float32), header))
            mm = np.minimum(np.round(pred * 1000), 65535).astype(np.uint16)  # 16UC1 holds up to 65.535 m
            write_msg(w, '/pred/mm', 'sensor_msgs/msg/Image', t,
                      Image(header=header, height=H, width=W, encoding='16UC1', step=2 * W, data=mm.tobytes()))
    rc, out, _ = _evaluate(capsys, '--bag', bag, '--mode', 'recorded', '--depth-topic', '/pred/m',
                           '--depth-topic', '/pred/mm', '--compare', '--json', tmp_path / 'r.json')
    assert rc == 0
    # by hand, over the Garg crop and 0 < gt < 80: p = 1.1 gt (the millimetre image saturates
    # at 65.535 m); metric mode clamps p to 80 m; median mode scales p by median(gt) / median(p)
    crop = garg_crop_mask(H, W)
    doc = json.loads((tmp_path / 'r.json').read_text())
    for topic, saturation, tol in (('/pred/m', np.inf, 1e-6), ('/pred/mm', 65.535, 1e-4)):
        abs_rel, rmse, ratio, med_abs_rel = [], [], [], []
        for i in frames:
            g = drive.gt_depth(i).astype(np.float64)
            g = g[np.isfinite(g) & (g < 80) & crop]
            p = np.minimum(1.1 * g, saturation)
            abs_rel.append(np.mean(np.abs(g - np.minimum(p, 80)) / g))
            rmse.append(np.sqrt(np.mean((g - np.minimum(p, 80)) ** 2)))
            ratio.append(np.median(g) / np.median(p))
            med_abs_rel.append(np.mean(np.abs(g - np.minimum(p * ratio[-1], 80)) / g))
        assert 0.099 < np.mean(abs_rel) <= 0.1  # 0.1 but for the few clamped pixels
        r = doc['sources'][topic]
        assert r['n_frames'] == 3 and r['counts'] == {'frames_scored': 3}
        assert r['abs_rel'] == pytest.approx(np.mean(abs_rel), abs=tol)
        assert r['rmse'] == pytest.approx(np.mean(rmse), rel=10 * tol)
        assert r['scale_ratio'] == pytest.approx(np.median(ratio), abs=tol) == pytest.approx(1 / 1.1, abs=tol)
        assert r['median_scaled']['abs_rel'] == pytest.approx(np.mean(med_abs_rel), abs=tol)
        assert r['source'] == {'depth_topic': topic}
    assert doc['sources']['/pred/m']['median_scaled']['abs_rel'] < 1e-6  # exactly right up to scale
    assert doc['sources']['/pred/m']['median_scaled']['a1'] == 1.0
    assert '/pred/m [metric]' in out and '/pred/mm [median]' in out


# ----------------------------------------------------------------------------- damaged recordings
def _malformed_bag(drive, path):
    """Frames 0-5: stamps of 0 and 1 swapped in recording order, frame 3's image in an
    unknown encoding, frame 4 without camera_info, frame 5 without ground truth; a
    prediction topic with frame 1 in a colour encoding and one shifted by 1 s."""
    H, W = drive.image_size
    with BagWriter(path, 'mcap') as bag:
        for n, i in enumerate([1, 0, 2, 3, 4, 5]):
            t = drive.timestamp_ns(i)
            log_t = drive.timestamp_ns(0) + n * 100_000_000
            header = make_header(t, CAM)
            rgb = drive.image(i)
            if i == 3:
                img = Image(header=header, height=H, width=W, encoding='yuv_weird', step=3 * W, data=rgb.tobytes())
            else:
                img = rgb_to_image_msg(rgb, header)
            write_msg(bag, '/camera/image_raw', 'sensor_msgs/msg/Image', log_t, img)
            if i != 4:
                write_msg(bag, '/camera/camera_info', 'sensor_msgs/msg/CameraInfo', log_t,
                          make_camera_info(header, drive.K, W, H))
            gt = drive.gt_depth(i)
            if i != 5:
                write_msg(bag, '/lidar/depth', 'sensor_msgs/msg/Image', log_t, depth_to_image_msg(gt, header))
            if i < 3:
                pred = np.full((192, 640), 10.0, np.float32)
                msg = depth_to_image_msg(pred, header)
                if i == 1:
                    msg.encoding = 'bgr8'
                write_msg(bag, '/pred/depth', 'sensor_msgs/msg/Image', log_t, msg)
                write_msg(bag, '/pred/late', 'sensor_msgs/msg/Image', log_t,
                          depth_to_image_msg(pred, make_header(t + 1_000_000_000, CAM)))
    return path


def test_malformed_frames_are_counted_never_dropped(drive, checkpoints, tmp_path, capsys):
    bag = _malformed_bag(drive, tmp_path / 'bad')
    rc, out, _ = _evaluate(capsys, '--bag', bag, '--checkpoint', checkpoints[0], '--json', tmp_path / 'o.json')
    assert rc == 0
    counts = json.loads((tmp_path / 'o.json').read_text())['counts']
    assert counts == {
        'out-of-order header stamps on /camera/image_raw (sorted by stamp)': 1,
        'out-of-order header stamps on /lidar/depth (sorted by stamp)': 1,
        "unusable image (unsupported encoding 'yuv_weird')": 1,
        'image without camera_info': 1,
        'no ground truth within the stamp tolerance': 1,  # frame 5
        'frames_scored': 3,  # frames 0, 1, 2
    }
    assert 'skipped/issue: image without camera_info: 1' in out

    rc, out, _ = _evaluate(capsys, '--bag', bag, '--mode', 'recorded', '--json', tmp_path / 'r.json',
                           '--depth-topic', '/pred/depth')
    assert rc == 0
    counts = json.loads((tmp_path / 'r.json').read_text())['counts']
    assert counts['unusable depth image on /pred/depth'] == 1 and counts['frames_scored'] == 2

    # predictions 1 s off every ground truth: nothing scored, exit code 1, the reason printed
    rc, out, err = _evaluate(capsys, '--bag', bag, '--mode', 'recorded', '--depth-topic', '/pred/late')
    assert rc == 1 and 'no ground truth within the stamp tolerance: 3' in out and 'nothing could be scored' in err


def test_truncated_mcap_is_read_up_to_the_damage(kitti_bag, checkpoints, tmp_path, capsys):
    bag = tmp_path / 'cut'
    shutil.copytree(kitti_bag, bag)
    mcap, = bag.glob('*.mcap')
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    rc, out, _ = _evaluate(capsys, '--bag', bag, '--checkpoint', checkpoints[0], '--json', tmp_path / 't.json')
    assert rc == 0
    doc = json.loads((tmp_path / 't.json').read_text())
    assert 1 <= doc['n_frames'] < 4
    assert doc['counts']['bag read error (truncated or corrupt bag; later messages lost)'] >= 1
    assert 'skipped/issue: bag read error' in out


def test_salvage_reads_zstd_chunks_of_a_cut_file(tmp_path):
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    from packnet_ros.io.bag import typestore
    ts = typestore()
    String = ts.types['std_msgs/msg/String']
    path = tmp_path / 'z'
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    w.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with w:
        conn = w.add_connection('/s', 'std_msgs/msg/String', typestore=ts)
        rng = np.random.default_rng(0)
        for k in range(4000):  # ~3.4 MB of records in 1 MiB chunks, ~1.8 MB compressed
            w.write(conn, k, ts.serialize_cdr(String(data=f'message {k} ' + rng.bytes(400).hex()),
                                              'std_msgs/msg/String'))
    mcap, = path.glob('*.mcap')
    full = [m.msg.data for m in salvage_mcap(path, ['/s'])]  # an intact file reads completely
    assert len(full) == 4000 and full[7].startswith('message 7 ')
    data = mcap.read_bytes()
    for cut, lo, hi in ((len(data) - 1000, 4000, 4000),  # summary and footer lost: every message
                        (len(data) // 2, 1, 3999)):      # inside a chunk: the chunks before it
        mcap.write_bytes(data[:cut])
        got = []
        with pytest.raises(TruncatedBagError) as info:
            for m in salvage_mcap(path, ['/s']):
                got.append(m.msg.data)
        assert lo <= len(got) == info.value.messages <= hi and got == full[:len(got)]


def test_user_errors_exit_2_and_name_the_topics(kitti_bag, tmp_path, capsys):
    rc, _, err = _evaluate(capsys, '--bag', tmp_path / 'nothing')
    assert rc == 2 and 'no bag at' in err
    rc, _, err = _evaluate(capsys, '--bag', kitti_bag, '--image-topic', '/cam/left', '--checkpoint', 'untrained')
    assert rc == 2 and '/cam/left (camera images)' in err and '/camera/image_raw  [sensor_msgs/msg/Image]' in err
    rc, _, err = _evaluate(capsys, '--bag', kitti_bag, '--checkpoint', tmp_path / 'missing.ckpt')
    assert rc == 2 and 'missing.ckpt: no such file' in err
    rc, _, err = _evaluate(capsys, '--bag', kitti_bag, '--mode', 'recorded', '--flip-pp')
    assert rc == 2 and '--flip-pp' in err
    rc, _, err = _evaluate(capsys, '--bag', kitti_bag, '--mode', 'recorded')
    assert rc == 2 and '/packnet_node/depth (predicted depth)' in err


def test_corrupt_bag_and_checkpoint_are_one_line_errors(kitti_bag, tmp_path, capsys):
    """Random bytes named *.mcap (or in a bag folder) are "corrupt or not an MCAP/rosbag2
    recording", not "has no topic"; a checkpoint whose config is not a mapping or whose weights
    are NaN is named; exit 2, one line, no traceback."""
    rng = np.random.default_rng(0)
    junk = tmp_path / 'junk.mcap'
    junk.write_bytes(rng.bytes(4096))
    folder = tmp_path / 'junk_bag'
    folder.mkdir()
    (folder / 'junk_bag_0.mcap').write_bytes(rng.bytes(4096))
    for bag, what in ((junk, 'it'), (folder, 'junk_bag_0.mcap')):
        rc, _, err = _evaluate(capsys, '--bag', bag, '--checkpoint', 'untrained')
        assert rc == 2 and 'Traceback' not in err and 'has no topic' not in err, err
        assert err.strip() == (f'packnet-ros evaluate: error: {bag} is corrupt or not an MCAP/rosbag2 recording: '
                               f'{what} does not start with the MCAP magic bytes (empty, random bytes or another '
                               f'format)')
    bad = tmp_path / 'bad.ckpt'
    torch.save({'state_dict': {}, 'config': [1]}, bad)
    rc, _, err = _evaluate(capsys, '--bag', kitti_bag, '--checkpoint', bad)
    assert rc == 2 and 'Traceback' not in err, err
    assert err.strip() == f'packnet-ros evaluate: error: {bad}: config is list [1], expected a mapping ' \
                          f'(model.depth_net.name, ...)'
    spec = ModelSpec('PackNetSlim01', width=0.25, image_shape=(96, 320), pose_net=None)
    nan = save_checkpoint(tmp_path / 'nan.ckpt', build_depth_net(spec.depth_net, spec.version, spec.width), spec)
    raw = torch.load(nan, weights_only=True)
    raw['state_dict']['model.depth_net.pre_calc.conv_base.bias'][0] = float('nan')
    torch.save(raw, nan)
    rc, _, err = _evaluate(capsys, '--bag', kitti_bag, '--checkpoint', nan)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert err.startswith(f'packnet-ros evaluate: error: {nan}: weight model.depth_net.pre_calc.conv_base.bias has '
                          f'1 of ') and 'non-finite' in err


# ----------------------------------------------------------------------------- live
@pytest.mark.slow
def test_live_mode_agrees_with_offline(offline_run, kitti_bag, checkpoints, tmp_path, capsys):
    rc, out, _ = _evaluate(capsys, '--bag', kitti_bag, '--mode', 'live', '--checkpoint', checkpoints[0],
                           '--precision', 'fp32', '--json', tmp_path / 'live.json', '--record-dir', tmp_path / 'rec',
                           '--frame-timeout', 60)
    assert rc == 0, out
    live = json.loads((tmp_path / 'live.json').read_text())
    offline = json.loads((offline_run[1] / 'm.json').read_text())
    assert live['n_frames'] == offline['n_frames'] == 4 and live['counts'] == {'frames_scored': 4}
    assert live['n_pixels'] == offline['n_pixels']
    assert abs(live['abs_rel'] - offline['abs_rel']) <= 0.01 * offline['abs_rel']
    assert abs(live['median_scaled']['abs_rel'] - offline['median_scaled']['abs_rel']) <= \
        0.01 * offline['median_scaled']['abs_rel']
    node = live['source']['node']
    assert {k: node[k] for k in ('network', 'device', 'precision')} == \
        {'network': 'PackNetSlim01-1A-w0.25', 'device': 'cpu', 'precision': 'fp32'}
    assert node['frames'] == 4 and node['scale_source'] == 'model' and node['inference_ms_median'] > 0
    assert live['source']['frames'] == {'sent': 4, 'answered': 4, 'resent': 0}
    assert (tmp_path / 'rec' / 'node.log').is_file()

    # the node's recorded output scores the same in recorded mode
    rc, out, _ = _evaluate(capsys, '--bag', kitti_bag, '--mode', 'recorded', '--pred-bag',
                           tmp_path / 'rec' / 'bags' / 'packnet_output', '--json', tmp_path / 'rec.json')
    assert rc == 0
    assert json.loads((tmp_path / 'rec.json').read_text())['abs_rel'] == live['abs_rel']
