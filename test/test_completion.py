"""Depth completion from sparse LiDAR: the Velodyne reader and projection (against KITTI's
own ``proj_depth``), ring indices from the elevation, subsampling, IP-Basic, the bag verb's
LiDAR topic and the evaluator's held-out scoring (real kitti_traffic frames where they run).
"""
from __future__ import annotations

import json
import shutil
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import DATA
from packnet_ros.completion import (
    HDL64E,
    CompletionMethod,
    Subsample,
    beam_rings,
    fill_in_fast,
    fill_in_multiscale,
    parse_completion,
)
from packnet_ros.completion.sparse import elevation_deg, project_to_depth, sparse_depth
from packnet_ros.io.kitti import KittiDrive, KittiFormatError, read_velodyne_bin

TRAFFIC = DATA / 'kitti_traffic' / '2011_09_26' / '2011_09_26_traffic_sync'


@pytest.fixture(scope='module')
def traffic() -> KittiDrive:
    if not TRAFFIC.is_dir():
        pytest.fail(f'real KITTI data missing at {TRAFFIC} (../shared/data must be beside the repo)')
    return KittiDrive(TRAFFIC)


def _camera_points(drive: KittiDrive, i: int) -> np.ndarray:
    p = drive.velodyne(i)[:, :3].astype(np.float64)
    return p @ drive.T_cam_velo[:3, :3].T + drive.T_cam_velo[:3, 3]


def mini_drive(root, frames=(0, 1)):
    """A KITTI drive folder with a few kitti_traffic frames (links) and its calibration."""
    date = root / '2011_09_26'
    drive = date / '2011_09_26_traffic_sync'
    for f in TRAFFIC.parent.glob('calib_*.txt'):
        date.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, date / f.name)
    for sub, ext in (('image_02/data', 'png'), ('velodyne_points/data', 'bin'),
                     ('proj_depth/velodyne/image_02', 'npz')):
        (drive / sub).mkdir(parents=True, exist_ok=True)
        for i in frames:
            (drive / sub / f'{i:010d}.{ext}').symlink_to(TRAFFIC / sub / f'{i:010d}.{ext}')
    shutil.copy(TRAFFIC / 'image_02' / 'timestamps.txt', drive / 'image_02' / 'timestamps.txt')
    return drive


#######################################################################################
# Velodyne files and projection

def test_velodyne_scan_projects_onto_kitti_proj_depth(traffic):
    """Frame 0's scan, moved into image_02 with the drive's calibration, lands on exactly the
    pixels of the shipped ``proj_depth`` (nearest return per pixel). The depths differ by a
    constant 2.75 mm: ``proj_depth`` stores z of the rectified camera-0 frame (the third row of
    ``R_rect_00 @ T_cam0_velo``) while this projection gives z in camera 2's optical frame,
    which ``P_rect_02`` places t_z = P_rect_02[2, 3] / 1 = 2.746 mm further along z."""
    points = traffic.velodyne(0)
    assert points.dtype == np.float32 and points.shape[1] == 4 and len(points) > 10_000
    # the transform is the devkit's P_rect_02 @ R_rect_00 @ T_cam0_velo
    P = traffic.P_rect @ traffic.R_rect_00 @ traffic.T_cam0_velo
    assert np.allclose(traffic.K @ traffic.T_cam_velo[:3], P, atol=1e-9)
    sparse = sparse_depth(_camera_points(traffic, 0), traffic.K, traffic.image_size)
    gt = np.nan_to_num(traffic.gt_depth(0))
    ours, theirs = sparse > 0, gt > 0
    mismatched = int((ours != theirs).sum())
    print(f'\nframe 0: {theirs.sum()} proj_depth pixels, {ours.sum()} projected, {mismatched} differ')
    assert mismatched <= 0.001 * theirs.sum()  # measured: 0 on all 78 frames
    both = ours & theirs
    tz = traffic.T_cam_velo[2, 3] - (traffic.R_rect_00 @ traffic.T_cam0_velo)[2, 3]
    assert tz == pytest.approx(traffic.P_rect[2, 3] / traffic.K[2, 2], abs=1e-9)
    assert np.abs(sparse[both] - gt[both] - tz).max() < 1e-4


