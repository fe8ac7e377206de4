"""JSON output with NaN/Inf written as null (strict JSON), for metrics and benchmark reports."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def json_safe(obj):
    """Recursively convert ``obj`` to JSON-ready values: numpy scalars/arrays to Python
    numbers/lists, non-finite floats to None, mapping keys to str, tuples to lists."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(path: str | Path, doc: Mapping) -> Path:
    """Write ``doc`` as indented JSON (NaN/Inf become null), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(doc), indent=2, default=str) + '\n')
    return path
