#!/usr/bin/env python3
"""Markdown table of the held-out scores of training runs (issue 13's recipe selection).

    python tools/recipe_table.py outputs/train/heldout_*/report.json [--json results.json]

Each ``report.json`` is written by ``packnet-ros train`` for a config with ``data.heldout``;
one row per (run, held-out scene): the run's network, steps and wall time, then the
held-out metric abs_rel / a1 / scale ratio, the median-scaled abs_rel and that of untrained
weights of the same network, and whether the model beats untrained weights (median-scaled).
Rows are sorted by held-out metric abs_rel (the selection criterion). Exit 1 when a report
has no held-out scores.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rows_of(report: dict, source: str) -> list[dict]:
    """One dict per held-out scene of a training report."""
    out = []
    for scene, row in (report.get('heldout') or {}).items():
        t, u = row['trained'], row['untrained']
        out.append({'run': report.get('name', source), 'scene': scene, 'frames': row['frames'],
                    'network': report.get('network'), 'image_shape': report.get('image_shape'),
                    'loss_mode': report.get('loss_mode'), 'steps': report.get('steps'),
                    'train_wall_s': report.get('train_wall_s'),
                    'metric_abs_rel': t['metric']['abs_rel'], 'metric_a1': t['metric']['a1'],
                    'scale_ratio': t['metric']['scale_ratio'], 'median_abs_rel': t['median']['abs_rel'],
                    'median_a1': t['median']['a1'], 'untrained_median_abs_rel': u['median']['abs_rel'],
                    'better_than_untrained': row['better_than_untrained'], 'report': source})
    return out


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table, best held-out metric abs_rel first."""
    head = ('| run | held-out scene (frames) | network, input | loss | steps | train time | metric abs_rel | '
            'metric a1 | scale ratio | median-scaled abs_rel | untrained median-scaled | beats untrained |')
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    for r in sorted(rows, key=lambda r: r['metric_abs_rel']):
        h, w = r['image_shape'] or ('?', '?')
        lines.append(f'| {r["run"]} | {r["scene"]} ({r["frames"]}) | {r["network"]}, {w}x{h} | {r["loss_mode"]} | '
                     f'{r["steps"]} | {r["train_wall_s"] / 60:.0f} min | {r["metric_abs_rel"]:.3f} | '
                     f'{r["metric_a1"]:.3f} | {r["scale_ratio"]:.3f} | {r["median_abs_rel"]:.3f} | '
                     f'{r["untrained_median_abs_rel"]:.3f} | {"yes" if r["better_than_untrained"] else "NO"} |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('reports', nargs='+', help='report.json files of training runs with data.heldout')
    ap.add_argument('--json', help='also write the rows as JSON here')
    args = ap.parse_args(argv)
    rows = []
    for p in args.reports:
        try:
            report = json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            print(f'recipe_table: cannot read {p}: {e}', file=sys.stderr)
            return 1
        found = rows_of(report, p)
        if not found:
            print(f'recipe_table: {p} has no held-out scores (train with data.heldout set)', file=sys.stderr)
            return 1
        rows += found
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