def test_velodyne_reader_errors(tmp_path, traffic):
    bad = tmp_path / 'x.bin'
    bad.write_bytes(np.arange(6, dtype=np.float32).tobytes())  # 1.5 points
    with pytest.raises(KittiFormatError, match='16 bytes per point'):
        read_velodyne_bin(bad)
    assert not traffic.has_velodyne(999)
    with pytest.raises(KittiFormatError, match='no Velodyne scan for frame 999'):
        traffic.velodyne(999)
    assert traffic.has_velodyne() and traffic.has_velodyne(0)


def test_projection_rules_and_output_size():
    K = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    pts = np.array([[0.0, 0, 10], [0.0, 0, 5],     # same pixel (50, 40): the nearer wins
                    [0.0, 0, -3],                  # behind the camera
                    [100.0, 0, 10],                # outside the image
                    [np.nan, 0, 1],                # not finite
                    [1.0, 0.5, 10]])               # pixel (60, 45)
    d = project_to_depth(pts, K, (80, 100))
    assert d.dtype == np.float32 and d.shape == (80, 100)
    assert d[40, 50] == 5.0 and d[45, 60] == 10.0 and int((d > 0).sum()) == 2
    assert project_to_depth(pts, K, (80, 100), max_depth=8.0)[45, 60] == 0.0
    half = sparse_depth(pts, K, (80, 100), out_shape=(40, 50))  # K scaled by 0.5
    assert half.shape == (40, 50) and half[20, 25] == 5.0 and half[23, 30] == 10.0  # v = 22.5 rounds up
    assert int((half > 0).sum()) == 2


#######################################################################################
# Rings and subsampling

def test_rings_of_a_synthetic_hdl64e_scan():
    """Points on the nominal beams (their origin heights, 0.03 deg noise, 4-80 m, a camera-like
    +-40 deg azimuth) with beams missing at the top and bottom get their own indices back."""
    rng = np.random.default_rng(0)
    present = np.arange(2, 48)  # like the cropped KITTI scans: no returns from the top and lowest beams
    ring = np.repeat(present, 300)
    theta = np.radians(np.asarray(HDL64E.angles_deg)[ring] + rng.normal(0, 0.03, ring.size))
    r = rng.uniform(4, 80, ring.size)
    az = np.radians(rng.uniform(-40, 40, ring.size))
    z = r * np.tan(theta) + np.asarray(HDL64E.origin_height_m)[ring]
    pts = np.stack([r * np.cos(az), r * np.sin(az), z], 1)
    assert (beam_rings(pts) == ring).mean() > 0.995
    pts[0] = np.nan
    assert beam_rings(pts)[0] == -1


@pytest.mark.parametrize('frame', [0, 77])
def test_rings_of_kitti_scans_follow_the_scan_order(traffic, frame):
    """KITTI's .bin files store a scan ring by ring (each ring sweeps the camera's azimuth
    range once per half, so a ring is one or two runs between azimuth wrap-arounds). Nearly
    every run gets one ring index; indices fall from the top of the image to the bottom; the
    same beams get the same indices in frames 0 and 77."""
    p = traffic.velodyne(frame).astype(np.float64)
    rings = beam_rings(p)
    assert rings.min() >= 0 and rings.max() < 64
    az = np.degrees(np.arctan2(p[:, 1], p[:, 0]))
    h = np.asarray(HDL64E.origin_height_m)[rings]
    el = elevation_deg(p, h)
    runs = np.concatenate([[0], np.cumsum((np.diff(az) < -20) | (np.abs(np.diff(el)) > 0.2))])
    agree = sum(np.bincount(rings[runs == k]).max() for k in range(runs.max() + 1))
    print(f'\nframe {frame}: {len(np.unique(rings))} rings, {agree / len(p):.3f} of the points agree with the scan order')
    assert agree / len(p) > 0.95
    med = [np.median(el[rings == k]) for k in np.unique(rings)]
    assert np.all(np.diff(med) < 0)  # ring index grows downwards
    assert np.unique(rings)[0] == 1  # the top beam (nominal +2 deg) has no return in these crops


def test_subsample_beams_and_ratio():
    rings = np.repeat(np.arange(64), 10)
    keep = Subsample.parse('beams:16').mask(rings.size, rings)
    assert sorted(set(rings[keep])) == list(range(0, 64, 4))
    assert Subsample.parse('beams:64').mask(rings.size, rings).all()
    a = Subsample.parse('ratio:0.25').mask(1000)
    assert a.sum() == 250 and np.array_equal(a, Subsample.parse('ratio:0.25').mask(1000))
    assert not np.array_equal(a, Subsample.parse('ratio:0.25', seed=1).mask(1000))
    assert str(Subsample.parse('beams:8')) == 'beams:8' and str(Subsample.parse('')) == 'all'
    for bad in ('beams:0', 'beams:x', 'ratio:0', 'ratio:2', 'every:2'):
        with pytest.raises(ValueError):
            Subsample.parse(bad)
    with pytest.raises(ValueError, match='divide'):
        Subsample.parse('beams:12').mask(rings.size, rings)
    with pytest.raises(ValueError, match='ring'):
        Subsample.parse('beams:16').mask(rings.size, None)


