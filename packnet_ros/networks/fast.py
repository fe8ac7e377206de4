"""Inference-only rewrites of PackNet that compute the same function faster.

Packing layers (paper Fig. 3a) are ``pack -> Conv3d(1 -> d, 3x3x3) -> Conv2d(d*4C -> C, k)``
followed by GroupNorm and ELU. The 3D convolution and the 2D convolution are both linear
with nothing in between, so away from the image border they compose into ONE 2D
convolution over the 4C packed channels with a (k+2)x(k+2) kernel:

    Z[o] = b2[o] + sum_{f,c,p,q} W2[o, f*4C + c, p, q] * b3[f]
           + sum_{c', s, t} Kc[o, c', s, t] * X[c', y + s - r - 1, x + t - r - 1],
    Kc[o, c', s, t] = sum_{f, a, i, j} w3[f, a, i, j] * W2[o, f*4C + c' - a + 1, s - i, t - j]

(r = k // 2; indices outside their ranges contribute nothing). The 2D convolution then
reads d*4C*k^2 inputs per output instead of 4C*(k+2)^2: 4.1x fewer operations for
pack1 (k=5, d=8) and 2.9x for the k=3 layers. The composition is exact only where the
2D convolution's window lies inside the image, because the original zero-pads the 3D
convolution's OUTPUT; the r border rows and columns are therefore recomputed with the
original two convolutions on thin strips of the input, which makes the rewrite exact
everywhere (up to floating-point rounding, verified against the fidelity fixture).

The border strips re-read the original 2D convolution's weights (d*4C input channels: 75 M
of them in PackNet01's pack5), once per strip. On small maps that costs more than the
whole original layer (measured at 640x192 in bf16: pack5's strips 320 ms, its original
layer ~30 ms), so a layer whose packed map has fewer than ``min_area`` pixels runs the
original two convolutions instead; the choice is made per call from the input size.
"""
from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from .layers import PackLayerConv3d, packing


