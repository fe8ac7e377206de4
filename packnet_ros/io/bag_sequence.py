"""Training sequence of a rosbag2 recording (:class:`BagSequence`): camera images with their
CameraInfo (or a camera YAML), odometry speed and optional ground-truth depth (a depth image
topic, or LiDAR PointCloud2 scans projected into the camera with the bag's ``/tf_static``)."""
from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..completion.sparse import project_to_depth
from ..geometry import intrinsics_from_camera_info
from ..imageproc import COLOR_ENCODINGS, ImageFormatError
from ..msgdata import NS_PER_S, decode_image_msg, depth_msg_to_meters, header_ns, image_msg_to_rgb, speed_from_odometry
from ..odometry import SpeedTrack
from ..pointcloud import cloud_msg_to_arrays
from .bag import BagMessage, bag_topics, iter_messages
from .camera_yaml import CameraIntrinsics, has_distortion, load_camera_yaml, undistort_maps
from .sequence import DataError, FrameSequence
from .stamps import StampIndex, nearest
from .transforms import StaticTransforms, frame_name

__all__ = ['BagSequence']

_COMPRESSED = 'sensor_msgs/msg/CompressedImage'
_CLOUD = 'sensor_msgs/msg/PointCloud2'
TF_STATIC = '/tf_static'
"""Topic of the static transforms (``tf2_msgs/TFMessage``) that place ``cloud_topic`` scans
in the camera frame."""


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
    frame_id: str = ''        # header.frame_id: the camera's optical frame (tf name, no leading "/")


@dataclass
class _BagCameraInfo:
    """Camera model of a group of images."""

    stamp_ns: int
    K: np.ndarray             # (3, 3) intrinsics of the (rectified) images the sequence returns
    width: int
    height: int
    raw: CameraIntrinsics | None   # set when the images must be undistorted
    R: np.ndarray | None
    R_rect: np.ndarray | None = None   # CameraInfo R when not identity: camera optical frame -> rectified frame


@dataclass
class _BagCloud:
    """One LiDAR scan of ``cloud_topic``: its finite points in its own frame."""

    stamp_ns: int
    frame_id: str             # header.frame_id (tf name, no leading "/")
    points: np.ndarray        # (N, 3) float32 x, y, z in metres, frame ``frame_id``


