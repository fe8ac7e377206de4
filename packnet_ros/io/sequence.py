"""Base of the training-sequence readers: :class:`FrameSequence`, :class:`Sample`, context selection.

The readers (:mod:`.kitti_sequence` for KITTI raw drives, :mod:`.bag_sequence` for rosbag2
recordings, :mod:`.video` for dash-cam videos) turn their source into the same
:class:`Sample`: a target image, its context images (chosen by time), the intrinsics of
these (undistorted / rectified) images, the vehicle speed when known and the distance
driven between target and each context, which is what PackNet's weak velocity supervision
needs (only ``||t||`` is supervised, packnet-sfm
issues #82 and #91).

Context selection (all readers): a sequence is a time-ordered list of frames with stamps.
Each requested context is a time offset ``dt`` from the target: ``context_offsets=(-1, 1)``
(the default) means ``dt = -p, +p`` with ``p`` the nominal frame period of the sequence (the
median spacing of its frames); ``context_dt_s=(-0.1, 0.1)`` gives the offsets in seconds
directly. The context is the frame whose stamp is nearest to ``target + dt``, accepted only
within ``tolerance_s`` (default ``p / 2``), so a dropped frame is never silently replaced by
the one after it. Targets that lack a context are listed in ``skipped`` as
``(source id, reason)``, never dropped silently. ``Sample.context_dt`` holds the *actual*
signed stamp differences.

Distance driven (``Sample.expected_translation``)::

    d_k = |dt_k| * (v(t) + v(t + dt_k)) / 2        (trapezoid, both speeds known)
    d_k = |dt_k| * v(t)                             (speed at the context unknown)

At 10 Hz and highway speed the two differ by ``|dt| * |dv| / 2`` (a few mm on KITTI);
the trapezoid is exact for constant acceleration. ``None`` when the target speed is unknown.

Plain numpy: no ROS runtime and no torch model code is needed here.
"""
from __future__ import annotations

import bisect
import math
import operator
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..msgdata import NS_PER_S

__all__ = ['Sample', 'DataError', 'expected_translation', 'select_context', 'FrameSequence']


class DataError(ValueError):
    """A data source that cannot be used for training (missing file, missing calibration,
    unreadable video, bad configuration); the message names the source and what to do."""


@dataclass
class Sample:
    """One training sample: a target image, its context images and what is known about them.

    Attributes:
        target: (H, W, 3) uint8 RGB.
        contexts: N images of the same size, in the order of ``context_dt``.
        K: (3, 3) float64 intrinsics of these (undistorted / rectified) images.
        stamp_ns: target stamp, integer nanoseconds.
        context_dt: signed seconds, context stamp - target stamp (e.g. [-0.1, +0.1]).
        speed: m/s at the target stamp; None = unknown (no velocity supervision).
        expected_translation: distance driven between target and each context in metres
            (see :func:`expected_translation`), None when the speed is unknown.
        gt_depth: (H, W) float32 metres, NaN invalid (KITTI projected LiDAR), or None.
        source: e.g. ``'kitti:2011_09_26_drive_0023_sync:3'``, ``'bag:/path:1317...'``,
            ``'video:segment_a.mp4:57'``.
    """

    target: np.ndarray
    contexts: list
    K: np.ndarray
    stamp_ns: int
    context_dt: list
    speed: float | None
    expected_translation: list | None
    gt_depth: np.ndarray | None
    source: str


def expected_translation(speed_target: float | None, speed_contexts: Sequence[float | None],
                         context_dt: Sequence[float]) -> list[float] | None:
    """Distance driven between the target and each context (metres).

    Trapezoid of the speed at both stamps, ``|dt| * (v_t + v_c) / 2``, when the context speed
    is known, else ``|dt| * v_t``. Returns None when the target speed is unknown.
    """
    if speed_target is None:
        return None
    out = []
    for v_c, dt in zip(speed_contexts, context_dt):
        v = speed_target if v_c is None else 0.5 * (speed_target + v_c)
        out.append(abs(float(dt)) * float(v))
    return out


