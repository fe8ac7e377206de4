"""Training sequence of a rosbag2 recording (:class:`BagSequence`): camera images with their
CameraInfo (or a camera YAML), odometry speed and optional ground-truth depth."""
from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..geometry import intrinsics_from_camera_info
from ..imageproc import COLOR_ENCODINGS, ImageFormatError
from ..msgdata import NS_PER_S, decode_image_msg, depth_msg_to_meters, header_ns, image_msg_to_rgb, speed_from_odometry
from ..odometry import SpeedTrack
from .bag import BagMessage, bag_topics, iter_messages
from .camera_yaml import CameraIntrinsics, has_distortion, load_camera_yaml, undistort_maps
from .sequence import DataError, FrameSequence
from .stamps import StampIndex

__all__ = ['BagSequence']

_COMPRESSED = 'sensor_msgs/msg/CompressedImage'


@dataclass
class _BagImage:
    """An undecoded image message: the ``sensor_msgs/Image`` fields that decoding needs
    (``format`` as ``encoding`` for a CompressedImage) and which camera model it pairs with."""

    stamp_ns: int
    msgtype: str
    height: int
    width: int
    encoding: str
    step: int
    is_bigendian: bool
    data: np.ndarray          # undecoded buffer (raw pixels or the compressed file)
    info: int = -1            # index into BagSequence._infos; -2: unusable CameraInfo


@dataclass
class _BagCameraInfo:
    """Camera model of a group of images."""

    stamp_ns: int
    K: np.ndarray             # (3, 3) intrinsics of the (rectified) images the sequence returns
    width: int
    height: int
    raw: CameraIntrinsics | None   # set when the images must be undistorted
    R: np.ndarray | None


def _buffer(msg) -> np.ndarray:
    """A message's ``data`` as an owned uint8 array (not a view of the deserialised message)."""
    return np.array(msg.data, dtype=np.uint8, copy=True)


