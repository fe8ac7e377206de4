"""``packnet-ros evaluate``: score depth predictions against LiDAR on a recording.

Sources: a rosbag2 recording (sqlite3 or MCAP) or a KITTI raw drive folder.
Predictions, three ways, one scoring path (:mod:`packnet_ros.evaluation.scoring`):

* ``offline``: the inference core runs over the recording's images with each
  ``--checkpoint`` (default: the shipped model; untrained weights, loudly, when none is
  installed);
* ``recorded``: depth topics already in a bag (``--depth-topic``, repeatable; e.g. the
  output bag of ``make demo`` or any other system's depth) are scored;
* ``live``: the recording is replayed into a running ``packnet_node`` on sim time, its
  outputs are recorded and scored (:mod:`packnet_ros.ros.evaluate_live`, as the demo).

Ground truth: a depth image topic (32FC1 m / 16UC1 mm) or a LiDAR PointCloud2 topic
projected into the camera (:mod:`packnet_ros.evaluation.lidar`).

Sparse input (depth completion, offline mode): ``--sparse-topic`` (a bag's PointCloud2 or
sparse depth image; a KITTI drive's ``velodyne_points/``), optionally subsampled
(``--sparse-subsample beams:N|ratio:R``, repeatable), is given to ``completion:...``
sources; every source, monocular ones included, is scored on the ground-truth pixels that
were not input (:mod:`packnet_ros.evaluation.completion`).

Exit codes: 0 every prediction source scored at least one frame; 1 a source scored
nothing (the counts say why); 2 a user error (missing bag, topic, checkpoint, bad option).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..completion import COMPLETION_PREFIX, CompletionMethod, Subsample, parse_completion
from ..evaluation.metrics import default_bin_edges
from ..evaluation.report import bins_text, compare_table, counts_text, modes_table, write_csv, write_json, write_plots
from ..evaluation.runner import BagTopics, SampleWriter
from ..evaluation.scoring import EvalResult, EvalSettings
from ..networks.fast import BACKENDS
from ..pipeline import DepthPipeline, PipelineSettings, pipeline_from_weights
from ..postprocess.refine import REFINEMENTS
from ..weights import WeightsChoice, WeightsError, parse_weights, resolve_weights
from .args import parse_key_values

MODES = ('offline', 'recorded', 'live')
DEFAULT_PRED_TOPIC = '/packnet_node/depth'


def register(sub) -> None:
    """Add the ``evaluate`` verb to the ``packnet-ros`` sub-parsers."""
    d = BagTopics()
    e = sub.add_parser(
        'evaluate', help='score depth (offline inference, a recorded depth topic, or a live node) against '
                         'LiDAR ground truth from a rosbag2 or KITTI drive',
        description=__doc__.split('\n\n')[0] + ' Modes: offline (run a checkpoint over the images), '
                    'recorded (score depth topics already in a bag), live (replay into packnet_node).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument('--bag', help='rosbag2 recording (folder, sqlite3 or MCAP)')
    src.add_argument('--kitti', help='KITTI raw drive folder (or a folder above it); GT = proj_depth')
    e.add_argument('--mode', choices=MODES, default='offline', help='where predictions come from')
    g = e.add_argument_group('predictions')
    g.add_argument('--checkpoint', action='append', default=None,
                   help='offline/live: .ckpt path, "default" (shipped model) or "untrained"; offline with a sparse '
                        'input also "completion:ipbasic[:fast|multiscale][:gaussian|bilateral][:noextrapolate]"; '
                        'repeatable (default: "default")')
    g.add_argument('--network', default='PackNet01', help='untrained weights only: PackNet01 | PackNetSlim01')
    g.add_argument('--network-width', type=float, default=1.0, help='untrained weights only: channel multiplier')
    g.add_argument('--depth-topic', action='append', default=None,
                   help=f'recorded: depth topic to score, repeatable (default: {DEFAULT_PRED_TOPIC})')
    g.add_argument('--pred-bag', default=None, help='recorded: bag holding the depth topics (default: --bag)')
    g.add_argument('--device', default='auto', help='offline/live: auto | cpu | cuda | cuda:N')
    g.add_argument('--precision', default='auto', help='offline/live: auto | fp32 | bf16 | fp16')
    g.add_argument('--backend', default='auto', choices=BACKENDS,
                   help='offline: auto | fast | eager | compile | openvino (see the node\'s backend parameter)')
    t = e.add_argument_group('topics and frames (rosbag2 source)')
    t.add_argument('--image-topic', default=d.image)
    t.add_argument('--camera-info-topic', default=d.camera_info)
    t.add_argument('--odom-topic', default=d.odom, help='live: replayed to the node when present')
    t.add_argument('--gt-depth-topic', default=d.depth_gt, help='ground-truth depth image (32FC1 m / 16UC1 mm)')
    t.add_argument('--gt-cloud-topic', default='',
                   help='ground-truth LiDAR PointCloud2, projected into the camera (replaces --gt-depth-topic)')
    t.add_argument('--tf-topic', default=d.tf_static, help='static transforms (tf2_msgs/TFMessage)')
    t.add_argument('--extrinsics', default=None,
                   help='4x4 T_camera_lidar file (txt or yaml) instead of the bag\'s transforms')
    t.add_argument('--stamp-tolerance', type=float, default=EvalSettings.stamp_tolerance_s,
                   help='max |stamp(prediction) - stamp(ground truth)| in seconds')
    p = e.add_argument_group('protocol')
    p.add_argument('--min-depth', type=float, default=EvalSettings.min_depth, help='metres (gt > min)')
    p.add_argument('--max-depth', type=float, default=EvalSettings.max_depth, help='metres (gt < max)')
    p.add_argument('--crop', choices=('garg', 'none'), default='garg')
    p.add_argument('--flip-pp', action='store_true', help='offline: flip post-processing (packnet-sfm "pp")')
    p.add_argument('--refinement', choices=REFINEMENTS, default='none',
                   help='offline only: edge-aware refinement stage inserted after "depth" in the pipeline (as '
                        'the node\'s refinement parameter): guided filter, fast global smoother or dense CRF, '
                        'guided by the RGB image')
    p.add_argument('--bins', default=None, help='distance bin edges in metres, e.g. 0,10,20,40,80 '
                                                '(default: every 10 m up to --max-depth)')
    o = e.add_argument_group('reports')
    o.add_argument('--json', default=None, help='metrics JSON file')
    o.add_argument('--csv', default=None, help='per-frame CSV file')
    o.add_argument('--plots', default=None, help='folder for error_by_distance.png and abs_rel_per_frame.png')
    o.add_argument('--samples', default=None, help='folder for input | prediction | GT | error panels')
    o.add_argument('--samples-every', type=int, default=1, help='one panel every N scored frames')
    o.add_argument('--compare', action='store_true',
                   help='one table with every checkpoint / depth topic side by side')
    sp = e.add_argument_group('sparse input (depth completion; offline mode)')
    sp.add_argument('--sparse-topic', default='',
                    help='bag: LiDAR PointCloud2 (moved into the camera frame with --tf-topic or --extrinsics) or '
                         'sparse depth image (32FC1 m / 16UC1 mm) given to completion:... sources; input pixels are '
                         'never scored. A KITTI drive uses its velodyne_points/ instead')
    sp.add_argument('--sparse-subsample', action='append', default=None, metavar='all|beams:N|ratio:R',
                    help='which part of the sparse input is given: all, N of the 64 beams (every 64/N-th ring; '
                         'clouds only) or a random fraction R of the points; repeatable (each scored on its own, '
                         'the monocular models run once); default all')
    sp.add_argument('--sparse-seed', type=int, default=0, help='seed of ratio:R (the same subset every run)')
    lv = e.add_argument_group('live mode')
    lv.add_argument('--record-dir', default=None,
                    help='where the node\'s output bag and log go (default: a temporary folder, removed)')
    lv.add_argument('--domain-id', type=int, default=None, help='ROS_DOMAIN_ID (default: environment or per process)')
    lv.add_argument('--frame-timeout', type=float, default=120.0, help='seconds to wait for each frame')
    lv.add_argument('--node-param', action='append', default=None, metavar='NAME=VALUE',
                    help='extra packnet_node parameter, repeatable (e.g. scale_source=odometry, '
                         'adaptation.enabled=true)')
    lv.add_argument('--replays', type=int, default=1,
                    help='play the bag this many times into the same node (online adaptation); '
                         'each replay is scored, the last one is the result')
    lv.add_argument('--replay-rate', type=float, default=0.0, metavar='HZ',
                    help='publish images no faster than this rate (a camera\'s; 0 = as soon as the node answered)')
    e.set_defaults(func=run)


# ----------------------------------------------------------------------------- helpers
def _user_error(text: str) -> Exception:
    from .cli import UserError
    return UserError(text)


@dataclass
class Source:
    """One prediction source: a checkpoint (offline/live) or a depth topic (recorded)."""

    label: str
    weights: WeightsChoice | None = None
    description: str = ''
    topic: str = ''
    extra: dict = field(default_factory=dict)
    completion: CompletionMethod | None = None

    @property
    def untrained_fallback(self) -> bool:
        """"default" was asked for but no default model is installed."""
        return self.weights is not None and self.weights.fallback


def _settings(args) -> EvalSettings:
    if not (args.max_depth > args.min_depth >= 0 and np.isfinite(args.max_depth)):
        raise _user_error(f'need 0 <= --min-depth < --max-depth, got {args.min_depth} and {args.max_depth}')
    if args.bins:
        try:
            bins = [float(v) for v in args.bins.split(',') if v.strip()]
        except ValueError:
            raise _user_error(f'--bins must be comma-separated numbers, got {args.bins!r}') from None
        if len(bins) < 2 or any(b <= a for a, b in zip(bins, bins[1:])):
            raise _user_error(f'--bins needs at least two strictly increasing edges, got {args.bins!r}')
    else:
        bins = [float(v) for v in default_bin_edges(args.max_depth)]
    if args.stamp_tolerance < 0:
        raise _user_error('--stamp-tolerance must be >= 0')
    if args.samples_every < 1:
        raise _user_error('--samples-every must be >= 1')
    return EvalSettings(min_depth=args.min_depth, max_depth=args.max_depth,
                        crop='garg' if args.crop == 'garg' else '', bins=bins, flip_pp=args.flip_pp,
                        stamp_tolerance_s=args.stamp_tolerance)


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in labels:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 and labels.count(name) == 1 else f'{name}#{seen[name]}')
    return out


def _checkpoint_sources(args) -> list[Source]:
    sources = []
    for text in args.checkpoint or ['default']:
        if text.strip().lower().startswith(COMPLETION_PREFIX):
            try:
                method = parse_completion(text.strip())
            except ValueError as exc:
                raise _user_error(f'--checkpoint: {exc}') from None
            sources.append(Source(method.label, None, method.description, completion=method))
            continue
        try:
            choice = parse_weights(text, args.network, args.network_width)
        except WeightsError as exc:
            raise _user_error(f'--checkpoint: {exc}') from None
        if choice.path is not None:
            description = (f'default checkpoint {choice.path.name}' if choice.kind == 'default'
                           else f'checkpoint {choice.path}')
        elif choice.fallback:
            description = (f'UNTRAINED weights: no default checkpoint is installed; network {choice.spec.label}')
        else:
            description = f'UNTRAINED weights (requested); network {choice.spec.label}'
        sources.append(Source(choice.label, choice, description))
    for s, label in zip(sources, _unique([s.label for s in sources])):
        s.label = label
    return sources


def _topic_sources(args) -> list[Source]:
    topics = args.depth_topic or [DEFAULT_PRED_TOPIC]
    labels = _unique(list(topics))
    return [Source(label, topic=topic, description=f'depth topic {topic}') for label, topic in zip(labels, topics)]


def _check_topics(bag: Path, needed: dict[str, str]) -> dict[str, str]:
    """Raise a user error naming the bag's topics when one of ``needed`` ({topic: role}) is absent."""
    from ..io.bag import CorruptBagError, bag_topics_any
    try:
        available = bag_topics_any(bag)
    except CorruptBagError as exc:
        raise _user_error(str(exc)) from None
    except FileNotFoundError as exc:
        if bag.is_dir():  # a folder with neither metadata.yaml nor .mcap files
            raise _user_error(f'cannot read the bag {bag}: not a rosbag2 folder (no metadata.yaml, no .mcap '
                              f'file): {str(exc).splitlines()[0]}') from None
        raise
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's input problem
        first = f'{type(exc).__name__}: {exc}'.splitlines()[0]
        raise _user_error(f'cannot read the bag {bag}: corrupt or not a rosbag2 recording ({first})') from None
    missing = [f'{t} ({role})' for t, role in needed.items() if t not in available]
    if missing:
        listing = '\n'.join(f'    {t}  [{ty}]' for t, ty in sorted(available.items())) or '    (none)'
        raise _user_error(f'{bag} has no topic {", ".join(missing)}. Its topics:\n{listing}\n'
                          f'Set the topic names with --image-topic, --camera-info-topic, --gt-depth-topic, '
                          f'--gt-cloud-topic, --depth-topic, --sparse-topic.')
    return available


