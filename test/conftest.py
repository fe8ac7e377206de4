"""Shared fixtures: paths to ../shared (real data, reference fixtures), parameter filling."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
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
SHARED = Path(os.environ.get('PACKNET_ROS_SHARED', ROOT.parent / 'shared'))
DATA = SHARED / 'data'
KITTI_TINY = DATA / 'kitti_tiny'
KITTI_DRIVE = KITTI_TINY / '2011_09_26' / '2011_09_26_drive_0023_sync'
FIXTURES = SHARED / 'fixtures' / 'packnet_reference'


def reference_rows(name: str) -> list[dict]:
    """Rows of ``<name>.params.json`` of the fidelity fixture (key, shape, formula)."""
    with open(FIXTURES / f'{name}.params.json') as f:
        return json.load(f)


def fill_reference_params(module: torch.nn.Module, name: str) -> None:
    """Fill ``module`` with the fixture's deterministic parameters.

    flat[i] = offset + scale * sin(a * i + b) in float64, cast to float32, reshaped C-order
    (fixtures/packnet_reference/README.md). Loads with strict=True.
    """
    state = {}
    for row in reference_rows(name):
        n = int(np.prod(row['shape']))
        flat = row['offset'] + row['scale'] * np.sin(row['a'] * np.arange(n, dtype=np.float64) + row['b'])
        state[row['key']] = torch.from_numpy(flat.astype(np.float32).reshape(row['shape']))
    module.load_state_dict(state, strict=True)


@pytest.fixture(scope='session')
def kitti_drive() -> Path:
    if not KITTI_DRIVE.is_dir():
        pytest.fail(f'real KITTI data missing at {KITTI_DRIVE} (../shared/data must be beside the repo)')
    return KITTI_DRIVE


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: starts ROS processes or trains (deselect with -m "not slow")')
