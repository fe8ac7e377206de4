"""Distillation from a frozen depth teacher, aligned by the scale-and-shift-invariant loss.

``loss.teacher`` (DMD3C / DMD3Cpp, ``docs/SEEDS_BRIEF.md`` C: a foundation model's relative
depth as pseudo-labels, compared with an SSI loss) adds to the objective of ``loss.mode``

    loss = objective + loss.teacher_weight * L_teacher

where, per image, the teacher's prediction is turned into an inverse-depth ("disparity")
map, resized to the student's finest output and normalised (MiDaS Eqs. 6-7: minus its
median, divided by its mean absolute deviation from the median), and the student's
inverse depth is aligned to it by :func:`packnet_ros.losses.ssi_loss` (per-image least-
squares scale and shift, mean |residual|).

Why inverse depth: relative teachers (MiDaS, Depth Anything, DMD3C's pseudo-depth) are
affine-invariant in *disparity*, and an affine map of inverse depth is not one of depth, so
the alignment is done where the teacher's unknowns are affine. The teacher supplies
structure only: its scale and shift (also a metric teacher's) are discarded per image,
and the metric scale stays the job of the velocity / LiDAR terms. The normalisation makes
the term's size independent of the teacher's units (a raw 0-255 disparity and 1/m give
the same value), so ``teacher_weight`` means the same for every teacher.

Teachers (:func:`load_teacher`):

* any weights :mod:`packnet_ros.weights` resolves (``selfsup``, ``default``, a ``.ckpt``,
  ``untrained:...``): the depth network in eval mode, frozen, run under ``torch.no_grad``
  on the trainer's device at its checkpoint's ``image_shape``; its output kind is known
  (PackNet: inverse depth, BTS / SID: depth in metres);
* a ``*.onnx`` depth model run by onnxruntime on the CPU: input the first graph input,
  (N, 3, H, W) float32 RGB in [0, 1] (any normalisation must be inside the graph, as in
  ``packnet-ros export`` models), at the graph's H x W when they are fixed, else at the
  student's input size; output the first graph output, (N, 1, h, w), (N, h, w) or (h, w),
  whose meaning ``loss.teacher_output`` gives: ``depth`` (converted to 1/depth; <= 0 or
  non-finite = invalid), ``inverse_depth`` or ``relative`` (affine-invariant disparity,
  MiDaS / Depth Anything; used as is, like ``inverse_depth``: the loss is invariant to the
  target's scale and shift).

The teacher sees the un-jittered target image (``rgb_original``), bilinearly resized
(antialiased when shrinking) to its input size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..losses import ssi_loss

TEACHER_OUTPUTS = ('depth', 'inverse_depth', 'relative')
"""``loss.teacher_output`` values: what the teacher's output is (see the module docstring)."""

_KIND_TO_OUTPUT = {'inv_depth': 'inverse_depth', 'depth': 'depth'}
_MIN_DEPTH_M = 1e-6


class TeacherError(ValueError):
    """A ``loss.teacher`` / ``loss.teacher_output`` that cannot be used; the message names the key."""


def is_onnx(text: str) -> bool:
    """True for a teacher given as an ONNX file (``*.onnx``)."""
    return str(text).strip().lower().endswith('.onnx')


def resolve_teacher_text(text: str, base_dir: str | Path = '.') -> str:
    """The teacher choice with a file path made absolute against ``base_dir`` (the config
    file's folder); the named choices (default, selfsup, untrained...) are left as they are."""
    raw = str(text).strip()
    if raw in ('default', 'selfsup') or raw == 'untrained' or raw.startswith('untrained:'):
        return raw
    path = Path(raw).expanduser()
    return str(path if path.is_absolute() else (Path(base_dir) / path).resolve())


