"""The one rclpy client harness: the network rule, ``packnet_node`` as a child process, and a
private rclpy context with publishers, recording subscriptions, a sim clock and waits.

Used by the bag replay (``packnet-ros demo`` and ``evaluate --mode live``), the
benchmark's loopback latency and soak measurements, and the node tests. Network rule:
:func:`local_ros_env` keeps discovery on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)
in a domain of its own, and every process started afterwards inherits that.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock

from ..msgdata import header_ns
from ..paths import fastdds_profile

DEFAULT_DOMAIN_BASE = 120
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
"""QoS of the harness's subscriptions to the node's (reliable) outputs."""
SENSOR = qos_profile_sensor_data
"""QoS of the harness's camera/odometry publishers (what a driver uses)."""


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


def message_class(msgtype: str):
    """rclpy message class from a type name like "sensor_msgs/msg/Image".

    Raises:
        ImportError: no Python package for that interface is installed (e.g. tf2_msgs here).
    """
    pkg, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{pkg}.msg'), name)


def _param_text(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    return str(v)


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
        """True while the child runs."""
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float | None:
        """Resident set size of the child in MiB (Linux /proc), None if unreadable."""
        if self.proc is None:
            return None
        try:
            for line in Path(f'/proc/{self.proc.pid}/status').read_text().splitlines():
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

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


class RosHarness:
    """An rclpy node in a private context: publishers, recording subscriptions, sim clock, waits.

    Args:
        name: node name.
        node_process: when given, waits raise ``RuntimeError`` as soon as that process exits.

    ``received[topic]`` lists the messages of a :meth:`subscribe`\\ d topic in arrival
    order and ``arrival[topic]`` their ``time.perf_counter()`` arrival times. Use as a
    context manager (or call :meth:`close`).
    """

    def __init__(self, name: str = 'packnet_harness', node_process: NodeProcess | None = None):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.node_process = node_process
        self.received: dict[str, list] = defaultdict(list)
        self.arrival: dict[str, list[float]] = defaultdict(list)
        self._subs: dict = {}
        self._clock_pub = None

    def close(self) -> None:
        """Destroy the node and shut the private context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def __enter__(self) -> 'RosHarness':
        return self

    def __exit__(self, *exc):
        self.close()

    # -- endpoints ------------------------------------------------------------------------
    def publisher(self, msg_type, topic: str, qos: QoSProfile = SENSOR):
        """A publisher (sensor-data QoS by default, as a camera driver's)."""
        return self.node.create_publisher(msg_type, topic, qos)

    def subscribe(self, msg_type, topic: str, qos: QoSProfile = RELIABLE,
                  callback: Callable | None = None, raw: bool = False, keep: bool = True) -> None:
        """Subscribe to ``topic``: each message is appended to ``received[topic]`` (unless
        ``keep`` is false) with its arrival time, then passed to ``callback``. With ``raw``
        the message is its CDR bytes (for recording with the original serialisation)."""
        def on_message(msg, topic=topic):
            self.arrival[topic].append(time.perf_counter())
            if keep:
                self.received[topic].append(msg)
            if callback is not None:
                callback(msg)
        self._subs[topic] = self.node.create_subscription(msg_type, topic, on_message, qos, raw=raw)

    def unsubscribe(self, topic: str) -> None:
        """Destroy the subscription to ``topic``."""
        self.node.destroy_subscription(self._subs.pop(topic))

    def publish_clock(self, stamp_ns: int) -> None:
        """Publish ``/clock`` (reliable) at ``stamp_ns`` (sim time for nodes with use_sim_time)."""
        if self._clock_pub is None:
            self._clock_pub = self.node.create_publisher(Clock, '/clock', RELIABLE)
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self._clock_pub.publish(clock)

    # -- waiting --------------------------------------------------------------------------
    def spin_until(self, cond: Callable[[], bool], timeout: float = 30.0, poll_s: float = 0.02) -> bool:
        """Process callbacks until ``cond()`` holds (True) or ``timeout`` seconds pass (False);
        ``poll_s`` is the longest wait for a callback between two checks.

        Raises:
            RuntimeError: the watched node process exited.
        """
        end = time.monotonic() + timeout
        while True:
            if cond():
                return True
            if self.node_process is not None and not self.node_process.alive():
                raise RuntimeError(f'packnet_node exited with code {self.node_process.proc.returncode}')
            if time.monotonic() >= end:
                return cond()
            self.executor.spin_once(timeout_sec=min(poll_s, max(0.0, end - time.monotonic())))

    def spin_for(self, seconds: float) -> None:
        """Process callbacks for ``seconds`` (draining messages still in flight)."""
        self.spin_until(lambda: False, seconds)

    def wait_for_subscribers(self, publishers, topic_with_publisher: str | None = None,
                             timeout: float = 120.0) -> bool:
        """Wait until every publisher in ``publishers`` has a subscriber and (optionally)
        ``topic_with_publisher`` has a publisher: the node is up and matched."""
        return self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in publishers)
                               and (topic_with_publisher is None
                                    or self.node.count_publishers(topic_with_publisher) > 0), timeout)

    def by_stamp(self, topic: str, stamp_ns: int) -> list:
        """Messages of ``topic`` received with header stamp ``stamp_ns``."""
        return [m for m in self.received[topic] if header_ns(m) == stamp_ns]


__all__ = ['RELIABLE', 'SENSOR', 'NodeProcess', 'RosHarness', 'local_ros_env', 'message_class']
