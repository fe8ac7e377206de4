"""DMD3C's two training stages (Liang et al., CVPR 2025, Sec. 3) as ``packnet-ros train`` configs:
scans simulated on a teacher's dense depth lie on the nominal HDL-64E beams with empty rows
between them; the SSI term vanishes for an affine copy of its target; the batch split keeps
real LiDAR frames as before and gives LiDAR-less frames a simulated scan; the config checks;
a 2-step stage-1 run on Udacity video frames with a tiny untrained teacher writes a checkpoint
that runs with and without sparse input; the stage-2 config loads. One CPU thread, small sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import DATA, ROOT, load_train_config
from packnet_ros.completion import HDL64E, Subsample
from packnet_ros.completion.sparse import KITTI_T_CAMERA_LIDAR, elevation_deg
from packnet_ros.geometry import scale_intrinsics
from packnet_ros.training.completion import (
    SplitSettings,
    completion_ssi_loss,
    scan_band_deg,
    simulated_scan,
    split_batch,
    split_lidar,
)

NET = (192, 640)
W_MID = NET[1] // 2
KITTI_K = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
UDACITY = DATA / 'udacity_highway' / 'segment_a.mp4'
STAGE1 = ROOT / 'config' / 'train_completion_dmd3c_stage1.yaml'
STAGE2 = ROOT / 'config' / 'train_completion_dmd3c_stage2.yaml'


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')  # conftest: one thread, restored after


def _street(shape=NET, K=None) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic dense depth of a street (H, W) metres: a flat road 1.65 m below the camera
    (KITTI's camera height) up to 60 m, a 60 m wall above it; and K at ``shape``."""
    H, W = shape
    K = scale_intrinsics(KITTI_K, W / 1242.0, H / 375.0) if K is None else K
    v = np.arange(H, dtype=np.float64)[:, None] + np.zeros((1, W))
    below = v > K[1, 2] + 1e-6
    road = np.where(below, 1.65 * K[1, 1] / np.maximum(v - K[1, 2], 1e-6), np.inf)
    return np.minimum(road, 60.0).astype(np.float32), K


def _elevation_of_pixels(depth, K, rows, cols):
    """Independent elevation (degrees) of pixels from the LiDAR, for each candidate beam's
    firing height: (N, 64)."""
    z = depth[rows, cols].astype(np.float64)
    y = (rows - K[1, 2]) * z / K[1, 1]
    x = (cols - K[0, 2]) * z / K[0, 0]
    T = np.linalg.inv(KITTI_T_CAMERA_LIDAR)
    p = np.stack([x, y, z], 1) @ T[:3, :3].T + T[:3, 3]
    return np.stack([elevation_deg(p, h) for h in HDL64E.origin_height_m], 1)


