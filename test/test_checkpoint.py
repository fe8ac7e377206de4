"""packnet_ros.checkpoint: official packnet-sfm .ckpt files and the project format.

The official file is written exactly as packnet-sfm's ModelCheckpoint does
(``torch.save`` of {'config': yacs CfgNode, 'epoch', 'state_dict' with ``model.depth_net.*``
and ``model.pose_net.*`` keys, 'optimizer', 'scheduler'}) holding the fidelity fixture's
parameters, so loading it must reproduce ../shared/fixtures/packnet_reference outputs
(strict loading end to end). It must also load where yacs and packnet_sfm cannot be
imported, and a pickle that references any other global must be refused unexecuted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from yacs.config import CfgNode

from conftest import FIXTURES, ROOT, fill_reference_params
from packnet_ros.checkpoint import (
    FORMAT,
    CheckpointError,
    ModelSpec,
    load_checkpoint,
    read_checkpoint_file,
    save_checkpoint,
)
from packnet_ros.inference import DepthEstimator
from packnet_ros.networks import PackNetSlim01, PoseNet, build_depth_net

MAX_ABS, MEAN_ABS = 1e-2, 2e-4  # fixtures/packnet_reference/README.md "Acceptance"
SMALL = ModelSpec('PackNetSlim01', width=0.25)


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _packnet_sfm_config(depth_name='PackNetSlim01', image_shape=(192, 640), max_depth=80.0, extra_depth=None):
    """A config shaped like packnet-sfm's configs/default_config.py after merging a .yaml."""
    cfg = CfgNode()
    cfg.name = 'overfit_kitti'
    cfg.config = 'configs/overfit_kitti.yaml'
    cfg.default = 'configs/default_config'
    cfg.arch = CfgNode()
    cfg.arch.seed = 42
    cfg.arch.min_epochs = 1
    cfg.arch.max_epochs = 50
    cfg.checkpoint = CfgNode()
    cfg.checkpoint.filepath = '/data/experiments/'
    cfg.checkpoint.save_top_k = 5
    cfg.checkpoint.monitor = 'loss'
    cfg.checkpoint.monitor_index = 0
    cfg.checkpoint.mode = 'auto'
    cfg.model = CfgNode()
    cfg.model.name = 'SelfSupModel'
    cfg.model.checkpoint_path = ''
    cfg.model.optimizer = CfgNode()
    cfg.model.optimizer.name = 'Adam'
    cfg.model.optimizer.depth = CfgNode({'lr': 0.0002, 'weight_decay': 0.0})
    cfg.model.optimizer.pose = CfgNode({'lr': 0.0002, 'weight_decay': 0.0})
    cfg.model.scheduler = CfgNode({'name': 'StepLR', 'step_size': 30, 'gamma': 0.5, 'T_max': 20})
    cfg.model.params = CfgNode()
    cfg.model.params.crop = 'garg'
    cfg.model.params.min_depth = 0.0
    cfg.model.params.max_depth = max_depth
    cfg.model.loss = CfgNode({'num_scales': 4, 'progressive_scaling': 0.0, 'flip_lr_prob': 0.5,
                              'rotation_mode': 'euler', 'upsample_depth_maps': True, 'ssim_loss_weight': 0.85,
                              'occ_reg_weight': 0.1, 'smooth_loss_weight': 0.001, 'C1': 1e-4, 'C2': 9e-4,
                              'photometric_reduce_op': 'min', 'disp_norm': True, 'clip_loss': 0.0,
                              'padding_mode': 'zeros', 'automask_loss': True,
                              'velocity_loss_weight': 0.1})
    cfg.model.depth_net = CfgNode()
    cfg.model.depth_net.name = depth_name
    cfg.model.depth_net.checkpoint_path = ''
    cfg.model.depth_net.version = '1A'
    cfg.model.depth_net.dropout = 0.0
    for k, v in (extra_depth or {}).items():
        cfg.model.depth_net[k] = v
    cfg.model.pose_net = CfgNode()
    cfg.model.pose_net.name = 'PoseNet'
    cfg.model.pose_net.checkpoint_path = ''
    cfg.model.pose_net.version = ''
    cfg.model.pose_net.dropout = 0.0
    cfg.datasets = CfgNode()
    cfg.datasets.augmentation = CfgNode()
    cfg.datasets.augmentation.image_shape = tuple(image_shape)
    cfg.datasets.augmentation.jittering = (0.2, 0.2, 0.2, 0.05)
    cfg.datasets.augmentation.crop_train_borders = ()
    cfg.datasets.train = CfgNode({'batch_size': 6, 'num_workers': 16, 'back_context': 1, 'forward_context': 1,
                                  'dataset': ['KITTI'], 'path': ['/data/datasets/KITTI_tiny'],
                                  'split': ['kitti_tiny.txt'], 'depth_type': ['velodyne'], 'repeat': [1000]})
    cfg.prepared = True
    cfg.freeze()
    return cfg


