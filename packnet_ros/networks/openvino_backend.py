"""OpenVINO backend: a depth network compiled by OpenVINO for the CPU, called like the torch module.

The network is exported with the project's exporter
(:func:`packnet_ros.networks.export.export_onnx_model`, the folded 'fast' form, float32,
opset 17) and compiled by OpenVINO's CPU plugin with

- ``INFERENCE_PRECISION_HINT``: ``bf16`` when bf16 is asked for and OpenVINO reports native
  bf16 on this CPU (``OPTIMIZATION_CAPABILITIES`` contains ``BF16``: AVX512-BF16 or AMX),
  else ``f32``;
- ``PERFORMANCE_HINT``: ``LATENCY``; ``INFERENCE_NUM_THREADS``: torch's intra-op thread count.

Cache (a second start skips the export and OpenVINO's compilation): one folder per network,
``<cache root>/<key>/`` holding ``model.onnx`` and OpenVINO's compiled blob (its
``CACHE_DIR``); the key hashes the weights (names, shapes, bytes), the network class, the
input shape, the precision hint, the opset and the OpenVINO / torch versions. The root is
``$PACKNET_ROS_OPENVINO_CACHE``, else ``$XDG_CACHE_HOME/packnet_ros/openvino``, else
``~/.cache/packnet_ros/openvino``. Folders are never pruned automatically (delete the root to
reclaim space); online adaptation's swapped networks are compiled without the disk cache.

The result, :class:`OpenVINODepthNet`, is an ``nn.Module`` without parameters: (1, 3, H, W)
float in [0, 1] (any dtype, any memory layout, CPU) -> inverse depth (1, 1, H, W) float32
1/m as a torch tensor, at the fixed (H, W) it was compiled for. Calls are serialised by a
lock (one infer request).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .export import DEFAULT_OPSET, export_onnx_model

FORMAT_VERSION = 1
"""Bumped when the export or the cache layout changes (part of the cache key)."""

_PRECISION_HINTS = {torch.float32: 'f32', torch.bfloat16: 'bf16'}


class OpenVINOUnavailableError(ImportError):
    """OpenVINO is not installed (``pip install openvino``)."""


def openvino_version() -> str | None:
    """The installed OpenVINO version, or None when it cannot be imported."""
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__)


def _core() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise OpenVINOUnavailableError(
            f'backend "openvino" needs the openvino package (pip install openvino): {exc}') from exc
    return openvino.Core()


def openvino_native_bf16(core: Any = None) -> bool:
    """True when OpenVINO's CPU plugin runs bf16 natively here (AVX512-BF16 or AMX)."""
    core = core or _core()
    try:
        return 'BF16' in list(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))
    except RuntimeError:
        return False


def default_cache_dir() -> Path:
    """Root of the compiled-model cache (see the module docstring)."""
    env = os.environ.get('PACKNET_ROS_OPENVINO_CACHE')
    if env:
        return Path(env)
    base = os.environ.get('XDG_CACHE_HOME') or str(Path.home() / '.cache')
    return Path(base) / 'packnet_ros' / 'openvino'


def cache_key(net: nn.Module, shape: tuple[int, int], hint: str, opset: int = DEFAULT_OPSET) -> str:
    """Hash of the weights, the network class, input shape, precision hint and versions."""
    h = hashlib.blake2b(digest_size=16)
    meta = {'format': FORMAT_VERSION, 'class': type(net).__name__, 'shape': list(shape), 'hint': hint,
            'opset': opset, 'openvino': openvino_version(), 'torch': str(torch.__version__)}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f'{name}:{t.dtype}:{tuple(t.shape)};'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return h.hexdigest()