def test_simulated_scan_pixels_lie_on_nominal_beams_with_empty_rows_between():
    depth, K = _street()
    band = scan_band_deg(K)
    assert 0.1 < band < 1.0 / 3.0  # thinner than the tightest beam spacing
    scan, rings = simulated_scan(depth, K)
    kept = scan > 0
    assert np.array_equal(kept, rings >= 0)
    assert np.array_equal(scan[kept], depth[kept])
    r, c = np.nonzero(kept)
    assert r.size > 1000
    # every kept pixel's elevation (from its beam's firing point) is within band/2 of that beam
    phi = _elevation_of_pixels(depth, K, r, c)[np.arange(r.size), rings[r, c]]
    off = phi - np.asarray(HDL64E.angles_deg)[rings[r, c]]
    assert np.abs(off).max() <= band / 2 + 1e-9
    # ... and no pixel near the middle between two beams is kept
    all_r, all_c = np.nonzero(np.isfinite(depth) & (depth > 0))
    phi_all = _elevation_of_pixels(depth, K, all_r, all_c)
    angles = np.asarray(HDL64E.angles_deg)
    dist = np.abs(phi_all - angles[None, :]).min(1)
    assert not kept[all_r, all_c][dist > band / 2 + 1e-6].any()
    # lower block (~0.52 deg spacing, > 3 rows): in every column, kept rows are separated by empty rows
    col = kept[:, W_MID]
    lower_rows = np.nonzero(col & (rings[:, W_MID] >= 33))[0]
    assert lower_rows.size >= 5
    assert (np.diff(lower_rows) >= 2).all()
    # each beam on the road (rings 23-40 stay inside the image in the central columns) appears
    # in nearly every central column, in at most 2 rows there (beam spacing > band)
    for ring in range(23, 41):
        per_col = (rings == ring).sum(0)[W_MID // 2:3 * W_MID // 2]
        assert (per_col <= 2).all() and (per_col > 0).mean() > 0.9
    # beams:16 on the simulated scan keeps only rings of one phase
    settings = SplitSettings()
    inp, _, teacher = split_batch(torch.full((1, 1) + NET, float('nan')), torch.from_numpy(K)[None].float(),
                                  settings, np.random.default_rng(1), 'none', torch.from_numpy(depth)[None, None])
    in_rings = np.unique(rings[inp[0, 0].numpy() > 0])
    assert in_rings.size >= 5 and np.unique(in_rings % 4).size == 1



def test_simulated_scan_refuses_a_bad_band():
    depth, K = _street()
    with pytest.raises(ValueError, match='band_deg'):
        simulated_scan(depth, K, band_deg=0.0)


def test_ssi_term_vanishes_for_an_affine_copy_of_the_teacher():
    g = torch.Generator().manual_seed(0)
    teacher = 2.0 + 50.0 * torch.rand((2, 1, 24, 40), generator=g)
    teacher[0, 0, :3] = float('nan')  # input pixels / no target
    student = torch.empty_like(teacher)
    student[0] = 0.5 * torch.nan_to_num(teacher[0], nan=7.0) + 3.0
    student[1] = 2.0 * teacher[1] - 1.5
    student.requires_grad_(True)
    loss = completion_ssi_loss(student, teacher)
    assert float(loss.detach()) < 1e-4
    loss.backward()
    assert torch.isfinite(student.grad).all()
    noisy = student.detach() + 5.0 * torch.rand(student.shape, generator=g)
    assert float(completion_ssi_loss(noisy, teacher)) > 0.1
    # the same for any scale of the target (per-image normalisation)
    assert abs(float(completion_ssi_loss(noisy, 3.0 * teacher)) - float(completion_ssi_loss(noisy, teacher))) < 1e-4
    # no target pixel: zero, still attached to the prediction
    empty = completion_ssi_loss(student, torch.full_like(teacher, float('nan')))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_split_batch_keeps_real_lidar_frames_and_simulates_the_others():
    depth, K = _street()
    lidar_scan, _ = simulated_scan(depth, K)  # a "real" scan for image 0
    lidar = torch.full((2, 1) + NET, float('nan'))
    lidar[0, 0] = torch.from_numpy(np.where(lidar_scan > 0, lidar_scan, np.nan))
    Ks = torch.from_numpy(np.stack([K, K])).float()
    teacher = torch.from_numpy(np.stack([depth, depth]))[:, None] * 1.1
    settings = SplitSettings((Subsample('beams', 16.0),))
    inp, tgt, tt = split_batch(lidar, Ks, settings, np.random.default_rng(5), 'none', teacher)
    ref_inp, ref_tgt = split_lidar(lidar, Ks, settings, np.random.default_rng(5))
    # image 0 (real LiDAR): exactly today's split, no teacher target
    assert torch.equal(inp[0], ref_inp[0]) and torch.equal(torch.isnan(tgt[0]), torch.isnan(ref_tgt[0]))
    assert torch.isnan(tt[0]).all()
    # image 1 (no LiDAR): input from the teacher's simulated scan, target = teacher on the rest
    i1 = inp[1, 0].numpy()
    assert (i1 > 0).sum() > 100 and torch.isnan(tgt[1]).all()
    t1 = tt[1, 0].numpy()
    assert not (np.isfinite(t1) & (i1 > 0)).any()
    assert np.isfinite(t1).sum() + (i1 > 0).sum() == np.isfinite(depth).sum()
    assert np.allclose(i1[i1 > 0], 1.1 * depth[i1 > 0])
    # without a teacher, split_batch is split_lidar
    a = split_batch(lidar, Ks, settings, np.random.default_rng(5))
    assert a[2] is None and torch.equal(a[0], ref_inp)


def _stage1_dict(teacher: str, **over) -> dict:
    """The shipped stage-1 config with absolute paths, a few Udacity frames, 64x224, 2 steps."""
    cfg = yaml.safe_load(STAGE1.read_text())
    cfg['model']['image_shape'] = [64, 224]
    cfg['loss']['teacher'] = teacher
    cfg['data']['train'] = [{'type': 'video', 'path': str(UDACITY), 'intrinsics': str(ROOT / 'config' / 'udacity_highway_camera.yaml'),
                             'crop': [276, 60, 0, 0], 'frame_step': 3, 'stop': 12, 'context_offsets': [], 'cache': 'memory'}]
    cfg['data'].update({'val': [], 'batch_size': 2, 'augment': False})
    cfg['trainer'].update({'max_epochs': 2, 'max_steps': 2, 'precision': '32-true', 'log_every_n_steps': 1})
    cfg.pop('output_dir', None)
    return cfg


def test_stage_configs_load_and_checks_refuse_bad_keys(tmp_path):
    from packnet_ros.training.config import load_config
    shipped = yaml.safe_load(STAGE1.read_text())
    assert shipped['loss']['teacher'] == '../outputs/train/cand_bts_tiny/model.ckpt'  # never saw kitti_traffic
    if (STAGE1.parent / shipped['loss']['teacher']).is_file():
        s1 = load_config(STAGE1)
    else:  # outputs/ is not in the repository: the same config with a built-in untrained teacher
        shipped['loss']['teacher'] = 'untrained:BTS-ResNet18:0.25'
        (tmp_path / 'udacity_highway_camera.yaml').write_text((ROOT / 'config' / 'udacity_highway_camera.yaml').read_text())
        (tmp_path / 'stage1.yaml').write_text(yaml.safe_dump(shipped))
        s1 = load_config(tmp_path / 'stage1.yaml')
    assert s1.model.sparse_branch and s1.loss.completion_teacher_scans and s1.loss.teacher_weight == 0.0
    assert all(s['type'] == 'video' and s['context_offsets'] == [] for s in s1.data.train)
    s2 = load_config(STAGE2)
    assert s2.model.sparse_branch and not s2.loss.completion_teacher_scans and s2.loss.completion_ssi_weight > 0
    assert s2.model.init_checkpoint.endswith('completion_dmd3c_stage1/model.ckpt')
    assert s2.loss.supervised_term == 'silog'
    assert (s2.model.sparse_guide, s2.model.guide_residual) == (s1.model.sparse_guide, s1.model.guide_residual)
    def base():
        return _stage1_dict('untrained:BTS-ResNet18:0.25')
    with pytest.raises(ValueError, match='completion_teacher_scans needs loss.teacher'):
        load_train_config(tmp_path, base(), **{'loss.teacher': ''})
    with pytest.raises(ValueError, match='need model.sparse_branch: true'):
        load_train_config(tmp_path, base(), **{'model.sparse_branch': False, 'model.sparse_guide': 'none',
                                             'model.guide_residual': 'image'})
    with pytest.raises(ValueError, match='completion_ssi_weight is -1'):
        load_train_config(tmp_path, base(), **{'loss.completion_ssi_weight': -1.0})
    (tmp_path / 'x.onnx').write_bytes(b'')  # only its existence is checked when the config loads
    with pytest.raises(ValueError, match="teacher_output 'relative'"):
        load_train_config(tmp_path, base(), **{'loss.teacher': 'x.onnx', 'loss.teacher_output': 'relative'})


@pytest.mark.slow
@pytest.mark.skipif(not UDACITY.exists(), reason='needs ../shared/data/udacity_highway')
def test_two_stage1_steps_on_video_write_a_checkpoint_that_runs_with_and_without_sparse_input(tmp_path):
    from packnet_ros.checkpoint import ModelSpec, load_checkpoint, save_checkpoint
    from packnet_ros.completion import sparse_network_input
    from packnet_ros.inference import DepthEstimator
    from packnet_ros.training.train import train
    torch.manual_seed(0)
    spec = ModelSpec(depth_net='BTS-ResNet18', version='1A', width=0.25, image_shape=(64, 224), max_depth=80.0,
                     pose_net=None, options={'max_depth': 80.0})
    teacher = save_checkpoint(tmp_path / 'teacher.ckpt', spec.build_depth_net(), spec)
    cfg = load_train_config(tmp_path, _stage1_dict(str(teacher)))
    # the stage-1 objective on a batch without LiDAR: the teacher-scan SSI term, with a gradient
    from packnet_ros.training.module import SfmLightningModule
    module = SfmLightningModule(cfg)
    depth, K = _street((64, 224))
    batch = {'rgb': torch.rand((2, 3, 64, 224), generator=torch.Generator().manual_seed(1)),
             'depth': torch.full((2, 1, 64, 224), float('nan')), 'intrinsics': torch.from_numpy(np.stack([K, K])).float()}
    out = module.compute_loss(batch)
    assert float(out['teacher_scan_ssi']) > 0 and 'teacher_ssi' not in out  # teacher_weight 0: no dense term
    assert out['loss'].requires_grad and float(out['supervised']) == 0.0
    report = train(cfg, out_dir=str(tmp_path / 'run'), progress=False)
    assert report['steps'] == 2 and report['data']['lidar_samples'] == 0
    ckpt = load_checkpoint(tmp_path / 'run' / 'model.ckpt')
    assert ckpt.spec.options == {'max_depth': 80.0, 'sparse_branch': True, 'sparse_guide': 'ipbasic',
                                 'guide_residual': 'sparse'}
    est = DepthEstimator.from_loaded(ckpt, device='cpu', precision='fp32', backend='eager')
    assert est.takes_sparse
    rgb = (np.random.default_rng(0).random((64, 224, 3)) * 255).astype(np.uint8)
    depth, K = _street((64, 224))
    scan, _ = simulated_scan(depth, K)
    mono = est.predict(rgb, K).depth
    fused = est.finish(est.run(rgb, K, sparse=sparse_network_input(scan, 'ipbasic'))).depth
    for d in (mono, fused):
        assert d.shape == (64, 224) and np.isfinite(d).all() and (d > 0).all()
    assert not np.array_equal(mono, fused)
    # stage 2 starts from it
    s2 = yaml.safe_load(STAGE2.read_text())
    s2['model'].update({'image_shape': [64, 224], 'init_checkpoint': str(tmp_path / 'run' / 'model.ckpt')})
    s2['data'] = {'train': _stage1_dict('')['data']['train'], 'num_workers': 0}
    module = SfmLightningModule(load_train_config(tmp_path, s2))
    loaded = module.model.depth_net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in ckpt.depth_net.state_dict().items())
