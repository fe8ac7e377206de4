"""Run packnet_node as its own process, replay a bag into it on sim time, record its outputs.

Shared by ``packnet-ros demo``, ``packnet-ros evaluate --mode live`` and the benchmark's
end-to-end latency measurement. Network rule: :func:`local_ros_env` keeps discovery on
loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a domain of its own, and every
process it starts inherits that.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..paths import fastdds_profile

DEFAULT_DOMAIN_BASE = 120


def local_ros_env(domain_id: int | None = None) -> dict:
    """Make this process (and its children) obey the network rule; returns the settings.

    Sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a ROS_DOMAIN_ID (the given one, else
    the environment's, else one derived from the process id), and the project's Fast DDS
    profile for large messages unless one is already set. Call before rclpy.init().
    """
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if domain_id is not None:
        os.environ['ROS_DOMAIN_ID'] = str(int(domain_id))
    elif not os.environ.get('ROS_DOMAIN_ID'):
        os.environ['ROS_DOMAIN_ID'] = str(DEFAULT_DOMAIN_BASE + os.getpid() % 90)
    if not os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE'):
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(fastdds_profile())
    return {k: os.environ[k] for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID',
                                       'FASTDDS_DEFAULT_PROFILES_FILE')}


class NodeProcess:
    """``packnet_node`` in a child process (context manager).

    Args:
        params: parameter overrides {name: value} (``-p name:=value``).
        params_file: YAML parameters file (``--params-file``).
        remap: {from: to} topic remappings (``-r from:=to``).
        namespace: node namespace ("" = root).
        log_path: file receiving the node's stdout/stderr (default: inherit).
        use_sim_time: run the node on /clock.

    The child inherits this process's environment (call :func:`local_ros_env` first).
    """

    def __init__(self, params: dict | None = None, params_file: str | Path | None = None,
                 remap: dict | None = None, namespace: str = '', log_path: str | Path | None = None,
                 use_sim_time: bool = True):
        args = [sys.executable, '-m', 'packnet_ros.ros.packnet_node', '--ros-args']
        if params_file:
            args += ['--params-file', str(params_file)]
        for k, v in {**(params or {}), 'use_sim_time': use_sim_time}.items():
            args += ['-p', f'{k}:={_param_text(v)}']
        for k, v in (remap or {}).items():
            args += ['-r', f'{k}:={v}']
        if namespace:
            args += ['-r', f'__ns:={namespace}']
        self.args = args
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._log = None

    def __enter__(self) -> 'NodeProcess':
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT if self._log else None)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT, then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __exit__(self, *exc):
        self.stop()


def _param_text(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    return str(v)


def message_class(msgtype: str):
    """rclpy message class from a type name like "sensor_msgs/msg/Image".

    Raises:
        ImportError: no Python package for that interface is installed (e.g. tf2_msgs here).
    """
    pkg, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{pkg}.msg'), name)


@dataclass
class ReplayReport:
    """Outcome of :func:`replay_into_node`.

    Attributes:
        frames_sent: images published.
        frames_answered: images whose ~/stats came back within the timeout.
        missing: stamps (ns) of images with no answer.
        resent: images published a second time because no answer came within
            ``resend_after_s`` (sensor-data QoS is best effort: a busy machine can lose a
            large message on loopback; the image and the latest message of every other
            input topic are sent again once).
        e2e_ms: {stamp_ns: {topic: ms}} wall time from image publish to each output's arrival.
        counts: messages recorded per topic.
        out_bag: recorded bag path.
        skipped_topics: input topics not replayed (no Python message package here).
        read_issues: problems reading the input bag ({reason: count}; a truncated bag is
            replayed up to the damage).
    """

    frames_sent: int = 0
    frames_answered: int = 0
    missing: list = field(default_factory=list)
    resent: int = 0
    e2e_ms: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    out_bag: Path | None = None
    skipped_topics: list = field(default_factory=list)
    replay_bags: list = field(default_factory=list)
    replay_results: list = field(default_factory=list)
    read_issues: dict = field(default_factory=dict)


def replay_into_node(bag_path: str | Path, out_bag: str | Path, image_topic: str,
                     input_topics: Sequence[str], node_name: str = '/packnet_node',
                     outputs: Sequence[str] = ('depth', 'camera_info', 'points', 'stats'),
                     frame_timeout_s: float = 60.0, startup_timeout_s: float = 120.0,
                     node_process: NodeProcess | None = None, storage: str = 'mcap',
                     progress=None, replays: int = 1, max_rate_hz: float = 0.0) -> ReplayReport:
    """Replay ``input_topics`` of a bag into a running node on sim time and record its outputs.

    Paced replay: for each image (in bag order) /clock is set to the image's log time, the
    other input messages up to that time are published, then the image; the next frame
    goes out only when the node's ``~/stats`` for that stamp arrived (or after
    ``frame_timeout_s``), so no frame is dropped whatever the hardware's speed. Everything
    the node publishes on ``outputs`` is recorded into ``out_bag`` at the sim time of
    arrival, with its original serialisation.

    ``max_rate_hz`` > 0 also waits so that images go out no faster than a camera at that
    rate would send them (the node then has idle time, as on a vehicle).

    ``replays`` > 1 plays the bag that many times into the same node (for online adaptation;
    stamps and /clock jump back at each restart); replay k is recorded into its own bag,
    ``report.replay_bags[k]`` (the first is ``out_bag``).

    The caller must have called :func:`local_ros_env` (same domain as the node).

    Raises:
        TimeoutError: the node did not come up within ``startup_timeout_s``.
        RuntimeError: the node process exited.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock

    from packnet_ros.msg import DepthStats

    from ..bagio import BagWriter, typestore
    from ..evaluation.sources import Issues, read_messages_safely
    from .conversions import stamp_to_ns

    report = ReplayReport(out_bag=Path(out_bag))
    read_issues = Issues()
    messages = list(read_messages_safely(bag_path, list(input_topics) + [image_topic], read_issues,
                                         deserialize=False))
    report.read_issues = dict(read_issues.counts)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('packnet_replayer', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    ts = typestore()
    try:
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        clock_pub = node.create_publisher(Clock, '/clock', reliable)
        pubs = {}
        for m in messages:
            if m.topic not in pubs:
                try:
                    pubs[m.topic] = node.create_publisher(message_class(m.msgtype), m.topic, qos_profile_sensor_data)
                except ImportError:
                    report.skipped_topics.append(m.topic)
                    pubs[m.topic] = None
        answered: dict[int, float] = {}
        sent_at: dict[int, float] = {}
        sim_now = [0]
        out_topics = {f'{node_name}/{o}': o for o in outputs}
        types = {'depth': 'sensor_msgs/msg/Image', 'camera_info': 'sensor_msgs/msg/CameraInfo',
                 'points': 'sensor_msgs/msg/PointCloud2', 'stats': 'packnet_ros/msg/DepthStats'}
        writers = [None]  # the current replay's bag

        def recorder(topic, short):
            def cb(raw):
                if writers[0] is not None:
                    writers[0].write(topic, types[short], sim_now[0], raw)
            return cb

        def on_stats(msg):
            t = stamp_to_ns(msg.header.stamp)
            answered.setdefault(t, time.perf_counter())
            if t in sent_at:
                report.e2e_ms.setdefault(t, {})['stats'] = 1e3 * (time.perf_counter() - sent_at[t])

        def timing(short):
            def cb(raw):
                t = sim_now[0]
                if t in sent_at:
                    report.e2e_ms.setdefault(t, {})[short] = 1e3 * (time.perf_counter() - sent_at[t])
            return cb

        for topic, short in out_topics.items():
            cls = message_class(types[short])
            rec, tim = recorder(topic, short), timing(short)
            node.create_subscription(cls, topic, lambda raw, rec=rec, tim=tim: (tim(raw), rec(raw)),
                                     reliable, raw=True)
        node.create_subscription(DepthStats, f'{node_name}/stats', on_stats, reliable)

        def spin_until(cond, timeout):
            t_end = time.time() + timeout
            while not cond():
                if node_process is not None and not node_process.alive():
                    raise RuntimeError(f'packnet_node exited with code {node_process.proc.returncode}')
                if time.time() > t_end:
                    return False
                executor.spin_once(timeout_sec=0.02)
            return True

        image_pub = pubs.get(image_topic)
        if image_pub is None:
            raise ValueError(f'{bag_path} has no {image_topic} messages to replay')
        ok = spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values() if p)
                        and node.count_publishers(f'{node_name}/stats') > 0, startup_timeout_s)
        if not ok:
            raise TimeoutError(f'{node_name} did not subscribe to {sorted(t for t, p in pubs.items() if p)} '
                               f'within {startup_timeout_s:.0f} s')
        time.sleep(0.3)  # let the reliable output subscriptions settle
        for k in range(max(1, int(replays))):
            path = Path(out_bag) if k == 0 else Path(f'{out_bag}_replay{k + 1}')
            report.replay_bags.append(path)
            answered.clear()
            sent_at.clear()
            sim_now[0] = 0
            with BagWriter(path, storage, overwrite=True) as writer:
                writers[0] = writer
                _replay_once(messages, pubs, image_topic, clock_pub, Clock, ts, sim_now, sent_at, answered,
                             spin_until, frame_timeout_s, report, progress, max_rate_hz)
                spin_until(lambda: False, 0.5)  # drain outputs still in flight
                writers[0] = None
                counts = dict(writer.counts)
            report.counts = counts
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    return report


