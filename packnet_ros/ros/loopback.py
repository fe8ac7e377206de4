"""The ROS parts of ``packnet-ros benchmark``: the node's per-frame work outside the network
(the node's own functions, in process) and image -> cloud latency over loopback with the node
in its own process (plus the soak: drops and memory growth over many frames).

Every number comes from the code the node runs: :func:`node_frame_overhead` calls
``frame_from_msgs`` -> :meth:`DepthPipeline.process` -> ``output_msgs`` exactly as
``packnet_node`` does; the loopback measurements talk to a real ``packnet_node`` process
through :class:`packnet_ros.ros.harness.RosHarness`.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from packnet_ros.msg import DepthStats

from ..msgdata import header_ns
from ..pipeline import DepthPipeline
from .conversions import frame_from_msgs, make_camera_info, make_header, output_msgs, rgb_to_image_msg
from .harness import NodeProcess, RosHarness, local_ros_env

KITTI_K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
"""Intrinsics used with a random 1242x375 frame when no KITTI frame is available."""


def _frame_or_random(rgb: np.ndarray | None, K: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if rgb is None:
        rgb = np.random.default_rng(0).integers(0, 255, (375, 1242, 3), np.uint8)
    return rgb, (K if K is not None else KITTI_K)


def _summary(values: list[float]) -> dict:
    v = sorted(values)
    return {'median_ms': statistics.median(v), 'p90_ms': v[min(len(v) - 1, int(0.9 * len(v)))],
            'mean_ms': statistics.fmean(v), 'min_ms': v[0], 'n': len(v)}


def node_frame_overhead(pipeline: DepthPipeline, repeats: int, rgb: np.ndarray | None = None,
                        K: np.ndarray | None = None, warmup: int = 2) -> dict:
    """The node's per-frame costs outside the network, for one camera frame.

    Runs what ``packnet_node._process`` runs (message -> frame, the pipeline with a cloud,
    frame -> depth / camera_info / cloud messages) ``warmup + repeats`` times.

    Returns:
        {step: {median_ms, p90_ms, mean_ms, min_ms, n}} for ``image_msg_to_array``,
        ``preprocess``, each pipeline stage after the network (``scale``, ``depth``, ``cloud``
        and any inserted one: ``refine``, ``scan``, ``obstacles``) and ``output_messages``; ``network_median_ms`` (excluded from the total);
        ``total_median_ms`` (sum of the medians outside the network); ``frame``.
    """
    rgb, K = _frame_or_random(rgb, K)
    H, W = rgb.shape[:2]
    header = make_header(1, 'camera_optical_frame')
    image, info = rgb_to_image_msg(rgb, header), make_camera_info(header, K, W, H)
    steps: dict[str, list[float]] = {k: [] for k in ('image_msg_to_array', 'preprocess', 'output_messages')}
    network = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        frame = frame_from_msgs(image, info)
        t1 = time.perf_counter()
        out = pipeline.process(frame, cloud=True)
        t2 = time.perf_counter()
        output_msgs(out, header, info)
        t3 = time.perf_counter()
        if i < warmup:
            continue
        t = out.timings_ms
        steps['image_msg_to_array'].append(1e3 * (t1 - t0))
        steps['preprocess'].append(t['preprocess_ms'])
        for stage in pipeline.stages[1:]:  # every stage after the network, inserted ones included
            steps.setdefault(stage.name, []).append(t[f'{stage.name}_ms'])
        steps['output_messages'].append(1e3 * (t3 - t2))
        network.append(t['inference_ms'])
    result: dict = {name: _summary(v) for name, v in steps.items()}
    result['total_median_ms'] = sum(v['median_ms'] for v in result.values())
    result['network_median_ms'] = statistics.median(network)
    h, w = pipeline.estimator.input_shape
    result['frame'] = (f'{W}x{H} rgb8 -> {w}x{h} depth + {pipeline.settings.cloud_fields} cloud '
                       f'({pipeline.estimator.label}, {pipeline.estimator.precision})')
    return result


def image_to_cloud_latency(checkpoint: str, frames: int, rate_hz: float, node_params: dict | None = None,
                           rgb: np.ndarray | None = None, K: np.ndarray | None = None,
                           rss_every: int = 0) -> dict:
    """Image published -> cloud received over loopback (node in its own process, Fast DDS profile).

    Frames are published at ``rate_hz`` (a camera's rate: the publisher does not wait for
    the node); latency = cloud arrival - publish time; ``latency_minus_network`` subtracts
    the node's ``inference_ms`` of that frame (from ~/stats). With ``rss_every`` > 0 the node
    process's RSS (MiB) is sampled every that many frames (``rss_mb``: [[frame, MiB], ...]).

    Raises:
        RuntimeError: the node process exited.
        TimeoutError: the node did not come up within 120 s.
    """
    local_ros_env()
    rgb, K = _frame_or_random(rgb, K)
    params = {'checkpoint': checkpoint, **(node_params or {})}
    log = Path('/tmp') / f'packnet_bench_node_{os.getpid()}.log'
    sent: dict[int, float] = {}
    cloud_at: dict[int, float] = {}
    infer: dict[int, float] = {}
    rss: list = []
    with NodeProcess(params, remap={'image': '/bench/image', 'camera_info': '/bench/camera_info'},
                     use_sim_time=False, log_path=log) as proc, RosHarness('packnet_bench', proc) as ros:
        pub_img = ros.publisher(Image, '/bench/image')
        pub_info = ros.publisher(CameraInfo, '/bench/camera_info')
        ros.subscribe(PointCloud2, '/packnet_node/points', keep=False,
                      callback=lambda m: cloud_at.setdefault(header_ns(m), time.perf_counter()))
        ros.subscribe(DepthStats, '/packnet_node/stats', keep=False,
                      callback=lambda m: infer.setdefault(header_ns(m), m.inference_ms))
        if not ros.wait_for_subscribers([pub_img, pub_info], '/packnet_node/points', 120.0):
            raise TimeoutError(f'packnet_node did not come up within 120 s (log: {log})')
        ros.spin_for(0.5)
        period = 1.0 / rate_hz
        t_next = time.perf_counter()
        for i in range(frames):
            if rss_every and i % rss_every == 0:
                rss.append([i, proc.rss_mb()])
            stamp = 1_000_000_000 * (i + 1)
            header = make_header(stamp, 'cam')
            pub_info.publish(make_camera_info(header, K, rgb.shape[1], rgb.shape[0]))
            img = rgb_to_image_msg(rgb, header)
            sent[stamp] = time.perf_counter()
            pub_img.publish(img)
            t_next += period
            ros.spin_until(lambda: time.perf_counter() >= t_next, max(0.0, t_next - time.perf_counter()) + 1.0,
                           poll_s=0.005)
        ros.spin_until(lambda: len(cloud_at) >= len(sent), 10.0)
        if rss_every:
            rss.append([frames, proc.rss_mb()])
    lat = [1e3 * (cloud_at[s] - sent[s]) for s in sent if s in cloud_at]
    over = [1e3 * (cloud_at[s] - sent[s]) - infer[s] for s in sent if s in cloud_at and s in infer]

    def summary(v):
        return {'median_ms': statistics.median(v), 'p90_ms': sorted(v)[int(0.9 * (len(v) - 1))],
                'max_ms': max(v)} if v else {}
    return {'rate_hz': rate_hz, 'frames_sent': len(sent), 'frames_received': len(lat),
            'latency': summary(lat), 'latency_minus_network': summary(over),
            'node': params, **({'rss_mb': rss} if rss_every else {})}


SOAK_NODE = {'checkpoint': 'untrained:PackNetSlim01:0.25', 'input_height': 96, 'input_width': 320}
"""The soak's small model: PackNetSlim01 at width 0.25 and 320x96 input (a small model on CPU)."""


