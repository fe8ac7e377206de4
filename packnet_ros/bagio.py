"""rosbag2 I/O with ``rosbags`` (MCAP or sqlite3), no rclpy: typestore, writer, reading.

``ros2 bag`` has no PyPI wheel; rosbags reads and writes the same files. Reading always
deserialises with the rosbags typestore of the wheels' ROS 2 distribution (plus this
package's messages), so any message type in a bag can be inspected, /tf_static included.
Writers take CDR bytes: rclpy messages serialised with ``rclpy.serialization`` (see
:mod:`packnet_ros.ros.bag`) or rosbags messages serialised with the typestore.
"""
from __future__ import annotations

import shutil
import struct
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
        if not conns:  # rosbags reads every connection when given none
            return
        for conn, t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype) if deserialize else None
            yield BagMessage(conn.topic, conn.msgtype, t, msg, bytes(raw))


#######################################################################################
# Damaged MCAP recordings

MCAP_MAGIC = b'\x89MCAP0\r\n'


class TruncatedBagError(ValueError):
    """A damaged MCAP file: the sequential scan stopped at an incomplete or invalid record.

    Attributes:
        messages: how many messages of the requested topics were read before the damage.
    """

    def __init__(self, message: str, messages: int = 0):
        super().__init__(message)
        self.messages = messages