def _replay_once(messages, pubs, image_topic, clock_pub, Clock, ts, sim_now, sent_at, answered, spin_until,
                 frame_timeout_s, report, progress, max_rate_hz: float = 0.0) -> None:
    """One paced pass over the bag's messages (see :func:`replay_into_node`)."""
    period = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
    resend_after_s = min(10.0, frame_timeout_s / 3)
    last_image = -1e9
    latest = {}  # topic -> raw of the last non-image message published
    for m in messages:
        sim_now[0] = max(sim_now[0], m.log_time_ns)
        pub = pubs.get(m.topic)
        if pub is None:
            continue
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(sim_now[0], 1_000_000_000)
        clock_pub.publish(clock)
        if m.topic != image_topic:
            pub.publish(m.raw)
            latest[m.topic] = m.raw
            continue
        header = ts.deserialize_cdr(m.raw, m.msgtype).header
        stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        if period:
            spin_until(lambda: time.perf_counter() - last_image >= period, period + 1.0)
        last_image = time.perf_counter()
        sent_at[stamp] = last_image
        pub.publish(m.raw)
        report.frames_sent += 1
        ok = spin_until(lambda: stamp in answered, resend_after_s)
        if not ok:  # lost on the way (best effort) or a slow node: send it once more
            for topic, raw in latest.items():
                pubs[topic].publish(raw)
            pub.publish(m.raw)
            report.resent += 1
            ok = spin_until(lambda: stamp in answered, frame_timeout_s - resend_after_s)
        if ok:
            report.frames_answered += 1
        else:
            report.missing.append(stamp)
        if progress:
            progress(report)