def _slug(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9._-]+', '_', text).strip('_') or 'source'


def _samples(args, source: Source, several: bool) -> SampleWriter | None:
    if not args.samples:
        return None
    out = Path(args.samples) / _slug(source.label) if several else Path(args.samples)
    return SampleWriter(out, every=args.samples_every)


def _pipeline(source: Source, args, settings: EvalSettings) -> DepthPipeline:
    """The node's per-frame pipeline for offline scoring: depth at the network resolution
    (the scorer resizes), no cloud, flip post-processing as the protocol says, and the
    ``--refinement`` stage after "depth" (as the node inserts it)."""
    resolved = resolve_weights(source.weights.text, with_pose=False, network=args.network,
                               width=args.network_width)
    frame_settings = PipelineSettings(max_depth_m=settings.max_depth, output_resolution='network', cloud=False,
                                      flip_pp=settings.flip_pp)
    pipeline = pipeline_from_weights(resolved.checkpoint, frame_settings, device=args.device,
                                     precision=args.precision, backend=getattr(args, 'backend', 'auto'))
    refinement = getattr(args, 'refinement', 'none')
    if refinement != 'none':
        from ..postprocess.refine import insert_refinement
        try:
            insert_refinement(pipeline, refinement)
        except ImportError as exc:
            raise _user_error(f'--refinement {refinement}: {exc}') from None
    return pipeline


