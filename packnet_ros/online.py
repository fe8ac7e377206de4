"""Per-frame online processing shared by the node: metric scale from odometry and the
adaptation feed (no ROS imports; the node passes stamps, tensors and its speed track).

Scale from odometry: with the last three network inputs (t-2, t-1, t) PoseNet runs as it
was trained (target t-1, contexts [t-2, t]); the translation to frame t and the distance
driven between t-1 and t form one sample of :class:`OdometryScaleEstimator`. The scale of
the current frame's depth is the estimate after that sample.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from .adaptation import AdaptationConfig, OnlineAdapter
from .checkpoint import Checkpoint
from .geometry import pose_vec_to_mat
from .inference import DepthEstimator
from .networks.fast import prepare_for_inference
from .odometry import SpeedTrack
from .scale import OdometryScaleEstimator, ScaleStatus

SCALE_SOURCES = ('model', 'fixed', 'odometry')


@dataclass
class ScaleSettings:
    """How the published depth gets its metric scale."""

    source: str = 'model'
    fixed_scale: float = 1.0
    window: int = 50
    min_speed_mps: float = 1.0
    max_odom_gap_s: float = 0.2
    max_frame_gap_s: float = 0.5
    outlier_k: float = 3.5


class OnlineProcessor:
    """Scale and adaptation state of a running node.

    Args:
        estimator: the node's depth estimator (its network is swapped after adaptation steps).
        checkpoint: the loaded checkpoint (PoseNet weights for odometry scale / adaptation).
        scale: :class:`ScaleSettings`.
        adaptation: :class:`AdaptationConfig` to enable online adaptation, else None.

    Raises:
        ValueError: odometry scale or adaptation requested but the checkpoint has no PoseNet.
    """

    def __init__(self, estimator: DepthEstimator, checkpoint: Checkpoint | None, scale: ScaleSettings,
                 adaptation: AdaptationConfig | None = None):
        if scale.source not in SCALE_SOURCES:
            raise ValueError(f'scale_source must be one of {SCALE_SOURCES}, got {scale.source!r}')
        self.estimator = estimator
        self.settings = scale
        pose = checkpoint.pose_net if checkpoint is not None else None
        if scale.source == 'odometry' and pose is None:
            raise ValueError('scale_source odometry needs PoseNet weights, and this checkpoint has none '
                             '(use a checkpoint trained with PoseNet, or scale_source model/fixed)')
        self.pose_net = prepare_for_inference(pose, estimator.device, estimator.dtype, 'eager') if pose else None
        self.scale = OdometryScaleEstimator(scale.window, scale.min_speed_mps, scale.max_odom_gap_s,
                                            scale.max_frame_gap_s, scale.outlier_k)
        self._frames: deque = deque(maxlen=3)
        self._pending: tuple | None = None
        self._pending_lock = threading.Lock()
        self.weights_version = 0
        self.adapter: OnlineAdapter | None = None
        if adaptation is not None:
            if pose is None:
                raise ValueError('adaptation needs PoseNet weights, and this checkpoint has none')
            if getattr(estimator, 'output_kind', 'inv_depth') != 'inv_depth':
                raise ValueError(f'online adaptation trains an inverse-depth (PackNet) network with the '
                                 f'self-supervised loss; {estimator.label} outputs depth: disable adaptation')
            dev, dtype = estimator.device, estimator.dtype
            autocast = dtype if dtype != torch.float32 else None
            # the worker builds each swapped module (backend openvino: export + compile, no disk cache)
            self.adapter = OnlineAdapter(estimator.source_net, pose, estimator.spec, adaptation,
                                         lambda net: estimator.prepare(net, cache=False),
                                         self._receive, dev, autocast)
            self.adapter.start()

    def _receive(self, module: torch.nn.Module, version: int) -> None:
        with self._pending_lock:
            self._pending = (module, version)

    def begin_frame(self) -> None:
        """Swap in adapted weights, if any arrived, before a frame starts (atomic)."""
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.estimator.swap_network(pending[0])
            self.weights_version = pending[1]

    def configure(self, scale: ScaleSettings, max_steps_per_frame: float | None = None,
                  spike_factor: float | None = None) -> None:
        """Apply runtime settings from the next frame on: the fixed scale, the odometry
        estimator's window and rejection thresholds, and the adapter's step budget and
        rollback threshold (None = unchanged). The scale source itself cannot change.

        Raises:
            ValueError: a different scale source, or values the estimator rejects.
        """
        if scale.source != self.settings.source:
            raise ValueError(f'scale source {self.settings.source!r} cannot change at runtime')
        self.scale.configure(window=scale.window, min_speed=scale.min_speed_mps,
                             max_odom_gap_s=scale.max_odom_gap_s, max_frame_dt_s=scale.max_frame_gap_s,
                             outlier_k=scale.outlier_k)
        if self.adapter is not None:
            self.adapter.configure(max_steps_per_frame=max_steps_per_frame, spike_factor=spike_factor)
        self.settings = scale

    def scale_for_frame(self, stamp_ns: int, x: torch.Tensor, K_net: np.ndarray | None,
                        speeds: SpeedTrack, settings: ScaleSettings | None = None
                        ) -> tuple[float, ScaleStatus | None]:
        """Scale factor for the frame just inferred (and feed the adapter).

        Args:
            stamp_ns: the frame's stamp.
            x: its network input (1, 3, h, w) on the device.
            K_net: intrinsics at the network resolution (for adaptation).
            speeds: odometry speed track.
            settings: this frame's scale settings (default: the configured ones).

        Returns:
            (scale, odometry status or None when the source is not odometry).
        """
        settings = settings or self.settings
        if self.adapter is not None and K_net is not None:
            self.adapter.add_frame(stamp_ns, x, K_net, speeds.speed_at(stamp_ns, int(settings.max_odom_gap_s * 1e9)))
        if settings.source == 'fixed':
            return float(settings.fixed_scale), None
        if settings.source == 'model':
            return 1.0, None
        restarted = bool(self._frames) and stamp_ns <= self._frames[-1][0]
        if restarted:  # time ran backwards (bag loop, clock reset): start a new frame chain
            self._frames.clear()
            self.scale.restart()
        self._frames.append((stamp_ns, x))
        status = self.scale.status
        if len(self._frames) == 3 and self.pose_net is not None:
            (t0, x0), (t1, x1), (t2, x2) = self._frames
            with torch.inference_mode():
                vec = self.pose_net(x1.to(self.pose_net_dtype), [x0.to(self.pose_net_dtype), x2.to(self.pose_net_dtype)])
                T = pose_vec_to_mat(vec[:, 1].float())  # T_{t2 <- t1}
            status = self.scale.add_sample(t1, t2, float(T[0, :3, 3].norm()), speeds)
        elif self.scale.status.samples == 0:
            status = self.scale.hold('waiting for 3 consecutive frames')
        return (self.scale.scale if self.scale.status.valid else 1.0), status

    @property
    def pose_net_dtype(self) -> torch.dtype:
        return self.estimator.dtype

    def stop(self) -> None:
        if self.adapter is not None:
            self.adapter.stop()
