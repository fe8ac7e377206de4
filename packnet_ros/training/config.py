"""Training configuration: a YAML file -> nested dataclasses with the packnet-sfm defaults.

Keys mirror packnet-sfm's config names where one exists (FIELD_BRIEF A3). Relative
paths inside ``data`` and ``output`` are resolved against the config file's folder.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..losses import SUPERVISED_METHODS, SfmLossConfig
from ..networks.sparse_branch import GUIDE_RESIDUALS, SPARSE_GUIDES


@dataclass
class ModelConfig:
    """Networks. ``width`` scales PackNet's channels (1.0 = the published network).

    ``sparse_branch`` (BTS / SID heads): add the sparse auxiliary branch for depth completion
    (:mod:`packnet_ros.networks.sparse_branch`); training then splits each frame's LiDAR into
    input and target (``loss.completion_*``, :mod:`packnet_ros.training.completion`), and the
    checkpoint stores ``sparse_branch: true`` in ``model.depth_net.options``. An
    ``init_checkpoint`` without the branch (a monocular model) loads into the rest.
    ``sparse_guide: ipbasic`` gives the branch IP-Basic's completion of the sparse input as
    a second channel (stored as the option ``sparse_guide``; callers compute it,
    :func:`packnet_ros.completion.sparse_network_input`); a BTS head then outputs the guide
    times a learned bounded factor whose head reads the decoder's last features
    (``guide_residual: image``) or only the sparse branch's features (``sparse``, stored as
    the option ``guide_residual``)."""

    depth_net: str = 'PackNet01'
    version: str = '1A'
    width: float = 1.0
    pose_net: str = 'PoseNet'
    image_shape: list[int] = field(default_factory=lambda: [192, 640])
    max_depth: float = 80.0
    init_checkpoint: str = ''  # start from these weights (packnet_ros.weights syntax: default, a .ckpt path)
    sparse_branch: bool = False  # BTS / SID: sparse auxiliary branch (depth completion from LiDAR)
    sparse_guide: str = 'none'  # 'ipbasic': the branch also reads IP-Basic's completion of its input
    guide_residual: str = 'image'  # with a guide (BTS): what the guide-residual head reads: image | sparse


LOSS_MODES = ('self_supervised', 'semi_supervised', 'supervised')
"""``loss.mode`` values: PackNet-SfM's photometric objective alone; that objective plus a
sparse LiDAR term on the frames that have LiDAR (packnet-sfm SemiSupModel); the LiDAR term
alone (depth network only, PoseNet frozen)."""


@dataclass
class LossConfig(SfmLossConfig):
    """PackNet-SfM objective (:class:`packnet_ros.losses.SfmLossConfig`, packnet-sfm's KITTI
    defaults) plus the training-only scale alignment (see scale_alignment.py): the step at
    which it runs (0 = off) and its self-distillation steps (0 = bias shift only).

    ``mode`` (:data:`LOSS_MODES`) selects the objective; ``supervised_term`` ('silog', 'l1',
    'l1-inv': :func:`packnet_ros.losses.semi_supervised_loss`) and ``lidar_weight`` (the
    weight of that term in ``semi_supervised``) only matter for the LiDAR modes;
    ``silog_variance_focus`` is SILog's lambda (BTS: 0.85). ``sid_loss`` ('ordinal' =
    DORN's ordinal loss on ordinal logits, 'cross_entropy' = per-pixel cross-entropy on
    classification logits) is the LiDAR loss of a SID ``model.depth_net`` (and sets its head's
    logits mode); other networks ignore it.

    ``teacher`` ('' = off) adds distillation from a frozen depth teacher in every mode:
    loss = objective + ``teacher_weight`` x SSI(student inverse depth, teacher inverse
    depth) (:mod:`packnet_ros.training.teacher`). It is weights syntax (``selfsup``, a
    ``.ckpt`` ...; relative to the config file) or an ``.onnx`` depth model, whose output
    ``teacher_output`` names ('depth', 'inverse_depth' or 'relative'; required for ONNX,
    known for package weights).

    Depth completion (``model.sparse_branch: true``; :mod:`packnet_ros.training.completion`):
    ``completion_inputs`` are the input subsamples drawn per image (``beams:N``, N < 64
    dividing 64, or ``ratio:R``, R < 1); the loss (``supervised_term``) uses the other
    returns only. ``completion_monocular_fraction`` of the batches train without sparse input.
    ``completion_lidar_extrinsics`` is ``T_camera_lidar`` for the ring index (text of
    :func:`packnet_ros.completion.stage.parse_extrinsics`; '' = KITTI 2011_09_26).

    DMD3C's two stages (Liang et al., CVPR 2025, Sec. 3; ``config/train_completion_dmd3c_stage*.yaml``):
    ``completion_teacher_scans`` (stage 1) gives frames WITHOUT LiDAR (video) a scan simulated
    from ``teacher``'s dense depth (the teacher pixels on a nominal HDL-64E beam, then the
    usual ``completion_inputs`` subset) and the loss SSI(student depth, teacher depth) on the
    non-input pixels; frames with LiDAR train as before. ``completion_ssi_weight`` (stage 2)
    adds that weight x SSI(student depth, held-out LiDAR returns) to the metric term
    (:func:`packnet_ros.training.completion.completion_ssi_loss`)."""

    scale_alignment_step: int = 0
    scale_alignment_distill_steps: int = 60
    mode: str = 'self_supervised'
    supervised_term: str = 'silog'
    lidar_weight: float = 1.0
    silog_variance_focus: float = 0.85
    sid_loss: str = 'ordinal'  # SID heads: 'ordinal' | 'cross_entropy'
    teacher: str = ''  # distillation teacher: weights syntax or a .onnx file ('' = no teacher)
    teacher_output: str = ''  # ONNX teacher's output: 'depth' | 'inverse_depth' | 'relative'
    teacher_weight: float = 1.0  # weight of the teacher SSI term
    completion_inputs: list[str] = field(default_factory=lambda: ['beams:16', 'beams:8', 'beams:32'])
    completion_monocular_fraction: float = 0.0  # batches trained without sparse input (sparse branch only)
    completion_lidar_extrinsics: str = ''  # T_camera_lidar for the ring index ('' = KITTI 2011_09_26)
    completion_teacher_scans: bool = False  # DMD3C stage 1: frames without LiDAR get scans simulated from the teacher
    completion_ssi_weight: float = 0.0  # DMD3C stage 2: weight of SSI(student, held-out LiDAR) next to the metric term


@dataclass
class OptimConfig:
    """Adam + StepLR (packnet-sfm KITTI: lr 2e-4, step 30, gamma 0.5)."""

    lr: float = 2e-4
    pose_lr: float = 2e-4
    weight_decay: float = 0.0
    step_size: int = 30
    gamma: float = 0.5


@dataclass
class DataConfig:
    """Sequences (see :func:`packnet_ros.data.load_sequences`) and loader settings.

    ``heldout``: KITTI drive folders (with ``proj_depth``) that no ``train``/``val`` source may
    read; after training the model and untrained weights of the same network are scored on
    every frame of each (:mod:`packnet_ros.training.heldout`), and ``ship_path`` is not
    written when the model is no better than untrained weights (median-scaled abs_rel).

    ``zoom`` / ``zoom_prob``: depth-consistent zoom augmentation of the training items (crop about
    the principal point, GT depth divided by the factor; ``loss.mode: supervised`` only; see
    :mod:`packnet_ros.data.dataset`)."""

    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    repeat: int = 1
    batch_size: int = 4
    num_workers: int = 1
    augment: bool = True
    val_every_n_epochs: int = 1
    depth_resize: str = 'nearest'  # training LiDAR targets: 'nearest' or 'preserve' (keeps every point)
    heldout: list = field(default_factory=list)  # KITTI drives scored after training, never trained on
    zoom: list = field(default_factory=lambda: [1.0, 1.0])  # depth-consistent zoom range [s_min, s_max]; [1, 1] = off
    zoom_prob: float = 0.5  # probability that a training item is zoomed


@dataclass
class TrainerConfig:
    """Lightning Trainer settings. ``precision: auto`` = bf16-mixed on CPUs with native bf16
    and on bf16-capable GPUs, 16-mixed on older GPUs, else 32. Multi-GPU / multi-node runs
    use Lightning's DDP (launch with torchrun; ``devices``, ``num_nodes``, ``strategy``)."""

    max_epochs: int = 50
    max_steps: int = -1
    accelerator: str = 'auto'
    devices: Any = 'auto'
    num_nodes: int = 1
    strategy: str = 'auto'
    precision: str = 'auto'
    log_every_n_steps: int = 10
    gradient_clip_val: float = 0.0
    num_sanity_val_steps: int = 0
    threads: int = 0  # torch CPU threads (0 = torch default)
    keep_checkpoints: int = 3  # newest epoch checkpoints kept (-1 = every epoch)


