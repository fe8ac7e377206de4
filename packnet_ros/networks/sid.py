"""Spacing-increasing discretisation (SID) of depth and the SID classification head.

DORN (Fu, Gong, Wang, Batmanghelich, Tao, "Deep Ordinal Regression Network for Monocular
Depth Estimation", CVPR 2018, Sec. 3.2-3.4) predicts depth as one of K log-spaced
intervals. This module holds the pure tensor functions (thresholds, labels, decoding,
confidence) and the 1x1-convolution head; the losses are in
:mod:`packnet_ros.losses.supervised`. Implemented from the paper's formulas (transcribed in
``docs/SEEDS_BRIEF.md`` section B); no code of DORN, DORN_pytorch or AdaBins is used.

Conventions of this module:

* K = ``num_bins`` intervals [t_k, t_{k+1}), k = 0..K-1, K + 1 thresholds t_0 = alpha ..
  t_K = beta and K bin centres, all in metres along the optical axis.
* A depth's *label* is its interval index, clamped to 0..K-1 (depth < alpha -> 0,
  depth >= beta -> K-1).
* Ordinal logits (B, 2K, H, W): channel pair (2k, 2k+1) is a two-way classifier whose
  softmax probability of channel 2k+1 is P_k = P(depth >= t_{k+1}) = P(label > k)
  (DORN's layout: released Caffe ``conv8`` of 2K channels, 142 = 2 x 71 for KITTI;
  ``ordinal_decode_layer.py`` takes the argmax of each pair). Classifier K-1 asks
  "depth >= beta" (beyond the range); the decoders clamp its contribution.
* Classification logits (B, K, H, W): softmax over the K bins.
* Decoded depth (B, 1, H, W) is in metres directly (not inverse depth), as the design's
  "other heads (BTS, SID) output depth in metres" convention says.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = ['SidBins', 'sid_edges', 'as_sid_bins', 'sid_labels', 'sid_ordinal_targets',
           'sid_ordinal_probabilities', 'sid_bin_probabilities', 'sid_confidence', 'sid_decode', 'sid_depth',
           'SIDHead', 'SID_MODES', 'SID_METHODS']

SID_MODES = ('ordinal', 'classification')
SID_METHODS = ('soft', 'argmax')


class SidBins(NamedTuple):
    """A SID discretisation: ``edges`` (K+1,) thresholds and ``centres`` (K,), metres."""

    edges: torch.Tensor
    centres: torch.Tensor


def sid_edges(alpha: float, beta: float, K: int, shift: float | None = None,
              centre: str = 'log', dtype: torch.dtype = torch.float32) -> SidBins:
    """Spacing-increasing discretisation thresholds and bin centres (DORN Eq. 2).

    DORN: t_i = exp(log alpha + i * log(beta / alpha) / K), i = 0..K, after a shift xi is
    added to the depth range so that alpha* = alpha + xi = 1 (paper Sec. 3.2; see
    SEEDS_BRIEF B). With the shift, the thresholds returned (in metres) are

        t_i = exp(log(alpha + xi) + i * log((beta + xi) / (alpha + xi)) / K) - xi,

    i.e. uniform in log(depth + xi); with xi = 0 they are uniform in log depth and equal
    the unshifted formula exactly.

    Centres of bin k (between t_k and t_{k+1}, computed in the shifted space s = d + xi):

    * ``centre='log'`` (default): exp((log s_k + log s_{k+1}) / 2) - xi, the log-space
      mid-point (uniform in log depth as the edges; what AdaBins-style soft decoding and
      SEEDS_BRIEF B's recommendation use).
    * ``centre='linear'``: (s_k + s_{k+1}) / 2 - xi, DORN's decoding
      d = (t_l + t_{l+1}) / 2 - xi.

    Args:
        alpha: lower end of the range, metres (alpha + xi > 0).
        beta: upper end of the range, metres (> alpha).
        K: number of intervals (>= 1). The DORN KITTI release uses 71.
        shift: xi in metres. None = DORN's choice xi = 1 - alpha (so alpha* = 1); 0.0 =
            the plain formula.
        centre: 'log' or 'linear' (see above).
        dtype: dtype of the returned tensors (computed in float64 first).

    Returns:
        :class:`SidBins` with ``edges`` (K+1,) increasing, edges[0] = alpha,
        edges[K] = beta, and ``centres`` (K,), both in metres, on the CPU.

    Raises:
        ValueError: K < 1, beta <= alpha, alpha + xi <= 0 or an unknown ``centre``.
    """
    xi = 1.0 - float(alpha) if shift is None else float(shift)
    if int(K) != K or K < 1:
        raise ValueError(f'K must be a positive integer, got {K!r}')
    if not beta > alpha:
        raise ValueError(f'beta ({beta}) must be larger than alpha ({alpha})')
    lo, hi = float(alpha) + xi, float(beta) + xi
    if lo <= 0.0:
        raise ValueError(f'alpha + shift must be > 0, got {alpha} + {xi}')
    if centre not in ('log', 'linear'):
        raise ValueError(f"centre must be 'log' or 'linear', got {centre!r}")
    i = torch.arange(int(K) + 1, dtype=torch.float64)
    log_t = math.log(lo) + i * (math.log(hi / lo) / int(K))
    t = torch.exp(log_t)
    t[0], t[-1] = lo, hi  # exact ends, free of exp/log rounding
    if centre == 'log':
        c = torch.exp(0.5 * (log_t[:-1] + log_t[1:]))
    else:
        c = 0.5 * (t[:-1] + t[1:])
    edges = t - xi
    edges[0], edges[-1] = float(alpha), float(beta)
    return SidBins(edges.to(dtype), (c - xi).to(dtype))


def as_sid_bins(edges: SidBins | tuple | torch.Tensor) -> SidBins:
    """Normalise a bins argument: a :class:`SidBins` (or (edges, centres) pair) is
    returned as is; a bare (K+1,) edges tensor gets log-space centres
    sqrt(t_k t_{k+1}) (no shift; pass the :class:`SidBins` of :func:`sid_edges` to keep
    shift-aware or linear centres)."""
    if isinstance(edges, torch.Tensor):
        e = edges.reshape(-1)
        if e.numel() < 2:
            raise ValueError('edges needs at least 2 thresholds')
        return SidBins(e, torch.sqrt(e[:-1].clamp(min=0) * e[1:].clamp(min=0)))
    e, c = edges
    if e.numel() != c.numel() + 1:
        raise ValueError(f'{e.numel()} edges do not bound {c.numel()} bins')
    return SidBins(e, c)


def sid_labels(depth: torch.Tensor, edges: SidBins | tuple | torch.Tensor) -> torch.Tensor:
    """Interval index of every depth: #{k in 1..K-1 : depth >= t_k}, i.e. clamped to 0..K-1.

    Args:
        depth: (B, 1, H, W) or any shape, metres.
        edges: bins (see :func:`as_sid_bins`).

    Returns:
        int64 tensor of ``depth``'s shape (B, 1, H, W -> B, 1, H, W), values 0..K-1.
        Invalid depths (0, NaN) get label 0: mask them in the loss.
    """
    e = as_sid_bins(edges).edges.to(device=depth.device, dtype=torch.float32)
    inner = e[1:-1]
    d = depth.float().unsqueeze(-1)
    return (d >= inner).sum(-1)


def sid_ordinal_targets(depth: torch.Tensor, edges: SidBins | tuple | torch.Tensor) -> torch.Tensor:
    """Binary targets of DORN's K ordinal classifiers: y_k = [depth >= t_{k+1}], k = 0..K-1.

    Args:
        depth: (B, 1, H, W) metres.
        edges: bins (see :func:`as_sid_bins`).

    Returns:
        (B, K, H, W) float32 in {0, 1}; monotone non-increasing in k. y_{K-1} = 1 only for
        depth >= beta (beyond the range).
    """
    e = as_sid_bins(edges).edges.to(device=depth.device, dtype=torch.float32)
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f'depth must be (B, 1, H, W), got {tuple(depth.shape)}')
    return (depth.float() >= e[1:].view(1, -1, 1, 1)).float()


def _check_logits(logits: torch.Tensor, mode: str) -> int:
    if mode not in SID_MODES:
        raise ValueError(f'mode must be one of {SID_MODES}, got {mode!r}')
    if logits.dim() != 4:
        raise ValueError(f'logits must be (B, C, H, W), got {tuple(logits.shape)}')
    C = logits.shape[1]
    if mode == 'ordinal':
        if C % 2:
            raise ValueError(f'ordinal logits need 2K channels, got {C}')
        return C // 2
    return C


def sid_ordinal_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """P_k = softmax over the channel pair (2k, 2k+1), taken at 2k+1: P(depth >= t_{k+1}).

    Equals sigmoid(x_{2k+1} - x_{2k}).

    Args:
        logits: (B, 2K, H, W) ordinal logits.

    Returns:
        (B, K, H, W) float32 probabilities.
    """
    _check_logits(logits, 'ordinal')
    x = logits.float()
    return torch.sigmoid(x[:, 1::2] - x[:, 0::2])


def sid_bin_probabilities(logits: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-pixel distribution over the K bins.

    * classification: softmax over the K channels.
    * ordinal: p_0 = 1 - P_0, p_l = P_{l-1} - P_l (l = 1..K-2), p_{K-1} = P_{K-2} (the
      "beyond beta" classifier P_{K-1} is folded into the last bin, as the decoders clamp
      depth to it). For monotone P_k this sums to 1; otherwise negative differences are
      clipped to 0 and the result renormalised.

    Args:
        logits: (B, 2K, H, W) ordinal or (B, K, H, W) classification logits.
        mode: 'ordinal' or 'classification'.

    Returns:
        (B, K, H, W) float32, non-negative, summing to 1 over dim 1.
    """
    K = _check_logits(logits, mode)
    if mode == 'classification':
        return torch.softmax(logits.float(), dim=1)
    P = sid_ordinal_probabilities(logits)
    if K == 1:
        return torch.ones_like(P)
    one = torch.ones_like(P[:, :1])
    upper = torch.cat([one, P[:, :K - 1]], 1)                   # P_{l-1}, P_{-1} = 1
    lower = torch.cat([P[:, :K - 1], torch.zeros_like(one)], 1)  # P_l, 0 for the last bin
    p = (upper - lower).clamp(min=0.0)
    return p / p.sum(1, keepdim=True)


def sid_confidence(probabilities: torch.Tensor) -> torch.Tensor:
    """Per-pixel confidence 1 - H(p) / log K from a bin distribution p (B, K, H, W).

    H(p) = -sum_k p_k log p_k is the Shannon entropy (0 log 0 = 0). The result is in
    [0, 1]: 1 for a one-hot distribution, 0 (the minimum) for the uniform one. Chosen over
    the maximum probability because it uses the whole distribution (a bimodal pixel,
    e.g. at an occlusion edge, scores low) and because its range does not depend on K.
    K = 1 gives 1 everywhere.

    Returns:
        (B, 1, H, W) float32.
    """
    p = probabilities.float()
    K = p.shape[1]
    if K == 1:
        return torch.ones_like(p)
    entropy = -torch.special.xlogy(p, p).sum(1, keepdim=True)
    return (1.0 - entropy / math.log(K)).clamp(0.0, 1.0)


def sid_decode(logits: torch.Tensor, edges: SidBins | tuple | torch.Tensor, mode: str,
               method: str = 'soft') -> tuple[torch.Tensor, torch.Tensor]:
    """Depth (metres) and confidence from SID logits.

    Depth:

    * classification, 'soft': sum_k p_k c_k (probability-weighted bin centres, as AdaBins /
      Li et al. 2017 "soft-weighted-sum inference"); 'argmax': c_{argmax_k p_k}.
    * ordinal, 'soft': c_0 + sum_{k=0}^{K-2} P_k (c_{k+1} - c_k), the expectation over the
      ordinal steps (each classifier that fires moves the estimate one centre up; equals
      sum_l p_l c_l of :func:`sid_bin_probabilities` when P_k is monotone, and stays in
      [c_0, c_{K-1}] otherwise); 'argmax': DORN's l = sum_k [P_k >= 0.5] (P_k >= 0.5 iff
      x_{2k+1} >= x_{2k}), clamped to K-1, depth c_l.

    SEEDS_BRIEF B recommends 'soft' (DORN's threshold decoding quantises depth to the
    bins); 'argmax' is kept as a diagnostic. Interpolate the logits to the output size
    first (bilinear, as DORN's Interp layer before its decode layer) if the head runs
    below full resolution.

    Confidence: :func:`sid_confidence` of :func:`sid_bin_probabilities` (1 - normalised
    entropy), the same for both methods.

    Args:
        logits: (B, 2K, H, W) ordinal or (B, K, H, W) classification logits.
        edges: bins of K intervals (:class:`SidBins` from :func:`sid_edges`, or edges).
        mode: 'ordinal' or 'classification'.
        method: 'soft' or 'argmax'.

    Returns:
        (depth, confidence), each (B, 1, H, W) float32; depth in metres.
    """
    depth = sid_depth(logits, edges, mode, method)
    return depth, sid_confidence(sid_bin_probabilities(logits, mode))


def sid_depth(logits: torch.Tensor, edges: SidBins | tuple | torch.Tensor, mode: str,
              method: str = 'soft') -> torch.Tensor:
    """The depth half of :func:`sid_decode` (no confidence: what an exported depth model
    computes). Returns (B, 1, H, W) float32 metres."""
    K = _check_logits(logits, mode)
    if method not in SID_METHODS:
        raise ValueError(f'method must be one of {SID_METHODS}, got {method!r}')
    bins = as_sid_bins(edges)
    if bins.centres.numel() != K:
        raise ValueError(f'logits have {K} bins but the discretisation has {bins.centres.numel()}')
    c = bins.centres.to(device=logits.device, dtype=torch.float32)
    if mode == 'classification':
        p = torch.softmax(logits.float(), dim=1)
        if method == 'soft':
            depth = (p * c.view(1, -1, 1, 1)).sum(1, keepdim=True)
        else:
            depth = c[p.argmax(1, keepdim=True)]
    else:
        x = logits.float()
        if method == 'soft':
            P = torch.sigmoid(x[:, 1::2] - x[:, 0::2])
            steps = (c[1:] - c[:-1]).view(1, -1, 1, 1)
            depth = c[0] + (P[:, :K - 1] * steps).sum(1, keepdim=True)
        else:
            label = ((x[:, 1::2] - x[:, 0::2]) >= 0).sum(1, keepdim=True).clamp(max=K - 1)
            depth = c[label]
    return depth


class SIDHead(nn.Module):
    """1x1-convolution SID head: decoder features -> ordinal or classification logits.

    DORN's head is conv7 (2048 ch) -> conv8 (2K ch) at 1/8 resolution, then bilinear x8
    (``hufu6371/DORN:models/KITTI/deploy.prototxt``); here an optional hidden 1x1 conv +
    ReLU, then a 1x1 conv to the logits. The discretisation is stored as buffers
    (``edges``, ``centres``) so a checkpoint carries it.

    Args:
        in_channels: C of the decoder features.
        num_bins: K intervals (71 = DORN's released KITTI head and the seed paper's
            "71 classes").
        mode: 'ordinal' (2K channels, pairs (2k, 2k+1) -> P(depth >= t_{k+1})) or
            'classification' (K channels, softmax over bins).
        hidden_channels: width of an optional hidden 1x1 conv + ReLU (None = none).
        alpha, beta, shift, centre: the discretisation, see :func:`sid_edges`
            (defaults 1 m .. 80 m, DORN's shift xi = 1 - alpha, log-space centres).

    Forward:
        features (B, C, H, W) -> logits (B, 2K, H, W) (ordinal) or (B, K, H, W)
        (classification) at the features' resolution.
    """

    edges: torch.Tensor
    centres: torch.Tensor

    def __init__(self, in_channels: int, num_bins: int = 71, mode: str = 'ordinal',
                 hidden_channels: int | None = None, alpha: float = 1.0, beta: float = 80.0,
                 shift: float | None = None, centre: str = 'log'):
        super().__init__()
        if mode not in SID_MODES:
            raise ValueError(f'mode must be one of {SID_MODES}, got {mode!r}')
        self.mode = mode
        self.num_bins = int(num_bins)
        out_channels = 2 * self.num_bins if mode == 'ordinal' else self.num_bins
        layers: list[nn.Module] = []
        channels = in_channels
        if hidden_channels:
            layers += [nn.Conv2d(channels, hidden_channels, 1), nn.ReLU(inplace=True)]
            channels = hidden_channels
        layers.append(nn.Conv2d(channels, out_channels, 1))
        self.conv = nn.Sequential(*layers)
        bins = sid_edges(alpha, beta, self.num_bins, shift=shift, centre=centre)
        self.register_buffer('edges', bins.edges)
        self.register_buffer('centres', bins.centres)

    @property
    def bins(self) -> SidBins:
        """The head's discretisation (edges (K+1,), centres (K,), metres)."""
        return SidBins(self.edges, self.centres)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features)

    def decode(self, logits: torch.Tensor, method: str = 'soft') -> tuple[torch.Tensor, torch.Tensor]:
        """(depth (B, 1, H, W) metres, confidence (B, 1, H, W)) via :func:`sid_decode`."""
        return sid_decode(logits, self.bins, self.mode, method)
