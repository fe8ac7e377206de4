"""``packnet-ros benchmark --quick`` (the CI form): it runs and reports every section.

No timing assertions: speed targets are measured by the benchmark command itself.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_benchmark_reports_every_section(tmp_path):
    out = tmp_path / 'bench.json'
    p = subprocess.run([sys.executable, '-m', 'packnet_ros.apps.cli', 'benchmark', '--quick', '--json', str(out),
                        '--soak', '30', '--soak-rate', '5'],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r['quick'] is True and r['peak']['float32'] > 0
    rows = r['networks']
    paths = {row['path'] for row in rows}
    assert {'fp32-eager', 'fp32-fast'} <= paths
    ref = next(row for row in rows if row['path'] == 'fp32-eager')
    fast = next(row for row in rows if row['path'] == 'fp32-fast')
    assert ref['speedup_vs_fp32_eager'] == pytest.approx(1.0) and ref['mean_rel_depth_diff'] == 0.0
    assert fast['mean_rel_depth_diff'] < 1e-4  # exact rewrite: rounding only
    assert fast['gflop_executed'] < fast['gflop_nominal']
    for row in rows:
        assert row['median_ms'] > 0 and row['p90_ms'] >= row['median_ms'] and row['effective_gflops'] > 0
    assert r['node_overhead']['total_median_ms'] > 0 and 'image_msg_to_array' in r['node_overhead']
    e2e = r['e2e']
    assert e2e['frames_sent'] == 10 and e2e['latency']['median_ms'] > 0
    assert e2e['frames_received'] >= 3  # a smoke test: losses on a loaded CI machine are reported, not judged
    assert r['memory']['peak_rss_mb'] > 0
    soak = r['soak']  # small model, half-resolution KITTI frames, node RSS sampled
    assert soak['frames_sent'] == 30 and soak['dropped'] == soak['frames_sent'] - soak['frames_received']
    assert soak['frames_received'] >= 10  # a smoke test: drops on a loaded CI machine are reported, not judged
    assert len(soak['rss_mb']) >= 10 and soak['rss_warm_mb'] > 50 and abs(soak['rss_growth']) < 1.0
