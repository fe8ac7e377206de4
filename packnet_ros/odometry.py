"""Vehicle speed from odometry, interpolated to image stamps (velocity supervision input).

PackNet's weak velocity supervision (paper Sec. 3.4) needs only the translation
magnitude between frames, ||t|| = speed * dt (packnet-sfm issues #82, #91); this module
keeps a time-ordered speed track from ``nav_msgs/Odometry`` twists (expressed in the
odometry's ``child_frame_id``; the norm does not depend on the frame's orientation).
"""
from __future__ import annotations

import bisect
import threading


class SpeedTrack:
    """Bounded, time-ordered speed samples with linear interpolation; thread-safe.

    Args:
        max_samples: oldest samples are discarded beyond this count.

    Out-of-order samples are inserted in order; a sample with an existing stamp replaces it.
    Every method holds one lock for its whole duration, so a writer (the odometry callback)
    and a reader (the camera callback) on different threads never see a half-done update.
    """

    def __init__(self, max_samples: int = 2000):
        self._lock = threading.Lock()
        self._t: list[int] = []  # stamps (ns), ascending
        self._v: list[float] = []  # speeds (m/s), same order; both change under _lock only
        self.max_samples = max_samples

    def __getstate__(self) -> dict:  # picklable / deep-copyable (datasets hold tracks)
        with self._lock:
            return {'t': list(self._t), 'v': list(self._v), 'max_samples': self.max_samples}

    def __setstate__(self, state: dict) -> None:
        self._lock = threading.Lock()
        self._t, self._v, self.max_samples = state['t'], state['v'], state['max_samples']

    def __len__(self) -> int:
        with self._lock:
            return len(self._t)

    def add(self, stamp_ns: int, speed: float) -> None:
        """Add a sample; speed is made non-negative (it is a norm)."""
        stamp_ns, speed = int(stamp_ns), abs(float(speed))
        with self._lock:
            i = bisect.bisect_left(self._t, stamp_ns)
            if i < len(self._t) and self._t[i] == stamp_ns:
                self._v[i] = speed
                return
            self._t.insert(i, stamp_ns)
            self._v.insert(i, speed)
            if len(self._t) > self.max_samples:
                del self._t[0], self._v[0]

    def clear(self) -> None:
        with self._lock:
            self._t.clear()
            self._v.clear()

    @property
    def latest_stamp_ns(self) -> int | None:
        with self._lock:
            return self._t[-1] if self._t else None

    def speed_at(self, stamp_ns: int, max_gap_ns: int = 200_000_000) -> float | None:
        """Speed at ``stamp_ns`` (m/s) by linear interpolation between the two neighbours.

        Returns None (no trustworthy speed) when the track is empty, the stamp lies outside
        the samples by more than ``max_gap_ns``, or the neighbours are more than
        ``2 * max_gap_ns`` apart (a gap in the odometry stream).
        """
        with self._lock:
            t, v = self._t, self._v
            if not t:
                return None
            i = bisect.bisect_left(t, stamp_ns)
            if i < len(t) and t[i] == stamp_ns:
                return v[i]
            if i == 0:
                return v[0] if t[0] - stamp_ns <= max_gap_ns else None
            if i == len(t):
                return v[-1] if stamp_ns - t[-1] <= max_gap_ns else None
            t0, t1, v0, v1 = t[i - 1], t[i], v[i - 1], v[i]
        if t1 - t0 > 2 * max_gap_ns:
            return None
        w = (stamp_ns - t0) / (t1 - t0)
        return (1.0 - w) * v0 + w * v1
