"""Depth completion from sparse LiDAR (core: numpy + OpenCV, no ROS, no I/O).

* :mod:`.sparse`: LiDAR points -> sparse depth image, ring (beam) index from the elevation
  angle, beam / random subsampling;
* :mod:`.ipbasic`: IP-Basic (Ku, Harakeh & Waslander, CRV 2018), classical morphological
  completion, ``fast`` and ``multiscale`` variants;
* :func:`parse_completion`: the ``completion:...`` weights text of ``packnet-ros evaluate``.

Depth images here are (H, W) float32 metres along the camera's optical axis with **0 = no
value** (the KITTI / IP-Basic convention); the evaluation turns 0 into NaN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .ipbasic import BLURS, MODES, fill_in_fast, fill_in_multiscale
from .sparse import (
    HDL64E,
    BeamModel,
    Subsample,
    beam_rings,
    elevation_deg,
    project_to_depth,
    sparse_depth,
)

COMPLETION_PREFIX = 'completion:'
"""Prefix of a completion method in the weights syntax of ``packnet-ros evaluate --checkpoint``."""


@dataclass(frozen=True)
class CompletionMethod:
    """A depth completion method: sparse (H, W) metres (0 = empty) -> dense (H, W) metres
    (0 where the method leaves a pixel empty).

    Attributes:
        label: the text it was parsed from (``completion:ipbasic``, ...).
        fn: the function.
        description: for reports.
    """

    label: str
    fn: Callable[[np.ndarray], np.ndarray]
    description: str

    def __call__(self, sparse: np.ndarray) -> np.ndarray:
        return self.fn(sparse)


def parse_completion(text: str) -> CompletionMethod:
    """``completion:ipbasic[:fast|multiscale][:gaussian|bilateral][:extrapolate|noextrapolate]``.

    Defaults: ``fast``, ``gaussian`` and ``extrapolate`` (IP-Basic's demo configuration;
    Gaussian blur gave the paper's lowest RMSE; extrapolation extends the depth up to the top
    row, so ground truth above the highest input return gets a prediction). ``multiscale`` defaults to
    ``bilateral`` (its published configuration) and also extrapolates unless told not to.

    Raises:
        ValueError: not a ``completion:`` text, an unknown method or option.
    """
    if not text.startswith(COMPLETION_PREFIX):
        raise ValueError(f'not a completion method: {text!r} (expected "completion:ipbasic[:OPTIONS]")')
    parts = [p.strip().lower() for p in text[len(COMPLETION_PREFIX):].split(':')]
    if parts[0] != 'ipbasic':
        raise ValueError(f'unknown completion method {parts[0]!r} in {text!r}: known "ipbasic" '
                         f'(options fast|multiscale, gaussian|bilateral, extrapolate|noextrapolate)')
    mode, blur, extrapolate = 'fast', None, True
    for opt in parts[1:]:
        if opt in MODES:
            mode = opt
        elif opt in BLURS:
            blur = opt
        elif opt in ('extrapolate', 'noextrapolate'):
            extrapolate = opt == 'extrapolate'
        else:
            raise ValueError(f'unknown IP-Basic option {opt!r} in {text!r}: use fast|multiscale, '
                             f'gaussian|bilateral, extrapolate|noextrapolate')
    blur = blur or ('gaussian' if mode == 'fast' else 'bilateral')
    fill = fill_in_fast if mode == 'fast' else fill_in_multiscale

    def run(sparse: np.ndarray) -> np.ndarray:
        return fill(sparse, extrapolate=extrapolate, blur=blur)

    desc = f'IP-Basic {mode} ({blur} blur, {"with" if extrapolate else "no"} extrapolation; RGB unused)'
    return CompletionMethod(text, run, desc)


def sparse_network_input(sparse: np.ndarray, guide: str = 'none') -> np.ndarray:
    """The sparse input of a depth network with a sparse branch
    (:mod:`packnet_ros.networks.sparse_branch`) for one frame.

    Args:
        sparse: (H, W) metres at the network input's resolution, 0 / NaN = no return.
        guide: the network's ``sparse_guide``: 'none', or 'ipbasic' = add IP-Basic's
            completion of ``sparse`` (``fill_in_fast``, Gaussian blur, extrapolation to the
            top: the ``completion:ipbasic`` default) as a second channel.

    Returns:
        (1, H, W) or (2, H, W) float32 metres, 0 = no value.

    Raises:
        ValueError: not (H, W), or an unknown guide.
    """
    d = np.asarray(sparse, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f'sparse depth must be (H, W) metres, got {d.shape}')
    d = np.where(np.isfinite(d) & (d > 0), d, np.float32(0.0)).astype(np.float32)
    if guide == 'none':
        return d[None]
    if guide != 'ipbasic':
        raise ValueError(f"sparse guide must be 'none' or 'ipbasic', got {guide!r}")
    dense = fill_in_fast(d, extrapolate=True, blur='gaussian') if d.any() else np.zeros_like(d)
    return np.stack([d, np.asarray(dense, dtype=np.float32)])


__all__ = ['COMPLETION_PREFIX', 'sparse_network_input', 'CompletionMethod', 'parse_completion', 'fill_in_fast', 'fill_in_multiscale',
           'MODES', 'BLURS', 'HDL64E', 'BeamModel', 'Subsample', 'beam_rings', 'elevation_deg',
           'project_to_depth', 'sparse_depth']
