"""Scoring with a sparse LiDAR input: depth completion and monocular models on held-out pixels.

A sparse input (a LiDAR scan, optionally subsampled to fewer beams or a random fraction
of its points, or a sparse depth image) is given to the completion methods
(:mod:`packnet_ros.completion`) and to the learned completion models (checkpoints with a
sparse branch, run through the node's pipeline with its ``learned`` completion stage, which
projects the points at the network input's resolution); monocular models ignore it. **Pixels given as input are
never scored**: per frame, every ground-truth pixel that holds an input value is removed
from the ground truth, and every source (completion and monocular alike) is scored on the
remaining ("held-out") ground-truth pixels with the common scoring path
(:class:`packnet_ros.evaluation.scoring.Evaluator`: crop, range, metric and median modes).
Held-out pixels for which some source has no prediction (NaN, e.g. IP-Basic without
extrapolation above the top return) are removed for all sources of that subsample, so
every source is scored on the same pixels; they are counted.

When the ground truth is the same scan as the input (KITTI ``proj_depth`` is the projected
Velodyne scan of the frame), the whole scan as input (``all``, ``beams:64``) leaves nothing
to score: use ``beams:N`` with N < 64 (the other beams are scored) or ``ratio:R`` < 1 (the
points not drawn are scored).

Input pixels at the ground truth's resolution: a point cloud is projected at the ground
truth's size (the camera's K scaled to it); a sparse depth image of another size marks
every ground-truth pixel whose (nearest-neighbour) input pixel has a value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from ..completion import CompletionMethod, Subsample
from ..completion.sparse import HDL64E, BeamModel, beam_rings, project_to_depth
from ..completion.stage import DEPTH_MODE_COMPLETION, SparseInput
from ..geometry import scale_intrinsics
from ..msgdata import depth_msg_to_meters, header_ns
from ..pipeline import DepthPipeline, FrameInput
from ..pointcloud import cloud_msg_field, cloud_msg_to_arrays
from .lidar import StaticTransforms, _frame
from .metrics import format_table
from .scoring import EvalSettings, Evaluator, resize_depth
from .sources import DepthFrame, ImageFrame, Issues, count_out_of_order, read_messages_safely

NO_HELDOUT = ('no held-out ground-truth pixel (every ground-truth pixel was an input pixel; when the ground truth '
              'is the input scan itself, subsample it: beams:N with N < 64 or ratio:R with R < 1)')
NO_SPARSE = 'no sparse input within the stamp tolerance'


@dataclass
class SparseScan:
    """The sparse input of one camera frame: a LiDAR scan or a sparse depth image.

    Attributes:
        stamp_ns: header stamp.
        points: (N, 3) float64 points in the camera's optical frame (metres), or None.
        rings: (N,) int ring index per point (-1 unknown), or None.
        depth: (h, w) float32 sparse depth image in metres (0 = no value), or None.
        n_beams: beam count of the sensor (for ``beams:N``).
    """

    stamp_ns: int
    points: np.ndarray | None = None
    rings: np.ndarray | None = None
    depth: np.ndarray | None = None
    n_beams: int = HDL64E.n_beams


def scan_from_lidar(stamp_ns: int, points_lidar: np.ndarray, T_camera_lidar: np.ndarray,
                    rings: np.ndarray | None = None, model: BeamModel = HDL64E) -> SparseScan:
    """A :class:`SparseScan` from (N, 3+) points in the LiDAR frame: rings from the
    elevation (:func:`packnet_ros.completion.sparse.beam_rings` with ``model``) unless given
    (a cloud's own ``ring`` field: the beam count is then its largest ring + 1), then the
    points moved into the camera frame with ``T_camera_lidar`` (4, 4)."""
    p = np.asarray(points_lidar, dtype=np.float64)[:, :3]
    if rings is None:
        rings, n_beams = beam_rings(p, model), model.n_beams
    else:
        rings = np.asarray(rings, dtype=np.int64)
        n_beams = int(rings.max()) + 1 if rings.size else model.n_beams
    T = np.asarray(T_camera_lidar, dtype=np.float64)
    cam = p @ T[:3, :3].T + T[:3, 3]  # float64: a float32 round trip moves points across pixel borders
    return SparseScan(int(stamp_ns), cam, rings, None, n_beams)


def input_depth(scan: SparseScan, spec: Subsample, K: np.ndarray, image_shape: tuple[int, int],
                out_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The sparse input image of a scan after subsampling, 0 = no value.

    Args:
        scan: the frame's scan.
        spec: the subsample (``beams:N`` needs rings: point clouds only).
        K: (3, 3) intrinsics of the camera image of size ``image_shape`` (H, W).
        out_shape: size of the result for point clouds (default ``image_shape``); a
            depth image keeps its own size.

    Returns:
        (h, w) float32 metres.

    Raises:
        ValueError: ``beams:N`` on a depth image, or N does not divide the beam count.
    """
    if scan.points is not None:
        keep = spec.mask(len(scan.points), scan.rings, scan.n_beams)
        H, W = int(image_shape[0]), int(image_shape[1])
        h, w = out_shape or (H, W)
        K_out = K if (h, w) == (H, W) else scale_intrinsics(np.asarray(K, dtype=np.float64), w / W, h / H)
        return project_to_depth(scan.points[keep], K_out, (h, w))
    if scan.depth is None:
        raise ValueError('a SparseScan needs points or a depth image')
    d = np.nan_to_num(np.asarray(scan.depth, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    d[d < 0] = 0.0
    if spec.kind == 'beams':
        raise ValueError(f'{spec} needs a LiDAR point cloud (ring per point); a sparse depth image has no beams: '
                         f'use ratio:R')
    if spec.kind == 'ratio':
        flat = np.flatnonzero(d > 0)
        keep = np.zeros(d.size, dtype=bool)
        keep[flat[spec.mask(flat.size)]] = True
        d = np.where(keep.reshape(d.shape), d, 0.0).astype(np.float32)
    return d


def input_mask_at(sparse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: ground-truth pixels covered by an input value of ``sparse`` (h, w)
    (same size: ``sparse > 0``; otherwise pixel (v, u) looks at input pixel
    (floor(v h / H), floor(u w / W)))."""
    H, W = int(shape[0]), int(shape[1])
    has = sparse > 0
    if has.shape == (H, W):
        return has
    h, w = has.shape
    rows = np.minimum((np.arange(H) * h) // H, h - 1)
    cols = np.minimum((np.arange(W) * w) // W, w - 1)
    return has[np.ix_(rows, cols)]


@dataclass
class SparseStats:
    """Counts of one subsample over the frames (summed over frames).

    Attributes:
        subsample: its text (``beams:16``, ``ratio:0.5``, ``all``).
        frames: frames with ground truth and a sparse input.
        n_input_points: points kept as input (point clouds) or input pixels (depth images).
        n_input_pixels: pixels of the sparse input images holding a value.
        n_gt_pixels: valid ground-truth pixels (before crop and range).
        n_gt_input_pixels: of them, pixels that were input: never scored.
        n_heldout_pixels: of them, pixels that were not input (scored after crop and range).
        n_unpredicted: held-out pixels removed because some source had no prediction there.
        n_scored_pixels: pixels scored per source (after crop and range; the same for every
            source of this subsample), filled in by :func:`evaluate_sparse`.
    """

    subsample: str
    frames: int = 0
    n_input_points: int = 0
    n_input_pixels: int = 0
    n_gt_pixels: int = 0
    n_gt_input_pixels: int = 0
    n_heldout_pixels: int = 0
    n_unpredicted: int = 0
    n_scored_pixels: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SparseRun:
    """What :func:`evaluate_sparse` returns.

    Attributes:
        results: {result label: EvalResult}; the label is the source's, followed by
            `` [SUBSAMPLE]`` when several subsamples were scored.
        source_of: {result label: source label}.
        subsample_of: {result label: subsample text}.
        stats: {subsample text: SparseStats}.
        predicted: {result label: held-out ground-truth pixels (before crop and range) the
            source predicted}; its coverage is this over the subsample's ``n_heldout_pixels``
            (:meth:`coverage`). Monocular models cover every pixel; IP-Basic leaves pixels
            farther than its largest kernel (15 px) from any input empty.
        latency_ms: {result label of a learned model: per-frame pipeline times, ms}.
        fallbacks: {result label of a learned model: frames its completion stage ran
            monocular (no usable sparse input), with the reasons}.
    """

    results: dict = field(default_factory=dict)
    source_of: dict = field(default_factory=dict)
    subsample_of: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    predicted: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)
    fallbacks: dict = field(default_factory=dict)

    def latency_median_ms(self, name: str) -> float:
        """Median per-frame time of the pipeline of a learned model's result (``total_ms``
        of :meth:`packnet_ros.pipeline.DepthPipeline.process`: projection, guide, network,
        depth), NaN for other sources."""
        times = self.latency_ms.get(name) or []
        return float(np.median(times)) if times else float('nan')

    def coverage(self, name: str) -> float:
        """Fraction of the held-out ground-truth pixels that ``name`` predicted."""
        n = self.stats[self.subsample_of[name]].n_heldout_pixels
        return self.predicted.get(name, 0) / n if n else float('nan')


def result_label(source: str, spec: Subsample, several: bool) -> str:
    return f'{source} [{spec}]' if several else source


def evaluate_sparse(frames: Iterable[tuple[ImageFrame, DepthFrame | None, SparseScan | None]],
                    monocular: Mapping[str, DepthPipeline], completion: Mapping[str, CompletionMethod],
                    specs: list[Subsample], settings: EvalSettings | None = None,
                    samples: Mapping[str, Callable] | None = None, issues: Issues | None = None,
                    progress: Callable[[int], None] | None = None,
                    learned: Mapping[str, DepthPipeline] | None = None) -> SparseRun:
    """Score completion methods and monocular models on the held-out ground truth.

    Args:
        frames: per camera frame (image with K; ground truth (H, W) metres, NaN invalid, or
            None; its sparse scan or None).
        monocular: {label: pipeline} (the node's per-frame pipeline, run once per frame
            whatever the number of subsamples).
        completion: {label: method} run on the sparse input of each subsample.
        specs: the subsamples (each scored on its own).
        settings: the protocol.
        samples: optional {result label: SampleWriter-like callable(rgb, pred, gt, title)}.
        issues: problems of the sources, copied into every result's counts.
        progress: called with the frame number after each frame.
        learned: {label: pipeline} of networks with a sparse branch, each pipeline with a
            :class:`packnet_ros.completion.stage.LearnedCompletionStage`; run once per frame
            and subsample with the subsample's points (in the camera frame; the stage
            projects them at the network input's resolution) or sparse depth image.

    Returns:
        :class:`SparseRun`.
    """
    settings = settings or EvalSettings()
    specs = list(specs) or [Subsample()]
    several = len(specs) > 1
    run = SparseRun()
    evs: dict[str, Evaluator] = {}
    learned = dict(learned or {})
    labels = list(monocular) + list(learned) + list(completion)
    for spec in specs:
        run.stats[str(spec)] = SparseStats(str(spec))
        for label in labels:
            name = result_label(label, spec, several)
            evs[name] = Evaluator(settings, name)
            run.predicted[name] = 0
            run.source_of[name] = label
            run.subsample_of[name] = str(spec)

    def skip_all(reason: str, spec: Subsample | None = None) -> None:
        for name, ev in evs.items():
            if spec is None or run.subsample_of[name] == str(spec):
                ev.skip(reason)

    for n, (img, gt_frame, scan) in enumerate(frames):
        if gt_frame is None:
            skip_all('no ground truth within the stamp tolerance')
            continue
        if scan is None:
            skip_all(NO_SPARSE)
            continue
        gt = np.asarray(gt_frame.depth, dtype=np.float32)
        gt_valid = np.isfinite(gt) & (gt > 0)
        mono = {label: resize_depth(p.process(FrameInput(img.rgb, img.K, img.stamp_ns), cloud=False).depth,
                                    gt.shape, settings.max_depth)
                for label, p in monocular.items()}
        for spec in specs:
            st = run.stats[str(spec)]
            sparse = input_depth(scan, spec, img.K, img.rgb.shape[:2], gt.shape)
            inp = input_mask_at(sparse, gt.shape)
            held = np.where(inp, np.nan, gt).astype(np.float32)
            held_valid = gt_valid & ~inp
            preds = dict(mono)
            for label, pipe in learned.items():
                name = result_label(label, spec, several)
                out = pipe.process(FrameInput(img.rgb, img.K, img.stamp_ns,
                                              sparse=_frame_sparse(scan, spec, img)), cloud=False)
                run.latency_ms.setdefault(name, []).append(float(out.timings_ms.get('total_ms', float('nan'))))
                if out.completion is not None and out.completion.mode != DEPTH_MODE_COMPLETION:
                    reasons = run.fallbacks.setdefault(name, {})
                    reasons[out.completion.reason] = reasons.get(out.completion.reason, 0) + 1
                preds[label] = resize_depth(out.depth, gt.shape, settings.max_depth)
            for label, method in completion.items():
                dense = np.asarray(method(sparse), dtype=np.float32)
                preds[label] = resize_depth(np.where(dense > 0, dense, np.nan).astype(np.float32), gt.shape,
                                            settings.max_depth)
            missing = {label: held_valid & np.isnan(p) for label, p in preds.items()}
            for label, m in missing.items():
                run.predicted[result_label(label, spec, several)] += int(held_valid.sum() - m.sum())
            unpredicted = np.any(list(missing.values()), axis=0) if missing else np.zeros_like(held_valid)
            held[unpredicted] = np.nan
            st.frames += 1
            st.n_input_points += (int(spec.mask(len(scan.points), scan.rings, scan.n_beams).sum())
                                  if scan.points is not None else int((sparse > 0).sum()))
            st.n_input_pixels += int((sparse > 0).sum())
            st.n_gt_pixels += int(gt_valid.sum())
            st.n_gt_input_pixels += int((gt_valid & inp).sum())
            st.n_heldout_pixels += int(held_valid.sum())
            st.n_unpredicted += int(unpredicted.sum())
            if not (held_valid & ~unpredicted).any():
                skip_all(NO_HELDOUT, spec)
                continue
            for label, pred in preds.items():
                name = result_label(label, spec, several)
                evs[name].add(img.stamp_ns, pred, held)
                if samples and name in samples:
                    samples[name](img.rgb, pred, held, f'{img.stamp_ns}')
        if progress:
            progress(n)
    for name, ev in evs.items():
        if issues is not None:
            for reason, k in issues.counts.items():
                ev.skip(reason, k)
        run.results[name] = ev.result()
    for spec in specs:
        names = [nm for nm in run.results if run.subsample_of[nm] == str(spec)]
        run.stats[str(spec)].n_scored_pixels = int(run.results[names[0]].metric.get('n_pixels', 0)) if names else 0
    return run


def _frame_sparse(scan: SparseScan, spec: Subsample, img: ImageFrame) -> SparseInput:
    """The pipeline input of one frame and subsample: the kept points (camera frame) of a
    scan, or the subsampled sparse depth image at its own size; stamped with the image
    (the scan was matched to it already)."""
    if scan.points is not None:
        keep = spec.mask(len(scan.points), scan.rings, scan.n_beams)
        return SparseInput(int(img.stamp_ns), points=scan.points[keep])
    return SparseInput(int(img.stamp_ns), depth=input_depth(scan, spec, img.K, img.rgb.shape[:2]))


def sparse_table(run: SparseRun) -> str:
    """One row per source and subsample: metric-mode RMSE, MAE, abs_rel (+ the other metrics),
    then the pixel counts per subsample."""
    rows = {name: r.metric for name, r in run.results.items()}
    lines = [format_table(rows, 'held-out ground truth (input pixels never scored), metric mode')]
    lines.append('coverage (held-out pixels each source predicted; the scored ones are those every source of '
                 'the subsample predicted): ' + ', '.join(f'{name} {100 * run.coverage(name):.1f} %'
                                                         for name in run.results))
    for name in run.latency_ms:
        lines.append(f'{name}: median {run.latency_median_ms(name):.1f} ms per frame (pipeline total: projection, '
                     f'guide, network, depth)' + (f'; monocular fallback on {sum(run.fallbacks[name].values())} '
                                                  f'frames: {run.fallbacks[name]}' if run.fallbacks.get(name) else ''))
    lines.append('')
    lines.append('subsample   frames  input points  input pixels  GT pixels  GT px that were input  '
                 'held-out  unpredicted  scored (crop, range)')
    for st in run.stats.values():
        lines.append(f'{st.subsample:10s}  {st.frames:6d}  {st.n_input_points:12d}  {st.n_input_pixels:12d}  '
                     f'{st.n_gt_pixels:9d}  {st.n_gt_input_pixels:21d}  {st.n_heldout_pixels:8d}  '
                     f'{st.n_unpredicted:11d}  {st.n_scored_pixels:20d}')
    return '\n'.join(lines)


#######################################################################################
# Sources of sparse input

def sparse_scans_from_bag(bag: str | Path, topic: str, msgtype: str, camera_frame: str, issues: Issues,
                          tf_topic: str = '/tf_static', extrinsics: np.ndarray | None = None,
                          model: BeamModel = HDL64E) -> list[SparseScan]:
    """Sparse inputs of a bag topic, in bag order.

    A ``sensor_msgs/PointCloud2`` (float32 x, y, z; a ``ring`` field is used when present,
    else rings come from the elevation with ``model``) is moved into ``camera_frame`` with
    ``extrinsics`` (4x4 ``T_camera_lidar``) or the chain of ``tf_topic`` from the cloud's
    frame_id; a ``sensor_msgs/Image`` is a sparse depth image (32FC1 metres / 16UC1
    millimetres, 0 or NaN = no value) in the camera's image. Unusable messages are counted
    in ``issues``.

    Raises:
        ValueError: ``msgtype`` is neither.
    """
    out: list[SparseScan] = []
    if msgtype == 'sensor_msgs/msg/Image':
        for m in read_messages_safely(bag, [topic], issues):
            try:
                depth = depth_msg_to_meters(m.msg)
            except ValueError as exc:
                issues.add(f'unusable sparse depth image on {topic}', f'stamp {header_ns(m.msg)}: {exc}')
                continue
            out.append(SparseScan(header_ns(m.msg), depth=np.nan_to_num(depth, nan=0.0)))
    elif msgtype == 'sensor_msgs/msg/PointCloud2':
        tree = None if extrinsics is not None else StaticTransforms.from_bag(bag, tf_topic, issues)
        for m in read_messages_safely(bag, [topic], issues):
            cloud = m.msg
            t = header_ns(cloud)
            T: np.ndarray | None
            if tree is None:
                T = np.asarray(extrinsics, dtype=np.float64)
            else:
                frame = _frame(cloud.header.frame_id)
                T = tree.lookup_or_none(camera_frame, frame)
                if T is None:
                    issues.add(f'sparse cloud without a transform: no chain from "{frame}" to camera frame '
                               f'"{camera_frame}" in {tf_topic} (frames known: {", ".join(tree.frames) or "none"})',
                               f'stamp {t}')
                    continue
            try:
                points, _ = cloud_msg_to_arrays(cloud)
                ring = cloud_msg_field(cloud, 'ring')
            except ValueError as exc:
                issues.add(f'unusable PointCloud2 on {topic}', f'stamp {t}: {exc}')
                continue
            points = points.reshape(-1, 3)
            rings = None if ring is None else ring.reshape(-1).astype(np.int64)
            out.append(scan_from_lidar(t, points, T, rings, model))
    else:
        raise ValueError(f'sparse topic {topic} is a {msgtype}: expected sensor_msgs/msg/PointCloud2 '
                         f'or a sparse depth sensor_msgs/msg/Image (32FC1 m / 16UC1 mm)')
    count_out_of_order([s.stamp_ns for s in out], topic, issues)
    return out


def kitti_sparse_scan(drive, i: int, stamp_ns: int, model: BeamModel = HDL64E) -> SparseScan | None:
    """The Velodyne scan of frame ``i`` of a :class:`packnet_ros.io.kitti.KittiDrive` as a
    :class:`SparseScan` in its camera's rectified optical frame (None when it has none)."""
    if not drive.has_velodyne(i):
        return None
    return scan_from_lidar(stamp_ns, drive.velodyne(i)[:, :3], drive.T_cam_velo, None, model)


def kitti_sparse_frames(drive, frames=None, model: BeamModel = HDL64E
                        ) -> Iterable[tuple[ImageFrame, DepthFrame | None, SparseScan | None]]:
    """(image, ground truth ``proj_depth`` or None, Velodyne scan or None) per frame of a
    KITTI drive, for :func:`evaluate_sparse`."""
    for i in (drive.frames if frames is None else frames):
        t = drive.timestamp_ns(i)
        gt = DepthFrame(t, drive.gt_depth(i)) if drive.has_gt(i) else None
        yield ImageFrame(t, drive.image(i), drive.K), gt, kitti_sparse_scan(drive, i, t, model)


def bag_sparse_frames(bag: str | Path, topics, sparse_topic: str, sparse_type: str, settings: EvalSettings,
                      issues: Issues, extrinsics: np.ndarray | None = None, model: BeamModel = HDL64E
                      ) -> list[tuple[ImageFrame, DepthFrame | None, SparseScan | None]]:
    """(image, ground truth or None, sparse input or None) per camera image of a bag, for
    :func:`evaluate_sparse`: ground truth as :func:`packnet_ros.evaluation.runner.load_ground_truth`,
    the sparse input from ``sparse_topic`` (:func:`sparse_scans_from_bag`, clouds moved into
    the CameraInfo's frame), both matched to the image by nearest stamp within the tolerance.
    Problems are counted in ``issues``."""
    from ..io.stamps import StampIndex
    from .lidar import camera_model_from_bag
    from .runner import load_ground_truth
    from .sources import image_frames
    images = sorted(image_frames(bag, topics.image, topics.camera_info, issues), key=lambda f: f.stamp_ns)
    if not images and not issues.counts:
        issues.add(f'no images on {topics.image}')
    shape = images[0].rgb.shape[:2] if images else None
    gt_index = load_ground_truth(bag, topics, issues, settings, shape, images[0].K if images else None, extrinsics)
    _, _, info_frame = camera_model_from_bag(bag, topics.camera_info, Issues())
    camera_frame = info_frame or (images[0].frame_id if images else '')
    scans = StampIndex(sparse_scans_from_bag(bag, sparse_topic, sparse_type, camera_frame, issues, topics.tf_static,
                                             extrinsics, model))
    tol = int(settings.stamp_tolerance_s * 1e9)
    return [(f, gt_index.find(f.stamp_ns, tol), scans.find(f.stamp_ns, tol)) for f in images]


__all__ = ['SparseScan', 'SparseStats', 'SparseRun', 'scan_from_lidar', 'input_depth', 'input_mask_at',
           'evaluate_sparse', 'sparse_table', 'sparse_scans_from_bag', 'kitti_sparse_scan', 'kitti_sparse_frames',
           'bag_sparse_frames', 'result_label',
           'NO_HELDOUT', 'NO_SPARSE']
