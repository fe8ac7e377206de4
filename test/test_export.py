"""Export to ONNX / TorchScript at a fixed shape, verified against PyTorch (issue 5)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from packnet_ros.apps.export import ExportError, export_onnx, export_torchscript, relative_error
from packnet_ros.networks import PackNetSlim01


@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return PackNetSlim01(version='1A', width=0.25).eval()


def test_onnx_runs_in_onnxruntime_within_1e3_of_pytorch(net, tmp_path):
    import onnxruntime as ort
    rep = export_onnx(net, (96, 320), tmp_path / 'm.onnx')
    assert rep['relative_error_vs_pytorch'] < 1e-3
    # GroupNorm and the packing 3D convolutions are in the graph as standard ONNX ops
    assert 'InstanceNormalization' in rep['ops'] and 'Conv' in rep['ops'] and 'DepthToSpace' in rep['ops']
    sess = ort.InferenceSession(str(tmp_path / 'm.onnx'), providers=['CPUExecutionProvider'])
    x = torch.rand(1, 3, 96, 320)
    with torch.inference_mode():
        ref = net(x).numpy()
    got = sess.run(None, {'rgb': x.numpy()})[0]
    assert got.shape == (1, 1, 96, 320) and relative_error(got, ref) < 1e-3  # a new input, not the export one


def test_fast_backend_exports_too(net, tmp_path):
    rep = export_torchscript(net, (64, 128), tmp_path / 'm.pt', backend='fast')
    assert rep['relative_error_vs_pytorch'] < 1e-3
    loaded = torch.jit.load(str(tmp_path / 'm.pt'))
    x = torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(x).numpy(), net(x).numpy(), rtol=1e-4, atol=1e-5)


def test_cli_export_and_bad_shape(tmp_path):
    out = tmp_path / 'cli.onnx'
    p = subprocess.run([sys.executable, '-m', 'packnet_ros.apps.cli', 'export', '--checkpoint', 'untrained:PackNetSlim01:0.25',
                        '--shape', '320x96', '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)['network'] == 'PackNetSlim01-1A-w0.25' and out.is_file()
    p = subprocess.run([sys.executable, '-m', 'packnet_ros.apps.cli', 'export', '--checkpoint', 'untrained:PackNetSlim01:0.25',
                        '--shape', '300x96', '--out', str(tmp_path / 'x.onnx')], capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and 'multiples of 32' in p.stderr


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    """--shape abc names the option (checked before any loading); a checkpoint whose config or
    state_dict is not a mapping, or an empty file, is a one-line CheckpointError, exit 2."""
    from packnet_ros.apps.cli import main
    bad_config, bad_state, empty = tmp_path / 'cfg.ckpt', tmp_path / 'sd.ckpt', tmp_path / 'empty.ckpt'
    torch.save({'state_dict': {}, 'config': [1, 2]}, bad_config)
    torch.save({'state_dict': [1, 2], 'config': {}}, bad_state)
    empty.write_bytes(b'')
    for argv, text in ((['--shape', 'abc'], "--shape expects WxH, e.g. 640x192, got 'abc'"),
                       (['--checkpoint', str(bad_config)], f'{bad_config}: config is list [1, 2], expected a mapping'),
                       (['--checkpoint', str(bad_state)], f'{bad_state}: state_dict is list [1, 2], expected a mapping'),
                       (['--checkpoint', str(empty)], f'checkpoint {empty} is empty (0 bytes)')):
        rc = main(['export', *argv, '--out', str(tmp_path / 'x.onnx')])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f'packnet-ros export: error: {text}'), err
        assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    assert not (tmp_path / 'x.onnx').exists()


def test_export_error_is_raised_on_mismatch(net, tmp_path, monkeypatch):
    import packnet_ros.apps.export as ex
    monkeypatch.setattr(ex, 'VERIFY_RTOL', -1.0)  # any difference (even 0) now fails verification
    with pytest.raises(ExportError, match='differs'):
        ex.export_torchscript(net, (64, 128), tmp_path / 'y.pt')
