"""Metric scale from odometry: PoseNet's translation against the distance the vehicle drove.

A scale-ambiguous model (trained without velocity supervision) predicts depth and
ego-motion up to one common unknown factor. Between two frames at t0 < t1 the vehicle
drove d = integral of the odometry speed ~= (v(t0) + v(t1)) / 2 * (t1 - t0) metres, while
PoseNet says ||t||; s = d / ||t|| makes the depth metric (PackNet paper Sec. 3.4 uses the
same relation as a training loss). A robust running estimate keeps the median of recent
accepted samples (in log space) and rejects samples that cannot be trusted:

* time runs backwards or the frame gap is too long (dropped frames, bag loop);
* odometry is missing or stale around the frames (no sample within ``max_odom_gap_s``);
* the vehicle is (nearly) stationary: d is tiny and PoseNet's noise dominates;
* PoseNet predicts (almost) no motion;
* the sample is an outlier: |log s - median| > ``outlier_k`` robust standard deviations.

Rejected samples never change the estimate: the last good scale is held, and the
status says why.
"""
from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from dataclasses import dataclass

from .odometry import SpeedTrack


@dataclass
class ScaleStatus:
    """State of the estimate after a sample.

    Attributes:
        scale: factor to multiply the network's depth by (initial value until valid).
        valid: at least one sample has been accepted.
        updated: this sample was accepted.
        samples: accepted samples in the window.
        spread: robust relative spread of the window (1.4826 MAD of log s, ~ relative std); 0 if < 2.
        status: "ok" or why the sample was rejected.
    """

    scale: float
    valid: bool
    updated: bool
    samples: int
    spread: float
    status: str