@dataclass
class TrainConfig:
    """A whole training run."""

    name: str = 'packnet_ros'
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    output_dir: str = ''
    ship_path: str = ''  # also write the final weights here (pose fp16): the shipped model
    ship_dtype: str = 'float32'  # storage of the shipped depth network: float32 | float16 (half the file)
    licence: str = ''
    notes: str = ''
    base_dir: str = '.'  # folder of the config file (relative paths)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()


_SECTIONS = {'model': ModelConfig, 'loss': LossConfig, 'optim': OptimConfig, 'data': DataConfig,
             'trainer': TrainerConfig}


def _type_name(tp) -> str:
    """Readable name of a type annotation: "int", "list of int", "str or None"."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return 'any value'
    if tp is type(None):
        return 'None'
    if origin in (typing.Union, types.UnionType):
        return ' or '.join(dict.fromkeys(_type_name(a) for a in typing.get_args(tp)))
    if origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(tp)
        return f'list of {_type_name(args[0])}' if args else 'list'
    if tp in (list, tuple):
        return 'list'
    if tp is Path:
        return 'str'  # a path is written as a string
    return getattr(tp, '__name__', str(tp))


class _Mismatch(Exception):
    pass


def _coerce(value, tp):
    """``value`` checked against the annotation ``tp`` (ints accepted as floats, a float written
    as "2e-4" -- a string to YAML 1.1 -- read as a float, numbers accepted as strings).

    Raises:
        _Mismatch: the value does not have that type.
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except _Mismatch:
                pass
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(tp)
        return [_coerce(v, args[0]) for v in value] if args else list(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise _Mismatch from None
            if math.isfinite(number):
                return number
        raise _Mismatch
    if tp is str or tp is Path:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch
    return value  # an annotation this checker does not know: left to the code that uses it


def _checked(value, tp, key: str, where: str):
    try:
        return _coerce(value, tp)
    except _Mismatch:
        raise ValueError(f'{where}: {key} is {value!r} ({type(value).__name__}), expected '
                         f'{_type_name(tp)}') from None


def _build(cls, data, where: str, prefix: str = ''):
    """``cls`` (a config dataclass) from a mapping, every value checked against the field's
    annotation; ``where`` is the file name and ``prefix`` the dotted key of ``data``."""
    if not isinstance(data, dict):
        raise ValueError(f'{where}: {prefix.rstrip(".") or "the top level"} is {data!r} '
                         f'({type(data).__name__}), expected a mapping of keys to values')
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f'unknown key(s) {unknown} in {where}{": " + prefix.rstrip(".") if prefix else ""} '
                         f'(known: {sorted(known)})')
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        sub = _SECTIONS.get(name) if cls is TrainConfig else None
        key = f'{prefix}{name}'
        if sub:
            kwargs[name] = _build(sub, {} if value is None else value, where, f'{key}.')
        else:
            kwargs[name] = _checked(value, hints[name], key, where)
    if cls is DataConfig:
        for part in ('train', 'val'):
            for n, spec in enumerate(kwargs.get(part) or []):
                _check_sequence(spec, f'{prefix}{part}[{n}]', where)
    return cls(**kwargs)