def _say(text: str) -> None:
    print(f'[evaluate] {text}', flush=True)


# ----------------------------------------------------------------------------- the verb
def run(args) -> int:
    """``packnet-ros evaluate``; returns the exit code (user errors raise UserError -> 2)."""
    settings = _settings(args)
    if args.mode == 'recorded' and args.checkpoint:
        raise _user_error('--checkpoint is for --mode offline or live; recorded mode scores --depth-topic')
    if args.mode != 'recorded' and (args.depth_topic or args.pred_bag):
        raise _user_error('--depth-topic / --pred-bag are for --mode recorded')
    if args.refinement != 'none' and args.mode != 'offline':
        raise _user_error('--refinement is for --mode offline (live: set the node parameter refinement with '
                          '--node-param refinement=...)')
    if args.flip_pp and args.mode != 'offline':
        raise _user_error('--flip-pp is for --mode offline (packnet_node and recorded topics do not flip)')
    if args.extrinsics and not (args.gt_cloud_topic or args.sparse_topic):
        raise _user_error('--extrinsics needs --gt-cloud-topic (LiDAR ground truth) or --sparse-topic (LiDAR input)')
    extrinsics = None
    if args.extrinsics:
        from ..evaluation.lidar import load_extrinsics
        extrinsics = load_extrinsics(args.extrinsics)

    topics = BagTopics(image=args.image_topic, camera_info=args.camera_info_topic, depth_gt=args.gt_depth_topic,
                       cloud_gt=args.gt_cloud_topic, tf_static=args.tf_topic, odom=args.odom_topic)
    sources = _topic_sources(args) if args.mode == 'recorded' else _checkpoint_sources(args)
    specs = _sparse_specs(args, sources)
    several = len(sources) > 1
    temp_dirs: list[Path] = []
    drive = None
    try:
        if args.kitti:
            from ..io.kitti import KittiDrive, find_kitti_drive
            drive = KittiDrive(find_kitti_drive(args.kitti))
            topics = BagTopics()  # the topics write_kitti_bag writes
            if extrinsics is not None or args.gt_cloud_topic:
                raise _user_error('a KITTI source has projected depth ground truth (no PointCloud2): '
                                  'drop --gt-cloud-topic / --extrinsics')
            if specs and args.sparse_topic:
                raise _user_error('a KITTI source gives its velodyne_points/ scans as the sparse input: drop --sparse-topic')
            if specs and not drive.has_velodyne():
                raise _user_error(f'{drive.path} has no velodyne_points/data/*.bin: no sparse input for '
                                  f'depth completion (a KITTI raw drive with Velodyne scans is needed)')
            source_text = f'KITTI drive {drive.path} ({len(drive.frames)} frames)'
            gt_text = 'KITTI proj_depth/velodyne (LiDAR projected into image_02)'
        else:
            bag = Path(args.bag)
            if not bag.exists():
                raise FileNotFoundError(f'no bag at {bag}')
            needed = {}
            if args.mode in ('offline', 'live'):
                needed.update({topics.image: 'camera images', topics.camera_info: 'camera_info'})
            needed[topics.cloud_gt or topics.depth_gt] = ('ground-truth LiDAR cloud' if topics.cloud_gt
                                                          else 'ground-truth depth')
            if specs:
                needed[args.sparse_topic] = 'sparse input'
            available = _check_topics(bag, needed)
            if specs:
                sparse_type = available[args.sparse_topic]
                if sparse_type not in ('sensor_msgs/msg/PointCloud2', 'sensor_msgs/msg/Image'):
                    raise _user_error(f'--sparse-topic {args.sparse_topic} is a {sparse_type}: expected a '
                                      f'sensor_msgs/msg/PointCloud2 (LiDAR) or a sparse depth sensor_msgs/msg/Image')
                if sparse_type == 'sensor_msgs/msg/Image' and any(sp.kind == 'beams' for sp in specs):
                    raise _user_error(f'--sparse-subsample beams:N needs a LiDAR point cloud; --sparse-topic '
                                      f'{args.sparse_topic} is a depth image (use ratio:R or all)')
            source_text = f'bag {bag}'
            gt_text = (f'{topics.cloud_gt} (PointCloud2) projected into the camera with '
                       f'{"--extrinsics " + str(args.extrinsics) if extrinsics is not None else topics.tf_static}'
                       if topics.cloud_gt else f'{topics.depth_gt} (depth image)')
        pred_bag = None
        if args.mode == 'recorded':
            if args.pred_bag is None and args.kitti:
                raise _user_error('--mode recorded with --kitti needs --pred-bag (the bag holding the depth topics)')
            pred_bag = Path(args.pred_bag or args.bag)
            if not pred_bag.exists():
                raise FileNotFoundError(f'no prediction bag at {pred_bag}')
            _check_topics(pred_bag, {s.topic: 'predicted depth' for s in sources})

        print(f'packnet-ros evaluate: mode {args.mode}, {source_text}')
        print(f'ground truth: {gt_text}')
        print(f'protocol: crop {"garg" if settings.crop else "none"}, {settings.min_depth:g} < gt < '
              f'{settings.max_depth:g} m, stamp tolerance {settings.stamp_tolerance_s:g} s, '
              f'flip post-processing {"on" if settings.flip_pp else "off"}')
        for s in sources:
            if s.untrained_fallback:
                note = ('NOTE: no default checkpoint is installed: evaluating UNTRAINED (random) weights; '
                        'the numbers below say nothing about PackNet. Pass --checkpoint PATH.')
                print(note)
                print(note, file=sys.stderr)

        # a bag view of a KITTI drive where a bag is needed (recorded GT, live replay)
        gt_bag = None if args.kitti else Path(args.bag)
        if args.kitti and args.mode != 'offline':
            from ..ros.bag import write_kitti_bag
            base = Path(args.record_dir) if (args.record_dir and args.mode == 'live') else \
                Path(tempfile.mkdtemp(prefix='packnet_eval_kitti_'))
            if not (args.record_dir and args.mode == 'live'):
                temp_dirs.append(base)
            gt_bag = base / 'kitti_input'
            write_kitti_bag(drive, gt_bag, overwrite=True)
            _say(f'converted {drive.path.name} into {gt_bag}')

        results: dict[str, EvalResult] = {}
        sparse_run = None
        if specs:
            print(f'sparse input: {"velodyne_points/ (KITTI)" if drive is not None else args.sparse_topic}, '
                  f'subsample {", ".join(str(sp) for sp in specs)}; input pixels are never scored')
            sources, results, sparse_run = _run_sparse(args, sources, specs, settings, topics, drive, extrinsics)
            several = len(sources) > 1
        elif args.mode == 'offline':
            for s in sources:
                _say(f'{s.label}: {s.description}')
                pipeline = _pipeline(s, args, settings)
                est = pipeline.estimator
                _say(f'{s.label}: {est.label} on {est.device} ({est.precision}), input '
                     f'{est.input_shape[1]}x{est.input_shape[0]}')
                s.extra['estimator'] = {'network': est.label, 'device': str(est.device),
                                        'precision': est.precision,
                                        'input_shape': [int(v) for v in est.input_shape]}
                if drive is not None:
                    from ..evaluation.runner import evaluate_kitti
                    results[s.label] = evaluate_kitti(pipeline, drive, settings, label=s.label,
                                                      samples=_samples(args, s, several))
                else:
                    from ..evaluation.runner import evaluate_offline
                    results[s.label] = evaluate_offline(
                        pipeline, gt_bag, topics, settings, label=s.label, samples=_samples(args, s, several),
                        lidar_extrinsics=extrinsics,
                        progress=lambda n: (n + 1) % 50 == 0 and _say(f'  {n + 1} frames'))
                refine = next((st for st in pipeline.stages if st.name == 'refine'), None)
                if refine is not None:
                    median_ms = refine.median_ms()  # type: ignore[attr-defined]
                    s.extra['refinement'] = {'method': args.refinement, 'refine_median_ms': median_ms}
                    _say(f'{s.label}: refinement {args.refinement}: median {median_ms:.1f} ms per frame')
                del est, pipeline
        elif args.mode == 'recorded':
            from ..evaluation.runner import evaluate_recorded
            for s in sources:
                results[s.label] = evaluate_recorded(pred_bag, s.topic, gt_bag, topics, settings, label=s.label,
                                                     samples=_samples(args, s, several),
                                                     lidar_extrinsics=extrinsics)
        else:
            results = _run_live(args, sources, topics, gt_bag, settings, extrinsics, several, temp_dirs)
    finally:
        for d in temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
    if not results:
        return 1
    return _report(args, sources, results, settings, topics, several, sparse_run, specs)