def mcap_files(path: str | Path) -> list[Path]:
    """The MCAP files of a bag: the file itself, or the ``*.mcap`` files of a bag folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix == '.mcap' else []
    return sorted(path.glob('*.mcap'))


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == '':
        out = data
    elif compression == 'zstd':
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            from backports import zstd  # what rosbags depends on before 3.14
        out = zstd.decompress(data)
    elif compression == 'lz4':
        from lz4.frame import decompress as lz4_decompress
        out = lz4_decompress(data)
    else:
        raise ValueError(f'unsupported MCAP chunk compression {compression!r}')
    if len(out) != size:
        raise ValueError(f'MCAP chunk decompressed to {len(out)} bytes, expected {size}')
    return out


class _Records:
    """Sequential reader of MCAP records (opcode u8, length u64, content) from a byte stream."""

    def __init__(self, read, where: str):
        self._read = read
        self.where = where
        self.offset = 0

    def take(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise EOFError(f'{self.where}: {n} bytes wanted at byte {self.offset}, {len(data)} there')
        self.offset += n
        return data

    def next(self) -> tuple[int, bytes] | None:
        """(opcode, content) of the next record, or None at a clean end of the stream."""
        head = self._read(9)
        if not head:
            return None
        if len(head) != 9:
            raise EOFError(f'{self.where}: record header cut at byte {self.offset}')
        self.offset += 9
        op, length = struct.unpack('<BQ', head)
        return op, self.take(length)


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from('<I', buf, pos)
    return bytes(buf[pos + 4:pos + 4 + n]).decode(), pos + 4 + n


def salvage_mcap(path: str | Path, topics: Sequence[str] | None = None,
                 deserialize: bool = True) -> Iterator[BagMessage]:
    """Messages of an MCAP recording that rosbags cannot open, read front to back.

    For bags damaged at the end: an MCAP file without its summary and footer (a recorder
    that was killed, a disk that filled up, a copy cut short), or a bag folder that lost
    its ``metadata.yaml``. The records are scanned in file order as the MCAP specification
    lays them out (schema 0x03, channel 0x04, message 0x05, chunk 0x06 holding those,
    uncompressed, zstd or lz4); everything else is skipped. Messages come in file order
    (the recorder's write order), not sorted by log time.

    Args:
        path: bag folder or ``.mcap`` file.
        topics: topics to return (None: all).
        deserialize: also deserialise with :func:`typestore` (types missing there are
            registered from the file's ``ros2msg`` schemas).

    Yields:
        :class:`BagMessage` for each complete message of ``topics``.

    Raises:
        FileNotFoundError: no such path, or no ``.mcap`` file in it.
        TruncatedBagError: after the last complete message, when the scan met an
            incomplete or invalid record (the normal end of a damaged file); a file that
            ends cleanly (complete records, with or without footer) raises nothing.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'no bag at {path}')
    files = mcap_files(path)
    if not files:
        raise FileNotFoundError(f'no .mcap file in {path}')
    ts = typestore() if deserialize else None
    wanted = None if topics is None else set(topics)
    yielded = 0
    for file in files:
        schemas: dict[int, tuple[str, str, str]] = {}
        channels: dict[int, tuple[str, str]] = {}
        with open(file, 'rb') as f:
            if f.read(8) != MCAP_MAGIC:
                raise TruncatedBagError(f'{file} is not an MCAP file (no magic bytes)', yielded)
            outer = _Records(f.read, str(file))
            outer.offset = 8
            pending = [outer]
            try:
                while pending:
                    rec = pending[-1].next()
                    if rec is None:
                        pending.pop()
                        continue
                    op, body = rec
                    if op == 0x02:  # footer: the data section is over
                        break
                    if op == 0x06:
                        if len(pending) > 1:
                            raise ValueError(f'{file}: nested MCAP chunk')
                        _, _, size, _ = struct.unpack_from('<QQQI', body, 0)
                        compression, pos = _string(body, 28)
                        (n,) = struct.unpack_from('<Q', body, pos)
                        data = body[pos + 8:pos + 8 + n]
                        if len(data) != n:
                            raise EOFError(f'{file}: chunk records cut short')
                        stream = memoryview(_decompress(bytes(data), compression, size))
                        cursor = [0]

                        def read(k, stream=stream, cursor=cursor):
                            out = bytes(stream[cursor[0]:cursor[0] + k])
                            cursor[0] += len(out)
                            return out
                        pending.append(_Records(read, f'{file} (chunk)'))
                    elif op == 0x03:
                        (sid,) = struct.unpack_from('<H', body, 0)
                        name, pos = _string(body, 2)
                        encoding, pos = _string(body, pos)
                        (n,) = struct.unpack_from('<I', body, pos)
                        schemas[sid] = (name, encoding, bytes(body[pos + 4:pos + 4 + n]).decode())
                    elif op == 0x04:
                        cid, sid = struct.unpack_from('<HH', body, 0)
                        topic, _ = _string(body, 4)
                        channels[cid] = (topic, schemas.get(sid, ('', '', ''))[0])
                        if ts is not None and sid in schemas:
                            _register(ts, *schemas[sid])
                    elif op == 0x05:
                        cid, _, log_time, _ = struct.unpack_from('<HIQQ', body, 0)
                        topic, msgtype = channels.get(cid, ('', ''))
                        if not topic or (wanted is not None and topic not in wanted):
                            continue
                        raw = bytes(body[22:])
                        msg = ts.deserialize_cdr(raw, msgtype) if ts is not None else None
                        yielded += 1
                        yield BagMessage(topic, msgtype, log_time, msg, raw)
            except (EOFError, struct.error, ValueError, UnicodeDecodeError) as exc:
                raise TruncatedBagError(f'{file}: damaged after {yielded} readable messages ({exc})',
                                        yielded) from exc


def _register(ts, msgtype: str, encoding: str, text: str) -> None:
    """Add a message type found in a file's schema to the typestore (ros2msg text only)."""
    if msgtype in ts.types or encoding != 'ros2msg' or not text:
        return
    try:
        ts.register(get_types_from_msg(text, msgtype))
    except Exception:  # noqa: BLE001 - messages of this type then fail to deserialise, counted by callers
        pass


def bag_topics_any(path: str | Path) -> dict[str, str]:
    """{topic: msgtype} of a bag, damaged MCAP bags included (their channels up to the damage).

    Raises:
        FileNotFoundError: no bag at ``path``.
        rosbags errors for unreadable non-MCAP bags.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'no bag at {path}')
    try:
        return bag_topics(path)
    except Exception:  # noqa: BLE001 - fall back on a scan of the MCAP records
        if not mcap_files(path):
            raise
    found: dict[str, str] = {}
    try:
        for m in salvage_mcap(path, deserialize=False):
            found.setdefault(m.topic, m.msgtype)
    except TruncatedBagError:
        pass
    return found
