"""Sparse auxiliary branch: LiDAR depth features fused into a depth network's encoder skips.

The fusion is PackNet-SAN's (Guizilini, Ambrus, Burgard, Gaidon, "Sparse Auxiliary Networks
for Unified Monocular Depth Prediction and Completion", CVPR 2021, arXiv 2103.16690): per
encoder scale i, with a learned per-channel scale w_i (init 1) and bias b_i (init 0),

    skip_i <- w_i * skip_i + sparse_i + b_i,

where sparse_i are the sparse depth features at that scale scattered on the dense grid (0
where the scale has no return). PackNet-SAN computes sparse_i with MinkowskiEngine sparse
convolutions; here they come from dense-tensor **sparsity-invariant convolutions** (the
dense fallback suggested in ../shared/docs/SEEDS_BRIEF.md C), so the branch runs with plain
PyTorch on any device:

* Uhrig, Schneider, Schneider, Franke, Brox, Geiger, "Sparsity Invariant CNNs", 3DV 2017
  (arXiv 1708.06500): convolve the masked input x * m, normalise by the mask seen in the
  window, carry the mask to the next layer by max pooling (a pixel is valid when its window
  holds any valid input), strided layers max-pool the mask with the same stride.
* The normaliser uses the layer's own (positive) weights, as the normalized convolution of
  Eldesokey, Felsberg, Khan ("Confidence Propagation through CNNs for Guided Sparse Depth
  Regression", TPAMI 2019, arXiv 1811.01791): out = sum(w m x) / sum(w m), w > 0 (softplus
  of a free parameter). Uhrig's normaliser counts the valid pixels (sum(m)), which makes a
  constant input give an output that still depends on the hole pattern; with the weighted
  normaliser a per-channel constant input gives exactly that constant wherever the window
  holds a valid pixel, whatever the hole pattern.

Guide residual (BTS heads with ``guide``, :meth:`SparseBranch.on_guide`): where the guide
has a value the network's output is the guide times a learned bounded factor,

    depth = guide * exp(GUIDE_LOG_RANGE * tanh(r)),   r = 3x3 conv of the decoder's last features,

(r starts at 0: a fresh network outputs the guide there), and the decoder's own depth
elsewhere. The network learns *corrections* of the classical completion from the image and
the sparse features (wrong surface at depth edges, smeared thin objects, the extrapolated
top rows) instead of re-deriving metric depth from the image. Measured (kitti_tiny, 7
training frames, 700 steps; config/train_completion_kitti_tiny.yaml): on its training
frames it beats its own guide (held-out returns at 16 beams: RMSE 3.0 m vs 4.2-4.4 m), but
on the held-out kitti_traffic scene the image-conditioned corrections do not transfer and
make it worse than IP-Basic (RMSE 6.86 m vs 5.30 m at 16 beams; without the residual, the
guide as an input channel only: ~8 m on two frames after 5 epochs vs 4.4 m). Seven frames
of one drive are too few to learn image-conditioned corrections that hold on another scene.
With ``residual='sparse'`` the head reads only the branch's own features (stem at full
resolution, F0 and F1 upsampled, the input maps), so the correction is a learned
refinement of IP-Basic from the LiDAR geometry alone: 490 steps on the same 7 frames
(config/train_completion_kitti_tiny_sparse_residual.yaml) give, on held-out kitti_traffic
(78 frames, held-out returns): 16 beams RMSE 4.07 m / abs_rel 0.111 / MAE 1.25 m (IP-Basic
fast 5.30 / 0.132 / 1.70, multiscale 5.16 / 0.105 / 1.32), 8 beams 5.97 m (6.65 / 6.67),
32 beams 3.56 m (3.88 / 4.22). The image then only fills pixels without a guide value.
(This design was picked after two kitti_traffic frames had been looked at with the earlier
variants, so that scene is not perfectly untouched for the choice; README says so.)

Each :class:`SparseConv` is a *depthwise* normalized convolution (every input channel
filtered on its own, ``multiplier`` filters per channel) followed by a pointwise 1x1
convolution + ReLU that mixes the channels pixel by pixel. A pointwise layer cannot see the
hole pattern, so the whole branch keeps the invariance: a constant sparse plane with holes
gives features independent of the hole pattern on every pixel whose receptive field holds
a valid return (``test/test_sparse_branch.py``).

Input feature: the sparse depth divided by ``max_depth`` (d / max_depth in (0, 1], 0 = no
return; a metric, not a relative, cue: the network must learn metric depth from it), one
channel, and the validity mask m = (d > 0).

Optional guide (``guide=True``, option ``sparse_guide: ipbasic`` of a checkpoint): the
caller also passes a classical completion of the same sparse input (IP-Basic,
:func:`packnet_ros.completion.sparse_network_input`; computed outside the network, which imports no
completion code) as a second channel, (B, 2, H, W) = [sparse, guide] metres. The branch then
reads three channels [sparse / max_depth, guide / max_depth, sparse mask] with the mask
m = (sparse > 0) | (guide > 0): the network starts from a dense metric prior and learns
the corrections the image explains (edges, thin objects, regions IP-Basic smears).

With ``sparse=None`` the host network skips the fusion entirely, so it *is* the plain
monocular network (bit-for-bit the same output as the network without the branch with the
same weights).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

GUIDE_RESIDUALS = ('image', 'sparse')
"""What the guide-residual head reads: the decoder's last features ('image') or only the
sparse branch's own features ('sparse')."""