class OdometryScaleEstimator:
    """Robust running metric-scale estimate (see module docstring).

    Args:
        window: accepted samples kept (median over them).
        min_speed: m/s; slower samples count as stationary.
        max_odom_gap_s: odometry must exist within this time of both frames.
        max_frame_dt_s: longer frame intervals are rejected (dropped frames).
        outlier_k: rejection threshold in robust standard deviations of log s.
        min_spread: floor of the robust std of log s used for rejection (relative).
        min_samples_for_outliers: below this many samples nothing is rejected as outlier.
        initial_scale: value reported until the first accepted sample.
    """

    _logs: deque  # log s of the accepted samples in the window, oldest first
    _last_t1: int | None  # later stamp of the last accepted pair (frame chain)
    status: ScaleStatus

    def __init__(self, window: int = 50, min_speed: float = 1.0, max_odom_gap_s: float = 0.2,
                 max_frame_dt_s: float = 0.5, outlier_k: float = 3.5, min_spread: float = 0.05,
                 min_samples_for_outliers: int = 5, initial_scale: float = 1.0):
        _check_settings(window, min_speed, max_odom_gap_s, max_frame_dt_s, outlier_k)
        self._lock = threading.RLock()  # configure() may run on another thread than add_sample()
        self.window = int(window)
        self.min_speed = float(min_speed)
        self.max_odom_gap_ns = int(max_odom_gap_s * 1e9)
        self.max_frame_dt_ns = int(max_frame_dt_s * 1e9)
        self.outlier_k = float(outlier_k)
        self.min_spread = math.log1p(min_spread)
        self.min_samples_for_outliers = min_samples_for_outliers
        self.initial_scale = initial_scale
        self.reset()

    def configure(self, *, window: int | None = None, min_speed: float | None = None,
                  max_odom_gap_s: float | None = None, max_frame_dt_s: float | None = None,
                  outlier_k: float | None = None) -> ScaleStatus:
        """Change settings at runtime (None = unchanged); the next sample uses them.

        Shrinking ``window`` keeps the newest accepted samples (up to the new window), and
        the estimate becomes their median at once; growing it keeps every sample. The
        frame chain (the last accepted stamp) is kept. Thread-safe against
        :meth:`add_sample` on another thread.

        Args:
            window: accepted samples kept (>= 1).
            min_speed: m/s; slower samples count as stationary (>= 0).
            max_odom_gap_s: s; odometry must exist within this time of both frames (> 0).
            max_frame_dt_s: s; longer frame intervals are rejected (> 0).
            outlier_k: rejection threshold in robust standard deviations of log s (> 0).

        Returns:
            The status after the change (``updated`` False; scale, samples and spread of the
            kept window).

        Raises:
            ValueError: a value out of range; nothing is changed then.
        """
        with self._lock:
            new = dict(window=self.window if window is None else window,
                       min_speed=self.min_speed if min_speed is None else min_speed,
                       max_odom_gap_s=self.max_odom_gap_ns / 1e9 if max_odom_gap_s is None else max_odom_gap_s,
                       max_frame_dt_s=self.max_frame_dt_ns / 1e9 if max_frame_dt_s is None else max_frame_dt_s,
                       outlier_k=self.outlier_k if outlier_k is None else outlier_k)
            _check_settings(**new)
            if max_odom_gap_s is not None:
                self.max_odom_gap_ns = int(max_odom_gap_s * 1e9)
            if max_frame_dt_s is not None:
                self.max_frame_dt_ns = int(max_frame_dt_s * 1e9)
            self.min_speed = float(new['min_speed'])
            self.outlier_k = float(new['outlier_k'])
            if int(new['window']) != self.window:
                self.window = int(new['window'])
                self._logs = deque(self._logs, maxlen=self.window)  # keeps the newest (right) end
                s = self.status
                if self._logs:
                    spread = _robust_std(self._logs) if len(self._logs) > 1 else 0.0
                    self.status = ScaleStatus(math.exp(statistics.median(self._logs)), s.valid, False, len(self._logs),
                                              spread, s.status)
            return self.status

    def reset(self) -> None:
        """Forget every sample (e.g. after a checkpoint or camera change)."""
        with self._lock:
            self._logs = deque(maxlen=self.window)
            self._last_t1 = None
            self.status = ScaleStatus(self.initial_scale, False, False, 0, 0.0, 'no sample yet')

    @property
    def scale(self) -> float:
        return self.status.scale

    def restart(self, reason: str = 'time ran backwards: frame chain restarted') -> ScaleStatus:
        """Keep the accepted samples but accept pairs that are older than the last one
        again (a bag loop, a clock reset); this frame does not update the estimate."""
        with self._lock:
            self._last_t1 = None
            return self._reject(reason)

    def hold(self, reason: str) -> ScaleStatus:
        """Keep the estimate unchanged and record why (no sample, or a rejected one)."""
        return self._reject(reason)

    def _reject(self, reason: str) -> ScaleStatus:
        with self._lock:
            s = self.status
            self.status = ScaleStatus(s.scale, s.valid, False, s.samples, s.spread, reason)
            return self.status

    def add_sample(self, t0_ns: int, t1_ns: int, predicted_norm: float, speeds: SpeedTrack) -> ScaleStatus:
        """Offer one frame pair.

        Args:
            t0_ns, t1_ns: stamps of the earlier and later frame (ns).
            predicted_norm: PoseNet's translation norm between them, in the network's unit.
            speeds: odometry speed track (m/s by stamp).

        Returns:
            The :class:`ScaleStatus` after this sample (accepted or not).
        """
        with self._lock:
            return self._add_sample(t0_ns, t1_ns, predicted_norm, speeds)

    def _add_sample(self, t0_ns: int, t1_ns: int, predicted_norm: float, speeds: SpeedTrack) -> ScaleStatus:
        dt_ns = t1_ns - t0_ns
        if dt_ns <= 0 or (self._last_t1 is not None and t1_ns <= self._last_t1):
            return self._reject('time ran backwards')
        if dt_ns > self.max_frame_dt_ns:
            return self._reject(f'frame gap {dt_ns / 1e9:.2f} s too long')
        latest = speeds.latest_stamp_ns
        if latest is None:
            return self._reject('no odometry')
        v0 = speeds.speed_at(t0_ns, self.max_odom_gap_ns)
        v1 = speeds.speed_at(t1_ns, self.max_odom_gap_ns)
        if v0 is None or v1 is None:
            age = (t1_ns - latest) / 1e9
            return self._reject(f'odometry stale ({age:.2f} s old)' if age > 0 else 'odometry missing around the frames')
        if min(v0, v1) < self.min_speed:
            return self._reject(f'stationary ({min(v0, v1):.2f} m/s)')
        if not math.isfinite(predicted_norm) or predicted_norm < 1e-4:
            return self._reject('no predicted motion')
        driven = 0.5 * (v0 + v1) * dt_ns / 1e9
        log_s = math.log(driven / predicted_norm)
        if len(self._logs) >= self.min_samples_for_outliers:
            med, sigma = statistics.median(self._logs), _robust_std(self._logs)
            if abs(log_s - med) > self.outlier_k * max(sigma, self.min_spread):
                return self._reject(f'outlier (scale {math.exp(log_s):.3f} vs {math.exp(med):.3f})')
        self._logs.append(log_s)
        self._last_t1 = t1_ns
        spread = _robust_std(self._logs) if len(self._logs) > 1 else 0.0
        self.status = ScaleStatus(math.exp(statistics.median(self._logs)), True, True, len(self._logs), spread, 'ok')
        return self.status


def _check_settings(window, min_speed, max_odom_gap_s, max_frame_dt_s, outlier_k) -> None:
    if not (window >= 1 and min_speed >= 0 and max_odom_gap_s > 0 and max_frame_dt_s > 0 and outlier_k > 0):
        raise ValueError(f'window >= 1, min_speed >= 0, max_odom_gap_s > 0, max_frame_dt_s > 0, outlier_k > 0 '
                         f'required, got window={window!r}, min_speed={min_speed!r}, '
                         f'max_odom_gap_s={max_odom_gap_s!r}, max_frame_dt_s={max_frame_dt_s!r}, '
                         f'outlier_k={outlier_k!r}')


def _robust_std(values) -> float:
    med = statistics.median(values)
    return 1.4826 * statistics.median([abs(x - med) for x in values])
