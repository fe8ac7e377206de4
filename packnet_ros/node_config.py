"""The parameters of ``packnet_node``: one typed table, validation, and the settings snapshot.

Every parameter is a :class:`ParamSpec` in :data:`PARAMETERS` (name, default, type,
description, choices, range, read_only). The node declares them from this table, validates
the start-up values with :func:`validate`, and keeps one :class:`NodeSettings` whose
``with_values`` validates a whole SetParameters request before anything is applied; the
new snapshot replaces the old one atomically, and the next frame uses it.

``read_only`` parameters need a model or subscription reload (checkpoint, network, input
size, device, precision, backend, scale source, the adaptation worker's construction
settings, camera_info matching, queue sizes); a runtime change to another value is
rejected with "needs a model reload: restart the node". Everything else takes effect on
the next frame.

Convention: the table's Python types map to ROS parameter types bool -> bool,
int -> integer, float -> double, str -> string (:data:`TYPE_NAMES` gives the words used
in README.md). Ranges are inclusive unless ``min_exclusive``.

No rclpy or message imports here (DESIGN.md: the core is testable without ROS).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

TYPE_NAMES = {bool: 'bool', int: 'int', float: 'double', str: 'string'}
"""ROS parameter type word (as in README.md) of each Python type in the table."""

RELOAD_REASON = 'needs a model reload: restart the node'
"""Why a runtime change of a read_only parameter is rejected (after the parameter name)."""


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    Attributes:
        name: ROS parameter name (dotted for nested YAML keys, e.g. ``scale.window``).
        default: default value, of ``type``.
        type: bool, int, float or str (ROS bool, integer, double, string).
        description: one line for ``ros2 param describe`` (units and meaning).
        choices: allowed values of a string parameter, or None (any).
        min, max: inclusive bounds of a numeric parameter (None = unbounded).
        read_only: changing it needs a model / subscription reload (rejected at runtime).
        min_exclusive: ``min`` itself is not allowed (value > min).
        multiple_of: an int parameter must be a multiple of this (0 included).
        pattern: regular expression a string parameter must match in full.
        pattern_text: how ``pattern`` is explained in messages (e.g. "auto, cpu, cuda, cuda:N").
    """

    name: str
    default: Any
    type: type
    description: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    read_only: bool = False
    min_exclusive: bool = False
    multiple_of: int | None = None
    pattern: str | None = None
    pattern_text: str | None = None

    @property
    def type_name(self) -> str:
        """ROS type word: bool, int, double or string."""
        return TYPE_NAMES[self.type]

    def constraints(self) -> str:
        """The allowed values in words ('' if any value of the type is allowed), e.g.
        "one of network, camera", "> 0", "in [-20, 19]", ">= 0, multiple of 32".
        Suitable for ``ParameterDescriptor.additional_constraints``."""
        parts = []
        if self.choices is not None:
            parts.append('one of ' + ', '.join(self.choices))
        if self.pattern is not None:
            parts.append('one of ' + (self.pattern_text or f'/{self.pattern}/'))
        if self.min is not None and self.max is not None:
            parts.append(f'in {"(" if self.min_exclusive else "["}{_fmt(self.min)}, {_fmt(self.max)}]')
        elif self.min is not None:
            parts.append(f'{">" if self.min_exclusive else ">="} {_fmt(self.min)}')
        elif self.max is not None:
            parts.append(f'<= {_fmt(self.max)}')
        if self.multiple_of is not None:
            parts.append(f'multiple of {self.multiple_of}')
        return ', '.join(parts)

    def check(self, value: Any) -> str | None:
        """One-line error naming the parameter, the value and what is allowed; None if valid."""
        if not _is_type(value, self.type):
            return f'{self.name}: {value!r} is {type(value).__name__}, expected {self.type_name}'
        if self.type is float and not math.isfinite(value):
            return f'{self.name}: {value!r} is not finite, must be {self.constraints() or "a finite number"}'
        if self.choices is not None and value not in self.choices:
            return f'{self.name}: {value!r} is not one of {", ".join(self.choices)}'
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f'{self.name}: {value!r} is not one of {self.pattern_text or "/" + self.pattern + "/"}'
        if self.type in (int, float):
            low_ok = self.min is None or (value > self.min if self.min_exclusive else value >= self.min)
            high_ok = self.max is None or value <= self.max
            if not (low_ok and high_ok):
                return f'{self.name}: {value!r} is out of range, must be {self.constraints()}'
            if self.multiple_of is not None and value % self.multiple_of:
                return f'{self.name}: {value!r} is not a multiple of {self.multiple_of}'
        return None

    def coerce(self, value: Any) -> Any:
        """``value`` as this parameter's type (an int for a double becomes a float)."""
        return float(value) if self.type is float else value


