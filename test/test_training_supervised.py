"""LiDAR-supervised and semi-supervised training (loss.mode), and two-process DDP training."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import KITTI_DRIVE, ROOT, load_train_config, with_overrides
from packnet_ros.checkpoint import load_checkpoint
from packnet_ros.inference import DepthEstimator
from packnet_ros.training.config import load_config


def _cfg_dict(**over) -> dict:
    cfg = {
        'name': 'lidar', 'seed': 3, 'licence': 'CC BY-NC-SA 4.0 (test)',
        'model': {'depth_net': 'PackNetSlim01', 'width': 0.25, 'image_shape': [64, 224]},
        'loss': {'velocity_weight': 0.1},
        'optim': {'lr': 1e-3, 'pose_lr': 1e-3},
        'data': {'train': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [1, 2, 3]}],
                 'batch_size': 2, 'num_workers': 0, 'augment': False},
        'trainer': {'max_epochs': 2, 'max_steps': 2, 'precision': 'auto', 'log_every_n_steps': 1,
                    'threads': 2},
    }
    return with_overrides(cfg, over)


def _config(tmp_path, **over):
    return load_train_config(tmp_path, _cfg_dict(**over))


def test_loss_mode_keys_load_with_defaults_and_are_checked(tmp_path):
    cfg = _config(tmp_path)
    assert (cfg.loss.mode, cfg.loss.supervised_term, cfg.loss.lidar_weight) == ('self_supervised', 'silog', 1.0)
    assert cfg.data.depth_resize == 'nearest'
    cfg = _config(tmp_path, **{'loss.mode': 'semi_supervised', 'loss.supervised_term': 'l1-inv',
                               'loss.lidar_weight': 9, 'data.depth_resize': 'preserve'})
    assert cfg.loss.mode == 'semi_supervised' and cfg.loss.lidar_weight == 9.0
    assert isinstance(cfg.loss.lidar_weight, float) and cfg.loss.supervised_term == 'l1-inv'
    path = tmp_path / 'cfg.yaml'
    for key, value, text in [
            ('loss.mode', 'fully', "loss.mode is 'fully', expected one of self_supervised, semi_supervised, "
                                   'supervised'),
            ('loss.supervised_term', 'l2', "loss.supervised_term is 'l2', expected one of silog, l1, l1-inv"),
            ('loss.lidar_weight', 'heavy', "loss.lidar_weight is 'heavy' (str), expected float"),
            ('loss.lidar_weight', -1, 'loss.lidar_weight is -1.0, expected a number >= 0'),
            ('loss.mode', ['supervised'], "loss.mode is ['supervised'] (list), expected str"),
            ('data.depth_resize', 'cubic', "data.depth_resize is 'cubic', expected one of nearest, preserve"),
            ('data.zoom', [0.5, 2.0], 'data.zoom is [0.5, 2.0], expected [s_min, s_max] with 1 <= s_min <= s_max '
                                      '([1, 1] = no zoom)'),
            ('data.zoom', [1.0, 2.0], 'data.zoom [1.0, 2.0] needs loss.mode: supervised (a zoomed item is the '
                                      'scene with its depth divided by the factor; the motion to the context '
                                      'frames is not rigid in it, so photometric losses cannot use it); set '
                                      'data.zoom: [1, 1]'),
            ('data.zoom_prob', 2.0, 'data.zoom_prob is 2.0, expected a number in [0, 1]')]:
        path.write_text(yaml.safe_dump(_cfg_dict(**{key: value})))
        with pytest.raises(ValueError) as exc:
            load_config(path)
        assert str(exc.value) == f'{path}: {text}', str(exc.value)


def test_shipped_lidar_configs_load():
    for name, mode in (('train_semisup_kitti_tiny', 'semi_supervised'), ('train_supervised_kitti_tiny', 'supervised'),
                       ('train_bts_kitti_tiny', 'supervised'), ('train_sid_kitti_tiny', 'supervised')):
        path = ROOT / 'config' / f'{name}.yaml'
        assert path.read_text().startswith('# ')  # header comment: what it is, which frames
        cfg = load_config(path)
        assert cfg.loss.mode == mode and cfg.model.image_shape == [96, 320]
        for part in (cfg.data.train, cfg.data.val):
            assert [s['targets'] for s in part] == [[1, 2, 3, 4, 5]]
            assert all('kitti_traffic' not in s['path'] and cfg.resolve(s['path']).exists() for s in part)


def _batch(cfg, lidar: bool) -> dict:
    from torch.utils.data import default_collate

    from packnet_ros.data import SfmDataset, load_sequences
    ds = SfmDataset(load_sequences(cfg.data.train, cfg.base_dir), tuple(cfg.model.image_shape))
    batch = default_collate([ds[0], ds[1]])
    if not lidar:
        batch['depth'] = torch.full_like(batch['depth'], float('nan'))
    assert bool(torch.isfinite(batch['depth']).any()) == lidar
    return batch


@pytest.mark.filterwarnings('ignore:You are trying to `self.log')
def test_semi_supervised_step_without_lidar_equals_the_self_supervised_step(tmp_path):
    from packnet_ros.training.module import SfmLightningModule
    cfg = _config(tmp_path, **{'loss.mode': 'semi_supervised', 'loss.lidar_weight': 2.0})
    torch.manual_seed(0)
    module = SfmLightningModule(cfg)
    no_lidar, with_lidar = _batch(cfg, lidar=False), _batch(cfg, lidar=True)
    losses = {}
    for mode in ('semi_supervised', 'self_supervised'):
        module.mode = mode
        for name, batch in (('none', no_lidar), ('lidar', with_lidar)):
            torch.manual_seed(1)
            losses[mode, name] = module.training_step(batch, 0).detach()
    assert torch.equal(losses['semi_supervised', 'none'], losses['self_supervised', 'none'])
    module.mode = 'semi_supervised'
    out = module.compute_loss(with_lidar)
    assert float(out['lidar_images']) == 2 and float(out['supervised'].detach()) > 0
    torch.testing.assert_close(out['loss'], out['self_supervised'] + 2.0 * out['supervised'])
    assert float(losses['semi_supervised', 'lidar']) > float(losses['self_supervised', 'lidar'])


@pytest.mark.filterwarnings('ignore:You are trying to `self.log')
def test_supervised_step_trains_the_depth_net_only(tmp_path):
    from packnet_ros.training.module import SfmLightningModule
    cfg = _config(tmp_path, **{'loss.mode': 'supervised', 'loss.supervised_term': 'l1'})
    module = SfmLightningModule(cfg)
    opt = module.configure_optimizers()['optimizer']
    assert len(opt.param_groups) == 1  # PoseNet is not optimised
    assert not any(p.requires_grad for p in module.model.pose_net.parameters())
    loss = module.training_step(_batch(cfg, lidar=True), 0)
    assert torch.isfinite(loss) and float(loss) > 0
    loss.backward()
    assert all(p.grad is None for p in module.model.pose_net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.model.depth_net.parameters())
    # a batch without LiDAR: zero loss that still reaches every depth parameter (DDP needs that)
    module.zero_grad()
    empty = module.training_step(_batch(cfg, lidar=False), 0)
    assert float(empty) == 0.0 and empty.requires_grad
    empty.backward()


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['semi_supervised', 'supervised'])
def test_two_lidar_steps_on_kitti_tiny_write_a_loadable_checkpoint(tmp_path, mode):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from packnet_ros.training.train import train
    cfg = _config(tmp_path, **{'loss.mode': mode, 'data.depth_resize': 'preserve',
                               'data.val': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [2]}]})
    report = train(cfg, out_dir=str(tmp_path / 'run'), progress=False)
    assert report['steps'] == 2 and report['loss_mode'] == mode and report['data']['lidar_samples'] == 3
    assert report['val_after']['n_frames'] == 1
    ea = EventAccumulator(str(tmp_path / 'run' / 'tb'))
    ea.Reload()
    for tag in ('train/loss_step', 'train/supervised_step'):
        values = [e.value for e in ea.Scalars(tag)]
        assert len(values) == 2 and all(np.isfinite(values)), (tag, values)
    if mode == 'semi_supervised':
        assert all(np.isfinite(e.value) for e in ea.Scalars('train/photometric_step'))
    path = tmp_path / 'run' / 'model.ckpt'
    ckpt = load_checkpoint(path)
    assert ckpt.spec.image_shape == (64, 224)
    assert (ckpt.pose_net is None) == (mode == 'supervised')
    est = DepthEstimator.from_checkpoint(str(path), device='cpu', precision='fp32')
    from packnet_ros.io.kitti import KittiDrive
    drive = KittiDrive(KITTI_DRIVE)
    depth = est.predict(drive.image(2), drive.K).depth
    assert depth.shape == (64, 224) and not np.isnan(depth).any()


def test_lidar_modes_refuse_data_without_lidar(tmp_path):
    from packnet_ros.training.train import build_data
    drive = tmp_path / 'drive'
    import shutil
    shutil.copytree(KITTI_DRIVE, drive, ignore=shutil.ignore_patterns('proj_depth'))
    for name in ('calib_cam_to_cam.txt', 'calib_velo_to_cam.txt', 'calib_imu_to_velo.txt'):
        if (KITTI_DRIVE.parent / name).exists():
            shutil.copy(KITTI_DRIVE.parent / name, tmp_path / name)
    cfg = _config(tmp_path, **{'loss.mode': 'supervised',
                               'data.train': [{'type': 'kitti', 'path': str(drive), 'targets': [1, 2]}]})
    with pytest.raises(ValueError, match='loss.mode supervised needs LiDAR depth, and no training sample has any'):
        build_data(cfg)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    """Lightning DDP (gloo) on two CPU processes started by torchrun, rendezvous on 127.0.0.1:
    after 2 steps both ranks hold the same weights (each writes its parameters' SHA-256)."""
    from packnet_ros.training.module import SfmLightningModule
    from packnet_ros.training.train import weights_digest
    cfg_path = tmp_path / 'cfg.yaml'
    cfg_path.write_text(yaml.safe_dump(_cfg_dict(**{
        'loss.mode': 'semi_supervised', 'data.batch_size': 1,
        'data.train': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [1, 2, 3, 4]}],
        'trainer.accelerator': 'cpu', 'trainer.devices': 2, 'trainer.strategy': 'ddp',
        'trainer.precision': '32-true', 'trainer.threads': 1})))
    out = tmp_path / 'run'
    env = {**os.environ, 'MASTER_ADDR': '127.0.0.1', 'OMP_NUM_THREADS': '1'}
    if Path('/sys/class/net/lo').exists():
        env['GLOO_SOCKET_IFNAME'] = 'lo'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1', '--nproc_per_node', '2',
           '--master_addr', '127.0.0.1', '--master_port', str(_free_port()),
           '-m', 'packnet_ros.apps.cli', 'train', '--config', str(cfg_path), '--out', str(out), '--no-progress']
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    digests = [(out / f'weights_sha256.rank{r}').read_text().strip() for r in (0, 1)]
    assert len(digests[0]) == 64 and digests[0] == digests[1]
    report = json.loads((out / 'report.json').read_text())
    assert report['world_size'] == 2 and report['steps'] == 2 and report['weights_sha256'] == digests[0]
    # the digest is that of the saved weights, and they moved away from the initial ones
    cfg = load_config(cfg_path)
    import lightning as L
    L.seed_everything(cfg.seed)
    module = SfmLightningModule(cfg)
    initial = weights_digest(module)
    ckpt = load_checkpoint(out / 'model.ckpt')
    module.model.depth_net.load_state_dict(ckpt.depth_net.state_dict())
    module.model.pose_net.load_state_dict(ckpt.pose_net.state_dict())
    assert weights_digest(module) == digests[0] != initial
