#!/usr/bin/env python3
"""Does ``~/obstacles`` hold the vehicles and not the road? (issue 12's check, against LiDAR)

    python tools/obstacle_check.py --kitti ../shared/data/kitti_traffic --checkpoint default \\
        --frames 0,25,50,75 [--json out.json]

Per frame of a KITTI raw drive with Velodyne scans (``velodyne_points/data/%010d.bin``) the
image runs through the node's per-frame pipeline (:class:`packnet_ros.pipeline.DepthPipeline`
with the node's default parameters, the navigation stages inserted after ``cloud`` as the
node does) with the node's default obstacle settings (``obstacles.*`` parameter defaults,
target frame ``base_link``) and the KITTI colour camera's pose as extrinsics
(:data:`packnet_ros.io.kitti.KITTI_CAMERA_POSE`: 1.65 m above the road, level). The frame's
``FrameOutput.obstacles`` (what the node publishes on ``~/obstacles``) is compared with the
frame's Velodyne points moved into the same ``base_link`` (``T_base_optical @ T_cam_velo``):

* LiDAR obstacle: a return whose height z is in the obstacle band
  [``min_height_m``, ``max_height_m``] and whose horizontal range hypot(x, y) is within
  ``max_range_m``; LiDAR road: a return below the band (z < ``min_height_m``);
* **precision**: % of the obstacle points within ``--tolerance`` (1 m, 3-D distance) of a
  LiDAR obstacle (for this reference the range limit is widened by the tolerance, so an
  obstacle at the range edge is not counted as wrong);
* **recall**: % of the LiDAR obstacles that have an obstacle point within the tolerance;
  **recall ahead**: the same for the LiDAR obstacles in the lane ahead (|y| <= 1.75 m: the
  vehicles in front);
* **road removed**: of the depth image's pixels whose nearest LiDAR return (the LiDAR
  projected with the output's intrinsics at the depth's resolution) is road within
  ``max_range_m``, the % whose predicted point does NOT become an obstacle point (the node's
  criteria before voxelization: finite, range, height band, the frame's ground plane and
  confidence when set). ``road removed (all)`` counts road pixels at any LiDAR range.

The Velodyne of these drives is cropped to the points that project into image_02; points
outside the image (at the depth's resolution) are dropped so that both sides see the same
field of view. Exit status 2 with a message on bad input (no drive, no scans, a frame that
does not exist, weights that cannot be loaded).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from packnet_ros.io.kitti import KITTI_CAMERA_POSE, KittiDrive, KittiFormatError, find_kitti_drive
from packnet_ros.postprocess.obstacles import ObstacleCloud, ObstacleSettings, camera_pose_matrix

DEFAULT_FRAMES = '0,25,50,75'
DEFAULT_TOLERANCE_M = 1.0
AHEAD_HALF_WIDTH_M = 1.75
"""LiDAR obstacles with |y| <= this (a 3.5 m lane centred on the vehicle) are "ahead"."""


# ----------------------------------------------------------------------------- settings
def node_obstacle_settings(camera_pose: tuple[float, ...] = KITTI_CAMERA_POSE) -> ObstacleSettings:
    """The node's default ``obstacles.*`` / ``scan.*`` parameters with the camera at
    ``camera_pose`` (x, y, z, roll, pitch, yaw in ``base_link``; the ``obstacles.camera_*``
    parameters), as ``packnet_node.obstacle_settings`` builds them (without importing ROS)."""
    from packnet_ros.node_config import defaults

    v = defaults()
    return ObstacleSettings(
        target_frame=str(v['obstacles.target_frame']), T_target_camera=camera_pose_matrix(*camera_pose),
        min_height_m=float(v['obstacles.min_height_m']), max_height_m=float(v['obstacles.max_height_m']),
        max_range_m=float(v['obstacles.max_range_m']), voxel_m=float(v['obstacles.voxel_m']),
        ground_plane=bool(v['obstacles.ground_plane']), min_confidence=float(v['obstacles.min_confidence']),
        scan_angle_increment=math.radians(float(v['scan.angle_increment_deg'])),
        scan_range_min_m=float(v['scan.range_min_m']), scan_range_max_m=float(v['scan.range_max_m']))


def node_pipeline(checkpoint: str, settings: ObstacleSettings, device: str = 'auto', precision: str = 'auto',
                  backend: str = 'auto'):
    """(pipeline, weights description): the node's pipeline for ``checkpoint`` at the node's
    default parameters, with its scan and obstacle stages after ``cloud``.

    Raises:
        packnet_ros.weights.WeightsError, packnet_ros.checkpoint.CheckpointError: bad weights.
    """
    from packnet_ros.node_config import defaults
    from packnet_ros.online import ScaleSettings
    from packnet_ros.pipeline import PipelineSettings, pipeline_from_weights
    from packnet_ros.postprocess.obstacles import navigation_stages
    from packnet_ros.weights import resolve_weights

    v = defaults()
    scale = ScaleSettings(str(v['scale_source']), float(v['fixed_scale']), int(v['scale.window']),
                          float(v['scale.min_speed_mps']), float(v['scale.max_odom_gap_s']),
                          float(v['scale.max_frame_gap_s']), float(v['scale.outlier_k']))
    ps = PipelineSettings(max_depth_m=float(v['max_depth_m']), min_depth_m=float(v['min_depth_m']),
                          output_resolution=str(v['output_resolution']), cloud=bool(v['publish_cloud']),
                          cloud_fields=str(v['cloud_fields']), cloud_decimation=int(v['cloud_decimation']),
                          scale=scale, min_confidence=float(v['min_confidence']))
    weights = resolve_weights(checkpoint, with_pose=False)
    pipeline = pipeline_from_weights(weights.checkpoint, ps, device=device, precision=precision, backend=backend)
    scan, obstacles = navigation_stages(settings)
    pipeline.insert_stage(scan, after='cloud')
    pipeline.insert_stage(obstacles, after='scan')
    return pipeline, weights.description


# ----------------------------------------------------------------------------- geometry
def transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3+) points (first three columns) mapped by the 4x4 ``T`` -> (N, 3) float64."""
    p = np.asarray(points, dtype=np.float64)[:, :3]
    return p @ np.asarray(T, dtype=np.float64)[:3, :3].T + np.asarray(T, dtype=np.float64)[:3, 3]