#######################################################################################
# IP-Basic

def _plane(H=200, W=400):
    """A tilted plane ~20 m away (its inverse depth is affine in the pixel coordinates):
    19.3 m at the bottom right to 22.2 m at the top left."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return (1.0 / (0.045 + 0.00001 * v + 0.00001 * u)).astype(np.float32)


@pytest.mark.parametrize('variant', ['fast', 'fast:bilateral', 'multiscale', 'multiscale:gaussian'])
def test_ipbasic_fills_a_plane_with_holes(variant):
    dense = _plane()
    rng = np.random.default_rng(0)
    sparse = np.zeros_like(dense)
    rows = np.arange(2, dense.shape[0], 4)  # scan lines every 4 rows, 30 % of the returns lost
    keep = rng.random((rows.size, dense.shape[1])) > 0.3
    sparse[rows] = np.where(keep, dense[rows], 0)
    sparse[80:100, 150:230] = 0  # a 20 x 80 px hole (no return at all)
    out = parse_completion(f'completion:ipbasic:{variant}')(sparse)
    assert out.dtype == np.float32 and out.shape == dense.shape
    inner = (slice(20, -20), slice(20, -20))  # the borders are where the method extends
    assert (out[inner] > 0).all()
    rel = np.abs(out[inner] - dense[inner]) / dense[inner]
    print(f'\n{variant}: max rel. error {rel.max():.4f}, mean {rel.mean():.5f}')
    assert rel.max() < 0.01  # the largest errors are in the hole: its pixels take the nearest depth around it


def test_ipbasic_keeps_the_nearer_surface_and_the_empty_top():
    sparse = np.zeros((60, 80), np.float32)
    sparse[20::3, ::2] = 30.0          # a far wall, scan lines from row 20 down
    sparse[35:50:3, 30:50:2] = 5.0     # a near object in front of it
    fast = fill_in_fast(sparse, extrapolate=False)
    assert fast[41, 40] == pytest.approx(5.0, rel=1e-3)  # between the object's scan lines: the object
    assert fast[26, 10] == pytest.approx(30.0, rel=1e-3)
    assert (fast[:15] == 0).all()  # no extrapolation: nothing above the top return
    assert (fill_in_fast(sparse, extrapolate=True) > 0).all()
    ms = fill_in_multiscale(sparse)
    assert ms[41, 40] == pytest.approx(5.0, rel=1e-2) and (ms[:15] == 0).all()
    assert (fill_in_fast(np.zeros((20, 20), np.float32)) == 0).all()  # nothing to fill from
    nan_input = sparse.copy()
    nan_input[nan_input == 0] = np.nan  # NaN reads as empty
    assert np.array_equal(fill_in_fast(nan_input), fill_in_fast(sparse))


def test_ipbasic_on_a_kitti_frame_prints_its_time(traffic):
    sparse = sparse_depth(_camera_points(traffic, 0), traffic.K, traffic.image_size)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for text in ('completion:ipbasic', 'completion:ipbasic:multiscale'):
            method = parse_completion(text)
            method(sparse)
            times = []
            for _ in range(5):
                t = time.perf_counter()
                out = method(sparse)
                times.append(1e3 * (time.perf_counter() - t))
            print(f'\n{text} on {sparse.shape[1]}x{sparse.shape[0]} ({int((sparse > 0).sum())} returns), '
                  f'1 OpenCV thread: median {np.median(times):.1f} ms')
            assert (out > 0).mean() > 0.99
            valid = out > 0
            assert out[valid].min() >= 0.9 * sparse[sparse > 0].min() and out.max() <= sparse.max() + 1e-3
    finally:
        cv2.setNumThreads(threads)


def test_parse_completion():
    assert 'fast (gaussian blur, with extrapolation' in parse_completion('completion:ipbasic').description
    assert 'multiscale (bilateral blur, no extrapolation' in \
        parse_completion('completion:ipbasic:multiscale:noextrapolate').description
    for bad in ('ipbasic', 'completion:nlspn', 'completion:ipbasic:median'):
        with pytest.raises(ValueError):
            parse_completion(bad)


#######################################################################################
# Evaluation on held-out pixels

class _Oracle:
    """A stand-in 'monocular model' that predicts the ground truth itself."""

    def __init__(self, drive):
        self.gt = {drive.timestamp_ns(i): drive.gt_depth(i) for i in drive.frames}

    def process(self, frame, cloud=False):
        return SimpleNamespace(depth=self.gt[frame.stamp_ns])


def test_input_pixels_are_never_scored(tmp_path):
    """A completion 'method' that copies the input and predicts half the true depth elsewhere
    scores abs_rel = 0.5 exactly: no input pixel is scored. The oracle scores 0 on the same
    pixels; the counts add up."""
    from packnet_ros.evaluation.completion import evaluate_sparse, kitti_sparse_frames
    from packnet_ros.evaluation.scoring import EvalSettings
    drive = KittiDrive(mini_drive(tmp_path))
    current = {}

    def half(sparse):  # the input where given, half the true depth elsewhere
        return np.where(sparse > 0, sparse, 0.5 * np.nan_to_num(current['gt'].depth)).astype(np.float32)

    def frames():
        for img, gt, scan in kitti_sparse_frames(drive):
            current['gt'] = gt
            yield img, gt, scan

    specs = [Subsample.parse('beams:16'), Subsample.parse('ratio:0.5')]
    run = evaluate_sparse(frames(), {'oracle': _Oracle(drive)}, {'half': CompletionMethod('half', half, 'test')},
                          specs, EvalSettings(crop=''))
    for sp in specs:
        st = run.stats[str(sp)]
        assert st.frames == 2 and st.n_input_pixels > 0 and st.n_unpredicted == 0
        assert st.n_gt_input_pixels + st.n_heldout_pixels == st.n_gt_pixels
        assert st.n_gt_input_pixels == st.n_input_pixels  # every input pixel is a GT pixel (same scan)
        half_r, oracle_r = run.results[f'half [{sp}]'], run.results[f'oracle [{sp}]']
        assert half_r.metric['abs_rel'] == pytest.approx(0.5, abs=1e-6)
        assert oracle_r.metric['abs_rel'] == pytest.approx(0.0, abs=1e-6)
        assert half_r.metric['n_pixels'] == oracle_r.metric['n_pixels'] == st.n_scored_pixels == st.n_heldout_pixels
        assert run.coverage(f'half [{sp}]') == run.coverage(f'oracle [{sp}]') == 1.0
    assert run.stats['beams:16'].n_input_pixels < run.stats['ratio:0.5'].n_input_pixels


def test_evaluate_cli_kitti_and_bag_agree(tmp_path, capsys):
    """``packnet-ros evaluate --kitti`` (velodyne_points) and ``--bag`` (the bag verb's
    /lidar/points through /tf_static) give the same held-out scores; the monocular model is
    scored on the same pixels; the JSON has n input / scored pixels and mae."""
    from packnet_ros.apps.cli import main
    drive = mini_drive(tmp_path / 'kitti')
    out_k, out_b = tmp_path / 'k.json', tmp_path / 'b.json'
    rc = main(['evaluate', '--kitti', str(tmp_path / 'kitti'), '--checkpoint', 'completion:ipbasic',
               '--checkpoint', 'default', '--sparse-subsample', 'beams:16', '--compare', '--json', str(out_k)])
    assert rc == 0
    doc = json.loads(out_k.read_text())
    ip, mono = doc['sources']['completion:ipbasic'], doc['sources']['packnet_ros_default.ckpt']
    assert ip['sparse']['n_scored_pixels'] == mono['sparse']['n_scored_pixels'] == ip['n_pixels'] == mono['n_pixels']
    assert ip['sparse']['n_input_pixels'] > 1000 and ip['sparse']['subsample'] == 'beams:16'
    assert ip['mae'] < ip['rmse'] and ip['n_frames'] == 2
    assert mono['sparse']['coverage'] == 1.0 and 0.95 < ip['sparse']['coverage'] < 1.0  # 16 beams: a few gaps
    assert ip['sparse']['n_heldout_pixels'] - ip['sparse']['n_unpredicted'] == ip['sparse']['n_heldout_predicted']
    assert doc['settings']['sparse']['subsample'] == ['beams:16']
    assert 'held-out ground truth' in capsys.readouterr().out

    from packnet_ros.ros.bag import write_kitti_bag
    bag = tmp_path / 'bag'
    write_kitti_bag(KittiDrive(drive), bag)
    rc = main(['evaluate', '--bag', str(bag), '--sparse-topic', '/lidar/points', '--checkpoint',
               'completion:ipbasic', '--sparse-subsample', 'beams:16', '--json', str(out_b)])
    assert rc == 0
    b = json.loads(out_b.read_text())
    assert abs(b['sparse']['n_scored_pixels'] - ip['sparse']['n_scored_pixels']) <= 2
    assert b['rmse'] == pytest.approx(ip['rmse'], rel=1e-3) and b['mae'] == pytest.approx(ip['mae'], rel=1e-3)


def test_evaluate_sparse_user_errors(tmp_path, capsys):
    from packnet_ros.apps.cli import main
    mini_drive(tmp_path / 'kitti', frames=(0,))
    kitti = str(tmp_path / 'kitti')
    cases = [
        (['--kitti', kitti, '--checkpoint', 'completion:ipbasic', '--sparse-subsample', 'beams:12'], 'divide'),
        (['--kitti', kitti, '--checkpoint', 'completion:ipbasic', '--sparse-subsample', 'ratio:0'], 'ratio:R'),
        (['--kitti', kitti, '--checkpoint', 'completion:nope'], 'unknown completion method'),
        (['--kitti', kitti, '--checkpoint', 'completion:ipbasic', '--sparse-topic', '/x'], 'drop --sparse-topic'),
        (['--kitti', kitti, '--checkpoint', 'completion:ipbasic', '--mode', 'live'], '--mode offline'),
        (['--kitti', str(DATA / 'kitti_tiny'), '--checkpoint', 'completion:ipbasic'], 'velodyne_points'),
    ]
    for argv, text in cases:
        assert main(['evaluate', *argv]) == 2, argv
        assert text in capsys.readouterr().err, argv
    # the whole scan as input: nothing is left to score (exit 1, the reason is printed)
    assert main(['evaluate', '--kitti', kitti, '--checkpoint', 'completion:ipbasic']) == 1
    assert 'every ground-truth pixel was an input pixel' in capsys.readouterr().out


#######################################################################################
# Bag verb

def test_bag_has_the_velodyne_scans_and_their_transform(tmp_path):
    from packnet_ros.evaluation.lidar import StaticTransforms
    from packnet_ros.io.bag import bag_topics, iter_messages
    from packnet_ros.pointcloud import cloud_msg_field, cloud_msg_to_arrays
    from packnet_ros.ros.bag import write_kitti_bag
    drive = KittiDrive(mini_drive(tmp_path / 'kitti'))
    summary = write_kitti_bag(drive, tmp_path / 'bag')
    assert summary.counts['/lidar/points'] == 2
    assert bag_topics(tmp_path / 'bag')['/lidar/points'] == 'sensor_msgs/msg/PointCloud2'
    msgs = list(iter_messages(tmp_path / 'bag', ['/lidar/points', '/camera/image_raw']))
    clouds = [m.msg for m in msgs if m.topic == '/lidar/points']
    images = [m.msg for m in msgs if m.topic == '/camera/image_raw']
    for i, (cloud, image) in enumerate(zip(clouds, images)):
        assert cloud.header.frame_id == 'velodyne' and cloud.header.stamp == image.header.stamp
        assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'intensity']
        xyz, _ = cloud_msg_to_arrays(cloud)
        scan = drive.velodyne(i)
        assert np.array_equal(xyz, scan[:, :3]) and np.array_equal(cloud_msg_field(cloud, 'intensity'), scan[:, 3])
    tree = StaticTransforms.from_bag(tmp_path / 'bag')
    assert np.allclose(tree.lookup('cam2_optical', 'velodyne'), drive.T_cam_velo, atol=1e-6)
    assert all('odometry' in reason for _, reason in summary.skipped)  # kitti_traffic has no oxts/


def test_bag_of_a_drive_without_velodyne_is_unchanged(kitti_drive, tmp_path):
    from packnet_ros.io.bag import bag_topics
    from packnet_ros.ros.bag import write_kitti_bag
    summary = write_kitti_bag(KittiDrive(kitti_drive), tmp_path / 'bag', frames=[0])
    assert set(bag_topics(tmp_path / 'bag')) == {'/camera/image_raw', '/camera/camera_info', '/lidar/depth', '/odom',
                                                 '/tf_static'}
    assert summary.skipped == []