def _sparse_specs(args, sources: list[Source]) -> list[Subsample]:
    """The subsamples of a sparse-input run ([] when there is none); user errors for
    options that do not fit together."""
    completion = [s.label for s in sources if s.completion is not None]
    if not (args.sparse_topic or args.sparse_subsample or completion):
        return []
    if args.mode != 'offline':
        raise _user_error('a sparse input (--sparse-topic, --sparse-subsample, completion:... checkpoints) is for '
                          '--mode offline')
    if args.bag and not args.sparse_topic:
        raise _user_error(f'{", ".join(completion) or "--sparse-subsample"} needs a sparse input: pass --sparse-topic '
                          f'TOPIC (a LiDAR PointCloud2 or a sparse depth image of the bag)')
    if args.refinement != 'none' and completion:
        raise _user_error('--refinement applies to monocular checkpoints; it cannot be combined with completion:...')
    specs = []
    for text in args.sparse_subsample or ['all']:
        try:
            spec = Subsample.parse(text, args.sparse_seed)
        except ValueError as exc:
            raise _user_error(f'--sparse-subsample: {exc}') from None
        if spec.kind == 'beams':
            from ..completion import HDL64E
            n = HDL64E.n_beams
            if int(spec.value) > n or n % int(spec.value):
                raise _user_error(f'--sparse-subsample {spec}: N must divide the {n} beams of the HDL-64E '
                                  f'(64, 32, 16, 8, 4, 2, 1)')
        if str(spec) in {str(x) for x in specs}:
            raise _user_error(f'--sparse-subsample {spec} given twice')
        specs.append(spec)
    return specs