def _optimizer_and_scheduler_states():
    """Real torch optimizer / scheduler state dicts (tensors inside), as packnet-sfm saves them."""
    params = [torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.zeros(2, 3))]
    opt = torch.optim.Adam([{'params': params[:1], 'lr': 2e-4}, {'params': params[1:], 'lr': 2e-4}])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5)
    for p in params:
        p.grad = torch.full_like(p, 0.1)
    opt.step()
    sched.step()
    return opt.state_dict(), sched.state_dict()


def _prefixed(net, prefix):
    return {prefix + k: v.clone() for k, v in net.state_dict().items()}


def _save_official(path, depth_net, pose_net, cfg, epoch=49):
    state = {**_prefixed(depth_net, 'model.depth_net.'), **_prefixed(pose_net, 'model.pose_net.')}
    opt, sched = _optimizer_and_scheduler_states()
    torch.save({'config': cfg, 'epoch': epoch, 'state_dict': state, 'optimizer': opt, 'scheduler': sched}, path)
    return path


@pytest.fixture(scope='module')
def reference_nets():
    depth = PackNetSlim01(version='1A')
    fill_reference_params(depth, 'PackNetSlim01')
    pose = PoseNet(nb_ref_imgs=2)
    fill_reference_params(pose, 'PoseNet')
    return depth.eval(), pose.eval()


@pytest.fixture(scope='module')
def official_ckpt(tmp_path_factory, reference_nets):
    path = tmp_path_factory.mktemp('official') / 'PackNetSlim01_overfit_kitti.ckpt'
    return _save_official(path, *reference_nets, _packnet_sfm_config())


@pytest.fixture(scope='module')
def official_loaded(official_ckpt):
    return load_checkpoint(official_ckpt)


# ----------------------------------------------------------------------------- (a) official format
def test_official_file_is_not_weights_only_loadable(official_ckpt):
    # the premise of the restricted unpickler: torch's safe loader refuses the yacs global
    import pickle
    with pytest.raises(pickle.UnpicklingError):
        torch.load(official_ckpt, map_location='cpu', weights_only=True)


def test_official_checkpoint_loads_strictly(official_loaded, reference_nets):
    ck = official_loaded
    assert ck.source == 'packnet-sfm'
    assert isinstance(ck.depth_net, PackNetSlim01) and isinstance(ck.pose_net, PoseNet)
    assert not ck.depth_net.training and not ck.pose_net.training
    for net, ref in zip((ck.depth_net, ck.pose_net), reference_nets):
        ours, theirs = net.state_dict(), ref.state_dict()
        assert list(ours) == list(theirs)
        for k in theirs:
            assert torch.equal(ours[k], theirs[k]), k
    assert ck.metadata['epoch'] == 49
    # the config became plain dicts (no yacs class, no stand-in class leaks out)
    assert type(ck.config) is dict and type(ck.config['model']['depth_net']) is dict
    assert ck.config['model']['depth_net']['name'] == 'PackNetSlim01'
    assert ck.config['datasets']['augmentation']['image_shape'] == (192, 640)
    assert ck.config['arch']['max_epochs'] == 50


