"""Training the BTS and SID depth heads (LiDAR-supervised, ``loss.mode: supervised``): the
spec and checkpoint a run writes, the loss of each head (``loss.supervised_term`` on BTS's
depth, ``loss.sid_loss`` on SID's logits), the modes the heads refuse. Tiny inputs (64x224),
ResNet-18 encoders and one CPU thread keep it cheap on shared CPUs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import KITTI_DRIVE, ROOT, load_train_config
from packnet_ros.checkpoint import load_checkpoint
from packnet_ros.inference import DepthEstimator
from packnet_ros.losses import sid_cross_entropy_loss, sid_ordinal_loss, silog_loss
from packnet_ros.networks import BTSNet, SIDNet, depth_output_kind
from packnet_ros.training.config import load_config
from packnet_ros.training.module import SfmLightningModule, model_spec

SHAPE = [64, 224]
HEADS = {'BTS': 'BTS-ResNet18', 'SID': 'SID-ResNet18'}


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')  # conftest: one thread, restored after


def _config(tmp_path, head: str, **over):
    cfg = {
        'name': f'{head.lower()}_heads', 'seed': 3, 'licence': 'CC BY-NC-SA 4.0 (test)',
        'model': {'depth_net': HEADS[head], 'width': 0.25, 'image_shape': SHAPE},
        'loss': {'mode': 'supervised'},
        'optim': {'lr': 1e-3},
        'data': {'train': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [1, 2, 3]}],
                 'batch_size': 2, 'num_workers': 0, 'augment': False, 'depth_resize': 'preserve'},
        'trainer': {'max_epochs': 2, 'max_steps': 2, 'precision': '32-true', 'log_every_n_steps': 1,
                    'threads': 1},
    }
    return load_train_config(tmp_path, cfg, **over)


def _module(cfg) -> SfmLightningModule:
    torch.manual_seed(0)
    return SfmLightningModule(cfg)


@pytest.fixture(scope='module')
def batch() -> dict:
    """Two kitti_tiny frames at 64x224: 'rgb' (2,3,64,224) in [0, 1], 'depth' (2,1,64,224)
    projected LiDAR, metres (NaN = no return)."""
    from torch.utils.data import default_collate

    from packnet_ros.data import SfmDataset, load_sequences
    seqs = load_sequences([{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [1, 2]}], '.')
    ds = SfmDataset(seqs, tuple(SHAPE), augment=False, depth_resize='preserve')
    out = default_collate([ds[0], ds[1]])
    assert bool(torch.isfinite(out['depth']).any())
    return out


def test_head_spec_names_the_model_and_its_options(tmp_path):
    bts = model_spec(_config(tmp_path, 'BTS', **{'model.max_depth': 60.0, 'model.depth_net': 'BTS'}))
    assert (bts.depth_net, bts.pose_net, bts.options, bts.max_depth) == ('BTS-ResNet50', None, {'max_depth': 60.0}, 60.0)
    for sid_loss, mode in (('ordinal', 'ordinal'), ('cross_entropy', 'classification')):
        sid = model_spec(_config(tmp_path, 'SID', **{'loss.sid_loss': sid_loss}))
        assert sid.depth_net == 'SID-ResNet18' and sid.pose_net is None and sid.label == 'SID-ResNet18-w0.25'
        assert sid.options == {'num_bins': 71, 'mode': mode, 'alpha': 1.0, 'beta': 80.0}
    packnet = model_spec(_config(tmp_path, 'BTS', **{'model.depth_net': 'PackNetSlim01'}))
    assert (packnet.depth_net, packnet.pose_net, packnet.options) == ('PackNetSlim01', 'PoseNet', {})
    assert _config(tmp_path, 'SID').loss.sid_loss == 'ordinal'  # the default
    path = tmp_path / 'cfg.yaml'
    path.write_text(yaml.safe_dump({'data': {'train': [{'type': 'kitti', 'path': str(KITTI_DRIVE)}]},
                                    'loss': {'sid_loss': 'l2'}}))
    with pytest.raises(ValueError) as exc:
        load_config(path)
    assert str(exc.value) == f"{path}: loss.sid_loss is 'l2', expected one of ordinal, cross_entropy"


def test_shipped_head_configs_describe_the_heads():
    for name, net in (('train_bts_kitti_tiny', 'BTS-ResNet18'), ('train_sid_kitti_tiny', 'SID-ResNet18')):
        cfg = load_config(ROOT / 'config' / f'{name}.yaml')
        spec = model_spec(cfg)
        assert spec.depth_net == net and spec.pose_net is None and cfg.loss.mode == 'supervised'
        assert cfg.model.max_depth == 80.0 and spec.image_shape == (96, 320)


@pytest.mark.parametrize('head', ['BTS', 'SID'])
@pytest.mark.parametrize('mode', ['self_supervised', 'semi_supervised'])
def test_heads_refuse_photometric_modes(tmp_path, head, mode):
    cfg = _config(tmp_path, head, **{'loss.mode': mode})
    with pytest.raises(ValueError, match=f"loss.mode '{mode}' is not supported for the {head} head; "
                                         'it trains with loss.mode: supervised'):
        SfmLightningModule(cfg)


@pytest.mark.parametrize('head, sid_loss', [('BTS', 'ordinal'), ('SID', 'ordinal'), ('SID', 'cross_entropy')])
def test_head_loss_is_the_selected_loss_on_the_head_output(tmp_path, batch, head, sid_loss):
    module = _module(_config(tmp_path, head, **{'loss.sid_loss': sid_loss}))
    net = module.model.depth_net
    assert module.model.pose_net is None and depth_output_kind(net) == 'depth'
    assert len(module.configure_optimizers()['optimizer'].param_groups) == 1
    out = module.compute_loss(batch)
    assert float(out['lidar_images']) == 2 and out['loss'].dtype == torch.float32
    with torch.no_grad():
        if head == 'BTS':
            assert isinstance(net, BTSNet) and net.max_depth == 80.0
            expected = silog_loss(net(batch['rgb']), batch['depth'], None, variance_focus=0.85)
        else:
            assert isinstance(net, SIDNet)
            logits = net.logits(batch['rgb'])
            fn, other = ((sid_ordinal_loss, sid_cross_entropy_loss) if sid_loss == 'ordinal'
                         else (sid_cross_entropy_loss, sid_ordinal_loss))
            assert logits.shape[1] == (142 if sid_loss == 'ordinal' else 71)
            expected = fn(logits, batch['depth'], None, net.head.bins)
            with pytest.raises(ValueError, match='channels'):
                other(logits, batch['depth'], None, net.head.bins)
    assert float(expected) > 0
    torch.testing.assert_close(out['loss'].detach(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(out['supervised'].detach(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize('head', ['BTS', 'SID'])
def test_steps_on_one_batch_lower_the_loss(tmp_path, batch, head):
    module = _module(_config(tmp_path, head))
    opt = torch.optim.Adam(module.model.depth_net.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = module.compute_loss(batch)['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < 0.98 * losses[0], losses


@pytest.mark.filterwarnings('ignore:You are trying to `self.log')
@pytest.mark.parametrize('head', ['BTS', 'SID'])
def test_batch_without_lidar_gives_a_zero_loss_reaching_every_depth_parameter(tmp_path, batch, head):
    module = _module(_config(tmp_path, head))
    empty = {**batch, 'depth': torch.where(torch.rand_like(batch['depth']) < 0.5, float('nan'), 0.0)}
    loss = module.training_step(empty, 0)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    params = list(module.model.depth_net.parameters())
    assert params and all(p.grad is not None for p in params)


@pytest.mark.slow
@pytest.mark.parametrize('head, sid_loss', [('BTS', 'ordinal'), ('SID', 'ordinal'), ('SID', 'cross_entropy')])
def test_two_supervised_steps_write_a_checkpoint_that_predicts_metres(tmp_path, head, sid_loss):
    from packnet_ros.training.train import train
    cfg = _config(tmp_path, head, **{'loss.sid_loss': sid_loss,
                                     'data.val': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [2]}]})
    report = train(cfg, out_dir=str(tmp_path / 'run'), progress=False)
    assert report['steps'] == 2 and report['loss_mode'] == 'supervised' and report['network'] == f'{HEADS[head]}-w0.25'
    assert report['val_after']['n_frames'] == 1 and np.isfinite(report['val_after']['median_abs_rel'])
    path = tmp_path / 'run' / 'model.ckpt'
    ckpt = load_checkpoint(path)
    assert ckpt.spec == model_spec(cfg) and ckpt.pose_net is None and ckpt.spec.image_shape == (64, 224)
    if head == 'SID':
        assert ckpt.depth_net.head.mode == ('ordinal' if sid_loss == 'ordinal' else 'classification')
    assert load_checkpoint(tmp_path / 'run' / 'checkpoints' / 'last.ckpt').spec == ckpt.spec
    est = DepthEstimator.from_checkpoint(str(path), device='cpu', precision='fp32', backend='eager')
    from packnet_ros.io.kitti import KittiDrive
    drive = KittiDrive(KITTI_DRIVE)
    depth = est.predict(drive.image(2), drive.K).depth
    assert depth.shape == (64, 224) and np.isfinite(depth).all() and (depth > 0).all()
