"""Live evaluation: replay a recording into a running ``packnet_node``, record, score.

Used by ``packnet-ros evaluate --mode live`` and ``packnet-ros demo``. The node runs as
its own process on sim time (:class:`packnet_ros.ros.harness.NodeProcess`, loopback only,
its own ROS domain); the recording is replayed frame by frame on ``/clock``
(:func:`packnet_ros.ros.replay.replay_into_node`) and everything the node publishes is
recorded into ``<out_dir>/bags/packnet_output``; that bag's depth topic is then scored
against the recording's ground truth with the one scoring path of the offline and
recorded modes (:func:`packnet_ros.evaluation.runner.evaluate_recorded`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..evaluation.runner import BagTopics, SampleWriter, evaluate_recorded
from ..evaluation.scoring import EvalResult, EvalSettings
from ..paths import config_file
from .harness import NodeProcess, local_ros_env
from .replay import ReplayReport, replay_into_node

NOT_ANSWERED = 'frames the node did not answer within the frame timeout'


def node_params_for(checkpoint: str, device: str = 'auto', precision: str = 'auto',
                    max_depth_m: float | None = None) -> dict:
    """``packnet_node`` parameters for a weights choice (:mod:`packnet_ros.weights` syntax;
    :attr:`packnet_ros.weights.WeightsChoice.node_value` of a parsed one)."""
    params = {'checkpoint': str(checkpoint), 'device': device, 'precision': precision, 'lazy': True}
    if max_depth_m is not None:
        params['max_depth_m'] = float(max_depth_m)
    return params


def run_live(bag: str | Path, topics: BagTopics, node_params: dict, out_dir: str | Path,
             settings: EvalSettings | None = None, label: str = 'packnet_node',
             samples: SampleWriter | None = None, lidar_extrinsics: np.ndarray | None = None,
             params_file: str | Path | None = None, domain_id: int | None = None,
             frame_timeout_s: float = 120.0, startup_timeout_s: float = 120.0,
             say: Callable[[str], None] | None = None,
             progress: Callable[[ReplayReport], None] | None = None,
             node_name: str = 'packnet_node', replays: int = 1,
             max_rate_hz: float = 0.0,
             outputs: tuple[str, ...] = ('depth', 'camera_info', 'points', 'stats')
             ) -> tuple[EvalResult, ReplayReport]:
    """Replay ``bag`` into a fresh ``packnet_node`` process and score what it published.

    Args:
        bag: the recording (images on ``topics.image``, ``topics.camera_info``, optionally
            ``topics.odom``, and the ground truth).
        topics: topic names of the recording.
        node_params: node parameter overrides (see :func:`node_params_for`).
        out_dir: receives ``bags/packnet_output`` (MCAP of every node output) and ``node.log``.
        settings, label, samples, lidar_extrinsics: as :func:`evaluate_recorded`.
        params_file: node parameters file (default: the package's ``config/packnet.yaml``).
        domain_id: ROS_DOMAIN_ID (default: environment or per process); discovery stays
            on loopback (:func:`local_ros_env`).
        frame_timeout_s, startup_timeout_s: see :func:`replay_into_node`.
        say: receives one-line progress messages (node started, output bag written).
        progress: called after every replayed frame with the running report.
        replays: play the bag this many times into the same node (online adaptation); each
            replay is scored separately (``report.replay_results``), the returned result
            is the last replay's.
        max_rate_hz: publish images no faster than this (a camera's rate; 0 = as soon as
            the previous frame is answered).
        outputs: the node's outputs to record (keys of
            :data:`packnet_ros.ros.replay.OUTPUT_TYPES`; "scan" and "obstacles" make the node
            compute its navigation outputs).

    Returns:
        (the scored result, the replay report). Frames the node did not answer and read
        problems of the input bag are added to the result's counts.

    Raises:
        TimeoutError, RuntimeError: the node did not come up or died (see node.log).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    local_ros_env(domain_id)
    settings = settings or EvalSettings()
    out_bag = out_dir / 'bags' / 'packnet_output'
    log = out_dir / 'node.log'
    remap = {'image': topics.image, 'camera_info': topics.camera_info, 'odom': topics.odom}
    with NodeProcess(node_params, params_file or config_file('packnet.yaml'), remap, log_path=log) as node:
        if say:
            say(f'packnet_node started (pid {node.proc.pid}, log {log}); replaying on sim time')
        report = replay_into_node(bag, out_bag, topics.image, [topics.camera_info, topics.odom],
                                  node_name=f'/{node_name}', node_process=node,
                                  frame_timeout_s=frame_timeout_s, startup_timeout_s=startup_timeout_s,
                                  progress=progress, replays=replays, max_rate_hz=max_rate_hz,
                                  outputs=outputs)
    if say:
        say(f'output bag {out_bag}: ' + ', '.join(f'{t} x{n}' for t, n in report.counts.items()))
    report.replay_results = []
    for k, replay_bag in enumerate(report.replay_bags[:-1]):
        r = evaluate_recorded(replay_bag, f'/{node_name}/depth', bag, topics, settings, label=f'{label} replay {k + 1}',
                              lidar_extrinsics=lidar_extrinsics)
        report.replay_results.append(r)
    result = evaluate_recorded(report.replay_bags[-1], f'/{node_name}/depth', bag, topics, settings,
                               label=label if replays <= 1 else f'{label} replay {replays}', samples=samples,
                               lidar_extrinsics=lidar_extrinsics)
    report.replay_results.append(result)
    if report.missing:
        result.counts[NOT_ANSWERED] = len(report.missing)
    for reason, n in report.read_issues.items():
        result.counts[f'replay: {reason}'] = result.counts.get(f'replay: {reason}', 0) + n
    return result, report