def compose_pack_kernel(conv3d: nn.Conv3d, conv2d: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite (weight, bias) of Conv3d(1->d, 3x3x3, pad 1) followed by Conv2d(d*4C -> C, k).

    Returns:
        weight (C, 4C, k+2, k+2) and bias (C,) in float64 (valid for interior pixels).
    """
    w3 = conv3d.weight.detach().double()[:, 0]  # (d, 3, 3, 3): (feature, channel offset, dy, dx)
    b3 = cast(torch.Tensor, conv3d.bias).detach().double()  # PackNet's convolutions have biases
    W2 = conv2d.weight.detach().double()
    b2 = cast(torch.Tensor, conv2d.bias).detach().double()
    d = w3.shape[0]
    C, Cin, k, _ = W2.shape
    n = Cin // d  # packed channels 4C
    W2r = W2.view(C, d, n, k, k)
    Kc = torch.zeros(C, n, k + 2, k + 2, dtype=torch.float64)
    for a in range(3):
        shift = a - 1  # c' = c + shift
        for i in range(3):
            for j in range(3):
                term = torch.einsum('f,ofcpq->ocpq', w3[:, a, i, j], W2r)  # (C, n, k, k) indexed by c
                if shift >= 0:
                    Kc[:, shift:, i:i + k, j:j + k] += term[:, :n - shift]
                else:
                    Kc[:, :n + shift, i:i + k, j:j + k] += term[:, -shift:]
    bias = b2 + torch.einsum('f,ofcpq->o', b3, W2r)
    return Kc, bias


class FoldedPackLayer(nn.Module):
    """Exact, faster replacement of a :class:`PackLayerConv3d` for inference.

    Shapes: (B, C, H, W) -> (B, C, H/2, W/2), same function as the original layer.
    """

    def __init__(self, layer: PackLayerConv3d, min_area: int = 0):
        super().__init__()
        self.min_area = int(min_area)
        self.r = layer.r
        conv = layer.conv
        self.k = conv.kernel_size
        weight, bias = compose_pack_kernel(layer.conv3d, conv.conv_base)
        dtype = conv.conv_base.weight.dtype
        self.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        self.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
        self.conv3d = copy.deepcopy(layer.conv3d)
        self.conv2d = copy.deepcopy(conv.conv_base)  # original 2D conv for the border strips
        self.normalize = copy.deepcopy(conv.normalize)
        self.activ = conv.activ

    def executed_flops(self, h: int, w: int) -> int:
        """FLOPs of one forward on a packed input of h x w (composite conv + border strips)."""
        C, n, kk = self.weight.shape[0], self.weight.shape[1], self.k
        r, d = kk // 2, self.conv3d.weight.shape[0]
        if not self._folded(h, w):
            return 2 * d * 27 * n * h * w + 2 * d * n * kk * kk * C * h * w
        flops = 2 * C * n * (kk + 2) ** 2 * h * w
        if r:  # _folded() guarantees room for the strips
            strip_area = 2 * (2 * r + 1) * w + 2 * (2 * r + 1) * h
            flops += 2 * d * 27 * n * strip_area  # conv3d on the strips
            flops += 2 * d * n * kk * kk * C * (2 * r * w + 2 * r * (h - 2 * r))  # conv2d on the strips
        return flops

    def _folded(self, h: int, w: int) -> bool:
        """Whether a packed h x w input takes the folded path (else the original one)."""
        r = self.k // 2
        return h * w >= self.min_area and h >= 2 * r + 1 and w >= 2 * r + 1

    def _original(self, x: torch.Tensor) -> torch.Tensor:
        """conv3d of packed channels, flattened feature-major (B, d*4C, h, w)."""
        return self.conv3d(x.unsqueeze(1)).flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = packing(x, self.r)
        r = self.k // 2
        h, w = xp.shape[-2:]
        if not self._folded(h, w):  # small map: the original layer is cheaper than the strips
            z = F.conv2d(self._original(xp), self.conv2d.weight, self.conv2d.bias, padding=r)
            return self.activ(self.normalize(z))
        z = F.conv2d(xp, self.weight, self.bias, padding=r + 1)
        if r > 0:
            W2, b2 = self.conv2d.weight, self.conv2d.bias
            # rows [0, r): needs conv3d rows [0, 2r) -> packed rows [0, 2r + 1)
            y = self._original(xp[:, :, :2 * r + 1])[:, :, :2 * r]
            top = F.conv2d(F.pad(y, (r, r, r, 0)), W2, b2)
            # rows [h - r, h): conv3d rows [h - 2r, h) -> packed rows [h - 2r - 1, h)
            y = self._original(xp[:, :, h - 2 * r - 1:])[:, :, 1:]
            bottom = F.conv2d(F.pad(y, (r, r, 0, r)), W2, b2)
            # cols [0, r) and [w - r, w) for rows [r, h - r)
            y = self._original(xp[..., :2 * r + 1])[..., :2 * r]
            left = F.conv2d(F.pad(y, (r, 0, 0, 0)), W2, b2)
            y = self._original(xp[..., w - 2 * r - 1:])[..., 1:]
            right = F.conv2d(F.pad(y, (0, r, 0, 0)), W2, b2)
            z = z.clone() if z.requires_grad else z
            z[:, :, :r] = top
            z[:, :, h - r:] = bottom
            z[:, :, r:h - r, :r] = left
            z[:, :, r:h - r, w - r:] = right
        return self.activ(self.normalize(z))


FOLD_MIN_AREA = 1024
"""Packed maps smaller than this (pixels) run the original layer (see the module docstring)."""


def fold_pack_layers(net: nn.Module, min_area: int = FOLD_MIN_AREA) -> nn.Module:
    """Copy of ``net`` with every PackLayerConv3d replaced by a :class:`FoldedPackLayer`.

    Args:
        net: a PackNet (any width). Not modified.
        min_area: packed maps with fewer pixels take the original path (0 = always fold).
    """
    out = copy.deepcopy(net)
    for name, module in list(out.named_children()):
        if isinstance(module, PackLayerConv3d):
            setattr(out, name, FoldedPackLayer(module, min_area))
    return out


BACKENDS = ('auto', 'eager', 'fast', 'compile', 'openvino')
"""Inference backends: ``eager`` (the module as is), ``fast`` (folded packing layers),
``compile`` (fast + torch.compile), ``openvino`` (the folded network exported to ONNX and
compiled by OpenVINO for the CPU, :mod:`packnet_ros.networks.openvino_backend`), ``auto``
(= fast here; :class:`packnet_ros.inference.DepthEstimator` measures openvino against it)."""


def prepare_for_inference(net: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32,
                          backend: str = 'auto', input_shape: tuple[int, int] | None = None,
                          cache: bool = True) -> nn.Module:
    """Inference copy of a depth network on ``device`` in ``dtype``.

    All torch backends: eval mode, weights cast once to ``dtype`` (no per-call autocast casts),
    channels-last Conv2d weights (oneDNN on CPU, tensor cores on CUDA), no gradients.
    ``fast``/``compile`` also fold the packing layers (:class:`FoldedPackLayer`, exact);
    ``compile`` wraps the result in ``torch.compile``. ``openvino`` returns an
    :class:`~packnet_ros.networks.openvino_backend.OpenVINODepthNet` compiled for the fixed
    ``input_shape`` (CPU only; fp32 or bf16; ``cache``: keep the compiled model on disk).

    Raises:
        ValueError: unknown backend; openvino on a non-CPU device, in fp16 or without
            ``input_shape``.
        packnet_ros.networks.openvino_backend.OpenVINOUnavailableError: openvino asked for
            but not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f'backend {backend!r} not in {BACKENDS}')
    if backend == 'openvino':
        if torch.device(device).type != 'cpu':
            raise ValueError(f'backend "openvino" runs on the CPU only, not on {device} '
                             '(use backend fast/auto on CUDA, or device cpu)')
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f'backend "openvino" runs fp32 or bf16, not {dtype}')
        if input_shape is None:
            raise ValueError('backend "openvino" compiles for a fixed input shape: pass input_shape=(H, W)')
        from .openvino_backend import compile_openvino
        return compile_openvino(net, input_shape, dtype, cache=cache)
    if backend == 'auto':
        backend = 'fast'
    out = fold_pack_layers(net.float().eval()) if backend in ('fast', 'compile') else copy.deepcopy(net)
    out = out.eval().to(device=device, dtype=dtype)
    for m in out.modules():
        if isinstance(m, nn.Conv2d):
            m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in torch's stubs
    for p in out.parameters():
        p.requires_grad_(False)
    if backend == 'compile':
        mode = 'max-autotune-no-cudagraphs' if device.type == 'cpu' else 'reduce-overhead'
        out = cast(nn.Module, torch.compile(out, mode=mode, dynamic=False))
    return out
