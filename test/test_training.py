"""Training: a few real steps on kitti_tiny, checkpoints, resume, scale alignment (issue 3)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import KITTI_DRIVE, ROOT
from packnet_ros.checkpoint import load_checkpoint
from packnet_ros.inference import DepthEstimator
from packnet_ros.training.config import load_config
from packnet_ros.training.scale_alignment import apply_scale, estimate_scale
from packnet_ros.training.train import train


def _config(tmp_path, **over):
    cfg = {
        'name': 'smoke', 'seed': 3, 'licence': 'CC BY-NC-SA 4.0 (test)',
        'model': {'depth_net': 'PackNetSlim01', 'width': 0.25, 'image_shape': [96, 320]},
        'loss': {'velocity_weight': 0.1},
        'optim': {'lr': 1e-3, 'pose_lr': 1e-3},
        'data': {'train': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [1, 2, 3]}],
                 'val': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'targets': [2]}],
                 'repeat': 4, 'batch_size': 2, 'num_workers': 0, 'augment': False},
        'trainer': {'max_epochs': 1, 'precision': 'auto', 'log_every_n_steps': 1, 'keep_checkpoints': -1},
    }
    for k, v in over.items():
        node = cfg
        *path, last = k.split('.')
        for p in path:
            node = node[p]
        node[last] = v
    path = tmp_path / 'cfg.yaml'
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


@pytest.mark.slow
def test_few_steps_lower_the_loss_and_write_loadable_checkpoints(tmp_path):
    torch.manual_seed(0)
    cfg = _config(tmp_path, **{'trainer.max_epochs': 3})
    report = train(cfg, out_dir=str(tmp_path / 'run'), progress=False)
    assert report['steps'] == 18 and report['data']['velocity_supervision'] is True
    # TensorBoard scalars: the training loss decreased over the run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(tmp_path / 'run' / 'tb'))
    ea.Reload()
    losses = [e.value for e in ea.Scalars('train/loss_epoch')]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert 'val/median_abs_rel' in ea.Tags()['scalars']
    # one project checkpoint per epoch (Lightning resume state included) + last + slim model.ckpt
    ckpts = sorted((tmp_path / 'run' / 'checkpoints').glob('epoch_*.ckpt'))
    assert len(ckpts) == 3
    for path in (ckpts[-1], tmp_path / 'run' / 'model.ckpt'):
        loaded = load_checkpoint(path)
        assert loaded.spec.label == 'PackNetSlim01-1A-w0.25' and loaded.spec.image_shape == (96, 320)
        assert loaded.pose_net is not None and loaded.metadata['licence'].startswith('CC BY-NC-SA')
        # the node's inference core runs it on a real frame
        est = DepthEstimator.from_checkpoint(str(path), device='cpu', precision='fp32')
        from packnet_ros.io.kitti import KittiDrive
        drive = KittiDrive(KITTI_DRIVE)
        depth = est.predict(drive.image(2), drive.K).depth
        assert depth.shape == (96, 320) and not np.isnan(depth).any()  # +Inf = beyond max_depth (REP 117)
    # last epoch checkpoint and model.ckpt hold the same weights
    a = load_checkpoint(ckpts[-1]).depth_net.state_dict()
    b = load_checkpoint(tmp_path / 'run' / 'model.ckpt').depth_net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rep = json.loads((tmp_path / 'run' / 'report.json').read_text())
    assert rep['val_after']['n_frames'] == 1 and rep['hardware']['torch_threads'] >= 1


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tmp_path):
    cfg = _config(tmp_path)
    train(cfg, out_dir=str(tmp_path / 'run'), progress=False)
    cfg2 = _config(tmp_path, **{'trainer.max_epochs': 2})
    report = train(cfg2, out_dir=str(tmp_path / 'run'), resume='auto', progress=False)
    assert report['resumed_from'].endswith('last.ckpt')
    assert report['steps'] == 12 and report['epochs'] == 2  # 6 steps before + 6 after resuming


def test_scale_alignment_scales_posenet_translation_exactly(tmp_path):
    from packnet_ros.networks import PackNetSlim01, PoseNet
    from packnet_ros.training.module import SfmModel
    torch.manual_seed(1)
    model = SfmModel(PackNetSlim01(width=0.25), PoseNet()).eval()
    rgb = torch.rand(2, 3, 64, 128)
    ctx = [torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128)]
    with torch.no_grad():
        before = model.pose_net(rgb, ctx)
        inv_before = model.depth_net(rgb)
    t = before[..., :3].norm(dim=-1)
    batch = {'rgb': rgb, 'rgb_context': ctx, 'expected_translation': t * 7.0}
    s = estimate_scale(model, [batch])
    assert s == pytest.approx(7.0, rel=1e-5)
    apply_scale(model, s, rgb)
    with torch.no_grad():
        after = model.pose_net(rgb, ctx)
        inv_after = model.depth_net(rgb)
    torch.testing.assert_close(after[..., :3], before[..., :3] * 7.0, rtol=1e-5, atol=1e-7)  # translation x s
    torch.testing.assert_close(after[..., 3:], before[..., 3:])                              # rotation untouched
    ratio = float((inv_before / inv_after).median())  # depth grows by ~s
    assert ratio == pytest.approx(7.0, rel=0.25)


def test_config_errors_name_the_problem(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump({'model': {'image_shape': [100, 320]}, 'data': {'train': [{'type': 'kitti'}]}}))
    with pytest.raises(ValueError, match='multiples of 32'):
        load_config(bad)
    bad.write_text(yaml.safe_dump({'modle': {}, 'data': {'train': [{}]}}))
    with pytest.raises(ValueError, match="unknown key.*modle"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / 'missing.yaml')


_GOOD = {'model': {'depth_net': 'PackNetSlim01', 'width': 0.25, 'image_shape': [96, 320]},
         'data': {'train': [{'type': 'kitti', 'path': 'drive', 'targets': [1, 2, 3]}], 'batch_size': 2},
         'trainer': {'max_epochs': 1}}


def _with(key: str, value) -> dict:
    cfg = json.loads(json.dumps(_GOOD))
    node = cfg
    *path, last = key.split('.')
    for p in path:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    node[int(last) if last.isdigit() else last] = value
    return cfg


@pytest.mark.parametrize('key,value,text', [
    ('data.batch_size', 'four', "data.batch_size is 'four' (str), expected int"),
    ('model.image_shape', 96, 'model.image_shape is 96 (int), expected list of int'),
    ('model.image_shape', [96, 'x'], "model.image_shape is [96, 'x'] (list), expected list of int"),
    ('model', 5, 'model is 5 (int), expected a mapping of keys to values'),
    ('data.train.0.targets', '1,2', "data.train[0].targets is '1,2' (str), expected list of int or None"),
    ('data.train.0', 'kitti', "data.train[0] is 'kitti' (str), expected a mapping"),
    ('trainer.max_epochs', 'one', "trainer.max_epochs is 'one' (str), expected int"),
    ('data.augment', 'yes please', "data.augment is 'yes please' (str), expected bool"),
    ('optim.lr', [1], 'optim.lr is [1] (list), expected float'),
])
def test_config_types_are_checked_when_loaded(tmp_path, key, value, text):
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(_with(key, value)))
    with pytest.raises(ValueError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f'{path}: {text}'), str(exc.value)


def test_config_overrides_and_yaml_syntax_errors(tmp_path):
    path = tmp_path / 'cfg.yaml'
    path.write_text(yaml.safe_dump(_GOOD))
    with pytest.raises(ValueError, match=r"cfg.yaml: optim.lr is 'abc' \(str\), expected float$"):
        load_config(path, {'optim.lr': 'abc'})
    with pytest.raises(ValueError, match=r'cannot set model.width.x: model.width is 0.25, not a section'):
        load_config(path, {'model.width.x': 1})
    # YAML 1.1 reads 2e-4 (no dot) as a string: accepted as the float it means; ints as floats
    cfg = load_config(path, {'optim.lr': '2e-4', 'model.max_depth': 80})
    assert cfg.optim.lr == 2e-4 and isinstance(cfg.model.max_depth, float)
    path.write_text('model:\n  width: 0.25\n image_shape: [96, 320\n')
    with pytest.raises(ValueError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f'{path}:3:2: YAML syntax error: ') and '\n' not in str(exc.value)


def test_cli_train_config_errors_exit_2_before_training(tmp_path, capsys):
    from packnet_ros.apps.cli import main
    path = tmp_path / 'cfg.yaml'
    cases = [(yaml.safe_dump(_with('data.batch_size', 'four')), [], "data.batch_size is 'four' (str), expected int"),
             (yaml.safe_dump(_GOOD), ['--set', 'optim.lr=abc'], "optim.lr is 'abc' (str), expected float"),
             ('data: {train: [\n', [], 'YAML syntax error')]
    for text, extra, message in cases:
        path.write_text(text)
        rc = main(['train', '--config', str(path), '--out', str(tmp_path / 'run'), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f'packnet-ros train: error: {path}') and message in err, err
        assert not (tmp_path / 'run').exists()


def test_shipped_training_configs_load():
    shapes = {'overfit_kitti_tiny': [96, 320], 'train_udacity_heldout': [192, 640], 'train_default': [192, 640]}
    for name, shape in shapes.items():
        cfg = load_config(ROOT / 'config' / f'{name}.yaml')
        assert cfg.model.image_shape == shape
        for spec in cfg.data.train:
            assert cfg.resolve(spec['path']).exists(), spec['path']


@pytest.mark.slow
def test_scale_alignment_with_self_distillation_runs_in_training(tmp_path):
    """The callback path used by the overfit config: align at step 2, distil for 3 steps
    under the trainer's mixed-precision context, record it in the report and checkpoint."""
    torch.manual_seed(0)
    cfg = _config(tmp_path, **{'loss.scale_alignment_step': 2, 'loss.scale_alignment_distill_steps': 3})
    report = train(cfg, out_dir=str(tmp_path / 'run'), progress=False)
    info = report['scale_alignment']
    assert info['step'] == 2 and info['distill_steps'] == 3
    assert info['scale'] > 0 and np.isfinite(info['distill_loss'])
    assert load_checkpoint(tmp_path / 'run' / 'model.ckpt').metadata['scale_alignment']['distill_steps'] == 3
