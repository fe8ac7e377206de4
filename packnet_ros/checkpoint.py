"""Checkpoints: official packnet-sfm ``.ckpt`` files and this project's own format.

Official packnet-sfm checkpoints are ``torch.save`` dicts with ``state_dict`` (keys
``model.depth_net.*`` / ``model.pose_net.*``) and ``config``, a pickled yacs CfgNode
(``model.depth_net.name``, ``.version``, ``datasets.augmentation.image_shape``,
``model.params.max_depth`` ...). They load here without packnet-sfm or yacs: a
restricted unpickler maps ``yacs.config.CfgNode`` to a plain dict and refuses any
other non-tensor global, so a checkpoint cannot run code.

The project format keeps the same ``state_dict`` prefixes and adds plain-dict
``config`` (same key names as packnet-sfm, plus ``model.depth_net.width``) and
``metadata`` (training data, metrics, versions, licence), built-in types only, so a file
written by :func:`save_checkpoint` loads with ``torch.load(weights_only=True)``. Either kind
works everywhere a checkpoint is taken.
"""
from __future__ import annotations

import datetime as _dt
import io
import math
import os
import pickle
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .networks import DEPTH_NETWORKS, build_depth_model, build_depth_net, build_pose_net, depth_net_label

FORMAT = 'packnet_ros/1'
DEPTH_PREFIX = 'model.depth_net.'
POSE_PREFIX = 'model.pose_net.'
DEFAULT_IMAGE_SHAPE = (192, 640)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / 'models' / 'packnet_ros_default.ckpt'
"""The shipped model (see packnet_ros/models/MODEL_CARD.md), used when ``checkpoint: default``."""
SELFSUP_CHECKPOINT = Path(__file__).resolve().parent / 'models' / 'packnet_ros_selfsup.ckpt'
"""The shipped self-supervised PackNet with its velocity-supervised PoseNet (``checkpoint:
selfsup``; MODEL_CARD.md): for the odometry scale and online adaptation, which need a PoseNet."""


def default_checkpoint_path() -> Path | None:
    """The shipped default checkpoint if it is installed, else None."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not describe a supported network."""


@dataclass
class ModelSpec:
    """What a checkpoint's networks are.

    Attributes:
        depth_net: packnet-sfm name ("PackNet01", "PackNetSlim01") or a head with its
            encoder ("BTS-ResNet50", "SID-ResNet18"; see
            :func:`packnet_ros.networks.build_depth_model`).
        version: "1A" / "1B" (PackNet only).
        width: channel multiplier (1.0 = published network).
        image_shape: (H, W) network input size, multiples of 32.
        max_depth: evaluation / clamping range from the training config, metres.
        pose_net: pose network name or None.
        options: keyword options of a BTS / SID model (``model.depth_net.options`` in the
            config, plain numbers and strings, e.g. ``{'num_bins': 71, 'mode': 'ordinal',
            'alpha': 1.0, 'beta': 80.0}``); empty for PackNet.
    """

    depth_net: str = 'PackNet01'
    version: str = '1A'
    width: float = 1.0
    image_shape: tuple[int, int] = DEFAULT_IMAGE_SHAPE
    max_depth: float = 80.0
    pose_net: str | None = 'PoseNet'
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """E.g. "PackNet01-1A" or "PackNetSlim01-1A-w0.25"."""
        return depth_net_label(self.depth_net, self.version, self.width)

    def to_config(self) -> dict:
        """packnet-sfm-shaped plain config dict for this spec."""
        depth: dict = {'name': self.depth_net, 'version': self.version, 'width': self.width}
        if self.options:
            depth['options'] = dict(self.options)
        return {
            'model': {
                'depth_net': depth,
                'pose_net': {'name': self.pose_net or '', 'version': ''},
                'params': {'min_depth': 0.0, 'max_depth': self.max_depth},
            },
            'datasets': {'augmentation': {'image_shape': list(self.image_shape)}},
        }

    def build_depth_net(self) -> nn.Module:
        """A freshly initialised depth network of this spec (training mode, CPU).

        Raises:
            ValueError: unknown network, or options the model does not take.
        """
        if self.depth_net in DEPTH_NETWORKS and not self.options:
            return build_depth_net(self.depth_net, self.version, self.width)
        try:
            return build_depth_model(self.depth_net, version=self.version, width=self.width, **self.options)
        except TypeError as exc:
            raise ValueError(f'{self.depth_net}: bad options {self.options!r}: {exc}') from None

    @classmethod
    def from_config(cls, config: dict) -> 'ModelSpec':
        """Read a spec from a packnet-sfm (yacs, converted to dict) or project config.

        Raises:
            CheckpointError: a config (or one of its sections) that is not a mapping, or a
                value of the wrong type; the message names the dotted key.
        """
        config = _section(config, 'config')
        model = _section(config.get('model'), 'model')
        depth = _section(model.get('depth_net'), 'model.depth_net')
        pose = _section(model.get('pose_net'), 'model.pose_net')
        params = _section(model.get('params'), 'model.params')
        augmentation = _section(_section(config.get('datasets'), 'datasets').get('augmentation'),
                                'datasets.augmentation')
        shape = augmentation.get('image_shape', ()) or ()
        if not isinstance(shape, (list, tuple)):
            raise CheckpointError(f'config: datasets.augmentation.image_shape is {shape!r}, expected [H, W]')
        if len(shape) != 2:
            shape = DEFAULT_IMAGE_SHAPE
        try:
            image_shape = (int(shape[0]), int(shape[1]))
        except (TypeError, ValueError):
            raise CheckpointError(f'config: datasets.augmentation.image_shape is {list(shape)!r}, '
                                  f'expected two integers [H, W]') from None
        options = _section(depth.get('options'), 'model.depth_net.options')
        return cls(depth_net=_text(depth.get('name'), 'model.depth_net.name') or 'PackNet01',
                   version=_text(depth.get('version'), 'model.depth_net.version') or '1A',
                   width=_number(depth.get('width', 1.0), 'model.depth_net.width') or 1.0,
                   image_shape=image_shape,
                   max_depth=_number(params.get('max_depth', 80.0), 'model.params.max_depth') or 80.0,
                   pose_net=_text(pose.get('name'), 'model.pose_net.name') or None,
                   options={str(k): v for k, v in options.items()})


