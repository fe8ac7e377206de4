"""Duck-typed readers of ROS message fields, shared by the node, the bag readers and the
evaluator. Nothing here imports rclpy or a message module: rclpy messages and rosbags
dataclasses have the same field names, so one function serves both.

Conventions: stamps are integer nanoseconds (``sec * 1e9 + nanosec``); images follow
REP 118 / ``sensor_msgs/Image`` (see :mod:`packnet_ros.imageproc`); speeds are m/s.
"""
from __future__ import annotations

import math

import numpy as np

from .imageproc import check_camera_encoding, decode_image, depth_image_to_meters, to_rgb8

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def header_ns(msg) -> int:
    """Header stamp of a stamped message (``msg.header.stamp``) in integer nanoseconds."""
    return stamp_to_ns(msg.header.stamp)


def decode_image_msg(msg) -> np.ndarray:
    """Any supported ``sensor_msgs/Image`` -> numpy array in its encoding's dtype and channels.

    Raises:
        packnet_ros.imageproc.ImageFormatError: unsupported encoding or malformed buffer.
    """
    return decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))


def image_msg_to_rgb(msg) -> np.ndarray:
    """Camera image message (rgb8, bgr8, rgba8, bgra8, mono8 or 8UC1) -> (H, W, 3) uint8 RGB.

    Raises:
        packnet_ros.imageproc.ImageFormatError: other encodings (the message lists the camera
            encodings, not the depth ones) or a malformed buffer.
    """
    check_camera_encoding(msg.encoding)
    return to_rgb8(decode_image_msg(msg), msg.encoding)


def depth_msg_to_meters(msg) -> np.ndarray:
    """Depth image message (32FC1 metres or 16UC1 millimetres) -> (H, W) float32 metres, NaN invalid.

    Raises:
        packnet_ros.imageproc.ImageFormatError: other encodings or a malformed buffer.
    """
    return depth_image_to_meters(decode_image_msg(msg), msg.encoding)


def speed_from_odometry(msg) -> float:
    """Vehicle speed (m/s) of a ``nav_msgs/Odometry`` or a ``TwistStamped``/``Twist``-like
    message: the norm of the linear twist (frame-independent, so the twist's
    ``child_frame_id`` orientation does not matter). May be NaN/Inf for bad input."""
    twist = msg.twist
    lin = twist.twist.linear if hasattr(twist, 'twist') else twist.linear
    return math.sqrt(float(lin.x) ** 2 + float(lin.y) ** 2 + float(lin.z) ** 2)