def test_official_checkpoint_reproduces_fixture(official_loaded):
    rgb = torch.from_numpy(np.load(FIXTURES / 'input_target.npy'))
    with torch.inference_mode():
        inv = official_loaded.depth_net(rgb)
    expected = np.load(FIXTURES / 'PackNetSlim01.expected.npy')
    assert inv.shape == expected.shape == (1, 1, 192, 640)
    err = np.abs(inv.numpy() - expected)
    assert err.max() <= MAX_ABS and err.mean() <= MEAN_ABS, (err.max(), err.mean())


def test_official_checkpoint_pose_net_reproduces_fixture(official_loaded):
    target = torch.from_numpy(np.load(FIXTURES / 'input_target.npy'))
    context = torch.from_numpy(np.load(FIXTURES / 'input_context.npy'))
    with torch.inference_mode():
        pose = official_loaded.pose_net(target, [context[0:1], context[1:2]])
    expected = np.load(FIXTURES / 'PoseNet.expected.npy')
    err = np.abs(pose.numpy() - expected)
    assert err.max() <= MAX_ABS and err.mean() <= MEAN_ABS, (err.max(), err.mean())


# ----------------------------------------------------------------------------- (b) no yacs, no packnet_sfm
_SUBPROCESS = textwrap.dedent('''
    import json, sys
    sys.modules['yacs'] = None          # any "import yacs" now raises ImportError
    sys.modules['yacs.config'] = None
    sys.modules['packnet_sfm'] = None
    for name in ('yacs', 'yacs.config', 'packnet_sfm'):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(name + ' is importable')
    from packnet_ros.checkpoint import load_checkpoint
    ck = load_checkpoint(sys.argv[1])
    sums = {}
    for what, net in (('depth', ck.depth_net), ('pose', ck.pose_net)):
        sums[what] = [float(v.double().sum()) for v in net.state_dict().values()]
    print(json.dumps({'spec': [ck.spec.depth_net, ck.spec.version, ck.spec.width, list(ck.spec.image_shape),
                               ck.spec.max_depth, ck.spec.pose_net],
                      'source': ck.source, 'sums': sums, 'epoch': ck.metadata.get('epoch'),
                      'yacs_loaded': sys.modules.get('yacs') is not None}))
''')


def test_official_checkpoint_loads_without_yacs_and_packnet_sfm(official_ckpt, reference_nets):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, '-c', _SUBPROCESS, str(official_ckpt)], capture_output=True,
                          text=True, cwd=str(ROOT), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['spec'] == ['PackNetSlim01', '1A', 1.0, [192, 640], 80.0, 'PoseNet']
    assert out['source'] == 'packnet-sfm' and out['epoch'] == 49 and out['yacs_loaded'] is False
    for what, ref in zip(('depth', 'pose'), reference_nets):
        expected = [float(v.double().sum()) for v in ref.state_dict().values()]
        assert out['sums'][what] == pytest.approx(expected, rel=1e-12, abs=1e-12)


# ----------------------------------------------------------------------------- (c) old key names
def test_old_style_keys_are_renamed(tmp_path):
    torch.manual_seed(0)
    depth = build_depth_net('PackNetSlim01', '1A', 0.25)
    pose = PoseNet(nb_ref_imgs=2)
    state = {'disp_network.' + k: v for k, v in depth.state_dict().items()}
    state.update({'pose_network.' + k: v for k, v in pose.state_dict().items()})
    path = tmp_path / 'old.pth.tar'
    torch.save({'state_dict': state, 'config': SMALL.to_config()}, path)
    ck = load_checkpoint(path)
    for net, ref in ((ck.depth_net, depth), (ck.pose_net, pose)):
        theirs = ref.state_dict()
        assert list(net.state_dict()) == list(theirs)
        assert all(torch.equal(net.state_dict()[k], theirs[k]) for k in theirs)