GUIDE_LOG_RANGE = 1.0
"""Bound of the guide residual's log factor: the output stays within [guide / e, guide * e]."""

PROJECTION_GAIN = 4.0
"""Init std of the projections x sqrt(fan_in) (see :class:`SparseBranch`)."""

SPARSE_BRANCH_CHANNELS = (16, 32, 64, 64, 96)
"""Channels of the sparse features at the encoder strides 2, 4, 8, 16, 32 (before the 1x1
projection to the encoder's skip channels)."""


def _scaled(depth: torch.Tensor, max_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    valid = torch.isfinite(depth) & (depth > 0)
    return torch.where(valid, depth / float(max_depth), torch.zeros_like(depth)).clamp(0.0, 1.0), valid


def sparse_depth_input(sparse: torch.Tensor, max_depth: float, guide: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature and mask of a sparse depth map.

    Args:
        sparse: (B, 1, H, W) depth in metres along the optical axis, 0 (or NaN, negative)
            = no return; with ``guide`` (B, 2, H, W): [sparse, guide] (guide: a dense
            completion of the sparse channel, metres, 0 = none).
        max_depth: metres; the features are depth / max_depth, clamped to [0, 1].
        guide: whether the second channel is there.

    Returns:
        (feature (B, 1, H, W) in [0, 1] -- with ``guide`` (B, 3, H, W): [sparse, guide,
        sparse mask] --, mask (B, 1, H, W) float {0, 1}), in ``sparse``'s dtype.

    Raises:
        ValueError: not (B, 1, H, W) (or (B, 2, H, W) with ``guide``).
    """
    channels = 2 if guide else 1
    if sparse.dim() != 4 or sparse.shape[1] != channels:
        what = '[sparse, guide] (B, 2, H, W)' if guide else '(B, 1, H, W)'
        raise ValueError(f'sparse depth must be {what} metres (0 = no return), got {tuple(sparse.shape)}')
    feat, valid = _scaled(sparse[:, :1], max_depth)
    if not guide:
        return feat, valid.to(sparse.dtype)
    gfeat, gvalid = _scaled(sparse[:, 1:2], max_depth)
    mask = (valid | gvalid).to(sparse.dtype)
    return torch.cat((feat, gfeat, valid.to(sparse.dtype)), 1), mask


class SparseConv(nn.Module):
    """Sparsity-invariant depthwise normalized convolution + pointwise 1x1 conv + ReLU.

    Shapes: x (B, C_in, H, W) with mask (B, 1, H, W) in {0, 1} -> (y (B, C_out, H', W'),
    mask' (B, 1, H', W')), H' = ceil(H / stride). Features are 0 where mask' is 0.

    Depthwise part (``multiplier`` positive kernels k x k per input channel, weights
    softplus(theta)): n_j = sum_k w_jk m_k x_ck / max(sum_k w_jk m_k, eps) + beta_j;
    mask' = max_pool(m, k, stride, k // 2). Pointwise part: y = ReLU(W n) * mask'.

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: odd k.
        stride: 1 or 2.
        multiplier: depthwise filters per input channel.
    """

    eps = 1e-6

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 multiplier: int = 2):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        self.in_channels = int(in_channels)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        mid = self.in_channels * int(multiplier)
        # softplus(0.5413) = 1: every kernel starts as a box filter
        self.theta = nn.Parameter(torch.full((mid, 1, kernel_size, kernel_size), 0.5413)
                                  + 0.1 * torch.randn(mid, 1, kernel_size, kernel_size))
        self.beta = nn.Parameter(torch.zeros(mid))
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=True)
        nn.init.kaiming_normal_(self.pointwise.weight, mode='fan_in', nonlinearity='relu')
        assert self.pointwise.bias is not None
        nn.init.zeros_(self.pointwise.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, s, p = self.kernel_size, self.stride, self.kernel_size // 2
        w = F.softplus(self.theta).to(x.dtype)
        num = F.conv2d(x * mask, w, stride=s, padding=p, groups=self.in_channels)
        den = F.conv2d(mask.expand(-1, self.in_channels, -1, -1), w, stride=s, padding=p, groups=self.in_channels)
        mask_out = F.max_pool2d(mask, k, stride=s, padding=p)
        n = num / den.clamp_min(self.eps) + self.beta.to(x.dtype).view(1, -1, 1, 1)
        y = F.relu(self.pointwise(n)) * mask_out
        return y, mask_out


class SparseBranch(nn.Module):
    """Sparse depth -> features at the encoder strides 2, 4, 8, 16, 32, and their fusion into
    the encoder skips (``w * skip + sparse + b``, module docstring).

    Layout (each arrow a :class:`SparseConv`; s = stride):
    input (1 ch, H) -> k5 s1 (c0) -> k3 s2 -> F0 (H/2) -> k3 s2 -> F1 (H/4) -> k3 s2 -> F2 (H/8)
    -> k3 s2 -> F3 (H/16) -> k3 s2 -> F4 (H/32); each F_i passes a 1x1 convolution (no bias)
    of [F_i, mask_i] to the skip's channels, initialised N(0, (4 / sqrt(fan_in))^2) so that the
    sparse term starts at about the skips' own scale. (Zero-initialised projections -- a
    fresh branch that adds nothing, ``zero_init=True`` -- were tried first: after 175 steps
    their contribution was still 1-3 % of the skips' standard deviation and the network
    ignored its sparse input.)

    Args:
        skip_channels: (c0, .., c4) of the host encoder's features (ResNet: 64, 64, 128,
            256, 512 for ResNet-18).
        max_depth: metres, the input scaling (d / max_depth).
        channels: sparse feature channels per scale (:data:`SPARSE_BRANCH_CHANNELS`).
        guide: the input has a second channel, a dense completion of the sparse one
            (module docstring).
        zero_init: start the projections at zero (the branch then adds nothing until trained).
        head_channels: with ``guide``, channels of the decoder's last features: adds the
            guide-residual head (:meth:`on_guide`; None = no head, the guide is an input only).
        residual: with ``guide``: 'image' (the head reads the decoder's last features, which
            see the image) or 'sparse' (the head reads only the branch's own full-, half- and
            quarter-resolution features and the input maps: a learned refinement of the guide
            that never sees the image; see :data:`GUIDE_RESIDUALS`).

    Attributes:
        skip_scale: per scale a (1, c_i, 1, 1) parameter w_i (init 1).
        skip_bias: per scale a (1, c_i, 1, 1) parameter b_i (init 0).
    """

    def __init__(self, skip_channels, max_depth: float = 80.0, channels=SPARSE_BRANCH_CHANNELS, guide: bool = False,
                 zero_init: bool = False, head_channels: int | None = None, residual: str = 'image'):
        super().__init__()
        skip_channels = tuple(int(c) for c in skip_channels)
        channels = tuple(int(c) for c in channels)
        if len(skip_channels) != 5 or len(channels) != 5:
            raise ValueError(f'SparseBranch needs 5 scales (strides 2 .. 32), got skip_channels={skip_channels}, '
                             f'channels={channels}')
        if not max_depth > 0:
            raise ValueError(f'max_depth must be > 0 metres, got {max_depth}')
        self.max_depth = float(max_depth)
        self.guide = bool(guide)
        n_in = 3 if self.guide else 1
        self.stem = SparseConv(n_in, channels[0], 5, 1, multiplier=max(1, channels[0] // n_in))
        downs = []
        c_in = channels[0]
        for c in channels:
            downs.append(SparseConv(c_in, c, 3, 2))
            c_in = c
        self.down = nn.ModuleList(downs)
        projections = [nn.Conv2d(c + 1, cs, 1, bias=False) for c, cs in zip(channels, skip_channels)]
        for proj in projections:
            if zero_init:
                nn.init.zeros_(proj.weight)
            else:  # sparse features have a std of ~0.15-0.25: gain 4 gives contributions of ~skip scale
                nn.init.normal_(proj.weight, 0.0, PROJECTION_GAIN / math.sqrt(proj.in_channels))
        self.project = nn.ModuleList(projections)
        if residual not in GUIDE_RESIDUALS:
            raise ValueError(f'residual must be one of {GUIDE_RESIDUALS}, got {residual!r}')
        self.residual = residual
        self.guide_head: nn.Module | None = None
        last: nn.Conv2d | None = None
        if self.guide and residual == 'sparse':  # sparse-only head: stem (H), F0 (H/2), F1 (H/4), 3 input maps
            last = nn.Conv2d(32, 1, 3, padding=1)
            self.guide_head = nn.Sequential(nn.Conv2d(2 * channels[0] + channels[1] + 3, 32, 3, padding=1),
                                            nn.ReLU(), last)
        elif self.guide and head_channels:
            last = nn.Conv2d(int(head_channels), 1, 3, padding=1)
            self.guide_head = last
        if last is not None:
            nn.init.zeros_(last.weight)
            assert last.bias is not None
            nn.init.zeros_(last.bias)
        self.skip_scale = nn.ParameterList(nn.Parameter(torch.ones(1, c, 1, 1)) for c in skip_channels)
        self.skip_bias = nn.ParameterList(nn.Parameter(torch.zeros(1, c, 1, 1)) for c in skip_channels)

    def features(self, sparse: torch.Tensor) -> list[torch.Tensor]:
        """Sparse features projected to the skips' channels.

        Args:
            sparse: (B, 1, H, W) metres, 0 = no return, H and W multiples of 32 ((B, 2, H, W)
                [sparse, guide] with a guide).

        Returns:
            5 tensors (B, c_i, H / 2^(i+1), W / 2^(i+1)), 0 where that scale has no return.
        """
        return self._encode(sparse)[0]

    def _encode(self, sparse: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(the projected features of :meth:`features`, [stem output (B, c0, H, W), F0, F1]
        (the unprojected features at 1/2 and 1/4) for the sparse-only guide head)."""
        x, m = sparse_depth_input(sparse, self.max_depth, self.guide)
        x, m = self.stem(x, m)
        context = [x]
        out = []
        for i, (conv, proj) in enumerate(zip(self.down, self.project)):
            x, m = conv(x, m)
            if i < 2:
                context.append(x)
            out.append(proj(torch.cat((x, m), 1)))
        return out, context

    def head_input(self, context: list[torch.Tensor], sparse: torch.Tensor) -> torch.Tensor:
        """Input of the sparse-only guide head: [stem output, F0 and F1 upsampled (nearest) to
        full resolution, the three input maps] (B, 2 c0 + c1 + 3, H, W)."""
        size = tuple(context[0].shape[-2:])
        x, _ = sparse_depth_input(sparse, self.max_depth, self.guide)
        ups = [F.interpolate(c, size=size, mode='nearest') for c in context[1:]]
        return torch.cat([context[0], *ups, x.to(context[0].dtype)], 1)

    def fuse(self, skips: list[torch.Tensor], sparse: torch.Tensor) -> list[torch.Tensor]:
        """``w_i * skip_i + sparse_i + b_i`` for the five encoder features.

        Args:
            skips: the encoder's features, finest first, (B, c_i, H / 2^(i+1), W / 2^(i+1)).
            sparse: (B, 1, H, W) sparse depth at the network input's resolution, metres
                ((B, 2, H, W) [sparse, guide] with a guide).

        Raises:
            ValueError: a sparse map whose size is not the network input's.
        """
        return self.fuse_with_context(skips, sparse)[0]

    def fuse_with_context(self, skips: list[torch.Tensor], sparse: torch.Tensor
                          ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """:meth:`fuse` and the branch's full-resolution context (see :meth:`_encode`)."""
        h, w = skips[0].shape[-2] * 2, skips[0].shape[-1] * 2
        if sparse.dim() != 4 or tuple(sparse.shape[-2:]) != (h, w) or sparse.shape[0] != skips[0].shape[0]:
            raise ValueError(f'sparse depth must be (B, {2 if self.guide else 1}, {h}, {w}) (batch and size of the '
                             f'network input), got {tuple(sparse.shape)}')
        feats, context = self._encode(sparse.to(skips[0].dtype))
        fused = [s * w_.to(s.dtype) + f.to(s.dtype) + b.to(s.dtype)
                 for s, f, w_, b in zip(skips, feats, self.skip_scale, self.skip_bias)]
        return fused, context

    def on_guide(self, depth: torch.Tensor, features: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """The guide residual (module docstring).

        Args:
            depth: (B, 1, H, W) the decoder's depth, metres.
            features: (B, head_channels, H, W) the decoder's last features (residual 'image'),
                or :meth:`head_input` (residual 'sparse').
            sparse: (B, 2, H, W) [sparse, guide] metres.

        Returns:
            (B, 1, H, W) metres in (0, max_depth]: guide * exp(GUIDE_LOG_RANGE * tanh(r)) where
            the guide has a value, ``depth`` elsewhere.
        """
        if self.guide_head is None:
            raise ValueError('this sparse branch has no guide-residual head (guide with head_channels)')
        r = GUIDE_LOG_RANGE * torch.tanh(self.guide_head(features))
        guide = sparse[:, 1:2].to(depth.dtype)
        valid = torch.isfinite(guide) & (guide > 0)
        fused = (torch.where(valid, guide, torch.ones_like(guide)) * torch.exp(r.to(depth.dtype))).clamp(max=self.max_depth)
        return torch.where(valid, fused, depth)


def takes_sparse(net: nn.Module) -> bool:
    """Whether a depth network has a sparse auxiliary branch (its forward takes ``sparse``)."""
    return isinstance(getattr(net, 'sparse_branch', None), SparseBranch)


SPARSE_GUIDES = ('none', 'ipbasic')
"""``sparse_guide`` option values: no guide channel, or IP-Basic's completion as a second channel."""


def check_sparse_options(sparse_branch: bool, sparse_guide: str) -> None:
    """The ``sparse_branch`` / ``sparse_guide`` options of a host network (BTS, SID).

    Raises:
        ValueError: an unknown guide, or a guide without the branch.
    """
    if sparse_guide not in SPARSE_GUIDES or (sparse_guide != 'none' and not sparse_branch):
        raise ValueError(f'sparse_guide must be one of {SPARSE_GUIDES} (not none only with sparse_branch), '
                         f'got {sparse_guide!r}')


def fuse_sparse(branch: 'SparseBranch | None', features: list[torch.Tensor], sparse: torch.Tensor | None,
                host: str) -> list[torch.Tensor]:
    """A host network's encoder features, fused with ``sparse`` by its ``branch`` when given
    (:meth:`SparseBranch.fuse`); unchanged for ``sparse=None`` (the plain monocular network).

    Raises:
        ValueError: sparse input for a host without a branch (``host`` names it).
    """
    if sparse is None:
        return features
    if branch is None:
        raise ValueError(f'this {host} network has no sparse branch (build it with sparse_branch=True); '
                         f'call it without sparse depth')
    return branch.fuse(features, sparse)


def sparse_guide_of(net: nn.Module) -> str:
    """'ipbasic' when a network's sparse branch takes a guide channel, else 'none'."""
    branch = getattr(net, 'sparse_branch', None)
    return 'ipbasic' if isinstance(branch, SparseBranch) and branch.guide else 'none'


__all__ = ['GUIDE_LOG_RANGE', 'GUIDE_RESIDUALS', 'SPARSE_BRANCH_CHANNELS', 'SPARSE_GUIDES', 'SparseBranch', 'SparseConv',
           'check_sparse_options', 'fuse_sparse', 'sparse_depth_input',
           'sparse_guide_of', 'takes_sparse']
