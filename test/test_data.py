"""Training data: KittiSequence / BagSequence / VideoSequence / load_sequences / SfmDataset.

On real data (../shared/data): KITTI raw drive 0023 frames 0-6 (OXTS speed, LiDAR) and the
Udacity 1280x720 dash-cam clip segment_a.mp4 with its chessboard calibration.
"""
from __future__ import annotations

import math
import shutil

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from conftest import DATA, KITTI_DRIVE, ROOT
from packnet_ros.data import SfmDataset, apply_color_jitter, flip_intrinsics, load_sequences, sample_color_jitter
from packnet_ros.data.dataset import ColorJitter
from packnet_ros.geometry import scale_intrinsics, unproject
from packnet_ros.imageproc import resize_rgb
from packnet_ros.io.bag_sequence import BagSequence
from packnet_ros.io.camera_yaml import load_camera_yaml
from packnet_ros.io.kitti import KittiDrive, KittiFormatError
from packnet_ros.io.kitti_sequence import KittiSequence
from packnet_ros.io.sequence import DataError, Sample, expected_translation, select_context
from packnet_ros.io.video import VideoSequence

VIDEO = DATA / 'udacity_highway' / 'segment_a.mp4'
CAMERA_YAML = ROOT / 'config' / 'udacity_highway_camera.yaml'
K_UDACITY = np.array([[1156.4576, 0, 671.3197], [0, 1151.2673, 389.2167], [0, 0, 1]])
D_UDACITY = np.array([-0.2467, -0.0254, -0.0007, 0.0001, 0.0107])
DRIVE_ID = KITTI_DRIVE.name


@pytest.fixture(scope='module')
def drive(kitti_drive) -> KittiDrive:
    return KittiDrive(kitti_drive)


@pytest.fixture(scope='module')
def kseq(drive) -> KittiSequence:
    return KittiSequence(drive, targets=[1, 2, 3, 4, 5])


@pytest.fixture(scope='module')
def kitti_bag(drive, tmp_path_factory):
    from packnet_ros.ros.bag import write_kitti_bag
    out = tmp_path_factory.mktemp('bags') / 'b'
    write_kitti_bag(drive, out)
    return out


@pytest.fixture(scope='module')
def vseq() -> VideoSequence:
    return VideoSequence(VIDEO, CAMERA_YAML, start=0, stop=4)


def _raw_video_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VIDEO))
    out = []
    for _ in range(n):
        ok, bgr = cap.read()
        assert ok
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


# ---------------------------------------------------------------------------------------- helpers
def test_select_context_by_time_never_substitutes_a_dropped_frame():
    p = 100_000_000
    stamps = [0, p, 2 * p, 4 * p, 5 * p + 3_000_000]       # frame at 3p dropped, jitter on the last
    assert select_context(stamps, 1, -0.1, 0.05) == 0
    assert select_context(stamps, 1, 0.1, 0.05) == 2
    assert select_context(stamps, 2, 0.1, 0.05) is None      # 4p is not "the next frame" of 2p
    assert select_context(stamps, 3, 0.1, 0.05) == 4         # 3 ms late is within tolerance
    assert select_context(stamps, 0, -0.1, 0.05) is None
    assert select_context(stamps, 2, 0.0, 0.05) is None      # never the target itself


def test_expected_translation_trapezoid():
    assert expected_translation(None, [1.0, 1.0], [-0.1, 0.1]) is None
    d = expected_translation(10.0, [8.0, None], [-0.1, 0.2])
    assert d == pytest.approx([0.9, 2.0])                    # (10+8)/2*0.1 ; 10*0.2 (context unknown)


