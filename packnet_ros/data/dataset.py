"""PyTorch training dataset over sequences of :class:`~packnet_ros.io.sequence.Sample`.

Per item (packnet-sfm's ``train_transforms`` order: resize, keep the un-jittered images,
colour jitter, to tensor):

1. resize target and contexts to ``image_shape`` with :func:`packnet_ros.imageproc.resize_rgb`
   (the function the inference core uses) and scale K with
   :func:`packnet_ros.geometry.scale_intrinsics` (ratio convention); resize GT depth with
   nearest neighbour (or packnet-sfm's point-preserving scatter);
2. train mode (``augment=True``): horizontal flip with probability ``flip_prob`` of target,
   contexts, GT depth *and* K together (:func:`flip_intrinsics`);
3. ``rgb_original`` / ``rgb_context_original``: the images at this point (packnet-sfm's
   ``duplicate_sample``: its photometric loss compares these, not the jittered ones);
4. train mode: colour jitter (brightness, contrast, saturation, hue) with one set of random
   factors for the target and all its contexts (:func:`apply_color_jitter`).

Optional depth-consistent zoom (``zoom=(s_min, s_max)``, train mode, before step 1): with
probability ``zoom_prob`` the target, its contexts and its GT depth are cropped to a window
``1/s`` of the image around the principal point (:func:`zoom_window`) and resized to the
network input as usual. The result is presented as the *same* camera (the focal length of the
unzoomed item) looking at a scene whose depth is divided by ``s``: GT depth is divided by ``s``.
This is exact pinhole geometry (``u = cx + s f X / Z = cx + f X / (Z / s)``): lateral and
vertical positions stay, so the ground plane stays at the camera's height, and every object
comes ``s`` times nearer. It teaches a network without intrinsics input that objects which look
``s`` times larger are ``s`` times nearer (trucks and vans filling the image, which a few frames
of an open road never show). The camera motion between target and contexts is not a rigid motion
of that squashed scene, so zoomed items carry NaN ``expected_translation`` and ``speed``; use zoom
with depth supervision only (the training config refuses it with photometric losses).

Note: packnet-sfm itself flips (``flip_lr_prob``) inside the model, only around the depth
network (flip the input, flip the predicted inverse depth back), so its photometric loss
never sees flipped images. Flipping the whole sample here (monodepth2 style) is equivalent
for the loss as long as K is flipped with it, which :func:`flip_intrinsics` does.

Randomness: each item draws from ``numpy.random.default_rng((seed, epoch, index))``, so a
given ``seed`` / :meth:`SfmDataset.set_epoch` reproduces the same augmentation in any
DataLoader worker.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..geometry import scale_intrinsics
from ..imageproc import resize_rgb

__all__ = ['SfmDataset', 'ColorJitter', 'sample_color_jitter', 'apply_color_jitter', 'flip_intrinsics',
           'resize_depth_nearest', 'resize_depth_preserve', 'zoom_window']


# ---------------------------------------------------------------------------------------- geometry
def flip_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics of the horizontally flipped image (``flipped[:, u] = image[:, W - 1 - u]``).

    Pixel-centre convention of this package (:func:`packnet_ros.geometry.pixel_grid`): pixel
    ``u`` (column index) has its centre at ``u``. A point ``(X, Y, Z)`` seen at column ``u``
    appears in the flipped image at ``u' = W - 1 - u``, where it must unproject to the
    mirrored point ``(-X, Y, Z)``::

        (u' - cx') / fx = -(u - cx) / fx   =>   cx' = W - 1 - cx

    fx, fy, cy are unchanged; a skew term ``K[0, 1]`` changes sign.
    """
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 2] = (width - 1) - K[0, 2]
    K[0, 1] = -K[0, 1]
    return K


