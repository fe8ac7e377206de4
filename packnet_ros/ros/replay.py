"""Replay a bag into a running ``packnet_node`` on sim time and record what it publishes.

Paced replay: for each image (in bag order) ``/clock`` is set to the image's log time, the
other input messages up to that time are published, then the image; the next frame goes
out only when the node's ``~/stats`` for that stamp arrived (or after the frame timeout), so
no frame is dropped whatever the hardware's speed. Everything the node publishes on its
outputs is recorded into a bag at the sim time of arrival, with its original serialisation.

Resend policy: sensor-data QoS is best effort, so a busy machine can lose a large message
on loopback; an image with no answer after ``resend_after_s`` is sent once more, together
with the latest message of every other input topic.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packnet_ros.msg import DepthStats

from ..evaluation.sources import Issues, read_messages_safely
from ..io.bag import BagWriter, typestore
from ..msgdata import header_ns
from .harness import RELIABLE, SENSOR, NodeProcess, RosHarness, message_class

OUTPUT_TYPES = {'depth': 'sensor_msgs/msg/Image', 'camera_info': 'sensor_msgs/msg/CameraInfo',
                'points': 'sensor_msgs/msg/PointCloud2', 'stats': 'packnet_ros/msg/DepthStats',
                'scan': 'sensor_msgs/msg/LaserScan', 'obstacles': 'sensor_msgs/msg/PointCloud2'}
"""The node's outputs and their message types."""
BEST_EFFORT_OUTPUTS = ('scan', 'obstacles')
"""Outputs the node publishes with sensor-data QoS (best effort, as Nav2 subscribes)."""