# ---------------------------------------------------------------------------------------- KITTI
def test_kitti_sequence_targets_1_to_5(kseq, drive):
    assert len(kseq) == 5 and kseq.skipped == []
    assert [kseq.frame_of(i) for i in range(5)] == [1, 2, 3, 4, 5]
    for i, f in enumerate(range(1, 6)):
        s = kseq[i]
        assert isinstance(s, Sample)
        assert s.source == f'kitti:{DRIVE_ID}:{f}'
        assert kseq.context_frames_of(i) == [f - 1, f + 1]
        assert np.array_equal(s.target, drive.image(f))
        assert np.array_equal(s.contexts[0], drive.image(f - 1))
        assert np.array_equal(s.contexts[1], drive.image(f + 1))
        assert s.target.shape == (375, 1242, 3) and s.target.dtype == np.uint8
        np.testing.assert_array_equal(s.K, drive.K)
        assert s.stamp_ns == drive.timestamp_ns(f)
        assert s.context_dt[0] == pytest.approx(-0.1, abs=0.005) and s.context_dt[1] == pytest.approx(0.1, abs=0.005)
        assert s.context_dt[0] == pytest.approx((drive.timestamp_ns(f - 1) - drive.timestamp_ns(f)) / 1e9, abs=1e-9)
        assert 8.6 <= s.speed <= 9.0 and s.speed == pytest.approx(drive.speed(f))
        for d, dt in zip(s.expected_translation, s.context_dt):
            assert d == pytest.approx(s.speed * abs(dt), rel=0.02)
        # trapezoid of the OXTS speeds of target and context frame
        assert s.expected_translation[1] == pytest.approx(
            0.5 * (drive.speed(f) + drive.speed(f + 1)) * s.context_dt[1], rel=1e-12)
        assert s.gt_depth.shape == (375, 1242)
        np.testing.assert_array_equal(s.gt_depth, drive.gt_depth(f))


def test_kitti_targets_without_neighbours_are_reported(drive):
    seq = KittiSequence(drive, targets=[0, 3, 6, 99])
    assert len(seq) == 1 and seq.frame_of(0) == 3
    reasons = dict(seq.skipped)
    assert set(reasons) == {f'kitti:{DRIVE_ID}:0', f'kitti:{DRIVE_ID}:6', f'kitti:{DRIVE_ID}:99'}
    assert 'offset -1' in reasons[f'kitti:{DRIVE_ID}:0']
    assert 'offset +1' in reasons[f'kitti:{DRIVE_ID}:6']
    assert 'no image for frame 99' in reasons[f'kitti:{DRIVE_ID}:99']
    text = seq.describe()
    assert '1 targets' in text and '3 skipped' in text and 'kitti:' in text
    # default targets: every frame, the two ends reported
    full = KittiSequence(drive)
    assert len(full) == 5 and [src for src, _ in full.skipped] == [f'kitti:{DRIVE_ID}:0', f'kitti:{DRIVE_ID}:6']


def test_kitti_context_dt_seconds(drive):
    seq = KittiSequence(drive, targets=[3], context_dt_s=(-0.2, 0.1, 0.3))
    assert len(seq) == 1 and seq.context_frames_of(0) == [1, 4, 6]
    s = seq[0]
    assert s.context_dt == pytest.approx([-0.2074, 0.1038, 0.3112], abs=2e-3)
    assert len(s.contexts) == 3 and len(s.expected_translation) == 3
    assert s.expected_translation[2] == pytest.approx(s.speed * 0.311, rel=0.02)
    with pytest.raises(ValueError):
        KittiSequence(drive, context_offsets=(0, 1))


def test_kitti_without_oxts(drive, tmp_path):
    date = tmp_path / '2011_09_26'
    d = date / DRIVE_ID
    d.mkdir(parents=True)
    for f in ('calib_cam_to_cam.txt', 'calib_velo_to_cam.txt', 'calib_imu_to_velo.txt'):
        shutil.copy(KITTI_DRIVE.parent / f, date / f)
    (d / 'image_02').symlink_to(KITTI_DRIVE / 'image_02')
    with pytest.raises(KittiFormatError, match='oxts'):
        KittiSequence(d)
    seq = KittiSequence(d, with_speed=False)
    s = seq[0]
    assert len(seq) == 5 and s.speed is None and s.expected_translation is None and s.gt_depth is None
    assert any('with_speed=False' in w for w in seq.warnings)


# ---------------------------------------------------------------------------------------- bags
def test_bag_sequence_matches_kitti(kitti_bag, kseq, drive):
    seq = BagSequence(kitti_bag, depth_topic='/lidar/depth')
    assert seq.k_pairing['exact'] == 7 and seq.k_pairing['latest'] == 0
    assert len(seq) == 5 and len(seq.skipped) == 2            # frames 0 and 6 have no neighbour
    assert not seq.warnings
    for i in range(5):
        b, k = seq[i], kseq[i]
        assert b.source == f'bag:{kitti_bag}:{drive.timestamp_ns(i + 1)}' and b.stamp_ns == k.stamp_ns
        assert np.array_equal(b.target, k.target)
        assert all(np.array_equal(x, y) for x, y in zip(b.contexts, k.contexts))
        np.testing.assert_allclose(b.K, k.K, rtol=1e-12)
        assert b.context_dt == pytest.approx(k.context_dt, abs=1e-9)
        # odometry (OXTS stamps, a few ms off the images) interpolated to the image stamp
        assert b.speed == pytest.approx(k.speed, abs=0.01)
        assert b.expected_translation == pytest.approx(k.expected_translation, rel=2e-3)
        np.testing.assert_array_equal(b.gt_depth, k.gt_depth)
    assert 'K pairing: exact 7' in seq.describe()


