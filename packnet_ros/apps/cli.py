"""``packnet-ros <verb>``: one command line for the offline tools.

Verbs: demo, bag (more are registered by their modules: evaluate, train, export,
benchmark, infer). Every verb exits non-zero with a message that says what to fix when its
input is wrong.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DATA = Path('../shared/data/kitti_tiny')


class UserError(Exception):
    """A mistake in the command line or its inputs: printed without a traceback, exit 2."""


def _cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.data, args.out, args.checkpoint, args.device, args.precision, args.domain_id,
                    args.frame_timeout)


def _cmd_bag(args) -> int:
    from ..io.kitti import KittiDrive, find_kitti_drive
    from ..ros.bag import write_kitti_bag
    drive = KittiDrive(find_kitti_drive(args.kitti), camera=args.camera)
    summary = write_kitti_bag(drive, args.out, storage=args.storage, overwrite=args.overwrite)
    print(f'wrote {summary.path} ({args.storage}) from {drive.path}:')
    for topic, n in summary.counts.items():
        print(f'  {topic}: {n}')
    for frame, reason in summary.skipped:
        print(f'  frame {frame}: {reason}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='packnet-ros', description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='verb', required=True, metavar='VERB')

    d = sub.add_parser('demo', help='KITTI frames -> bag -> live packnet_node -> outputs, metrics, pictures')
    d.add_argument('--data', default=str(DEFAULT_DATA), help='KITTI raw folder (drive or above it)')
    d.add_argument('--out', default='outputs/demo', help='output folder')
    d.add_argument('--checkpoint', default='default', help='"default", "untrained" or a .ckpt path')
    d.add_argument('--device', default='auto')
    d.add_argument('--precision', default='auto')
    d.add_argument('--domain-id', type=int, default=None, help='ROS_DOMAIN_ID (default: environment or per-process)')
    d.add_argument('--frame-timeout', type=float, default=120.0, help='seconds to wait for each frame')
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser('bag', help='convert a KITTI raw drive folder into a rosbag2')
    b.add_argument('kitti', help='KITTI raw drive folder (or a folder above it)')
    b.add_argument('out', help='bag directory to create')
    b.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    b.add_argument('--camera', default='image_02', choices=('image_02', 'image_03'))
    b.add_argument('--overwrite', action='store_true')
    b.set_defaults(func=_cmd_bag)

    for register in _verb_registrars():
        register(sub)
    return p


def _verb_registrars():
    """Verbs living in their own modules (imported lazily so one broken verb breaks no other)."""
    regs = []
    for mod, fn in (('packnet_ros.apps.evaluate', 'register'), ('packnet_ros.apps.train', 'register'),
                    ('packnet_ros.apps.benchmark', 'register'), ('packnet_ros.apps.export', 'register'),
                    ('packnet_ros.apps.infer', 'register')):
        try:
            module = __import__(mod, fromlist=[fn])
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith('packnet_ros'):
                continue
            raise
        regs.append(getattr(module, fn))
    return regs


def main(argv=None) -> int:
    """Entry point of the ``packnet-ros`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..checkpoint import CheckpointError
    from ..io.kitti import KittiFormatError
    try:
        return int(args.func(args) or 0)
    except (UserError, CheckpointError, KittiFormatError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f'packnet-ros {args.verb}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'packnet-ros {args.verb}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
