"""``packnet-ros demo``: the main job on real data, end to end.

1. converts a KITTI raw drive (../shared/data/kitti_tiny) into a rosbag2 (MCAP);
2. starts ``packnet_node`` as its own process (loopback only, own ROS domain, sim time);
3. replays the bag into it frame by frame and records everything it publishes;
4. scores the recorded depth against the LiDAR ground truth through the evaluation
   code (Garg crop, 0-80 m; metric and median-scaled), writes per-frame panels
   (input | depth | ground truth | error), a bird's-eye view of a point cloud and a
   metrics JSON, and prints the tables and latencies.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..evaluation.report import bins_text, counts_text, modes_table, write_csv, write_json, write_plots
from ..evaluation.runner import BagTopics, SampleWriter
from ..evaluation.scoring import EvalSettings
from ..evaluation.visualize import birds_eye, save_png
from ..io.kitti import KITTI_CAMERA_POSE
from ..msgdata import header_ns
from ..pointcloud import cloud_msg_to_arrays, depth_to_xyz
from ..postprocess.obstacles import camera_pose_matrix
from ..weights import resolve_weights

KITTI_CAMERA_PARAMS = dict(zip(('obstacles.camera_x_m', 'obstacles.camera_y_m', 'obstacles.camera_z_m',
                               'obstacles.camera_roll_rad', 'obstacles.camera_pitch_rad', 'obstacles.camera_yaw_rad'),
                              KITTI_CAMERA_POSE))
"""The node's extrinsics parameters for the KITTI camera (:data:`packnet_ros.io.kitti.KITTI_CAMERA_POSE`)."""


def _latency_rows(stats: list, e2e: dict) -> str:
    def summary(vals):
        v = np.asarray(vals, float)
        return f'{np.median(v):8.1f} {np.percentile(v, 90):8.1f} {v.max():8.1f}' if v.size else '      -'
    lines = [f'{"latency (ms)":34s} {"median":>8s} {"p90":>8s} {"max":>8s}']
    for key, name in (('inference_ms', 'network forward (node)'), ('preprocess_ms', 'preprocess (node)'),
                      ('postprocess_ms', 'depth/cloud/messages (node)'), ('latency_ms', 'node total')):
        lines.append(f'{name:34s} {summary([getattr(s, key) for s in stats])}')
    for topic in ('depth', 'points'):
        vals = [v[topic] for v in e2e.values() if topic in v]
        lines.append(f'{"image published -> " + topic + " received":34s} {summary(vals)}')
    lines.append('(first frame includes one-off warm-up; all frames counted)')
    return '\n'.join(lines)