def _run_sparse(args, sources: list[Source], specs: list[Subsample], settings: EvalSettings, topics: BagTopics,
                drive, extrinsics) -> tuple[list[Source], dict[str, EvalResult], object]:
    """Offline scoring with a sparse input: completion methods and monocular checkpoints on
    the held-out ground truth, per subsample. Returns one :class:`Source` per (source,
    subsample) result, the results and the :class:`~packnet_ros.evaluation.completion.SparseRun`."""
    from ..evaluation.completion import (
        bag_sparse_frames,
        evaluate_sparse,
        kitti_sparse_frames,
        result_label,
    )
    from ..evaluation.sources import Issues
    monocular, completion, learned = {}, {}, {}
    for s in sources:
        _say(f'{s.label}: {s.description}')
        if s.completion is not None:
            completion[s.label] = s.completion
            continue
        pipeline = _pipeline(s, args, settings)
        est = pipeline.estimator
        _say(f'{s.label}: {est.label} on {est.device} ({est.precision}), input '
             f'{est.input_shape[1]}x{est.input_shape[0]}')
        s.extra['estimator'] = {'network': est.label, 'device': str(est.device), 'precision': est.precision,
                                'input_shape': [int(v) for v in est.input_shape]}
        if est.takes_sparse:  # the checkpoint's own sparse branch: the node's "learned" completion stage
            from ..completion.stage import LEARNED, CompletionSettings, insert_completion
            insert_completion(pipeline, LEARNED, CompletionSettings(max_staleness_s=settings.stamp_tolerance_s))
            s.extra['estimator']['completion'] = f'{LEARNED} (sparse branch, guide {est.sparse_guide})'
            _say(f'{s.label}: learned completion (sparse branch{", IP-Basic guide" if est.sparse_guide != "none" else ""}'
                 f'): the sparse input is projected at the network input resolution')
            learned[s.label] = pipeline
            continue
        monocular[s.label] = pipeline
    issues = Issues()
    if drive is not None:
        frames = kitti_sparse_frames(drive)
    else:
        from ..io.bag import bag_topics_any
        sparse_type = bag_topics_any(Path(args.bag))[args.sparse_topic]
        frames = bag_sparse_frames(Path(args.bag), topics, args.sparse_topic, sparse_type, settings, issues,
                                   extrinsics)
    several = len(specs) > 1
    samples = None
    if args.samples:
        many = len(sources) * len(specs) > 1
        samples = {result_label(s.label, sp, several): _samples(args, Source(result_label(s.label, sp, several)),
                                                                many)
                   for s in sources for sp in specs}
    run = evaluate_sparse(frames, monocular, completion, specs, settings, samples, issues,
                          progress=lambda n: (n + 1) % 20 == 0 and _say(f'  {n + 1} frames'), learned=learned)
    out: list[Source] = []
    for s in sources:
        for sp in specs:
            name = result_label(s.label, sp, several)
            st = run.stats[str(sp)]
            sparse = {'subsample': str(sp), 'seed': args.sparse_seed if sp.kind == 'ratio' else None,
                      **st.as_dict(), 'n_heldout_predicted': run.predicted[name], 'coverage': run.coverage(name)}
            if s.label in learned:
                sparse['learned'] = True
                sparse['latency_ms_median'] = run.latency_median_ms(name)
                sparse['monocular_fallback_frames'] = sum(run.fallbacks.get(name, {}).values())
            out.append(Source(name, s.weights, f'{s.description}; sparse input {sp}', s.topic,
                              {**s.extra, 'sparse': sparse}, s.completion))
    return out, run.results, run


