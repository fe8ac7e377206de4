"""Distillation from a frozen teacher aligned by the SSI loss (``loss.teacher``,
packnet_ros/training/teacher.py): an ONNX teacher made here, a checkpoint teacher, the
term's value on constructed tensors, every loss mode / network, config errors. Tiny inputs
(64x224, teachers at 32x96), 2-step runs and one CPU thread keep it cheap on shared CPUs
(each test < 10 s there)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from conftest import KITTI_DRIVE, ROOT, load_train_config, with_overrides
from packnet_ros.training.config import load_config
from packnet_ros.training.teacher import (
    OnnxTeacher,
    TeacherError,
    TorchTeacher,
    load_teacher,
    normalise_disparity,
    teacher_ssi_loss,
)

SHAPE = [64, 224]
TEACHER_SHAPE = (32, 96)


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')  # conftest: one thread, restored after


class TinyDepth(nn.Module):
    """A stand-in depth model: (N,3,H,W) RGB in [0, 1] -> (N,1,H,W) depth in 1..11 m."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return 1.0 + 10.0 * torch.sigmoid(self.conv(x))


def _export(path, dynamic: bool = False):
    """TinyDepth as ONNX: fixed input (1,3,32,96), or dynamic batch/height/width."""
    model = TinyDepth().eval()
    x = torch.rand(1, 3, *TEACHER_SHAPE)
    axes = {'rgb': {0: 'n', 2: 'h', 3: 'w'}, 'depth': {0: 'n', 2: 'h', 3: 'w'}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, (x,), str(path), input_names=['rgb'], output_names=['depth'], opset_version=17,
                          dynamo=False, dynamic_axes=axes)
    return model, path


@pytest.fixture(scope='module')
def onnx_teacher(tmp_path_factory):
    """(the torch TinyDepth, the path of its fixed-shape ONNX export)."""
    return _export(tmp_path_factory.mktemp('onnx') / 'tiny_depth.onnx')


def _cfg_dict(**over) -> dict:
    cfg = {
        'name': 'distill', 'seed': 3, 'licence': 'test',
        'model': {'depth_net': 'PackNetSlim01', 'width': 0.25, 'image_shape': SHAPE},
        'loss': {'velocity_weight': 0.1},
        'optim': {'lr': 1e-3, 'pose_lr': 1e-3},
        'data': {'train': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [1, 2, 3]}],
                 'batch_size': 2, 'num_workers': 0, 'augment': False, 'depth_resize': 'preserve'},
        'trainer': {'max_epochs': 2, 'max_steps': 2, 'precision': '32-true', 'log_every_n_steps': 1,
                    'threads': 1},
    }
    return with_overrides(cfg, over)


def _config(tmp_path, **over):
    return load_train_config(tmp_path, _cfg_dict(**over))


@pytest.fixture(scope='module')
def batch() -> dict:
    """Two kitti_tiny frames at 64x224 with contexts: 'rgb', 'rgb_original' (2,3,64,224) in
    [0, 1], 'depth' (2,1,64,224) projected LiDAR, metres (NaN = no return)."""
    from torch.utils.data import default_collate

    from packnet_ros.data import SfmDataset, load_sequences
    seqs = load_sequences([{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [1, 2]}], '.')
    ds = SfmDataset(seqs, tuple(SHAPE), augment=False, depth_resize='preserve')
    out = default_collate([ds[0], ds[1]])
    assert bool(torch.isfinite(out['depth']).any())
    return out


def _untrained_ckpt(path, shape=TEACHER_SHAPE):
    from packnet_ros.checkpoint import ModelSpec, save_checkpoint
    spec = ModelSpec(depth_net='PackNetSlim01', width=0.25, image_shape=shape)
    torch.manual_seed(1)
    return save_checkpoint(path, spec.build_depth_net(), spec)