def _image_msg(ts, rgb: np.ndarray, encoding: str, stamp_ns: int):
    t = ts.types
    if encoding == 'rgb8':
        data, ch = rgb, 3
    elif encoding == 'bgr8':
        data, ch = rgb[..., ::-1], 3
    elif encoding == 'rgba8':
        data, ch = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), 4
    elif encoding == 'bgra8':
        data, ch = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]), 4
    elif encoding == 'mono8':
        data, ch = rgb[..., 1], 1
    else:  # yuv422: 2 bytes per pixel, not decodable here
        data, ch = rgb[..., :2], 2
    h, w = rgb.shape[:2]
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    header = t['std_msgs/msg/Header'](stamp=t['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec),
                                      frame_id='cam')
    msg = t['sensor_msgs/msg/Image'](header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                                     step=w * ch, data=np.ascontiguousarray(data, dtype=np.uint8).reshape(-1))
    return ts.serialize_cdr(msg, 'sensor_msgs/msg/Image')


def _camera_info_msg(ts, K: np.ndarray, w: int, h: int, stamp_ns: int):
    t = ts.types
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    header = t['std_msgs/msg/Header'](stamp=t['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec),
                                      frame_id='cam')
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg = t['sensor_msgs/msg/CameraInfo'](
        header=header, height=h, width=w, distortion_model='plumb_bob', d=np.zeros(5),
        k=K.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0,
        roi=t['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    return ts.serialize_cdr(msg, 'sensor_msgs/msg/CameraInfo')


def _crops(drive, n):
    """Real 64x96 patches of frames 0..n-1 (crop at row 150, col 500) and their K."""
    K = drive.K.copy()
    K[0, 2] -= 500
    K[1, 2] -= 150
    return [np.ascontiguousarray(drive.image(i)[150:214, 500:596]) for i in range(n)], K


def test_bag_without_camera_info_is_an_error(drive, tmp_path):
    from packnet_ros.io.bag import BagWriter
    imgs, _ = _crops(drive, 3)
    with BagWriter(tmp_path / 'nocam') as bag:
        for i, im in enumerate(imgs):
            t = drive.timestamp_ns(i)
            bag.write('/camera/image_raw', 'sensor_msgs/msg/Image', t, _image_msg(bag.ts, im, 'rgb8', t))
    with pytest.raises(DataError, match=r'no CameraInfo on /camera/camera_info: K is needed for view synthesis') \
            as e:
        BagSequence(tmp_path / 'nocam')
    assert 'record camera_info' in str(e.value) and 'intrinsics=' in str(e.value)
    with pytest.raises(DataError, match='no image topic /cam/img'):
        BagSequence(tmp_path / 'nocam', image_topic='/cam/img')


def test_bag_encodings_and_unsupported_frame_reported(drive, tmp_path):
    from packnet_ros.io.bag import BagWriter
    imgs, K = _crops(drive, 6)
    encodings = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'yuv422']
    stamps = [drive.timestamp_ns(i) for i in range(6)]
    with BagWriter(tmp_path / 'enc') as bag:
        # one CameraInfo only, 1 ms before the first image: stamps never match
        bag.write('/camera/camera_info', 'sensor_msgs/msg/CameraInfo', stamps[0] - 10 ** 6,
                  _camera_info_msg(bag.ts, K, 96, 64, stamps[0] - 10 ** 6))
        for im, enc, t in zip(imgs, encodings, stamps):
            bag.write('/camera/image_raw', 'sensor_msgs/msg/Image', t, _image_msg(bag.ts, im, enc, t))
    seq = BagSequence(tmp_path / 'enc')
    assert seq.k_pairing == {'exact': 0, 'latest': 5, 'first': 0, 'yaml': 0}
    assert seq.n_frames == 5 and len(seq) == 3               # targets 1, 2, 3
    reasons = dict(seq.skipped)
    assert "unsupported image encoding 'yuv422'" in reasons[f'bag:{tmp_path / "enc"}:{stamps[5]}']
    assert 'offset +1' in reasons[f'bag:{tmp_path / "enc"}:{stamps[4]}']    # its next frame was the bad one
    assert 'offset -1' in reasons[f'bag:{tmp_path / "enc"}:{stamps[0]}']
    assert any('no odometry on /odom' in w for w in seq.warnings)
    assert any('latest' in w for w in seq.warnings)
    for i in range(3):
        s = seq[i]
        assert np.array_equal(s.target, imgs[i + 1])             # bgr8, rgba8, bgra8 -> same RGB
        np.testing.assert_allclose(s.K, K)
        assert s.speed is None and s.expected_translation is None
    grey = seq[2].contexts[1]                                    # frame 4, mono8
    assert np.array_equal(grey, np.repeat(imgs[4][..., 1:2], 3, axis=2))


# ---------------------------------------------------------------------------------------- video
def test_camera_yaml_both_formats(tmp_path):
    cam = load_camera_yaml(CAMERA_YAML)
    np.testing.assert_allclose(cam.K, K_UDACITY)
    np.testing.assert_allclose(cam.D, D_UDACITY)
    assert (cam.width, cam.height, cam.model) == (1280, 720, 'plumb_bob')
    ros = tmp_path / 'ros.yaml'
    ros.write_text('image_width: 1280\nimage_height: 720\ncamera_name: dash\n'
                   f'camera_matrix: {{rows: 3, cols: 3, data: {K_UDACITY.reshape(-1).tolist()}}}\n'
                   'distortion_model: plumb_bob\n'
                   f'distortion_coefficients: {{rows: 1, cols: 5, data: {D_UDACITY.tolist()}}}\n')
    cam2 = load_camera_yaml(ros)
    np.testing.assert_allclose(cam2.K, K_UDACITY)
    np.testing.assert_allclose(cam2.D, D_UDACITY)
    bad = tmp_path / 'bad.yaml'
    bad.write_text('camera_matrix: [[1, 0], [0, 1]]\nimage_size: [10, 10]\n')
    with pytest.raises(DataError, match='3x3'):
        load_camera_yaml(bad)


def test_video_sequence_frames_and_stamps(vseq):
    assert vseq.n_frames == 4 and len(vseq) == 2 and vseq.fps == 25.0
    assert [src for src, _ in vseq.skipped] == ['video:segment_a.mp4:0', 'video:segment_a.mp4:3']
    s = vseq[0]
    assert s.source == 'video:segment_a.mp4:1' and s.stamp_ns == 40_000_000
    assert s.target.shape == (720, 1280, 3) and s.target.dtype == np.uint8
    assert all(c.shape == (720, 1280, 3) for c in s.contexts)
    assert s.context_dt == pytest.approx([-0.04, 0.04])
    np.testing.assert_allclose(s.K, K_UDACITY)                   # undistorted camera keeps K
    assert s.speed is None and s.expected_translation is None and s.gt_depth is None
    assert any('no speed' in w for w in vseq.warnings)


def test_video_undistortion_moves_points_as_opencv_predicts(vseq):
    raw = _raw_video_frames(2)[1]
    und = vseq[0].target                                         # frame 1, undistorted
    # undistorted pixel grid away from the centre, where the lens moves points by 5-60 px
    u, v = np.meshgrid(np.arange(20, 1260, 37), np.arange(15, 705, 31))
    pu = np.stack([u.ravel(), v.ravel()], 1).astype(np.float64)
    rays = np.c_[(pu - K_UDACITY[:2, 2]) / np.diag(K_UDACITY)[:2], np.ones(len(pu))]
    pd = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), K_UDACITY, D_UDACITY)[0].reshape(-1, 2)
    moved = np.linalg.norm(pd - pu, axis=1)
    keep = moved > 5
    pu, pd = pu[keep], pd[keep]
    assert keep.sum() > 300 and moved.max() > 40
    # OpenCV's inverse model maps the distorted location back to the undistorted pixel
    # (cv2.undistortPoints' default 5 iterations leave up to 0.06 px in the corners)
    assert np.abs(cv2.undistortPoints(pd.reshape(-1, 1, 2), K_UDACITY, D_UDACITY, P=K_UDACITY).reshape(-1, 2)
                  - pu).max() < 0.1
    back = cv2.undistortPoints(pd.reshape(-1, 1, 2), K_UDACITY, D_UDACITY, R=None, P=K_UDACITY,
                               criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)).reshape(-1, 2)
    assert np.abs(back - pu).max() < 1e-3
    # and the undistorted image at pu shows what the raw image shows at pd
    got = und[pu[:, 1].astype(int), pu[:, 0].astype(int)].astype(np.float64)
    expect = np.array([cv2.getRectSubPix(raw, (1, 1), (float(x), float(y)))[0, 0] for x, y in pd], np.float64)
    naive = raw[pu[:, 1].astype(int), pu[:, 0].astype(int)].astype(np.float64)
    err, err_naive = np.abs(got - expect).mean(), np.abs(got - naive).mean()
    assert err < 1.5 and err_naive > 5 * err