def _run_live(args, sources, topics, bag, settings, extrinsics, several, temp_dirs) -> dict[str, EvalResult]:
    from ..ros.evaluate_live import node_params_for, run_live
    if args.record_dir:
        base = Path(args.record_dir)
    else:
        base = Path(tempfile.mkdtemp(prefix='packnet_eval_live_'))
        temp_dirs.append(base)
    results = {}
    for s in sources:
        out = base / _slug(s.label) if several else base
        params = node_params_for(s.weights.node_value, args.device, args.precision, settings.max_depth)
        params.update(parse_key_values(args.node_param, '--node-param'))
        _say(f'{s.label}: {s.description}')
        try:
            result, report = run_live(bag, topics, params, out, settings, label=s.label,
                                      samples=_samples(args, s, several), lidar_extrinsics=extrinsics,
                                      domain_id=args.domain_id, frame_timeout_s=args.frame_timeout, say=_say,
                                      progress=lambda r: _say(f'  frame {r.frames_sent} answered {r.frames_answered}')
                                      if r.frames_sent % 10 == 0 else None, replays=args.replays,
                                      max_rate_hz=args.replay_rate)
        except (TimeoutError, RuntimeError) as exc:
            if out.exists() and base in temp_dirs:  # keep the node log for the user
                temp_dirs.remove(base)
            _say(f'{s.label}: live run failed: {exc} (node log: {out / "node.log"})')
            result = EvalResult(settings, {'metric': {}, 'median': {}}, [],
                                {'live run failed': 1, 'frames_scored': 0}, s.label)
        else:
            s.extra['node'] = _node_stats(report.replay_bags[-1])
            s.extra['frames'] = {'sent': report.frames_sent, 'answered': report.frames_answered,
                                  'resent': report.resent}
            if args.replays > 1:
                s.extra['replays'] = []
                for k, (rb, rr) in enumerate(zip(report.replay_bags, report.replay_results), start=1):
                    ns = _node_stats(rb)
                    s.extra['replays'].append({'replay': k, 'abs_rel': rr.metric.get('abs_rel'),
                                               'median_abs_rel': rr.median.get('abs_rel'),
                                               'scale_ratio': rr.metric.get('scale_ratio'), 'node': ns})
                    _say(f'  replay {k}: median-scaled abs_rel {rr.median.get("abs_rel", float("nan")):.4f}, '
                         f'metric abs_rel {rr.metric.get("abs_rel", float("nan")):.4f}, '
                         f'inference {ns.get("inference_ms_median", float("nan")):.0f} ms, '
                         f'adaptation steps {ns.get("adaptation_steps", 0)}, scale {ns.get("scale_factor", 1.0):.3f}')
            node = s.extra['node']
            _say(f'{s.label}: node answered {report.frames_answered}/{report.frames_sent} frames'
                 + (f' ({node["network"]} on {node["device"]}, {node["precision"]})' if node else ''))
        results[s.label] = result
    return results