def _section(value, key: str) -> dict:
    """A config section: a mapping, or {} when absent/empty."""
    if value is None or (isinstance(value, (str, dict, list, tuple)) and len(value) == 0):
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f'config{"" if key == "config" else ": " + key} is {value!r:.60} '
                              f'({type(value).__name__}), expected a mapping')
    return value


def _text(value, key: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise CheckpointError(f'config: {key} is {value!r:.60} ({type(value).__name__}), expected a string')


def _number(value, key: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float('nan')
    if isinstance(value, bool) or not math.isfinite(number):
        raise CheckpointError(f'config: {key} is {value!r:.60} ({type(value).__name__}), expected a number')
    return number


@dataclass
class Checkpoint:
    """A loaded checkpoint: ready networks (eval mode, CPU, float32) plus what describes them."""

    depth_net: nn.Module
    pose_net: nn.Module | None
    spec: ModelSpec
    config: dict
    metadata: dict = field(default_factory=dict)
    source: str = FORMAT  # FORMAT or "packnet-sfm"
    path: str = ''


# ----------------------------------------------------------------------------- reading
class _ConfigNode(dict):
    """Stand-in for yacs' CfgNode when unpickling official checkpoints (a plain dict)."""


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'), ('builtins', 'set'), ('builtins', 'frozenset'),
    ('builtins', 'slice'), ('builtins', 'complex'), ('builtins', 'bytearray'),
    ('__builtin__', 'set'), ('__builtin__', 'frozenset'), ('_codecs', 'encode'),
    ('torch', 'Size'), ('torch', 'device'), ('torch.torch_version', 'TorchVersion'),  # a str subclass
    ('numpy', 'dtype'), ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for packnet-sfm checkpoints: tensors, plain containers, yacs configs only."""

    def find_class(self, module: str, name: str):
        if (module, name) in (('yacs.config', 'CfgNode'), ('packnet_sfm.utils.config', 'CfgNode')):
            return _ConfigNode
        if (module == 'torch._utils' and name.startswith('_rebuild')) or \
                (module == 'torch' and isinstance(getattr(torch, name, None), torch.dtype)) or \
                (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f'checkpoint references {module}.{name}, which is neither a tensor, a plain container '
            f'nor a yacs config; refusing to load it')


_restricted_pickle = types.SimpleNamespace(Unpickler=_RestrictedUnpickler, load=pickle.load,
                                           __name__='packnet_ros_restricted_pickle')


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def read_checkpoint_file(path: str | os.PathLike) -> dict:
    """Read a checkpoint dict from disk without executing code from it.

    Raises:
        CheckpointError: missing, unreadable or not a checkpoint dict with a ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint not found: {path}')
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f'cannot read checkpoint {path}: {exc.strerror or exc}') from exc
    if not data:
        raise CheckpointError(f'checkpoint {path} is empty (0 bytes): a truncated or unfinished copy; '
                              f'copy or save it again')
    try:
        obj = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        try:
            obj = torch.load(io.BytesIO(data), map_location='cpu', weights_only=False,
                             pickle_module=_restricted_pickle)
        except Exception as exc:  # noqa: BLE001 - reported with the file name
            raise CheckpointError(f'cannot read checkpoint {path}: {_reason(exc, len(data))}') from exc
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f'cannot read checkpoint {path}: {_reason(exc, len(data))}') from exc
    if not isinstance(obj, dict) or 'state_dict' not in obj:
        raise CheckpointError(f'{path} is not a packnet-sfm / packnet_ros checkpoint (no state_dict)')
    return obj


