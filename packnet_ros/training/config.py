"""Training configuration: a YAML file -> nested dataclasses with the packnet-sfm defaults.

Keys mirror packnet-sfm's config names where one exists (FIELD_BRIEF A3). Relative
paths inside ``data`` and ``output`` are resolved against the config file's folder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..losses import SfmLossConfig


@dataclass
class ModelConfig:
    """Networks. ``width`` scales PackNet's channels (1.0 = the published network)."""

    depth_net: str = 'PackNet01'
    version: str = '1A'
    width: float = 1.0
    pose_net: str = 'PoseNet'
    image_shape: list = field(default_factory=lambda: [192, 640])
    max_depth: float = 80.0
    init_checkpoint: str = ''  # start from these weights (packnet_ros.weights syntax: default, a .ckpt path)


@dataclass
class LossConfig(SfmLossConfig):
    """PackNet-SfM objective (:class:`packnet_ros.losses.SfmLossConfig`, packnet-sfm's KITTI
    defaults) plus the training-only scale alignment (see scale_alignment.py): the step at
    which it runs (0 = off) and its self-distillation steps (0 = bias shift only)."""

    scale_alignment_step: int = 0
    scale_alignment_distill_steps: int = 60


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
    """Sequences (see :func:`packnet_ros.data.load_sequences`) and loader settings."""

    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    repeat: int = 1
    batch_size: int = 4
    num_workers: int = 1
    augment: bool = True
    val_every_n_epochs: int = 1


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
    ship_path: str = ''  # also write the final weights here (depth fp32, pose fp16): the shipped model
    licence: str = ''
    notes: str = ''
    base_dir: str = '.'  # folder of the config file (relative paths)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()


def _build(cls, data: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f'unknown key(s) {unknown} in {where} (known: {sorted(known)})')
    kwargs = {}
    for name, value in data.items():
        sub = {'model': ModelConfig, 'loss': LossConfig, 'optim': OptimConfig, 'data': DataConfig,
               'trainer': TrainerConfig}.get(name) if cls is TrainConfig else None
        kwargs[name] = _build(sub, value or {}, f'{where}.{name}') if sub else value
    return cls(**kwargs)


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a training YAML.

    Args:
        path: the YAML file.
        overrides: dotted keys -> values applied after reading (e.g. {'trainer.max_epochs': 2}).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown keys or invalid values (the message names them).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'training config {path} not found')
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping at the top level')
    for key, value in (overrides or {}).items():
        node = data
        parts = key.split('.')
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    cfg = _build(TrainConfig, data, path.name)
    cfg.base_dir = str(path.resolve().parent)
    shape = cfg.model.image_shape
    if len(shape) != 2 or shape[0] % 32 or shape[1] % 32:
        raise ValueError(f'{path}: model.image_shape {shape} must be [H, W], multiples of 32')
    if not cfg.data.train:
        raise ValueError(f'{path}: data.train lists no sequences')
    return cfg
