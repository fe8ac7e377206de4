"""``packnet-ros train --config config/train_*.yaml``."""
from __future__ import annotations

from .args import parse_key_values


def _cmd_train(args) -> int:
    from ..training.config import load_config
    overrides = parse_key_values(args.set, '--set')
    if args.max_epochs is not None:
        overrides['trainer.max_epochs'] = args.max_epochs
    if args.seed is not None:
        overrides['seed'] = args.seed
    cfg = load_config(args.config, overrides)  # every key type-checked before training is imported
    from ..training.train import train
    report = train(cfg, resume=args.resume, out_dir=args.out, progress=not args.no_progress)
    print(_summary(report))
    refused = (report.get('shipped') or {}).get('refused')
    if refused:
        print(f'packnet-ros train: not shipped to {cfg.ship_path}: held-out check {refused}; '
              f'the weights stay in {report.get("model")}')
        return 1
    return 0


def _summary(report: dict) -> str:
    lines = [f'trained {report["network"]} ({report["parameters"] / 1e6:.2f} M params) for {report["epochs"]} epochs, '
             f'{report["steps"]} steps in {report["train_wall_s"]:.0f} s ({report["precision"]}) -> {report.get("model")}']
    for when in ('val_before', 'val_after'):
        m = report.get(when) or {}
        if m:
            lines.append(f'{when}: median-scaled abs_rel {m["median_abs_rel"]:.3f} a1 {m["median_a1"]:.3f} | '
                         f'metric abs_rel {m["metric_abs_rel"]:.3f} a1 {m["metric_a1"]:.3f} | '
                         f'scale ratio {m["scale_ratio"]:.3f} ({m["n_frames"]} frames)')
    for name, row in (report.get('heldout') or {}).items():
        t, u = row['trained'], row['untrained']
        lines.append(f'held-out {name} ({row["frames"]} frames): metric abs_rel {t["metric"]["abs_rel"]:.3f} '
                     f'a1 {t["metric"]["a1"]:.3f} | median-scaled {t["median"]["abs_rel"]:.3f} '
                     f'(untrained {u["median"]["abs_rel"]:.3f}) | scale ratio {t["metric"]["scale_ratio"]:.3f}')
    if report.get('heldout_check'):
        lines.append(f'held-out check: {report["heldout_check"]}')
    return '\n'.join(lines)


def register(sub) -> None:
    """Add the ``train`` verb to the ``packnet-ros`` parser."""
    p = sub.add_parser('train', help='self-supervised training (PackNet-SfM, velocity supervision)')
    p.add_argument('--config', required=True, help='training YAML (see config/train_*.yaml)')
    p.add_argument('--out', default=None, help='run folder (default: output_dir of the config)')
    p.add_argument('--resume', default=None, help='checkpoint to resume from, or "auto" (the run\'s last.ckpt)')
    p.add_argument('--max-epochs', type=int, default=None)
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--set', action='append', metavar='KEY=VALUE', help='override a config key (dotted), repeatable')
    p.add_argument('--no-progress', action='store_true', help='no progress bar (logs only)')
    p.set_defaults(func=_cmd_train)