def _edges_text(r: EvalResult) -> str:
    """abs_rel at ground-truth depth edges (:mod:`packnet_ros.evaluation.edges`), both modes."""
    def f(v) -> str:
        return 'nan' if v is None or not np.isfinite(v) else f'{v:.3f}'
    return (f'edge abs_rel (GT pixels near depth jumps > 10 %, {r.metric.get("n_edge_pixels", 0)} px): '
            f'metric {f(r.metric.get("edge_abs_rel"))}, median-scaled {f(r.median.get("edge_abs_rel"))}')


def _node_stats(out_bag: Path) -> dict:
    """What the node reported on ~/stats in a recorded bag: network, device, precision,
    median latencies, the final metric-scale and adaptation state (empty when none came)."""
    import statistics

    from ..evaluation.sources import Issues, read_messages_safely
    stats = [m.msg for m in read_messages_safely(out_bag, ['/packnet_node/stats'], Issues())]
    if not stats:
        return {}
    last = stats[-1]
    return {'network': last.network, 'device': last.device, 'precision': last.precision,
            'inference_ms_median': statistics.median(s.inference_ms for s in stats),
            'latency_ms_median': statistics.median(s.latency_ms for s in stats),
            'scale_source': last.scale_source, 'scale_factor': last.scale_factor, 'scale_valid': last.scale_valid,
            'scale_samples': last.scale_samples, 'scale_spread': last.scale_spread, 'scale_status': last.scale_status,
            'adaptation_steps': last.adaptation_steps, 'adaptation_rollbacks': last.adaptation_rollbacks,
            'frames': len(stats)}


