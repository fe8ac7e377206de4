#!/usr/bin/env python3
"""Depth predictions that need no network, scored like a model (issue 13's reference rows).

    python tools/trivial_baselines.py ../shared/data/kitti_traffic [../shared/data/kitti_tiny ...]

For each KITTI drive (a folder at or above a ``*_sync`` drive with ``proj_depth``), every
frame with LiDAR is scored with the evaluator's metric function (Garg crop, 0-80 m,
per-frame means, metric and median-scaled) for two predictions:

* ``constant``: 10 m everywhere (median-scaled, any constant gives the same numbers);
* ``ground plane``: the depth of a flat road seen from the KITTI camera height (1.65 m):
  z = fy * h / (v - cy) below the horizon row, 80 m above it.

A learned model that does not beat ``constant`` median-scaled has learned no structure that
holds on that scene.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from packnet_ros.evaluation.metrics import compute_depth_metrics
from packnet_ros.io.kitti import KITTI_CAMERA_POSE, KittiDrive, find_kitti_drive


def baselines(drive: KittiDrive) -> dict[str, dict[str, float]]:
    """{'constant' | 'ground plane': {'metric': abs_rel, 'median': abs_rel, 'frames': n}}."""
    K = drive.K
    rows: dict[str, list] = {'constant': [], 'ground plane': []}
    for frame in drive.frames:
        if not drive.has_gt(frame):
            continue
        gt = drive.gt_depth(frame)
        H, W = gt.shape
        v = np.arange(H, dtype=np.float32)[:, None].repeat(W, 1)
        below = v > K[1, 2] + 1.0
        ground = np.where(below, K[1, 1] * KITTI_CAMERA_POSE[2] / np.maximum(v - K[1, 2], 1e-3), 80.0)
        preds = {'constant': np.full((H, W), 10.0, np.float32),
                 'ground plane': np.clip(ground, 1.0, 80.0).astype(np.float32)}
        for name, pred in preds.items():
            rows[name].append([compute_depth_metrics(pred, gt, 0.0, 80.0, 'garg', median_scaling=m).abs_rel
                               for m in (False, True)])
    return {name: {'metric': float(np.mean([r[0] for r in r_])), 'median': float(np.mean([r[1] for r in r_])),
                   'frames': len(r_)} for name, r_ in rows.items() if r_}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('drives', nargs='+', help='KITTI raw drive folders (or a folder above one)')
    args = ap.parse_args(argv)
    print('| drive | prediction | frames | metric abs_rel | median-scaled abs_rel |')
    print('|---|---|---|---|---|')
    for path in args.drives:
        try:
            drive = KittiDrive(find_kitti_drive(path))
        except (OSError, ValueError) as e:
            print(f'trivial_baselines: {path}: {e}', file=sys.stderr)
            return 1
        for name, r in baselines(drive).items():
            print(f'| {drive.path.name} | {name} | {r["frames"]} | {r["metric"]:.3f} | {r["median"]:.3f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