def _check_sequence(spec, key: str, where: str) -> None:
    """Types of a training sequence entry (``{type: kitti, path: ..., targets: [...]}``),
    checked against the reader's constructor; unknown types and keys are left to
    :func:`packnet_ros.data.load_sequences`, which names them."""
    from ..io.bag_sequence import BagSequence
    from ..io.kitti_sequence import KittiSequence
    from ..io.video import VideoSequence
    if not isinstance(spec, dict):
        raise ValueError(f'{where}: {key} is {spec!r} ({type(spec).__name__}), expected a mapping '
                         f'such as {{type: kitti, path: DRIVE, targets: [1, 2, 3]}}')
    readers = {'kitti': (KittiSequence, 'drive'), 'bag': (BagSequence, 'bag_path'),
               'video': (VideoSequence, 'video_path')}
    kind = spec.get('type')
    if not isinstance(kind, str) or kind not in readers:
        return
    reader, path_arg = readers[kind]
    hints = typing.get_type_hints(reader.__init__)
    hints.update(path=hints[path_arg], repeat=int)
    if kind == 'video':
        hints['intrinsics'] = hints['intrinsics_yaml']
    for name, value in spec.items():
        if name in hints and name != 'type':
            spec[name] = _checked(value, hints[name], f'{key}.{name}', where)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ValueError:
    """One line for a YAML syntax error: file:line:column and the parser's complaint."""
    mark = getattr(exc, 'problem_mark', None)
    at = f':{mark.line + 1}:{mark.column + 1}' if mark is not None else ''
    problem = getattr(exc, 'problem', None) or str(exc).splitlines()[0]
    context = getattr(exc, 'context', None)
    return ValueError(f'{path}{at}: YAML syntax error: {problem}{f" ({context})" if context else ""}')


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a training YAML.

    Every value is checked against its field's type (the dataclass annotations; sequence
    entries against the reader's arguments) before anything else runs.

    Args:
        path: the YAML file.
        overrides: dotted keys -> values applied after reading (e.g. {'trainer.max_epochs': 2}).

    Raises:
        FileNotFoundError: no such file.
        ValueError: YAML syntax errors, unknown keys, values of the wrong type or invalid
            values (the message names the dotted key, the value and what is expected).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'training config {path} not found')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping at the top level')
    for key, value in (overrides or {}).items():
        node = data
        parts = key.split('.')
        for n, p in enumerate(parts[:-1]):
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ValueError(f'{path}: cannot set {key}: {".".join(parts[:n + 1])} is {node!r}, not a section')
        node[parts[-1]] = value
    cfg = _build(TrainConfig, data, str(path))
    cfg.base_dir = str(path.resolve().parent)
    shape = cfg.model.image_shape
    if len(shape) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v % 32 for v in shape):
        raise ValueError(f'{path}: model.image_shape {shape} must be [H, W], positive multiples of 32')
    if not cfg.data.train:
        raise ValueError(f'{path}: data.train lists no sequences')
    _check_choices(cfg, str(path))
    _check_teacher(cfg, str(path))
    _check_completion(cfg, str(path))
    return cfg


