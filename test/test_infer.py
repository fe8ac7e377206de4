"""``packnet-ros infer`` on real data with small untrained weights: an image, a folder, the
first frames of the Udacity video and a bag written by ``packnet-ros bag``; the outputs
equal the pipeline's, the PLY parses back to ``depth_to_xyz``; bad inputs exit 2."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import yaml

from conftest import DATA, ROOT
from packnet_ros.apps.cli import main
from packnet_ros.apps.infer import read_ply, write_ply
from packnet_ros.geometry import scale_intrinsics
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.pipeline import FrameInput, PipelineSettings, pipeline_from_weights
from packnet_ros.pointcloud import depth_to_xyz
from packnet_ros.weights import resolve_weights

WEIGHTS = 'untrained:PackNetSlim01:0.25'
COMMON = ['--checkpoint', WEIGHTS, '--device', 'cpu', '--precision', 'fp32']
VIDEO = DATA / 'udacity_highway' / 'segment_a.mp4'
CAMERA_YAML = ROOT / 'config' / 'udacity_highway_camera.yaml'

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


@pytest.fixture(scope='module')
def drive(kitti_drive) -> KittiDrive:
    return KittiDrive(kitti_drive)


@pytest.fixture(scope='module')
def pipeline():
    ckpt = resolve_weights(WEIGHTS, with_pose=False).checkpoint
    return pipeline_from_weights(ckpt, PipelineSettings(), 'cpu', 'fp32')


@pytest.fixture(scope='module')
def kitti_yaml(drive, tmp_path_factory):
    """The drive's camera as a ROS camera_info YAML (camera_calibration's layout)."""
    H, W = drive.image_size
    path = tmp_path_factory.mktemp('cam') / 'kitti.yaml'
    path.write_text(yaml.safe_dump({
        'image_width': W, 'image_height': H, 'camera_name': 'image_02', 'distortion_model': 'plumb_bob',
        'camera_matrix': {'rows': 3, 'cols': 3, 'data': np.asarray(drive.K, float).ravel().tolist()},
        'distortion_coefficients': {'rows': 1, 'cols': 5, 'data': [0.0] * 5}}))
    return path


def _infer(capsys, *args) -> tuple[int, str, str]:
    rc = main(['infer', *[str(a) for a in args]])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_image_npy_equals_pipeline_and_ply_equals_depth_to_xyz(drive, pipeline, kitti_yaml, tmp_path, capsys):
    image = drive.image_path(0)
    rc, out, err = _infer(capsys, image, '--out', tmp_path, '--intrinsics', kitti_yaml, '--ply', *COMMON)
    assert rc == 0, err
    name = image.stem
    assert {p.name for p in tmp_path.iterdir()} == {f'{name}.npy', f'{name}.png', f'{name}.ply', 'frames.csv'}
    depth = np.load(tmp_path / f'{name}.npy')
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    ref = pipeline.process(FrameInput(rgb, drive.K, 0), cloud=False)
    assert depth.dtype == np.float32 and depth.shape == ref.depth.shape
    np.testing.assert_array_equal(depth, ref.depth)
    pts, cols = read_ply(tmp_path / f'{name}.ply')
    xyz = depth_to_xyz(depth, ref.K).reshape(-1, 3)
    finite = np.isfinite(xyz).all(1)
    np.testing.assert_array_equal(pts, xyz[finite])
    np.testing.assert_array_equal(cols, ref.rgb.reshape(-1, 3)[finite])
    png = cv2.imread(str(tmp_path / f'{name}.png'))
    assert png.shape[0] == 2 * depth.shape[0]           # input above the coloured depth
    assert 'wrote 1 frames' in out


def test_folder_without_intrinsics_is_relative_depth_without_cloud(drive, tmp_path, capsys):
    folder = tmp_path / 'images'
    folder.mkdir()
    for i in (0, 1):
        shutil.copy(drive.image_path(i), folder / drive.image_path(i).name)
    (folder / 'notes.txt').write_text('not an image')
    out_dir = tmp_path / 'out'
    rc, out, err = _infer(capsys, folder, '--out', out_dir, '--ply', '--ply-ascii', *COMMON)
    assert rc == 0, err
    assert sorted(p.suffix for p in out_dir.iterdir()) == ['.csv', '.npy', '.npy', '.png', '.png']
    assert 'without intrinsics' in out and 'relative' in out and 'no point cloud' in out
    rows = (out_dir / 'frames.csv').read_text().splitlines()
    assert len(rows) == 3 and rows[1].split(',')[5] == 'False'


def test_video_first_frames_npz(tmp_path, capsys):
    rc, out, err = _infer(capsys, VIDEO, '--out', tmp_path, '--intrinsics', CAMERA_YAML, '--max-frames', 2,
                          '--format', 'npz', *COMMON)
    assert rc == 0, err
    files = sorted(tmp_path.glob('*.npz'))
    assert [f.name for f in files] == ['frame_000000.npz', 'frame_000001.npz']
    cam = yaml.safe_load(CAMERA_YAML.read_text())
    with np.load(files[1]) as z:
        depth, K = z['depth'], z['K']
        assert int(z['stamp_ns']) == pytest.approx(0.04e9, rel=0.01)   # 25 fps
    h, w = depth.shape
    np.testing.assert_allclose(K, scale_intrinsics(np.array(cam['camera_matrix']), w / 1280, h / 720))
    assert np.isfinite(depth).mean() > 0.5


def test_ply_ascii_and_binary_round_trip(tmp_path):
    pts = np.array([[0.5, -1.25, 3.0], [np.nan, 0, 1], [1e-3, 2.0, 79.5]], np.float32)
    cols = np.array([[1, 2, 3], [4, 5, 6], [255, 0, 128]], np.uint8)
    for binary in (True, False):
        path = tmp_path / f'c_{binary}.ply'
        assert write_ply(path, pts, cols, binary=binary) == 2
        p, c = read_ply(path)
        np.testing.assert_allclose(p, pts[[0, 2]], rtol=1e-6)
        np.testing.assert_array_equal(c, cols[[0, 2]])


@pytest.fixture(scope='module')
def kitti_bag(kitti_drive, tmp_path_factory):
    out = tmp_path_factory.mktemp('bag') / 'kitti'
    assert main(['bag', str(kitti_drive), str(out)]) == 0
    return out


def test_bag_topic_with_camera_info(kitti_bag, drive, pipeline, tmp_path, capsys):
    rc, out, err = _infer(capsys, kitti_bag, '--topic', '/camera/image_raw', '--out', tmp_path, '--max-frames', 2,
                          '--format', 'npz', '--ply', *COMMON)
    assert rc == 0, err
    assert 'intrinsics /camera/camera_info' in out
    files = sorted(tmp_path.glob('*.npz'))
    assert len(files) == 2 and len(list(tmp_path.glob('*.ply'))) == 2
    with np.load(files[0]) as z:
        depth, K, stamp = z['depth'], z['K'], int(z['stamp_ns'])
    assert stamp == drive.timestamp_ns(0)
    ref = pipeline.process(FrameInput(drive.image(0), drive.K, stamp), cloud=False)
    np.testing.assert_array_equal(depth, ref.depth)
    np.testing.assert_allclose(K, ref.K)


def _error(capsys, *args) -> str:
    rc, _, err = _infer(capsys, *args, *COMMON)
    assert rc == 2
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_bad_inputs_exit_2_with_one_line(kitti_bag, drive, tmp_path, capsys):
    out = tmp_path / 'out'
    assert 'no such file' in _error(capsys, tmp_path / 'missing.png', '--out', out)
    (tmp_path / 'x.txt').write_text('hello')
    assert 'unknown extension' in _error(capsys, tmp_path / 'x.txt', '--out', out)
    err = _error(capsys, kitti_bag, '--topic', '/camera/nope', '--out', out)
    assert 'no topic /camera/nope' in err and '/camera/image_raw' in err
    bad = tmp_path / 'broken.mp4'
    bad.write_bytes(b'\x00' * 4096)
    assert 'cannot read video' in _error(capsys, bad, '--out', out)
    (tmp_path / 'broken.png').write_bytes(b'not a png')
    assert 'cannot read image' in _error(capsys, tmp_path / 'broken.png', '--out', out)
    assert 'is for 1280x720' in _error(capsys, drive.image_path(0), '--out', out, '--intrinsics', CAMERA_YAML)
    assert '--topic' in _error(capsys, tmp_path / 'x.txt', '--topic', '/a', '--out', out)
    assert not out.exists()