def resize_depth_nearest(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a (H, W) depth map with nearest neighbour (NaN stays NaN)."""
    if depth.shape == (height, width):
        return depth
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


def resize_depth_preserve(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a sparse (H, W) depth map keeping every valid point (packnet-sfm's
    ``resize_depth_preserve``): each valid pixel ``(v, u)`` goes to ``(int(v * h/H), int(u * w/W))``;
    when several land on one pixel the last one in row-major order wins. NaN = invalid."""
    H, W = depth.shape
    out = np.full((height, width), np.nan, dtype=np.float32)
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    vv = (v * (height / H)).astype(np.int64)
    uu = (u * (width / W)).astype(np.int64)
    ok = (vv < height) & (uu < width)
    out[vv[ok], uu[ok]] = depth[v[ok], u[ok]]
    return out


def zoom_window(K: np.ndarray, width: int, height: int, zoom: float) -> tuple[int, int, int, int]:
    """Integer crop window ``(x0, y0, w, h)`` that zooms an image by ``zoom`` about its
    principal point: ``w = round(width / zoom)``, ``h = round(height / zoom)``, placed so that
    the principal point keeps its relative position (``x0 = cx (1 - w / width)``), clipped
    to the image.

    Args:
        K: (3, 3) intrinsics of the full image (pixels).
        width, height: full image size (pixels).
        zoom: factor >= 1 (1 = the whole image).

    Raises:
        ValueError: ``zoom < 1`` or not finite.
    """
    if not math.isfinite(zoom) or zoom < 1.0:
        raise ValueError(f'zoom must be a finite factor >= 1, got {zoom}')
    w = max(1, min(width, int(round(width / zoom))))
    h = max(1, min(height, int(round(height / zoom))))
    x0 = int(round(float(K[0, 2]) * (1.0 - w / width)))
    y0 = int(round(float(K[1, 2]) * (1.0 - h / height)))
    return min(max(x0, 0), width - w), min(max(y0, 0), height - h), w, h


# ---------------------------------------------------------------------------------------- colour jitter
@dataclass
class ColorJitter:
    """One draw of colour-jitter factors (torchvision ``ColorJitter`` semantics).

    brightness, contrast, saturation: multiplicative factors (1 = unchanged); hue: shift in
    [-0.5, 0.5] of a full hue turn (0 = unchanged); order: the order the four operations are
    applied in (packnet-sfm shuffles it per sample).
    """

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple = ('brightness', 'contrast', 'saturation', 'hue')


def sample_color_jitter(rng: np.random.Generator, brightness: float = 0.2, contrast: float = 0.2,
                        saturation: float = 0.2, hue: float = 0.05) -> ColorJitter:
    """Draw factors as packnet-sfm's ``random_color_jitter_transform``: brightness, contrast and
    saturation uniform in ``[max(0, 1 - x), 1 + x]``, hue uniform in ``[-hue, hue]``, shuffled order."""
    order = ['brightness', 'contrast', 'saturation', 'hue']
    rng.shuffle(order)
    return ColorJitter(brightness=float(rng.uniform(max(0.0, 1 - brightness), 1 + brightness)),
                       contrast=float(rng.uniform(max(0.0, 1 - contrast), 1 + contrast)),
                       saturation=float(rng.uniform(max(0.0, 1 - saturation), 1 + saturation)),
                       hue=float(rng.uniform(-hue, hue)), order=tuple(order))


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as PIL's ``convert('L')`` (0.299 R + 0.587 G + 0.114 B), float32."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def apply_color_jitter(rgb: np.ndarray, jitter: ColorJitter) -> np.ndarray:
    """Apply colour jitter to an (H, W, 3) uint8 RGB image (numpy / OpenCV, no torchvision).

    Follows torchvision's functional ops on PIL images (what packnet-sfm uses), rounding to
    uint8 after each step as PIL does:

    * brightness ``b``: ``img * b``;
    * contrast ``c``: ``m + c * (img - m)``, ``m`` = mean of the grey image (one scalar per image);
    * saturation ``s``: ``g + s * (img - g)``, ``g`` = per-pixel grey;
    * hue ``h``: HSV with 8-bit hue (full turn = 256), ``H += h * 255`` modulo 256.
    """
    out = np.asarray(rgb, dtype=np.uint8)
    for op in jitter.order:
        if op == 'brightness' and jitter.brightness != 1.0:
            out = _u8(out.astype(np.float32) * jitter.brightness)
        elif op == 'contrast' and jitter.contrast != 1.0:
            m = float(np.floor(_gray(out).mean() + 0.5))
            out = _u8(m + jitter.contrast * (out.astype(np.float32) - m))
        elif op == 'saturation' and jitter.saturation != 1.0:
            g = _gray(out)[..., None]
            out = _u8(g + jitter.saturation * (out.astype(np.float32) - g))
        elif op == 'hue' and jitter.hue != 0.0:
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV_FULL)
            shift = np.uint8(int(jitter.hue * 255) % 256)
            hsv[..., 0] = hsv[..., 0] + shift   # uint8 wrap-around = modulo 256
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    return np.ascontiguousarray(out)


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