# -- the term ---------------------------------------------------------------------------------
def test_onnx_teacher_output_reaches_the_ssi_term(onnx_teacher):
    model, path = onnx_teacher
    teacher = load_teacher(str(path), 'depth')
    assert isinstance(teacher, OnnxTeacher) and teacher.input_shape == TEACHER_SHAPE and teacher.batch == 1
    rgb = torch.rand(2, 3, *SHAPE, generator=torch.Generator().manual_seed(0))
    # the ONNX model runs (one image at a time: fixed batch 1) on the image resized to its input
    depth = teacher.predict(rgb)
    with torch.no_grad():
        ref = model(F.interpolate(rgb, size=TEACHER_SHAPE, mode='bilinear', align_corners=False, antialias=True))
    assert depth.shape == (2, 1, *TEACHER_SHAPE) and depth.dtype == torch.float32
    torch.testing.assert_close(depth, ref, rtol=1e-4, atol=1e-4)
    disp = teacher.disparity(rgb)  # 'depth' teacher: the target is 1 / depth
    torch.testing.assert_close(disp, 1.0 / depth)

    # 0 when the student's inverse depth is an affine map of the teacher's, per image
    a = torch.tensor([2.5, 0.04]).view(2, 1, 1, 1)
    b = torch.tensor([0.3, 0.01]).view(2, 1, 1, 1)
    student = (a * disp + b).requires_grad_()
    assert float(teacher_ssi_loss(student, disp).detach()) < 1e-5
    # ... also at the student's resolution (the target is resized bilinearly to it) and on
    # every scale given
    up = F.interpolate(disp, size=SHAPE, mode='bilinear', align_corners=False)
    assert float(teacher_ssi_loss([a * up + b, 3.0 * up], disp)) < 1e-5
    # positive otherwise, with a gradient that reaches the student
    for other in (depth, disp ** 2, torch.rand_like(disp)):
        other = other.clone().requires_grad_()
        loss = teacher_ssi_loss(other, disp)
        assert float(loss) > 1e-3
        loss.backward()
        assert other.grad is not None and float(other.grad.abs().sum()) > 0
    # the space matters: the same teacher declared 'relative' (its depth used as disparity)
    # does not match a student equal to its inverse depth
    as_relative = load_teacher(str(path), 'relative').disparity(rgb)
    torch.testing.assert_close(as_relative, depth)
    assert float(teacher_ssi_loss(student, as_relative).detach()) > 1e-3
    # the value does not depend on the teacher's units: a x target + b gives the same term
    torch.testing.assert_close(teacher_ssi_loss(disp ** 2, 255.0 * disp + 7.0), teacher_ssi_loss(disp ** 2, disp))