def _is_type(value: object, t: type) -> bool:
    if t is bool:
        return isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, t)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f'{x:g}'


_P = ParamSpec
PARAMETERS: tuple[ParamSpec, ...] = (
    # -- model (read_only: the network is built once) --
    _P('checkpoint', 'default', str, 'Weights: "default" (the shipped model), "selfsup" (shipped PackNet with PoseNet), a .ckpt path (packnet-sfm or '
                                     'packnet_ros), or "untrained[:<Network>[:<width>]]" (random, testing only)',
       read_only=True),
    _P('network', 'PackNet01', str, 'Network of a bare checkpoint "untrained": PackNet01 | PackNetSlim01',
       choices=('PackNet01', 'PackNetSlim01'), read_only=True),
    _P('network_width', 1.0, float, 'Channel multiplier of a bare checkpoint "untrained"', min=0.0,
       min_exclusive=True, read_only=True),
    _P('input_height', 0, int, 'Network input height (multiple of 32); 0 = from the checkpoint',
       min=0, multiple_of=32, read_only=True),
    _P('input_width', 0, int, 'Network input width (multiple of 32); 0 = from the checkpoint',
       min=0, multiple_of=32, read_only=True),
    _P('device', 'auto', str, 'auto | cpu | cuda | cuda:N (auto = CUDA when available)',
       pattern=r'auto|cpu|cuda(:[0-9]+)?', pattern_text='auto, cpu, cuda, cuda:N', read_only=True),
    _P('precision', 'auto', str, 'auto | fp32 | bf16 | fp16 (auto = fp16 on CUDA, bf16 on CPUs with native bf16)',
       choices=('auto', 'fp32', 'bf16', 'fp16'), read_only=True),
    _P('backend', 'auto', str, 'auto | fast | eager | compile | openvino (auto = fast: exact folded packing '
       'layers; on CPU openvino instead when installed, measured faster at start-up and within 1 % of fp32)',
       choices=('auto', 'fast', 'eager', 'compile', 'openvino'), read_only=True),
    # -- outputs (runtime) --
    _P('max_depth_m', 80.0, float, 'Depth beyond this is published as +Inf (REP 117)',
       min=0.0, min_exclusive=True),
    _P('min_depth_m', 0.0, float, 'Depth below this is published as -Inf (0 disables)', min=0.0),
    _P('output_resolution', 'network', str, 'network: depth at the network input size | camera: resized '
                                            'back to the camera image size', choices=('network', 'camera')),
    _P('publish_cloud', True, bool, 'Publish ~/points'),
    _P('cloud_fields', 'xyzrgb', str, 'xyz | xyzrgb (colour from the input image)', choices=('xyz', 'xyzrgb')),
    _P('cloud_decimation', 1, int, 'Keep every N-th row and column of the depth image in the cloud', min=1,
       max=64),
    _P('min_confidence', 0.0, float, 'Cloud points whose confidence (models with one: SID) is below this are '
                                     'NaN; 0 keeps every point', min=0.0, max=1.0),
    _P('refinement', 'none', str, 'none | guided | fgs | crf: edge-aware refinement of the depth with the RGB '
                                  'image (guided filter, fast global smoother, dense CRF; see README Refinement)',
       choices=('none', 'guided', 'fgs', 'crf'), read_only=True),
    # -- metric scale --
    _P('scale_source', 'model', str, 'model: trust the network (velocity-supervised) | fixed: multiply by '
                                     'fixed_scale | odometry: PoseNet translation vs odometry distance',
       choices=('model', 'fixed', 'odometry'), read_only=True),
    _P('fixed_scale', 1.0, float, 'Scale factor for scale_source=fixed', min=0.0, min_exclusive=True),
    _P('scale.window', 50, int, 'odometry scale: accepted samples in the running median', min=1),
    _P('scale.min_speed_mps', 1.0, float, 'odometry scale: slower is "stationary" (no update)', min=0.0),
    _P('scale.max_odom_gap_s', 0.2, float, 'odometry scale: odometry must exist this close to both frames',
       min=0.0, min_exclusive=True),
    _P('scale.max_frame_gap_s', 0.5, float, 'odometry scale: longer frame intervals are rejected',
       min=0.0, min_exclusive=True),
    _P('scale.outlier_k', 3.5, float, 'odometry scale: rejection threshold in robust standard deviations',
       min=0.0, min_exclusive=True),
    # -- online adaptation --
    _P('adaptation.enabled', False, bool, 'Online self-supervised adaptation in a background thread',
       read_only=True),
    _P('adaptation.lr', 2e-5, float, 'adaptation: depth network learning rate (Adam)',
       min=0.0, min_exclusive=True, read_only=True),
    _P('adaptation.pose_lr', 2e-5, float, 'adaptation: pose network learning rate (Adam)',
       min=0.0, min_exclusive=True, read_only=True),
    _P('adaptation.buffer_size', 64, int, 'adaptation: frame triplets kept in the ring buffer', min=1,
       read_only=True),
    _P('adaptation.batch_size', 1, int, 'adaptation: triplets per gradient step', min=1, read_only=True),
    _P('adaptation.max_steps_per_frame', 2.0, float,
       'adaptation: gradient steps allowed per received frame (0 = unlimited)', min=0.0),
    _P('adaptation.spike_factor', 3.0, float, 'adaptation: a loss above this x the recent median rolls back',
       min=1.0, min_exclusive=True),
    _P('adaptation.threads', 1, int, 'adaptation: CPU threads of the worker', min=1, read_only=True),
    _P('adaptation.nice', 10, int, 'adaptation: nice value of the worker thread (yields the CPU to inference)',
       min=-20, max=19, read_only=True),
    _P('adaptation.save_path', 'packnet_adapted.ckpt', str,
       'adaptation: where ~/adaptation/save writes the weights'),
    # -- inputs --
    _P('camera_info_match', 'exact', str, 'exact: pair image and camera_info by stamp | latest: use the '
                                          'latest camera_info', choices=('exact', 'latest'), read_only=True),
    _P('image_queue_size', 1, int, 'Image subscription depth (1 = always process the newest frame)', min=1,
       read_only=True),
    _P('output_queue_size', 2, int, 'Depth of the reliable output publishers', min=1, read_only=True),
    _P('lazy', True, bool, 'Skip inference while no output topic has a subscriber'),
    # -- navigation outputs: ~/scan, ~/obstacles (packnet_ros.postprocess.obstacles) --
    _P('obstacles.target_frame', 'base_link', str, 'Frame of ~/scan and ~/obstacles (x forward, y left, z up, '
                                                   'z = 0 on the ground; REP 103/105)', pattern=r'\S+',
       pattern_text='a non-empty frame id'),
    _P('obstacles.extrinsics_source', 'parameter', str,
       'parameter: camera pose from obstacles.camera_* | tf: from /tf_static + /tf (needs tf2_msgs; '
       'falls back to the parameters without it)', choices=('parameter', 'tf'), read_only=True),
    _P('obstacles.camera_x_m', 0.0, float, 'Camera position in the target frame, x (forward), metres'),
    _P('obstacles.camera_y_m', 0.0, float, 'Camera position in the target frame, y (left), metres'),
    _P('obstacles.camera_z_m', 0.0, float, 'Camera position in the target frame, z (height above the ground), '
                                           'metres'),
    _P('obstacles.camera_roll_rad', 0.0, float, 'Camera body (x forward) roll in the target frame, radians',
       min=-math.pi, max=math.pi),
    _P('obstacles.camera_pitch_rad', 0.0, float, 'Camera body pitch in the target frame, radians '
                                                 '(positive = looking down)', min=-math.pi, max=math.pi),
    _P('obstacles.camera_yaw_rad', 0.0, float, 'Camera body yaw in the target frame, radians (positive = left)',
       min=-math.pi, max=math.pi),
    _P('obstacles.min_height_m', 0.2, float, 'Obstacle height band, lower edge above the ground (ground, '
                                             'curbs below), metres'),
    _P('obstacles.max_height_m', 2.0, float, 'Obstacle height band, upper edge (overhangs above), metres'),
    _P('obstacles.max_range_m', 8.0, float, '~/obstacles: horizontal range limit (reliable depth), metres',
       min=0.0, min_exclusive=True),
    _P('obstacles.voxel_m', 0.1, float, '~/obstacles: voxel edge, one point (centroid) per voxel; 0 = off',
       min=0.0),
    _P('obstacles.ground_plane', False, bool, '~/obstacles: heights above a RANSAC-fitted ground plane '
                                              '(scikit-learn) instead of z = 0'),
    _P('obstacles.min_confidence', 0.0, float, '~/obstacles: drop points whose depth confidence is below this '
                                               '(when the network gives one)', min=0.0, max=1.0),
    _P('scan.angle_increment_deg', 0.5, float, '~/scan: degrees between beams', min=0.0, max=10.0,
       min_exclusive=True),
    _P('scan.range_min_m', 0.3, float, '~/scan: nearer returns are -Inf (REP 117), metres', min=0.0),
    _P('scan.range_max_m', 8.0, float, '~/scan: farther returns are +Inf (REP 117), metres', min=0.0,
       min_exclusive=True),
    # -- depth completion from a LiDAR (packnet_ros.completion.stage) --
    _P('completion.method', 'none', str, 'none | ipbasic | ipbasic:multiscale | learned: complete the depth from the '
                                         'sparse input with IP-Basic (monocular where it gives nothing or without '
                                         'input), or (learned) with the checkpoint\'s own sparse branch (a model '
                                         'trained with model.sparse_branch; monocular without input)',
       choices=('none', 'ipbasic', 'ipbasic:multiscale', 'learned'), read_only=True),
    _P('completion.topic', '/lidar/points', str, 'Sparse input topic (subscribed only when completion.method is '
                                                 'not none; sensor-data QoS)', pattern=r'\S+',
       pattern_text='a non-empty topic name', read_only=True),
    _P('completion.kind', 'pointcloud2', str, 'pointcloud2: a LiDAR sensor_msgs/PointCloud2 (float32 x, y, z) | '
                                              'depth_image: a sparse sensor_msgs/Image (32FC1 m / 16UC1 mm, 0 or '
                                              'NaN = none) in the camera image', choices=('pointcloud2', 'depth_image'),
       read_only=True),
    _P('completion.max_staleness_s', 0.1, float, 'The nearest sparse input may be this far (seconds) from the image '
                                                 'stamp; farther: monocular fallback', min=0.0),
    _P('completion.extrinsics', '', str, 'T_camera_lidar (LiDAR points -> the camera optical frame): "x y z roll '
                                         'pitch yaw" (m, rad) or a 3x4 / 4x4 matrix as 12 / 16 numbers; "" = TF '
                                         '(needs tf2_msgs), or none when the cloud is in the camera frame'),
)
"""Every packnet_node parameter, in declaration order."""
del _P