def test_model_model_prefix_is_renamed(tmp_path):
    torch.manual_seed(1)
    depth = build_depth_net('PackNetSlim01', '1A', 0.25)
    path = tmp_path / 'old2.ckpt'
    torch.save({'state_dict': {'model.disp_network.' + k: v for k, v in depth.state_dict().items()},
                'config': SMALL.to_config()}, path)
    ck = load_checkpoint(path)
    assert ck.pose_net is None
    k0 = next(iter(depth.state_dict()))
    assert torch.equal(ck.depth_net.state_dict()[k0], depth.state_dict()[k0])


# ----------------------------------------------------------------------------- (d) no code execution
class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


class _RunsExec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f'open({str(self.marker)!r}, "w").close()',)


@pytest.mark.parametrize('payload', [_RunsShell, _RunsExec])
@pytest.mark.parametrize('where', ['config', 'state_dict'])
def test_malicious_pickle_is_refused_unexecuted(tmp_path, payload, where):
    marker = tmp_path / 'pwned'
    depth = build_depth_net('PackNetSlim01', '1A', 0.25)
    obj = {'state_dict': {'model.depth_net.' + k: v for k, v in depth.state_dict().items()},
           'config': SMALL.to_config()}
    if where == 'config':
        obj['config'] = {'model': payload(marker)}
    else:
        obj['state_dict']['model.depth_net.evil'] = payload(marker)
    path = tmp_path / 'evil.ckpt'
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match='refusing'):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        read_checkpoint_file(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- (e) errors
@pytest.fixture()
def small_ckpt(tmp_path):
    torch.manual_seed(2)
    depth = build_depth_net(SMALL.depth_net, SMALL.version, SMALL.width)
    pose = PoseNet(nb_ref_imgs=2)
    return save_checkpoint(tmp_path / 'small.ckpt', depth, SMALL, pose_net=pose), depth, pose


def _rewrite(path, edit):
    obj = torch.load(path, map_location='cpu', weights_only=True)
    edit(obj)
    torch.save(obj, path)


def test_wrong_shape_is_named(small_ckpt):
    path, depth, _ = small_ckpt
    key = 'model.depth_net.pre_calc.conv_base.weight'
    _rewrite(path, lambda o: o['state_dict'].__setitem__(key, torch.zeros(1, 2, 3, 3)))
    with pytest.raises(CheckpointError, match=r"wrong shape \['pre_calc.conv_base.weight'\]"):
        load_checkpoint(path)


def test_missing_and_unexpected_keys_are_named(small_ckpt):
    path, _, _ = small_ckpt
    key = 'model.depth_net.pre_calc.conv_base.bias'
    _rewrite(path, lambda o: (o['state_dict'].pop(key), o['state_dict'].__setitem__(
        'model.depth_net.extra_layer.weight', torch.zeros(3))))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert 'pre_calc.conv_base.bias' in str(exc.value) and 'extra_layer.weight' in str(exc.value)
    assert 'missing' in str(exc.value) and 'unexpected' in str(exc.value)


def test_wrong_width_in_config_is_refused(small_ckpt):
    path, _, _ = small_ckpt
    _rewrite(path, lambda o: o['config']['model']['depth_net'].__setitem__('width', 0.5))
    with pytest.raises(CheckpointError, match='do not match'):
        load_checkpoint(path)


def test_pose_net_mismatch_is_refused(small_ckpt):
    path, _, _ = small_ckpt
    _rewrite(path, lambda o: o['state_dict'].pop('model.pose_net.pose_pred.bias'))
    with pytest.raises(CheckpointError, match='pose network'):
        load_checkpoint(path)
    assert load_checkpoint(path, with_pose=False).pose_net is None  # depth alone still fine


def test_unknown_network_and_no_depth_weights(small_ckpt):
    path, _, _ = small_ckpt
    _rewrite(path, lambda o: o['config']['model']['depth_net'].__setitem__('name', 'ResNet18'))
    with pytest.raises(CheckpointError, match='ResNet18'):
        load_checkpoint(path)
    _rewrite(path, lambda o: o.__setitem__('state_dict', {k: v for k, v in o['state_dict'].items()
                                                         if not k.startswith('model.depth_net.')}))
    with pytest.raises(CheckpointError, match='no depth network weights'):
        load_checkpoint(path)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nope.ckpt')
    junk = tmp_path / 'junk.ckpt'
    junk.write_bytes(b'this is not a checkpoint' * 10)
    with pytest.raises(CheckpointError, match='cannot read'):
        load_checkpoint(junk)
    no_state = tmp_path / 'nostate.ckpt'
    torch.save({'weights': torch.zeros(3)}, no_state)
    with pytest.raises(CheckpointError, match='no state_dict'):
        load_checkpoint(no_state)
    a_list = tmp_path / 'list.ckpt'
    torch.save([torch.zeros(3)], a_list)
    with pytest.raises(CheckpointError, match='no state_dict'):
        load_checkpoint(a_list)


def _one_line(exc) -> str:
    text = str(exc.value)
    assert '\n' not in text, text
    return text


@pytest.mark.parametrize('obj,text', [
    ({'state_dict': [1, 2], 'config': {}}, 'state_dict is list [1, 2], expected a mapping of parameter names'),
    ({'state_dict': {'model.depth_net.x': 3}}, "state_dict['model.depth_net.x'] is int, expected a tensor"),
    ({'state_dict': {}, 'config': [1]}, 'config is list [1], expected a mapping'),
    ({'state_dict': {}, 'config': 'PackNet01'}, "config is str 'PackNet01', expected a mapping"),
    ({'state_dict': {}, 'config': {'model': 5}}, 'config: model is 5 (int), expected a mapping'),
    ({'state_dict': {}, 'config': {'model': {'depth_net': {'width': 'wide'}}}},
     "config: model.depth_net.width is 'wide' (str), expected a number"),
    ({'state_dict': {}, 'config': {'datasets': {'augmentation': {'image_shape': ['a', 'b']}}}},
     "config: datasets.augmentation.image_shape is ['a', 'b'], expected two integers"),
])
def test_malformed_state_dict_or_config_is_a_checkpoint_error(tmp_path, obj, text):
    path = tmp_path / 'bad.ckpt'
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert _one_line(exc) == f'{path}: {text}' or _one_line(exc).startswith(f'{path}: {text}')


def test_empty_and_truncated_files_say_so(tmp_path, small_ckpt):
    empty = tmp_path / 'empty.ckpt'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(empty)
    assert _one_line(exc) == (f'checkpoint {empty} is empty (0 bytes): a truncated or unfinished copy; '
                              f'copy or save it again')
    path, _, _ = small_ckpt
    data = path.read_bytes()
    cut = tmp_path / 'cut.ckpt'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(cut)
    text = _one_line(exc)
    assert text.startswith(f'cannot read checkpoint {cut}: ') and 'truncated, corrupt' in text
    assert f'({len(data) // 2} bytes' in text and len(text) < 250


@pytest.mark.parametrize('key,corrupt,what', [
    ('model.depth_net.pre_calc.conv_base.weight', lambda t: t.view(-1).__setitem__(5, float('nan')), 'non-finite'),
    ('model.depth_net.pre_calc.conv_base.bias', lambda t: t.view(-1).__setitem__(0, float('-inf')), 'non-finite'),
    # a flipped top exponent bit: finite, but ~1e37, and every depth map becomes NaN
    ('model.depth_net.disp1_layer.conv1.weight',
     lambda t: t.view(-1).view(torch.int32).__ixor__(torch.tensor(1 << 30, dtype=torch.int32)), 'implausibly large'),
    ('model.pose_net.pose_pred.bias', lambda t: t.view(-1).__setitem__(0, float('nan')), 'non-finite'),
])
def test_non_finite_or_huge_weights_are_refused(small_ckpt, key, corrupt, what):
    path, _, _ = small_ckpt
    _rewrite(path, lambda o: corrupt(o['state_dict'][key]))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    text = _one_line(exc)
    assert text.startswith(f'{path}: weight {key} has ') and what in text and 'refusing to load it' in text
    if key.startswith('model.pose_net.'):  # the depth network alone is still usable
        assert load_checkpoint(path, with_pose=False).pose_net is None


# ----------------------------------------------------------------------------- (f) project format
def test_project_round_trip(tmp_path):
    torch.manual_seed(3)
    depth = build_depth_net('PackNetSlim01', '1A', 0.25)
    pose = PoseNet(nb_ref_imgs=2)
    spec = ModelSpec('PackNetSlim01', width=0.25, image_shape=(128, 416), max_depth=60.0)
    meta = {'training_data': 'kitti_tiny', 'metrics': {'abs_rel': 0.123, 'a1': 0.87}, 'license': 'MIT'}
    path = save_checkpoint(tmp_path / 'sub' / 'project.ckpt', depth, spec, pose_net=pose, metadata=meta,
                           config={'arch': {'max_epochs': 3}, 'model': {'params': {'crop': 'garg'}}},
                           extra={'epoch': 3})
    assert path == tmp_path / 'sub' / 'project.ckpt' and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ['project.ckpt']  # no temporary left behind

    raw = torch.load(path, map_location='cpu', weights_only=True)  # plain data only
    assert raw['format'] == FORMAT and raw['epoch'] == 3
    assert raw['config']['model']['depth_net'] == {'name': 'PackNetSlim01', 'version': '1A', 'width': 0.25}
    assert raw['config']['model']['params'] == {'crop': 'garg', 'min_depth': 0.0, 'max_depth': 60.0}
    assert raw['config']['arch'] == {'max_epochs': 3}
    assert raw['config']['datasets']['augmentation']['image_shape'] == [128, 416]
    assert raw['metadata']['metrics'] == meta['metrics'] and raw['metadata']['license'] == 'MIT'
    assert raw['metadata']['network'] == 'PackNetSlim01-1A-w0.25'
    assert raw['metadata']['torch_version'] == torch.__version__
    for key in ('created', 'packnet_ros_version'):
        assert raw['metadata'][key]
    assert set(raw['state_dict']) == {f'model.depth_net.{k}' for k in depth.state_dict()} | \
        {f'model.pose_net.{k}' for k in pose.state_dict()}

    ck = load_checkpoint(path)
    assert ck.source == FORMAT and ck.path == str(path)
    assert ck.spec == spec
    assert ck.metadata['training_data'] == 'kitti_tiny' and ck.metadata['metrics']['a1'] == 0.87
    for net, ref in ((ck.depth_net, depth), (ck.pose_net, pose)):
        theirs = ref.state_dict()
        assert all(torch.equal(net.state_dict()[k], theirs[k]) for k in theirs)


def test_save_checkpoint_stores_float32_cpu(tmp_path):
    depth = build_depth_net('PackNetSlim01', '1A', 0.25).double()
    path = save_checkpoint(tmp_path / 'd.ckpt', depth, SMALL)
    raw = torch.load(path, weights_only=True)
    assert {v.dtype for v in raw['state_dict'].values()} == {torch.float32}
    assert not any(k.startswith('model.pose_net.') for k in raw['state_dict'])
    assert load_checkpoint(path).pose_net is None


def test_metadata_of_any_python_type_still_loads_with_weights_only(tmp_path):
    """torch.__version__ (a TorchVersion), numpy scalars/arrays, paths, dtypes in metadata,
    config or extra become built-in types, so the file needs no pickle global."""
    import enum
    from pathlib import Path

    class Mode(enum.IntEnum):
        A = 1

    depth = build_depth_net('PackNetSlim01', '1A', 0.25)
    meta = {'hardware': {'torch': torch.__version__, 'cpus': np.int64(2), 'bf16': np.bool_(True),
                         'dtype': torch.float16, 'mode': Mode.A},
            'metrics': {'abs_rel': np.float32(0.25), 'bins': np.arange(3)}, 'data': Path('/data/kitti')}
    path = save_checkpoint(tmp_path / 'meta.ckpt', depth, SMALL, metadata=meta,
                           config={'optim': {'lr': np.float64(2e-4)}}, extra={'epoch': np.int64(3)})
    raw = torch.load(path, map_location='cpu', weights_only=True)
    hw = raw['metadata']['hardware']
    assert hw == {'torch': str(torch.__version__), 'cpus': 2, 'bf16': True, 'dtype': 'torch.float16', 'mode': 1}
    assert type(hw['torch']) is str and type(hw['cpus']) is int and type(hw['bf16']) is bool
    assert raw['metadata']['metrics'] == {'abs_rel': 0.25, 'bins': [0, 1, 2]}
    assert raw['metadata']['data'] == '/data/kitti' and raw['epoch'] == 3 and raw['config']['optim']['lr'] == 2e-4
    assert load_checkpoint(path).metadata['hardware']['cpus'] == 2


# ----------------------------------------------------------------------------- (g) config -> ModelSpec
def test_official_config_reaches_model_spec(official_loaded):
    assert official_loaded.spec == ModelSpec('PackNetSlim01', '1A', 1.0, (192, 640), 80.0, 'PoseNet')


def test_yacs_image_shape_and_max_depth_reach_estimator(tmp_path):
    torch.manual_seed(4)
    depth = build_depth_net('PackNetSlim01', '1A', 0.25)
    pose = PoseNet(nb_ref_imgs=2)
    cfg = _packnet_sfm_config(image_shape=(320, 1024), max_depth=120.0, extra_depth={'width': 0.25})
    path = _save_official(tmp_path / 'wide.ckpt', depth, pose, cfg, epoch=7)
    ck = load_checkpoint(path)
    assert ck.spec.image_shape == (320, 1024) and ck.spec.max_depth == 120.0 and ck.spec.width == 0.25
    est = DepthEstimator.from_checkpoint(str(path), device='cpu', precision='fp32')
    assert est.input_shape == (320, 1024) and est.max_depth == 120.0
    assert est.label == 'PackNetSlim01-1A-w0.25'
    assert DepthEstimator.from_checkpoint(str(path), device='cpu', precision='fp32', max_depth=30.0).max_depth == 30.0


def test_model_spec_from_config_defaults():
    spec = ModelSpec.from_config({})
    assert spec == ModelSpec('PackNet01', '1A', 1.0, (192, 640), 80.0, None)
    spec = ModelSpec.from_config({'model': {'depth_net': {'name': 'PackNet01', 'version': '1B'},
                                            'params': {'max_depth': 50}},
                                  'datasets': {'augmentation': {'image_shape': [384, 1280]}}})
    assert (spec.version, spec.image_shape, spec.max_depth) == ('1B', (384, 1280), 50.0)
    assert ModelSpec.from_config(SMALL.to_config()) == SMALL  # to_config / from_config round trip


def test_shipped_checkpoint_loads_with_plain_weights_only():
    from packnet_ros.checkpoint import default_checkpoint_path
    path = default_checkpoint_path()
    if path is None:
        pytest.skip('no default checkpoint installed')
    raw = torch.load(path, map_location='cpu', weights_only=True)
    assert raw['format'] and raw['metadata']['licence'] and isinstance(raw['metadata']['training']['hardware']['torch'], str)


def test_a_half_precision_depth_net_loads_as_float32_and_predicts_alike(tmp_path):
    """save_checkpoint(depth_dtype=float16) halves the file; loading gives float32 weights
    within fp16 rounding of the originals, and the same depth within 1 %."""
    import dataclasses

    import torch

    from packnet_ros.checkpoint import load_checkpoint, save_checkpoint
    from packnet_ros.weights import resolve_weights
    w = resolve_weights('untrained:PackNetSlim01:0.25').checkpoint
    spec = dataclasses.replace(w.spec, image_shape=(64, 224))
    full = save_checkpoint(tmp_path / 'f32.ckpt', w.depth_net, spec)
    half = save_checkpoint(tmp_path / 'f16.ckpt', w.depth_net, spec, depth_dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    a, b = load_checkpoint(full, with_pose=False).depth_net, load_checkpoint(half, with_pose=False).depth_net
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert q.dtype == p.dtype, name
        if p.is_floating_point():
            torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4)
    x = torch.rand(1, 3, 64, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        da, db = 1 / a.eval()(x), 1 / b.eval()(x)
    assert float(((da - db).abs() / da).max()) < 0.01