def select_context(stamps_ns: Sequence[int], target: int, dt_s: float, tolerance_s: float) -> int | None:
    """Index of the frame nearest to ``stamps_ns[target] + dt_s`` within ``tolerance_s``.

    ``stamps_ns`` (integer nanoseconds) must be sorted ascending; ``target`` is an index into
    it; ``dt_s`` and ``tolerance_s`` are seconds. The target itself is never returned. None
    when no other frame lies within the tolerance.
    """
    want = stamps_ns[target] + dt_s * NS_PER_S
    i = bisect.bisect_left(stamps_ns, want)
    candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps_ns) and j != target]
    if not candidates:
        return None
    best = min(candidates, key=lambda j: abs(stamps_ns[j] - want))  # the earlier one on a tie
    return best if abs(stamps_ns[best] - want) <= tolerance_s * NS_PER_S else None


class FrameSequence:
    """Base of the sequence readers: time-ordered frames, context selection, Sample assembly.

    Subclasses fill ``self._stamps`` (sorted int ns) and implement ``_rgb(j)``, ``_K(j)``,
    ``_speed(j)``, ``_gt(j)``, ``_source(j)`` for frame ``j`` (position in ``_stamps``), then
    call :meth:`_build` with the candidate target positions.

    Args:
        context_offsets: context positions in frames relative to the target (distinct,
            non-zero), converted to seconds with the nominal frame period. Empty: samples
            of the target alone (LiDAR-supervised training needs no context frames).
        context_dt_s: context offsets in seconds instead (non-zero, finite).
        tolerance_s: how far a context stamp may be from ``target + dt`` (default half the
            frame period).

    Raises:
        ValueError: zero, repeated or non-finite offsets (empty ``context_dt_s``).

    Attributes:
        skipped: ``[(source id, reason), ...]`` for every frame or target that was left out.
        warnings: notes about the whole source (no odometry, distortion handling, ...).
        context_dts: the requested context offsets in seconds (after converting frame offsets).
        period_s: nominal frame period (median spacing of the frames).
        tolerance_s: how far a context stamp may be from ``target + dt``.
    """

    kind = 'frames'

    def __init__(self, context_offsets: Sequence[int] = (-1, 1), context_dt_s: Sequence[float] | None = None,
                 tolerance_s: float | None = None):
        if context_dt_s is not None:
            dts = [float(v) for v in context_dt_s]
            if not dts or any(v == 0 or not math.isfinite(v) for v in dts):
                raise ValueError(f'context_dt_s must be non-zero finite seconds, got {context_dt_s!r}')
            self._offsets = None
        else:
            offs = [operator.index(v) for v in context_offsets]
            if 0 in offs or len(set(offs)) != len(offs):
                raise ValueError(f'context_offsets must be distinct non-zero frame offsets, got {context_offsets!r}')
            self._offsets = offs
            dts = None
        self._dts_given = dts
        self._tolerance_given = tolerance_s
        self.skipped: list[tuple[str, str]] = []
        self.warnings: list[str] = []
        self._stamps: list[int] = []
        self._items: list[tuple[int, list[int]]] = []
        self.context_dts: list[float] = []
        self.period_s = float('nan')
        self.tolerance_s = float('nan')

    # -- to implement
    def _rgb(self, j: int) -> np.ndarray:
        raise NotImplementedError

    def _K(self, j: int) -> np.ndarray:
        raise NotImplementedError

    def _speed(self, j: int) -> float | None:
        return None

    def _gt(self, j: int) -> np.ndarray | None:
        return None

    def _source(self, j: int) -> str:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return '?'

    # -- shared
    def _nominal_period_s(self) -> float:
        d = np.diff(np.asarray(self._stamps, dtype=np.int64))
        d = d[d > 0]
        return float(np.median(d)) / NS_PER_S if d.size else float('nan')

    def _build(self, candidates: Sequence[int]) -> None:
        """Choose contexts for each candidate target position; fill ``_items`` and ``skipped``."""
        self.period_s = self._nominal_period_s()
        if self._offsets is not None:
            self.context_dts = [o * self.period_s for o in self._offsets]
        elif self._dts_given is not None:
            self.context_dts = list(self._dts_given)
        else:  # the constructor requires offsets or time differences
            raise DataError(f'{self.name}: no context offsets or time differences given')
        self.tolerance_s = (self._tolerance_given if self._tolerance_given is not None
                            else 0.5 * self.period_s)
        for t in candidates:
            if self.context_dts and not math.isfinite(self.period_s):
                self.skipped.append((self._source(t), 'fewer than 2 frames: no context frames exist'))
                continue
            ctx, why = [], None
            for k, dt in enumerate(self.context_dts):
                c = select_context(self._stamps, t, dt, self.tolerance_s)
                if c is None:
                    what = (f'frame offset {self._offsets[k]:+d}' if self._offsets is not None
                            else f'context dt {dt:+.3f} s')
                    why = (f'no context frame for {what}: no frame within {self.tolerance_s * 1e3:.0f} ms of '
                           f'target {dt:+.3f} s')
                    break
                ctx.append(c)
            if why is None:
                why = self._check_item(t, ctx)
            if why is not None:
                self.skipped.append((self._source(t), why))
            else:
                self._items.append((t, ctx))

    def _check_item(self, t: int, ctx: list[int]) -> str | None:
        """Reason why target ``t`` with contexts ``ctx`` cannot be used, or None."""
        return None

    @property
    def n_frames(self) -> int:
        return len(self._stamps)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def _item(self, i) -> tuple[int, list[int]]:
        """(target position, context positions) of sample ``i`` (negative ``i`` counts from the end).

        Raises:
            IndexError: ``i`` out of range.
        """
        n = len(self._items)
        k = operator.index(i)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f'sample index {k} out of range for {n} samples')
        return self._items[k]

    def __getitem__(self, i) -> Sample:
        """Sample ``i`` with its images loaded.

        Raises:
            IndexError: ``i`` out of range.
            DataError: a context image of another size than the target.
        """
        t, ctx = self._item(i)
        target = self._rgb(t)
        contexts = [self._rgb(c) for c in ctx]
        for c, img in zip(ctx, contexts):
            if img.shape != target.shape:
                raise DataError(f'{self._source(c)}: context image is {img.shape}, target '
                                f'{self._source(t)} is {target.shape}; contexts must have the target size')
        t0 = self._stamps[t]
        dts = [(self._stamps[c] - t0) / NS_PER_S for c in ctx]
        v = self._speed(t)
        return Sample(target=target, contexts=contexts, K=np.array(self._K(t), dtype=np.float64),
                      stamp_ns=int(t0), context_dt=dts, speed=v,
                      expected_translation=expected_translation(v, [self._speed(c) for c in ctx], dts),
                      gt_depth=self._gt(t), source=self._source(t))

    def target_sources(self) -> list[str]:
        """Source id of every target frame (e.g. ``kitti:<drive>:<frame>``), in sample order:
        the frames a model trained on this sequence has seen as targets."""
        return [self._source(t) for t, _ in self._items]

    def describe(self) -> str:
        """What was found and what was skipped, one human-readable paragraph."""
        n_speed = sum(self._speed(t) is not None for t, _ in self._items)
        dts = ', '.join(f'{d:+.3f}' for d in self.context_dts) or '-'
        lines = [f'{self.kind} {self.name}: {self.n_frames} frames, period {self.period_s:.4f} s, '
                 f'{len(self)} targets with contexts at [{dts}] s (tolerance {self.tolerance_s * 1e3:.0f} ms), '
                 f'{n_speed} with speed, {len(self.skipped)} skipped']
        lines += [f'  skipped {src}: {why}' for src, why in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f'  ... and {len(self.skipped) - 20} more skipped')
        lines += [f'  warning: {w}' for w in self.warnings]
        return '\n'.join(lines)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.name!r}, samples={len(self)}, skipped={len(self.skipped)})'