_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def spec(name: str) -> ParamSpec:
    """The :class:`ParamSpec` of ``name``.

    Raises:
        KeyError: not a packnet_node parameter.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f'{name!r} is not a packnet_node parameter') from None


def defaults() -> dict[str, Any]:
    """{name: default} of every parameter (a new dict)."""
    return {p.name: p.default for p in PARAMETERS}


def validate(values: Mapping[str, object]) -> list[str]:
    """Check parameter values; one line per problem, naming the parameter, the value and
    what is allowed (e.g. "output_resolution: 'foo' is not one of network, camera").

    Args:
        values: {name: value}; the complete set the node would have (parameters missing
            here take their defaults for the cross-parameter checks).

    Returns:
        Error messages, empty when everything is valid. Cross-parameter checks:
        ``min_depth_m < max_depth_m`` when ``min_depth_m > 0``; ``input_height`` and
        ``input_width`` both 0 (from the checkpoint) or both set;
        ``obstacles.min_height_m < obstacles.max_height_m``; ``scan.range_min_m < scan.range_max_m``;
        ``completion.extrinsics`` empty or a rigid transform
        (:func:`packnet_ros.completion.stage.parse_extrinsics`).
    """
    errors = []
    bad = set()
    for name, value in values.items():
        p = _BY_NAME.get(name)
        if p is None:
            errors.append(f'{name}: unknown parameter')
            continue
        message = p.check(value)
        if message:
            errors.append(message)
            bad.add(name)
    merged = {**defaults(), **values}
    if not bad & {'min_depth_m', 'max_depth_m'}:
        lo, hi = merged['min_depth_m'], merged['max_depth_m']
        if lo > 0 and lo >= hi:
            errors.append(f'min_depth_m: {lo!r} must be below max_depth_m ({hi!r}), or 0 to disable')
    for lo_name, hi_name in (('obstacles.min_height_m', 'obstacles.max_height_m'),
                             ('scan.range_min_m', 'scan.range_max_m')):
        if not bad & {lo_name, hi_name} and not merged[lo_name] < merged[hi_name]:
            errors.append(f'{lo_name}: {merged[lo_name]!r} must be below {hi_name} ({merged[hi_name]!r})')
    if 'completion.extrinsics' not in bad and str(merged['completion.extrinsics']).strip():
        from .completion.stage import parse_extrinsics  # numpy; only for a non-empty value
        try:
            parse_extrinsics(merged['completion.extrinsics'])
        except ValueError as exc:
            errors.append(f'completion.extrinsics: {merged["completion.extrinsics"]!r}: {exc}')
    if not bad & {'input_height', 'input_width'}:
        h, w = merged['input_height'], merged['input_width']
        if (h == 0) != (w == 0):
            errors.append(f'input_height, input_width: {h!r} x {w!r}: set both (multiples of 32) '
                          f'or neither (0 = from the checkpoint)')
    return errors


def check_changes(current: Mapping[str, object], changes: Mapping[str, object],
                  allow_read_only: bool = False) -> list[str]:
    """Errors of a runtime change request (a whole SetParameters request at once).

    Args:
        current: the node's values now (complete).
        changes: {name: new value} requested.
        allow_read_only: accept changes of read_only parameters (start-up / reload).

    Returns:
        Error messages (empty = apply all of ``changes``): unknown names, read_only
        parameters set to a different value ("<name> needs a model reload: restart the
        node"; setting the current value again is accepted), and :func:`validate` of the
        merged values.
    """
    errors = []
    for name, value in changes.items():
        p = _BY_NAME.get(name)
        if p is None:
            errors.append(f'{name}: unknown parameter')
        elif p.read_only and not allow_read_only and not _same(current.get(name, p.default), value):
            errors.append(f'{name} {RELOAD_REASON}')
    if errors:
        return errors
    return validate({**current, **changes})


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (
        _is_type(a, float) and _is_type(b, float) and float(a) == float(b))


@dataclass(frozen=True)
class ScaleParams:
    """Metric scale settings (field names as :class:`packnet_ros.online.ScaleSettings`, so
    ``ScaleSettings(**dataclasses.asdict(p))`` builds one).

    Attributes:
        source: scale_source, "model" | "fixed" | "odometry" (read_only).
        fixed_scale: factor for source "fixed" (> 0).
        window: accepted odometry samples in the running median (>= 1).
        min_speed_mps: m/s; slower counts as stationary, no update (>= 0).
        max_odom_gap_s: s; odometry must exist this close to both frames (> 0).
        max_frame_gap_s: s; longer frame intervals are rejected (> 0).
        outlier_k: rejection threshold in robust standard deviations of log(scale) (> 0).
    """

    source: str
    fixed_scale: float
    window: int
    min_speed_mps: float
    max_odom_gap_s: float
    max_frame_gap_s: float
    outlier_k: float

    def estimator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`packnet_ros.scale.OdometryScaleEstimator.configure`."""
        return dict(window=self.window, min_speed=self.min_speed_mps, max_odom_gap_s=self.max_odom_gap_s,
                    max_frame_dt_s=self.max_frame_gap_s, outlier_k=self.outlier_k)


@dataclass(frozen=True)
class AdaptationParams:
    """Online adaptation settings (``adaptation.*``).

    Attributes:
        enabled: run the adaptation worker (read_only).
        lr, pose_lr: Adam learning rates of the depth and pose networks (read_only).
        buffer_size: frame triplets kept (read_only).
        batch_size: triplets per gradient step (read_only).
        max_steps_per_frame: gradient steps allowed per received frame, 0 = unlimited (runtime).
        spike_factor: a loss above this x the recent median rolls back, > 1 (runtime).
        threads: CPU threads of the worker (read_only).
        nice: nice value of the worker thread, [-20, 19] (read_only).
        save_path: where ~/adaptation/save writes (runtime; read when the service is called).
    """

    enabled: bool
    lr: float
    pose_lr: float
    buffer_size: int
    batch_size: int
    max_steps_per_frame: float
    spike_factor: float
    threads: int
    nice: int
    save_path: str

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`packnet_ros.adaptation.AdaptationConfig`."""
        return dict(lr=self.lr, pose_lr=self.pose_lr, buffer_size=self.buffer_size, batch_size=self.batch_size,
                    max_steps_per_frame=self.max_steps_per_frame, spike_factor=self.spike_factor,
                    threads=self.threads, nice=self.nice)

    def adapter_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`packnet_ros.adaptation.OnlineAdapter.configure` (runtime)."""
        return dict(max_steps_per_frame=self.max_steps_per_frame, spike_factor=self.spike_factor)


@dataclass(frozen=True)
class NodeSettings:
    """A validated, immutable snapshot of every packnet_node parameter.

    The node keeps one reference, reads it once per frame, and replaces it as a whole
    after a fully validated request (:meth:`with_values`), so a frame never sees a half
    applied change. Units and meaning as in :data:`PARAMETERS` / README.md.

    Attributes:
        values: read-only {name: value} of every parameter (typed: doubles are floats).
        checkpoint, network, network_width, input_height, input_width, device, precision,
            backend: the model (read_only).
        max_depth_m: m; deeper pixels are published as +Inf (> 0).
        min_depth_m: m; shallower pixels are published as -Inf (0 disables; < max_depth_m).
        output_resolution: "network" | "camera".
        publish_cloud: publish ~/points.
        cloud_fields: "xyz" | "xyzrgb".
        cloud_decimation: keep every N-th row and column in the cloud (>= 1).
        scale: :class:`ScaleParams` (``scale_source``, ``fixed_scale``, ``scale.*``).
        adaptation: :class:`AdaptationParams` (``adaptation.*``).
        camera_info_match: "exact" | "latest" (read_only).
        image_queue_size, output_queue_size: subscription / publisher depths (read_only).
        lazy: skip inference while no output topic has a subscriber.
    """

    values: Mapping[str, Any] = field(repr=False, hash=False)
    checkpoint: str
    network: str
    network_width: float
    input_height: int
    input_width: int
    device: str
    precision: str
    backend: str
    max_depth_m: float
    min_depth_m: float
    output_resolution: str
    publish_cloud: bool
    cloud_fields: str
    cloud_decimation: int
    scale: ScaleParams
    adaptation: AdaptationParams
    camera_info_match: str
    image_queue_size: int
    output_queue_size: int
    lazy: bool

    @property
    def scale_source(self) -> str:
        """``scale_source`` (= ``scale.source``)."""
        return self.scale.source

    @property
    def fixed_scale(self) -> float:
        """``fixed_scale`` (= ``scale.fixed_scale``)."""
        return self.scale.fixed_scale

    @property
    def input_shape(self) -> tuple[int, int] | None:
        """(input_height, input_width), or None = the checkpoint's training shape."""
        return (self.input_height, self.input_width) if self.input_height and self.input_width else None

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> NodeSettings:
        """Settings from {name: value} (missing names take their defaults).

        Raises:
            ValueError: every :func:`validate` error, joined with "; ".
        """
        errors = validate(values)
        if errors:
            raise ValueError('; '.join(errors))
        v = {p.name: p.coerce(values.get(p.name, p.default)) for p in PARAMETERS}
        return cls(
            values=MappingProxyType(v),
            checkpoint=v['checkpoint'], network=v['network'], network_width=v['network_width'],
            input_height=v['input_height'], input_width=v['input_width'], device=v['device'],
            precision=v['precision'], backend=v['backend'],
            max_depth_m=v['max_depth_m'], min_depth_m=v['min_depth_m'],
            output_resolution=v['output_resolution'], publish_cloud=v['publish_cloud'],
            cloud_fields=v['cloud_fields'], cloud_decimation=v['cloud_decimation'],
            scale=ScaleParams(source=v['scale_source'], fixed_scale=v['fixed_scale'], window=v['scale.window'],
                              min_speed_mps=v['scale.min_speed_mps'], max_odom_gap_s=v['scale.max_odom_gap_s'],
                              max_frame_gap_s=v['scale.max_frame_gap_s'], outlier_k=v['scale.outlier_k']),
            adaptation=AdaptationParams(
                enabled=v['adaptation.enabled'], lr=v['adaptation.lr'], pose_lr=v['adaptation.pose_lr'],
                buffer_size=v['adaptation.buffer_size'], batch_size=v['adaptation.batch_size'],
                max_steps_per_frame=v['adaptation.max_steps_per_frame'],
                spike_factor=v['adaptation.spike_factor'], threads=v['adaptation.threads'],
                nice=v['adaptation.nice'], save_path=v['adaptation.save_path']),
            camera_info_match=v['camera_info_match'], image_queue_size=v['image_queue_size'],
            output_queue_size=v['output_queue_size'], lazy=v['lazy'])

    @classmethod
    def default(cls) -> NodeSettings:
        """Settings with every default."""
        return cls.from_values(defaults())

    def with_values(self, changes: Mapping[str, object], allow_read_only: bool = False) -> NodeSettings:
        """A new snapshot with ``changes`` applied, validated as a whole (:func:`check_changes`).

        Args:
            changes: {name: new value}, dotted names (``scale.window``).
            allow_read_only: accept changes of read_only parameters (otherwise a change to a
                different value is an error; the current value again is accepted).

        Raises:
            ValueError: every error of the request, joined with "; "; nothing is applied.
        """
        errors = check_changes(self.values, changes, allow_read_only)
        if errors:
            raise ValueError('; '.join(errors))
        return NodeSettings.from_values({**self.values, **changes})

    def changed(self, other: NodeSettings) -> set[str]:
        """Names whose values differ between ``self`` and ``other``."""
        return {n for n in self.values if not _same(self.values[n], other.values[n])}


__all__ = ['AdaptationParams', 'NodeSettings', 'PARAMETERS', 'ParamSpec', 'RELOAD_REASON', 'ScaleParams',
           'TYPE_NAMES', 'check_changes', 'defaults', 'spec', 'validate']