def test_video_crop_and_frame_step():
    full = VideoSequence(VIDEO, CAMERA_YAML, frame_step=2, start=0, stop=5, cache='memory')
    seq = VideoSequence(VIDEO, CAMERA_YAML, frame_step=2, start=0, stop=5, crop=(10, 20, 30, 40))
    assert len(seq) == 1 and seq.frame_of(0) == 2
    s, f = seq[0], full[0]
    assert s.context_dt == pytest.approx([-0.08, 0.08])
    assert s.target.shape == (690, 1210, 3)
    assert np.array_equal(s.target, f.target[10:700, 30:1240])
    assert np.array_equal(s.contexts[1], f.contexts[1][10:700, 30:1240])   # frame 4
    assert s.K[0, 2] == pytest.approx(671.3197 - 30) and s.K[1, 2] == pytest.approx(389.2167 - 10)
    assert s.K[0, 0] == f.K[0, 0] and s.K[1, 1] == f.K[1, 1]
    with pytest.raises(DataError, match='crop'):
        VideoSequence(VIDEO, CAMERA_YAML, stop=3, crop=(400, 400, 0, 0))


def test_video_errors(tmp_path):
    with pytest.raises(DataError, match='missing video'):
        VideoSequence(tmp_path / 'none.mp4', CAMERA_YAML)
    garbage = tmp_path / 'garbage.mp4'
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match='garbage.mp4'):
        VideoSequence(garbage, CAMERA_YAML)
    with pytest.raises(DataError, match='frame 200 is unreadable'):
        VideoSequence(VIDEO, CAMERA_YAML, start=198, stop=202)
    small = tmp_path / 'small.yaml'
    small.write_text('camera_matrix: [[500, 0, 320], [0, 500, 240], [0, 0, 1]]\ndistortion: []\n'
                     'image_size: [640, 480]\n')
    with pytest.raises(DataError, match='1280x720 but the intrinsics are for 640x480'):
        VideoSequence(VIDEO, small, stop=3)


