"""Training the learned completion (``model.sparse_branch``): the ring index of projected
LiDAR pixels, the input / target split of each frame's LiDAR (the requested beams, disjoint
sets), the config checks, a 2-step run whose checkpoint runs with and without sparse input,
and ``packnet-ros evaluate`` with that checkpoint and a sparse topic (input pixels never
scored). Real kitti_traffic scans and kitti_tiny frames at small sizes, one CPU thread."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_completion import TRAFFIC, mini_drive

from conftest import KITTI_DRIVE, load_train_config
from packnet_ros.completion import HDL64E, Subsample, beam_rings
from packnet_ros.completion.sparse import KITTI_T_CAMERA_LIDAR, pixel_rings, project_to_depth
from packnet_ros.geometry import scale_intrinsics
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.training.completion import SplitSettings, split_frame, split_lidar

NET = (192, 640)


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')  # conftest: one thread, restored after


@pytest.fixture(scope='module')
def traffic_frame():
    """Frame 0 of kitti_traffic at the network's 192x640: (depth (H, W) metres, 0 = none,
    the scan's ring per pixel from :func:`beam_rings` (-1 = none), K at that size)."""
    drive = KittiDrive(TRAFFIC)
    pts = drive.velodyne(0)[:, :3].astype(np.float64)
    rings = beam_rings(pts)
    T = drive.T_cam_velo
    cam = pts @ T[:3, :3].T + T[:3, 3]
    H, W = drive.image(0).shape[:2]
    K = scale_intrinsics(drive.K, NET[1] / W, NET[0] / H)
    depth = project_to_depth(cam, K, NET)
    ring_img = np.full(NET, -1, dtype=np.int64)
    ok = cam[:, 2] > 0
    u = np.floor(K[0, 0] * cam[ok, 0] / cam[ok, 2] + K[0, 2] + 0.5).astype(np.int64)
    v = np.floor(K[1, 1] * cam[ok, 1] / cam[ok, 2] + K[1, 2] + 0.5).astype(np.int64)
    inside = (u >= 0) & (u < NET[1]) & (v >= 0) & (v < NET[0])
    order = np.argsort(-cam[ok, 2][inside])  # nearest written last, as the projection keeps it
    ring_img[v[inside][order], u[inside][order]] = rings[ok][inside][order]
    assert np.allclose(drive.T_cam_velo, KITTI_T_CAMERA_LIDAR, atol=1e-7)
    return depth, ring_img, K


def test_pixel_rings_of_a_synthetic_scan_are_exact():
    """Points on the nominal HDL-64E beams (ring origin heights included), projected into a
    full-resolution KITTI image: every pixel gets its beam back."""
    rng = np.random.default_rng(0)
    ring = rng.integers(0, 40, 20000)  # the beams that reach the image
    r = rng.uniform(5.0, 60.0, ring.size)
    az = np.radians(rng.uniform(-35, 35, ring.size))
    theta = np.radians(np.asarray(HDL64E.angles_deg)[ring])
    z = r * np.tan(theta) + np.asarray(HDL64E.origin_height_m)[ring]
    pts = np.stack([r * np.cos(az), r * np.sin(az), z], 1)
    T = KITTI_T_CAMERA_LIDAR
    cam = pts @ T[:3, :3].T + T[:3, 3]
    K = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
    depth = project_to_depth(cam, K, (375, 1242))
    got = pixel_rings(depth, K)
    # the ring of the nearest point of each pixel
    u = np.floor(K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2] + 0.5).astype(int)
    v = np.floor(K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2] + 0.5).astype(int)
    ok = (u >= 0) & (u < 1242) & (v >= 0) & (v < 375) & (cam[:, 2] > 0)
    truth = np.full((375, 1242), -1)
    order = np.argsort(-cam[ok, 2])
    truth[v[ok][order], u[ok][order]] = ring[ok][order]
    has = depth > 0
    assert has.sum() > 10000 and np.array_equal(got == -1, ~has)
    assert (got[has] == truth[has]).mean() > 0.99