def _check_completion(cfg: TrainConfig, where: str) -> None:
    """``model.sparse_branch`` needs a BTS / SID head; the ``loss.completion_*`` values parse."""
    if cfg.model.guide_residual != 'image' and cfg.model.sparse_guide == 'none':
        raise ValueError(f'{where}: model.guide_residual {cfg.model.guide_residual!r} needs model.sparse_guide: ipbasic')
    c = cfg.loss
    if not (math.isfinite(float(c.completion_ssi_weight)) and float(c.completion_ssi_weight) >= 0.0):
        raise ValueError(f'{where}: loss.completion_ssi_weight is {c.completion_ssi_weight!r}, expected a number >= 0')
    if (c.completion_teacher_scans or c.completion_ssi_weight) and not cfg.model.sparse_branch:
        raise ValueError(f'{where}: loss.completion_teacher_scans / loss.completion_ssi_weight need '
                         f'model.sparse_branch: true (they train depth completion)')
    if c.completion_teacher_scans:
        if not c.teacher:
            raise ValueError(f'{where}: loss.completion_teacher_scans needs loss.teacher (the dense depth the '
                             f'scans are simulated from), e.g. a BTS checkpoint')
        if c.teacher_output == 'relative':
            raise ValueError(f"{where}: loss.completion_teacher_scans needs a teacher with metric depth or inverse "
                             f"depth, got loss.teacher_output 'relative' (a relative disparity has no depth to "
                             f"place on the LiDAR beams)")
    if not cfg.model.sparse_branch:
        if cfg.model.sparse_guide != 'none':
            raise ValueError(f'{where}: model.sparse_guide {cfg.model.sparse_guide!r} needs model.sparse_branch: true')
        return
    head = str(cfg.model.depth_net).partition('-')[0]
    if head not in ('BTS', 'SID'):
        raise ValueError(f'{where}: model.sparse_branch needs a BTS or SID model.depth_net (e.g. BTS-ResNet18), '
                         f'got {cfg.model.depth_net!r}')
    from .completion import SplitSettings
    try:
        SplitSettings.from_config(cfg.loss.completion_inputs, cfg.loss.completion_monocular_fraction,
                                  cfg.loss.completion_lidar_extrinsics, cfg.data.depth_resize)
    except ValueError as exc:
        raise ValueError(f'{where}: {exc}') from None