def _reason(exc: BaseException, size: int) -> str:
    """One line for a failed ``torch.load``: the first line of the error, or its type when empty."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ''
    if len(text) > 100 and '. ' in text:  # torch's zip reader appends a paragraph of advice
        text = text.split('. ')[0]
    if isinstance(exc, (EOFError, pickle.UnpicklingError)) and not text:
        text = 'the data ends early'
    return f'{text or type(exc).__name__} ({size} bytes: truncated, corrupt or not a torch.save file)'


def _normalise_keys(state_dict: dict) -> dict:
    """Apply packnet-sfm's renames of older checkpoints (disp_network, pose_network, model.model)."""
    if any(k.startswith(DEPTH_PREFIX) or k.startswith(POSE_PREFIX) for k in state_dict):
        return state_dict
    out = {}
    for key, val in state_dict.items():
        key = f'model.{key}'
        if 'disp_network' in key:
            key = key.replace('conv3.0.weight', 'conv3.weight').replace('conv3.0.bias', 'conv3.bias')
        for old, new in (('model.model.', 'model.'), ('pose_network.', 'pose_net.'),
                         ('disp_network.', 'depth_net.')):
            key = key.replace(old, new)
        out[key] = val
    return out


def _sub_state(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_checkpoint(path: str | os.PathLike, with_pose: bool = True) -> Checkpoint:
    """Load an official packnet-sfm or a packnet_ros checkpoint into ready networks.

    The network type, version, width and input shape come from the checkpoint's config.
    Weights load with ``strict=True``; networks are returned in eval mode on the CPU.

    Args:
        path: ``.ckpt`` file.
        with_pose: also build the pose network when the checkpoint has its weights.

    Raises:
        CheckpointError: unreadable file, unsupported network, or weights that do not fit
            the configured network (the message names the first mismatching keys).
    """
    raw = read_checkpoint_file(path)
    config = _to_plain(raw.get('config') or {})
    if not isinstance(config, dict):
        raise CheckpointError(f'{path}: config is {type(config).__name__} {config!r:.60}, expected a mapping '
                              f'(model.depth_net.name, ...)')
    source = FORMAT if raw.get('format') == FORMAT else 'packnet-sfm'
    try:
        spec = ModelSpec.from_config(config)
    except CheckpointError as exc:
        raise CheckpointError(f'{path}: {exc}') from None
    state = raw['state_dict']
    if not isinstance(state, dict):
        raise CheckpointError(f'{path}: state_dict is {type(state).__name__} {state!r:.60}, expected a mapping '
                              f'of parameter names to tensors')
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        k = not_tensors[0]
        raise CheckpointError(f'{path}: state_dict[{k!r}] is {type(state[k]).__name__}, expected a tensor '
                              f'({len(not_tensors)} such entries)')
    state = _normalise_keys({str(k): v for k, v in state.items()})
    depth_state = _sub_state(state, DEPTH_PREFIX)
    if not depth_state:
        raise CheckpointError(f'{path} has no depth network weights ({DEPTH_PREFIX}*)')
    _check_finite(depth_state, path, DEPTH_PREFIX)
    try:
        depth_net = spec.build_depth_net()
    except ValueError as exc:
        raise CheckpointError(f'{path}: {exc}') from exc
    _load_strict(depth_net, depth_state, path, 'depth')
    pose_net = None
    pose_state = _sub_state(state, POSE_PREFIX)
    if with_pose and pose_state:
        _check_finite(pose_state, path, POSE_PREFIX)
        name = spec.pose_net or 'PoseNet'
        n_ref = pose_state['pose_pred.weight'].shape[0] // 6 if 'pose_pred.weight' in pose_state else 2
        try:
            pose_net = build_pose_net(name, nb_ref_imgs=n_ref)
        except ValueError as exc:
            raise CheckpointError(f'{path}: {exc}') from exc
        _load_strict(pose_net, pose_state, path, 'pose')
        pose_net.eval()
    metadata = _to_plain(raw.get('metadata') or {})
    if source != FORMAT and 'epoch' in raw:
        metadata.setdefault('epoch', raw['epoch'])
    return Checkpoint(depth_net.eval(), pose_net, spec, config, metadata, source, str(path))


MAX_ABS_WEIGHT = 1e6
"""Largest parameter magnitude a checkpoint may hold. Trained PackNet/PoseNet weights are
below ~10; a flipped float32 exponent bit turns one into 1e9...1e38."""


def _check_finite(state: dict, path, prefix: str) -> None:
    """Refuse NaN/Inf or implausibly large parameters (a corrupt file or a diverged run):
    such weights load silently and make every depth map NaN.

    Raises:
        CheckpointError: naming the first bad tensor and how many of its values are bad.
    """
    for key, value in state.items():
        if not value.is_floating_point() or value.numel() == 0:
            continue
        v = value.float()
        bad = ~torch.isfinite(v)
        what = 'non-finite (NaN/Inf)'
        if not bool(bad.any()):
            bad = v.abs() > MAX_ABS_WEIGHT
            what = f'implausibly large (|x| > {MAX_ABS_WEIGHT:g})'
            if not bool(bad.any()):
                continue
        first = v.flatten()[bad.flatten()][0].item()
        raise CheckpointError(f'{path}: weight {prefix}{key} has {int(bad.sum())} of {v.numel()} values {what}, '
                              f'e.g. {first:g}: a corrupt file or a diverged training run; refusing to load it')


def _load_strict(net: nn.Module, state: dict, path, what: str) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f'{path}: {what} network weights do not match the configured network '
            f'(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})')
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