def test_split_keeps_the_requested_beams_and_input_and_target_are_disjoint(traffic_frame):
    depth, ring_img, K = traffic_frame
    valid = depth > 0
    settings = SplitSettings()
    rings = pixel_rings(depth, K)
    for n in (32, 16, 8):
        step = 64 // n
        for phase in (0, step - 1):
            inp, target = split_frame(depth, K, Subsample('beams', float(n)), np.random.default_rng(0), settings, phase)
            has_in, has_t = inp > 0, np.isfinite(target)
            assert not (has_in & has_t).any() and np.array_equal(has_in | has_t, valid)  # disjoint, complete
            np.testing.assert_array_equal(inp[has_in], depth[has_in])
            np.testing.assert_array_equal(target[has_t], depth[has_t])
            assert np.all(rings[has_in] % step == phase) and np.all(rings[has_t] % step != phase)
            # against the scan's own rings (beam_rings): the approximation keeps mostly the right beams
            kept_true = ring_img[valid] % step == phase
            # (measured on this frame: 32 beams 0.73, 16 beams 0.86-0.90, 8 beams 0.93-0.95; a
            # neighbouring ring is the usual miss, which matters less the fewer beams are kept)
            assert (has_in[valid] == kept_true).mean() > {32: 0.7, 16: 0.83, 8: 0.9}[n]
            assert abs(has_in.sum() / valid.sum() - 1 / step) < 0.5 / step
    inp, target = split_frame(depth, K, Subsample('ratio', 0.25), np.random.default_rng(0), settings)
    assert abs((inp > 0).sum() / valid.sum() - 0.25) < 0.02 and not ((inp > 0) & np.isfinite(target)).any()


def test_split_lidar_on_a_batch(traffic_frame):
    depth, _, K = traffic_frame
    d = torch.from_numpy(np.where(depth > 0, depth, np.nan))[None, None].repeat(2, 1, 1, 1)
    d[1] = float('nan')  # an image without LiDAR
    Ks = torch.from_numpy(K).float()[None].repeat(2, 1, 1)
    settings = SplitSettings.from_config(['beams:16'], 0.0)
    inp, target = split_lidar(d, Ks, settings, np.random.default_rng(0))
    assert inp.shape == (2, 1, *NET) and target.shape == (2, 1, *NET)
    assert ((inp[0] > 0) ^ torch.isfinite(target[0])).sum() == torch.isfinite(d[0]).sum()
    assert not (inp[1] > 0).any() and not torch.isfinite(target[1]).any()
    guided, _ = split_lidar(d, Ks, settings, np.random.default_rng(0), 'ipbasic')
    assert guided.shape == (2, 2, *NET) and torch.equal(guided[:, :1], inp)
    assert (guided[0, 1] > 0).float().mean() > 0.5  # IP-Basic's dense channel
    mono, whole = split_lidar(d, Ks, SplitSettings.from_config(['beams:16'], 0.999999), np.random.default_rng(0))
    assert mono is None and torch.equal(torch.isfinite(whole), torch.isfinite(d))
    with pytest.raises(ValueError, match=r'intrinsics must be \(2, 3, 3\)'):
        split_lidar(d, Ks[:1], settings, np.random.default_rng(0))


@pytest.mark.parametrize('inputs, fraction, message', [
    ([], 0.0, 'completion_inputs is empty'),
    (['all'], 0.0, 'leaves no target'),
    (['ratio:1'], 0.0, 'leaves no target'),
    (['beams:64'], 0.0, 'must divide 64 and be below it'),
    (['beams:5'], 0.0, 'must divide 64'),
    (['beams:16'], 1.0, 'completion_monocular_fraction'),
    (['beams'], 0.0, 'beams:N needs a positive integer'),
])
def test_split_settings_refuse_bad_values(inputs, fraction, message):
    with pytest.raises(ValueError, match=message):
        SplitSettings.from_config(inputs, fraction)


def _config(tmp_path, **over):
    cfg = {
        'name': 'completion_test', 'seed': 3, 'licence': 'CC BY-NC-SA 4.0 (test)',
        'model': {'depth_net': 'BTS-ResNet18', 'width': 0.25, 'image_shape': [64, 224], 'sparse_branch': True,
                  'sparse_guide': 'ipbasic'},
        'loss': {'mode': 'supervised', 'completion_inputs': ['beams:16', 'ratio:0.3']},
        'optim': {'lr': 1e-3},
        'data': {'train': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [1, 2, 3]}],
                 'batch_size': 2, 'num_workers': 0, 'augment': False, 'depth_resize': 'preserve'},
        'trainer': {'max_epochs': 2, 'max_steps': 2, 'precision': '32-true', 'log_every_n_steps': 1, 'threads': 1},
    }
    return load_train_config(tmp_path, cfg, **over)