def _rectification(r) -> np.ndarray | None:
    """A CameraInfo's R (row-major 9) as (3, 3) when it is a rotation other than identity,
    else None (all zeros = unset, as uncalibrated drivers publish)."""
    flat = np.asarray(r, dtype=np.float64).reshape(-1)
    if flat.size != 9 or not np.any(flat):
        return None
    R = flat.reshape(3, 3)
    if np.allclose(R, np.eye(3), atol=1e-12) or np.abs(R.T @ R - np.eye(3)).max() > 1e-3:
        return None
    return R


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
        cloud_topic: optional ``sensor_msgs/PointCloud2`` LiDAR topic (float32 x, y, z in
            metres in the cloud's ``header.frame_id``), the other source of ground-truth depth
            (not together with ``depth_topic``). Each image gets the scan nearest to its stamp
            within ``cloud_tolerance_s`` (seconds, default 0.05; ``cloud_pairing`` counts exact
            / nearest / none over the targets). The scan is moved into the camera's optical
            frame (the image's ``header.frame_id``: x right, y down, z forward) with the chain
            of static transforms on ``/tf_static`` (``T_camera_lidar``; then the CameraInfo's R
            when it is not identity, the rectified frame), and projected with the sample's K at
            the image's size: depth = z in metres, the nearest return per pixel, NaN where no
            return lands (:func:`packnet_ros.completion.sparse.project_to_depth`, KITTI's
            ``proj_depth`` convention). All returns are kept (no range limit). Targets without
            a scan within the tolerance have ``gt_depth=None`` (counted in a warning); scans
            without float32 x, y, z fields are left out (warning).
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
            topic of another type, or no CameraInfo (and no ``intrinsics``); with
            ``cloud_topic``: no such topic, a topic of another type, ``depth_topic`` given too,
            an image or scan without ``header.frame_id``, or no ``/tf_static`` chain between a
            scan's frame and the camera frame (the message names both frames).
        ValueError: ``every`` < 1, bad context offsets.
    """

    kind = 'bag'

    def __init__(self, bag_path: str | Path, image_topic: str = '/camera/image_raw',
                 camera_info_topic: str = '/camera/camera_info', odom_topic: str | None = '/odom',
                 depth_topic: str | None = None, context_offsets: Sequence[int] = (-1, 1),
                 context_dt_s: Sequence[float] | None = None, tolerance_s: float | None = None,
                 max_speed_gap_s: float = 0.2, every: int = 1, rectify: bool | None = None,
                 intrinsics: str | Path | CameraIntrinsics | None = None, cloud_topic: str | None = None,
                 cloud_tolerance_s: float = 0.05):
        super().__init__(context_offsets, context_dt_s, tolerance_s)
        if operator.index(every) < 1:
            raise ValueError(f'every must be >= 1, got {every}')
        self.path = Path(bag_path)
        self.image_topic, self.camera_info_topic, self.odom_topic = image_topic, camera_info_topic, odom_topic
        self.depth_topic = depth_topic
        self.cloud_topic = cloud_topic or None
        self.cloud_tolerance_s = float(cloud_tolerance_s)
        if not (self.cloud_tolerance_s >= 0 and np.isfinite(self.cloud_tolerance_s)):
            raise ValueError(f'cloud_tolerance_s must be finite seconds >= 0, got {cloud_tolerance_s!r}')
        if self.cloud_topic and depth_topic:
            raise DataError(f'{bag_path}: give depth_topic ({depth_topic}) or cloud_topic ({cloud_topic}) as the '
                            f'ground-truth depth, not both')
        self.max_speed_gap_s = float(max_speed_gap_s)
        self.k_pairing = {'exact': 0, 'latest': 0, 'first': 0, 'yaml': 0}
        self.cloud_pairing = {'exact': 0, 'nearest': 0, 'none': 0}
        if not self.path.exists():
            raise DataError(f'no bag at {self.path}')
        want = self._topics_to_read(with_camera_info=intrinsics is None)
        if isinstance(intrinsics, (str, Path)):
            intrinsics = load_camera_yaml(intrinsics)
        self._depth_raw: dict[int, _BagImage] = {}
        self._clouds: list[_BagCloud] = []
        self._cloud_of: dict[int, int] = {}          # frame position -> index into _clouds
        self._T_cam_cloud: dict[tuple[str, str], np.ndarray] = {}
        self._tf = StaticTransforms()
        self._bad_clouds: list[str] = []
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
        if self.cloud_topic:
            self._pair_clouds()
        self._build(range(len(self._images)))
        if self.cloud_topic:
            self._report_cloud_pairing()

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
        if self.cloud_topic:
            if self.cloud_topic not in topics:
                clouds = sorted(t for t, ty in topics.items() if ty == _CLOUD)
                raise DataError(f'{self.path}: no cloud_topic {self.cloud_topic} (PointCloud2 topics: '
                                f'{clouds or "none"}; all topics: {sorted(topics)})')
            if topics[self.cloud_topic] != _CLOUD:
                raise DataError(f'{self.path}: cloud_topic {self.cloud_topic} is {topics[self.cloud_topic]}, '
                                f'expected {_CLOUD} (a depth image goes in depth_topic)')
            want.append(self.cloud_topic)
            if TF_STATIC in topics:
                want.append(TF_STATIC)
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
                elif m.topic == self.cloud_topic:
                    self._add_cloud(m)
                elif m.topic == TF_STATIC:
                    try:
                        self._tf.add_message(m.msg)
                    except (AttributeError, ValueError) as e:
                        self.warnings.append(f'unusable transform on {TF_STATIC} ignored: {e}')
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
                         bool(msg.is_bigendian), _buffer(msg), frame_id=frame_name(msg.header.frame_id))

    def _add_cloud(self, m: BagMessage) -> None:
        """Keep the finite x, y, z of one ``cloud_topic`` scan (an unusable one is noted)."""
        stamp = self._stamp_or_log(m)
        try:
            xyz, _ = cloud_msg_to_arrays(m.msg)
        except ValueError as e:
            self._bad_clouds.append(f'stamp {stamp}: {e}')
            return
        xyz = xyz.reshape(-1, 3)
        xyz = np.ascontiguousarray(xyz[np.all(np.isfinite(xyz), axis=1)], dtype=np.float32)
        self._clouds.append(_BagCloud(stamp, frame_name(m.msg.header.frame_id), xyz))

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
            return _BagImage(stamp, m.msgtype, bgr.shape[0], bgr.shape[1], msg.format, 0, False, data,
                             frame_id=frame_name(msg.header.frame_id))
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
        R_rect = _rectification(msg.r)
        if self._decide_rectify(D, image_topic, rectify):
            model = msg.distortion_model or 'plumb_bob'
            if model not in ('plumb_bob', 'rational_polynomial', 'equidistant'):
                raise ValueError(f'distortion model {model!r} cannot be undistorted (plumb_bob, '
                                 f'rational_polynomial, equidistant)')
            if not (w and h):
                raise ValueError('CameraInfo has no width/height; cannot build undistortion maps')
            K_raw = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            R = np.asarray(msg.r, dtype=np.float64).reshape(3, 3)
            return _BagCameraInfo(0, K_rect, w, h, CameraIntrinsics(K_raw, D, w, h, model), R if np.any(R) else None,
                                  R_rect)
        return _BagCameraInfo(0, K_rect, w, h, None, None, R_rect)

    def _info_from_yaml(self, cam: CameraIntrinsics, image_topic: str, rectify: bool | None) -> _BagCameraInfo:
        """Camera model of a camera YAML (:func:`load_camera_yaml`)."""
        if self._decide_rectify(cam.D, image_topic, rectify):
            return _BagCameraInfo(0, cam.K.copy(), cam.width, cam.height, cam, None)
        return _BagCameraInfo(0, cam.K.copy(), cam.width, cam.height, None, None)

    # -- LiDAR scans (cloud_topic)
    def _pair_clouds(self) -> None:
        """Pair every image with the scan nearest to its stamp within ``cloud_tolerance_s``,
        look up ``T_camera_lidar`` for every (camera frame, scan frame) that occurs, drop the
        scans no image uses.

        Raises:
            DataError: an image or scan without frame_id, or no /tf_static chain between them.
        """
        if self._bad_clouds:
            self.warnings.append(f'{len(self._bad_clouds)} scans on {self.cloud_topic} are unusable and left out '
                                 f'(first: {self._bad_clouds[0]})')
        if not self._clouds:
            self.warnings.append(f'{self.cloud_topic} has no usable PointCloud2 messages: gt_depth is None')
            return
        self._clouds.sort(key=lambda c: c.stamp_ns)
        stamps = [c.stamp_ns for c in self._clouds]
        tol_ns = int(round(self.cloud_tolerance_s * NS_PER_S))
        used: dict[int, int] = {}
        for j, img in enumerate(self._images):
            k = nearest(stamps, img.stamp_ns, tol_ns)
            if k is None:
                continue
            if k not in used:
                used[k] = len(used)
            self._cloud_of[j] = used[k]
            self._transform_for(img.frame_id, self._clouds[k].frame_id)
        self._clouds = [self._clouds[k] for k in used]   # used[k] = position in insertion order

    def _transform_for(self, camera_frame: str, cloud_frame: str) -> np.ndarray:
        """``T_camera_lidar`` (4x4, metres) from the bag's /tf_static, cached.

        Raises:
            DataError: an empty frame id, or no chain of static transforms between the frames.
        """
        key = (camera_frame, cloud_frame)
        if key in self._T_cam_cloud:
            return self._T_cam_cloud[key]
        if not camera_frame or not cloud_frame:
            which = (f'the images on {self.image_topic}' if not camera_frame else f'the scans on {self.cloud_topic}')
            raise DataError(f'{self.path}: {which} have no header.frame_id: the LiDAR scans cannot be placed '
                            f'in the camera (image frame "{camera_frame}", scan frame "{cloud_frame}")')
        try:
            T = self._tf.lookup(camera_frame, cloud_frame)
        except LookupError:
            known = ', '.join(self._tf.frames) or f'none: the bag has no transforms on {TF_STATIC}'
            raise DataError(f'{self.path}: no transform from LiDAR frame "{cloud_frame}" ({self.cloud_topic}) to '
                            f'camera frame "{camera_frame}" ({self.image_topic} header.frame_id) in {TF_STATIC} '
                            f'(frames known: {known}); record the static transforms with the bag '
                            f'(ros2 bag record {TF_STATIC} ...)') from None
        self._T_cam_cloud[key] = T
        return T

    def _report_cloud_pairing(self) -> None:
        """Count exact / nearest / no scan over the targets; warn about targets without one."""
        for t, _ in self._items:
            k = self._cloud_of.get(t)
            if k is None:
                self.cloud_pairing['none'] += 1
            elif self._clouds[k].stamp_ns == self._stamps[t]:
                self.cloud_pairing['exact'] += 1
            else:
                self.cloud_pairing['nearest'] += 1
        if self.cloud_pairing['none'] and self._clouds:
            self.warnings.append(f'{self.cloud_pairing["none"]} of {len(self._items)} targets have no scan on '
                                 f'{self.cloud_topic} within {self.cloud_tolerance_s * 1e3:.0f} ms: no LiDAR depth '
                                 f'for them (gt_depth None)')

    def _cloud_depth(self, j: int, k: int) -> np.ndarray:
        """Scan ``k`` projected into image ``j``: (H, W) float32 z in metres, NaN = no return."""
        img, cloud = self._images[j], self._clouds[k]
        T = self._T_cam_cloud[(img.frame_id, cloud.frame_id)]
        R, t = T[:3, :3], T[:3, 3]
        R_rect = self._infos[img.info].R_rect
        if R_rect is not None:  # camera optical frame -> rectified frame of the (rectified) image
            R, t = R_rect @ R, R_rect @ t
        points = cloud.points.astype(np.float64) @ R.T + t
        depth = project_to_depth(points, self._K(j), (img.height, img.width))
        depth[depth == 0] = np.nan
        return depth

    def has_gt(self, j: int) -> bool:
        """Whether frame position ``j`` has ground-truth depth (a depth image at its stamp, or
        a scan within ``cloud_tolerance_s``), without decoding anything."""
        return self._stamps[j] in self._depth_raw or j in self._cloud_of

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
        k = self._cloud_of.get(j)
        if k is not None:
            return self._cloud_depth(j, k)
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
        text = super().describe() + f'\n  K pairing: {pairing or "-"}; odometry samples: {len(self._track)}'
        if self.cloud_topic:
            clouds = ', '.join(f'{k} {v}' for k, v in self.cloud_pairing.items() if v)
            text += (f'\n  LiDAR {self.cloud_topic} (tolerance {self.cloud_tolerance_s * 1e3:.0f} ms) per target: '
                     f'{clouds or "-"}')
        return text


