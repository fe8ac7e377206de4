"""Supervised depth-completion training: split each frame's LiDAR into input and target points.

A network with a sparse auxiliary branch (``model.sparse_branch: true``,
:mod:`packnet_ros.networks.sparse_branch`) learns completion from the LiDAR depth of the
batch ('depth' (B, 1, H, W) metres at the network's resolution, NaN or 0 = no return, with
'intrinsics' (B, 3, 3) of that resolution). Per image, :func:`split_lidar`

1. draws one of ``loss.completion_inputs`` (the subsamples of
   :class:`packnet_ros.completion.Subsample`: ``beams:N`` or ``ratio:R``);
2. ``beams:N``: gives every return a ring (:func:`packnet_ros.completion.sparse.pixel_rings`:
   unprojected with K, moved into the LiDAR frame with ``loss.completion_lidar_extrinsics``
   (default: KITTI 2011_09_26), the nominal HDL-64E beam nearest to its elevation; an
   approximation, since the training data holds depth images, not scans) and keeps the
   rings ``ring % (64 / N) == phase`` with a random phase in [0, 64 / N) (every phase is a
   valid N-beam sensor; the evaluator keeps phase 0); ``ratio:R``: keeps a random fraction R;
3. returns the kept returns as the network's sparse input (0 elsewhere) and **the other
   returns as the loss target** (NaN elsewhere): input and target are disjoint, so the loss
   measures completion of points the network was not given (as the evaluator scores only
   pixels that were not input).

``loss.completion_monocular_fraction`` of the batches (drawn per batch) are trained without
sparse input (``sparse=None``: the plain monocular network; the whole LiDAR is the target),
so the same weights keep a usable monocular fallback (PackNet-SAN trains RGB and RGB+D
passes too).

DMD3C stage 1 (Liang et al., CVPR 2025, Sec. 3: pre-training on images without LiDAR from
scans simulated on a teacher's dense depth; ``loss.completion_teacher_scans``):
:func:`simulated_scan` keeps the teacher pixels whose elevation, seen from the LiDAR, lies
on a nominal HDL-64E beam (a band one pixel row high, so rows between beams stay empty as in
a real scan); :func:`split_batch` then splits that scan like real LiDAR (same input
subsamples) and returns the teacher depth on the non-input pixels as the target of
:func:`completion_ssi_loss`. The paper builds its scans by ray casting a mesh of the
monocular depth (code not released, SEEDS_BRIEF C); sampling the depth map along the beam
elevations is the per-pixel equivalent without the mesh.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..completion import sparse_network_input
from ..completion.sparse import (
    HDL64E,
    KITTI_T_CAMERA_LIDAR,
    BeamModel,
    Subsample,
    pixel_beams,
    pixel_rings,
)
from ..completion.stage import parse_extrinsics
from ..losses.supervised import ssi_loss
from .teacher import normalise_disparity

PRESERVE_ROW_OFFSET_PX = 0.5
"""Row offset of :func:`pixel_rings` for LiDAR maps resized with ``data.depth_resize:
preserve`` (floor of the scaled row: on average half a row above the return)."""


@dataclass(frozen=True)
class SplitSettings:
    """How :func:`split_lidar` splits a frame.

    Attributes:
        subsamples: the input subsamples drawn from (uniformly, per image).
        monocular_fraction: probability that a batch gets no sparse input at all.
        T_camera_lidar: (4, 4) LiDAR frame -> camera optical frame (ring index).
        row_offset_px: see :func:`pixel_rings`.
        n_beams: the sensor's beams.
    """

    subsamples: tuple[Subsample, ...] = (Subsample('beams', 16.0),)
    monocular_fraction: float = 0.0
    T_camera_lidar: np.ndarray = field(default_factory=KITTI_T_CAMERA_LIDAR.copy)
    row_offset_px: float = 0.0
    n_beams: int = HDL64E.n_beams

    @classmethod
    def from_config(cls, inputs, monocular_fraction: float = 0.0, extrinsics: str = '',
                    depth_resize: str = 'nearest') -> 'SplitSettings':
        """Settings from the ``loss.completion_*`` keys.

        Raises:
            ValueError: no input subsample, a bad subsample text (``all`` is refused: it
                leaves no target), a ``beams:N`` with N not dividing 64 or N = 64, a fraction
                outside [0, 1), bad extrinsics.
        """
        texts = list(inputs or [])
        if not texts:
            raise ValueError('loss.completion_inputs is empty: list the input subsamples, e.g. [beams:16, beams:8]')
        specs = []
        for text in texts:
            spec = Subsample.parse(str(text))
            if spec.kind == 'all' or (spec.kind == 'ratio' and spec.value >= 1.0):
                raise ValueError(f'loss.completion_inputs: {text!r} keeps every return and leaves no target; '
                                 f'use beams:N (N < 64) or ratio:R (R < 1)')
            if spec.kind == 'beams' and (HDL64E.n_beams % int(spec.value) or int(spec.value) >= HDL64E.n_beams):
                raise ValueError(f'loss.completion_inputs: {text!r}: N must divide {HDL64E.n_beams} and be below it '
                                 f'(32, 16, 8, 4, 2, 1)')
            specs.append(spec)
        if not 0.0 <= float(monocular_fraction) < 1.0:
            raise ValueError(f'loss.completion_monocular_fraction is {monocular_fraction!r}, expected a number in [0, 1)')
        T = parse_extrinsics(extrinsics)
        return cls(tuple(specs), float(monocular_fraction), KITTI_T_CAMERA_LIDAR if T is None else T,
                   PRESERVE_ROW_OFFSET_PX if depth_resize == 'preserve' else 0.0)


def split_frame(depth: np.ndarray, K: np.ndarray, spec: Subsample, rng: np.random.Generator,
                settings: SplitSettings, phase: int | None = None,
                rings: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Input and target of one frame.

    Args:
        depth: (H, W) metres, NaN / 0 = no return.
        K: (3, 3) intrinsics of that image.
        spec: ``beams:N`` or ``ratio:R``.
        rng: random source (phase of the beams, the ratio's draw).
        settings: extrinsics, row offset, beam count.
        phase: ``beams:N``: the kept rings are ``ring % (n_beams / N) == phase`` (None = random).
        rings: (H, W) ring of each return when known (:func:`simulated_scan`); None = from
            :func:`pixel_rings`.

    Returns:
        (input (H, W) float32 metres, 0 = none; target (H, W) float32 metres, NaN = none);
        every return is in exactly one of them.
    """
    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    if spec.kind == 'beams':
        step = settings.n_beams // int(spec.value)
        if rings is None:
            rings = pixel_rings(np.where(valid, d, 0.0), K, settings.T_camera_lidar,
                                row_offset_px=settings.row_offset_px)
        ph = int(rng.integers(step)) if phase is None else int(phase)
        keep = valid & (rings % step == ph)
    elif spec.kind == 'ratio':
        keep = valid & (rng.random(d.shape) < spec.value)
    else:
        raise ValueError(f'split_frame: {spec} keeps every return; use beams:N or ratio:R')
    inp = np.where(keep, d, np.float32(0.0)).astype(np.float32)
    target = np.where(valid & ~keep, d, np.float32(np.nan)).astype(np.float32)
    return inp, target


