"""Static transforms (``tf2_msgs/TFMessage``, e.g. a recording's ``/tf_static``) as a tree of
rigid transforms: :class:`StaticTransforms`. Plain numpy, no ROS runtime: the messages may be
rosbags dataclasses (read with :mod:`.bag`) or rclpy messages (the node's TF subscription).

Conventions (DESIGN.md):
    * ``T_a_b`` maps points from frame b into frame a: ``p_a = T_a_b @ p_b`` (4x4,
      homogeneous, metres).
    * tf2: a ``TransformStamped`` with ``header.frame_id`` = parent and
      ``child_frame_id`` = child holds ``T_parent_child`` (translation in metres, then
      rotation as a quaternion x, y, z, w). Frame ids are compared without a leading "/"
      (:func:`frame_name`).

Readers: :meth:`packnet_ros.evaluation.lidar.StaticTransforms.from_bag` (the evaluator, with
its issue counting) and :class:`packnet_ros.io.bag_sequence.BagSequence` (``cloud_topic``).
"""
from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ['StaticTransforms', 'frame_name', 'quaternion_to_rotation', 'transform_to_matrix', 'invert_transform']


def frame_name(name: str) -> str:
    """A tf frame id as compared here: surrounding white space and a leading "/" removed."""
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


def invert_transform(T: np.ndarray) -> np.ndarray:
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
        self._found: dict[tuple[str, str], np.ndarray | None] = {}  # lookup_or_none's answers

    @property
    def frames(self) -> list[str]:
        """All frame ids seen, sorted."""
        return sorted(self._edges)

    def __len__(self) -> int:
        return sum(len(v) for v in self._edges.values()) // 2

    def add(self, T_parent_child: np.ndarray, parent: str, child: str) -> None:
        """Add the transform of ``child`` in ``parent`` (maps child points into parent)."""
        parent, child = frame_name(parent), frame_name(child)
        T = np.asarray(T_parent_child, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f'transform {parent} -> {child} must be 4x4, got {T.shape}')
        self._edges.setdefault(parent, {})[child] = T
        self._edges.setdefault(child, {})[parent] = invert_transform(T)
        self._found.clear()

    def add_message(self, msg) -> int:
        """Add every transform of a ``tf2_msgs/TFMessage``; returns how many.

        Raises:
            AttributeError, ValueError: not a TFMessage, or an invalid quaternion.
        """
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
        target, source = frame_name(target), frame_name(source)
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

    def lookup_or_none(self, target: str, source: str) -> np.ndarray | None:
        """:meth:`lookup`, remembered per (target, source) until the next :meth:`add`; None
        when the two frames are not connected (for loops over many messages of one frame)."""
        key = (frame_name(target), frame_name(source))
        if key not in self._found:
            try:
                self._found[key] = self.lookup(*key)
            except LookupError:
                self._found[key] = None
        return self._found[key]