class OpenVINODepthNet(nn.Module):
    """A compiled OpenVINO depth network with the torch module's call contract.

    Attributes:
        input_shape: (H, W) it was compiled for.
        hint: OpenVINO inference precision ('f32' or 'bf16').
        threads: ``INFERENCE_NUM_THREADS``.
        cache_path: its cache folder, or None when compiled without the disk cache.
        cache_hit: the ONNX file came from the cache (no export in this process).
        export_s, compile_s: seconds spent exporting / compiling (or loading the blob).
    """

    def __init__(self, compiled: Any, input_shape: tuple[int, int], hint: str, threads: int,
                 cache_path: Path | None, cache_hit: bool, export_s: float, compile_s: float):
        super().__init__()
        self.compiled = compiled
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        self.hint = hint
        self.threads = int(threads)
        self.cache_path = cache_path
        self.cache_hit = cache_hit
        self.export_s = export_s
        self.compile_s = compile_s
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3 or tuple(x.shape[-2:]) != self.input_shape:
            raise ValueError(f'the OpenVINO network was compiled for (1, 3, {self.input_shape[0]}, '
                             f'{self.input_shape[1]}), got {tuple(x.shape)}')
        arr = np.ascontiguousarray(x.detach().to('cpu', torch.float32).numpy())
        with self._lock:
            res = self._request.infer({0: arr})
            out = np.array(res[0], dtype=np.float32, copy=True)  # the request reuses its buffers
        return torch.from_numpy(out)

    def extra_repr(self) -> str:
        return f'input_shape={self.input_shape}, hint={self.hint!r}, threads={self.threads}'


def compile_openvino(net: nn.Module, input_shape: tuple[int, int], dtype: torch.dtype = torch.float32,
                     threads: int | None = None, cache: bool = True, cache_dir: str | Path | None = None,
                     opset: int = DEFAULT_OPSET) -> OpenVINODepthNet:
    """Export ``net`` (folded, fp32) to ONNX and compile it with OpenVINO for the CPU.

    Args:
        net: a depth network (not modified).
        input_shape: (H, W) of the fixed input.
        dtype: torch.float32 or torch.bfloat16 (bf16 only where OpenVINO has native bf16,
            else f32).
        threads: ``INFERENCE_NUM_THREADS`` (default: ``torch.get_num_threads()``).
        cache: keep the ONNX file and the compiled blob on disk (see the module docstring).
        cache_dir: cache root (default :func:`default_cache_dir`).
        opset: ONNX opset of the export.

    Raises:
        OpenVINOUnavailableError: openvino is not installed.
        ValueError: a dtype other than float32 / bfloat16.
    """
    if dtype not in _PRECISION_HINTS:
        raise ValueError(f'backend "openvino" runs fp32 or bf16, not {dtype}')
    core = _core()
    hint = 'bf16' if dtype == torch.bfloat16 and openvino_native_bf16(core) else 'f32'
    threads = int(threads or torch.get_num_threads())
    config: dict[str, Any] = {'INFERENCE_PRECISION_HINT': hint, 'PERFORMANCE_HINT': 'LATENCY',
                              'INFERENCE_NUM_THREADS': threads}
    net = net.float().eval()
    shape = (int(input_shape[0]), int(input_shape[1]))
    if not cache:
        with tempfile.TemporaryDirectory(prefix='packnet_ov_') as tmp:
            t0 = time.perf_counter()
            export_onnx_model(net, shape, Path(tmp) / 'model.onnx', opset, backend='fast')
            t1 = time.perf_counter()
            compiled = core.compile_model(str(Path(tmp) / 'model.onnx'), 'CPU', config)
            t2 = time.perf_counter()
        return OpenVINODepthNet(compiled, shape, hint, threads, None, False, t1 - t0, t2 - t1)
    folder = Path(cache_dir or default_cache_dir()) / cache_key(net, shape, hint, opset)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / 'model.onnx'
    hit = onnx_path.is_file()
    t0 = time.perf_counter()
    if not hit:  # export beside, then rename: a concurrent start never reads half a file
        tmp_path = folder / f'model.{os.getpid()}.{threading.get_ident()}.onnx.tmp'
        export_onnx_model(net, shape, tmp_path, opset, backend='fast')
        os.replace(tmp_path, onnx_path)
    t1 = time.perf_counter()
    compiled = core.compile_model(str(onnx_path), 'CPU', dict(config, CACHE_DIR=str(folder)))
    t2 = time.perf_counter()
    return OpenVINODepthNet(compiled, shape, hint, threads, folder, hit, t1 - t0, t2 - t1)
