"""Shared fixtures: paths to ../shared (real data, reference fixtures), parameter filling."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Network rule (DEVELOPERS.md): every rclpy process of the test run stays on loopback, in a
# ROS domain of its own (derived from the pid unless PACKNET_TEST_DOMAIN_ID is given).
# Set before anything imports rclpy; node processes started by tests inherit it.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_DOMAIN_ID'] = os.environ.get('PACKNET_TEST_DOMAIN_ID', str(150 + os.getpid() % 80))
os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(ROOT / 'config' / 'fastdds_large_messages.xml')
os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix)
# backend 'auto' keeps 'fast' in tests (a timing must not choose what a test computes);
# test_openvino.py turns the OpenVINO measurement on where it tests it. Inherited by node processes.
os.environ.setdefault('PACKNET_ROS_OPENVINO_AUTO', '0')
SHARED = Path(os.environ.get('PACKNET_ROS_SHARED', ROOT.parent / 'shared'))
DATA = SHARED / 'data'
KITTI_TINY = DATA / 'kitti_tiny'
KITTI_DRIVE = KITTI_TINY / '2011_09_26' / '2011_09_26_drive_0023_sync'
FIXTURES = SHARED / 'fixtures' / 'packnet_reference'


from reference_params import fill_reference_params, reference_rows  # noqa: E402,F401


@pytest.fixture(scope='session')
def kitti_drive() -> Path:
    if not KITTI_DRIVE.is_dir():
        pytest.fail(f'real KITTI data missing at {KITTI_DRIVE} (../shared/data must be beside the repo)')
    return KITTI_DRIVE


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: starts ROS processes or trains (deselect with -m "not slow")')


def flatten_params(params: dict, prefix: str = '') -> dict:
    """Nested YAML mappings are dotted parameter names in ROS 2 (scale: {window: 5} -> scale.window)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(flatten_params(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


@pytest.fixture(scope='module')
def one_intra_op_thread():
    """Run a module's CPU networks on one thread (restored afterwards): the results do not
    depend on it, and OpenMP barriers stall badly when other jobs share the CPUs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def with_overrides(cfg: dict, over: dict) -> dict:
    """``cfg`` with dotted-key overrides applied in place (``{'loss.mode': 'supervised'}``);
    missing intermediate mappings are created. Returns ``cfg``."""
    for key, value in over.items():
        node = cfg
        *path, last = key.split('.')
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return cfg


def load_train_config(tmp_path: Path, cfg: dict, **over):
    """Write ``cfg`` (with :func:`with_overrides`) to ``tmp_path/cfg.yaml`` and load it as a
    training config (every key type-checked, as ``packnet-ros train`` does)."""
    import yaml

    from packnet_ros.training.config import load_config
    path = tmp_path / 'cfg.yaml'
    path.write_text(yaml.safe_dump(with_overrides(cfg, over)))
    return load_config(path)
