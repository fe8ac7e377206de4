"""The sparse auxiliary branch (learned depth completion, PackNet-SAN fusion with
sparsity-invariant convolutions): exact monocular behaviour without sparse input, the
invariance of the masked convolutions to the hole pattern, the fusion formula, the
checkpoint options, and the pipeline's ``learned`` completion stage. Small inputs, one
CPU thread, fixed seeds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from packnet_ros.checkpoint import ModelSpec
from packnet_ros.completion import sparse_network_input
from packnet_ros.completion.stage import (
    DEPTH_MODE_COMPLETION,
    DEPTH_MODE_MONOCULAR,
    LEARNED,
    NODE_METHODS,
    CompletionSettings,
    LearnedCompletionStage,
    SparseInput,
    insert_completion,
)
from packnet_ros.inference import DepthEstimator
from packnet_ros.networks import build_depth_model, sparse_guide_of, takes_sparse
from packnet_ros.networks.sparse_branch import SparseBranch, SparseConv, sparse_depth_input
from packnet_ros.pipeline import DepthPipeline, FrameInput, PipelineSettings

H, W = 64, 96


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')  # conftest: one thread, restored after


def _pair(head: str, guide: str = 'none', residual: str = 'image'):
    """(plain model, the same model with a sparse branch, both eval mode, same weights)."""
    opts = {'max_depth': 80.0} if head.startswith('BTS') else {}
    torch.manual_seed(0)
    base = build_depth_model(head, width=0.25, **opts).eval()
    torch.manual_seed(1)
    if residual != 'image':
        opts['guide_residual'] = residual
    fused = build_depth_model(head, width=0.25, sparse_branch=True, sparse_guide=guide, **opts).eval()
    missing, unexpected = fused.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith('sparse_branch.') for k in missing)
    return base, fused


def _sparse(seed: int = 0, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(1, 1, H, W, generator=g) * 60 + 2
    d = torch.where(torch.rand(1, 1, H, W, generator=g) < 0.1, d, torch.zeros_like(d))
    if channels == 2:
        d = torch.from_numpy(sparse_network_input(d[0, 0].numpy(), 'ipbasic'))[None]
    return d


@pytest.mark.parametrize('head, guide, residual', [('BTS-ResNet18', 'none', 'image'),
                                                   ('BTS-ResNet18', 'ipbasic', 'image'),
                                                   ('BTS-ResNet18', 'ipbasic', 'sparse'),
                                                   ('SID-ResNet18', 'none', 'image')])
def test_without_sparse_input_the_network_is_exactly_the_monocular_one(head, guide, residual):
    base, fused = _pair(head, guide, residual)
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = base(x)
        assert torch.equal(fused(x), ref)  # bit for bit
        assert torch.equal(fused(x, None), ref)
        with_sparse = fused(x, torch.cat([_sparse(3, 2 if guide == 'ipbasic' else 1)] * 2))
    assert with_sparse.shape == ref.shape and not torch.equal(with_sparse, ref)  # the branch is used
    if head.startswith('SID'):
        d0, c0 = base.forward_with_confidence(x)
        d1, c1 = fused.forward_with_confidence(x)
        assert torch.equal(d0, d1) and torch.equal(c0, c1)


def test_the_fusion_is_w_skip_plus_sparse_plus_b():
    torch.manual_seed(0)
    skips = [torch.randn(1, c, H // 2 ** (i + 1), W // 2 ** (i + 1)) for i, c in enumerate((8, 8, 16, 16, 32))]
    sparse = _sparse(4)
    zero = SparseBranch((8, 8, 16, 16, 32), max_depth=80.0, zero_init=True).eval()
    branch = SparseBranch((8, 8, 16, 16, 32), max_depth=80.0).eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(zero.fuse(skips, sparse), skips))  # zero projections: nothing
        feats = branch.features(sparse)  # default init: a sparse term of about the skips' scale
        assert all(0.1 < float(f.std()) < 3.0 for f in feats)
        for i in range(5):
            branch.skip_scale[i].fill_(0.5 + i)
            branch.skip_bias[i].fill_(-0.25 * i)
        feats = branch.features(sparse)
        fused = branch.fuse(skips, sparse)
    for i, (s, f, out) in enumerate(zip(skips, feats, fused)):
        assert f.shape == s.shape
        torch.testing.assert_close(out, (0.5 + i) * s + f - 0.25 * i)


def _holes(seed: int, fraction: float) -> torch.Tensor:
    return (torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(seed)) < fraction).float()


def test_masked_convolutions_ignore_empty_pixels():
    """A constant plane seen through two different hole patterns gives the same features
    wherever both windows hold a valid pixel, at every layer of the branch; values at empty
    pixels (NaN, negative, anything) do not matter."""
    torch.manual_seed(0)
    branch = SparseBranch((8, 8, 16, 16, 32), max_depth=80.0).eval()
    depth = 23.5
    outs = []
    for seed, fraction in ((1, 0.05), (2, 0.3)):
        m = _holes(seed, fraction)
        x, mask = sparse_depth_input(torch.where(m > 0, torch.full_like(m, depth), torch.zeros_like(m)), 80.0)
        layers = []
        with torch.no_grad():
            y, mm = branch.stem(x, mask)
            layers.append((y, mm))
            for conv in branch.down:
                y, mm = conv(y, mm)
                layers.append((y, mm))
        outs.append(layers)
    assert not torch.equal(outs[0][0][1], outs[1][0][1])  # the patterns differ (coarser masks fill up)
    for (ya, ma), (yb, mb) in zip(*outs):
        both = (ma > 0) & (mb > 0)
        assert both.any()
        torch.testing.assert_close(ya * both, yb * both, rtol=1e-5, atol=1e-5)
        assert torch.all(ya[(ma == 0).expand_as(ya)] == 0)  # no feature where the window saw no return
    # a single layer: the constant itself (plus the layer's bias) wherever the window sees a return
    conv = SparseConv(1, 4, 5, 1)
    with torch.no_grad():
        conv.pointwise.weight.copy_(torch.eye(4, 2).reshape(4, 2, 1, 1))  # outputs 0, 1 = the two filters
        conv.pointwise.bias.zero_()
        m = _holes(5, 0.1)
        y, mm = conv(m * 0.3, m)
    assert torch.allclose(y[:, :2][(mm > 0).expand(-1, 2, -1, -1)], torch.tensor(0.3), atol=1e-6)
    garbage = torch.where(_holes(5, 0.1) > 0, torch.full((1, 1, H, W), 12.0), torch.full((1, 1, H, W), -5.0))
    garbage[0, 0, 0, :4] = float('nan')
    clean = torch.where(garbage > 0, garbage, torch.zeros_like(garbage))
    with torch.no_grad():
        a, b = branch.features(garbage), branch.features(clean)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_bad_sparse_inputs_and_options_are_refused():
    base, fused = _pair('BTS-ResNet18')
    x = torch.rand(1, 3, H, W)
    with pytest.raises(ValueError, match='no sparse branch'):
        base(x, _sparse())
    with pytest.raises(ValueError, match=r'\(B, 1, 64, 96\)'):
        fused(x, torch.zeros(1, 1, 32, 48))
    with pytest.raises(ValueError, match=r'sparse depth must be \(B, 1, H, W\)'):
        fused(x, torch.zeros(1, 2, H, W))
    with pytest.raises(ValueError, match='no sparse branch; use a BTS or SID head'):
        build_depth_model('PackNetSlim01', width=0.25, sparse_branch=True)
    with pytest.raises(ValueError, match='sparse_guide'):
        build_depth_model('BTS-ResNet18', width=0.25, sparse_guide='ipbasic')  # a guide needs the branch
    with pytest.raises(ValueError, match='sparse_guide'):
        build_depth_model('BTS-ResNet18', width=0.25, sparse_branch=True, sparse_guide='nearest')
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        sparse_network_input(np.zeros((1, 4, 4)))


def test_a_checkpoint_config_alone_builds_the_branch():
    spec = ModelSpec(depth_net='BTS-ResNet18', width=0.25, image_shape=(H, W), pose_net=None,
                     options={'max_depth': 80.0, 'sparse_branch': True, 'sparse_guide': 'ipbasic'})
    again = ModelSpec.from_config(spec.to_config())
    assert again == spec
    net = again.build_depth_net()
    assert takes_sparse(net) and sparse_guide_of(net) == 'ipbasic'
    plain = ModelSpec(depth_net='BTS-ResNet18', width=0.25, options={'max_depth': 80.0}).build_depth_net()
    assert not takes_sparse(plain) and sparse_guide_of(plain) == 'none'


def _pipeline(guide: str = 'none') -> DepthPipeline:
    _, fused = _pair('BTS-ResNet18', guide)
    spec = ModelSpec(depth_net='BTS-ResNet18', width=0.25, image_shape=(H, W), pose_net=None,
                     options={'max_depth': 80.0, 'sparse_branch': True, 'sparse_guide': guide})
    est = DepthEstimator(fused, spec, device='cpu', precision='fp32', backend='eager')
    return DepthPipeline(est, None, PipelineSettings(output_resolution='network', cloud=False))


def _camera_points(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.uniform(4.0, 40.0, n)
    return np.stack([rng.uniform(-1.5, 1.5, n) * z, rng.uniform(-0.3, 0.5, n) * z, z], 1)


@pytest.mark.parametrize('guide', ['none', 'ipbasic'])
def test_learned_stage_feeds_the_network_and_falls_back_to_monocular(guide):
    pipe = _pipeline(guide)
    stage = insert_completion(pipe, LEARNED, CompletionSettings(max_staleness_s=0.05))
    assert isinstance(stage, LearnedCompletionStage) and LEARNED in NODE_METHODS
    assert [s.name for s in pipe.stages][:2] == ['completion', 'infer']
    rgb = (np.random.default_rng(1).random((2 * H, 2 * W, 3)) * 255).astype(np.uint8)
    K = np.array([[100.0, 0, W], [0, 100.0, H], [0, 0, 1]])
    t = 1_000_000_000
    mono = pipe.process(FrameInput(rgb, K, t), cloud=False)
    assert mono.completion.mode == DEPTH_MODE_MONOCULAR and 'no sparse input' in mono.completion.reason
    with torch.no_grad():  # the monocular path is the plain network
        ref = pipe.estimator.infer(pipe.estimator.preprocess(rgb)[0])[0, 0].numpy()
    np.testing.assert_array_equal(mono.depth, np.where(ref > 80.0, np.inf, ref))
    out = pipe.process(FrameInput(rgb, K, t, sparse=SparseInput(t, points=_camera_points())), cloud=False)
    st = out.completion
    assert st.mode == DEPTH_MODE_COMPLETION and st.completed_ratio == 1.0 and 0 < st.sparse_pixels <= st.sparse_points
    assert out.depth.shape == (H, W) and np.isfinite(out.depth).all() and not np.array_equal(out.depth, mono.depth)
    assert 'completion_ms' in out.timings_ms
    stale = pipe.process(FrameInput(rgb, K, t, sparse=SparseInput(t - 10**8, points=_camera_points())), cloud=False)
    assert stale.completion.kind == 'stale' and np.array_equal(stale.depth, mono.depth)
    bad = pipe.process(FrameInput(rgb, K, t, sparse=SparseInput(t, points=np.full((5, 3), np.nan))), cloud=False)
    assert bad.completion.kind == 'empty' and np.array_equal(bad.depth, mono.depth)
    # a sparse depth image of another size (the camera's) is resampled to the network input
    img = np.zeros((2 * H, 2 * W), np.float32)
    img[::6, ::3] = 12.0
    d = pipe.process(FrameInput(rgb, K, t, sparse=SparseInput(t, depth=img)), cloud=False)
    assert d.completion.mode == DEPTH_MODE_COMPLETION and d.completion.sparse_points == int((img > 0).sum())


def test_learned_method_needs_a_sparse_branch():
    base, _ = _pair('BTS-ResNet18')
    est = DepthEstimator(base, ModelSpec(depth_net='BTS-ResNet18', width=0.25, image_shape=(H, W), pose_net=None,
                                         options={'max_depth': 80.0}), device='cpu', precision='fp32',
                         backend='eager')
    pipe = DepthPipeline(est, None, PipelineSettings(output_resolution='network', cloud=False))
    with pytest.raises(ValueError, match='completion method "learned" needs a checkpoint'):
        insert_completion(pipe, 'learned')
    with pytest.raises(ValueError, match='no sparse branch'):
        est.run(np.zeros((H, W, 3), np.uint8), sparse=np.zeros((1, H, W), np.float32))
    fused_est = _pipeline().estimator
    with pytest.raises(ValueError, match=r'sparse input must be \(1, 64, 96\)'):
        fused_est.run(np.zeros((H, W, 3), np.uint8), sparse=np.zeros((2, H, W), np.float32))


def test_guide_residual_starts_at_the_guide_and_stays_within_its_bound():
    """BTS with the IP-Basic guide: where the guide has a value the output is guide * exp(r),
    r = GUIDE_LOG_RANGE * tanh(head); a fresh head gives the guide itself; elsewhere the
    decoder's depth."""
    from packnet_ros.networks.sparse_branch import GUIDE_LOG_RANGE
    _, fused = _pair('BTS-ResNet18', 'ipbasic')
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(2))
    sparse = _sparse(3, 2)
    sparse[:, 1, :8] = 0.0  # rows without a guide value
    guide = sparse[:, 1:2]
    has = guide > 0
    with torch.no_grad():
        plain = fused.decoder(fused.sparse_branch.fuse(fused.encoder(x), sparse))
        out = fused(x, sparse)
        torch.testing.assert_close(out[has], guide[has])
        assert torch.equal(out[~has], plain[~has])
        fused.sparse_branch.guide_head.bias.fill_(50.0)  # tanh -> 1: the largest factor
        high = fused(x, sparse)
    expected = torch.clamp(guide * np.exp(GUIDE_LOG_RANGE), max=80.0)
    torch.testing.assert_close(high[has], expected[has])
    assert torch.all(high[has] <= 80.0) and torch.equal(fused.forward_all(x, sparse)['depth'], high)



def test_sparse_only_guide_residual_never_sees_the_image():
    """guide_residual 'sparse': on pixels with a guide value the output depends on the sparse
    input only (two different images give the same depth there); a fresh head outputs the guide."""
    _, fused = _pair('BTS-ResNet18', 'ipbasic', 'sparse')
    sparse = _sparse(3, 2)
    sparse[:, 1, :8] = 0.0
    has = sparse[:, 1:2] > 0
    a = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(5))
    b = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(fused(a, sparse)[has], sparse[:, 1:2][has])
        for m in fused.sparse_branch.guide_head.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0.0, 0.05)
        out_a, out_b = fused(a, sparse), fused(b, sparse)
    assert torch.equal(out_a[has], out_b[has]) and not torch.equal(out_a[~has], out_b[~has])
    assert not torch.allclose(out_a[has], sparse[:, 1:2][has])  # the trained-like head corrects the guide
    with pytest.raises(ValueError, match='needs sparse_guide ipbasic'):
        build_depth_model('BTS-ResNet18', width=0.25, sparse_branch=True, guide_residual='sparse')
