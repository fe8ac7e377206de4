"""Training sequence of one KITTI raw drive (:class:`KittiSequence`)."""
from __future__ import annotations

import operator
from pathlib import Path
from typing import Sequence

import numpy as np

from ..msgdata import NS_PER_S
from .kitti import KittiDrive, KittiFormatError
from .sequence import FrameSequence

__all__ = ['KittiSequence']


class KittiSequence(FrameSequence):
    """Samples from one KITTI raw drive (:class:`~packnet_ros.io.kitti.KittiDrive`).

    Args:
        drive: a drive folder or a :class:`KittiDrive`.
        targets: frame numbers to use as targets (default: every frame of the drive; those
            without both neighbours are skipped and reported).
        context_offsets / context_dt_s / tolerance_s: see :class:`FrameSequence` (the frame
            period is measured from the image timestamps, ~0.1037 s on KITTI).
        with_speed: read the OXTS forward/left/up velocity norm (:meth:`KittiDrive.speed`) of the
            target and context frames; missing OXTS then raises :class:`KittiFormatError`.
            False gives ``speed=None``.
        camera: camera folder when ``drive`` is a path.

    ``gt_depth`` is the projected LiDAR depth (``proj_depth``) when the target has one.

    Raises:
        KittiFormatError: malformed drive, image timestamps not strictly increasing, or
            (``with_speed``) a missing OXTS packet of a target or context frame.
        ValueError: bad context offsets.
    """

    kind = 'kitti'

    def __init__(self, drive: str | Path | KittiDrive, targets: Sequence[int] | None = None,
                 context_offsets: Sequence[int] = (-1, 1), context_dt_s: Sequence[float] | None = None,
                 tolerance_s: float | None = None, with_speed: bool = True, camera: str = 'image_02'):
        super().__init__(context_offsets, context_dt_s, tolerance_s)
        self.drive = drive if isinstance(drive, KittiDrive) else KittiDrive(drive, camera)
        self.with_speed = with_speed
        self._frames = list(self.drive.frames)
        self._stamps = [self.drive.timestamp_ns(f) for f in self._frames]
        if any(b <= a for a, b in zip(self._stamps, self._stamps[1:])):
            raise KittiFormatError(f'{self.drive.path / self.drive.camera / "timestamps.txt"}: image timestamps '
                                   f'are not strictly increasing')
        pos = {f: j for j, f in enumerate(self._frames)}
        candidates = []
        for f in (self._frames if targets is None else targets):
            f = operator.index(f)
            if f not in pos:
                self.skipped.append((self._source_frame(f), f'no image for frame {f} in {self.drive.path}'))
            else:
                candidates.append(pos[f])
        self._speeds: dict[int, float | None] = {}
        self._build(candidates)
        if with_speed:  # read OXTS eagerly: a missing packet is an error now, not mid-training
            for t, ctx in self._items:
                for j in (t, *ctx):
                    self._speed(j)
        else:
            self.warnings.append('with_speed=False: no speed, no velocity supervision')

    def _nominal_period_s(self) -> float:
        # Per-frame spacing of consecutive frame numbers (robust to a sparse subset of frames).
        d = [(b - a) / (fb - fa) for (fa, a), (fb, b) in
             zip(zip(self._frames, self._stamps), zip(self._frames[1:], self._stamps[1:]))]
        return float(np.median(d)) / NS_PER_S if d else float('nan')

    @property
    def name(self) -> str:
        return self.drive.path.name

    def _source_frame(self, f: int) -> str:
        return f'kitti:{self.drive.path.name}:{f}'

    def _source(self, j: int) -> str:
        return self._source_frame(self._frames[j])

    def frame_of(self, i: int) -> int:
        """KITTI frame number of the target of sample ``i``."""
        return self._frames[self._item(i)[0]]

    def context_frames_of(self, i: int) -> list[int]:
        """KITTI frame numbers of the contexts of sample ``i``."""
        return [self._frames[c] for c in self._item(i)[1]]

    def _rgb(self, j: int) -> np.ndarray:
        return self.drive.image(self._frames[j])

    def _K(self, j: int) -> np.ndarray:
        return self.drive.K

    def _speed(self, j: int) -> float | None:
        if not self.with_speed:
            return None
        if j not in self._speeds:
            self._speeds[j] = self.drive.speed(self._frames[j])
        return self._speeds[j]

    def _gt(self, j: int) -> np.ndarray | None:
        f = self._frames[j]
        return self.drive.gt_depth(f) if self.drive.has_gt(f) else None
