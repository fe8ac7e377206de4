"""LiDAR ground truth: PointCloud2 scans projected into the camera image.

Plain numpy + rosbags (no rclpy). The extrinsics come from the recording's static
transforms (``tf2_msgs/TFMessage`` on ``/tf_static``, chained and inverted as needed)
or are given as a 4x4 ``T_camera_lidar``.

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

from collections import deque
from pathlib import Path

import numpy as np

from ..completion.sparse import project_to_depth
from ..geometry import intrinsics_from_camera_info
from ..msgdata import header_ns
from ..pointcloud import cloud_msg_to_arrays
from .sources import DepthFrame, Issues, count_out_of_order, read_messages_safely

__all__ = ['StaticTransforms', 'quaternion_to_rotation', 'transform_to_matrix', 'load_extrinsics',
           'project_points', 'lidar_ground_truth', 'camera_model_from_bag']


def _frame(name: str) -> str:
    return str(name).strip().lstrip('/')


def quaternion_to_rotation(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Unit quaternion (x, y, z, w; normalised here) -> (3, 3) rotation matrix.

    Raises:
        ValueError: a zero or non-finite quaternion.
    """
    q = np.array([x, y, z, w], dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f'invalid quaternion {q.tolist()}')
    x, y, z, w = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def transform_to_matrix(transform) -> np.ndarray:
    """geometry_msgs/Transform (rosbags or rclpy) -> (4, 4) float64 homogeneous matrix."""
    t, r = transform.translation, transform.rotation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation(r.x, r.y, r.z, r.w)
    T[:3, 3] = (t.x, t.y, t.z)
    return T


def _invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (R^T, -R^T t)."""
    out = np.eye(4)
    R = T[:3, :3]
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ T[:3, 3]
    return out


class StaticTransforms:
    """A tree of static transforms, looked up along any chain of parents and children.

    ``add(T_parent_child, parent, child)`` stores one edge; :meth:`lookup` composes the
    edges on the path between two frames, inverting those walked from child to parent.
    A later transform for the same (parent, child) replaces the earlier one, as in tf2.
    """

    def __init__(self):
        self._edges: dict[str, dict[str, np.ndarray]] = {}  # a -> {b: T_a_b}

    @property
    def frames(self) -> list[str]:
        """All frame ids seen, sorted."""
        return sorted(self._edges)

    def __len__(self) -> int:
        return sum(len(v) for v in self._edges.values()) // 2

    def add(self, T_parent_child: np.ndarray, parent: str, child: str) -> None:
        """Add the transform of ``child`` in ``parent`` (maps child points into parent)."""
        parent, child = _frame(parent), _frame(child)
        T = np.asarray(T_parent_child, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f'transform {parent} -> {child} must be 4x4, got {T.shape}')
        self._edges.setdefault(parent, {})[child] = T
        self._edges.setdefault(child, {})[parent] = _invert(T)

    def add_message(self, msg) -> int:
        """Add every transform of a ``tf2_msgs/TFMessage``; returns how many."""
        n = 0
        for tr in msg.transforms:
            self.add(transform_to_matrix(tr.transform), tr.header.frame_id, tr.child_frame_id)
            n += 1
        return n

    def lookup(self, target: str, source: str) -> np.ndarray:
        """``T_target_source``: maps points in ``source`` into ``target``.

        Raises:
            LookupError: the two frames are not connected (the message names both frames
                and the known ones).
        """
        target, source = _frame(target), _frame(source)
        if target == source:
            return np.eye(4)
        if target in self._edges and source in self._edges:
            # breadth-first search from target; T accumulates T_target_frame
            seen = {target: np.eye(4)}
            queue = deque([target])
            while queue:
                a = queue.popleft()
                for b, T_a_b in self._edges[a].items():
                    if b not in seen:
                        seen[b] = seen[a] @ T_a_b
                        if b == source:
                            return seen[b]
                        queue.append(b)
        known = ', '.join(self.frames) or 'none'
        raise LookupError(f'no transform between "{source}" and "{target}" (frames known: {known})')

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
    cache: dict[str, np.ndarray | None] = {}
    frames: list[DepthFrame] = []
    for m in read_messages_safely(bag, [topics.cloud_gt], issues):
        cloud = m.msg
        t = header_ns(cloud)
        if lidar_extrinsics is not None:
            T = np.asarray(lidar_extrinsics, dtype=np.float64)
        else:
            lidar_frame = _frame(cloud.header.frame_id)
            if lidar_frame not in cache:
                try:
                    cache[lidar_frame] = tree.lookup(camera_frame, lidar_frame)
                except LookupError:
                    cache[lidar_frame] = None
            T = cache[lidar_frame]
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