def test_video_speed_csv(tmp_path):
    csv_path = tmp_path / 'speed.csv'
    csv_path.write_text('time_s,speed_mps\n0.0,20.0\n0.5,25.0\n')
    seq = VideoSequence(VIDEO, CAMERA_YAML, start=0, stop=3, speed_csv=csv_path)
    s = seq[0]                                                   # frame 1, t = 0.04 s
    assert s.speed == pytest.approx(20.4)
    assert s.expected_translation == pytest.approx([0.04 * 20.2, 0.04 * 20.6])


# ---------------------------------------------------------------------------------------- config
def test_load_sequences(tmp_path):
    specs = [{'type': 'kitti', 'path': f'kitti_tiny/2011_09_26/{DRIVE_ID}', 'targets': [1, 2, 3, 4, 5]},
             {'type': 'video', 'path': 'udacity_highway/segment_a.mp4', 'intrinsics': str(CAMERA_YAML),
              'crop': [0, 80, 0, 0], 'frame_step': 2, 'stop': 5}]
    k, v = load_sequences(specs, base_dir=DATA)
    assert isinstance(k, KittiSequence) and len(k) == 5
    assert isinstance(v, VideoSequence) and len(v) == 1 and v[0].target.shape == (640, 1280, 3)
    with pytest.raises(DataError, match="unknown keys \\['fps_typo'\\]"):
        load_sequences([{'type': 'kitti', 'path': 'x', 'fps_typo': 1}], base_dir=DATA)
    with pytest.raises(DataError, match='type must be one of'):
        load_sequences([{'type': 'rosbag', 'path': 'x'}])
    with pytest.raises(DataError, match='missing "intrinsics"'):
        load_sequences([{'type': 'video', 'path': str(VIDEO)}])
    with pytest.raises(DataError, match='no bag at'):
        load_sequences([{'type': 'bag', 'path': 'nothing'}], base_dir=tmp_path)