def test_config_checks(tmp_path):
    with pytest.raises(ValueError, match='model.sparse_branch needs a BTS or SID model.depth_net'):
        _config(tmp_path, **{'model.depth_net': 'PackNetSlim01'})
    with pytest.raises(ValueError, match='needs model.sparse_branch: true'):
        _config(tmp_path, **{'model.sparse_branch': False})
    with pytest.raises(ValueError, match="model.sparse_guide is 'dense'"):
        _config(tmp_path, **{'model.sparse_guide': 'dense'})
    with pytest.raises(ValueError, match='must divide 64'):
        _config(tmp_path, **{'loss.completion_inputs': ['beams:7']})
    with pytest.raises(ValueError, match="model.guide_residual is 'rgb'"):
        _config(tmp_path, **{'model.guide_residual': 'rgb'})
    with pytest.raises(ValueError, match='needs model.sparse_guide: ipbasic'):
        _config(tmp_path, **{'model.guide_residual': 'sparse', 'model.sparse_guide': 'none'})
    from packnet_ros.training.module import model_spec
    assert model_spec(_config(tmp_path)).options == {'max_depth': 80.0, 'sparse_branch': True, 'sparse_guide': 'ipbasic'}
    assert model_spec(_config(tmp_path, **{'model.guide_residual': 'sparse'})).options['guide_residual'] == 'sparse'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 2-step completion run at 64x224 (kitti_tiny frames 1-3): the run folder."""
    from packnet_ros.training.train import train
    tmp = tmp_path_factory.mktemp('completion_run')
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = train(_config(tmp), out_dir=str(tmp / 'run'), progress=False)
    finally:
        torch.set_num_threads(n)
    assert report['steps'] == 2
    return tmp / 'run'


@pytest.mark.slow
def test_two_steps_write_a_checkpoint_that_runs_with_and_without_sparse_input(trained, tmp_path):
    from packnet_ros.checkpoint import load_checkpoint
    from packnet_ros.inference import DepthEstimator
    ckpt = load_checkpoint(trained / 'model.ckpt')
    assert ckpt.spec.options == {'max_depth': 80.0, 'sparse_branch': True, 'sparse_guide': 'ipbasic'}
    assert ckpt.spec.image_shape == (64, 224)
    est = DepthEstimator.from_loaded(ckpt, device='cpu', precision='fp32', backend='eager')
    assert est.takes_sparse and est.sparse_guide == 'ipbasic'
    drive = KittiDrive(KITTI_DRIVE)
    rgb = drive.image(2)
    H, W = rgb.shape[:2]
    K = scale_intrinsics(drive.K, 224 / W, 64 / H)
    from packnet_ros.completion import sparse_network_input
    from packnet_ros.data.dataset import resize_depth_preserve
    lidar = np.nan_to_num(resize_depth_preserve(drive.gt_depth(2), 64, 224))
    inp, _ = split_frame(lidar, K, Subsample('beams', 16.0), np.random.default_rng(0), SplitSettings(), 0)
    mono = est.predict(rgb, drive.K).depth
    fused = est.finish(est.run(rgb, drive.K, sparse=sparse_network_input(inp, 'ipbasic'))).depth
    for depth in (mono, fused):
        assert depth.shape == (64, 224) and np.isfinite(depth).all() and (depth > 0).all()
    assert not np.array_equal(mono, fused)
    # a monocular checkpoint initialises the completion network (the branch keeps its fresh init)
    import dataclasses

    from packnet_ros.checkpoint import save_checkpoint
    from packnet_ros.training.module import SfmLightningModule
    mono_spec = dataclasses.replace(ckpt.spec, options={'max_depth': 80.0})
    net = mono_spec.build_depth_net()
    net.load_state_dict({k: v for k, v in ckpt.depth_net.state_dict().items() if not k.startswith('sparse_branch.')})
    path = tmp_path / 'mono.ckpt'
    save_checkpoint(path, net, mono_spec)
    module = SfmLightningModule(_config(tmp_path, **{'model.init_checkpoint': str(path)}))
    loaded = module.model.depth_net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())


class _HalfTruth:
    """A stand-in learned pipeline: half the true depth on held-out pixels, 1000 m on the
    pixels of its sparse input (projected at the ground truth's size as the evaluator does):
    any scored input pixel would move abs_rel away from 0.5."""

    def __init__(self, drive):
        self.drive = drive
        self.gt = {drive.timestamp_ns(i): drive.gt_depth(i) for i in drive.frames}
        self.seen = 0

    def process(self, frame, cloud=False):
        gt = self.gt[frame.stamp_ns]
        inp = project_to_depth(frame.sparse.points, frame.K, gt.shape) > 0
        self.seen += 1
        depth = np.where(inp, 1000.0, 0.5 * np.nan_to_num(gt, nan=10.0)).astype(np.float32)
        return SimpleNamespace(depth=depth, timings_ms={'total_ms': 1.0},
                               completion=SimpleNamespace(mode='completion', reason=''))


def test_learned_sources_are_scored_on_held_out_pixels_only(tmp_path):
    from packnet_ros.evaluation.completion import evaluate_sparse, kitti_sparse_frames
    from packnet_ros.evaluation.scoring import EvalSettings
    drive = KittiDrive(mini_drive(tmp_path))
    fake = _HalfTruth(drive)
    specs = [Subsample.parse('beams:16'), Subsample.parse('beams:8')]
    run = evaluate_sparse(kitti_sparse_frames(drive), {}, {}, specs, EvalSettings(crop='', max_depth=2000.0),
                          learned={'learned': fake})
    assert fake.seen == 4  # once per frame and subsample
    for sp in specs:
        r, st = run.results[f'learned [{sp}]'], run.stats[str(sp)]
        assert r.metric['abs_rel'] == pytest.approx(0.5, abs=1e-6)
        assert r.metric['n_pixels'] == st.n_heldout_pixels and st.n_gt_input_pixels == st.n_input_pixels > 0
        assert run.latency_median_ms(f'learned [{sp}]') == 1.0


@pytest.mark.slow
def test_evaluate_json_of_a_learned_checkpoint_with_a_sparse_topic(trained, tmp_path, capsys):
    """``packnet-ros evaluate --bag --sparse-topic`` with the learned checkpoint and IP-Basic:
    both scored on the same held-out pixels; the JSON reports input and scored pixel counts,
    the learned source its latency and that it ran with its sparse branch."""
    from packnet_ros.apps.cli import main
    from packnet_ros.ros.bag import write_kitti_bag
    drive = mini_drive(tmp_path / 'kitti')
    bag = tmp_path / 'bag'
    write_kitti_bag(KittiDrive(drive), bag)
    out = tmp_path / 'o.json'
    rc = main(['evaluate', '--bag', str(bag), '--sparse-topic', '/lidar/points', '--checkpoint',
               str(trained / 'model.ckpt'), '--checkpoint', 'completion:ipbasic', '--sparse-subsample', 'beams:16',
               '--device', 'cpu', '--compare', '--json', str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    learned, ip = doc['sources']['model.ckpt'], doc['sources']['completion:ipbasic']
    sl, si = learned['sparse'], ip['sparse']
    assert sl['learned'] is True and sl['monocular_fallback_frames'] == 0 and sl['latency_ms_median'] > 0
    assert sl['n_input_pixels'] == si['n_input_pixels'] > 1000 and sl['frames'] == 2
    assert sl['n_gt_input_pixels'] + sl['n_heldout_pixels'] == sl['n_gt_pixels']
    assert sl['n_scored_pixels'] == si['n_scored_pixels'] == learned['n_pixels'] == ip['n_pixels']
    assert learned['n_pixels'] <= sl['n_heldout_pixels'] - sl['n_unpredicted']
    assert np.isfinite(learned['rmse']) and learned['n_frames'] == 2
    assert 'learned completion (sparse branch, IP-Basic guide)' in capsys.readouterr().out