def _check_teacher(cfg: TrainConfig, where: str) -> None:
    """``loss.teacher*``: the output kind, the weight, and that the teacher exists (not loaded here)."""
    from .teacher import TEACHER_OUTPUTS, check_teacher
    c = cfg.loss
    if c.teacher_output not in ('',) + TEACHER_OUTPUTS:
        raise ValueError(f'{where}: loss.teacher_output is {c.teacher_output!r}, expected one of '
                         f'{", ".join(TEACHER_OUTPUTS)}')
    if not (math.isfinite(c.teacher_weight) and c.teacher_weight >= 0.0):
        raise ValueError(f'{where}: loss.teacher_weight is {c.teacher_weight!r}, expected a number >= 0')
    if c.teacher:
        try:
            check_teacher(c.teacher, c.teacher_output, cfg.base_dir)
        except ValueError as exc:
            raise ValueError(f'{where}: {exc}') from None


def _check_choices(cfg: TrainConfig, where: str) -> None:
    """Values of the string options and weights that have a fixed set of valid values."""
    choices = [('loss.mode', cfg.loss.mode, LOSS_MODES),
               ('loss.supervised_term', cfg.loss.supervised_term, SUPERVISED_METHODS),
               ('loss.sid_loss', cfg.loss.sid_loss, ('ordinal', 'cross_entropy')),
               ('data.depth_resize', cfg.data.depth_resize, ('nearest', 'preserve')),
               ('model.sparse_guide', cfg.model.sparse_guide, SPARSE_GUIDES),
               ('model.guide_residual', cfg.model.guide_residual, GUIDE_RESIDUALS),
               ('ship_dtype', cfg.ship_dtype, ('float32', 'float16'))]
    for key, value, allowed in choices:
        if value not in allowed:
            raise ValueError(f'{where}: {key} is {value!r}, expected one of {", ".join(allowed)}')
    z = cfg.data.zoom
    if len(z) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in z) or not 1 <= z[0] <= z[1]:
        raise ValueError(f'{where}: data.zoom is {z!r}, expected [s_min, s_max] with 1 <= s_min <= s_max '
                         f'([1, 1] = no zoom)')
    if z[1] > 1 and cfg.loss.mode != 'supervised':
        raise ValueError(f'{where}: data.zoom {z!r} needs loss.mode: supervised (a zoomed item is the '
                         f'scene with its depth divided by the factor; the motion to the context frames is '
                         f'not rigid in it, so photometric losses cannot use it); set data.zoom: [1, 1]')
    if not 0.0 <= cfg.data.zoom_prob <= 1.0:
        raise ValueError(f'{where}: data.zoom_prob is {cfg.data.zoom_prob!r}, expected a number in [0, 1]')
    if not cfg.loss.lidar_weight >= 0.0:
        raise ValueError(f'{where}: loss.lidar_weight is {cfg.loss.lidar_weight!r}, expected a number >= 0')
    if not 0.0 <= cfg.loss.silog_variance_focus <= 1.0:
        raise ValueError(f'{where}: loss.silog_variance_focus is {cfg.loss.silog_variance_focus!r}, '
                         f'expected a number in [0, 1]')
