"""BTS: "From Big to Small: Multi-Scale Local Planar Guidance for Monocular Depth
Estimation" (Lee, Han, Ko, Suh, arXiv 1907.10326, 2019), Sec. 3 and Fig. 2.

Implemented from the paper's formulas and the architecture facts in
``docs/SEEDS_BRIEF.md`` section A (the reference code is GPL-3.0; none of it is copied).

Pieces:

- :func:`local_planar_guidance` (LPG, paper Sec. 3.2.1, Eq. 1): a k x k block of the output
  is the depth of one local plane, seen along the rays of the block's pixels.
- :func:`plane_params_from_coefficients`: 3 unbounded coefficients -> unit normal (polar
  angle theta = sigmoid * theta_max, azimuth phi = sigmoid * 2 pi) and distance
  (sigmoid * max_depth) (paper Eq. 2, theta_max = pi/3 as the PyTorch reference; its TF
  version uses pi/6).
- :class:`BTSDecoder`: upconvolutions, DenseASPP at 1/8, LPG at 1/8, 1/4, 1/2, 1x1
  reductions, the combination at full resolution and ``sigmoid * max_depth``.
- :class:`BTSNet`: a :class:`~packnet_ros.networks.resnet.ResNetEncoder` + :class:`BTSDecoder`.

Convention: input (B, 3, H, W) RGB in [0, 1] (the encoder applies ImageNet mean/std
itself), H and W multiples of 32. **Output: depth (B, 1, H, W) in metres, in
(0, max_depth)** -- unlike PackNet, which outputs inverse depth (1/m). ``output_kind``
says which (``'depth'`` here). The KITTI-only ``* focal / 715.0873`` rescaling of the
reference code is not applied; a caller that wants it multiplies the output.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .resnet import ResNetEncoder
from .sparse_branch import SparseBranch, check_sparse_options, fuse_sparse

BN_MOMENTUM = 0.01
"""BatchNorm momentum of the decoder (the reference's TF-style 0.99 decay)."""
BN_EPS = 1.1e-5
"""BatchNorm epsilon of the decoder."""


def local_planar_guidance(plane_params: torch.Tensor, block: int) -> torch.Tensor:
    """Depth of one local plane per k x k block (LPG, Lee et al. 2019, Eq. 1).

    Each coarse pixel (y, x) holds a plane n . X = n4 with unit normal n = (n1, n2, n3) and
    distance n4 (metres). Pixel (i, j) of the k x k output block it covers gets the depth of
    the plane along the ray r = (u, v, 1) through its block-normalised coordinates

        u = ((j mod k) - (k - 1) / 2) / k,   v = ((i mod k) - (k - 1) / 2) / k,

    i.e. the ray-plane intersection X = c r, n . X = n4:

        c = n4 / (n1 u + n2 v + n3).

    The intrinsics are not used (as in the reference implementation); u, v lie in
    (-1/2, 1/2). Pure tensor maths (any device and dtype, differentiable). The result is
    finite and positive when n4 > 0 and n3 > |n1 u + n2 v| for every (u, v) of the block,
    which :func:`plane_params_from_coefficients` guarantees for k <= 4 and, for k = 8, for
    polar angles below about 58.2 deg (BTS's pi/3 bound reaches 60 deg at the sigmoid's limit).

    Args:
        plane_params: (B, 4, h, w): n1, n2, n3 (unit normal), n4 (distance, metres).
        block: k >= 1, the upsampling ratio.

    Returns:
        depth (B, 1, h * k, w * k), metres.

    Raises:
        ValueError: plane_params not (B, 4, h, w), or block < 1.
    """
    if plane_params.dim() != 4 or plane_params.shape[1] != 4:
        raise ValueError(f'plane_params must be (B, 4, h, w), got {tuple(plane_params.shape)}')
    k = int(block)
    if k < 1:
        raise ValueError(f'block must be >= 1, got {block}')
    _, _, h, w = plane_params.shape
    full = plane_params.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
    offsets = (torch.arange(k, dtype=plane_params.dtype, device=plane_params.device)
               - (k - 1) / 2) / k
    u = offsets.repeat(w).view(1, 1, 1, w * k)  # column j -> offset of (j mod k)
    v = offsets.repeat(h).view(1, 1, h * k, 1)  # row i -> offset of (i mod k)
    n1, n2, n3, n4 = full[:, 0:1], full[:, 1:2], full[:, 2:3], full[:, 3:4]
    return n4 / (n1 * u + n2 * v + n3)


def plane_params_from_coefficients(coefficients: torch.Tensor, max_depth: float,
                                   theta_max: float = math.pi / 3) -> torch.Tensor:
    """Unbounded coefficients -> local plane (unit normal, distance) (Lee et al. 2019, Eq. 2).

    theta = sigmoid(c0) * theta_max (polar angle from the optical axis),
    phi = sigmoid(c1) * 2 pi (azimuth), n4 = sigmoid(c2) * max_depth;
    n = (sin theta cos phi, sin theta sin phi, cos theta).

    Args:
        coefficients: (B, 3, h, w).
        max_depth: metres, the bound of the distance n4.
        theta_max: radians; pi/3 in the PyTorch reference (pi/6 in its TF version).

    Returns:
        plane_params (B, 4, h, w): n1, n2, n3, n4, as :func:`local_planar_guidance` expects.
    """
    if coefficients.dim() != 4 or coefficients.shape[1] != 3:
        raise ValueError(f'coefficients must be (B, 3, h, w), got {tuple(coefficients.shape)}')
    s = torch.sigmoid(coefficients)
    theta = s[:, 0:1] * theta_max
    phi = s[:, 1:2] * (2 * math.pi)
    dist = s[:, 2:3] * max_depth
    return torch.cat((torch.sin(theta) * torch.cos(phi), torch.sin(theta) * torch.sin(phi),
                      torch.cos(theta), dist), dim=1)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


def _conv_elu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Bias-free "same" convolution -> ELU. (B, in, H, W) -> (B, out, H, W)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size,
                                   padding=kernel_size // 2, bias=False), nn.ELU())


class UpConv(nn.Module):
    """Nearest 2x upsampling -> 3x3 conv (no bias) -> ELU.

    Shapes: (B, in_channels, H, W) -> (B, out_channels, 2H, 2W).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.activ = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activ(self.conv(F.interpolate(x, scale_factor=2, mode='nearest')))


class AtrousConv(nn.Module):
    """One DenseASPP branch: [BN] -> ReLU -> 1x1 conv (2 * out) -> BN -> ReLU -> dilated 3x3.

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H, W); padding = dilation.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int, bn_first: bool = True):
        super().__init__()
        mid = 2 * out_channels
        layers: list[nn.Module] = [_bn(in_channels)] if bn_first else []
        layers += [nn.ReLU(),
                   nn.Conv2d(in_channels, mid, 1, bias=False), _bn(mid), nn.ReLU(),
                   nn.Conv2d(mid, out_channels, 3, padding=dilation, dilation=dilation, bias=False)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Reduction1x1(nn.Module):
    """Chain of 1x1 convs (no bias) + ELU halving the channels, then plane params or a map.

    Channels: in -> out -> out/2 -> ... while >= 8, then 1x1 -> 3 (plane coefficients,
    turned into (n1, n2, n3, n4) by :func:`plane_params_from_coefficients`) or, with
    ``final=True``, 1x1 -> 1 -> sigmoid. E.g. 128 -> 128 -> 64 -> 32 -> 16 -> 8 -> 3.

    Shapes: (B, in_channels, H, W) -> (B, 4, H, W) plane params, or (B, 1, H, W) in (0, 1).
    """

    def __init__(self, in_channels: int, out_channels: int, max_depth: float,
                 final: bool = False, theta_max: float = math.pi / 3):
        super().__init__()
        if out_channels < 4:
            raise ValueError(f'Reduction1x1 needs out_channels >= 4, got {out_channels}')
        self.max_depth = max_depth
        self.final = final
        self.theta_max = theta_max
        layers: list[nn.Module] = []
        c_in, c_out = in_channels, out_channels
        while c_out >= 8:
            layers += [nn.Conv2d(c_in, c_out, 1, bias=False), nn.ELU()]
            c_in, c_out = c_out, c_out // 2
        layers.append(nn.Conv2d(c_in, 1 if final else 3, 1, bias=False))
        self.reduc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.reduc(x)
        if self.final:
            return torch.sigmoid(out)
        return plane_params_from_coefficients(out, self.max_depth, self.theta_max)


class BTSDecoder(nn.Module):
    """BTS decoder (Lee et al. 2019, Fig. 2) on five encoder features (strides 2 .. 32).

    With F = ``num_features`` (512 in the paper) and encoder channels (c0 .. c4):

    - 1/16: upconv5 (F) -> BN -> concat c3 -> conv5 (F).
    - 1/8: upconv4 (F/2) -> BN -> concat c2 (= ``concat4``) -> conv4 (F/2) -> BN = iconv4.
      DenseASPP, dilations 3, 6, 12, 18, 24, F/4 channels each: the first branch reads
      iconv4 (no leading BN); branch i > 1 reads concat(concat4, outputs of branches < i).
      daspp_conv: 3x3 conv on concat(iconv4, 5 branches) (F/2 + 5 F/4) -> F/4, ELU.
      reduc8x8 (F/4 -> F/4 -> ... -> 3) -> planes -> LPG k=8 -> d8 (B,1,H,W), metres.
    - 1/4: upconv3 (F/4) -> BN -> concat(c1, d8 / max_depth nearest-downsampled to 1/4)
      -> conv3 (F/4); reduc4x4 (F/4 -> F/8 -> ... -> 3) -> LPG k=4 -> d4.
    - 1/2: upconv2 (F/8) -> BN -> concat(c0, d4 / max_depth at 1/2) -> conv2 (F/8);
      reduc2x2 (F/8 -> F/16 -> ... -> 3) -> LPG k=2 -> d2.
    - 1/1: upconv1 (F/16); reduc1x1 (F/16 -> F/32 -> ... -> 1, sigmoid); concat(upconv1,
      reduc1x1, d2, d4, d8 each / max_depth) (F/16 + 4) -> conv1 (F/16) -> 3x3 conv -> 1
      -> sigmoid * max_depth.

    Every conv is bias-free; the decoder BNs use momentum 0.01, eps 1.1e-5.

    Args:
        feat_channels: (c0, c1, c2, c3, c4) of the encoder features.
        num_features: F, a multiple of 32 and >= 128 (the smallest reduction needs F/32 >= 4).
        max_depth: metres.
        theta_max: bound of the plane normals' polar angle (pi/3).

    Forward:
        features [(B,c0,H/2,W/2), (B,c1,H/4,W/4), (B,c2,H/8,W/8), (B,c3,H/16,W/16),
        (B,c4,H/32,W/32)] -> depth (B, 1, H, W) in metres, in (0, max_depth); with
        ``return_all=True`` a dict with 'depth' and the intermediate 'depth_8x8',
        'depth_4x4', 'depth_2x2' (B,1,H,W, metres) and 'reduc1x1' (B,1,H,W, in (0, 1)).
    """

    dilations = (3, 6, 12, 18, 24)

    def __init__(self, feat_channels, num_features: int = 512, max_depth: float = 80.0,
                 theta_max: float = math.pi / 3):
        super().__init__()
        if num_features % 32 or num_features < 128:
            raise ValueError(f'num_features must be a multiple of 32 and >= 128, got {num_features}')
        if max_depth <= 0:
            raise ValueError(f'max_depth must be > 0, got {max_depth}')
        c0, c1, c2, c3, c4 = (int(c) for c in feat_channels)
        nf = num_features
        self.num_features = nf
        self.max_depth = float(max_depth)
        self.feat_channels = (c0, c1, c2, c3, c4)

        self.upconv5 = UpConv(c4, nf)
        self.bn5 = _bn(nf)
        self.conv5 = _conv_elu(nf + c3, nf)

        self.upconv4 = UpConv(nf, nf // 2)
        self.bn4 = _bn(nf // 2)
        self.conv4 = _conv_elu(nf // 2 + c2, nf // 2)
        self.bn4_2 = _bn(nf // 2)

        branch = nf // 4
        concat4 = nf // 2 + c2
        self.daspp = nn.ModuleList([AtrousConv(nf // 2, branch, self.dilations[0], bn_first=False)])
        for i, dilation in enumerate(self.dilations[1:]):
            self.daspp.append(AtrousConv(concat4 + (i + 1) * branch, branch, dilation))
        self.daspp_conv = _conv_elu(nf // 2 + len(self.dilations) * branch, branch)
        self.reduc8x8 = Reduction1x1(branch, branch, max_depth, theta_max=theta_max)

        self.upconv3 = UpConv(branch, nf // 4)
        self.bn3 = _bn(nf // 4)
        self.conv3 = _conv_elu(nf // 4 + c1 + 1, nf // 4)
        self.reduc4x4 = Reduction1x1(nf // 4, nf // 8, max_depth, theta_max=theta_max)

        self.upconv2 = UpConv(nf // 4, nf // 8)
        self.bn2 = _bn(nf // 8)
        self.conv2 = _conv_elu(nf // 8 + c0 + 1, nf // 8)
        self.reduc2x2 = Reduction1x1(nf // 8, nf // 16, max_depth, theta_max=theta_max)

        self.upconv1 = UpConv(nf // 8, nf // 16)
        self.reduc1x1 = Reduction1x1(nf // 16, nf // 32, max_depth, final=True)
        self.conv1 = _conv_elu(nf // 16 + 4, nf // 16)
        self.get_depth = nn.Conv2d(nf // 16, 1, 3, padding=1, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform convolutions (no pretrained decoder exists)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, features: list[torch.Tensor], return_all: bool = False, with_features: bool = False):
        """Depth (or the dict of ``return_all``); with ``with_features`` a pair (that, the last
        feature map iconv1 (B, F/16, H, W)), for a head on top (the sparse branch's guide residual)."""
        if len(features) != 5:
            raise ValueError(f'BTSDecoder expects 5 features (strides 2 .. 32), got {len(features)}')
        skip0, skip1, skip2, skip3, dense = features
        h, w = skip0.shape[2] * 2, skip0.shape[3] * 2
        md = self.max_depth

        iconv5 = self.conv5(torch.cat((self.bn5(self.upconv5(F.relu(dense))), skip3), 1))

        concat4 = torch.cat((self.bn4(self.upconv4(iconv5)), skip2), 1)
        iconv4 = self.bn4_2(self.conv4(concat4))
        branches = [self.daspp[0](iconv4)]
        dense_in = concat4
        for block in self.daspp[1:]:
            dense_in = torch.cat((dense_in, branches[-1]), 1)
            branches.append(block(dense_in))
        daspp_feat = self.daspp_conv(torch.cat([iconv4, *branches], 1))
        depth_8x8 = local_planar_guidance(self.reduc8x8(daspp_feat), 8)
        d8 = depth_8x8 / md

        upconv3 = self.bn3(self.upconv3(daspp_feat))
        d8_ds = F.interpolate(d8, size=(h // 4, w // 4), mode='nearest')
        iconv3 = self.conv3(torch.cat((upconv3, skip1, d8_ds), 1))
        depth_4x4 = local_planar_guidance(self.reduc4x4(iconv3), 4)
        d4 = depth_4x4 / md

        upconv2 = self.bn2(self.upconv2(iconv3))
        d4_ds = F.interpolate(d4, size=(h // 2, w // 2), mode='nearest')
        iconv2 = self.conv2(torch.cat((upconv2, skip0, d4_ds), 1))
        depth_2x2 = local_planar_guidance(self.reduc2x2(iconv2), 2)
        d2 = depth_2x2 / md

        upconv1 = self.upconv1(iconv2)
        reduc1x1 = self.reduc1x1(upconv1)
        iconv1 = self.conv1(torch.cat((upconv1, reduc1x1, d2, d4, d8), 1))
        depth = md * torch.sigmoid(self.get_depth(iconv1))
        out = ({'depth': depth, 'depth_8x8': depth_8x8, 'depth_4x4': depth_4x4, 'depth_2x2': depth_2x2,
                'reduc1x1': reduc1x1} if return_all else depth)
        return (out, iconv1) if with_features else out


def bts_num_features(width: float = 1.0, base: int = 512) -> int:
    """BTS decoder width F for a channel multiplier: ``base * width`` rounded to a multiple
    of 32, at least 128 (the smallest F the reduction chains allow)."""
    if width <= 0:
        raise ValueError(f'width must be > 0, got {width}')
    return max(128, int(round(base * width / 32)) * 32)


class BTSNet(nn.Module):
    """BTS depth model: ResNet encoder + :class:`BTSDecoder`.

    Args:
        encoder: "resnet18", "resnet34" or "resnet50" (the paper's KITTI results use
            ResNet-50 at 49.5 M parameters; this one has 47.6 M, see test_bts.py).
        max_depth: metres (80 on KITTI, 10 on NYU).
        num_features: decoder width F (512 in the paper).
        theta_max: plane normals' polar-angle bound (pi/3, the PyTorch reference).
        normalize_input: let the encoder apply ImageNet mean/std to the [0, 1] input.
        sparse_branch: add a sparse auxiliary branch
            (:class:`~packnet_ros.networks.sparse_branch.SparseBranch`, PackNet-SAN fusion
            into the five encoder features) for depth completion from sparse LiDAR depth.
        sparse_guide: 'none', or 'ipbasic': the sparse input has a second channel, IP-Basic's
            completion of the first, and where it has a value the output is that guide
            corrected by a bounded learned factor (the guide residual of
            :mod:`~packnet_ros.networks.sparse_branch`).
        guide_residual: 'image' (the guide residual reads the decoder's last features) or
            'sparse' (only the sparse branch's own features: a refinement of the guide that
            never sees the image).

    Attributes:
        output_kind: ``'depth'`` (metres), where PackNet networks give inverse depth.
        sparse_branch: the branch, or None.

    Forward:
        rgb (B, 3, H, W) in [0, 1], H, W multiples of 32, and optionally ``sparse`` (B, 1, H, W)
        depth in metres at the same resolution (0 = no return; networks with a sparse branch
        only) -> depth (B, 1, H, W) metres in (0, max_depth), in train and eval mode alike
        (BTS supervises only the final depth). ``sparse=None`` is the plain monocular network.
        ``forward_all`` returns the decoder's dict (see :class:`BTSDecoder`).

    Raises:
        ValueError: unknown encoder, or a bad input shape.
    """

    output_kind = 'depth'

    def __init__(self, encoder: str = 'resnet50', max_depth: float = 80.0, num_features: int = 512,
                 theta_max: float = math.pi / 3, normalize_input: bool = True, sparse_branch: bool = False,
                 sparse_guide: str = 'none', guide_residual: str = 'image'):
        super().__init__()
        self.encoder = ResNetEncoder(encoder, normalize_input=normalize_input)
        self.decoder = BTSDecoder(self.encoder.channels, num_features, max_depth, theta_max)
        self.max_depth = float(max_depth)
        check_sparse_options(sparse_branch, sparse_guide)
        if guide_residual != 'image' and sparse_guide == 'none':
            raise ValueError(f'guide_residual {guide_residual!r} needs sparse_guide ipbasic')
        self.sparse_branch = (SparseBranch(self.encoder.channels, max_depth, guide=sparse_guide == 'ipbasic',
                                           head_channels=self.decoder.num_features // 16, residual=guide_residual)
                              if sparse_branch else None)

    def _run(self, rgb: torch.Tensor, sparse: torch.Tensor | None, return_all: bool):
        """Encoder, sparse fusion, decoder and (with a guide) the guide residual on the final
        depth: the depth, or the decoder's dict of ``return_all`` with that depth."""
        branch = self.sparse_branch
        guided = sparse is not None and branch is not None and branch.guide_head is not None
        if not guided:
            return self.decoder(fuse_sparse(branch, self.encoder(rgb), sparse, 'BTS'), return_all=return_all)
        assert branch is not None and sparse is not None
        if branch.residual == 'sparse':  # the head reads the branch's own features only
            feats, context = branch.fuse_with_context(self.encoder(rgb), sparse)
            out, last = self.decoder(feats, return_all=return_all), branch.head_input(context, sparse)
        else:  # the head reads the decoder's last features
            out, last = self.decoder(branch.fuse(self.encoder(rgb), sparse), return_all=return_all, with_features=True)
        if return_all:
            return {**out, 'depth': branch.on_guide(out['depth'], last, sparse)}
        return branch.on_guide(out, last, sparse)

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(rgb, sparse, return_all=False)

    def forward_all(self, rgb: torch.Tensor, sparse: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Final depth plus the LPG outputs at 1/8, 1/4, 1/2 (all (B,1,H,W), metres)."""
        return self._run(rgb, sparse, return_all=True)