# ---------------------------------------------------------------------------------------- dataset
def test_dataset_shapes_and_intrinsics(kseq, drive):
    ds = SfmDataset([kseq], image_shape=(192, 640))
    assert len(ds) == 5
    item = ds[2]
    s = kseq[2]
    assert item['rgb'].shape == (3, 192, 640) and item['rgb'].dtype == torch.float32
    assert 0.0 <= float(item['rgb'].min()) and float(item['rgb'].max()) <= 1.0
    assert len(item['rgb_context']) == 2 and all(c.shape == (3, 192, 640) for c in item['rgb_context'])
    expect = torch.from_numpy(resize_rgb(s.target, 192, 640)).permute(2, 0, 1).float() / 255
    assert torch.equal(item['rgb'], expect) and torch.equal(item['rgb_original'], expect)
    K = item['intrinsics'].double().numpy()
    np.testing.assert_allclose(K, scale_intrinsics(drive.K, 640 / 1242, 192 / 375), rtol=1e-6)
    assert K[0, 0] == pytest.approx(721.5377 * 640 / 1242, rel=1e-6)
    assert K[1, 2] == pytest.approx(172.854 * 192 / 375, rel=1e-6)
    assert item['expected_translation'].shape == (2,)
    np.testing.assert_allclose(item['expected_translation'].numpy(), s.expected_translation, rtol=1e-6)
    assert float(item['speed']) == pytest.approx(s.speed, rel=1e-6)
    assert item['depth'].shape == (1, 192, 640) and item['has_depth']
    d = item['depth'][0].numpy()
    assert 0.005 < np.isfinite(d).mean() < 0.2 and 1 < np.nanmax(d) < 90
    assert not item['flipped'] and item['idx'] == 2 and item['source'] == s.source
    with pytest.raises(ValueError, match='multiples of 32'):
        SfmDataset([kseq], image_shape=(190, 640))
    rep = SfmDataset([kseq], image_shape=(192, 640), repeat=2)
    assert len(rep) == 10 and torch.equal(rep[7]['rgb'], ds[2]['rgb'])


def test_flip_intrinsics_keeps_unprojection_consistent():
    H, W = 64, 96
    K = np.array([[80.0, 0.0, 41.3], [0.0, 75.0, 30.2], [0.0, 0.0, 1.0]])
    depth = torch.from_numpy(np.random.default_rng(1).uniform(2, 50, (1, 1, H, W)).astype(np.float32))
    Kf = flip_intrinsics(K, W)
    assert Kf[0, 2] == pytest.approx(W - 1 - 41.3)
    P = unproject(depth, torch.from_numpy(K).float())[0]                    # (3, H, W)
    Pf = unproject(torch.flip(depth, [3]), torch.from_numpy(Kf).float())[0]
    mirrored = torch.flip(P, [2]) * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
    torch.testing.assert_close(Pf, mirrored, rtol=1e-5, atol=1e-4)
    # the naive W - cx would be off by one pixel: X error = z / fx
    Pn = unproject(torch.flip(depth, [3]), torch.from_numpy(flip_intrinsics(K, W + 1)).float())[0]
    assert float((Pn - mirrored).abs().max()) > 0.1


def test_dataset_flip_consistency(kseq):
    plain = SfmDataset([kseq], image_shape=(192, 640))
    ds = SfmDataset([kseq], image_shape=(192, 640), augment=True, flip_prob=1.0, jitter=None)
    a, b = plain[1], ds[1]
    assert b['flipped']
    assert torch.equal(b['rgb'], torch.flip(a['rgb'], [2]))
    assert all(torch.equal(x, torch.flip(y, [2])) for x, y in zip(b['rgb_context'], a['rgb_context']))
    assert torch.equal(b['depth'].nan_to_num(-1), torch.flip(a['depth'], [2]).nan_to_num(-1))
    np.testing.assert_allclose(b['intrinsics'].numpy(), flip_intrinsics(a['intrinsics'].numpy(), 640), rtol=1e-6)
    # every LiDAR point of the flipped GT unprojects (flipped K) to the mirrored 3D point
    d = a['depth']
    P = unproject(d.unsqueeze(0), a['intrinsics'])[0]
    Pf = unproject(b['depth'].unsqueeze(0), b['intrinsics'])[0]
    mirrored = torch.flip(P, [2]) * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
    valid = torch.isfinite(Pf[2])
    assert valid.sum() > 1000
    torch.testing.assert_close(Pf[:, valid], mirrored[:, valid], rtol=1e-5, atol=1e-4)


