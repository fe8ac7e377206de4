"""Test-side rclpy harness: a private context, publishers, collecting subscriptions, waits."""
from __future__ import annotations

import time
from collections import defaultdict

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class RosHarness:
    """rclpy node in its own context; ``received[topic]`` lists messages in arrival order."""

    def __init__(self, name: str = 'test_harness'):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received = defaultdict(list)
        self._subs = {}

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def publisher(self, msg_type, topic, qos=qos_profile_sensor_data):
        return self.node.create_publisher(msg_type, topic, qos)

    def subscribe(self, msg_type, topic, qos=RELIABLE):
        self._subs[topic] = self.node.create_subscription(
            msg_type, topic, lambda m, t=topic: self.received[t].append(m), qos)

    def unsubscribe(self, topic):
        self.node.destroy_subscription(self._subs.pop(topic))

    def spin_until(self, cond, timeout: float = 30.0) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return cond()

    def by_stamp(self, topic, stamp):
        return [m for m in self.received[topic] if stamp_ns(m) == stamp]