def check_teacher(text: str, output: str = '', base_dir: str | Path = '.') -> str:
    """Check a teacher choice without loading it (config time).

    Args:
        text: ``loss.teacher`` (weights syntax or an ``.onnx`` path; relative to ``base_dir``).
        output: ``loss.teacher_output`` ('' or one of :data:`TEACHER_OUTPUTS`).
        base_dir: folder relative paths are read from.

    Returns:
        The resolved choice (absolute path for files).

    Raises:
        TeacherError: invalid ``output``; no such file; an ONNX teacher without
            ``loss.teacher_output``; weights :mod:`packnet_ros.weights` cannot parse (or
            ``default`` when no default model is installed: a teacher must be trained).
    """
    from ..weights import WeightsError, parse_weights
    if output not in ('',) + TEACHER_OUTPUTS:
        raise TeacherError(f'loss.teacher_output is {output!r}, expected one of {", ".join(TEACHER_OUTPUTS)}')
    resolved = resolve_teacher_text(text, base_dir)
    if is_onnx(resolved):
        if not Path(resolved).is_file():
            raise TeacherError(f'loss.teacher {text!r}: no such ONNX file ({resolved})')
        if not output:
            raise TeacherError(f'loss.teacher {text!r} is an ONNX model: set loss.teacher_output to what it '
                               f'outputs ({", ".join(TEACHER_OUTPUTS)})')
        return resolved
    try:
        choice = parse_weights(resolved)
    except WeightsError as exc:
        raise TeacherError(f'loss.teacher {text!r}: {exc} (or an .onnx depth model)') from None
    if choice.fallback:
        raise TeacherError(f'loss.teacher {text!r}: no default model is installed, so this would be an '
                           f'untrained teacher; name a checkpoint')
    return resolved