# ---------------------------------------------------------------------------------------- dataset
class SfmDataset(Dataset):
    """Self-supervised training samples from one or more sequences.

    Args:
        sequences: readers (:class:`KittiSequence`, :class:`BagSequence`, :class:`VideoSequence`
            or anything with ``__len__`` and ``__getitem__ -> Sample``), concatenated. All must
            give the same number of contexts (default collate stacks them).
        image_shape: ``(H, W)`` of the network input, multiples of 32 (PackNet's 5 strided
            levels), e.g. (192, 640) for KITTI.
        augment: train mode (flip + colour jitter); False = deterministic.
        flip_prob: horizontal-flip probability (packnet-sfm ``flip_lr_prob`` = 0.5).
        jitter: ``(brightness, contrast, saturation, hue)`` (packnet-sfm: 0.2, 0.2, 0.2, 0.05);
            None or all zeros = no jitter.
        repeat: iterate the concatenation this many times per epoch (packnet-sfm ``repeat``).
        seed: base of the per-item random generator.
        depth_resize: ``'nearest'`` (default) or ``'preserve'`` (packnet-sfm's scatter that keeps
            every LiDAR point).
        zoom: ``(s_min, s_max)`` range of the depth-consistent zoom factor (module docstring),
            ``s_min >= 1``; None or (1, 1) = off. Train mode only.
        zoom_prob: probability that an item is zoomed (factor uniform in the range).

    Items (dict; default ``torch.utils.data.default_collate`` batches them):
        ``rgb`` (3, H, W) float32 in [0, 1]; ``rgb_context`` list of N (3, H, W);
        ``rgb_original`` / ``rgb_context_original``: the same before colour jitter (after flip);
        ``intrinsics`` (3, 3) float32 for (H, W) (and the flip);
        ``expected_translation`` (N,) float32 metres, NaN when unknown;
        ``speed`` () float32 m/s, NaN when unknown; ``context_dt`` (N,) float32 seconds;
        ``zoom`` () float32, the zoom factor applied (1 = none; depth is already divided by it,
        translation and speed are NaN);
        ``depth`` (1, H, W) float32 metres, all NaN when the sample has no GT;
        ``has_depth`` bool; ``flipped`` bool; ``idx`` int (dataset index); ``source`` str;
        ``stamp_ns`` int64.
    """

    def __init__(self, sequences: Sequence, image_shape: tuple[int, int] = (192, 640), augment: bool = False,
                 flip_prob: float = 0.5, jitter: Sequence[float] | None = (0.2, 0.2, 0.2, 0.05),
                 repeat: int = 1, seed: int = 0, depth_resize: str = 'nearest',
                 zoom: Sequence[float] | None = None, zoom_prob: float = 0.5):
        H, W = (int(v) for v in image_shape)
        if H <= 0 or W <= 0 or H % 32 or W % 32:
            raise ValueError(f'image_shape must be positive multiples of 32 (PackNet downsamples 5 times), '
                             f'got {tuple(image_shape)}')
        if int(repeat) < 1:
            raise ValueError(f'repeat must be >= 1, got {repeat}')
        if depth_resize not in ('nearest', 'preserve'):
            raise ValueError(f"depth_resize must be 'nearest' or 'preserve', got {depth_resize!r}")
        if zoom is not None:
            if len(zoom) != 2 or not all(math.isfinite(float(z)) for z in zoom) \
                    or not 1.0 <= float(zoom[0]) <= float(zoom[1]):
                raise ValueError(f'zoom must be [s_min, s_max] with 1 <= s_min <= s_max, got {zoom!r}')
            zoom = (float(zoom[0]), float(zoom[1]))
            if zoom == (1.0, 1.0):
                zoom = None
        if not 0.0 <= float(zoom_prob) <= 1.0:
            raise ValueError(f'zoom_prob must be in [0, 1], got {zoom_prob}')
        if jitter is not None and len(jitter) != 4:
            raise ValueError(f'jitter must be (brightness, contrast, saturation, hue), got {jitter!r}')
        self.sequences = list(sequences)
        self.image_shape = (H, W)
        self.augment = bool(augment)
        self.flip_prob = float(flip_prob)
        self.jitter = tuple(float(v) for v in jitter) if jitter is not None and any(jitter) else None
        self.repeat = int(repeat)
        self.seed = int(seed)
        self.epoch = 0
        self.depth_resize = depth_resize
        self.zoom = zoom
        self.zoom_prob = float(zoom_prob)
        self._cum = np.cumsum([0] + [len(s) for s in self.sequences]).tolist()
        n_ctx = {len(getattr(s, 'context_dts', [])) for s in self.sequences if len(s)}
        if len(n_ctx) > 1:
            raise ValueError(f'all sequences must have the same number of context frames, got {sorted(n_ctx)}')

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch, as DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    @property
    def n_samples(self) -> int:
        """Samples in one pass over the sequences (without ``repeat``)."""
        return self._cum[-1]

    def __len__(self) -> int:
        return self.n_samples * self.repeat

    def locate(self, idx: int) -> tuple[int, int]:
        """(sequence number, sample number in it) of dataset index ``idx``."""
        if not 0 <= idx < len(self):
            raise IndexError(f'index {idx} out of range for {len(self)} items')
        k = idx % self.n_samples
        s = bisect.bisect_right(self._cum, k) - 1
        return s, k - self._cum[s]

    def __getitem__(self, idx: int) -> dict:
        idx = int(idx)
        if idx < 0:
            idx += len(self)
        s, j = self.locate(idx)
        sample = self.sequences[s][j]
        H, W = self.image_shape

        flipped = False
        jitter = None
        zoom = 1.0
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, idx))
            flipped = bool(rng.random() < self.flip_prob)
            if self.jitter is not None:
                jitter = sample_color_jitter(rng, *self.jitter)
            if self.zoom is not None and rng.random() < self.zoom_prob:
                zoom = float(rng.uniform(*self.zoom))

        src_target, src_contexts, src_depth, src_K = sample.target, sample.contexts, sample.gt_depth, sample.K
        h0, w0 = src_target.shape[:2]
        if zoom != 1.0:
            x0, y0, cw, ch = zoom_window(src_K, w0, h0, zoom)
            crop = (slice(y0, y0 + ch), slice(x0, x0 + cw))
            src_target = src_target[crop]
            src_contexts = [c[crop] for c in src_contexts]
            src_depth = None if src_depth is None else src_depth[crop]
            src_K = np.array(src_K, dtype=np.float64, copy=True)
            src_K[0, 2] -= x0
            src_K[1, 2] -= y0
            zoom = w0 / cw  # the exact factor of the integer window
            h0, w0 = ch, cw
        target = resize_rgb(src_target, H, W)
        contexts = [resize_rgb(c, H, W) for c in src_contexts]
        K = scale_intrinsics(src_K, W / w0, H / h0)
        if zoom != 1.0:  # same camera, scene depth divided by zoom
            K[0, 0] /= zoom
            K[1, 1] /= zoom
        depth = None
        if src_depth is not None:
            fn = resize_depth_nearest if self.depth_resize == 'nearest' else resize_depth_preserve
            depth = fn(np.asarray(src_depth, dtype=np.float32), H, W)
            if zoom != 1.0:
                depth = depth / np.float32(zoom)

        if flipped:
            target = np.ascontiguousarray(target[:, ::-1])
            contexts = [np.ascontiguousarray(c[:, ::-1]) for c in contexts]
            K = flip_intrinsics(K, W)
            if depth is not None:
                depth = np.ascontiguousarray(depth[:, ::-1])
        originals = (target, contexts)
        if jitter is not None:
            target = apply_color_jitter(target, jitter)
            contexts = [apply_color_jitter(c, jitter) for c in contexts]

        n = len(sample.contexts)
        et = sample.expected_translation
        et = [math.nan] * n if et is None or zoom != 1.0 else et
        speed = math.nan if sample.speed is None or zoom != 1.0 else sample.speed
        return {
            'rgb': _to_tensor(target),
            'rgb_context': [_to_tensor(c) for c in contexts],
            'rgb_original': _to_tensor(originals[0]),
            'rgb_context_original': [_to_tensor(c) for c in originals[1]],
            'intrinsics': torch.as_tensor(K, dtype=torch.float32),
            'expected_translation': torch.tensor(et, dtype=torch.float32),
            'speed': torch.tensor(speed, dtype=torch.float32),
            'zoom': torch.tensor(zoom, dtype=torch.float32),
            'context_dt': torch.tensor(sample.context_dt, dtype=torch.float32),
            'depth': (torch.from_numpy(depth).unsqueeze(0) if depth is not None
                      else torch.full((1, H, W), math.nan, dtype=torch.float32)),
            'has_depth': depth is not None,
            'flipped': flipped,
            'idx': idx,
            'source': sample.source,
            'stamp_ns': torch.tensor(sample.stamp_ns, dtype=torch.int64),
        }
