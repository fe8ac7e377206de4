"""LiDAR ground truth: PointCloud2 scans projected into the camera image.

Plain numpy + rosbags (no rclpy). The extrinsics come from the recording's static
transforms (``tf2_msgs/TFMessage`` on ``/tf_static``, chained and inverted as needed)
or are given as a 4x4 ``T_camera_lidar``.

The transform tree and quaternion helpers live in :mod:`packnet_ros.io.transforms`
(shared with the training reader :class:`packnet_ros.io.bag_sequence.BagSequence`); they
are re-exported here.

Conventions (DESIGN.md):
    * ``T_a_b`` maps points from frame b into frame a: ``p_a = T_a_b @ p_b``.
    * tf2: a ``TransformStamped`` with ``header.frame_id`` = parent and
      ``child_frame_id`` = child holds ``T_parent_child`` (translation, then rotation as
      a quaternion x, y, z, w). Frame ids are compared without a leading "/".
    * Projection (pinhole, the camera's optical frame, z forward): a point (x, y, z) with
      z > 0 lands on pixel ``(u, v) = (floor(fx x / z + cx + 0.5), floor(fy y / z + cy + 0.5))``,
      i.e. pixel centres at integer coordinates as everywhere in this project (the inverse
      of :func:`packnet_ros.pointcloud.depth_to_xyz`). Its depth is z (along the optical
      axis, as REP 118 depth images). When several returns hit one pixel the nearest
      (smallest z) is kept: a surface occludes what is behind it. Pixels without a
      return are NaN (REP 117).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..completion.sparse import project_to_depth
from ..geometry import intrinsics_from_camera_info
from ..io.transforms import StaticTransforms as _TransformTree
from ..io.transforms import frame_name as _frame
from ..io.transforms import quaternion_to_rotation, transform_to_matrix
from ..msgdata import header_ns
from ..pointcloud import cloud_msg_to_arrays
from .sources import DepthFrame, Issues, count_out_of_order, read_messages_safely

__all__ = ['StaticTransforms', 'quaternion_to_rotation', 'transform_to_matrix', 'load_extrinsics',
           'project_points', 'lidar_ground_truth', 'camera_model_from_bag']


class StaticTransforms(_TransformTree):
    """:class:`packnet_ros.io.transforms.StaticTransforms` (the tree of static transforms)
    that reads a recording's ``/tf_static`` with the evaluator's issue counting."""

    @classmethod
    def from_bag(cls, bag: str | Path, topic: str = '/tf_static', issues: Issues | None = None
                 ) -> 'StaticTransforms':
        """All transforms of ``topic`` in a bag (a missing topic gives an empty tree)."""
        tree = cls()
        issues = issues if issues is not None else Issues()
        for m in read_messages_safely(bag, [topic], issues):
            try:
                tree.add_message(m.msg)
            except (AttributeError, ValueError) as exc:
                issues.add(f'unusable transform on {topic}', str(exc))
        return tree


def load_extrinsics(path: str | Path) -> np.ndarray:
    """Read a 4x4 ``T_camera_lidar`` (LiDAR points -> camera optical frame) from a file.

    Accepted: a text file of 16 numbers (4 rows of 4; a 3x4 matrix of 12 numbers gets
    the row 0 0 0 1), or YAML: a list (flat or nested) or a mapping with one of the keys
    ``T_camera_lidar``, ``extrinsics``, ``matrix``, ``data``, ``T`` holding such a list.

    Raises:
        FileNotFoundError: no file.
        ValueError: not 12/16 numbers, or the rotation part is not a rotation.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no extrinsics file {path}')
    text = path.read_text()
    values = None
    if path.suffix.lower() in ('.yaml', '.yml', '.json'):
        import yaml
        doc = yaml.safe_load(text)
        if isinstance(doc, dict):
            for key in ('T_camera_lidar', 'extrinsics', 'matrix', 'data', 'T'):
                if key in doc:
                    doc = doc[key]
                    if isinstance(doc, dict) and 'data' in doc:  # OpenCV/ROS style {rows, cols, data}
                        doc = doc['data']
                    break
        values = doc
    else:
        values = [float(v) for v in text.replace(',', ' ').replace('[', ' ').replace(']', ' ').split()]
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{path}: expected 12 or 16 numbers (a 3x4 or 4x4 T_camera_lidar): {exc}') from exc
    if arr.size == 12:
        arr = np.concatenate([arr, [0.0, 0.0, 0.0, 1.0]])
    if arr.size != 16 or not np.all(np.isfinite(arr)):
        raise ValueError(f'{path}: expected 12 or 16 finite numbers (a 3x4 or 4x4 T_camera_lidar), '
                         f'got {arr.size}')
    T = arr.reshape(4, 4)
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or abs(np.linalg.det(R) - 1) > 1e-3 or \
            not np.allclose(T[3], [0, 0, 0, 1]):
        raise ValueError(f'{path}: not a rigid transform (rotation part not orthonormal or last row '
                         f'not 0 0 0 1): {T.tolist()}')
    return T


