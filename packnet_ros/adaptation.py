"""Online self-supervised adaptation: keep training depth and pose networks on the live stream.

The node feeds every processed frame (network-resolution image, intrinsics, speed) to an
:class:`OnlineAdapter`. It keeps a ring buffer of (previous, current, next) frame triplets
and, in a background thread, takes gradient steps of the same PackNet-SfM objective used
in training (photometric + smoothness, + velocity when the frames carry speed) on its own
float32 copies of the networks. Inference never waits for training:

* the worker builds a complete new inference module from the adapted weights and hands it
  over; the node swaps its reference between frames (an atomic attribute assignment);
* the worker runs with few CPU threads and a raised nice value, so it yields the CPU to
  inference (``threads``, ``nice``);
* a non-finite loss, or one above ``spike_factor`` x the median of recent good losses,
  restores the last good weights and optimizer state (a rollback) instead of stepping.

Adapted weights can be saved as a project checkpoint and reset to the starting weights.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .checkpoint import ModelSpec, save_checkpoint
from .geometry import pose_vec_to_mat
from .losses import SfmLossConfig, sfm_loss


@dataclass
class AdaptationConfig:
    """Settings of :class:`OnlineAdapter` (node parameters ``adaptation.*``)."""

    lr: float = 2e-5
    pose_lr: float = 2e-5
    buffer_size: int = 64
    batch_size: int = 1
    min_triplets: int = 2
    max_steps_per_frame: float = 2.0  # steps allowed per received frame (0 = no limit)
    spike_factor: float = 3.0
    swap_every: int = 1  # hand over new weights every N good steps
    threads: int = 1
    nice: int = 10
    max_frame_gap_s: float = 0.5  # triplets spanning a longer gap are not formed
    loss: SfmLossConfig = field(default_factory=SfmLossConfig)


@dataclass
class _Frame:
    stamp_ns: int
    image: torch.Tensor  # (3, h, w) float32 CPU, [0, 1]
    K: torch.Tensor  # (3, 3) float32 at (h, w)
    speed: float | None


@dataclass
class AdaptationStats:
    """Counters for DepthStats / diagnostics."""

    steps: int = 0
    rollbacks: int = 0
    last_loss: float = 0.0
    step_ms: float = 0.0
    weights_version: int = 0
    triplets: int = 0
    last_error: str = ''


class OnlineAdapter:
    """Background fine-tuning of depth + pose networks (see module docstring).

    Args:
        depth_net, pose_net: starting networks (copied; the caller's modules are untouched).
        spec: what the depth network is (for saving).
        cfg: :class:`AdaptationConfig`.
        make_inference: builds an inference module from a float32 depth network (e.g.
            ``lambda net: prepare_for_inference(net, device, dtype, backend)``).
        on_weights: called from the worker with (inference module, version) after each
            ``swap_every`` good steps; the node stores it and swaps between frames.
        device: where training runs.
        autocast_dtype: bf16 on CPUs with native bf16, fp16/bf16 on CUDA, None for fp32.

    Raises:
        ValueError: no pose network (the photometric loss needs ego-motion).
    """

    def __init__(self, depth_net: nn.Module, pose_net: nn.Module | None, spec: ModelSpec, cfg: AdaptationConfig,
                 make_inference: Callable[[nn.Module], nn.Module], on_weights: Callable[[nn.Module, int], None],
                 device: torch.device = torch.device('cpu'), autocast_dtype: torch.dtype | None = None):
        if pose_net is None:
            raise ValueError('online adaptation needs PoseNet weights; this checkpoint has none')
        self.cfg = cfg
        self.spec = spec
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.depth = copy.deepcopy(depth_net).float().to(device).train()
        self.pose = copy.deepcopy(pose_net).float().to(device).train()
        for p in list(self.depth.parameters()) + list(self.pose.parameters()):
            p.requires_grad_(True)
        self.optimizer = torch.optim.Adam([{'params': self.depth.parameters(), 'lr': cfg.lr},
                                           {'params': self.pose.parameters(), 'lr': cfg.pose_lr}])
        self._initial = self._snapshot()
        self._good = self._initial
        self.make_inference = make_inference
        self.on_weights = on_weights
        self.stats = AdaptationStats()
        self._frames: deque[_Frame] = deque(maxlen=2)
        self._triplets: deque = deque(maxlen=cfg.buffer_size)
        self._good_losses: deque = deque(maxlen=20)
        self._lock = threading.Lock()  # frame buffers and budget
        self._step_lock = threading.Lock()  # one of: a gradient step, reset, save
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._budget = 0.0
        self._rng = random.Random(0)

    # -- data ------------------------------------------------------------------------
    def add_frame(self, stamp_ns: int, image: torch.Tensor, K, speed: float | None) -> None:
        """Offer a processed frame (image (1|_, 3, h, w) in [0, 1] at the network size, K at that size)."""
        frame = _Frame(int(stamp_ns), image.detach().reshape(3, *image.shape[-2:]).float().cpu().clone(),
                       torch.as_tensor(K, dtype=torch.float32).reshape(3, 3), speed)
        with self._lock:
            prev = list(self._frames)
            if prev and frame.stamp_ns <= prev[-1].stamp_ns:  # time ran backwards (bag loop): restart the chain
                self._frames.clear()
                prev = []
            if len(prev) == 2:
                a, b = prev
                gap = self.cfg.max_frame_gap_s * 1e9
                if b.stamp_ns - a.stamp_ns <= gap and frame.stamp_ns - b.stamp_ns <= gap:
                    self._triplets.append((a, b, frame))
                    self.stats.triplets = len(self._triplets)
            self._frames.append(frame)
            if self.cfg.max_steps_per_frame > 0:
                self._budget = min(self._budget + self.cfg.max_steps_per_frame, 4 * self.cfg.max_steps_per_frame)
        self._wake.set()

    def configure(self, *, max_steps_per_frame: float | None = None, spike_factor: float | None = None) -> None:
        """Change the runtime settings (None = unchanged); thread-safe, the worker's next
        step and the next :meth:`add_frame` use them.

        Args:
            max_steps_per_frame: gradient steps allowed per received frame (>= 0; 0 = no
                limit). The unused budget is capped at 4x the new value at once, so a lower
                rate also applies to steps already earned.
            spike_factor: a loss above this x the median of recent good losses rolls back (> 1).

        Raises:
            ValueError: a value out of range; nothing is changed then.
        """
        if max_steps_per_frame is not None and not (math.isfinite(max_steps_per_frame) and max_steps_per_frame >= 0):
            raise ValueError(f'max_steps_per_frame must be >= 0, got {max_steps_per_frame!r}')
        if spike_factor is not None and not (math.isfinite(spike_factor) and spike_factor > 1):
            raise ValueError(f'spike_factor must be > 1, got {spike_factor!r}')
        with self._lock:  # add_frame / _can_step / the budget read cfg under this lock
            # a new config object replaces the old one in one assignment: a step reading
            # self.cfg sees the old or the new values, never a mix
            self.cfg = dataclasses.replace(
                self.cfg,
                max_steps_per_frame=self.cfg.max_steps_per_frame if max_steps_per_frame is None
                else float(max_steps_per_frame),
                spike_factor=self.cfg.spike_factor if spike_factor is None else float(spike_factor))
            if self.cfg.max_steps_per_frame > 0:
                self._budget = min(self._budget, 4 * self.cfg.max_steps_per_frame)

    # -- worker ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name='packnet_adaptation', daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        torch.set_num_threads(max(1, int(self.cfg.threads)))  # per-thread in PyTorch (OpenMP)
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), int(self.cfg.nice))
        except (OSError, AttributeError):
            pass
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while not self._stop.is_set() and self._can_step():
                try:
                    self.step()
                except Exception as exc:  # noqa: BLE001 - keep adapting; report the error
                    self.stats.last_error = f'{type(exc).__name__}: {exc}'
                    self._rollback()

    def _can_step(self) -> bool:
        with self._lock:
            enough = len(self._triplets) >= self.cfg.min_triplets
            budget = self.cfg.max_steps_per_frame <= 0 or self._budget >= 1.0
        return enough and budget

    def step(self) -> float:
        """One gradient step on a random batch of buffered triplets; returns the loss
        (NaN if it was rejected and rolled back)."""
        with self._step_lock:
            return self._step()

    def _step(self) -> float:
        t0 = time.perf_counter()
        with self._lock:
            batch = self._rng.sample(list(self._triplets), min(self.cfg.batch_size, len(self._triplets)))
            if self.cfg.max_steps_per_frame > 0:
                self._budget -= 1.0
        prev = torch.stack([t[0].image for t in batch]).to(self.device)
        cur = torch.stack([t[1].image for t in batch]).to(self.device)
        nxt = torch.stack([t[2].image for t in batch]).to(self.device)
        K = torch.stack([t[1].K for t in batch]).to(self.device)
        expected = torch.tensor([[_driven(t[0], t[1]), _driven(t[1], t[2])] for t in batch],
                                dtype=torch.float32, device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        ctx = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype \
            else contextlib.nullcontext()
        with ctx:
            inv = self.depth(cur)
            vec = self.pose(cur, [prev, nxt])
        poses = [pose_vec_to_mat(vec[:, i].float()) for i in range(vec.shape[1])]
        exp = None if torch.isnan(expected).all() else expected
        out = sfm_loss(cur, [prev, nxt], inv if isinstance(inv, list) else [inv], poses, K, exp, self.cfg.loss)
        loss = out['loss']
        value = float(loss.detach())
        spike = self._good_losses and value > self.cfg.spike_factor * statistics.median(self._good_losses)
        if not torch.isfinite(loss) or spike:
            self.stats.last_error = 'non-finite loss' if not torch.isfinite(loss) else \
                f'loss spike {value:.4f} > {self.cfg.spike_factor} x median {statistics.median(self._good_losses):.4f}'
            self._rollback()
            self.stats.last_loss = value
            return float('nan')
        loss.backward()
        grads_ok = all(torch.isfinite(p.grad).all() for p in self._params() if p.grad is not None)
        if not grads_ok:
            self.stats.last_error = 'non-finite gradient'
            self._rollback()
            return float('nan')
        self.optimizer.step()
        self._good_losses.append(value)
        self._good = self._snapshot()
        self.stats.steps += 1
        self.stats.last_loss = value
        self.stats.step_ms = 1e3 * (time.perf_counter() - t0)
        if self.stats.steps % max(1, self.cfg.swap_every) == 0:
            self._publish()
        return value

    # -- weights ---------------------------------------------------------------------
    def _params(self):
        return list(self.depth.parameters()) + list(self.pose.parameters())

    def _snapshot(self) -> dict:
        return {'depth': copy.deepcopy(self.depth.state_dict()), 'pose': copy.deepcopy(self.pose.state_dict()),
                'optim': copy.deepcopy(self.optimizer.state_dict())}

    def _restore(self, snap: dict) -> None:
        self.depth.load_state_dict(snap['depth'])
        self.pose.load_state_dict(snap['pose'])
        self.optimizer.load_state_dict(snap['optim'])

    def _rollback(self) -> None:
        self._restore(self._good)
        self.optimizer.zero_grad(set_to_none=True)
        self.stats.rollbacks += 1

    def _publish(self) -> None:
        net = copy.deepcopy(self.depth).eval()
        module = self.make_inference(net)
        self.stats.weights_version += 1
        self.on_weights(module, self.stats.weights_version)

    def reset(self) -> None:
        """Back to the starting weights (also handed over to inference) and an empty history."""
        with self._step_lock:
            self._restore(self._initial)
            self._good = self._initial
            self._good_losses.clear()
            self.stats.steps = 0
            self._publish()

    def save(self, path: str, metadata: dict | None = None) -> str:
        """Write the adapted depth + pose networks as a project checkpoint."""
        meta = {'summary': f'online adaptation: {self.stats.steps} steps, {self.stats.rollbacks} rollbacks',
                'adaptation': {'steps': self.stats.steps, 'rollbacks': self.stats.rollbacks,
                               'last_loss': self.stats.last_loss}, **(metadata or {})}
        with self._step_lock:  # the last good weights, consistent (no step in progress)
            return str(save_checkpoint(path, self.depth, self.spec, self.pose, metadata=meta))


def _driven(a: _Frame, b: _Frame) -> float:
    """Distance driven between two frames from their speeds (trapezoid), NaN if unknown."""
    if a.speed is None or b.speed is None:
        return float('nan')
    return 0.5 * (a.speed + b.speed) * (b.stamp_ns - a.stamp_ns) / 1e9


