"""Evaluation runs: where predictions come from, one scoring path for all.

* offline: the inference core runs over a recording's camera images;
* recorded: a depth topic already in a bag (the demo's output bag, any other system's
  depth output) is scored;
* live (:mod:`packnet_ros.ros.evaluate_live`): the recording is replayed into a running
  node and its recorded output is scored with :func:`evaluate_recorded`.

Ground truth comes from a depth image topic (32FC1 m / 16UC1 mm), a LiDAR PointCloud2
topic projected into the camera (:mod:`packnet_ros.evaluation.lidar`), or a KITTI folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..pipeline import DepthPipeline, FrameInput
from .report import sample_panel
from .scoring import EvalResult, EvalSettings, Evaluator
from .sources import Issues, StampIndex, depth_frames, image_frames, kitti_frames
from .visualize import save_png


@dataclass
class BagTopics:
    """Topic names of a recording (defaults: what ``packnet-ros bag`` writes)."""

    image: str = '/camera/image_raw'
    camera_info: str = '/camera/camera_info'
    depth_gt: str = '/lidar/depth'
    cloud_gt: str = ''
    tf_static: str = '/tf_static'
    odom: str = '/odom'


@dataclass
class SampleWriter:
    """Writes input | prediction | ground truth | error panels for every ``every``-th frame."""

    out_dir: Path | None
    every: int = 1
    written: list = field(default_factory=list)
    _n: int = 0

    def __call__(self, rgb, pred, gt, title: str) -> None:
        if self.out_dir is None or rgb is None:
            return
        if self._n % max(1, self.every) == 0:
            path = Path(self.out_dir) / f'frame_{len(self.written):04d}.png'
            self.written.append(save_png(path, sample_panel(rgb, pred, gt, title)))
        self._n += 1


def load_ground_truth(bag: str | Path, topics: BagTopics, issues: Issues, settings: EvalSettings,
                      image_shape: tuple[int, int] | None = None, K: np.ndarray | None = None,
                      lidar_extrinsics: np.ndarray | None = None) -> StampIndex:
    """Ground-truth depth frames of a recording, indexed by stamp.

    Uses ``topics.cloud_gt`` (LiDAR projected into the camera, needs the camera's
    K and size, from the bag's camera_info when not given) when set, else ``topics.depth_gt``.
    """
    if topics.cloud_gt:
        from .lidar import lidar_ground_truth
        return StampIndex(lidar_ground_truth(bag, topics, issues, image_shape, K, lidar_extrinsics,
                                             settings.max_depth))
    return StampIndex(depth_frames(bag, topics.depth_gt, issues))


def evaluate_offline(pipeline: DepthPipeline, bag: str | Path, topics: BagTopics | None = None,
                     settings: EvalSettings | None = None, label: str = '',
                     samples: SampleWriter | None = None, gt_bag: str | Path | None = None,
                     lidar_extrinsics: np.ndarray | None = None,
                     progress: Callable[[int], None] | None = None) -> EvalResult:
    """Run the per-frame pipeline (what ``packnet_node`` runs; build it with
    ``output_resolution='network'``, ``cloud=False`` and ``flip_pp=settings.flip_pp``) over the
    bag's images and score against its ground truth (or ``gt_bag``'s)."""
    topics = topics or BagTopics()
    settings = settings or EvalSettings()
    ev = Evaluator(settings, label or pipeline.estimator.label)
    issues = Issues()
    frames = sorted(image_frames(bag, topics.image, topics.camera_info, issues), key=lambda f: f.stamp_ns)
    if not frames and not issues.counts:
        issues.add(f'no images on {topics.image}')
    shape = frames[0].rgb.shape[:2] if frames else None
    gt_index = load_ground_truth(gt_bag or bag, topics, issues, settings, shape,
                                 frames[0].K if frames else None, lidar_extrinsics)
    tol = int(settings.stamp_tolerance_s * 1e9)
    for n, f in enumerate(frames):
        result = pipeline.process(FrameInput(f.rgb, f.K, f.stamp_ns), cloud=False)
        gt = gt_index.find(f.stamp_ns, tol)
        ev.add(f.stamp_ns, result.depth, None if gt is None else gt.depth)
        if samples:
            samples(f.rgb, result.depth, None if gt is None else gt.depth, f'{f.stamp_ns}')
        if progress:
            progress(n)
    for reason, k in issues.counts.items():
        ev.skip(reason, k)
    return ev.result()


def evaluate_recorded(pred_bag: str | Path, pred_topic: str, gt_bag: str | Path,
                      topics: BagTopics | None = None, settings: EvalSettings | None = None,
                      label: str = '', samples: SampleWriter | None = None,
                      lidar_extrinsics: np.ndarray | None = None) -> EvalResult:
    """Score depth images already recorded on ``pred_topic`` against ``gt_bag``'s ground truth.

    Camera images of ``gt_bag`` (when present) are used for the sample panels only.
    """
    topics = topics or BagTopics()
    settings = settings or EvalSettings()
    ev = Evaluator(settings, label or pred_topic)
    issues = Issues()
    preds = depth_frames(pred_bag, pred_topic, issues)
    if not preds:
        issues.add(f'no depth images on {pred_topic} in {pred_bag}')
    images = StampIndex(list(image_frames(gt_bag, topics.image, topics.camera_info, Issues())))
    first = images.items[0] if len(images) else None
    gt_index = load_ground_truth(gt_bag, topics, issues, settings,
                                 first.rgb.shape[:2] if first else None, first.K if first else None,
                                 lidar_extrinsics)
    tol = int(settings.stamp_tolerance_s * 1e9)
    seen = set()
    for p in sorted(preds, key=lambda d: d.stamp_ns):
        if p.stamp_ns in seen:
            issues.add('duplicate prediction stamp (kept the first)')
            continue
        seen.add(p.stamp_ns)
        gt = gt_index.find(p.stamp_ns, tol)
        ev.add(p.stamp_ns, p.depth, None if gt is None else gt.depth)
        if samples:
            img = images.find(p.stamp_ns, tol)
            samples(None if img is None else img.rgb, p.depth, None if gt is None else gt.depth,
                    f'{p.stamp_ns}')
    for reason, k in issues.counts.items():
        ev.skip(reason, k)
    return ev.result()


def evaluate_kitti(pipeline: DepthPipeline, drive, settings: EvalSettings | None = None, frames=None,
                   label: str = '', samples: SampleWriter | None = None) -> EvalResult:
    """Offline evaluation of the per-frame pipeline (as :func:`evaluate_offline`) on a KITTI
    raw drive folder (:class:`packnet_ros.io.kitti.KittiDrive`)."""
    settings = settings or EvalSettings()
    ev = Evaluator(settings, label or pipeline.estimator.label)
    for img, gt in kitti_frames(drive, frames):
        result = pipeline.process(FrameInput(img.rgb, img.K, img.stamp_ns), cloud=False)
        ev.add(img.stamp_ns, result.depth, None if gt is None else gt.depth)
        if samples:
            samples(img.rgb, result.depth, None if gt is None else gt.depth, f'{img.stamp_ns}')
    return ev.result()
