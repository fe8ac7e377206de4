"""Vehicle speed from odometry, interpolated to image stamps (velocity supervision input).

PackNet's weak velocity supervision (paper Sec. 3.4) needs only the translation
magnitude between frames, ||t|| = speed * dt (packnet-sfm issues #82, #91); this module
keeps a time-ordered speed track from ``nav_msgs/Odometry`` twists (expressed in the
odometry's ``child_frame_id``; the norm does not depend on the frame's orientation).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass
class SpeedSample:
    """One odometry sample: stamp (ns) and speed (m/s, norm of the linear twist)."""

    stamp_ns: int
    speed: float


class SpeedTrack:
    """Bounded, time-ordered speed samples with linear interpolation.

    Args:
        max_samples: oldest samples are discarded beyond this count.

    Out-of-order samples are inserted in order; a sample with an existing stamp replaces it.
    """

    def __init__(self, max_samples: int = 2000):
        self._t: list[int] = []
        self._v: list[float] = []
        self.max_samples = max_samples

    def __len__(self) -> int:
        return len(self._t)

    def add(self, stamp_ns: int, speed: float) -> None:
        """Add a sample; speed is made non-negative (it is a norm)."""
        i = bisect.bisect_left(self._t, stamp_ns)
        if i < len(self._t) and self._t[i] == stamp_ns:
            self._v[i] = abs(float(speed))
            return
        self._t.insert(i, int(stamp_ns))
        self._v.insert(i, abs(float(speed)))
        if len(self._t) > self.max_samples:
            del self._t[0], self._v[0]

    def clear(self) -> None:
        self._t.clear()
        self._v.clear()

    @property
    def latest_stamp_ns(self) -> int | None:
        return self._t[-1] if self._t else None

    def speed_at(self, stamp_ns: int, max_gap_ns: int = 200_000_000) -> float | None:
        """Speed at ``stamp_ns`` (m/s) by linear interpolation between the two neighbours.

        Returns None (no trustworthy speed) when the track is empty, the stamp lies outside
        the samples by more than ``max_gap_ns``, or the neighbours are more than
        ``2 * max_gap_ns`` apart (a gap in the odometry stream).
        """
        if not self._t:
            return None
        i = bisect.bisect_left(self._t, stamp_ns)
        if i < len(self._t) and self._t[i] == stamp_ns:
            return self._v[i]
        if i == 0:
            return self._v[0] if self._t[0] - stamp_ns <= max_gap_ns else None
        if i == len(self._t):
            return self._v[-1] if stamp_ns - self._t[-1] <= max_gap_ns else None
        t0, t1 = self._t[i - 1], self._t[i]
        if t1 - t0 > 2 * max_gap_ns:
            return None
        w = (stamp_ns - t0) / (t1 - t0)
        return (1.0 - w) * self._v[i - 1] + w * self._v[i]