def test_dynamic_onnx_teacher_runs_at_the_image_size(tmp_path):
    model, path = _export(tmp_path / 'dyn.onnx', dynamic=True)
    teacher = load_teacher(str(path), 'inverse_depth')
    assert teacher.input_shape is None and teacher.batch is None
    rgb = torch.rand(3, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(teacher.disparity(rgb), model(rgb), rtol=1e-4, atol=1e-4)


def test_normalised_target_and_invalid_teacher_pixels():
    d = torch.rand(2, 1, 8, 8) * 5 + 1
    d[1] = 2.0  # a constant teacher map: no structure, that image is dropped
    d[0, 0, 0, 0] = float('nan')
    n = normalise_disparity(d)
    assert torch.isnan(n[1]).all() and torch.isnan(n[0, 0, 0, 0])
    v = n[0][torch.isfinite(n[0])]
    assert abs(float(v.median())) < 1e-6 and abs(float(v.abs().mean()) - 1.0) < 1e-5
    p = torch.rand(2, 1, 8, 8)
    # the constant image contributes nothing: the term equals the one on image 0 alone
    torch.testing.assert_close(teacher_ssi_loss(p, d), teacher_ssi_loss(p[:1], d[:1]))
    assert float(teacher_ssi_loss(p, torch.full_like(d, float('nan')))) == 0.0


# -- the module: every mode and network -------------------------------------------------------
@pytest.mark.filterwarnings('ignore:You are trying to `self.log')
@pytest.mark.parametrize('net,mode', [('PackNetSlim01', 'self_supervised'), ('PackNetSlim01', 'semi_supervised'),
                                      ('PackNetSlim01', 'supervised'), ('BTS-ResNet18', 'supervised'),
                                      ('SID-ResNet18', 'supervised')])
def test_teacher_term_is_added_in_every_mode(tmp_path, onnx_teacher, batch, net, mode):
    from packnet_ros.training.module import SfmLightningModule
    _, path = onnx_teacher
    cfg = _config(tmp_path, **{'model.depth_net': net, 'loss.mode': mode, 'loss.teacher': str(path),
                               'loss.teacher_output': 'depth', 'loss.teacher_weight': 0.5})
    torch.manual_seed(0)
    module = SfmLightningModule(cfg)
    assert isinstance(module.teacher, OnnxTeacher)
    assert not any('teacher' in k for k in module.state_dict())  # never saved, never trained
    teacher = module.teacher
    for lidar in (True, False):
        b = dict(batch)
        if not lidar:  # a video-like batch: no LiDAR at all
            b['depth'] = torch.full_like(batch['depth'], float('nan'))
        torch.manual_seed(1)
        out = module.compute_loss(b)
        term = out['teacher_ssi']
        assert torch.isfinite(term) and float(term.detach()) > 0 and term.requires_grad
        # loss = objective of loss.mode + teacher_weight x term
        module.teacher = None
        torch.manual_seed(1)
        base = module.compute_loss(b)
        module.teacher = teacher
        assert 'teacher_ssi' not in base
        torch.testing.assert_close(out['loss'], base['loss'] + 0.5 * term)
        module.zero_grad()
        term.backward()
        grads = [p.grad for p in module.model.depth_net.parameters() if p.grad is not None]
        assert grads and float(sum(g.abs().sum() for g in grads)) > 0


# -- training runs ----------------------------------------------------------------------------
def _train_and_read(cfg, out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from packnet_ros.training.train import train
    report = train(cfg, out_dir=str(out), progress=False)
    ea = EventAccumulator(str(out / 'tb'))
    ea.Reload()
    return report, {tag: [e.value for e in ea.Scalars(tag)] for tag in ('train/teacher_ssi_step', 'train/loss_step')}


def test_two_steps_with_a_checkpoint_teacher_log_teacher_ssi(tmp_path):
    from packnet_ros.checkpoint import load_checkpoint
    _untrained_ckpt(tmp_path / 'teacher.ckpt')
    cfg = _config(tmp_path, **{'loss.teacher': 'teacher.ckpt'})  # relative to the config file
    report, logged = _train_and_read(cfg, tmp_path / 'run')
    assert report['steps'] == 2
    values = logged['train/teacher_ssi_step']
    assert len(values) == 2 and all(np.isfinite(values)) and all(v > 0 for v in values), values
    # the run's checkpoint holds the student only (no teacher weights)
    ckpt = load_checkpoint(tmp_path / 'run' / 'model.ckpt')
    assert ckpt.spec.image_shape == tuple(SHAPE)
    state = torch.load(tmp_path / 'run' / 'checkpoints' / 'last.ckpt', map_location='cpu', weights_only=False)
    assert not any('teacher' in k for k in state['state_dict'])


def test_two_steps_with_an_onnx_teacher(tmp_path, onnx_teacher):
    _, path = onnx_teacher
    cfg = _config(tmp_path, **{'loss.mode': 'semi_supervised', 'loss.teacher': str(path),
                               'loss.teacher_output': 'depth', 'loss.teacher_weight': 2.0})
    report, logged = _train_and_read(cfg, tmp_path / 'run')
    assert report['steps'] == 2
    values = logged['train/teacher_ssi_step']
    assert len(values) == 2 and all(np.isfinite(values)) and all(v > 0 for v in values), values


# -- configuration ------------------------------------------------------------------------------
def test_teacher_keys_default_off_and_bad_values_name_the_key(tmp_path, onnx_teacher):
    _, onnx_path = onnx_teacher
    cfg = _config(tmp_path)
    assert (cfg.loss.teacher, cfg.loss.teacher_output, cfg.loss.teacher_weight) == ('', '', 1.0)
    path = tmp_path / 'cfg.yaml'
    for over, text in [
            ({'loss.teacher': 'missing.ckpt'}, "loss.teacher 'missing.ckpt': "),
            ({'loss.teacher': 'missing.onnx', 'loss.teacher_output': 'depth'}, "loss.teacher 'missing.onnx': no such ONNX file"),
            ({'loss.teacher': str(onnx_path)}, 'set loss.teacher_output'),
            ({'loss.teacher': 'untrained:NoSuchNet'}, "loss.teacher 'untrained:NoSuchNet': "),
            ({'loss.teacher': str(onnx_path), 'loss.teacher_output': 'disparity'},
             "loss.teacher_output is 'disparity', expected one of depth, inverse_depth, relative"),
            ({'loss.teacher_weight': -1}, 'loss.teacher_weight is -1.0, expected a number >= 0')]:
        path.write_text(yaml.safe_dump(_cfg_dict(**over)))
        with pytest.raises(ValueError) as exc:
            load_config(path)
        assert str(exc.value).startswith(f'{path}: ') and text in str(exc.value), str(exc.value)


def test_bad_teacher_refused_at_module_construction(tmp_path):
    from packnet_ros.training.module import SfmLightningModule
    cfg = _config(tmp_path)
    cfg.loss.teacher = str(tmp_path / 'gone.onnx')  # e.g. deleted after the config was read
    cfg.loss.teacher_output = 'relative'
    with pytest.raises(TeacherError, match=r"^loss\.teacher '.*gone\.onnx': no such ONNX file"):
        SfmLightningModule(cfg)
    (tmp_path / 'junk.onnx').write_bytes(b'not a model')
    cfg.loss.teacher = str(tmp_path / 'junk.onnx')
    with pytest.raises(TeacherError, match=r'^loss\.teacher .*junk\.onnx: onnxruntime cannot load it'):
        SfmLightningModule(cfg)
    _untrained_ckpt(tmp_path / 't.ckpt')
    cfg.loss.teacher, cfg.loss.teacher_output = str(tmp_path / 't.ckpt'), 'depth'  # PackNet gives inverse depth
    with pytest.raises(TeacherError, match="loss.teacher_output is 'depth', but the teacher .* outputs inverse_depth"):
        SfmLightningModule(cfg)
    cfg.loss.teacher_output = ''
    module = SfmLightningModule(cfg)
    assert isinstance(module.teacher, TorchTeacher) and module.teacher.output == 'inverse_depth'
    assert module.teacher.input_shape == TEACHER_SHAPE and not module.teacher.net.training
    assert not any(p.requires_grad for p in module.teacher.net.parameters())
    module.train()  # the trainer's train() does not reach the teacher
    assert not module.teacher.net.training


def test_shipped_distill_config_loads():
    path = ROOT / 'config' / 'train_distill_udacity.yaml'
    assert path.read_text().startswith('# ')  # header comment: what it is, the command
    cfg = load_config(path)
    assert (cfg.loss.mode, cfg.loss.teacher, cfg.loss.teacher_weight) == ('self_supervised', 'selfsup', 1.0)
    assert (cfg.model.depth_net, cfg.model.width, cfg.model.image_shape) == ('PackNetSlim01', 0.25, [96, 320])
    assert [s['type'] for s in cfg.data.train] == ['video'] * 4 and [s['type'] for s in cfg.data.val] == ['kitti']
    for s in cfg.data.train + cfg.data.val:
        assert cfg.resolve(s['path']).exists(), s
        assert 'intrinsics' not in s or cfg.resolve(s['intrinsics']).is_file()
    assert all(s['crop'] == [276, 60, 0, 0] for s in cfg.data.train)
