"""numpy <-> ROS 2 message conversions (sensor_msgs Image, CameraInfo, PointCloud2).

Replaces cv_bridge / sensor_msgs_py (no working wheels with numpy 2): decoding honours
``step`` and ``is_bigendian`` (see :mod:`packnet_ros.imageproc`); clouds are packed from
numpy structured arrays in one copy. Builders return rclpy message instances; they are
also used to write bags (serialised with ``rclpy.serialization``).
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, LaserScan, PointCloud2, PointField
from std_msgs.msg import Header

from ..completion.stage import SparseInput, transform_points
from ..geometry import intrinsics_from_camera_info
from ..imageproc import ImageFormatError, depth_to_buffer
from ..msgdata import decode_image_msg, depth_msg_to_meters, image_msg_to_rgb, stamp_to_ns
from ..pipeline import FrameInput, FrameOutput
from ..pointcloud import cloud_msg_to_arrays

_POINTFIELD_TYPES = {np.dtype('<f4'): PointField.FLOAT32, np.dtype('<f8'): PointField.FLOAT64,
                     np.dtype('<u4'): PointField.UINT32, np.dtype('uint8'): PointField.UINT8}


def make_header(stamp_ns: int, frame_id: str) -> Header:
    """std_msgs/Header with a stamp given in nanoseconds."""
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return h


def rgb_to_image_msg(rgb: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 RGB -> rgb8 Image."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return Image(header=header, height=rgb.shape[0], width=rgb.shape[1], encoding='rgb8',
                 is_bigendian=0, step=rgb.shape[1] * 3, data=rgb.tobytes())


def depth_to_image_msg(depth: np.ndarray, header: Header) -> Image:
    """(H, W) float32 metres -> 32FC1 Image (REP 118; NaN / +-Inf kept per REP 117)."""
    encoding, step, data = depth_to_buffer(depth)
    return Image(header=header, height=depth.shape[0], width=depth.shape[1], encoding=encoding,
                 is_bigendian=0, step=step, data=data)


def confidence_to_image_msg(confidence: np.ndarray, header: Header) -> Image:
    """(H, W) float32 confidence in [0, 1] -> 32FC1 Image (``~/confidence``)."""
    return depth_to_image_msg(np.clip(np.asarray(confidence, dtype=np.float32), 0.0, 1.0), header)


def camera_info_to_K(msg) -> np.ndarray:
    """(3, 3) intrinsics of a CameraInfo: P's left 3x3 when P is set, else K.

    Raises:
        ValueError: uncalibrated camera_info (all zeros).
    """
    return intrinsics_from_camera_info(msg.k, msg.p)


def make_camera_info(header: Header, K: np.ndarray, width: int, height: int) -> CameraInfo:
    """Monocular rectified CameraInfo: K, P = [K | 0], R = I, no distortion (plumb_bob zeros)."""
    K = np.asarray(K, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(header=header, width=int(width), height=int(height), distortion_model='plumb_bob',
                      d=[0.0] * 5, k=K.reshape(-1).tolist(), r=np.eye(3).reshape(-1).tolist(),
                      p=P.reshape(-1).tolist())


def resized_camera_info(info, header: Header, width: int, height: int) -> CameraInfo:
    """CameraInfo for the image resized to (width, height) (image_proc ResizeNode convention).

    K[0], K[2], P[0], P[2], P[3] scale by sx = width / info.width and K[4], K[5], P[5],
    P[6] by sy; distortion and R are kept; binning and ROI are reset. An ``info`` whose
    width/height are 0 is taken to be at the (width, height) given.
    """
    sx = width / info.width if info.width else 1.0
    sy = height / info.height if info.height else 1.0
    k = np.array(info.k, dtype=np.float64)
    p = np.array(info.p, dtype=np.float64)
    k[[0, 2]] *= sx
    k[[4, 5]] *= sy
    p[[0, 2, 3]] *= sx
    p[[5, 6]] *= sy
    return CameraInfo(header=header, width=int(width), height=int(height),
                      distortion_model=info.distortion_model or 'plumb_bob', d=list(info.d),
                      k=k.tolist(), r=list(info.r), p=p.tolist())


def cloud_to_msg(cloud: np.ndarray, header: Header) -> PointCloud2:
    """Structured (H, W) point array -> organized PointCloud2.

    Fields come from the array's dtype (x, y, z float32, optional packed ``rgb`` float32),
    little-endian, ``is_dense`` false (NaN points mark invalid pixels), as depth_image_proc.
    """
    if cloud.ndim != 2 or cloud.dtype.names is None:
        raise ValueError('cloud must be a structured (H, W) array')
    fields = []
    for name in cloud.dtype.names:
        dt, offset = cloud.dtype.fields[name][:2]
        fields.append(PointField(name=name, offset=offset, datatype=_POINTFIELD_TYPES[dt], count=1))
    H, W = cloud.shape
    return PointCloud2(header=header, height=H, width=W, fields=fields, is_bigendian=False,
                       point_step=cloud.dtype.itemsize, row_step=cloud.dtype.itemsize * W,
                       data=np.ascontiguousarray(cloud).tobytes(), is_dense=False)


class FrameInputError(ValueError):
    """A camera frame whose messages cannot be used.

    Attributes:
        kind: short key for throttled warnings ("bad_image_<kind>", "bad_camera_info",
            "size_mismatch").
    """

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def frame_from_msgs(image: Image, info: CameraInfo) -> FrameInput:
    """An image and its CameraInfo -> :class:`packnet_ros.pipeline.FrameInput` (what the node
    hands to the pipeline).

    Raises:
        FrameInputError: undecodable image, uncalibrated CameraInfo, or a CameraInfo for
            another image size.
    """
    try:
        rgb = image_msg_to_rgb(image)
    except ImageFormatError as exc:
        raise FrameInputError(f'bad image: {exc}', f'bad_image_{exc.kind}') from None
    try:
        K = camera_info_to_K(info)
    except ValueError as exc:  # throttled per kind of problem (first words), not per value
        raise FrameInputError(f'bad camera_info: {exc}', 'bad_camera_info:' + ' '.join(str(exc).split()[:5])) from None
    H, W = rgb.shape[:2]
    if info.width and info.height and (info.width, info.height) != (W, H):
        raise FrameInputError(f'camera_info is for {info.width}x{info.height} but the image is {W}x{H}',
                              'size_mismatch')
    return FrameInput(rgb, K, stamp_to_ns(image.header.stamp))


def output_msgs(out: FrameOutput, header: Header, info: CameraInfo, info_wanted: bool = True
                ) -> tuple[Image, CameraInfo | None, PointCloud2 | None]:
    """Messages the node publishes for one frame: 32FC1 depth, the CameraInfo of its
    resolution (when ``info_wanted``) and the organized cloud (when the pipeline built one).
    Every message carries the input image's ``header`` (stamp and optical frame)."""
    h, w = out.depth.shape
    depth_msg = depth_to_image_msg(out.depth, header)
    info_msg = resized_camera_info(info, header, w, h) if info_wanted else None
    cloud_msg = cloud_to_msg(out.cloud, header) if out.cloud is not None else None
    return depth_msg, info_msg, cloud_msg


