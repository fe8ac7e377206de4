"""Held-out scoring of a trained model (``data.heldout`` of a training config).

A held-out scene is a KITTI raw drive with projected LiDAR (``proj_depth``) that no
training or validation source of the run reads. After training, :func:`score_heldout`
runs the new weights and the *untrained* weights of the same network (seeded, see
:mod:`packnet_ros.weights`) over every frame of each held-out drive and scores both with
the KITTI protocol (Garg crop, 0-80 m, metric and median-scaled abs_rel). The training
report keeps the numbers, and :func:`heldout_failures` names every scene on which the
trained model is no better than untrained weights (median-scaled abs_rel): a run that
should ship its weights (``ship_path``) refuses to when that list is not empty.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..checkpoint import load_checkpoint
from ..evaluation.runner import evaluate_kitti
from ..evaluation.scoring import EvalSettings
from ..io.kitti import KittiDrive, find_kitti_drive
from ..pipeline import pipeline_from_weights
from ..weights import resolve_weights

__all__ = ['check_heldout_disjoint', 'heldout_failures', 'score_heldout']

_KEYS = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'scale_ratio')


def _drive_dir(path: str | Path) -> Path:
    return find_kitti_drive(Path(path)).resolve()


def check_heldout_disjoint(heldout: Sequence[str | Path], sources: Sequence[dict], base_dir: str | Path) -> None:
    """Raise ValueError when a held-out drive is also read by a training or validation source.

    Args:
        heldout: KITTI drive folders (or a folder above one), relative to ``base_dir``.
        sources: the config's ``data.train`` + ``data.val`` entries (dicts with ``path``).
        base_dir: folder of the config file.

    Raises:
        ValueError: a held-out drive that some source also uses, or one without a KITTI drive.
    """
    base = Path(base_dir)
    used = {}
    for s in sources:
        p = (base / Path(str(s.get('path', ''))).expanduser())
        try:
            used[p.resolve()] = s
        except OSError:
            continue
    for h in heldout:
        try:
            d = _drive_dir(base / Path(str(h)).expanduser())
        except (OSError, ValueError) as e:
            raise ValueError(f'data.heldout: {h}: not a KITTI drive with proj_depth ({e})') from None
        for p in used:
            if p == d or d in p.parents or p in d.parents:
                raise ValueError(f'data.heldout: {h} is also a training/validation source ({p}): '
                                 f'a held-out scene must not be trained on')


def score_heldout(model_path: str | Path, heldout: Sequence[str | Path], base_dir: str | Path,
                  device: str = 'cpu') -> dict:
    """Score ``model_path`` and untrained weights of the same network on every held-out drive.

    Runs in float32 on the eager backend (the numbers do not depend on the machine's bf16
    support), with the checkpoint's own input size.

    Args:
        model_path: the run's ``model.ckpt``.
        heldout: KITTI drive folders, relative to ``base_dir``.
        base_dir: folder of the config file.
        device: torch device.

    Returns:
        ``{drive name: {'frames': n, 'trained': {'metric': {...}, 'median': {...}},
        'untrained': {...}, 'better_than_untrained': bool}}`` with the keys ``abs_rel,
        sq_rel, rmse, rmse_log, a1, scale_ratio`` (per-frame means, packnet-sfm averaging).
    """
    trained = load_checkpoint(model_path, with_pose=False)
    spec = trained.spec
    untrained = resolve_weights(f'untrained:{spec.depth_net}:{spec.width:g}').checkpoint
    settings = EvalSettings()
    out = {}
    for h in heldout:
        drive = _drive_dir(Path(base_dir) / Path(str(h)).expanduser())
        row: dict = {'path': str(drive)}
        reader = KittiDrive(drive)
        for label, ckpt in (('trained', trained), ('untrained', untrained)):
            pipe = pipeline_from_weights(ckpt, device=device, precision='fp32', backend='eager',
                                         input_shape=tuple(spec.image_shape))
            r = evaluate_kitti(pipe, reader, settings, label=label)
            row['frames'] = int(r.metric.get('n_frames', 0))
            row[label] = {m: {k: float(getattr(r, m).get(k, float('nan'))) for k in _KEYS}
                          for m in ('metric', 'median')}
        row['better_than_untrained'] = bool(row['trained']['median']['abs_rel']
                                            < row['untrained']['median']['abs_rel'])
        out[drive.name] = row
    return out


def heldout_failures(scores: dict) -> list[str]:
    """Names of the held-out drives where the trained model's median-scaled abs_rel is not
    below the untrained weights' (the shipping check of issue 13)."""
    return [name for name, row in scores.items() if not row['better_than_untrained']]
