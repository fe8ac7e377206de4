"""rosbag2 I/O with ``rosbags`` (MCAP or sqlite3), no ROS runtime: typestore, writer, reading.

``ros2 bag`` has no PyPI wheel; rosbags reads and writes the same files. Reading always
deserialises with the rosbags typestore of the wheels' ROS 2 distribution (plus this
package's messages), so any message type in a bag can be inspected, /tf_static included.
Writers take CDR bytes: ROS messages serialised by the ROS client library (see
:mod:`packnet_ros.ros.bag`) or rosbags messages serialised with the typestore.

Damaged MCAP recordings (no summary/footer, cut mid-record) are read front to back with
the ``mcap`` package's :class:`mcap.stream_reader.StreamReader` (:func:`salvage_mcap`).
"""
from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from mcap.exceptions import EndOfFile, InvalidMagic, McapError
from mcap.records import Channel, Footer, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from zstandard import ZstdError

from ..paths import msg_definition

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
        self._connections: dict[str, Connection] = {}
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
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def write_tf_static(bag: BagWriter, transforms: Sequence[tuple[np.ndarray, str, str]], stamp_ns: int,
                    topic: str = '/tf_static') -> None:
    """Write one tf2_msgs/TFMessage of static transforms [(T_parent_child, parent, child), ...]."""
    ts = bag.ts
    msg = ts.types['tf2_msgs/msg/TFMessage'](
        transforms=[_transform_stamped(ts, T, parent, child, stamp_ns) for T, parent, child in transforms])
    bag.write(topic, 'tf2_msgs/msg/TFMessage', stamp_ns, ts.serialize_cdr(msg, 'tf2_msgs/msg/TFMessage'))


@dataclass
class BagMessage:
    """One message read from a bag (deserialised with the rosbags typestore).

    Attributes:
        topic, msgtype: e.g. ``/camera/image_raw``, ``sensor_msgs/msg/Image``.
        log_time_ns: recording (log) time, integer nanoseconds.
        msg: the rosbags message dataclass (same field names as the ROS message), or None
            when read without deserialising.
        raw: the serialised (CDR) message.
    """

    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any
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

# What a damaged file raises while it is read record by record: mcap's own errors, a cut
# record (EOFError from _file_messages), malformed fields (struct.error, ValueError and
# UnicodeDecodeError, also from CDR deserialisation), a corrupt zstd or lz4 chunk
# (ZstdError; lz4 reports a corrupt frame as RuntimeError).
_DAMAGE_ERRORS = (McapError, EOFError, struct.error, ValueError, ZstdError, RuntimeError)


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


def _file_messages(file: Path, ts, wanted: set[str] | None) -> Iterator[BagMessage]:
    """Messages of ``wanted`` topics (None: all) in one MCAP file, in file order.

    A file that ends after a complete record (with or without summary and footer) ends the
    iteration; a record cut by the end of the file raises ``EOFError`` (mcap's reader reads
    a cut record's missing bytes or padding as its ``EndOfFile``, or fails to unpack a cut
    field); other damage raises one of ``_DAMAGE_ERRORS``.
    """
    size = os.path.getsize(file)
    if size < len(MCAP_MAGIC):
        raise InvalidMagic(b'')
    schemas: dict[int, Schema] = {}
    channels: dict[int, tuple[str, str]] = {}
    with open(file, 'rb') as f:
        end = len(MCAP_MAGIC)  # byte offset after the last complete record
        try:
            for record in StreamReader(f).records:
                end = f.tell()  # a chunk's records come after the whole chunk was read
                if isinstance(record, Footer):  # the data section is over
                    return
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = _channel(record, schemas, ts)
                elif isinstance(record, Message):
                    topic, msgtype = channels.get(record.channel_id, ('', ''))
                    if topic and (wanted is None or topic in wanted):
                        msg = ts.deserialize_cdr(record.data, msgtype) if ts is not None else None
                        yield BagMessage(topic, msgtype, record.log_time, msg, bytes(record.data))
        except EndOfFile:
            if end != size:
                raise EOFError(f'the file ends inside the record at byte {end}') from None


def _channel(record: Channel, schemas: dict[int, Schema], ts) -> tuple[str, str]:
    """(topic, msgtype) of a channel; registers its ``ros2msg`` schema in ``ts`` (when not None)."""
    schema = schemas.get(record.schema_id)
    if schema is None:
        return record.topic, ''
    if ts is not None:
        _register(ts, schema.name, schema.encoding, schema.data.decode())
    return record.topic, schema.name


def salvage_mcap(path: str | Path, topics: Sequence[str] | None = None,
                 deserialize: bool = True) -> Iterator[BagMessage]:
    """Messages of an MCAP recording that rosbags cannot open, read front to back.

    For bags damaged at the end: an MCAP file without its summary and footer (a recorder
    that was killed, a disk that filled up, a copy cut short), or a bag folder that lost
    its ``metadata.yaml``. The records are read in file order with
    :class:`mcap.stream_reader.StreamReader` (chunks uncompressed, zstd or lz4); schemas,
    channels and messages are used, everything else is skipped. Messages come in file order
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
        try:
            for m in _file_messages(file, ts, wanted):
                yielded += 1
                yield m
        except InvalidMagic as exc:
            raise TruncatedBagError(f'{file} is not an MCAP file (no magic bytes)', yielded) from exc
        except _DAMAGE_ERRORS as exc:
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


class CorruptBagError(ValueError):
    """A path that is not a readable rosbag2 recording: random bytes, another format, or an
    MCAP file damaged before its first message."""


def bag_topics_any(path: str | Path) -> dict[str, str]:
    """{topic: msgtype} of a bag, damaged MCAP bags included (their channels up to the damage).

    Raises:
        FileNotFoundError: no bag at ``path``.
        CorruptBagError: rosbags cannot open it and a record-by-record scan of its MCAP
            files finds no message (not an MCAP file, or damaged before the first message).
        rosbags errors for unreadable non-MCAP bags.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'no bag at {path}')
    try:
        return bag_topics(path)
    except Exception as exc:  # noqa: BLE001 - fall back on a scan of the MCAP records
        if not mcap_files(path):
            raise
        opened = f'{type(exc).__name__}: {exc}'.splitlines()[0]
    found: dict[str, str] = {}
    damage = None
    try:
        for m in salvage_mcap(path, deserialize=False):
            found.setdefault(m.topic, m.msgtype)
    except TruncatedBagError as exc:
        damage = exc
    if not found:
        head = f'{path} is corrupt or not an MCAP/rosbag2 recording'
        if damage is not None and isinstance(damage.__cause__, InvalidMagic):
            bad = 'it' if path.is_file() else next((f.name for f in mcap_files(path) if str(f) in str(damage)),
                                                    'its .mcap file')
            raise CorruptBagError(f'{head}: {bad} does not start with the MCAP magic bytes '
                                  f'(empty, random bytes or another format)')
        why = f'damaged before its first message ({damage})' if damage is not None else 'no message in it'
        raise CorruptBagError(f'{head}: rosbags cannot open it ({opened}); record by record: {why}')
    return found
