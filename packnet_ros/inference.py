"""Inference core without ROS: checkpoint -> ready model; RGB image -> metric depth.

``DepthEstimator`` is the one implementation of preprocessing, intrinsics scaling,
network execution and depth post-processing used by the node, the CLIs (demo,
evaluate, benchmark) and the tests.

Pipeline (DESIGN.md): RGB (H, W, 3) uint8 -> resize to the network shape (h, w) ->
tensor (1, 3, h, w) in [0, 1] -> network -> inverse depth (1, 1, h, w) 1/m ->
depth = scale / inv_depth, metres, optionally resized back to the camera's (H, W) ->
REP 117 marking: +Inf beyond ``max_depth``, -Inf below ``min_depth``, NaN invalid.

Networks whose forward gives depth in metres (``depth_output_kind(net) == 'depth'``: BTS,
SID) take the same path with depth = scale * depth (no inversion; a resize interpolates
the depth itself); a network with ``forward_with_confidence`` (SID) also yields a
per-pixel confidence in [0, 1]. The ``fast`` backend (folded packing layers) is
PackNet's: for other networks ``auto`` and ``fast`` run ``eager``.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from .checkpoint import Checkpoint, ModelSpec, load_checkpoint
from .geometry import inv_to_depth, scale_intrinsics
from .imageproc import resize_rgb, rgb_to_tensor
from .machine import cpu_supports_fast_bf16
from .networks import depth_output_kind, sparse_guide_of, takes_sparse
from .networks.fast import BACKENDS, prepare_for_inference
from .networks.openvino_backend import OpenVINODepthNet

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
_DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}

OPENVINO_AUTO_ENV = 'PACKNET_ROS_OPENVINO_AUTO'
"""Set to 0 to keep ``backend: auto`` from considering OpenVINO (the test suite does, so
that its numbers do not depend on a timing)."""
AUTO_MAX_REL_DIFF = 0.01
"""``auto`` takes OpenVINO only within this mean relative depth difference of fp32."""
AUTO_CHECK_IMAGE = Path(__file__).resolve().parent / 'models' / 'auto_check_kitti.jpg'
"""The real street image (KITTI 2011_09_26_drive_0023 frame 3, 640x192, CC BY-NC-SA 4.0) on
which ``precision: auto`` and ``backend: auto`` compare a path with the fp32 module; resized to
the network input. Random noise is not what the networks see, and their bf16 error differs on it."""
AUTO_ROUNDS = 3
"""Interleaved timed calls per backend in ``auto``'s measurement (after one warm-up call)."""

log = logging.getLogger(__name__)


def resolve_device(device: str = 'auto') -> torch.device:
    """'auto' -> CUDA when available else CPU; otherwise ``torch.device(device)``.

    Raises:
        ValueError: a CUDA device was asked for but CUDA is not available.
    """
    if device in ('', 'auto', None):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {device!r} requested but CUDA is not available (use "cpu" or "auto")')
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> fp16 on CUDA, bf16 on a CPU with native bf16, else fp32.

    Raises:
        ValueError: unknown precision, or fp16 on CPU (no fast fp16 convolution there).
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision {precision!r} not in {PRECISIONS}')
    if precision == 'auto':
        if device.type == 'cuda':
            return 'fp16'
        return 'bf16' if cpu_supports_fast_bf16() else 'fp32'
    if precision == 'fp16' and device.type == 'cpu':
        raise ValueError('fp16 is for CUDA; on CPU use bf16 (or fp32)')
    return precision


def flip_post_process(inv: torch.Tensor, inv_flipped: torch.Tensor) -> torch.Tensor:
    """Fuse predictions of an image and its mirror (Monodepth / packnet-sfm "pp" mode).

    The mirrored prediction is flipped back. The left 5% of columns take the flipped-back
    prediction, the right 5% the original one, each blended linearly into the mean of
    both over the next 5% of the width; the middle is the mean.

    Args:
        inv: (B, 1, H, W) inverse depth of the image.
        inv_flipped: (B, 1, H, W) inverse depth of the horizontally flipped image.

    Returns:
        (B, 1, H, W) fused inverse depth.
    """
    back = inv_flipped.flip(-1)
    W = inv.shape[-1]
    xs = torch.linspace(0.0, 1.0, W, device=inv.device, dtype=inv.dtype).view(1, 1, 1, W)
    left = 1.0 - torch.clamp(20.0 * (xs - 0.05), 0.0, 1.0)  # 1 on the left 5%, 0 after 10%
    right = left.flip(-1)
    return right * inv + left * back + (1.0 - left - right) * 0.5 * (inv + back)


