"""``packnet-ros export``: a depth network at a fixed input shape as ONNX or TorchScript.

ONNX (opset 17 by default, TorchScript-based exporter): GroupNorm becomes
InstanceNormalization + reshapes and the packing/unpacking 3D convolutions become Conv
nodes, both supported natively by onnxruntime and TensorRT (no GroupNorm plugin needed,
unlike NVIDIA's onnx_packnet sample). Input ``rgb`` (1, 3, H, W) float32 RGB in [0, 1];
output ``inv_depth`` (1, 1, H, W) in 1/m (depth = 1 / inv_depth, metres, for
velocity-supervised checkpoints); for the BTS and SID heads (``untrained:BTS-ResNet18``,
``SID-...`` checkpoints) the output is ``depth`` (1, 1, H, W) in metres (SID: depth only,
no confidence). Every export is verified: onnxruntime (or the
TorchScript module) must reproduce PyTorch within 1e-3 relative.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import ModelSpec
from ..networks.export import DEFAULT_OPSET, export_onnx_model, output_name, plain_layout
from ..networks.fast import prepare_for_inference
from ..weights import resolve_weights
from .args import parse_size

VERIFY_RTOL = 1e-3


class ExportError(RuntimeError):
    """Export failed or the exported model disagrees with PyTorch."""


def load_for_export(checkpoint: str) -> tuple[torch.nn.Module, ModelSpec, str]:
    """(depth network, spec, description) for a weights choice (:mod:`packnet_ros.weights`).

    Raises:
        packnet_ros.weights.WeightsError: no such weights.
    """
    resolved = resolve_weights(checkpoint, with_pose=False)
    ckpt = resolved.checkpoint
    return ckpt.depth_net.eval(), ckpt.spec, resolved.description


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref| (inverse depth and depth are positive and bounded)."""
    return float(np.max(np.abs(out - ref)) / max(float(np.max(np.abs(ref))), 1e-12))


def export_onnx(net: torch.nn.Module, shape: tuple[int, int], out: str | Path, opset: int = DEFAULT_OPSET,
                backend: str = 'eager', dynamo: bool = False) -> dict:
    """Export to ONNX (:func:`packnet_ros.networks.export.export_onnx_model`) and verify with
    onnxruntime; returns a report dict.

    Raises:
        ExportError: onnxruntime disagrees with PyTorch beyond VERIFY_RTOL.
    """
    import onnx
    import onnxruntime as ort
    out = Path(out)
    t0 = time.time()
    model, x = export_onnx_model(net, shape, out, opset, backend, dynamo)
    export_s = time.time() - t0
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    ops = sorted({n.op_type for n in proto.graph.node})
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    with torch.inference_mode():
        ref = model(x).numpy()
    got = sess.run(None, {'rgb': x.numpy()})[0]
    err = relative_error(got, ref)
    if got.shape != ref.shape or err > VERIFY_RTOL:
        raise ExportError(f'onnxruntime output differs from PyTorch: shape {got.shape} vs {ref.shape}, '
                          f'relative error {err:.2e} > {VERIFY_RTOL}')
    return {'format': 'onnx', 'path': str(out), 'opset': opset, 'input': list(x.shape), 'output': list(ref.shape),
            'output_name': output_name(net),
            'ops': ops, 'relative_error_vs_pytorch': err, 'export_s': round(export_s, 1),
            'size_mb': out.stat().st_size / 2 ** 20}


def export_torchscript(net: torch.nn.Module, shape: tuple[int, int], out: str | Path, backend: str = 'eager') -> dict:
    """Trace to TorchScript (fixed shape), save, reload and verify; returns a report dict."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = plain_layout(prepare_for_inference(net, torch.device('cpu'), torch.float32, backend))
    x = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        traced = torch.jit.trace(model, (x,), check_trace=False)
    traced.save(str(out))
    loaded = torch.jit.load(str(out))
    with torch.inference_mode():
        ref = model(x).numpy()
        got = loaded(x).numpy()
    err = relative_error(got, ref)
    if err > VERIFY_RTOL:
        raise ExportError(f'TorchScript output differs from PyTorch: relative error {err:.2e}')
    return {'format': 'torchscript', 'path': str(out), 'input': list(x.shape), 'output': list(ref.shape),
            'relative_error_vs_pytorch': err, 'size_mb': out.stat().st_size / 2 ** 20}


def _cmd_export(args) -> int:
    asked = parse_size(args.shape, '--shape', 32) if args.shape else None  # before the (slow) load
    net, spec, source = load_for_export(args.checkpoint)
    shape = asked or tuple(spec.image_shape)
    out = args.out or f'{spec.label}_{shape[1]}x{shape[0]}.{"onnx" if args.format == "onnx" else "pt"}'
    if args.format == 'onnx':
        report = export_onnx(net, shape, out, args.opset, args.backend, args.dynamo)
    else:
        report = export_torchscript(net, shape, out, args.backend)
    report.update(network=spec.label, source=source, backend=args.backend)
    print(json.dumps(report, indent=2))
    return 0


def register(sub) -> None:
    """Add the ``export`` verb."""
    p = sub.add_parser('export', help='export a depth network to ONNX or TorchScript (fixed input shape)')
    p.add_argument('--format', choices=('onnx', 'torchscript'), default='onnx')
    p.add_argument('--checkpoint', default='default', help='"default", a .ckpt, or untrained[:Network:width]')
    p.add_argument('--shape', default=None, help='WxH, multiples of 32 (default: the checkpoint\'s)')
    p.add_argument('--out', default=None, help='output file')
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--backend', choices=('eager', 'fast'), default='eager',
                   help='eager: the network as trained (portable); fast: folded packing layers')
    p.add_argument('--dynamo', action='store_true', help='use the torch.export-based exporter (needs onnxscript)')
    p.set_defaults(func=_cmd_export)
