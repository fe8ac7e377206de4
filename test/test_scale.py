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


# ----------------------------------------------------------------------------- runtime settings
def _sample(est, track, k, scale):
    """Offer frame pair (k-1, k) whose sample is exactly ``scale`` (10 m/s x 0.1 s = 1 m driven)."""
    return est.add_sample((k - 1) * DT, k * DT, 1.0 / scale, track)


def test_shrinking_the_window_keeps_the_newest_samples():
    track = _track(lambda t: 10.0)
    est = OdometryScaleEstimator(window=5)
    for k, s in enumerate([1.0, 2.0, 3.0, 10.0, 4.0], start=1):
        assert _sample(est, track, k, s).updated
    assert est.status.samples == 5 and est.scale == pytest.approx(3.0)  # median of 1, 2, 3, 10, 4
    status = est.configure(window=2)  # newest two: 10 and 4 -> median of logs = geometric mean
    assert status.samples == 2 and not status.updated and status.valid
    assert est.scale == pytest.approx(math.sqrt(40.0)) and est.window == 2
    assert status.spread == pytest.approx(1.4826 * 0.5 * math.log(10.0 / 4.0))
    assert _sample(est, track, 6, 8.0).updated  # window 2: 4 and 8
    assert est.status.samples == 2 and est.scale == pytest.approx(math.sqrt(32.0))
    est.configure(window=4)  # growing keeps what is there
    assert est.status.samples == 2 and est.scale == pytest.approx(math.sqrt(32.0))
    assert _sample(est, track, 7, 2.0).updated and est.status.samples == 3 and est.scale == pytest.approx(4.0)


def test_runtime_thresholds_apply_to_the_next_sample():
    slow = _track(lambda t: 0.5)  # 0.5 m/s: "stationary" for the default min_speed 1.0
    est = OdometryScaleEstimator()
    assert est.add_sample(0, DT, 0.02, slow).status.startswith('stationary')
    est.configure(min_speed=0.2)
    s = est.add_sample(DT, 2 * DT, 0.02, slow)
    assert s.updated and s.scale == pytest.approx(0.05 / 0.02)

    track = _track(lambda t: 10.0, t_end_s=2.0)  # odometry ends at 2.0 s
    est = OdometryScaleEstimator()
    assert est.add_sample(10 * DT, 18 * DT, 2.0, track).status.startswith('frame gap')  # 0.8 s > 0.5 s
    est.configure(max_frame_dt_s=1.0)
    s = est.add_sample(10 * DT, 18 * DT, 2.0, track)
    assert s.updated and s.scale == pytest.approx(10.0 * 0.8 / 2.0)
    assert est.add_sample(20 * DT, 23 * DT, 0.75, track).status.startswith('odometry stale')  # 0.3 s > 0.2 s
    est.configure(max_odom_gap_s=0.5)
    assert est.add_sample(20 * DT, 23 * DT, 0.75, track).updated and est.status.samples == 2


def test_outlier_threshold_can_change_at_runtime():
    track = _track(lambda t: 10.0)
    est = OdometryScaleEstimator()  # outlier_k 3.5, spread floor log(1.05) = 0.0488
    for k in range(1, 6):
        _sample(est, track, k, 2.5)
    # log(3.0 / 2.5) = 0.182 > 3.5 x 0.0488 = 0.171: an outlier; < 5 x 0.0488 = 0.244 accepted
    assert _sample(est, track, 6, 3.0).status.startswith('outlier')
    est.configure(outlier_k=5.0)
    assert _sample(est, track, 6, 3.0).updated and est.status.samples == 6


def test_invalid_runtime_settings_change_nothing():
    est = OdometryScaleEstimator(window=7)
    for bad in (dict(window=0), dict(min_speed=-1.0), dict(max_odom_gap_s=0.0), dict(max_frame_dt_s=-0.1),
                dict(outlier_k=0.0), dict(window=3, outlier_k=-1.0)):
        with pytest.raises(ValueError):
            est.configure(**bad)
    assert (est.window, est.min_speed, est.max_odom_gap_ns, est.max_frame_dt_ns, est.outlier_k) == \
        (7, 1.0, 200_000_000, 500_000_000, 3.5)


# ----------------------------------------------------------------------------- SpeedTrack threads
def test_speed_track_is_consistent_under_a_concurrent_writer_and_reader():
    """One thread appends a ramp (speed = stamp in seconds) while another interpolates; the
    track evicts old samples all the while. Every read is exact inside the samples, or an
    end sample's speed within max_gap of the stamp, or None; never an exception."""
    import sys
    import threading

    step, n, gap = 1_000_000, 300_000, 1_000_000  # 1 ms odometry, 300k writes and 300k reads
    track = SpeedTrack(max_samples=500)
    track.add(0, 0.0)
    errors, bad, interior = [], [], [0]
    start = threading.Barrier(2)

    def writer():
        try:
            start.wait()
            for k in range(1, n + 1):
                track.add(k * step, k * step / 1e9)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def reader():
        try:
            start.wait()
            for i in range(n):
                latest = track.latest_stamp_ns
                t = latest - (i * 7919 * 1013) % (200 * step)  # never beyond the newest sample
                v = track.speed_at(t, gap)
                if v is None:
                    continue
                if abs(v - t / 1e9) <= 1e-9:
                    interior[0] += 1
                elif not (round(v * 1e9) % step == 0 and abs(v - t / 1e9) <= gap / 1e9 + 1e-9):
                    bad.append((t, v))
                len(track)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: any torn update shows
    try:
        threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:3]
    assert not bad, bad[:5]
    assert interior[0] > 0
    assert len(track) == 500 and track.latest_stamp_ns == n * step
    assert track.speed_at(n * step - step // 4, gap) == pytest.approx((n * step - step // 4) / 1e9, abs=1e-9)


def test_speed_track_pickles_and_copies():
    import copy
    import pickle

    track = SpeedTrack(max_samples=3)
    for k in range(5):
        track.add(k * 10, float(k))
    for clone in (pickle.loads(pickle.dumps(track)), copy.deepcopy(track)):
        assert len(clone) == 3 and clone.max_samples == 3 and clone.speed_at(35, 10) == pytest.approx(3.5)
        clone.add(50, 5.0)
        assert len(clone) == 3 and len(track) == 3 and track.latest_stamp_ns == 40