@dataclass
class DepthResult:
    """One prediction.

    Attributes:
        depth: (H, W) float32 metres along the optical axis; NaN invalid, +Inf beyond
            ``max_depth``, -Inf below ``min_depth`` (REP 117).
        K: (3, 3) intrinsics of ``depth``'s resolution, or None when none were given.
        rgb: (H, W, 3) uint8 input image at ``depth``'s resolution (for coloured clouds).
        scale: factor applied to the network's depth.
        timings_ms: preprocess / inference / postprocess wall times.
    """

    depth: np.ndarray
    K: np.ndarray | None
    rgb: np.ndarray
    scale: float = 1.0
    timings_ms: dict = field(default_factory=dict)


class DepthEstimator:
    """A depth network ready for inference on one device and precision.

    Args:
        depth_net: PackNet depth network (eval mode is set here).
        spec: what it is (input shape, name); see :class:`packnet_ros.checkpoint.ModelSpec`.
        device: "auto", "cpu", "cuda", "cuda:N".
        precision: "auto", "fp32", "bf16", "fp16" (see :func:`resolve_precision`). On a CPU,
            "auto" resolves to bf16 only when the chosen backend's bf16 output on a fixed
            input is within AUTO_MAX_REL_DIFF (1 %) mean relative depth difference of the fp32
            module; otherwise it stays fp32 (some CPUs' bf16 kernels, e.g. oneDNN's AMX ones on
            PackNet01's folded packing layers, measured 2.6 %: issue 14). ``precision`` names
            the outcome and ``precision_reason`` says why.
        backend: "fast" (exact folded packing layers), "eager" (the module as is),
            "compile" (fast + torch.compile), "openvino" (the folded network compiled by
            OpenVINO for the CPU, fp32/bf16; cached on disk), "auto": "fast", except on a CPU
            where OpenVINO is installed and a short measurement at construction (interleaved
            calls of both on this input shape) finds it faster and within 1 % mean relative
            depth difference of the fp32 module (see :meth:`_choose_auto`); ``backend`` then
            names the chosen one and ``backend_reason`` says why. See
            :func:`packnet_ros.networks.fast.prepare_for_inference`. For a network that
            outputs depth (BTS, SID; no packing layers) "fast" runs "eager", and "auto" weighs
            "eager" against "openvino" the same way (not for a sparse branch or a confidence
            output, which the OpenVINO export does not carry).
        max_depth: metres; deeper pixels become +Inf. Defaults to the spec's max_depth.
        min_depth: metres; shallower pixels become -Inf (0 disables).
        input_shape: (h, w) override of the network input size (multiples of 32).

    Raises:
        ValueError: bad device/precision or an input shape not divisible by 32; backend
            openvino on a CUDA device or in fp16.
        packnet_ros.networks.openvino_backend.OpenVINOUnavailableError: backend openvino
            without the openvino package.
    """

    def __init__(self, depth_net: torch.nn.Module, spec: ModelSpec | None = None, device: str = 'auto',
                 precision: str = 'auto', max_depth: float | None = None, min_depth: float = 0.0,
                 input_shape: tuple[int, int] | None = None, backend: str = 'auto'):
        self.spec = spec or ModelSpec()
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.precision_reason = f'precision {precision} asked for' if precision != 'auto' else \
            f'auto = {self.precision} on {self.device.type}'
        self.dtype = _DTYPES[self.precision]
        shape = tuple(int(v) for v in (input_shape or self.spec.image_shape))
        if len(shape) != 2 or shape[0] % 32 or shape[1] % 32 or min(shape) <= 0:
            raise ValueError(f'network input shape {shape} must be (H, W) multiples of 32')
        self.input_shape = shape
        self.max_depth = float(self.spec.max_depth if max_depth is None else max_depth)
        self.min_depth = float(min_depth)
        if backend not in BACKENDS:
            raise ValueError(f'backend {backend!r} not in {BACKENDS}')
        if backend == 'openvino' and self.device.type != 'cpu':
            raise ValueError(f'backend "openvino" runs on the CPU only, not on {self.device} '
                             '(use backend auto/fast on CUDA, or device cpu)')
        if backend == 'openvino' and self.precision not in ('fp32', 'bf16'):
            raise ValueError(f'backend "openvino" runs fp32 or bf16, not {self.precision}')
        self.source_net = depth_net.float().eval()  # trainable form (saving, adaptation)
        self.output_kind = depth_output_kind(depth_net)
        self.takes_sparse = takes_sparse(depth_net)
        """The network has a sparse auxiliary branch: :meth:`run` may pass sparse depth."""
        self.sparse_guide = sparse_guide_of(depth_net)
        """'ipbasic' when its branch also reads IP-Basic's completion (:func:`packnet_ros.completion.sparse_network_input`)."""
        if self.takes_sparse and backend == 'openvino':
            raise ValueError(f'backend "openvino" exports the monocular network only; {self.spec.label} has a sparse '
                             f'branch: use backend auto/eager')
        self.backend_reason = f'backend {backend} asked for'
        self.backend_timings_ms: dict[str, float] = {}
        self._auto_ref: tuple[torch.Tensor, torch.Tensor] | None = None  # (input, fp32 depth) of the auto checks
        if self.output_kind != 'inv_depth' and backend == 'fast':
            self.backend = 'eager'
            self.backend_reason = (f'fast = eager (the folded packing layers of "fast" are PackNet\'s; '
                                   f'{self.spec.label} has none)')
            self.net = self.prepare(self.source_net)
        elif backend == 'auto':
            self.backend, self.net = self._choose_auto()
        else:
            self.backend = backend
            self.net = self.prepare(self.source_net)
        if precision == 'auto' and self.device.type == 'cpu' and self.precision == 'bf16':
            self._check_auto_bf16(backend)

    def _auto_input(self) -> torch.Tensor:
        """The fixed (1, 3, h, w) input in [0, 1] of the ``auto`` checks: :data:`AUTO_CHECK_IMAGE`
        resized to the network input (seeded uniform noise if the file is missing)."""
        bgr = cv2.imread(str(AUTO_CHECK_IMAGE), cv2.IMREAD_COLOR)
        if bgr is None:
            log.warning('%s missing: auto checks run on noise', AUTO_CHECK_IMAGE)
            return torch.rand(1, 3, *self.input_shape, generator=torch.Generator().manual_seed(0))
        return self.preprocess(np.ascontiguousarray(bgr[:, :, ::-1]))[0]

    def _as_depth(self, out: torch.Tensor) -> torch.Tensor:
        return inv_to_depth(out) if self.output_kind == 'inv_depth' else out

    def _auto_reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(:meth:`_auto_input`, the fp32 module's depth on it), computed once per estimator
        (``precision: auto`` and ``backend: auto`` both compare against it)."""
        if self._auto_ref is None:
            x = self._auto_input()
            self._auto_ref = x, self._as_depth(self._infer_with(self.source_net, x, False, torch.float32))
        return self._auto_ref

    def _check_auto_bf16(self, backend: str) -> None:
        """``precision: auto`` on a CPU with native bf16: keep bf16 only when the chosen
        network's output on :meth:`_auto_input` is within AUTO_MAX_REL_DIFF mean relative depth
        difference of the fp32 eager module; else rebuild the network in fp32 (same backend
        request) and log a warning. Sets ``precision_reason`` and
        ``backend_timings_ms['bf16_rel_diff']``."""
        x, ref = self._auto_reference()
        rel = float(((self._as_depth(self._infer_with(self.net, x, False)) - ref).abs() / ref).mean())
        self.backend_timings_ms['bf16_rel_diff'] = rel
        if rel <= AUTO_MAX_REL_DIFF:
            self.precision_reason = (f'auto = bf16 (native bf16 CPU; {self.backend} bf16 within '
                                     f'{100 * rel:.2f} % of fp32)')
            return
        self.precision, self.dtype = 'fp32', torch.float32
        self.precision_reason = (f'auto = fp32: {self.backend} bf16 is {100 * rel:.2f} % off fp32 on this CPU '
                                 f'(> {100 * AUTO_MAX_REL_DIFF:.0f} %)')
        log.warning('%s %s: %s', self.spec.label, 'x'.join(map(str, self.input_shape)), self.precision_reason)
        if backend == 'auto':
            self.backend, self.net = self._choose_auto()
        else:
            self.net = self.prepare(self.source_net)

    def prepare(self, net: torch.nn.Module, cache: bool = True) -> torch.nn.Module:
        """Inference module of ``net`` on this estimator's device, precision, backend and
        input shape (also for online adaptation's swaps, with ``cache=False``)."""
        return prepare_for_inference(net, self.device, self.dtype, self.backend, input_shape=self.input_shape,
                                     cache=cache)

    def _choose_auto(self) -> tuple[str, torch.nn.Module]:
        """``backend: auto``: the base path ("fast" for PackNet, "eager" for a network that
        outputs depth), or "openvino" on a CPU when it is installed and, on the fixed input of
        this shape (:meth:`_auto_input`), its output is within AUTO_MAX_REL_DIFF mean relative
        depth difference of the fp32 module and the median of AUTO_ROUNDS interleaved calls is
        faster than the base path's. A network with a sparse branch or a confidence output
        keeps the base path (the OpenVINO export is the plain depth forward). Sets
        ``backend_reason`` and ``backend_timings_ms``; logs the choice."""
        from .networks.openvino_backend import openvino_version
        name = 'fast' if self.output_kind == 'inv_depth' else 'eager'
        base = prepare_for_inference(self.source_net, self.device, self.dtype, name)
        if self.device.type != 'cpu':
            return self._chosen(name, base, f'auto on CUDA = {name}')
        if self.precision not in ('fp32', 'bf16'):
            return self._chosen(name, base, f'auto = {name} (openvino runs fp32/bf16, not {self.precision})')
        if self.takes_sparse or callable(getattr(self.source_net, 'forward_with_confidence', None)):
            return self._chosen(name, base, f'auto = {name} (the openvino export has no sparse input or '
                                            f'confidence output)')
        if os.environ.get(OPENVINO_AUTO_ENV, '1').strip().lower() in ('0', 'false', 'no', 'off'):
            return self._chosen(name, base, f'auto = {name} (openvino not considered: {OPENVINO_AUTO_ENV}=0)')
        if openvino_version() is None:
            return self._chosen(name, base, f'auto = {name} (openvino not installed)')
        try:
            ov = prepare_for_inference(self.source_net, self.device, self.dtype, 'openvino',
                                       input_shape=self.input_shape)
        except Exception as exc:  # noqa: BLE001 - any failure of the optional backend falls back
            return self._chosen(name, base, f'auto = {name} (openvino failed: {type(exc).__name__}: {exc})')
        x, ref = self._auto_reference()
        with torch.inference_mode():
            outs = {name: self._infer_with(base, x, False), 'openvino': self._infer_with(ov, x, False)}  # warm-up
            times: dict[str, list[float]] = {name: [], 'openvino': []}
            for _ in range(AUTO_ROUNDS):
                for key, net in ((name, base), ('openvino', ov)):
                    t = time.perf_counter()
                    self._infer_with(net, x, False)
                    times[key].append(1e3 * (time.perf_counter() - t))
        rel = float(((self._as_depth(outs['openvino']) - ref).abs() / ref).mean())
        ms = {key: statistics.median(v) for key, v in times.items()}
        self.backend_timings_ms = {f'{name}_ms': ms[name], 'openvino_ms': ms['openvino'], 'openvino_rel_diff': rel}
        summary = (f'openvino {ms["openvino"]:.1f} ms vs {name} {ms[name]:.1f} ms, '
                   f'mean rel. depth diff vs fp32 {100 * rel:.2f} %')
        if not rel <= AUTO_MAX_REL_DIFF:
            return self._chosen(name, base, f'auto = {name} ({summary} > {100 * AUTO_MAX_REL_DIFF:.0f} %)')
        if ms['openvino'] < ms[name]:
            return self._chosen('openvino', ov, f'auto = openvino ({summary})')
        return self._chosen(name, base, f'auto = {name} ({summary})')

    def _chosen(self, backend: str, net: torch.nn.Module, reason: str) -> tuple[str, torch.nn.Module]:
        self.backend_reason = reason
        log.info('%s %s: %s', self.spec.label, 'x'.join(map(str, self.input_shape)), reason)
        return backend, net

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str, **kwargs) -> 'DepthEstimator':
        """Load a packnet-sfm or project checkpoint (see :func:`load_checkpoint`)."""
        ckpt = load_checkpoint(path, with_pose=False)
        est = cls(ckpt.depth_net, ckpt.spec, **kwargs)
        est.checkpoint = ckpt
        return est

    @classmethod
    def from_loaded(cls, ckpt: Checkpoint, **kwargs) -> 'DepthEstimator':
        """Wrap an already loaded :class:`Checkpoint`."""
        est = cls(ckpt.depth_net, ckpt.spec, **kwargs)
        est.checkpoint = ckpt
        return est

    @classmethod
    def untrained(cls, spec: ModelSpec | None = None, seed: int = 0, **kwargs) -> 'DepthEstimator':
        """Randomly initialised network (Xavier, as packnet-sfm) of the given spec."""
        spec = spec or ModelSpec()
        torch.manual_seed(seed)
        net = spec.build_depth_net()
        est = cls(net, spec, **kwargs)
        est.checkpoint = None
        return est

    checkpoint: Checkpoint | None = None

    @property
    def label(self) -> str:
        """Network name, e.g. "PackNet01-1A"."""
        return self.spec.label

    @property
    def has_confidence(self) -> bool:
        """The running network yields a per-pixel confidence (SID heads; not through OpenVINO,
        whose export has the depth output only)."""
        return callable(getattr(self.net, 'forward_with_confidence', None))

    # -- pipeline ----------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(H, W, 3) uint8 RGB -> ((1, 3, h, w) tensor on the device, (h, w, 3) resized RGB)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f'expected an (H, W, 3) RGB image, got shape {rgb.shape}')
        small = resize_rgb(rgb, *self.input_shape)
        x = rgb_to_tensor(small)
        if self.device.type == 'cuda':
            x = x.pin_memory().to(self.device, non_blocking=True)
        return x, small

    def infer(self, x: torch.Tensor, flip_pp: bool = False) -> torch.Tensor:
        """Network forward: (B, 3, h, w) in [0, 1] -> (B, 1, h, w) float32: inverse depth (1/m)
        when ``output_kind`` is "inv_depth" (PackNet), depth (m) when it is "depth"."""
        return self._infer_with(self.net, x, flip_pp)

    def _infer_with(self, net: torch.nn.Module, x: torch.Tensor, flip_pp: bool,
                    dtype: torch.dtype | None = None) -> torch.Tensor:
        return self._forward(net, x, flip_pp, dtype)[0]

    @torch.inference_mode()
    def _forward(self, net: torch.nn.Module, x: torch.Tensor, flip_pp: bool,
                 dtype: torch.dtype | None = None, sparse: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(network output (B, 1, h, w) float32 of kind ``output_kind``, confidence
        (B, 1, h, w) float32 in [0, 1] or None). With ``flip_pp`` the mirrored prediction is
        fused in inverse depth (:func:`flip_post_process`; a depth output is inverted for it
        and back) and the confidences are averaged. ``sparse`` (B, C, h, w) metres (networks
        with a sparse branch) is mirrored with the image."""
        if isinstance(net, OpenVINODepthNet):  # takes float32 NCHW; runs its own precision
            x = x.to(self.device, torch.float32)
        else:
            x = x.to(self.device, dtype or self.dtype).contiguous(memory_format=torch.channels_last)
        if sparse is not None:
            sparse = sparse.to(self.device, x.dtype)
        with_conf = getattr(net, 'forward_with_confidence', None)

        def run(inp: torch.Tensor, sp: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
            args = (inp,) if sp is None else (inp, sp)
            if callable(with_conf):
                out, conf = with_conf(*args)
                return out.float(), conf.float()
            return net(*args).float(), None

        out, conf = run(x, sparse)
        if flip_pp:
            out_f, conf_f = run(x.flip(-1), None if sparse is None else sparse.flip(-1))
            if self.output_kind == 'depth':
                out = 1.0 / flip_post_process(1.0 / out, 1.0 / out_f)
            else:
                out = flip_post_process(out, out_f)
            if conf is not None and conf_f is not None:
                conf = 0.5 * (conf + conf_f.flip(-1))
        return out, conf

    def swap_network(self, net: torch.nn.Module) -> None:
        """Replace the inference module (built with :meth:`prepare`); frames already running
        keep the module they started with."""
        self.net = net

    def to_depth(self, inv: torch.Tensor, scale: float = 1.0, output_size: tuple[int, int] | None = None,
                 max_depth: float | None = None, min_depth: float | None = None,
                 kind: str = 'inv_depth') -> np.ndarray:
        """Inverse depth (1, 1, h, w) -> depth (H, W) float32 metres with REP 117 marking.

        Resizing to ``output_size`` interpolates inverse depth bilinearly
        (align_corners=True, as the packnet-sfm evaluation does) before inverting.
        ``max_depth`` / ``min_depth`` (metres) override the estimator's for this call:
        deeper becomes +Inf, shallower -Inf (0 disables), non-finite NaN.
        ``kind='depth'``: ``inv`` is depth in metres (a depth network's output); it is
        resized the same way and multiplied by ``scale`` (no inversion).
        """
        if kind not in ('inv_depth', 'depth'):
            raise ValueError(f'kind must be "inv_depth" or "depth", got {kind!r}')
        max_depth = self.max_depth if max_depth is None else float(max_depth)
        min_depth = self.min_depth if min_depth is None else float(min_depth)
        if output_size is not None and tuple(output_size) != tuple(inv.shape[-2:]):
            inv = F.interpolate(inv, size=tuple(output_size), mode='bilinear', align_corners=True)
        depth = inv * float(scale) if kind == 'depth' else inv_to_depth(inv, scale)
        depth = torch.where(torch.isfinite(depth), depth, torch.full_like(depth, float('nan')))
        depth = torch.where(depth > max_depth, torch.full_like(depth, float('inf')), depth)
        if min_depth > 0:
            depth = torch.where(depth < min_depth, torch.full_like(depth, float('-inf')), depth)
        return depth[0, 0].cpu().numpy()

    def run(self, rgb: np.ndarray, K: np.ndarray | None = None, flip_pp: bool = False,
            sparse: np.ndarray | None = None) -> 'Prediction':
        """Preprocess and run the network (first half of :meth:`predict`).

        Args:
            rgb: (H, W, 3) uint8 RGB.
            K: (3, 3) intrinsics at (H, W), or None.
            flip_pp: fuse the mirrored prediction.
            sparse: networks with a sparse branch only (:attr:`takes_sparse`): (C, h, w)
                float32 metres at the network input's resolution (h, w), 0 = no value, as
                :func:`packnet_ros.completion.sparse_network_input` gives it (C = 1, or 2 with
                the IP-Basic guide); None = monocular.

        Raises:
            ValueError: sparse input for a network without a sparse branch, or of the wrong shape.

        Returns:
            :class:`Prediction` with the network input ``x`` (1, 3, h, w) on the device, the
            resized image, the inverse depth (1, 1, h, w) float32 and K scaled to (h, w).
        """
        t0 = time.perf_counter()
        x, small = self.preprocess(rgb)
        sp = None
        if sparse is not None:
            if not self.takes_sparse:
                raise ValueError(f'{self.spec.label} has no sparse branch: run it without sparse input')
            sp_np = np.asarray(sparse, dtype=np.float32)
            channels = 2 if self.sparse_guide != 'none' else 1
            if sp_np.shape != (channels, *self.input_shape):
                raise ValueError(f'sparse input must be ({channels}, {self.input_shape[0]}, {self.input_shape[1]}) '
                                 f'metres at the network input resolution, got {sp_np.shape}')
            sp = torch.from_numpy(np.ascontiguousarray(sp_np))[None]
        t1 = time.perf_counter()
        net = self.net  # one reference per frame: weight swaps happen between frames
        out, conf = self._forward(net, x, flip_pp, sparse=sp)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        H, W = rgb.shape[:2]
        h, w = self.input_shape
        K_net = None if K is None else scale_intrinsics(K, w / W, h / H)
        return Prediction(x, rgb, small, out, None if K is None else np.array(K, dtype=np.float64), K_net,
                          {'preprocess_ms': 1e3 * (t1 - t0), 'inference_ms': 1e3 * (t2 - t1)},
                          self.output_kind, conf)

    def confidence_map(self, pred: 'Prediction', output_size: tuple[int, int] | None = None) -> np.ndarray | None:
        """The prediction's confidence as (h, w) float32 in [0, 1] (bilinearly resized to
        ``output_size`` when given, align_corners=True as the depth), or None when the
        network gives none."""
        if pred.confidence is None:
            return None
        conf = pred.confidence
        if output_size is not None and tuple(output_size) != tuple(conf.shape[-2:]):
            conf = F.interpolate(conf, size=tuple(output_size), mode='bilinear', align_corners=True)
        return conf[0, 0].clamp(0.0, 1.0).float().cpu().numpy()

    def finish(self, pred: 'Prediction', scale: float = 1.0, output: str = 'network') -> DepthResult:
        """Depth in metres from a :class:`Prediction` (second half of :meth:`predict`)."""
        if output not in ('network', 'camera'):
            raise ValueError(f'output must be "network" or "camera", got {output!r}')
        t2 = time.perf_counter()
        if output == 'camera':
            depth = self.to_depth(pred.output, scale, pred.rgb.shape[:2], kind=pred.kind)
            K_out, img = pred.K, pred.rgb
        else:
            depth = self.to_depth(pred.output, scale, kind=pred.kind)
            K_out, img = pred.K_net, pred.small
        timings = dict(pred.timings_ms, postprocess_ms=1e3 * (time.perf_counter() - t2))
        return DepthResult(depth, K_out, img, scale, timings)

    def predict(self, rgb: np.ndarray, K: np.ndarray | None = None, scale: float = 1.0,
                output: str = 'network', flip_pp: bool = False) -> DepthResult:
        """Predict metric depth for one RGB image.

        Args:
            rgb: (H, W, 3) uint8 RGB at the camera's resolution.
            K: (3, 3) camera intrinsics at (H, W), or None.
            scale: multiplies the network's depth (metric scale factor).
            output: "network" (depth at the network's (h, w)) or "camera" (resized back
                to (H, W)); K is scaled to match.
            flip_pp: average with the mirrored image's prediction (evaluation "pp" mode).

        Returns:
            :class:`DepthResult`.
        """
        if output not in ('network', 'camera'):
            raise ValueError(f'output must be "network" or "camera", got {output!r}')
        return self.finish(self.run(rgb, K, flip_pp), scale, output)


@dataclass
class Prediction:
    """Network output before scaling: input tensor, images, network output, intrinsics, timings.

    Attributes:
        output: (1, 1, h, w) float32: inverse depth (1/m) when ``kind`` is "inv_depth",
            depth (m) when it is "depth" (see :func:`packnet_ros.networks.depth_output_kind`).
        kind: "inv_depth" or "depth".
        confidence: (1, 1, h, w) float32 in [0, 1] when the network gives one (SID), else None.
    """

    x: torch.Tensor
    rgb: np.ndarray
    small: np.ndarray
    output: torch.Tensor
    K: np.ndarray | None
    K_net: np.ndarray | None
    timings_ms: dict
    kind: str = 'inv_depth'
    confidence: torch.Tensor | None = None

    @property
    def inv(self) -> torch.Tensor:
        """Inverse depth (1, 1, h, w), 1/m (the output, or its reciprocal for a depth network)."""
        return self.output if self.kind == 'inv_depth' else 1.0 / self.output