def _report(args, sources: list[Source], results: dict[str, EvalResult], settings: EvalSettings,
            topics: BagTopics, several: bool, sparse_run=None, specs: list[Subsample] | None = None) -> int:
    by_label = {s.label: s for s in sources}
    print()
    for label, r in results.items():
        s = by_label[label]
        if args.compare and several:
            print(f'== {label}: {s.description}')
            print(counts_text(r))
            continue
        print(f'== {label}: {s.description}')
        print(modes_table(r))
        print(_edges_text(r))
        print(bins_text(r))
        print(counts_text(r))
        print()
    if args.compare:
        print()
        print(compare_table(results))
    if sparse_run is not None:
        from ..evaluation.completion import sparse_table
        print()
        print(sparse_table(sparse_run))

    run_settings = {
        'mode': args.mode,
        'source': {'kitti': str(args.kitti)} if args.kitti else {'bag': str(args.bag)},
        'topics': {'image': topics.image, 'camera_info': topics.camera_info,
                   'ground_truth': topics.cloud_gt or topics.depth_gt,
                   'ground_truth_kind': 'pointcloud2' if topics.cloud_gt else 'depth_image',
                   'tf': topics.tf_static},
        'extrinsics': args.extrinsics,
    }
    if args.mode == 'recorded':
        run_settings['pred_bag'] = str(args.pred_bag or args.bag)
    else:
        run_settings.update(device=args.device, precision=args.precision)
    if args.mode == 'offline':
        run_settings['refinement'] = args.refinement
    if specs:
        from ..completion import HDL64E
        run_settings['sparse'] = {
            'input': 'KITTI velodyne_points' if args.kitti else args.sparse_topic,
            'subsample': [str(sp) for sp in specs], 'seed': args.sparse_seed,
            'rings': f'from the elevation angle, {HDL64E.name} (a cloud\'s ring field when present)',
            'scored': 'ground-truth pixels that were not input (input pixels are never scored)'}

    def source_doc(label: str) -> dict:
        doc = results[label].to_json()
        s = by_label[label]
        doc['settings'].update(run_settings)
        if s.topic:
            doc['source'] = {'depth_topic': s.topic}
        elif s.completion is not None:
            doc['source'] = {'completion': s.completion.label, 'method': s.completion.description}
        else:
            doc['source'] = {'checkpoint': s.weights.node_value if s.weights else '', 'weights': s.description,
                             'untrained_fallback': s.untrained_fallback}
        extra = dict(s.extra)
        if 'sparse' in extra:  # n input / held-out / scored pixels, next to the metrics
            doc['sparse'] = extra.pop('sparse')
        doc['source'].update(extra)
        return doc

    if args.json:
        if several:
            doc = {'mode': args.mode, 'settings': {**settings.as_dict(), **run_settings},
                   'sources': {label: source_doc(label) for label in results}}
        else:
            doc = source_doc(next(iter(results)))
        write_json(args.json, doc)
        _say(f'wrote {args.json}')
    if args.csv:
        rows = []
        for label, r in results.items():
            rows.extend(({'source': label, **row} if several else row) for row in r.per_frame)
        write_csv(args.csv, rows)
        _say(f'wrote {args.csv} ({len(rows)} rows)')
    if args.plots:
        first = next(iter(results.values()))
        paths = write_plots(first, args.plots, results if several else None)
        _say(f'wrote {", ".join(str(p) for p in paths)}')
    if args.samples:
        _say(f'wrote sample panels under {args.samples}')

    empty = [label for label, r in results.items() if not r.counts.get('frames_scored', 0)]
    if empty:
        print(f'packnet-ros evaluate: nothing could be scored for {", ".join(empty)} (see the counts above)',
              file=sys.stderr)
        return 1
    return 0