__all__ = ['FrameInputError', 'camera_info_to_K', 'cloud_to_msg', 'confidence_to_image_msg', 'decode_image_msg', 'depth_msg_to_meters',
           'depth_to_image_msg', 'frame_from_msgs', 'image_msg_to_rgb', 'make_camera_info', 'make_header',
           'output_msgs', 'resized_camera_info', 'rgb_to_image_msg', 'stamp_to_ns']


# -- navigation outputs (~/scan, ~/obstacles) ------------------------------------------------
def laser_scan_to_msg(scan, header: Header) -> LaserScan:
    """:class:`packnet_ros.postprocess.obstacles.LaserScanData` -> sensor_msgs/LaserScan.

    ``header`` gives the stamp (the input image's); its ``frame_id`` is replaced by the
    scan's target frame when the scan names one. Ranges keep REP 117 marking (+Inf / -Inf,
    never NaN); ``time_increment`` and ``scan_time`` are 0 (all beams from one exposure);
    no intensities."""
    h = Header(stamp=header.stamp, frame_id=scan.frame_id or header.frame_id)
    return LaserScan(header=h, angle_min=float(scan.angle_min), angle_max=float(scan.angle_max),
                     angle_increment=float(scan.angle_increment), time_increment=0.0, scan_time=0.0,
                     range_min=float(scan.range_min), range_max=float(scan.range_max),
                     ranges=np.asarray(scan.ranges, dtype=np.float32).tolist(), intensities=[])