def test_color_jitter_ops():
    img = np.array([[[200, 100, 50], [10, 20, 30]]], dtype=np.uint8)
    assert np.array_equal(apply_color_jitter(img, ColorJitter(brightness=1.2)), [[[240, 120, 60], [12, 24, 36]]])
    grey = apply_color_jitter(img, ColorJitter(saturation=0.0))
    assert np.all(grey[..., 0] == grey[..., 1]) and np.all(grey[..., 1] == grey[..., 2])
    assert grey[0, 0, 0] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    flat = apply_color_jitter(img, ColorJitter(contrast=0.0))
    assert len(np.unique(flat)) == 1
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert apply_color_jitter(red, ColorJitter(hue=1 / 3)).ravel().tolist() == pytest.approx([0, 255, 0], abs=8)
    assert np.array_equal(apply_color_jitter(img, ColorJitter()), img)
    j = sample_color_jitter(np.random.default_rng(0))
    assert 0.8 <= j.brightness <= 1.2 and 0.8 <= j.contrast <= 1.2 and 0.8 <= j.saturation <= 1.2
    assert -0.05 <= j.hue <= 0.05 and sorted(j.order) == ['brightness', 'contrast', 'hue', 'saturation']


class _SameFrames:
    """A sequence whose contexts are copies of the target (real KITTI pixels)."""

    context_dts = [-0.1, 0.1]

    def __init__(self, drive):
        self.drive = drive

    def __len__(self):
        return 3

    def __getitem__(self, i):
        img = self.drive.image(i)
        return Sample(img, [img.copy(), img.copy()], self.drive.K, i, [-0.1, 0.1], None, None, None, f'same:{i}')


def test_dataset_color_jitter_identical_on_target_and_contexts(drive, kseq):
    ds = SfmDataset([_SameFrames(drive)], image_shape=(192, 640), augment=True, seed=3)
    for i in range(3):
        item = ds[i]
        assert not torch.equal(item['rgb'], item['rgb_original'])
        assert all(torch.equal(c, item['rgb']) for c in item['rgb_context'])
        assert all(torch.equal(c, item['rgb_original']) for c in item['rgb_context_original'])
    # real contexts: the same factors applied to every image, reproducible from (seed, epoch, idx)
    ds = SfmDataset([kseq], image_shape=(192, 640), augment=True, seed=7)
    ds.set_epoch(2)
    item = ds[4]
    rng = np.random.default_rng((7, 2, 4))
    flipped = rng.random() < 0.5
    jit = sample_color_jitter(rng, 0.2, 0.2, 0.2, 0.05)
    assert item['flipped'] == flipped
    s = kseq[4]
    imgs = [resize_rgb(x, 192, 640) for x in [s.target, *s.contexts]]
    imgs = [x[:, ::-1] if flipped else x for x in imgs]
    got = [item['rgb'], *item['rgb_context']]
    for x, t in zip(imgs, got):
        expect = torch.from_numpy(apply_color_jitter(np.ascontiguousarray(x), jit)).permute(2, 0, 1).float() / 255
        assert torch.equal(t, expect)
    assert torch.equal(ds[4]['rgb'], item['rgb'])               # deterministic for a seed/epoch
    ds.set_epoch(3)
    assert not torch.equal(ds[4]['rgb'], item['rgb'])


def test_dataset_unknown_speed_and_no_depth_collate(drive, vseq):
    ks = KittiSequence(drive, targets=[2, 3], with_speed=False)
    ds = SfmDataset([ks, vseq], image_shape=(192, 640))
    assert len(ds) == 4
    a, v = ds[0], ds[2]
    assert torch.isnan(a['expected_translation']).all() and torch.isnan(a['speed'])
    assert v['source'] == 'video:segment_a.mp4:1' and not v['has_depth'] and torch.isnan(v['depth']).all()
    np.testing.assert_allclose(v['intrinsics'].numpy(), scale_intrinsics(K_UDACITY, 0.5, 192 / 720), rtol=1e-6)
    batch = default_collate([a, v])                             # KITTI (with GT) + video (no GT)
    assert batch['rgb'].shape == (2, 3, 192, 640) and batch['depth'].shape == (2, 1, 192, 640)
    assert batch['has_depth'].tolist() == [True, False]
    # a DataLoader batch of 2 with the default collate
    loader = DataLoader(SfmDataset([KittiSequence(drive, targets=[1, 2, 3, 4, 5])], image_shape=(192, 640),
                                   augment=True), batch_size=2)
    b = next(iter(loader))
    assert b['rgb'].shape == (2, 3, 192, 640) and len(b['rgb_context']) == 2
    assert b['rgb_context'][0].shape == (2, 3, 192, 640)
    assert b['intrinsics'].shape == (2, 3, 3) and b['expected_translation'].shape == (2, 2)
    assert torch.isfinite(b['expected_translation']).all() and b['speed'].shape == (2,)
    assert b['idx'].tolist() == [0, 1] and len(b['source']) == 2
    assert math.isfinite(float(b['expected_translation'][0, 0]))