def beam_offsets(depth: np.ndarray, K: np.ndarray, T_camera_lidar: np.ndarray = KITTI_T_CAMERA_LIDAR,
                 model: BeamModel = HDL64E) -> tuple[np.ndarray, np.ndarray]:
    """Nearest nominal beam of every pixel of a dense depth map and the angle to it:
    :func:`packnet_ros.completion.sparse.pixel_beams` (rings (H, W) int64, -1 = no depth;
    offsets (H, W) float64 degrees, NaN = no depth)."""
    return pixel_beams(depth, K, T_camera_lidar, model)


def scan_band_deg(K: np.ndarray) -> float:
    """Default band of :func:`simulated_scan`: the vertical angle of one pixel row at the
    principal point, degrees(1 / fy) (192 x 640 KITTI: ~0.155 deg, half the HDL-64E's upper
    beam spacing of 1/3 deg, a third of the lower block's ~0.52 deg)."""
    return float(np.degrees(1.0 / float(np.asarray(K)[1, 1])))


def simulated_scan(depth: np.ndarray, K: np.ndarray, T_camera_lidar: np.ndarray = KITTI_T_CAMERA_LIDAR,
                   model: BeamModel = HDL64E, band_deg: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A LiDAR scan simulated on a dense (teacher) depth map (DMD3C stage 1).

    Keeps the pixels whose elevation (:func:`beam_offsets`) lies within ``band_deg / 2`` of
    a nominal beam; all others are dropped, so each beam leaves about one pixel row per
    column and the rows between beams are empty, as in a projected real scan.

    Args:
        depth: (H, W) dense depth, metres (0 / NaN = none).
        K: (3, 3) intrinsics of that image.
        T_camera_lidar: (4, 4) LiDAR frame -> camera optical frame (the simulated mount).
        model: the simulated sensor's beams.
        band_deg: full band width in degrees (> 0); None = :func:`scan_band_deg` (one row).

    Returns:
        (scan (H, W) float32 metres, 0 = no return; rings (H, W) int64, -1 = no return).

    Raises:
        ValueError: a band that is not a positive number.
    """
    band = scan_band_deg(K) if band_deg is None else float(band_deg)
    if not (np.isfinite(band) and band > 0):
        raise ValueError(f'band_deg is {band_deg!r}, expected a positive number of degrees')
    rings, offsets = beam_offsets(depth, K, T_camera_lidar, model)
    keep = (rings >= 0) & (np.abs(np.nan_to_num(offsets, nan=np.inf)) <= band / 2.0)
    scan = np.where(keep, np.asarray(depth, dtype=np.float32), np.float32(0.0)).astype(np.float32)
    return scan, np.where(keep, rings, -1)


def split_batch(depth: torch.Tensor, intrinsics: torch.Tensor, settings: SplitSettings, rng: np.random.Generator,
                guide: str = 'none', teacher_depth: torch.Tensor | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """:func:`split_lidar`, plus DMD3C stage 1's simulated scans for the images without LiDAR.

    Args:
        depth, intrinsics, settings, rng, guide: as :func:`split_lidar`.
        teacher_depth: (B, 1, H, W) the teacher's dense depth, metres (NaN = none), at
            ``depth``'s size; None = no simulated scans.

    Returns:
        (sparse input, LiDAR target, teacher target): the first two as :func:`split_lidar`
        (an image without LiDAR but with a teacher gets its simulated scan's input subset as
        input); teacher target (B, 1, H, W) metres, the teacher depth on the pixels that are
        not input of the images without LiDAR, NaN elsewhere (None without ``teacher_depth``).
    """
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f'depth must be (B, 1, H, W), got {tuple(depth.shape)}')
    if intrinsics.shape != (depth.shape[0], 3, 3):
        raise ValueError(f'intrinsics must be ({depth.shape[0]}, 3, 3), got {tuple(intrinsics.shape)}')
    if teacher_depth is not None and teacher_depth.shape != depth.shape:
        raise ValueError(f'teacher_depth must be {tuple(depth.shape)}, got {tuple(teacher_depth.shape)}')
    d = depth.detach().float().cpu().numpy()
    Ks = intrinsics.detach().double().cpu().numpy()
    B = d.shape[0]
    lidar = np.isfinite(d) & (d > 0)
    has_lidar = lidar.reshape(B, -1).any(1)
    teach = None
    if teacher_depth is not None:
        t = teacher_depth.detach().float().cpu().numpy()
        teach = np.where(np.isfinite(t) & (t > 0) & ~has_lidar[:, None, None, None], t, np.nan).astype(np.float32)
    if settings.monocular_fraction > 0 and rng.random() < settings.monocular_fraction:
        target = np.where(lidar, d, np.nan).astype(np.float32)
        return (None, torch.from_numpy(target).to(depth.device),
                None if teach is None else torch.from_numpy(teach).to(depth.device))
    inputs, targets, teacher_targets = [], [], []
    for b in range(B):
        spec = settings.subsamples[int(rng.integers(len(settings.subsamples)))]
        if teach is not None and not has_lidar[b]:
            scan, rings = simulated_scan(np.nan_to_num(teach[b, 0]), Ks[b], settings.T_camera_lidar)
            i, _ = split_frame(scan, Ks[b], spec, rng, settings, rings=rings)
            t = np.full(d.shape[2:], np.nan, dtype=np.float32)
            teacher_targets.append(np.where(i > 0, np.float32(np.nan), teach[b, 0]))
        else:
            i, t = split_frame(d[b, 0], Ks[b], spec, rng, settings)
            if teach is not None:
                teacher_targets.append(teach[b, 0])  # all NaN: the image has LiDAR
        inputs.append(sparse_network_input(i, guide))
        targets.append(t)
    inp = torch.from_numpy(np.stack(inputs)).to(depth.device)
    tgt = torch.from_numpy(np.stack(targets)[:, None]).to(depth.device)
    tt = None if teach is None else torch.from_numpy(np.stack(teacher_targets)[:, None]).to(depth.device)
    return inp, tgt, tt


def split_lidar(depth: torch.Tensor, intrinsics: torch.Tensor, settings: SplitSettings,
                rng: np.random.Generator, guide: str = 'none') -> tuple[torch.Tensor | None, torch.Tensor]:
    """Split a batch's LiDAR into the sparse input and the loss target (module docstring).

    Args:
        depth: (B, 1, H, W) metres, NaN or 0 = no return.
        intrinsics: (B, 3, 3) of that resolution.
        settings: :class:`SplitSettings`.
        rng: random source.
        guide: the network's ``sparse_guide``: 'ipbasic' adds IP-Basic's completion of each
            input as a second channel (:func:`packnet_ros.completion.sparse_network_input`).

    Returns:
        (sparse input (B, 1, H, W) metres, 0 = none ((B, 2, H, W) [sparse, guide] with a
        guide), or None when every image of the batch
        is drawn monocular; target (B, 1, H, W) metres, NaN = none), on ``depth``'s device.
        Images without any return get an empty input and an empty target. Images drawn
        monocular (``monocular_fraction``) get an all-zero input (the fused network then
        computes skip * w + b: use the whole batch monocular for the exact plain network)
        and the whole LiDAR as target.

    Raises:
        ValueError: shapes that do not match.
    """
    inp, tgt, _ = split_batch(depth, intrinsics, settings, rng, guide)
    return inp, tgt


def completion_ssi_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-and-shift-invariant loss of a completion network's depth (DMD3C Sec. 3; the
    least-squares form of DMD3Cpp's ``disp_loss.py``, SEEDS_BRIEF C).

    The target is normalised per image by its median and mean absolute deviation
    (:func:`packnet_ros.training.teacher.normalise_disparity`, so the value is in units of
    that deviation and does not depend on the target's scale), then
    :func:`packnet_ros.losses.ssi_loss`: per image the closed-form least-squares (s, t) of
    s * pred + t against it and the mean absolute residual. Both are depths (metres): the
    simulated scan the network completes is in the teacher's depth, so it is the affine
    ambiguity of the teacher's depth that is discounted.

    Args:
        pred: (B, 1, h, w) predicted depth, metres (with gradient); nearest-resized to the
            target's size when it differs.
        target: (B, 1, H, W) target depth, metres; NaN / <= 0 = not scored.

    Returns:
        Scalar float32 tensor; 0 (with a graph to ``pred``) when no image has a target pixel.
    """
    tgt = target.detach().float().to(pred.device)
    tgt = torch.where(torch.isfinite(tgt) & (tgt > 0), tgt, torch.full_like(tgt, float('nan')))
    p = pred.float()
    if tuple(p.shape[-2:]) != tuple(tgt.shape[-2:]):
        p = torch.nn.functional.interpolate(p, size=tuple(tgt.shape[-2:]), mode='nearest')
    norm = normalise_disparity(tgt)
    if not bool(torch.isfinite(norm).any()):
        return p.sum() * 0.0
    return ssi_loss(p, norm)


__all__ = ['PRESERVE_ROW_OFFSET_PX', 'SplitSettings', 'beam_offsets', 'completion_ssi_loss', 'scan_band_deg',
           'simulated_scan', 'split_batch', 'split_frame', 'split_lidar']