def soak(frames: int, rate_hz: float, rgb: np.ndarray | None = None, K: np.ndarray | None = None,
         node_params: dict | None = None) -> dict:
    """``frames`` images through a node process at ``rate_hz``: dropped frames and RSS growth.

    The camera frame is the given frame at half resolution (621x187 for KITTI, K scaled
    alike). Growth is measured from the sample after the first 10 % of frames (allocator
    and caches warm) to the end: ``rss_growth`` = (end - warm) / warm.
    """
    if rgb is not None and K is not None:
        import cv2
        rgb = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
        K = np.diag([0.5, 0.5, 1.0]) @ K
    params = dict(SOAK_NODE, **(node_params or {}))
    checkpoint = params.pop('checkpoint')
    every = max(1, frames // 50)
    r = image_to_cloud_latency(checkpoint, frames, rate_hz, params, rgb, K, rss_every=every)
    samples = [v for i, v in r['rss_mb'] if v is not None and i >= frames // 10]
    r['dropped'] = r['frames_sent'] - r['frames_received']
    r['rss_warm_mb'], r['rss_end_mb'] = (samples[0], samples[-1]) if samples else (None, None)
    r['rss_growth'] = (samples[-1] - samples[0]) / samples[0] if samples else None
    r['node']['checkpoint'] = checkpoint
    return r