# ----------------------------------------------------------------------------- writing
def save_checkpoint(path: str | os.PathLike, depth_net: nn.Module, spec: ModelSpec,
                    pose_net: nn.Module | None = None, metadata: dict | None = None,
                    config: dict | None = None, extra: dict | None = None,
                    pose_dtype: torch.dtype = torch.float32, depth_dtype: torch.dtype = torch.float32) -> Path:
    """Write a project checkpoint atomically (temporary file then rename).

    Args:
        path: destination ``.ckpt``.
        depth_net, pose_net: networks whose ``state_dict`` is saved with the
            ``model.depth_net.`` / ``model.pose_net.`` prefixes (float32, CPU).
        spec: what the depth network is (goes into ``config``).
        metadata: plain data (training data, metrics, licence ...); versions and time are added.
        config: full training config (plain dict); ``spec`` fields override its model keys.
        extra: further plain entries (e.g. training state for resuming).
        pose_dtype: storage dtype of the pose network (float16 halves its size for shipped
            models; loading always returns float32).
        depth_dtype: storage dtype of the depth network's floating-point tensors (float16
            halves a shipped model; integer buffers keep their type; loading returns float32).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {DEPTH_PREFIX + k: v.detach().cpu().to(depth_dtype if v.is_floating_point() else v.dtype)
             for k, v in depth_net.state_dict().items()}
    if pose_net is not None:
        state.update({POSE_PREFIX + k: v.detach().cpu().to(pose_dtype) for k, v in pose_net.state_dict().items()})
    cfg = _merge(_plain_data(config or {}), spec.to_config())
    meta = _plain_data(dict(metadata or {}))
    meta.setdefault('created', _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds'))
    meta.setdefault('packnet_ros_version', __version__)
    meta.setdefault('torch_version', str(torch.__version__))  # TorchVersion would need a pickle global
    meta.setdefault('network', spec.label)
    obj = {'format': FORMAT, 'state_dict': state, 'config': cfg, 'metadata': meta}
    if extra:
        obj.update(_plain_data(extra))
    tmp = path.with_name(path.name + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _plain_data(obj: Any) -> Any:
    """``obj`` with built-in types only, so the file loads with ``torch.load(weights_only=True)``.

    ``weights_only`` accepts tensors, dicts, lists, tuples, str, int, float, bool and None
    but no subclass of them: ``torch.__version__`` (a ``TorchVersion``, a str subclass)
    or a numpy scalar in the metadata would make the file need a pickle global. Subclasses
    become their base type, numpy scalars and arrays Python numbers and lists, paths and
    anything else strings.
    """
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (str, int, float, bool):
        return obj
    if isinstance(obj, dict):
        return {_plain_data(k) if isinstance(k, (str, int, float, tuple)) else str(k): _plain_data(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_plain_data(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    for base in (str, int, float):  # subclasses: TorchVersion, IntEnum, ...
        if isinstance(obj, base):
            return base(obj) if base is not str else str.__str__(obj)
    item = getattr(obj, 'item', None)  # numpy scalars (np.float32, np.int64, np.bool_)
    if callable(item) and getattr(obj, 'shape', None) == ():
        return _plain_data(item())
    tolist = getattr(obj, 'tolist', None)  # numpy arrays
    if callable(tolist):
        return _plain_data(tolist())
    return str(obj)
