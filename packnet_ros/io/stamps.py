"""Matching messages by header stamp (integer nanoseconds): the one implementation of the
offline pairings (image <-> CameraInfo in the evaluator and the training readers, prediction
<-> ground truth). The node's streaming pairing is :class:`packnet_ros.ros.sync.StampPairer`.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any


def nearest(stamps: Sequence[int], t: int, tol_ns: int) -> int | None:
    """Index of the stamp nearest to ``t`` in the sorted ``stamps`` if within ``tol_ns``, else None."""
    if not stamps:
        return None
    i = bisect.bisect_left(stamps, t)
    best = None
    for j in (i - 1, i):
        if 0 <= j < len(stamps) and (best is None or abs(stamps[j] - t) < abs(stamps[best] - t)):
            best = j
    assert best is not None
    return best if abs(stamps[best] - t) <= tol_ns else None


def at_or_before(stamps: Sequence[int], t: int) -> int | None:
    """Index of the latest stamp <= ``t`` in the sorted ``stamps`` (the exact one when it
    exists), or None when every stamp is later."""
    k = bisect.bisect_right(stamps, t) - 1
    return k if k >= 0 else None


class StampIndex:
    """Items sorted by stamp for lookups (out-of-order input is sorted).

    Args:
        items: anything with a stamp.
        key: item -> stamp in integer nanoseconds (default ``item.stamp_ns``).
    """

    def __init__(self, items: Sequence, key: Callable[[Any], int] = lambda x: x.stamp_ns):
        pairs = sorted(((key(x), x) for x in items), key=lambda p: p[0])
        self.stamps = [p[0] for p in pairs]
        self.items = [p[1] for p in pairs]

    def __len__(self) -> int:
        return len(self.items)

    def find(self, t: int, tol_ns: int):
        """Item nearest to ``t`` within ``tol_ns`` or None."""
        j = nearest(self.stamps, t, tol_ns)
        return None if j is None else self.items[j]

    def index_at_or_before(self, t: int) -> int | None:
        """Index of the latest item stamped <= ``t`` (see :func:`at_or_before`)."""
        return at_or_before(self.stamps, t)
