"""Odometry scale estimator on synthetic pose/speed streams (issue 6)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from packnet_ros.odometry import SpeedTrack
from packnet_ros.scale import OdometryScaleEstimator

DT = 100_000_000  # 10 Hz camera
TRUE_SCALE = 2.5  # network units * 2.5 = metres


def _track(speed_fn, t_end_s=20.0, rate_hz=50.0):
    tr = SpeedTrack()
    for k in range(int(t_end_s * rate_hz) + 1):
        t = k / rate_hz
        tr.add(int(t * 1e9), speed_fn(t))
    return tr


def _feed(est, track, frames, speed_fn, noise=0.0, outlier_every=0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(1, frames):
        t0, t1 = (k - 1) * DT, k * DT
        driven = 0.5 * (speed_fn(t0 / 1e9) + speed_fn(t1 / 1e9)) * 0.1
        pred = driven / TRUE_SCALE * (1 + noise * rng.standard_normal())
        if outlier_every and k % outlier_every == 0:
            pred *= 3.0
        out.append(est.add_sample(t0, t1, pred, track))
    return out


def test_converges_to_the_true_scale_and_reports_it():
    speed = lambda t: 10.0 + 2.0 * math.sin(t)  # noqa: E731 - varying speed, trapezoid matters
    est = OdometryScaleEstimator(window=30)
    assert not est.status.valid and est.scale == 1.0
    statuses = _feed(est, _track(speed), 60, speed, noise=0.02)
    s = statuses[-1]
    assert s.valid and s.updated and s.status == 'ok' and s.samples == 30
    assert s.scale == pytest.approx(TRUE_SCALE, rel=0.01)
    assert 0.005 < s.spread < 0.05  # ~2 % noise -> ~2 % robust spread


def test_outliers_are_rejected():
    speed = lambda t: 12.0  # noqa: E731
    est = OdometryScaleEstimator(window=50)
    statuses = _feed(est, _track(speed), 100, speed, noise=0.01, outlier_every=5)
    rejected = [s for s in statuses if not s.updated]
    assert len(rejected) >= 15 and all(s.status.startswith('outlier') for s in rejected)
    assert statuses[-1].scale == pytest.approx(TRUE_SCALE, rel=0.01)


def test_stationary_vehicle_holds_the_last_good_scale():
    speed = lambda t: 8.0 if t < 3.0 else 0.1  # noqa: E731 - stops at t = 3 s
    est = OdometryScaleEstimator()
    statuses = _feed(est, _track(speed), 60, speed)
    moving = [s for s in statuses if s.updated]
    stopped = statuses[-1]
    assert moving and not stopped.updated and stopped.status.startswith('stationary')
    assert stopped.scale == pytest.approx(TRUE_SCALE, rel=1e-6) and stopped.valid


def test_stale_or_missing_odometry_does_not_update():
    speed = lambda t: 9.0  # noqa: E731
    track = _track(speed, t_end_s=2.0)  # odometry stops at 2 s, frames go on to 6 s
    est = OdometryScaleEstimator(max_odom_gap_s=0.2)
    statuses = _feed(est, track, 60, speed)
    assert statuses[10].updated
    last = statuses[-1]
    assert not last.updated and last.status.startswith('odometry stale') and last.scale == pytest.approx(TRUE_SCALE)
    empty = OdometryScaleEstimator()
    s = empty.add_sample(0, DT, 0.4, SpeedTrack())
    assert not s.valid and s.status == 'no odometry' and s.scale == 1.0


def test_time_reversal_and_frame_gaps_are_rejected():
    speed = lambda t: 10.0  # noqa: E731
    track = _track(speed)
    est = OdometryScaleEstimator()
    assert est.add_sample(DT, 2 * DT, 0.4, track).updated
    assert est.add_sample(2 * DT, DT, 0.4, track).status == 'time ran backwards'          # t1 < t0
    assert est.add_sample(0, DT, 0.4, track).status == 'time ran backwards'               # before the last sample
    assert est.add_sample(3 * DT, 3 * DT + 10 * DT, 4.0, track).status.startswith('frame gap')
    assert est.add_sample(3 * DT, 4 * DT, 0.0, track).status == 'no predicted motion'
    assert est.status.samples == 1 and est.scale == pytest.approx(1.0 / 0.4)


def test_reset_forgets_everything():
    speed = lambda t: 10.0  # noqa: E731
    est = OdometryScaleEstimator()
    _feed(est, _track(speed), 10, speed)
    est.reset()
    assert not est.status.valid and est.scale == 1.0 and est.status.samples == 0


def test_restart_accepts_older_pairs_again_and_keeps_the_estimate():
    speed = lambda t: 10.0  # noqa: E731
    track = _track(speed)
    est = OdometryScaleEstimator()
    for k in range(1, 6):
        est.add_sample((k - 1) * DT, k * DT, 0.4, track)
    assert est.status.samples == 5
    assert not est.add_sample(0, DT, 0.4, track).updated  # older than the last pair: rejected
    s = est.restart()
    assert not s.updated and s.samples == 5 and s.scale == pytest.approx(2.5)
    assert est.add_sample(0, DT, 0.4, track).updated and est.status.samples == 6