class Teacher:
    """A frozen depth teacher (use :func:`load_teacher`).

    Attributes:
        output: 'depth', 'inverse_depth' or 'relative' (what :meth:`predict` returns).
        input_shape: (h, w) the teacher runs at, or None = the size of the image given.
        description: one line for logs ("checkpoint ... (PackNetSlim01-1A-w0.25)", "ONNX ...").
    """

    output: str = 'relative'
    input_shape: tuple[int, int] | None = None
    description: str = ''

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,h,w) float32 RGB in [0, 1] at the input size -> (B,1,h',w') raw output."""
        raise NotImplementedError

    def predict(self, rgb: torch.Tensor) -> torch.Tensor:
        """The teacher's raw output for a batch.

        Args:
            rgb: (B,3,H,W) RGB in [0, 1] (any float dtype, any device); resized here to
                :attr:`input_shape` (bilinear, antialiased when shrinking).

        Returns:
            (B,1,h,w) float32 on ``rgb``'s device at the teacher's output size, in the
            quantity of :attr:`output` (depth: metres or the model's units).
        """
        x = rgb.detach().float()
        if self.input_shape is not None:
            x = resize_bilinear(x, tuple(self.input_shape))
        with torch.no_grad():
            out = self._run(x.clamp(0.0, 1.0))
        return out.detach().to(device=rgb.device, dtype=torch.float32)

    def disparity(self, rgb: torch.Tensor) -> torch.Tensor:
        """The distillation target: the teacher's prediction in inverse-depth space.

        Args:
            rgb: (B,3,H,W) RGB in [0, 1].

        Returns:
            (B,1,h,w) float32 at the teacher's output size: 1/depth for a 'depth' teacher
            (NaN where its depth is <= 0 or not finite), the output itself otherwise (NaN
            where it is not finite). Known only up to scale and shift.
        """
        return to_disparity(self.predict(rgb), self.output)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.disparity(rgb)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, *size): bilinear, antialiased when either side shrinks; ``x``
    itself when it already has that size."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False, antialias=shrink)


def to_disparity(pred: torch.Tensor, output: str) -> torch.Tensor:
    """A teacher output (B,1,h,w) -> inverse-depth-space target (B,1,h,w) float32, NaN = invalid.

    'depth' -> 1/depth where depth > 0 and finite; 'inverse_depth' / 'relative' -> as is
    where finite.

    Raises:
        TeacherError: unknown ``output``.
    """
    if output not in TEACHER_OUTPUTS:
        raise TeacherError(f'loss.teacher_output is {output!r}, expected one of {", ".join(TEACHER_OUTPUTS)}')
    p = pred.float()
    nan = torch.full_like(p, float('nan'))
    if output == 'depth':
        ok = torch.isfinite(p) & (p > 0)
        return torch.where(ok, 1.0 / p.clamp(min=_MIN_DEPTH_M), nan)
    return torch.where(torch.isfinite(p), p, nan)


class TorchTeacher(Teacher):
    """A package depth network (PackNet: inverse depth; BTS / SID: depth, metres) as teacher.

    The network is kept out of the LightningModule's children (so it is neither trained,
    saved in checkpoints, put in train mode nor wrapped by DDP); it follows the batch's
    device on each call and runs in eval mode under ``torch.no_grad`` (in the trainer's
    autocast precision, if any).
    """

    def __init__(self, net: torch.nn.Module, output: str, input_shape: tuple[int, int], description: str):
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.output = output
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        self.description = description

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        first = next(self.net.parameters(), None)
        if first is not None and first.device != x.device:
            self.net.to(x.device)
        if self.net.training:
            self.net.eval()
        out = self.net(x)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out


class OnnxTeacher(Teacher):
    """An ONNX depth model run by onnxruntime on the CPU (see the module docstring for its
    input and output conventions).

    Args:
        path: the ``.onnx`` file.
        output: ``loss.teacher_output``.
        threads: onnxruntime intra-op threads (0 = its default).

    Raises:
        TeacherError: onnxruntime missing, the model does not load, or its first input is
            not (N, 3, H, W) float / float16.
    """

    def __init__(self, path: str | Path, output: str, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise TeacherError(f'loss.teacher {path}: an ONNX teacher needs onnxruntime '
                               f'(pip install onnxruntime)') from None
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=['CPUExecutionProvider'])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise TeacherError(f'loss.teacher {path}: onnxruntime cannot load it: {exc}') from None
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise TeacherError(f'loss.teacher {path}: input {inp.name!r} has shape {shape}, expected (N, 3, H, W) RGB')
        if inp.type not in ('tensor(float)', 'tensor(float16)'):
            raise TeacherError(f'loss.teacher {path}: input {inp.name!r} is {inp.type}, expected float32 or float16')
        self.input_name = inp.name
        self.input_dtype = np.float16 if inp.type == 'tensor(float16)' else np.float32
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        hw = shape[2:]
        self.input_shape = (hw[0], hw[1]) if all(isinstance(v, int) and v > 0 for v in hw) else None
        self.output = output
        self.path = Path(path)
        at = f'{self.input_shape[1]}x{self.input_shape[0]}' if self.input_shape else 'the student\'s input size'
        self.description = f'ONNX {self.path.name} ({output}, at {at}, onnxruntime CPU)'

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.cpu().numpy().astype(self.input_dtype)
        B = arr.shape[0]
        if self.batch is None or self.batch == B:
            chunks = [arr]
        elif self.batch == 1:
            chunks = [arr[i:i + 1] for i in range(B)]
        else:
            raise TeacherError(f'loss.teacher {self.path}: the model has a fixed batch of {self.batch}, the '
                               f'training batch is {B}; export it with batch 1 or a dynamic batch')
        outs = []
        for chunk in chunks:
            y = np.asarray(self.session.run(None, {self.input_name: chunk})[0], dtype=np.float32)
            n = chunk.shape[0]
            if y.ndim == 2 and n == 1:
                y = y[None, None]
            elif y.ndim == 3 and y.shape[0] == n:
                y = y[:, None]
            if y.ndim != 4 or y.shape[0] != n or y.shape[1] != 1:
                raise TeacherError(f'loss.teacher {self.path}: output of shape {list(y.shape)} for an input of '
                                   f'{list(chunk.shape)}, expected (N, 1, h, w), (N, h, w) or (h, w)')
            outs.append(torch.from_numpy(y))
        return torch.cat(outs, 0)


def load_teacher(text: str, output: str = '', base_dir: str | Path = '.', threads: int = 0) -> Teacher:
    """Load ``loss.teacher`` (see the module docstring).

    Args:
        text: weights syntax (:mod:`packnet_ros.weights`) or an ``.onnx`` file; relative
            paths are read from ``base_dir``.
        output: ``loss.teacher_output``: required for ONNX; for package weights '' or the
            network's own kind ('inverse_depth' for PackNet, 'depth' for BTS / SID).
        base_dir: the config file's folder.
        threads: onnxruntime intra-op threads (0 = default).

    Raises:
        TeacherError: see :func:`check_teacher`, :class:`OnnxTeacher`; a checkpoint that
            does not load, or a ``teacher_output`` that contradicts the network's.
    """
    resolved = check_teacher(text, output, base_dir)
    if is_onnx(resolved):
        return OnnxTeacher(resolved, output, threads)
    from ..networks import depth_output_kind
    from ..weights import resolve_weights
    try:
        weights = resolve_weights(resolved, with_pose=False)
    except Exception as exc:  # noqa: BLE001 - CheckpointError, torch load errors
        raise TeacherError(f'loss.teacher {text!r}: {exc}') from None
    ckpt = weights.checkpoint
    kind = _KIND_TO_OUTPUT.get(depth_output_kind(ckpt.depth_net), 'inverse_depth')
    if output and output != kind:
        raise TeacherError(f'loss.teacher_output is {output!r}, but the teacher {ckpt.spec.label} outputs {kind}; '
                           f'leave loss.teacher_output empty for package weights')
    h, w = ckpt.spec.image_shape
    return TorchTeacher(ckpt.depth_net.float(), kind, (int(h), int(w)),
                        f'{weights.description} ({ckpt.spec.label}, {kind}, at '
                        f'{ckpt.spec.image_shape[1]}x{ckpt.spec.image_shape[0]})')


def normalise_disparity(disp: torch.Tensor) -> torch.Tensor:
    """Per-image shift-and-scale normalisation (MiDaS Eqs. 6-7).

    d' = (d - median(d)) / mean|d - median(d)|, both over the image's finite pixels.

    Args:
        disp: (B,1,H,W) float target; NaN / inf = invalid.

    Returns:
        (B,1,H,W) float32; invalid pixels, and every pixel of an image without finite
        pixels or with zero spread (a constant map), are NaN.
    """
    d = disp.float()
    flat = d.flatten(1)
    flat = torch.where(torch.isfinite(flat), flat, torch.full_like(flat, float('nan')))
    med = torch.nanmedian(flat, dim=1).values.view(-1, 1)
    dev = (flat - med).abs().nanmean(dim=1, keepdim=True)
    ok = torch.isfinite(dev) & (dev > 0)
    out = torch.where(ok, (flat - med) / torch.where(ok, dev, torch.ones_like(dev)), torch.full_like(flat, float('nan')))
    return out.view_as(d)


def teacher_ssi_loss(student_inv: torch.Tensor | Sequence[torch.Tensor], teacher_disp: torch.Tensor,
                     ssi: Callable[..., torch.Tensor] = ssi_loss) -> torch.Tensor:
    """The distillation term: the student's inverse depth aligned to the teacher's by SSI.

    1. The teacher target is resized (bilinear; antialiased when shrinking) to the finest
       student scale and normalised per image (:func:`normalise_disparity`).
    2. Each student scale is nearest-upsampled to that resolution (as the photometric and
       LiDAR terms do with PackNet's scales) and :func:`packnet_ros.losses.ssi_loss` gives
       mean |s p + t - y| after the per-image least-squares (s, t).
    3. The term is the mean over the scales given (PackNet: the ``loss.num_scales`` scales
       the photometric loss uses; BTS / SID: the one depth map).

    It is 0 exactly when every scale is, per image, an affine function of the teacher's
    disparity (s p + t = y), and grows with the structural disagreement; its value is in
    units of the teacher's per-image mean absolute deviation.

    Args:
        student_inv: (B,1,h,w) student inverse depth, 1/m (or a sequence of scales, finest
            first; any float dtype, with gradient).
        teacher_disp: (B,1,H',W') teacher target in inverse-depth space (:meth:`Teacher.disparity`;
            NaN = invalid), no gradient needed.
        ssi: the SSI function (``ssi_loss``).

    Returns:
        Scalar float32 tensor (0 if no image has a valid teacher pixel).
    """
    scales = [student_inv] if isinstance(student_inv, torch.Tensor) else list(student_inv)
    if not scales:
        raise ValueError('student_inv is empty')
    size = tuple(scales[0].shape[-2:])
    target = teacher_disp.detach().float().to(scales[0].device)
    if target.dim() != 4 or target.shape[1] != 1 or target.shape[0] != scales[0].shape[0]:
        raise ValueError(f'teacher target {tuple(target.shape)} must be (B, 1, H, W) with the student\'s batch '
                         f'({tuple(scales[0].shape)})')
    target = normalise_disparity(resize_bilinear(target, size))
    terms = []
    for p in scales:
        p = p.float()
        if tuple(p.shape[-2:]) != size:
            p = F.interpolate(p, size=size, mode='nearest')
        terms.append(ssi(p, target))
    return torch.stack(terms).mean()


def student_inverse_depth(depth: torch.Tensor) -> torch.Tensor:
    """Inverse depth (1/m) of a depth-output student (BTS / SID, metres): 1 / max(depth, 1e-6)."""
    return 1.0 / depth.float().clamp(min=_MIN_DEPTH_M)


__all__ = ['TEACHER_OUTPUTS', 'resize_bilinear', 'Teacher', 'TeacherError', 'TorchTeacher', 'OnnxTeacher', 'check_teacher',
           'load_teacher', 'normalise_disparity', 'teacher_ssi_loss', 'to_disparity', 'student_inverse_depth',
           'is_onnx', 'resolve_teacher_text']
