"""KITTI raw drive -> rosbag2, with the node's own rclpy message builders.

Messages are built as rclpy messages (the same constructors the node publishes with)
and serialised with ``rclpy.serialization``; tf2_msgs (no rclpy wheel) goes through the
rosbags typestore (:func:`packnet_ros.io.bag.write_tf_static`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message

from ..evaluation.runner import BagTopics
from ..io.bag import BagWriter, rotation_to_quaternion, write_tf_static
from .conversions import depth_to_image_msg, lidar_to_cloud_msg, make_camera_info, make_header, rgb_to_image_msg


def write_msg(bag: BagWriter, topic: str, msgtype: str, t_ns: int, msg) -> None:
    """Serialise an rclpy message and write it to ``bag``."""
    bag.write(topic, msgtype, t_ns, serialize_message(msg))


@dataclass
class KittiBagTopics(BagTopics):
    """Topics (:class:`packnet_ros.evaluation.runner.BagTopics` defaults) and frame names
    written by :func:`write_kitti_bag` (the demo's defaults)."""

    camera_frame: str = 'cam2_optical'
    base_frame: str = 'base_link'
    odom_frame: str = 'odom'
    lidar_frame: str = 'velodyne'
    lidar_points: str = '/lidar/points'


@dataclass
class BagSummary:
    """What a conversion wrote: message counts per topic, frames, skipped frames with reasons."""

    path: Path
    counts: dict = field(default_factory=dict)
    frames: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def write_kitti_bag(drive, out: str | Path, topics: KittiBagTopics | None = None, storage: str = 'mcap',
                    overwrite: bool = False, frames: Sequence[int] | None = None) -> BagSummary:
    """Convert a KITTI raw drive folder into a rosbag2 a ROS user would record.

    Per frame: the rgb8 image with its real timestamp and the camera's optical frame,
    the matching CameraInfo (rectified K, P = [K | 0], no distortion), the projected LiDAR
    depth as a 32FC1 image (metres, NaN where no return, same stamp and frame as the
    image), nav_msgs/Odometry from the OXTS packet (pose relative to the first frame
    in ``odom``, twist (vf, vl, vu) / (wf, wl, wu) in ``base_link`` = the OXTS vehicle
    frame, x forward, y left, z up), and, for drives with ``velodyne_points/``, the
    frame's Velodyne scan on ``topics.lidar_points`` as a PointCloud2 (float32 x, y, z,
    intensity = KITTI reflectance; frame ``velodyne``; the image's stamp). /tf_static holds
    base_link -> velodyne and base_link -> camera from the KITTI calibration, so
    velodyne -> camera is their chain (= ``drive.T_cam_velo``).

    Args:
        drive: a :class:`packnet_ros.io.kitti.KittiDrive`.
        out: bag directory to create.
        frames: subset of frame indices (default: all with an image).

    Returns:
        :class:`BagSummary`; frames without OXTS or LiDAR are written without those
        messages and listed in ``skipped`` with the reason.
    """
    topics = topics or KittiBagTopics()
    summary = BagSummary(Path(out))
    frames = list(drive.frames if frames is None else frames)
    if not frames:
        raise ValueError(f'{drive.path}: no frames to convert')
    T_imu_ref = None
    with BagWriter(out, storage, overwrite) as bag:
        t_first = drive.timestamp_ns(frames[0])
        write_tf_static(bag, [(np.linalg.inv(drive.T_velo_imu), topics.base_frame, topics.lidar_frame),
                              (np.linalg.inv(drive.T_cam_imu), topics.base_frame, topics.camera_frame)],
                        t_first, topics.tf_static)
        H, W = drive.image_size
        has_velodyne = drive.has_velodyne()
        for i in frames:
            t = drive.timestamp_ns(i)
            header = make_header(t, topics.camera_frame)
            write_msg(bag, topics.camera_info, 'sensor_msgs/msg/CameraInfo', t,
                          make_camera_info(header, drive.K, W, H))
            write_msg(bag, topics.image, 'sensor_msgs/msg/Image', t, rgb_to_image_msg(drive.image(i), header))
            if drive.has_gt(i):
                write_msg(bag, topics.depth_gt, 'sensor_msgs/msg/Image', t,
                              depth_to_image_msg(drive.gt_depth(i), header))
            else:
                summary.skipped.append((i, 'no LiDAR ground truth'))
            if drive.has_velodyne(i):
                write_msg(bag, topics.lidar_points, 'sensor_msgs/msg/PointCloud2', t,
                          lidar_to_cloud_msg(drive.velodyne(i), make_header(t, topics.lidar_frame)))
            elif has_velodyne:
                summary.skipped.append((i, 'no Velodyne scan'))
            try:
                t_odom = drive.oxts_timestamp_ns(i)
                T = drive.oxts_pose(i)
                lin, ang = drive.velocity(i)
            except ValueError as exc:
                summary.skipped.append((i, f'no odometry: {exc}'))
            else:
                T_imu_ref = np.linalg.inv(T) if T_imu_ref is None else T_imu_ref
                write_msg(bag, topics.odom, 'nav_msgs/msg/Odometry', t_odom,
                              _odometry(T_imu_ref @ T, lin, ang, t_odom, topics))
            summary.frames.append(i)
        summary.counts = dict(bag.counts)
    return summary


def _odometry(T: np.ndarray, linear, angular, stamp_ns: int, topics: KittiBagTopics) -> Odometry:
    msg = Odometry(header=make_header(stamp_ns, topics.odom_frame), child_frame_id=topics.base_frame)
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = rotation_to_quaternion(T[:3, :3])
    tw = msg.twist.twist
    tw.linear.x, tw.linear.y, tw.linear.z = (float(v) for v in linear)
    tw.angular.x, tw.angular.y, tw.angular.z = (float(v) for v in angular)
    return msg