def project_pixels(points_optical: np.ndarray, K: np.ndarray, shape: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(inside, pixel): which points project into an (H, W) image (finite, z > 0) and the flat
    pixel index (v * W + u, -1 outside) of each, rounded as
    :func:`packnet_ros.completion.sparse.project_to_depth` does.

    Args:
        points_optical: (N, 3) metres in the camera's optical frame.
        K: (3, 3) intrinsics of the (H, W) image.
    """
    H, W = int(shape[0]), int(shape[1])
    p = np.asarray(points_optical, dtype=np.float64).reshape(-1, 3)
    K = np.asarray(K, dtype=np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        u = np.floor(K[0, 0] * x / z + K[0, 1] * y / z + K[0, 2] + 0.5)
        v = np.floor(K[1, 1] * y / z + K[1, 2] + 0.5)
        inside = np.all(np.isfinite(p), axis=1) & (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    pixel = np.full(len(p), -1, dtype=np.int64)
    pixel[inside] = v[inside].astype(np.int64) * W + u[inside].astype(np.int64)
    return inside, pixel


def nearest_return_index(points_optical: np.ndarray, K: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int64: per pixel the index of the nearest (smallest z) point that projects into
    it (:func:`project_pixels`), -1 where none does."""
    H, W = int(shape[0]), int(shape[1])
    inside, pixel = project_pixels(points_optical, K, shape)
    idx = np.flatnonzero(inside)
    out = np.full(H * W, -1, dtype=np.int64)
    if idx.size:
        z = np.asarray(points_optical, dtype=np.float64).reshape(-1, 3)[idx, 2]
        order = np.argsort(z, kind='stable')  # nearest first
        uniq, first = np.unique(pixel[idx][order], return_index=True)
        out[uniq] = idx[order][first]
    return out.reshape(H, W)


def obstacle_pixel_mask(points_target: np.ndarray, settings: ObstacleSettings,
                        ground_plane: tuple[float, float, float] | None = None,
                        confidence: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: the pixels whose point becomes an obstacle point (the criteria of
    :func:`packnet_ros.postprocess.obstacles.obstacle_cloud` before voxelization: finite,
    confidence >= ``settings.min_confidence`` when a confidence map is given and the threshold
    is > 0, hypot(x, y) <= max_range, height in the band, measured from ``ground_plane`` (the
    cloud's fitted plane) when given, else from z = 0).

    Args:
        points_target: (H, W, 3) metres in the target frame (NaN = no point).
    """
    p = np.asarray(points_target, dtype=np.float64)
    with np.errstate(invalid='ignore'):
        keep = np.all(np.isfinite(p), axis=-1)
        if confidence is not None and settings.min_confidence > 0:
            keep &= np.asarray(confidence).reshape(p.shape[:-1]) >= settings.min_confidence
        keep &= np.hypot(p[..., 0], p[..., 1]) <= settings.max_range_m
        h = p[..., 2] if ground_plane is None else \
            p[..., 2] - (ground_plane[0] * p[..., 0] + ground_plane[1] * p[..., 1] + ground_plane[2])
        keep &= (h >= settings.min_height_m) & (h <= settings.max_height_m)
    return keep


def _nearest_distance(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(len(queries),) Euclidean distance of each query point to its nearest reference point
    (+Inf when there is no reference point)."""
    q = np.asarray(queries, dtype=np.float64).reshape(-1, 3)
    r = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    if len(q) == 0:
        return np.zeros(0)
    if len(r) == 0:
        return np.full(len(q), np.inf)
    try:
        from scipy.spatial import cKDTree
    except ImportError:  # scikit-learn is a dependency of the ground-plane fit
        from sklearn.neighbors import NearestNeighbors
        return NearestNeighbors(n_neighbors=1).fit(r).kneighbors(q)[0][:, 0]
    return cKDTree(r).query(q, k=1)[0]


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else float('nan')


# ----------------------------------------------------------------------------- metrics
@dataclass
class ObstacleMetrics:
    """One frame's (or the pooled) comparison (module docstring). Percentages are NaN when
    their denominator is 0.

    Attributes:
        precision_pct, recall_pct, recall_ahead_pct, road_removed_pct, road_removed_all_pct: see
            the module docstring.
        n_obstacle_points: points of the (voxelized) obstacle cloud; n_precise: of them within
            the tolerance of a LiDAR obstacle.
        n_lidar: LiDAR points in the image; n_lidar_obstacles: of them in the band and range;
            n_recalled: of those with an obstacle point within the tolerance; n_lidar_ahead,
            n_recalled_ahead: the same for the LiDAR obstacles with |y| <= AHEAD_HALF_WIDTH_M.
        n_road_pixels: pixels whose nearest LiDAR return is road within range; n_road_removed:
            of them without an obstacle point. n_road_pixels_all / n_road_removed_all: at any range.
    """

    precision_pct: float
    recall_pct: float
    recall_ahead_pct: float
    road_removed_pct: float
    road_removed_all_pct: float
    n_obstacle_points: int
    n_precise: int
    n_lidar: int
    n_lidar_obstacles: int
    n_recalled: int
    n_lidar_ahead: int
    n_recalled_ahead: int
    n_road_pixels: int
    n_road_removed: int
    n_road_pixels_all: int
    n_road_removed_all: int

    @classmethod
    def from_counts(cls, **n: int) -> ObstacleMetrics:
        return cls(_pct(n['n_precise'], n['n_obstacle_points']), _pct(n['n_recalled'], n['n_lidar_obstacles']),
                   _pct(n['n_recalled_ahead'], n['n_lidar_ahead']),
                   _pct(n['n_road_removed'], n['n_road_pixels']),
                   _pct(n['n_road_removed_all'], n['n_road_pixels_all']), **n)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k.startswith('n_')}


def pooled(rows: list[ObstacleMetrics]) -> ObstacleMetrics:
    """Counts summed over frames (at least one), percentages of the sums."""
    keys = rows[0].counts().keys()
    return ObstacleMetrics.from_counts(**{k: int(sum(r.counts()[k] for r in rows)) for k in keys})


def obstacle_metrics(obstacle_points: np.ndarray, obstacle_mask: np.ndarray, lidar_target: np.ndarray,
                     lidar_pixel: np.ndarray, settings: ObstacleSettings,
                     tolerance_m: float = DEFAULT_TOLERANCE_M) -> ObstacleMetrics:
    """Compare an obstacle cloud with LiDAR returns, all in the target frame.

    Args:
        obstacle_points: (M, 3) the obstacle cloud (``ObstacleCloud.points``).
        obstacle_mask: (H, W) bool, the pixels of the depth image that became obstacle points
            (:func:`obstacle_pixel_mask`).
        lidar_target: (N, 3) LiDAR returns in the target frame, only those inside the image.
        lidar_pixel: (H, W) index into ``lidar_target`` of each pixel's nearest return, -1 = none
            (:func:`nearest_return_index`).
        settings: the band and range that make a LiDAR return an obstacle or road.
        tolerance_m: 3-D distance within which a point counts as matched (> 0).

    Raises:
        ValueError: shapes that do not fit, or tolerance_m <= 0.
    """
    if not tolerance_m > 0:
        raise ValueError(f'tolerance_m must be > 0, got {tolerance_m}')
    obs = np.asarray(obstacle_points, dtype=np.float64).reshape(-1, 3)
    lidar = np.asarray(lidar_target, dtype=np.float64).reshape(-1, 3)
    mask = np.asarray(obstacle_mask, dtype=bool)
    pix = np.asarray(lidar_pixel)
    if mask.shape != pix.shape or mask.ndim != 2:
        raise ValueError(f'obstacle_mask {mask.shape} and lidar_pixel {pix.shape} must be the same (H, W)')
    if pix.size and pix.max() >= len(lidar):
        raise ValueError(f'lidar_pixel refers to point {pix.max()} of {len(lidar)}')
    rng = np.hypot(lidar[:, 0], lidar[:, 1])
    z = lidar[:, 2]
    in_band = (z >= settings.min_height_m) & (z <= settings.max_height_m)
    lidar_obstacle = in_band & (rng <= settings.max_range_m)
    reference = lidar[in_band & (rng <= settings.max_range_m + tolerance_m)]
    n_precise = int(np.count_nonzero(_nearest_distance(obs, reference) <= tolerance_m))
    recalled = _nearest_distance(lidar[lidar_obstacle], obs) <= tolerance_m
    ahead = np.abs(lidar[lidar_obstacle, 1]) <= AHEAD_HALF_WIDTH_M
    hit = pix >= 0
    road_all = np.zeros(pix.shape, bool)
    road_all[hit] = z[pix[hit]] < settings.min_height_m
    road = road_all.copy()
    road[hit] &= rng[pix[hit]] <= settings.max_range_m
    return ObstacleMetrics.from_counts(
        n_obstacle_points=len(obs), n_precise=n_precise, n_lidar=len(lidar),
        n_lidar_obstacles=int(np.count_nonzero(lidar_obstacle)), n_recalled=int(np.count_nonzero(recalled)),
        n_lidar_ahead=int(np.count_nonzero(ahead)), n_recalled_ahead=int(np.count_nonzero(recalled & ahead)),
        n_road_pixels=int(np.count_nonzero(road)), n_road_removed=int(np.count_nonzero(road & ~mask)),
        n_road_pixels_all=int(np.count_nonzero(road_all)), n_road_removed_all=int(np.count_nonzero(road_all & ~mask)))


# ----------------------------------------------------------------------------- one frame
@dataclass
class FrameResult:
    frame: int
    metrics: ObstacleMetrics
    ground_status: str
    n_band: int
    seconds: float


def check_frame(pipeline, drive: KittiDrive, frame: int, settings: ObstacleSettings,
                tolerance_m: float = DEFAULT_TOLERANCE_M) -> FrameResult:
    """Run ``pipeline`` (with its navigation stages) on one frame and compare its obstacle
    cloud with the frame's Velodyne scan.

    Raises:
        KittiFormatError: the frame's image or scan is missing / malformed.
        RuntimeError: the pipeline produced no obstacle cloud (the stage's error is named).
    """
    from packnet_ros.pipeline import FrameInput
    from packnet_ros.pointcloud import depth_to_xyz
    from packnet_ros.postprocess.obstacles import camera_to_target

    velo = drive.velodyne(frame)
    rgb = drive.image(frame)
    t0 = time.perf_counter()
    out = pipeline.process(FrameInput(rgb, drive.K, drive.timestamp_ns(frame)), cloud=False)
    seconds = time.perf_counter() - t0
    cloud: ObstacleCloud | None = out.obstacles
    if cloud is None or out.K is None:
        stage = next((s for s in pipeline.stages if s.name == 'obstacles'), None)
        raise RuntimeError(f'frame {frame}: no obstacle cloud ({getattr(stage, "last_error", None)})')
    T = settings.T_target_camera
    points_target = camera_to_target(depth_to_xyz(out.depth, out.K), T)
    mask = obstacle_pixel_mask(points_target, settings, cloud.ground_plane, out.confidence)
    if int(mask.sum()) != cloud.n_band:  # the mask must be the node's own selection
        raise RuntimeError(f'frame {frame}: {int(mask.sum())} obstacle pixels, the node kept {cloud.n_band}')
    lidar_optical = transform(drive.T_cam_velo, velo)
    # only the returns inside the depth image: the prediction's field of view
    lidar_optical = lidar_optical[project_pixels(lidar_optical, out.K, out.depth.shape)[0]]
    pixel = nearest_return_index(lidar_optical, out.K, out.depth.shape)
    lidar_target = transform(T, lidar_optical)
    metrics = obstacle_metrics(cloud.points, mask, lidar_target, pixel, settings, tolerance_m)
    return FrameResult(int(frame), metrics, cloud.ground_status, cloud.n_band, seconds)


# ----------------------------------------------------------------------------- CLI
def parse_frames(text: str, available: list[int]) -> list[int]:
    """``"0,25,50"``, ``"all"`` or ``"START:STOP[:STEP]"`` (Python slice of the frame numbers,
    e.g. ``"0:78:5"``) -> frame numbers.

    Raises:
        ValueError: malformed text, or a frame the drive does not have.
    """
    text = text.strip()
    if text == 'all':
        return list(available)
    try:
        if ':' in text:
            parts = [int(x) if x else None for x in text.split(':')]
            if len(parts) > 3 or (len(parts) == 3 and parts[2] == 0):
                raise ValueError
            frames = [f for f in available if f in set(range(*(
                (parts[0] or 0), (parts[1] if parts[1] is not None else max(available) + 1),
                (parts[2] if len(parts) == 3 and parts[2] else 1))))]
        else:
            frames = [int(x) for x in text.split(',') if x.strip()]
    except ValueError:
        raise ValueError(f'--frames {text!r}: expected "0,25,50", "all" or "START:STOP[:STEP]"') from None
    missing = [f for f in frames if f not in set(available)]
    if missing:
        raise ValueError(f'--frames: frame(s) {missing} not in the drive (frames {available[0]}..{available[-1]})')
    if not frames:
        raise ValueError(f'--frames {text!r} selects no frame')
    return frames


def _fmt_pct(x: float) -> str:
    return '-' if not math.isfinite(x) else f'{x:.1f}'


def table(rows: list[FrameResult], total: ObstacleMetrics) -> str:
    lines = ['| frame | obstacle pts | precision % | LiDAR obstacles | recall % | ahead | recall ahead % | road px '
             '| road removed % | road removed (all) % |', '|---|---|---|---|---|---|---|---|---|---|']

    def line(name: str, m: ObstacleMetrics) -> str:
        return (f'| {name} | {m.n_obstacle_points} | {_fmt_pct(m.precision_pct)} | {m.n_lidar_obstacles} | '
                f'{_fmt_pct(m.recall_pct)} | {m.n_lidar_ahead} | {_fmt_pct(m.recall_ahead_pct)} | '
                f'{m.n_road_pixels} | {_fmt_pct(m.road_removed_pct)} | '
                f'{_fmt_pct(m.road_removed_all_pct)} |')
    lines += [line(str(r.frame), r.metrics) for r in rows]
    lines.append(line('pooled', total))
    if len(rows) > 1:
        def span(key: str) -> str:
            vals = [getattr(r.metrics, key) for r in rows if math.isfinite(getattr(r.metrics, key))]
            return f'{min(vals):.1f}-{max(vals):.1f}' if vals else '-'
        lines.append(f'| range over frames | | {span("precision_pct")} | | {span("recall_pct")} | | '
                     f'{span("recall_ahead_pct")} | | {span("road_removed_pct")} | {span("road_removed_all_pct")} |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog='\n\n'.join(__doc__.split('\n\n')[2:]))
    ap.add_argument('--kitti', required=True, help='KITTI raw drive folder (or a folder above one) with '
                                                   'velodyne_points/')
    ap.add_argument('--checkpoint', default='default', help='weights, as the node\'s checkpoint parameter '
                                                            '(default, selfsup, a .ckpt path)')
    ap.add_argument('--frames', default=DEFAULT_FRAMES, help='"0,25,50", "all" or "START:STOP[:STEP]" '
                                                             f'(default {DEFAULT_FRAMES})')
    ap.add_argument('--tolerance', type=float, default=DEFAULT_TOLERANCE_M, help='match distance, metres (1.0)')
    ap.add_argument('--device', default='auto', help='as the node\'s device parameter (auto)')
    ap.add_argument('--precision', default='auto', help='as the node\'s precision parameter (auto)')
    ap.add_argument('--backend', default='auto', help='as the node\'s backend parameter (auto)')
    ap.add_argument('--threads', type=int, default=0, help='torch CPU threads (0 = torch default)')
    ap.add_argument('--json', type=Path, help='write the per-frame and pooled numbers here')
    args = ap.parse_args(argv)

    def fail(msg: str) -> int:
        print(f'obstacle_check: {msg}', file=sys.stderr)
        return 2

    if not (args.tolerance > 0 and math.isfinite(args.tolerance)):
        return fail(f'--tolerance must be a positive number of metres, got {args.tolerance}')
    try:
        drive = KittiDrive(find_kitti_drive(args.kitti))
    except (OSError, ValueError) as exc:
        return fail(f'--kitti {args.kitti}: {exc}')
    if not drive.has_velodyne():
        return fail(f'{drive.path} has no Velodyne scans (velodyne_points/data/%010d.bin): nothing to compare with')
    try:
        frames = parse_frames(args.frames, drive.frames)
    except ValueError as exc:
        return fail(str(exc))
    no_scan = [f for f in frames if not drive.has_velodyne(f)]
    if no_scan:
        return fail(f'frame(s) {no_scan} have no Velodyne scan in {drive.path / "velodyne_points"}')
    if args.threads > 0:
        import torch
        torch.set_num_threads(args.threads)
    settings = node_obstacle_settings()
    try:
        pipeline, description = node_pipeline(args.checkpoint, settings, args.device, args.precision,
                                              args.backend)
    except (ValueError, OSError, RuntimeError) as exc:  # WeightsError / CheckpointError are ValueErrors
        return fail(f'--checkpoint {args.checkpoint}: {exc}')
    est = pipeline.estimator
    print(f'weights: {description}')
    print(f'drive: {drive.path} ({len(frames)} frames), camera pose {KITTI_CAMERA_POSE} in '
          f'{settings.target_frame}, band {settings.min_height_m}-{settings.max_height_m} m, range '
          f'{settings.max_range_m} m, voxel {settings.voxel_m} m, ground plane {settings.ground_plane}, '
          f'tolerance {args.tolerance} m, device {getattr(est, "device", "?")}, '
          f'precision {getattr(est, "precision", "?")}, backend {getattr(est, "backend", "?")}')
    rows: list[FrameResult] = []
    try:
        for f in frames:
            rows.append(check_frame(pipeline, drive, f, settings, args.tolerance))
    except (KittiFormatError, RuntimeError) as exc:
        return fail(str(exc))
    finally:
        pipeline.stop()
    total = pooled([r.metrics for r in rows])
    print(table(rows, total))
    if args.json:
        from packnet_ros.jsonio import write_json
        write_json(args.json, {
            'checkpoint': args.checkpoint, 'weights': description, 'drive': str(drive.path),
            'camera_pose': list(KITTI_CAMERA_POSE), 'tolerance_m': args.tolerance,
            'settings': {k: getattr(settings, k) for k in ('target_frame', 'min_height_m', 'max_height_m',
                                                           'max_range_m', 'voxel_m', 'ground_plane',
                                                           'min_confidence')},
            'frames': [{'frame': r.frame, **asdict(r.metrics), 'ground_status': r.ground_status,
                        'n_band': r.n_band, 'seconds': r.seconds} for r in rows],
            'pooled': asdict(total)})
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
