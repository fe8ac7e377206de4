"""One syntax for choosing network weights, resolved in one function.

Every tool that runs a network (``packnet_node``'s ``checkpoint`` parameter, ``packnet-ros
demo | evaluate | export | benchmark | train --init``) takes the same text:

    default                     the shipped model (packnet_ros/models/, see MODEL_CARD.md);
                                when none is installed: untrained weights, and the
                                description says so
    selfsup                     the shipped self-supervised PackNet with a PoseNet (for
                                ``scale_source: odometry`` and online adaptation)
    <path>.ckpt                 a packnet-sfm or packnet_ros checkpoint file
    untrained[:<Network>[:<width>]]
                                randomly initialised <Network> (PackNet01, PackNetSlim01,
                                BTS-ResNet{18,34,50}, SID-ResNet{18,34,50}; default: the
                                caller's fallback network) with channel multiplier <width>
                                (BTS / SID: of the decoder); seeded, so two runs get the
                                same weights

``""`` means ``default``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import SELFSUP_CHECKPOINT, Checkpoint, ModelSpec, default_checkpoint_path, load_checkpoint
from .networks import build_pose_net, canonical_depth_model_name

SYNTAX = '"default", "selfsup", a .ckpt path, or "untrained[:<Network>[:<width>]]"'
UNTRAINED_SEED = 0


class WeightsError(ValueError):
    """A weights choice that cannot be resolved; the message says what to write instead."""


@dataclass(frozen=True)
class WeightsChoice:
    """A parsed weights choice (nothing loaded yet).

    Attributes:
        text: the text as given.
        kind: "default", "path" or "untrained".
        path: the checkpoint file ("default" resolved), None for untrained weights.
        spec: network of untrained weights, None otherwise.
        fallback: "default" was asked for but no default model is installed, so these are
            untrained weights.
    """

    text: str
    kind: str
    path: Path | None = None
    spec: ModelSpec | None = None
    fallback: bool = False

    @property
    def untrained(self) -> bool:
        """True when random weights will be used (asked for, or the default fallback)."""
        return self.path is None

    @property
    def untrained_spec(self) -> ModelSpec:
        """The network of untrained weights.

        Raises:
            WeightsError: these are checkpoint weights (their spec is in the file).
        """
        if self.spec is None:
            raise WeightsError(f'{self.text}: a checkpoint file, not untrained weights')
        return self.spec

    @property
    def label(self) -> str:
        """Short name for tables: the file name or "untrained <network>"."""
        return self.path.name if self.path is not None else f'untrained {self.untrained_spec.label}'

    @property
    def node_value(self) -> str:
        """The same choice as a ``packnet_node`` ``checkpoint`` parameter value."""
        if self.path is not None:
            return str(self.path)
        spec = self.untrained_spec
        return f'untrained:{spec.depth_net}:{spec.width:g}'


def parse_weights(text: str | None, network: str = 'PackNet01', width: float = 1.0) -> WeightsChoice:
    """Parse a weights choice (module docstring); checks that a path exists.

    Args:
        text: the choice.
        network, width: network of a bare "untrained" and of the default fallback.

    Raises:
        WeightsError: unknown network, bad width, or no such checkpoint file.
    """
    raw = '' if text is None else str(text).strip()
    if raw in ('', 'default'):
        path = default_checkpoint_path()
        if path is not None:
            return WeightsChoice(raw or 'default', 'default', path=path)
        return WeightsChoice(raw or 'default', 'default', spec=_untrained_spec(network, width, raw), fallback=True)
    if raw == 'selfsup':
        if not SELFSUP_CHECKPOINT.is_file():
            raise WeightsError(f'selfsup: the shipped self-supervised model is not installed ({SELFSUP_CHECKPOINT})')
        return WeightsChoice(raw, 'path', path=SELFSUP_CHECKPOINT)
    if raw == 'untrained' or raw.startswith('untrained:'):
        parts = raw.split(':')
        if len(parts) > 3:
            raise WeightsError(f'{raw}: weights are {SYNTAX}')
        if len(parts) == 1:  # bare "untrained": the caller's network and width
            return WeightsChoice(raw, 'untrained', spec=_untrained_spec(network, width, raw))
        try:
            w = float(parts[2]) if len(parts) > 2 else 1.0
        except ValueError:
            raise WeightsError(f'{raw}: width {parts[2]!r} is not a number') from None
        return WeightsChoice(raw, 'untrained', spec=_untrained_spec(parts[1], w, raw))
    path = Path(raw).expanduser()
    if not path.is_file():
        raise WeightsError(f'{raw}: no such file (weights are {SYNTAX})')
    return WeightsChoice(raw, 'path', path=path)


def _untrained_spec(network: str, width: float, text: str) -> ModelSpec:
    try:
        name = canonical_depth_model_name(network)
    except ValueError as exc:
        raise WeightsError(f'{text}: unknown network {network!r} ({exc})') from None
    if not width > 0:
        raise WeightsError(f'{text}: width must be > 0, got {width}')
    return ModelSpec(depth_net=name, width=float(width))


@dataclass
class ResolvedWeights:
    """Loaded weights and how to describe them to a person.

    Attributes:
        choice: what was asked for.
        checkpoint: networks (eval mode, CPU, float32) and their spec. Untrained weights
            get a PoseNet too when ``with_pose`` was asked for.
        description: one line for logs and reports, e.g. "default checkpoint
            packnet_ros_default.ckpt (PackNetSlim01-1A-w0.25, ...)" or "UNTRAINED weights ...".
    """

    choice: WeightsChoice
    checkpoint: Checkpoint
    description: str


def resolve_weights(text: str | None, with_pose: bool = True, network: str = 'PackNet01',
                    width: float = 1.0) -> ResolvedWeights:
    """Parse and load a weights choice (the one resolver of the package).

    Args:
        text: see the module docstring.
        with_pose: also load (or, untrained, build) the PoseNet.
        network, width: network of a bare "untrained" and of the default fallback.

    Raises:
        WeightsError: see :func:`parse_weights`.
        packnet_ros.checkpoint.CheckpointError: the file is not a supported checkpoint.
    """
    choice = parse_weights(text, network, width)
    if choice.path is not None:
        ckpt = load_checkpoint(choice.path, with_pose=with_pose)
        if choice.kind == 'default':
            meta = ckpt.metadata
            desc = (f'default checkpoint {choice.path.name} ({meta.get("network", ckpt.spec.label)}'
                    f'{", " + meta["summary"] if meta.get("summary") else ""})')
        else:
            desc = f'checkpoint {choice.path}'
        return ResolvedWeights(choice, ckpt, desc)
    spec = choice.untrained_spec
    torch.manual_seed(UNTRAINED_SEED)
    depth_net = spec.build_depth_net().eval()
    pose_net = build_pose_net('PoseNet').eval() if with_pose else None
    if choice.fallback:
        desc = (f'UNTRAINED weights ({spec.label}): no default checkpoint is installed, so the depth is what '
                f'a random PackNet predicts (a pipeline check, not a result)')
    else:
        desc = f'UNTRAINED weights ({spec.label}, requested)'
    return ResolvedWeights(choice, Checkpoint(depth_net, pose_net, spec, spec.to_config()), desc)
