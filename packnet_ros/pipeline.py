"""The per-frame work, pure (no ROS): one camera frame in, metric depth, intrinsics and a
point cloud out, with per-stage timings.

``packnet_node``, ``packnet-ros benchmark``, offline evaluation and the tests all run this
one object, so what is measured and scored is what the node publishes.

A frame passes through an ordered list of stages, each a small object with a ``name`` and
``__call__(frame, settings)`` that reads and fills fields of :class:`FrameState`:

    infer   RGB (H, W, 3) uint8 -> network input (1, 3, h, w) in [0, 1] -> inverse depth
            (1, 1, h, w) 1/m (or depth in m for BTS / SID), K scaled to (h, w); a network
            with confidence (SID) fills ``confidence`` at the output resolution
                                                                      (DepthEstimator.run)
    scale   metric scale factor: 1 (model), fixed, or odometry (PoseNet vs distance
            driven); feeds the online-adaptation buffer                 (OnlineProcessor)
    depth   depth = scale / inverse depth in metres at the network or camera resolution,
            REP 117 marking (+Inf beyond max_depth_m, -Inf below min_depth_m, NaN invalid)
    cloud   organized XYZ / XYZRGB cloud (depth_image_proc conventions), optionally
            decimated; points whose confidence is below ``min_confidence`` are NaN;
            skipped when no one wants it

Where new capabilities go: depth completion from sparse LiDAR input
(``FrameInput.sparse``) is the ``completion`` stage after ``depth`` (and ``refine``),
:mod:`packnet_ros.completion.stage` -- for a network with a sparse branch (method
``learned``) the stage runs *before* ``infer`` and hands the network its sparse input
(``FrameState.network_sparse``); a head with confidence fills ``frame.confidence`` in ``infer``;
refinement is a stage between ``depth`` and ``cloud``; obstacle outputs (scan, ground-free
cloud) are stages after ``cloud``. A stage is added with :meth:`DepthPipeline.insert_stage`;
settings that the node may change at runtime live in :class:`PipelineSettings`, which is
replaced as a whole (never mutated), so every frame sees one consistent set.

Conventions (DESIGN.md): images RGB uint8; K is the 3x3 intrinsics of the image it comes
with (image_proc's resize convention when scaled); stamps are integer nanoseconds; depth
float32 metres along the optical z axis.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from .adaptation import AdaptationConfig
from .checkpoint import Checkpoint
from .inference import DepthEstimator, Prediction
from .odometry import SpeedTrack
from .online import OnlineProcessor, ScaleSettings
from .pointcloud import decimate, depth_to_xyz, make_cloud_array
from .scale import ScaleStatus

if TYPE_CHECKING:  # the navigation and completion stages import this module
    from .completion.stage import CompletionStatus, SparseInput
    from .postprocess.obstacles import LaserScanData, ObstacleCloud

T = TypeVar('T')
OUTPUT_RESOLUTIONS = ('network', 'camera')
CLOUD_FIELDS = ('xyz', 'xyzrgb')


@dataclass(frozen=True)
class PipelineSettings:
    """Per-frame settings (may change between frames; never during one).

    Attributes:
        max_depth_m: deeper pixels become +Inf (REP 117); > 0.
        min_depth_m: shallower pixels become -Inf (0 disables); < max_depth_m.
        output_resolution: "network" (depth at the network input size) or "camera" (resized
            back to the camera image, inverse depth interpolated bilinearly).
        cloud: build the point cloud.
        cloud_fields: "xyz" or "xyzrgb" (colour from the input image).
        cloud_decimation: keep every N-th row and column in the cloud (>= 1).
        flip_pp: average with the mirrored image's prediction (evaluation "pp" mode;
            doubles the network time).
        scale: metric scale source and the odometry estimator's settings.
        adaptation_max_steps_per_frame, adaptation_spike_factor: runtime settings of the
            online adapter (used only when adaptation is enabled).
        min_confidence: cloud points whose confidence (models with one, SID) is below
            this become NaN; in [0, 1], 0 keeps every point.

    Raises:
        ValueError: (at construction) a value outside its range or choices.
    """

    max_depth_m: float = 80.0
    min_depth_m: float = 0.0
    output_resolution: str = 'network'
    cloud: bool = True
    cloud_fields: str = 'xyzrgb'
    cloud_decimation: int = 1
    flip_pp: bool = False
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    adaptation_max_steps_per_frame: float = 2.0
    adaptation_spike_factor: float = 3.0
    min_confidence: float = 0.0

    def __post_init__(self):
        errors = []
        if not 0.0 <= self.min_confidence <= 1.0:
            errors.append(f'min_confidence must be in [0, 1], got {self.min_confidence}')
        if not self.max_depth_m > 0:
            errors.append(f'max_depth_m must be > 0, got {self.max_depth_m}')
        if self.min_depth_m < 0 or (self.min_depth_m > 0 and self.min_depth_m >= self.max_depth_m):
            errors.append(f'min_depth_m must be >= 0 and < max_depth_m ({self.max_depth_m}), got {self.min_depth_m}')
        if self.output_resolution not in OUTPUT_RESOLUTIONS:
            errors.append(f'output_resolution must be one of {OUTPUT_RESOLUTIONS}, got {self.output_resolution!r}')
        if self.cloud_fields not in CLOUD_FIELDS:
            errors.append(f'cloud_fields must be one of {CLOUD_FIELDS}, got {self.cloud_fields!r}')
        if int(self.cloud_decimation) < 1:
            errors.append(f'cloud_decimation must be >= 1, got {self.cloud_decimation}')
        if errors:
            raise ValueError('; '.join(errors))

    def replace(self, **changes) -> 'PipelineSettings':
        """A validated copy with ``changes`` applied (``scale`` may be given as a dict of
        :class:`ScaleSettings` fields to change)."""
        if isinstance(changes.get('scale'), dict):
            changes['scale'] = dataclasses.replace(self.scale, **changes['scale'])
        return dataclasses.replace(self, **changes)


@dataclass
class FrameInput:
    """One camera frame.

    Attributes:
        rgb: (H, W, 3) uint8 RGB at the camera's resolution.
        K: (3, 3) intrinsics at (H, W) (rectified: CameraInfo.P when set), or None (no cloud).
        stamp_ns: capture time, integer nanoseconds (the image header stamp).
        speed_mps: vehicle speed at ``stamp_ns`` if the caller has one (added to the
            pipeline's speed track; odometry can also be added with :meth:`DepthPipeline.add_speed`).
        sparse: the frame's sparse depth input (LiDAR points in the camera's optical frame
            or a sparse depth image, :class:`packnet_ros.completion.stage.SparseInput`) for a
            ``completion`` stage; None = none (ignored without that stage).
    """

    rgb: np.ndarray
    K: np.ndarray | None
    stamp_ns: int
    speed_mps: float | None = None
    sparse: SparseInput | None = None


@dataclass
class FrameState:
    """A frame on its way through the stages (each stage fills its fields)."""

    input: FrameInput
    want_cloud: bool
    prediction: Prediction | None = None
    scale: float = 1.0
    scale_status: ScaleStatus | None = None
    depth: np.ndarray | None = None
    K: np.ndarray | None = None
    rgb: np.ndarray | None = None
    cloud: np.ndarray | None = None
    confidence: np.ndarray | None = None
    timings_ms: dict = field(default_factory=dict)
    scan: LaserScanData | None = None
    obstacles: ObstacleCloud | None = None
    completion: CompletionStatus | None = None
    network_sparse: np.ndarray | None = None
    """(C, h, w) float32 metres at the network input's resolution for a network with a sparse
    branch, filled by the learned ``completion`` stage before ``infer``; None = monocular."""


@dataclass
class FrameOutput:
    """What the pipeline produced for one frame.

    Attributes:
        depth: (h, w) float32 metres along the optical z axis; NaN invalid, +Inf beyond
            ``max_depth_m``, -Inf below ``min_depth_m`` (REP 117).
        K: (3, 3) intrinsics of ``depth``'s resolution (the published CameraInfo), or None.
        rgb: (h, w, 3) uint8 image at ``depth``'s resolution.
        cloud: organized (h', w') structured array (``pointcloud.XYZ_DTYPE`` /
            ``XYZRGB_DTYPE``) in the optical frame, or None when not built.
        scale: the factor applied to the network's depth.
        scale_status: the odometry scale estimator's status (None for model/fixed scale).
        weights_version: version of the weights that ran (online adaptation swaps).
        timings_ms: per stage (``preprocess_ms``, ``inference_ms``, ``scale_ms``,
            ``depth_ms``, ``cloud_ms``, ...) and ``total_ms``.
        scan: planar scan in the vehicle frame (``ScanStage``,
            :class:`packnet_ros.postprocess.obstacles.LaserScanData`), or None when not built.
        obstacles: obstacle points in the vehicle frame (``ObstacleStage``,
            :class:`packnet_ros.postprocess.obstacles.ObstacleCloud`), or None when not built.
        confidence: (h, w) float32 in [0, 1] at ``depth``'s resolution (1 = sure), or None
            when the model gives none (only SID heads do).
        completion: what the ``completion`` stage did (depth from the sparse input or
            monocular, and why; :class:`packnet_ros.completion.stage.CompletionStatus`), or
            None without that stage.
    """

    depth: np.ndarray
    K: np.ndarray | None
    rgb: np.ndarray
    cloud: np.ndarray | None
    scale: float
    scale_status: ScaleStatus | None
    weights_version: int
    timings_ms: dict
    scan: LaserScanData | None = None
    obstacles: ObstacleCloud | None = None
    confidence: np.ndarray | None = None
    completion: CompletionStatus | None = None

    def depth_summary(self) -> dict:
        """``valid_ratio`` (finite pixels / all) and finite depth ``min_m``, ``median_m``,
        ``max_m`` (NaN when no pixel is finite)."""
        finite = self.depth[np.isfinite(self.depth)]
        if not finite.size:
            nan = float('nan')
            return {'valid_ratio': 0.0, 'min_m': nan, 'median_m': nan, 'max_m': nan}
        return {'valid_ratio': float(finite.size / self.depth.size), 'min_m': float(finite.min()),
                'median_m': float(np.median(finite)), 'max_m': float(finite.max())}


def _needs(value: T | None, what: str, stage: str) -> T:
    """``value``, or RuntimeError when an earlier stage that fills it did not run."""
    if value is None:
        raise RuntimeError(f'stage {stage!r} needs {what} (a stage before it must fill it)')
    return value


class Stage(Protocol):
    """One step of the per-frame work: reads and fills fields of a :class:`FrameState`."""

    name: str

    def __call__(self, frame: FrameState, settings: PipelineSettings) -> None: ...


class InferStage:
    """Preprocess and run the depth network (fills ``prediction`` and, for a network with
    confidence, ``confidence`` (h, w) float32 in [0, 1] at the output resolution; timings
    ``preprocess_ms`` and ``inference_ms`` come from the estimator)."""

    name = 'infer'

    def __init__(self, estimator: DepthEstimator):
        self.estimator = estimator

    def __call__(self, frame: FrameState, settings: PipelineSettings) -> None:
        pred = frame.prediction = self.estimator.run(frame.input.rgb, frame.input.K, settings.flip_pp,
                                                     sparse=frame.network_sparse)
        camera = settings.output_resolution == 'camera'
        frame.confidence = self.estimator.confidence_map(pred, pred.rgb.shape[:2] if camera else None)
        frame.timings_ms.update(pred.timings_ms)


class ScaleStage:
    """Metric scale of the frame (model / fixed / odometry) and the adaptation feed."""

    name = 'scale'

    def __init__(self, online: OnlineProcessor, speeds: SpeedTrack):
        self.online = online
        self.speeds = speeds

    def __call__(self, frame: FrameState, settings: PipelineSettings) -> None:
        pred = _needs(frame.prediction, 'the network prediction', self.name)
        frame.scale, frame.scale_status = self.online.scale_for_frame(
            frame.input.stamp_ns, pred.x, pred.K_net, self.speeds, settings.scale)


class DepthStage:
    """Inverse depth -> metric depth at the output resolution with REP 117 marking."""

    name = 'depth'

    def __init__(self, estimator: DepthEstimator):
        self.estimator = estimator

    def __call__(self, frame: FrameState, settings: PipelineSettings) -> None:
        pred = _needs(frame.prediction, 'the network prediction', self.name)
        camera = settings.output_resolution == 'camera'
        frame.depth = self.estimator.to_depth(pred.output, frame.scale, pred.rgb.shape[:2] if camera else None,
                                              max_depth=settings.max_depth_m, min_depth=settings.min_depth_m,
                                              kind=pred.kind)
        frame.K, frame.rgb = (pred.K, pred.rgb) if camera else (pred.K_net, pred.small)


class CloudStage:
    """Organized point cloud of the depth (skipped when not wanted or without intrinsics)."""

    name = 'cloud'

    def __call__(self, frame: FrameState, settings: PipelineSettings) -> None:
        if not frame.want_cloud or frame.K is None:
            return
        step = int(settings.cloud_decimation)
        depth = _needs(frame.depth, 'depth', self.name)
        if settings.min_confidence > 0 and frame.confidence is not None \
                and frame.confidence.shape == depth.shape:
            depth = np.where(frame.confidence >= settings.min_confidence, depth, np.float32(np.nan))
        d, Kc = decimate(depth, frame.K, step)
        colours = _needs(frame.rgb, 'the image', self.name)[::step, ::step] if settings.cloud_fields == 'xyzrgb' \
            else None
        frame.cloud = make_cloud_array(depth_to_xyz(d, Kc), colours)


class DepthPipeline:
    """The per-frame work of ``packnet_node`` (module docstring), without ROS.

    Args:
        estimator: the depth network on its device and precision.
        checkpoint: the loaded checkpoint (PoseNet for odometry scale / adaptation), or None.
        settings: initial :class:`PipelineSettings`.
        adaptation: enables online self-supervised adaptation in a background thread.

    Thread safety: :meth:`process` runs one frame at a time (the caller's camera thread);
    :meth:`add_speed` may be called from another thread (the speed track is locked);
    :meth:`update_settings` replaces the settings atomically (the next frame sees them).

    Raises:
        ValueError: odometry scale or adaptation asked for without PoseNet weights.
    """

    def __init__(self, estimator: DepthEstimator, checkpoint: Checkpoint | None = None,
                 settings: PipelineSettings | None = None, adaptation: AdaptationConfig | None = None):
        self.estimator = estimator
        self._settings = settings or PipelineSettings()
        self.speeds = SpeedTrack()
        self.online = OnlineProcessor(estimator, checkpoint, self._settings.scale, adaptation)
        self.stages: list[Stage] = [InferStage(estimator), ScaleStage(self.online, self.speeds),
                                    DepthStage(estimator), CloudStage()]

    # -- settings -------------------------------------------------------------------------
    @property
    def settings(self) -> PipelineSettings:
        """The settings the next frame will use."""
        return self._settings

    def update_settings(self, settings: PipelineSettings) -> None:
        """Replace the settings (validated at their construction) for the next frame.

        Raises:
            ValueError: a change of the scale source (it decides which networks are loaded:
                build a new pipeline instead).
        """
        if settings.scale.source != self._settings.scale.source:
            raise ValueError('the scale source cannot change at runtime (restart with the new scale_source)')
        self.online.configure(settings.scale, settings.adaptation_max_steps_per_frame,
                              settings.adaptation_spike_factor)
        self._settings = settings

    def insert_stage(self, stage: Stage, after: str) -> None:
        """Add a stage after the stage named ``after`` (e.g. a refinement after "depth").

        Raises:
            KeyError: no stage has that name.
        """
        names = [s.name for s in self.stages]
        if after not in names:
            raise KeyError(f'no stage {after!r} (stages: {names})')
        self.stages.insert(names.index(after) + 1, stage)

    # -- inputs ---------------------------------------------------------------------------
    def add_speed(self, stamp_ns: int, speed_mps: float) -> None:
        """Add an odometry speed sample (m/s at ``stamp_ns``); thread-safe."""
        self.speeds.add(stamp_ns, speed_mps)

    # -- the work -------------------------------------------------------------------------
    def process(self, frame: FrameInput, cloud: bool | None = None) -> FrameOutput:
        """Run every stage on one frame.

        Args:
            frame: the camera frame.
            cloud: build the point cloud (default: ``settings.cloud``).

        Returns:
            :class:`FrameOutput`.

        Raises:
            ValueError: ``frame.rgb`` is not (H, W, 3).
        """
        settings = self._settings  # one consistent set for the whole frame
        t0 = time.perf_counter()
        if frame.speed_mps is not None:
            self.speeds.add(frame.stamp_ns, frame.speed_mps)
        self.online.begin_frame()
        state = FrameState(frame, want_cloud=settings.cloud if cloud is None else bool(cloud))
        for stage in self.stages:
            t = time.perf_counter()
            stage(state, settings)
            if stage.name != 'infer':  # the estimator splits its own time into pre/inference
                state.timings_ms[f'{stage.name}_ms'] = 1e3 * (time.perf_counter() - t)
        state.timings_ms['total_ms'] = 1e3 * (time.perf_counter() - t0)
        return FrameOutput(_needs(state.depth, 'depth', 'output'), state.K, _needs(state.rgb, 'the image', 'output'),
                           state.cloud, state.scale, state.scale_status,
                           self.online.weights_version, state.timings_ms, state.scan, state.obstacles,
                           state.confidence, state.completion)

    def stop(self) -> None:
        """Stop background work (the adaptation worker)."""
        self.online.stop()


def pipeline_from_weights(checkpoint: Checkpoint, settings: PipelineSettings | None = None,
                          device: str = 'auto', precision: str = 'auto', backend: str = 'auto',
                          input_shape: tuple[int, int] | None = None,
                          adaptation: AdaptationConfig | None = None) -> DepthPipeline:
    """Build the pipeline for loaded weights (see :func:`packnet_ros.weights.resolve_weights`).

    Args:
        checkpoint: networks and spec.
        settings: per-frame settings (default :class:`PipelineSettings`).
        device, precision, backend, input_shape: see :class:`packnet_ros.inference.DepthEstimator`.
        adaptation: enable online adaptation.

    Raises:
        ValueError: bad device / precision / backend / input shape, or see :class:`DepthPipeline`.
    """
    settings = settings or PipelineSettings()
    estimator = DepthEstimator.from_loaded(checkpoint, device=device, precision=precision, backend=backend,
                                           max_depth=settings.max_depth_m, min_depth=settings.min_depth_m,
                                           input_shape=input_shape)
    return DepthPipeline(estimator, checkpoint, settings, adaptation)


__all__ = ['CLOUD_FIELDS', 'OUTPUT_RESOLUTIONS', 'CloudStage', 'DepthPipeline', 'DepthStage', 'FrameInput',
           'FrameOutput', 'FrameState', 'InferStage', 'PipelineSettings', 'ScaleStage', 'Stage',
           'pipeline_from_weights']
