"""ONNX export of a depth network at a fixed input shape (core: no verification, no CLI).

One exporter for ``packnet-ros export`` (:mod:`packnet_ros.apps.export`, which verifies the
file in onnxruntime) and the OpenVINO backend (:mod:`packnet_ros.networks.openvino_backend`):
the network is prepared for inference on the CPU in float32 (``backend`` 'eager' = the
module as written, 'fast' = folded packing layers), its weights made contiguous (NCHW), and
exported with the TorchScript-based exporter (opset 17 by default): GroupNorm becomes
InstanceNormalization + reshapes, the packing 3D convolutions Conv nodes. Input ``rgb``
(1, 3, H, W) float32 RGB in [0, 1]; output ``inv_depth`` (1, 1, H, W) in 1/m for PackNet,
``depth`` (1, 1, H, W) in metres for networks whose ``output_kind`` is 'depth' (BTS, SID;
a SID model exports its depth only, not its confidence).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .fast import prepare_for_inference

INPUT_NAME = 'rgb'
OUTPUT_NAME = 'inv_depth'
DEPTH_OUTPUT_NAME = 'depth'


def output_name(net: nn.Module) -> str:
    """The exported output's name: ``inv_depth`` (PackNet, 1/m) or ``depth`` (BTS, SID, m)."""
    return DEPTH_OUTPUT_NAME if getattr(net, 'output_kind', 'inv_depth') == 'depth' else OUTPUT_NAME
DEFAULT_OPSET = 17


def plain_layout(model: nn.Module) -> nn.Module:
    """Contiguous (NCHW) weights: exporters and other runtimes pick their own layouts."""
    for p in model.parameters():
        p.data = p.data.contiguous()
    return model


def export_onnx_model(net: nn.Module, shape: tuple[int, int], out: str | Path, opset: int = DEFAULT_OPSET,
                      backend: str = 'eager', dynamo: bool = False) -> tuple[nn.Module, torch.Tensor]:
    """Write ``net`` as ONNX for a (1, 3, H, W) input, ``shape`` = (H, W).

    Args:
        net: a depth network (not modified).
        shape: (H, W) of the fixed input.
        out: the .onnx file (its folder is created).
        opset: ONNX opset.
        backend: 'eager' or 'fast' (see :func:`packnet_ros.networks.fast.prepare_for_inference`).
        dynamo: use the torch.export-based exporter (needs onnxscript).

    Returns:
        (the float32 CPU module that was exported, the sample input it was traced with).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = plain_layout(prepare_for_inference(net, torch.device('cpu'), torch.float32, backend))
    x = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings about shape-dependent Python branches (fixed shape)
        torch.onnx.export(model, (x,), str(out), input_names=[INPUT_NAME], output_names=[output_name(net)],
                          opset_version=opset, dynamo=dynamo, do_constant_folding=True)
    return model, x
