"""Deterministic reference parameters of the packnet-sfm fidelity fixture.

``../shared/fixtures/packnet_reference/<Network>.params.json`` lists every state_dict
entry with a formula ``flat[i] = offset + scale * sin(a * i + b)`` (float64, cast to
float32, reshaped C-order). Used by the fidelity, checkpoint and fast-path tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from packnet_ros.paths import SOURCE_ROOT

DEFAULT_FIXTURES = SOURCE_ROOT.parent / 'shared' / 'fixtures' / 'packnet_reference'


def reference_rows(name: str, fixtures: str | Path = DEFAULT_FIXTURES) -> list[dict]:
    """Rows (key, shape, offset, scale, a, b) of ``<name>.params.json``.

    Raises:
        FileNotFoundError: the fixture folder or file is missing.
    """
    path = Path(fixtures) / f'{name}.params.json'
    with open(path) as f:
        return json.load(f)


def fill_reference_params(module: nn.Module, name: str, fixtures: str | Path = DEFAULT_FIXTURES) -> None:
    """Load the fixture's formula-generated parameters into ``module`` (strict)."""
    state = {}
    for row in reference_rows(name, fixtures):
        n = int(np.prod(row['shape']))
        flat = row['offset'] + row['scale'] * np.sin(row['a'] * np.arange(n, dtype=np.float64) + row['b'])
        state[row['key']] = torch.from_numpy(flat.astype(np.float32).reshape(row['shape']))
    module.load_state_dict(state, strict=True)