def project_points(points: np.ndarray, T_camera_lidar: np.ndarray, K: np.ndarray,
                   shape: tuple[int, int], max_depth: float | None = None) -> np.ndarray:
    """Sparse depth image of LiDAR points seen by a pinhole camera.

    Args:
        points: (..., 3) float points in the LiDAR frame (NaN/Inf points are ignored).
        T_camera_lidar: (4, 4) LiDAR -> camera optical frame.
        K: (3, 3) intrinsics of the (H, W) image.
        shape: (H, W).
        max_depth: returns farther than this (z, metres) are left out (they cannot be
            valid ground truth); None keeps all.

    Returns:
        (H, W) float32 depth (z in the camera frame) in metres: the nearest return per
        pixel, NaN where there is none. Points with z <= 0 or outside the image are dropped.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    p = p[np.all(np.isfinite(p), axis=1)]
    T = np.asarray(T_camera_lidar, dtype=np.float64)
    depth = project_to_depth(p @ T[:3, :3].T + T[:3, 3], K, shape, max_depth)
    depth[depth == 0] = np.nan
    return depth


def camera_model_from_bag(bag: str | Path, info_topic: str, issues: Issues
                          ) -> tuple[np.ndarray | None, tuple[int, int] | None, str]:
    """(K, (H, W), optical frame_id) from the first usable CameraInfo of a bag topic."""
    for m in read_messages_safely(bag, [info_topic], issues):
        info = m.msg
        try:
            K = intrinsics_from_camera_info(info.k, info.p)
        except ValueError:
            continue
        shape = (int(info.height), int(info.width)) if info.height and info.width else None
        return K, shape, _frame(info.header.frame_id)
    return None, None, ''


def lidar_ground_truth(bag: str | Path, topics, issues: Issues, image_shape: tuple[int, int] | None = None,
                       K: np.ndarray | None = None, lidar_extrinsics: np.ndarray | None = None,
                       max_depth: float | None = None, camera_frame: str | None = None) -> list[DepthFrame]:
    """Ground-truth depth frames from the LiDAR clouds of a recording.

    Every ``PointCloud2`` on ``topics.cloud_gt`` (any layout with float32 x, y, z) is
    projected into the camera (:func:`project_points`) at its own header stamp; the
    evaluation associates it with the nearest camera frame within the stamp tolerance.

    Args:
        bag: the recording.
        topics: a :class:`packnet_ros.evaluation.runner.BagTopics` (``cloud_gt``,
            ``camera_info``, ``tf_static``).
        issues: where unusable clouds are counted, by reason.
        image_shape, K: the camera's (H, W) and intrinsics; taken from the bag's first
            CameraInfo when not given.
        lidar_extrinsics: 4x4 ``T_camera_lidar`` for every cloud; when None the transform
            from each cloud's ``header.frame_id`` to the camera's optical frame is looked
            up in ``topics.tf_static``.
        max_depth: returns beyond this distance are dropped (see :func:`project_points`).
        camera_frame: the camera's optical frame (default: the CameraInfo's frame_id).

    Returns:
        One :class:`DepthFrame` per usable cloud (frame_id = the camera frame), in bag order.
        Clouds without a transform, without x/y/z fields or when the camera model is
        unknown are counted in ``issues``.
    """
    info_K, info_shape, info_frame = camera_model_from_bag(bag, topics.camera_info, issues)
    K = info_K if K is None else np.asarray(K, dtype=np.float64)
    shape = image_shape or info_shape
    camera_frame = _frame(camera_frame or info_frame)
    if K is None or shape is None:
        issues.add(f'no camera model for projecting the LiDAR (no calibrated CameraInfo with a size on '
                   f'{topics.camera_info})')
        return []
    tree = None if lidar_extrinsics is not None else StaticTransforms.from_bag(bag, topics.tf_static, issues)
    frames: list[DepthFrame] = []
    for m in read_messages_safely(bag, [topics.cloud_gt], issues):
        cloud = m.msg
        t = header_ns(cloud)
        if lidar_extrinsics is not None:
            T = np.asarray(lidar_extrinsics, dtype=np.float64)
        else:
            lidar_frame = _frame(cloud.header.frame_id)
            T = tree.lookup_or_none(camera_frame, lidar_frame)
            if T is None:
                known = ', '.join(tree.frames) or 'none'
                issues.add(f'LiDAR cloud without a transform: no chain from "{lidar_frame or "(empty frame_id)"}" '
                           f'to camera frame "{camera_frame or "(empty frame_id)"}" in {topics.tf_static} '
                           f'(frames known: {known}; or pass --extrinsics)', f'stamp {t}')
                continue
        try:
            points, _ = cloud_msg_to_arrays(cloud)
        except ValueError as exc:
            issues.add(f'unusable PointCloud2 on {topics.cloud_gt}', f'stamp {t}: {exc}')
            continue
        frames.append(DepthFrame(t, project_points(points, T, K, shape, max_depth), camera_frame))
    count_out_of_order([f.stamp_ns for f in frames], topics.cloud_gt, issues)
    return frames

