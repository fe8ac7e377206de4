"""Training sequences from config dicts (:func:`load_sequences`): which :mod:`packnet_ros.io`
reader serves each entry of a training config's ``sequences`` list.

Ground-truth depth (the LiDAR targets of ``loss.mode: semi_supervised | supervised``) comes
with every sample whose reader has it, as the batch's ``depth`` (NaN elsewhere): KITTI
drives read ``proj_depth/velodyne/<camera>/%010d.npz`` (projected LiDAR) for every target
that has a file; bags read the ``depth_topic`` image (32FC1
metres or 16UC1 millimetres) stamped exactly as the image, or project the ``cloud_topic``
PointCloud2 scan nearest to the image's stamp (within ``cloud_tolerance_s``, default 0.05 s)
into the camera with the bag's ``/tf_static`` (z in metres, nearest return per pixel; see
:class:`~packnet_ros.io.bag_sequence.BagSequence`); videos have none.
:func:`count_depth_samples` counts them without decoding any image."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io.bag_sequence import BagSequence
from ..io.kitti_sequence import KittiSequence
from ..io.sequence import DataError, FrameSequence
from ..io.video import VideoSequence

__all__ = ['load_sequences', 'count_depth_samples']

# type -> (allowed keyword arguments, those that are paths relative to base_dir)
_SPEC_KEYS = {
    'kitti': ({'targets', 'context_offsets', 'context_dt_s', 'tolerance_s', 'with_speed', 'camera'}, set()),
    'bag': ({'image_topic', 'camera_info_topic', 'odom_topic', 'depth_topic', 'cloud_topic', 'cloud_tolerance_s',
             'context_offsets', 'context_dt_s', 'tolerance_s', 'max_speed_gap_s', 'every', 'rectify', 'intrinsics'},
            {'intrinsics'}),
    'video': ({'intrinsics', 'frame_step', 'crop', 'context_offsets', 'context_dt_s', 'tolerance_s', 'start',
               'stop', 'speed_csv', 'max_speed_gap_s', 'alpha', 'fps', 'cache'}, {'intrinsics', 'speed_csv'}),
}


def load_sequences(specs: Sequence[dict], base_dir: str | Path | None = None) -> list[FrameSequence]:
    """Build sequence readers from config dicts.

    Examples::

        {'type': 'kitti', 'path': 'kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync', 'targets': [1, 2, 3]}
        {'type': 'bag', 'path': 'drive.bag', 'odom_topic': '/odom'}
        {'type': 'bag', 'path': 'drive.bag', 'cloud_topic': '/lidar/points', 'context_offsets': []}
        {'type': 'video', 'path': 'segment_a.mp4', 'intrinsics': 'camera.yaml', 'crop': [0, 80, 0, 0],
         'frame_step': 2}

    Every other key is the reader's keyword argument of the same name, except ``repeat``
    (int, default 1): the sequence is listed that many times, to weight a small sequence
    (e.g. the few frames that carry speed) against large ones. Relative ``path``,
    ``intrinsics`` and ``speed_csv`` are resolved against ``base_dir`` (default: the current
    directory).

    Raises:
        DataError: unknown type, missing path, unknown keys (or any reader's error).
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out: list[FrameSequence] = []
    for n, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise DataError(f'sequence spec #{n} must be a mapping, got {spec!r}')
        kind = spec.get('type')
        if kind not in _SPEC_KEYS:
            raise DataError(f'sequence spec #{n}: type must be one of {sorted(_SPEC_KEYS)}, got {kind!r}')
        if 'path' not in spec:
            raise DataError(f'sequence spec #{n} ({kind}): missing "path"')
        allowed, path_keys = _SPEC_KEYS[kind]
        unknown = set(spec) - allowed - {'type', 'path', 'repeat'}
        if unknown:
            raise DataError(f'sequence spec #{n} ({kind}): unknown keys {sorted(unknown)} '
                            f'(allowed: path, {", ".join(sorted(allowed))})')
        repeat = int(spec.get('repeat', 1))
        if repeat < 1:
            raise DataError(f'sequence spec #{n} ({kind}): repeat must be >= 1, got {repeat}')
        kwargs = {k: v for k, v in spec.items() if k not in ('type', 'path', 'repeat')}
        first = len(out)
        for k in path_keys & set(kwargs):
            if kwargs[k] is not None:
                kwargs[k] = base / Path(kwargs[k]).expanduser()
        path = base / Path(spec['path']).expanduser()
        if kind == 'kitti':
            out.append(KittiSequence(path, **kwargs))
        elif kind == 'bag':
            out.append(BagSequence(path, **kwargs))
        else:
            if 'intrinsics' not in kwargs:
                raise DataError(f'sequence spec #{n} (video): missing "intrinsics" (camera YAML; '
                                f'see load_camera_yaml)')
            out.append(VideoSequence(path, kwargs.pop('intrinsics'), **kwargs))
        out.extend([out[first]] * (repeat - 1))
    return out


def count_depth_samples(seq) -> int:
    """Samples of ``seq`` whose target has ground-truth depth, found without reading images:
    KITTI (a proj_depth file), bag (a depth message at the image's stamp, or a ``cloud_topic``
    scan within ``cloud_tolerance_s``); 0 for other readers."""
    if isinstance(seq, KittiSequence):
        return sum(bool(seq.drive.has_gt(seq.frame_of(i))) for i in range(len(seq)))
    if isinstance(seq, BagSequence):
        return sum(seq.has_gt(seq._item(i)[0]) for i in range(len(seq)))
    return 0