def points_to_cloud_msg(points: np.ndarray, header: Header, frame_id: str = '') -> PointCloud2:
    """(N, 3) points -> unorganized PointCloud2 (height 1, width N, float32 x, y, z at
    offsets 0, 4, 8, little-endian, ``is_dense`` true when every point is finite).

    ``header`` gives the stamp; ``frame_id`` (when given) replaces its frame.

    Raises:
        ValueError: ``points`` is not (N, 3).
    """
    p = np.asarray(points, dtype='<f4')
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got {p.shape}')
    h = Header(stamp=header.stamp, frame_id=frame_id or header.frame_id)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate('xyz')]
    return PointCloud2(header=h, height=1, width=len(p), fields=fields, is_bigendian=False, point_step=12,
                       row_step=12 * len(p), data=np.ascontiguousarray(p).tobytes(),
                       is_dense=bool(np.isfinite(p).all()))


def lidar_to_cloud_msg(points: np.ndarray, header: Header) -> PointCloud2:
    """(N, 4) LiDAR returns (x, y, z in metres in the sensor frame, intensity) -> unorganized
    PointCloud2 (height 1, width N, float32 ``x``, ``y``, ``z``, ``intensity`` at offsets
    0, 4, 8, 12, point_step 16, little-endian, ``is_dense`` true when every point is finite),
    the layout of a Velodyne driver's cloud without its ``ring`` field.

    Raises:
        ValueError: ``points`` is not (N, 4).
    """
    p = np.asarray(points, dtype='<f4')
    if p.ndim != 2 or p.shape[1] != 4:
        raise ValueError(f'points must be (N, 4) x, y, z, intensity, got {p.shape}')
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate(('x', 'y', 'z', 'intensity'))]
    return PointCloud2(header=header, height=1, width=len(p), fields=fields, is_bigendian=False, point_step=16,
                       row_step=16 * len(p), data=np.ascontiguousarray(p).tobytes(),
                       is_dense=bool(np.isfinite(p).all()))


def obstacles_to_msg(obstacles, header: Header) -> PointCloud2:
    """:class:`packnet_ros.postprocess.obstacles.ObstacleCloud` -> unorganized PointCloud2 in
    its target frame with the stamp of ``header`` (:func:`points_to_cloud_msg`)."""
    return points_to_cloud_msg(obstacles.points, header, obstacles.frame_id)


__all__ += ['laser_scan_to_msg', 'lidar_to_cloud_msg', 'obstacles_to_msg', 'points_to_cloud_msg']


# -- sparse input of depth completion (completion.topic) -------------------------------------
def sparse_from_cloud_msg(msg: PointCloud2, T_camera_cloud: np.ndarray) -> SparseInput:
    """A LiDAR PointCloud2 (float32 x, y, z; any other fields, point_step, row_step,
    organized or not, either endianness) -> :class:`packnet_ros.completion.stage.SparseInput`
    with its points moved into the camera's optical frame by ``T_camera_cloud`` (4, 4).
    Non-finite points are kept (the completion ignores them).

    Raises:
        ValueError: no float32 x, y, z fields, or a buffer shorter than ``height * row_step``
            or rows shorter than ``width * point_step``.
    """
    if msg.point_step <= 0 or msg.row_step < msg.width * msg.point_step \
            or len(msg.data) < msg.height * msg.row_step:
        raise ValueError(f'malformed PointCloud2: {len(msg.data)} data bytes for height {msg.height}, '
                         f'width {msg.width}, point_step {msg.point_step}, row_step {msg.row_step}')
    points, _ = cloud_msg_to_arrays(msg)
    return SparseInput(stamp_to_ns(msg.header.stamp), points=transform_points(points.reshape(-1, 3), T_camera_cloud))


def sparse_from_depth_msg(msg: Image) -> SparseInput:
    """A sparse depth Image in the camera image (32FC1 metres / 16UC1 millimetres; 0 or NaN =
    no value; any size) -> :class:`packnet_ros.completion.stage.SparseInput`.

    Raises:
        ValueError: another encoding or a malformed buffer (ImageFormatError is a ValueError).
    """
    return SparseInput(stamp_to_ns(msg.header.stamp), depth=depth_msg_to_meters(msg))


__all__ += ['sparse_from_cloud_msg', 'sparse_from_depth_msg']
