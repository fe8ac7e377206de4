"""Frames to evaluate: camera images, depth maps and ground truth from bags or KITTI folders.

Everything here reads recordings without ROS (rosbags + numpy), counts what it cannot
use (missing camera_info, unknown encodings, undecodable messages) instead of dropping
it silently, and associates streams by nearest header stamp within a tolerance.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..geometry import intrinsics_from_camera_info
from ..imageproc import ImageFormatError
from ..io.bag import iter_messages, mcap_files, salvage_mcap
from ..io.stamps import StampIndex
from ..msgdata import depth_msg_to_meters, header_ns, image_msg_to_rgb


@dataclass
class ImageFrame:
    """A camera image with its intrinsics: rgb (H, W, 3) uint8, K (3, 3) at (H, W)."""

    stamp_ns: int
    rgb: np.ndarray
    K: np.ndarray
    frame_id: str = ''


@dataclass
class DepthFrame:
    """A depth map in metres (H, W) float32 (NaN invalid, REP 117 infinities kept)."""

    stamp_ns: int
    depth: np.ndarray
    frame_id: str = ''


@dataclass
class Issues:
    """Counted problems of a source, by reason (reported, never silently dropped)."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, reason: str, detail: str = '') -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, detail)


READ_ERROR = 'bag read error (truncated or corrupt bag; later messages lost)'


def read_messages_safely(bag: str | Path, topics: Sequence[str], issues: Issues,
                         deserialize: bool = True) -> Iterator:
    """``iter_messages`` that turns a truncated or corrupt bag into a counted issue.

    A damaged MCAP recording that rosbags cannot open at all (no summary/footer: the
    recorder was killed or the file was cut short; or no metadata.yaml) is read front to
    back with :func:`packnet_ros.io.bag.salvage_mcap` up to the damage. Either way one
    ``READ_ERROR`` is counted, with the reason and the number of messages recovered as
    its example.

    Raises:
        FileNotFoundError: nothing at ``bag``.
    """
    if not Path(bag).exists():
        raise FileNotFoundError(f'no bag at {bag}')
    n = 0
    try:
        for m in iter_messages(bag, topics, deserialize=deserialize):
            n += 1
            yield m
        return
    except Exception as exc:  # noqa: BLE001 - rosbags raises various errors on damaged files
        first = f'{type(exc).__name__}: {exc}'
        if n or not mcap_files(bag):
            issues.add(READ_ERROR, f'{first} (after {n} messages of {list(topics)})')
            return
    k = 0
    try:
        for m in salvage_mcap(bag, topics, deserialize=deserialize):
            k += 1
            yield m
    except Exception as exc:  # noqa: BLE001 - TruncatedBagError and deserialisation errors
        issues.add(READ_ERROR, f'{first}; sequential scan: {exc}; {k} messages of {list(topics)} recovered')
    else:
        issues.add(READ_ERROR, f'{first}; sequential scan recovered {k} messages of {list(topics)} '
                               f'(file ends without its index)')


def count_out_of_order(stamps: Sequence[int], topic: str, issues: Issues) -> None:
    """Count header stamps that go backwards in recording order (the frames are matched by
    stamp and sorted, so nothing is lost; the count tells the recording is unusual)."""
    prev = None
    for t in stamps:
        if prev is not None and t < prev:
            issues.add(f'out-of-order header stamps on {topic} (sorted by stamp)', f'{t} after {prev}')
        prev = t if prev is None else max(prev, t)


def image_frames(bag: str | Path, image_topic: str, info_topic: str, issues: Issues,
                 info_tol_ns: int = 0) -> Iterator[ImageFrame]:
    """Camera images of a bag paired with their CameraInfo (exact stamp, or nearest within
    ``info_tol_ns``; falls back to the latest info when ``info_tol_ns`` < 0).

    Images that cannot be used are counted in ``issues`` (no camera_info, uncalibrated
    camera_info, unsupported encoding, malformed buffer).
    """
    infos: list = []
    pending: list = []
    for m in read_messages_safely(bag, [image_topic, info_topic], issues):
        if m.topic == info_topic:
            infos.append(m.msg)
        else:
            pending.append(m.msg)
    index = StampIndex(infos, key=header_ns)
    count_out_of_order([header_ns(img) for img in pending], image_topic, issues)
    for img in pending:
        t = header_ns(img)
        info = infos[-1] if (info_tol_ns < 0 and infos) else index.find(t, max(0, info_tol_ns))
        if info is None:
            issues.add('image without camera_info', f'stamp {t}')
            continue
        try:
            K = intrinsics_from_camera_info(info.k, info.p)
            rgb = image_msg_to_rgb(img)
        except (ImageFormatError, ValueError) as exc:
            issues.add(f'unusable image ({str(exc).split(" (")[0]})', f'stamp {t}: {exc}')
            continue
        yield ImageFrame(t, np.ascontiguousarray(rgb), K, img.header.frame_id)


def depth_frames(bag: str | Path, topic: str, issues: Issues) -> list[DepthFrame]:
    """Depth images (32FC1 metres or 16UC1 millimetres) of a bag topic, in bag order."""
    out = []
    for m in read_messages_safely(bag, [topic], issues):
        img = m.msg
        try:
            depth = depth_msg_to_meters(img)
        except (ImageFormatError, ValueError) as exc:
            issues.add(f'unusable depth image on {topic}', f'stamp {header_ns(img)}: {exc}')
            continue
        out.append(DepthFrame(header_ns(img), depth, img.header.frame_id))
    count_out_of_order([d.stamp_ns for d in out], topic, issues)
    return out


def kitti_frames(drive, frames: Sequence[int] | None = None
                 ) -> Iterator[tuple[ImageFrame, DepthFrame | None]]:
    """(image, ground truth or None) for the frames of a :class:`packnet_ros.io.kitti.KittiDrive`."""
    for i in (drive.frames if frames is None else frames):
        t = drive.timestamp_ns(i)
        gt = DepthFrame(t, drive.gt_depth(i)) if drive.has_gt(i) else None
        yield ImageFrame(t, drive.image(i), drive.K), gt