def test_zoom_window_keeps_the_principal_point():
    from packnet_ros.data.dataset import zoom_window
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    assert zoom_window(K, 1242, 375, 1.0) == (0, 0, 1242, 375)
    x0, y0, w, h = zoom_window(K, 1242, 375, 2.0)
    assert (w, h) == (621, 188)  # round(1242 / 2), round(375 / 2)
    # the principal point keeps its relative position: (cx - x0) / w == cx / W within a pixel
    assert abs((609.6 - x0) / w * 1242 - 609.6) < 2.0 and abs((172.9 - y0) / h * 375 - 172.9) < 2.0
    with pytest.raises(ValueError, match='zoom'):
        zoom_window(K, 1242, 375, 0.5)
    with pytest.raises(ValueError, match='zoom'):
        SfmDataset([], (96, 320), zoom=(0.8, 1.2))


def test_zoom_is_the_same_camera_looking_at_a_scaled_scene(kseq):
    """A zoomed item is exact pinhole geometry: every LiDAR point of the unzoomed item with its
    depth divided by s (lateral and vertical position kept) projected with the zoomed item's K
    lands on a pixel where the zoomed GT depth reads that depth; K keeps the unzoomed focal
    length; translation and speed are unknown (NaN)."""
    shape = (96, 320)
    plain = SfmDataset([kseq], shape, augment=False, depth_resize='preserve')[2]
    ds = SfmDataset([kseq], shape, augment=True, flip_prob=0.0, jitter=None, depth_resize='preserve',
                    zoom=(1.6, 1.6), zoom_prob=1.0)
    item = ds[2]
    s = float(item['zoom'])
    assert abs(s - 1.6) < 0.01
    K0, K1 = plain['intrinsics'].numpy(), item['intrinsics'].numpy()
    assert abs(K1[0, 0] - K0[0, 0]) < 1e-3 and abs(K1[1, 1] - K0[1, 1]) / K0[1, 1] < 0.01
    assert abs(K1[0, 2] - K0[0, 2]) < 1.0 and abs(K1[1, 2] - K0[1, 2]) < 1.0
    assert torch.isfinite(plain['speed']) and torch.isfinite(plain['expected_translation']).all()
    assert torch.isnan(item['speed']) and torch.isnan(item['expected_translation']).all()

    # LiDAR points of the full frame (camera frame, metres), depth divided by s
    sample = kseq[2]
    gt = np.asarray(sample.gt_depth, dtype=np.float64)
    v, u = np.nonzero(gt > 0)
    z = gt[v, u]
    Kf = np.asarray(sample.K, dtype=np.float64)
    X = np.stack([(u - Kf[0, 2]) * z / Kf[0, 0], (v - Kf[1, 2]) * z / Kf[1, 1], z / s], 1)
    # projected through the zoomed item's camera
    pu = K1[0, 0] * X[:, 0] / X[:, 2] + K1[0, 2]
    pv = K1[1, 1] * X[:, 1] / X[:, 2] + K1[1, 2]
    inside = (pu >= 0) & (pu < shape[1] - 1) & (pv >= 0) & (pv < shape[0] - 1)
    assert inside.sum() > 1000
    depth = item['depth'][0].numpy()
    ui, vi = np.round(pu[inside]).astype(int), np.round(pv[inside]).astype(int)
    hit = depth[vi, ui]
    ok = np.isfinite(hit) & (hit > 0)
    assert ok.mean() > 0.4  # many points share a 320x96 pixel: the scatter keeps one (0.70 unzoomed)
    rel = np.abs(hit[ok] - X[inside, 2][ok]) / X[inside, 2][ok]
    assert np.median(rel) < 0.01  # same pixel, the scaled depth
