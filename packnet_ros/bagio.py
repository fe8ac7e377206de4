"""rosbag2 I/O with ``rosbags`` (MCAP or sqlite3), no rclpy: typestore, writer, reading.

``ros2 bag`` has no PyPI wheel; rosbags reads and writes the same files. Reading always
deserialises with the rosbags typestore of the wheels' ROS 2 distribution (plus this
package's messages), so any message type in a bag can be inspected, /tf_static included.
Writers take CDR bytes: rclpy messages serialised with ``rclpy.serialization`` (see
:mod:`packnet_ros.ros.bag`) or rosbags messages serialised with the typestore.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from .paths import msg_definition

STORE = Stores.ROS2_KILTED
CUSTOM_TYPES = ('DepthStats',)


def typestore():
    """rosbags typestore of the ROS 2 distribution the wheels come from, plus packnet_ros msgs."""
    ts = get_typestore(STORE)
    for name in CUSTOM_TYPES:
        typename = f'packnet_ros/msg/{name}'
        if typename not in ts.types:
            ts.register(get_types_from_msg(msg_definition(name), typename))
    return ts


class BagWriter:
    """Append serialised messages to a new rosbag2 (connections created on first use).

    Args:
        path: bag directory to create (must not exist unless ``overwrite``).
        storage: "mcap" or "sqlite3".
        overwrite: remove an existing bag directory first.

    Use as a context manager; ``write(topic, msgtype, t_ns, cdr_bytes)``.
    """

    def __init__(self, path: str | Path, storage: str = 'mcap', overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f'{self.path} exists (pass overwrite=True / --overwrite to replace it)')
            shutil.rmtree(self.path)
        plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise ValueError(f'storage must be "mcap" or "sqlite3", got {storage!r}')
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ts = typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self):
        self._writer.open()
        return self

    def __exit__(self, *exc):
        self._writer.close()

    def write(self, topic: str, msgtype: str, t_ns: int, data: bytes) -> None:
        """Write one serialised (CDR) message at log time ``t_ns``."""
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.ts)
        self._writer.write(conn, int(t_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1


def _transform_stamped(ts, T: np.ndarray, parent: str, child: str, stamp_ns: int):
    """tf2 TransformStamped (rosbags type) for T_parent_child."""
    types = ts.types
    q = rotation_to_quaternion(T[:3, :3])
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    header = types['std_msgs/msg/Header'](stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec),
                                          frame_id=parent)
    tr = types['geometry_msgs/msg/Transform'](
        translation=types['geometry_msgs/msg/Vector3'](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
        rotation=types['geometry_msgs/msg/Quaternion'](x=q[0], y=q[1], z=q[2], w=q[3]))
    return types['geometry_msgs/msg/TransformStamped'](header=header, child_frame_id=child, transform=tr)


def rotation_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix -> unit quaternion (x, y, z, w), numerically stable branch choice."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        v = np.zeros(3)
        v[i] = 0.25 * s
        v[j] = (R[j, i] + R[i, j]) / s
        v[k] = (R[k, i] + R[i, k]) / s
        w = (R[k, j] - R[j, k]) / s
        x, y, z = v
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    return tuple(float(c) for c in q)


def write_tf_static(bag: BagWriter, transforms: Sequence[tuple[np.ndarray, str, str]], stamp_ns: int,
                    topic: str = '/tf_static') -> None:
    """Write one tf2_msgs/TFMessage of static transforms [(T_parent_child, parent, child), ...]."""
    ts = bag.ts
    msg = ts.types['tf2_msgs/msg/TFMessage'](
        transforms=[_transform_stamped(ts, T, parent, child, stamp_ns) for T, parent, child in transforms])
    bag.write(topic, 'tf2_msgs/msg/TFMessage', stamp_ns, ts.serialize_cdr(msg, 'tf2_msgs/msg/TFMessage'))


@dataclass
class BagMessage:
    """One message read from a bag (deserialised with the rosbags typestore)."""

    topic: str
    msgtype: str
    log_time_ns: int
    msg: object
    raw: bytes


def bag_topics(path: str | Path) -> dict[str, str]:
    """{topic: msgtype} of a bag."""
    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def iter_messages(path: str | Path, topics: Sequence[str] | None = None,
                  deserialize: bool = True) -> Iterator[BagMessage]:
    """Messages of ``topics`` (all when None) in log-time order.

    Raises:
        FileNotFoundError: no bag at ``path``.
        rosbags errors for unreadable bags (callers that must survive truncation catch them).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'no bag at {path}')
    with AnyReader([path], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype) if deserialize else None
            yield BagMessage(conn.topic, conn.msgtype, t, msg, bytes(raw))