@dataclass
class ReplayReport:
    """Outcome of a replay.

    Attributes:
        frames_sent: images published.
        frames_answered: images whose ~/stats came back within the timeout.
        missing: stamps (ns) of images with no answer.
        resent: images published a second time (resend policy, module docstring).
        e2e_ms: {stamp_ns: {output: ms}} wall time from image publish to each output's arrival.
        counts: messages recorded per topic (last replay).
        out_bag: recorded bag path (first replay).
        skipped_topics: input topics not replayed (no Python message package here).
        replay_bags: one recorded bag per replay.
        replay_results: filled by the caller (scores per replay).
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


class BagReplayer:
    """Paced replay of one bag into a running node (module docstring).

    Args:
        bag_path: the input recording.
        image_topic: camera images (the pacing topic).
        input_topics: other topics to replay (camera_info, odometry ...).
        node_name: the node's fully qualified name, e.g. "/packnet_node".
        outputs: the node's outputs to record (keys of :data:`OUTPUT_TYPES`).
        node_process: the node's process (its exit aborts the replay).
        frame_timeout_s: seconds to wait for each frame's ``~/stats``.
        max_rate_hz: > 0: images go out no faster than a camera at that rate.
        progress: called after every frame with the running report.

    Raises:
        ValueError: the bag has no image to replay.
    """

    def __init__(self, bag_path: str | Path, image_topic: str, input_topics: Sequence[str],
                 node_name: str = '/packnet_node',
                 outputs: Sequence[str] = ('depth', 'camera_info', 'points', 'stats'),
                 node_process: NodeProcess | None = None, frame_timeout_s: float = 60.0,
                 max_rate_hz: float = 0.0, progress: Callable[[ReplayReport], None] | None = None):
        self.image_topic = image_topic
        self.node_name = node_name
        self.frame_timeout_s = frame_timeout_s
        self.resend_after_s = min(10.0, frame_timeout_s / 3)
        self.period_s = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.progress = progress
        self.report = ReplayReport()
        issues = Issues()
        self.messages = list(read_messages_safely(bag_path, list(input_topics) + [image_topic], issues,
                                                  deserialize=False))
        self.report.read_issues = dict(issues.counts)
        if not any(m.topic == image_topic for m in self.messages):
            raise ValueError(f'{bag_path} has no {image_topic} messages to replay')
        self.ros = RosHarness('packnet_replayer', node_process)
        self._typestore = typestore()
        self._sim_now = 0
        self._sent_at: dict[int, float] = {}
        self._answered: dict[int, float] = {}
        self._writer: BagWriter | None = None
        self._pubs = self._make_publishers()
        for short in outputs:
            self._record_output(short)
        self.ros.subscribe(DepthStats, f'{node_name}/stats', callback=self._on_stats, keep=False)

    def _make_publishers(self) -> dict:
        pubs: dict = {}
        for m in self.messages:
            if m.topic in pubs:
                continue
            try:
                pubs[m.topic] = self.ros.publisher(message_class(m.msgtype), m.topic, SENSOR)
            except ImportError:
                self.report.skipped_topics.append(m.topic)
                pubs[m.topic] = None
        return pubs

    def _record_output(self, short: str) -> None:
        topic, msgtype = f'{self.node_name}/{short}', OUTPUT_TYPES[short]

        def on_raw(raw: bytes) -> None:
            t = self._sim_now
            if t in self._sent_at:
                self.report.e2e_ms.setdefault(t, {})[short] = 1e3 * (time.perf_counter() - self._sent_at[t])
            if self._writer is not None:
                self._writer.write(topic, msgtype, self._sim_now, raw)
        qos = SENSOR if short in BEST_EFFORT_OUTPUTS else RELIABLE
        self.ros.subscribe(message_class(msgtype), topic, qos, callback=on_raw, raw=True, keep=False)

    def _on_stats(self, msg) -> None:
        t = header_ns(msg)
        self._answered.setdefault(t, time.perf_counter())
        if t in self._sent_at:
            self.report.e2e_ms.setdefault(t, {})['stats'] = 1e3 * (time.perf_counter() - self._sent_at[t])

    # -- running --------------------------------------------------------------------------
    def wait_for_node(self, timeout_s: float) -> None:
        """Wait until the node subscribes to every replayed topic and publishes ``~/stats``.

        Raises:
            TimeoutError: not within ``timeout_s``.
            RuntimeError: the node process exited.
        """
        pubs = [p for p in self._pubs.values() if p]
        if not self.ros.wait_for_subscribers(pubs, f'{self.node_name}/stats', timeout_s):
            raise TimeoutError(f'{self.node_name} did not subscribe to '
                               f'{sorted(t for t, p in self._pubs.items() if p)} within {timeout_s:.0f} s')
        self.ros.spin_for(0.3)  # let the reliable output subscriptions settle

    def replay(self, out_bag: str | Path, storage: str = 'mcap') -> None:
        """One paced pass over the bag, recording the node's outputs into ``out_bag``."""
        self.report.replay_bags.append(Path(out_bag))
        if self.report.out_bag is None:
            self.report.out_bag = Path(out_bag)
        self._answered.clear()
        self._sent_at.clear()
        self._sim_now = 0
        with BagWriter(out_bag, storage, overwrite=True) as writer:
            self._writer = writer
            try:
                last_image = -1e9
                latest: dict[str, bytes] = {}
                for m in self.messages:
                    pub = self._pubs.get(m.topic)
                    self._sim_now = max(self._sim_now, m.log_time_ns)
                    if pub is None:
                        continue
                    self.ros.publish_clock(self._sim_now)
                    if m.topic != self.image_topic:
                        pub.publish(m.raw)
                        latest[m.topic] = m.raw
                        continue
                    last_image = self._send_image(m, pub, latest, last_image)
                self.ros.spin_for(0.5)  # drain outputs still in flight
            finally:
                self._writer = None
            self.report.counts = dict(writer.counts)

    def _send_image(self, m, pub, latest: dict, last_image: float) -> float:
        stamp = header_ns(self._typestore.deserialize_cdr(m.raw, m.msgtype))
        if self.period_s:
            self.ros.spin_until(lambda: time.perf_counter() - last_image >= self.period_s, self.period_s + 1.0)
        sent = time.perf_counter()
        self._sent_at[stamp] = sent
        pub.publish(m.raw)
        self.report.frames_sent += 1
        ok = self.ros.spin_until(lambda: stamp in self._answered, self.resend_after_s)
        if not ok:  # lost on the way (best effort) or a slow node: send it once more
            for topic, raw in latest.items():
                self._pubs[topic].publish(raw)
            pub.publish(m.raw)
            self.report.resent += 1
            ok = self.ros.spin_until(lambda: stamp in self._answered, self.frame_timeout_s - self.resend_after_s)
        if ok:
            self.report.frames_answered += 1
        else:
            self.report.missing.append(stamp)
        if self.progress:
            self.progress(self.report)
        return sent

    def close(self) -> None:
        """Release the rclpy context."""
        self.ros.close()


def replay_into_node(bag_path: str | Path, out_bag: str | Path, image_topic: str,
                     input_topics: Sequence[str], node_name: str = '/packnet_node',
                     outputs: Sequence[str] = ('depth', 'camera_info', 'points', 'stats'),
                     frame_timeout_s: float = 60.0, startup_timeout_s: float = 120.0,
                     node_process: NodeProcess | None = None, storage: str = 'mcap',
                     progress: Callable[[ReplayReport], None] | None = None, replays: int = 1,
                     max_rate_hz: float = 0.0) -> ReplayReport:
    """Replay ``bag_path`` into a running node ``replays`` times and record its outputs.

    Replay k (k >= 2) is recorded into ``<out_bag>_replay<k>`` (stamps and /clock jump back
    at each restart, as a looping bag does); ``report.replay_bags`` lists them. The caller
    must have called :func:`packnet_ros.ros.harness.local_ros_env` (same domain as the node).

    Raises:
        TimeoutError: the node did not come up within ``startup_timeout_s``.
        RuntimeError: the node process exited.
        ValueError: the bag has no image to replay.
    """
    replayer = BagReplayer(bag_path, image_topic, input_topics, node_name, outputs, node_process,
                           frame_timeout_s, max_rate_hz, progress)
    try:
        replayer.wait_for_node(startup_timeout_s)
        for k in range(max(1, int(replays))):
            replayer.replay(Path(out_bag) if k == 0 else Path(f'{out_bag}_replay{k + 1}'), storage)
    finally:
        replayer.close()
    return replayer.report