def run_demo(data: str | Path, out: str | Path, checkpoint: str = 'default', device: str = 'auto',
             precision: str = 'auto', domain_id: int | None = None, frame_timeout_s: float = 120.0) -> int:
    """Run the demo; returns a process exit code (0 = all frames answered and scored)."""
    from ..io.kitti import KittiDrive, find_kitti_drive
    from ..ros.bag import write_kitti_bag
    from ..ros.evaluate_live import node_params_for, run_live
    from ..ros.harness import local_ros_env

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drive = KittiDrive(find_kitti_drive(data))
    env = local_ros_env(domain_id)
    print(f'[demo] data: {drive.path} ({len(drive.frames)} frames, {drive.image_size[1]}x{drive.image_size[0]})')
    print(f'[demo] ROS: discovery {env["ROS_AUTOMATIC_DISCOVERY_RANGE"]}, domain {env["ROS_DOMAIN_ID"]}')

    in_bag = out / 'bags' / 'kitti_input'
    summary = write_kitti_bag(drive, in_bag, overwrite=True)
    print(f'[demo] input bag {in_bag}: ' + ', '.join(f'{t} x{n}' for t, n in summary.counts.items()))
    for frame, reason in summary.skipped:
        print(f'[demo]   frame {frame}: {reason}')

    resolved = resolve_weights(checkpoint, with_pose=False)
    weights = resolved.description
    print(f'[demo] weights: {weights}')
    topics = BagTopics()
    settings = EvalSettings()
    samples = SampleWriter(out / 'frames')
    params = dict(node_params_for(resolved.choice.node_value, device, precision), **KITTI_CAMERA_PARAMS)
    result, report = run_live(in_bag, topics, params, out, settings, label='packnet_node', samples=samples,
                              outputs=('depth', 'camera_info', 'points', 'stats', 'scan', 'obstacles'),
                              domain_id=domain_id, frame_timeout_s=frame_timeout_s,
                              say=lambda text: print(f'[demo] {text}', flush=True),
                              progress=lambda r: print(f'[demo]   frame {r.frames_sent}/{len(drive.frames)} '
                                                       f'answered {r.frames_answered}', flush=True))
    out_bag = report.out_bag
    _write_birds_eye(out_bag, drive, out / 'birds_eye.png')
    stats = _read_stats(out_bag)

    print()
    print(f'Depth against the LiDAR ({drive.path.name}, frames {drive.frames[0]}-{drive.frames[-1]}, '
          f'Garg crop, {settings.min_depth:g}-{settings.max_depth:g} m)')
    print(f'weights: {weights}')
    print(modes_table(result))
    print(bins_text(result))
    print(counts_text(result))
    print()
    print(_latency_rows(stats, report.e2e_ms))
    if stats:
        s = stats[-1]
        print(f'network {s.network} on {s.device} ({s.precision}), input {s.input_width}x{s.input_height}; '
              f'node frames processed {s.frames_processed}, dropped {s.frames_dropped}')
    doc = result.to_json()
    doc['weights'] = weights
    doc['latency_ms'] = {k: [getattr(s, k) for s in stats]
                         for k in ('inference_ms', 'preprocess_ms', 'postprocess_ms', 'latency_ms')}
    doc['e2e_ms'] = {str(k): v for k, v in report.e2e_ms.items()}
    doc['frames'] = {'sent': report.frames_sent, 'answered': report.frames_answered,
                     'missing': report.missing, 'resent': report.resent}
    write_json(out / 'metrics.json', doc)
    write_csv(out / 'per_frame.csv', result.per_frame)
    plots = write_plots(result, out)
    print()
    print(f'[demo] wrote {len(samples.written)} panels to {out / "frames"}, {out / "birds_eye.png"}, '
          f'{", ".join(p.name for p in plots)}, metrics.json, per_frame.csv ({time.time() - t0:.0f} s)')
    ok = report.frames_answered == report.frames_sent == len(drive.frames) and result.counts['frames_scored'] > 0
    if not ok:
        print(f'[demo] FAILED: {report.frames_answered}/{report.frames_sent} frames answered, '
              f'{result.counts["frames_scored"]} scored (see {out / "node.log"})')
    return 0 if ok else 1


def _read_stats(bag: Path) -> list:
    from ..io.bag import iter_messages
    return [m.msg for m in iter_messages(bag, ['/packnet_node/stats'])]


def _write_birds_eye(out_bag: Path, drive, path: Path) -> None:
    """Bird's-eye view of the middle frame: the predicted cloud (image colours), that frame's
    LiDAR (green), the obstacle cloud (red) and the scan returns (cyan), all in the camera's
    optical frame seen from above."""
    from ..io.bag import iter_messages
    clouds = list(iter_messages(out_bag, ['/packnet_node/points']))
    if not clouds:
        return
    m = clouds[len(clouds) // 2].msg
    points, colours = cloud_msg_to_arrays(m)
    stamp = header_ns(m)
    lidar = None
    for i in drive.frames:
        if drive.timestamp_ns(i) == stamp and drive.has_gt(i):
            lidar = depth_to_xyz(drive.gt_depth(i), drive.K)
    T_optical_target = np.linalg.inv(camera_pose_matrix(*KITTI_CAMERA_POSE))
    overlays = []
    for msg in (x.msg for x in iter_messages(out_bag, ['/packnet_node/obstacles']) if header_ns(x.msg) == stamp):
        obstacles, _ = cloud_msg_to_arrays(msg)
        overlays.append((_transform(T_optical_target, obstacles), (255, 60, 60), 2))
    for msg in (x.msg for x in iter_messages(out_bag, ['/packnet_node/scan']) if header_ns(x.msg) == stamp):
        r = np.asarray(msg.ranges, dtype=np.float64)
        a = msg.angle_min + msg.angle_increment * np.arange(r.size)
        hits = np.stack([r * np.cos(a), r * np.sin(a), np.zeros_like(r)], -1)[np.isfinite(r)]
        overlays.append((_transform(T_optical_target, hits), (60, 230, 255), 3))
    save_png(path, birds_eye(points, colours, overlay=lidar, overlays=overlays))


def _transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(..., 3) points mapped by the 4x4 ``T`` -> (N, 3)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return p @ T[:3, :3].T + T[:3, 3]
