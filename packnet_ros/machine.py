"""Description of the machine a number was measured on (benchmarks, model cards, reports)."""
from __future__ import annotations

import os
import platform

import torch


def cpu_supports_fast_bf16() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def machine_info(device: torch.device | str | None = None) -> dict:
    """Platform, Python/torch versions, CPU model and bf16 features (``amx``, ``avx512_bf16``
    from /proc/cpuinfo), thread counts, and the GPU name(s) when CUDA is available.

    Args:
        device: the device the measurement ran on (recorded as ``device``), if any.
    """
    info: dict = {'platform': platform.platform(), 'python': platform.python_version(),
                  'torch': str(torch.__version__), 'cpu': platform.processor() or platform.machine(),
                  'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
                  'cpu_native_bf16': cpu_supports_fast_bf16()}
    if device is not None:
        info['device'] = str(device)
    try:
        with open('/proc/cpuinfo') as f:
            flags = ''
            model = None
            for line in f:
                if line.startswith('model name') and model is None:
                    model = line.split(':', 1)[1].strip()
                if line.startswith('flags') and not flags:
                    flags = line
        if model:
            info['cpu'] = model
        info['amx'] = 'amx_bf16' in flags
        info['avx512_bf16'] = 'avx512_bf16' in flags
    except OSError:
        pass
    if torch.cuda.is_available():
        info['gpus'] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if device is not None and torch.device(device).type == 'cuda':
            info['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return info