class BagSequence(FrameSequence):
    """Samples from a rosbag2 (MCAP or sqlite3) with camera images, CameraInfo and odometry.

    Args:
        bag_path: bag directory (or file).
        image_topic: ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) or
            ``sensor_msgs/CompressedImage`` (JPEG/PNG) topic.
        camera_info_topic: ``sensor_msgs/CameraInfo``; paired with each image by exact header
            stamp, else the latest one stamped at or before the image (the first one for images
            before any CameraInfo); ``k_pairing`` counts which happened.
        odom_topic: ``nav_msgs/Odometry`` (or ``geometry_msgs/TwistStamped``); speed = norm of
            the linear twist, linearly interpolated to each image stamp (:class:`SpeedTrack`).
            Missing topic: ``speed=None`` and a warning.
        depth_topic: optional ground-truth depth image topic (32FC1 m / 16UC1 mm) paired by
            exact stamp.
        context_offsets / context_dt_s / tolerance_s: see :class:`FrameSequence`.
        max_speed_gap_s: odometry may be at most this far from an image stamp (and neighbouring
            odometry samples at most twice this apart) for the speed to count.
        every: keep every N-th image message (offsets then count kept images).
        rectify: undistort the images with the CameraInfo's D, R, P (image_proc's rectify).
            None = automatically: when D is non-zero and the topic name has no ``rect``
            (a ``image_rect`` topic is already rectified although its CameraInfo keeps D).
        intrinsics: a camera YAML (:func:`load_camera_yaml`) to use instead of CameraInfo.

    Images are stored undecoded (the message buffer) and decoded on access: a bag of 1000
    1280x720 frames is not held as decoded RGB. Each image is validated once on load; an
    undecodable one (unsupported encoding, short buffer) is skipped and reported.

    Raises:
        DataError: no bag, an unreadable bag, no image topic or no messages on it, an image
            topic of another type, or no CameraInfo (and no ``intrinsics``).
        ValueError: ``every`` < 1, bad context offsets.
    """

    kind = 'bag'

    def __init__(self, bag_path: str | Path, image_topic: str = '/camera/image_raw',
                 camera_info_topic: str = '/camera/camera_info', odom_topic: str | None = '/odom',
                 depth_topic: str | None = None, context_offsets: Sequence[int] = (-1, 1),
                 context_dt_s: Sequence[float] | None = None, tolerance_s: float | None = None,
                 max_speed_gap_s: float = 0.2, every: int = 1, rectify: bool | None = None,
                 intrinsics: str | Path | CameraIntrinsics | None = None):
        super().__init__(context_offsets, context_dt_s, tolerance_s)
        if operator.index(every) < 1:
            raise ValueError(f'every must be >= 1, got {every}')
        self.path = Path(bag_path)
        self.image_topic, self.camera_info_topic, self.odom_topic = image_topic, camera_info_topic, odom_topic
        self.depth_topic = depth_topic
        self.max_speed_gap_s = float(max_speed_gap_s)
        self.k_pairing = {'exact': 0, 'latest': 0, 'first': 0, 'yaml': 0}
        if not self.path.exists():
            raise DataError(f'no bag at {self.path}')
        want = self._topics_to_read(with_camera_info=intrinsics is None)
        if isinstance(intrinsics, (str, Path)):
            intrinsics = load_camera_yaml(intrinsics)
        self._depth_raw: dict[int, _BagImage] = {}
        self._track = SpeedTrack(max_samples=10 ** 9)
        images, infos = self._read_messages(want, every)
        self._infos: list[_BagCameraInfo] = []
        if intrinsics is not None:
            self._pair_with_yaml(images, intrinsics, rectify)
        else:
            self._pair_with_camera_infos(images, infos, rectify)
        self._images = self._usable_images(images)
        self._stamps = [img.stamp_ns for img in self._images]
        self._maps: dict[int, tuple] = {}
        self._build(range(len(self._images)))

    # -- loading
    def _topics_to_read(self, with_camera_info: bool) -> list[str]:
        """Topics of the bag to read (CameraInfo only ``with_camera_info``, i.e. without a
        camera YAML); warns about missing optional ones.

        Raises:
            DataError: unreadable bag, no image topic, or (``with_camera_info``) no CameraInfo topic.
        """
        try:
            topics = bag_topics(self.path)
        except Exception as e:  # rosbags raises its own errors for non-bags
            raise DataError(f'cannot read bag {self.path}: {e}') from e
        image_topic, camera_info_topic = self.image_topic, self.camera_info_topic
        if image_topic not in topics:
            raise DataError(f'{self.path}: no image topic {image_topic} (topics: {sorted(topics)}); '
                            f'pass image_topic=...')
        if with_camera_info and camera_info_topic not in topics:
            raise DataError(f'{self.path}: no CameraInfo on {camera_info_topic}: K is needed for view synthesis; '
                            f'record camera_info with the images (ros2 bag record {image_topic} '
                            f'{camera_info_topic}), pass camera_info_topic=... if it has another name, or give '
                            f'intrinsics=<camera YAML> (see load_camera_yaml)')
        want = [image_topic]
        if with_camera_info:
            want.append(camera_info_topic)
        if self.odom_topic and self.odom_topic in topics:
            want.append(self.odom_topic)
        elif self.odom_topic:
            self.warnings.append(f'no odometry on {self.odom_topic} (topics: {sorted(topics)}): speed unknown, '
                                 f'no velocity supervision')
        if self.depth_topic and self.depth_topic in topics:
            want.append(self.depth_topic)
        elif self.depth_topic:
            self.warnings.append(f'no depth topic {self.depth_topic}: gt_depth is None')
        return want

    def _read_messages(self, want: list[str], every: int) -> tuple[list[_BagImage], list[tuple[int, object]]]:
        """Read ``want``: returns (kept images, [(stamp_ns, CameraInfo), ...]); fills the
        odometry track and the depth images.

        Raises:
            DataError: unreadable bag, an image topic of another type, no image messages.
        """
        images: list[_BagImage] = []
        infos: list[tuple[int, object]] = []
        n_odom = n_seen = 0
        try:
            for m in iter_messages(self.path, want):
                if m.topic == self.image_topic:
                    n_seen += 1
                    img = self._image_record(m) if (n_seen - 1) % every == 0 else None
                    if img is not None:
                        images.append(img)
                elif m.topic == self.camera_info_topic:
                    infos.append((self._stamp_or_log(m), m.msg))
                elif m.topic == self.odom_topic:
                    self._track.add(self._stamp_or_log(m), speed_from_odometry(m.msg))
                    n_odom += 1
                elif m.topic == self.depth_topic:
                    stamp = self._stamp_or_log(m)
                    self._depth_raw[stamp] = self._raw_image(stamp, m)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f'cannot read bag {self.path}: {e}') from e
        if not n_seen:
            raise DataError(f'{self.path}: topic {self.image_topic} has no messages')
        if self.odom_topic in want and not n_odom:
            self.warnings.append(f'{self.odom_topic} has no messages: speed unknown')
        return images, infos

    @staticmethod
    def _stamp_or_log(m: BagMessage) -> int:
        """Header stamp of a message (ns), or its log time when the header stamp is zero."""
        s = header_ns(m.msg)
        return s if s > 0 else int(m.log_time_ns)

    def _src(self, stamp_ns: int) -> str:
        return f'bag:{self.path}:{stamp_ns}'

    @staticmethod
    def _raw_image(stamp_ns: int, m: BagMessage) -> _BagImage:
        """Undecoded record of a ``sensor_msgs/Image`` message."""
        msg = m.msg
        return _BagImage(stamp_ns, m.msgtype, int(msg.height), int(msg.width), msg.encoding, int(msg.step),
                         bool(msg.is_bigendian), _buffer(msg))

    def _image_record(self, m: BagMessage) -> _BagImage | None:
        """Validated undecoded record of an image message, or None (skipped and reported).

        Raises:
            DataError: the image topic is neither Image nor CompressedImage.
        """
        msg = m.msg
        stamp = self._stamp_or_log(m)
        if m.msgtype == _COMPRESSED:
            data = _buffer(msg)
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            if bgr is None:
                self.skipped.append((self._src(stamp), f'undecodable CompressedImage (format {msg.format!r})'))
                return None
            return _BagImage(stamp, m.msgtype, bgr.shape[0], bgr.shape[1], msg.format, 0, False, data)
        if m.msgtype != 'sensor_msgs/msg/Image':
            raise DataError(f'{self.path}: {m.topic} is {m.msgtype}, expected sensor_msgs/msg/Image or '
                            f'CompressedImage')
        if msg.encoding not in COLOR_ENCODINGS:
            self.skipped.append((self._src(stamp), f'unsupported image encoding {msg.encoding!r} '
                                                   f'(decodable: {", ".join(COLOR_ENCODINGS)})'))
            return None
        try:
            decode_image_msg(msg)
        except ImageFormatError as e:
            self.skipped.append((self._src(stamp), f'undecodable image: {e}'))
            return None
        return self._raw_image(stamp, m)

    def _pair_with_yaml(self, images: list[_BagImage], cam: CameraIntrinsics, rectify: bool | None) -> None:
        """Give every image the camera model of the YAML file."""
        self._infos.append(self._info_from_yaml(cam, self.image_topic, rectify))
        for img in images:
            img.info = 0
        self.k_pairing['yaml'] = len(images)

    def _pair_with_camera_infos(self, images: list[_BagImage], infos: list[tuple[int, object]],
                                rectify: bool | None) -> None:
        """Give every image the camera model of its CameraInfo: the one of the same stamp, else
        the latest earlier one, else the first one; an unusable CameraInfo skips its images.

        Raises:
            DataError: no CameraInfo message at all.
        """
        if not infos:
            raise DataError(f'{self.path}: no CameraInfo on {self.camera_info_topic} (topic has no messages): '
                            f'K is needed for view synthesis; record camera_info or give intrinsics=<YAML>')
        index = StampIndex(infos, key=lambda x: x[0])
        infos = index.items
        cache: dict[int, int] = {}
        for img in images:
            k = index.index_at_or_before(img.stamp_ns)
            if k is not None and index.stamps[k] == img.stamp_ns:
                self.k_pairing['exact'] += 1
            elif k is not None:
                self.k_pairing['latest'] += 1
            else:
                k = 0
                self.k_pairing['first'] += 1
            if k not in cache:
                try:
                    cache[k] = len(self._infos)
                    self._infos.append(self._info_from_msg(infos[k][1], self.image_topic, rectify))
                except ValueError as e:
                    del cache[k]
                    self.skipped.append((self._src(img.stamp_ns), f'unusable CameraInfo: {e}'))
                    img.info = -2
                    continue
            img.info = cache[k]
        if self.k_pairing['latest'] or self.k_pairing['first']:
            self.warnings.append(f'CameraInfo stamps do not match every image: {self.k_pairing["exact"]} '
                                 f'exact, {self.k_pairing["latest"]} latest earlier, '
                                 f'{self.k_pairing["first"]} first (image before any CameraInfo)')

    def _usable_images(self, images: list[_BagImage]) -> list[_BagImage]:
        """Images with a camera model of their size, sorted by stamp, one per stamp (the rest
        is skipped and reported)."""
        kept = []
        for img in images:
            if img.info < 0:
                continue
            ci = self._infos[img.info]
            if ci.width and ci.height and (ci.width, ci.height) != (img.width, img.height):
                self.skipped.append((self._src(img.stamp_ns),
                                     f'image is {img.width}x{img.height} but its CameraInfo is for '
                                     f'{ci.width}x{ci.height}'))
                continue
            kept.append(img)
        kept.sort(key=lambda r: r.stamp_ns)
        unique: list[_BagImage] = []
        for img in kept:
            if unique and unique[-1].stamp_ns == img.stamp_ns:
                self.skipped.append((self._src(img.stamp_ns), 'duplicate image stamp (kept the first)'))
                continue
            unique.append(img)
        return unique

    def _decide_rectify(self, D, image_topic: str, rectify: bool | None) -> bool:
        """Whether to undistort images with coefficients ``D`` (``rectify`` None: unless the
        topic name says *rect*); notes an automatic decision in ``warnings``."""
        if not has_distortion(D):
            return False
        if rectify is None:
            rectify = 'rect' not in image_topic.rsplit('/', 1)[-1]
            note = ('undistorting the images with D (image topic is not *rect*)' if rectify else
                    f'{image_topic} is taken as already rectified (its CameraInfo has non-zero D); '
                    f'pass rectify=True if it is not')
            if note not in self.warnings:
                self.warnings.append(note)
        return bool(rectify)

    def _info_from_msg(self, msg, image_topic: str, rectify: bool | None) -> _BagCameraInfo:
        """Camera model of a ``sensor_msgs/CameraInfo``.

        Raises:
            ValueError: undistortion needed but impossible (unknown model, no image size).
        """
        K_rect = intrinsics_from_camera_info(msg.k, msg.p)   # P[:, :3] when set, else K
        D = np.asarray(msg.d, dtype=np.float64)
        w, h = int(msg.width), int(msg.height)
        if self._decide_rectify(D, image_topic, rectify):
            model = msg.distortion_model or 'plumb_bob'
            if model not in ('plumb_bob', 'rational_polynomial', 'equidistant'):
                raise ValueError(f'distortion model {model!r} cannot be undistorted (plumb_bob, '
                                 f'rational_polynomial, equidistant)')
            if not (w and h):
                raise ValueError('CameraInfo has no width/height; cannot build undistortion maps')
            K_raw = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            R = np.asarray(msg.r, dtype=np.float64).reshape(3, 3)
            return _BagCameraInfo(0, K_rect, w, h, CameraIntrinsics(K_raw, D, w, h, model), R if np.any(R) else None)
        return _BagCameraInfo(0, K_rect, w, h, None, None)

    def _info_from_yaml(self, cam: CameraIntrinsics, image_topic: str, rectify: bool | None) -> _BagCameraInfo:
        """Camera model of a camera YAML (:func:`load_camera_yaml`)."""
        if self._decide_rectify(cam.D, image_topic, rectify):
            return _BagCameraInfo(0, cam.K.copy(), cam.width, cam.height, cam, None)
        return _BagCameraInfo(0, cam.K.copy(), cam.width, cam.height, None, None)

    # -- access
    @property
    def name(self) -> str:
        return str(self.path)

    def _source(self, j: int) -> str:
        return self._src(self._stamps[j])

    def _rgb(self, j: int) -> np.ndarray:
        img = self._images[j]
        if img.msgtype == _COMPRESSED:
            bgr = cv2.imdecode(img.data, cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f'{self._source(j)}: undecodable CompressedImage')
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            rgb = image_msg_to_rgb(img)
        ci = self._infos[img.info]
        if ci.raw is not None:
            if img.info not in self._maps:
                self._maps[img.info] = undistort_maps(ci.raw, ci.K, ci.R)
            m1, m2 = self._maps[img.info]
            rgb = cv2.remap(rgb, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return np.array(rgb, dtype=np.uint8, copy=True)   # own the memory (not a view of the buffer)

    def _K(self, j: int) -> np.ndarray:
        return self._infos[self._images[j].info].K

    def _speed(self, j: int) -> float | None:
        return self._track.speed_at(self._stamps[j], int(self.max_speed_gap_s * NS_PER_S))

    def _gt(self, j: int) -> np.ndarray | None:
        rec = self._depth_raw.get(self._stamps[j])
        return None if rec is None else depth_msg_to_meters(rec)

    def _check_item(self, t: int, ctx: list[int]) -> str | None:
        K = self._K(t)
        for c in ctx:
            if not np.allclose(self._K(c), K):
                return f'context {self._source(c)} has other intrinsics than the target'
            if (self._images[c].height, self._images[c].width) != (self._images[t].height, self._images[t].width):
                return f'context {self._source(c)} has another image size than the target'
        return None

    def describe(self) -> str:
        pairing = ', '.join(f'{k} {v}' for k, v in self.k_pairing.items() if v)
        return super().describe() + f'\n  K pairing: {pairing or "-"}; odometry samples: {len(self._track)}'


