"""SID discretisation, head and decoding (packnet_ros.networks.sid) on hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from packnet_ros.networks.sid import (
    SidBins,
    SIDHead,
    as_sid_bins,
    sid_bin_probabilities,
    sid_confidence,
    sid_decode,
    sid_edges,
    sid_labels,
    sid_ordinal_targets,
)

BIG = 1e4
"""|logit| large enough that sigmoid/softmax round to exactly 0 and 1 in float32."""


def test_edges_follow_the_dorn_formula_without_shift():
    alpha, beta, K = 2.0, 50.0, 8
    bins = sid_edges(alpha, beta, K, shift=0.0)
    expected = torch.tensor([math.exp(math.log(alpha) + i * math.log(beta / alpha) / K)
                             for i in range(K + 1)], dtype=torch.float64)
    assert bins.edges.shape == (K + 1,) and bins.centres.shape == (K,)
    assert bins.edges.dtype == torch.float32
    torch.testing.assert_close(bins.edges.double(), expected, rtol=1e-6, atol=0.0)
    assert bins.edges[0].item() == alpha and bins.edges[-1].item() == beta
    # uniform in log depth: every step is log(beta / alpha) / K = log(25) / 8 = 0.402359...
    steps = torch.diff(torch.log(bins.edges.double()))
    torch.testing.assert_close(steps, torch.full((K,), math.log(25.0) / 8, dtype=torch.float64), rtol=1e-6, atol=0.0)
    # log-space centres: geometric means of neighbouring edges
    torch.testing.assert_close(bins.centres.double(), torch.sqrt(expected[:-1] * expected[1:]),
                               rtol=1e-6, atol=0.0)


def test_default_shift_is_dorns_alpha_star_equals_one():
    # alpha = 0.5 -> xi = 0.5, t_i + xi = exp(i log(50.5) / 4), i.e. uniform in log(d + xi)
    bins = sid_edges(0.5, 50.0, 4)
    shifted = torch.tensor([math.exp(i * math.log(50.5) / 4) for i in range(5)], dtype=torch.float64)
    torch.testing.assert_close(bins.edges.double(), shifted - 0.5, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(bins.centres.double(), torch.sqrt(shifted[:-1] * shifted[1:]) - 0.5,
                               rtol=1e-6, atol=1e-6)
    # DORN's linear centres (t_l + t_{l+1}) / 2 - xi
    linear = sid_edges(0.5, 50.0, 4, centre='linear')
    torch.testing.assert_close(linear.centres.double(), (shifted[:-1] + shifted[1:]) / 2 - 0.5,
                               rtol=1e-6, atol=1e-6)
    # alpha = 1 needs no shift: same as shift=0
    torch.testing.assert_close(sid_edges(1.0, 80.0, 71).edges, sid_edges(1.0, 80.0, 71, shift=0.0).edges)


@pytest.mark.parametrize('kwargs', [dict(alpha=2.0, beta=1.0, K=4), dict(alpha=1.0, beta=2.0, K=0),
                                    dict(alpha=0.0, beta=2.0, K=4, shift=0.0),
                                    dict(alpha=1.0, beta=2.0, K=4, centre='mid')])
def test_edges_reject_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        sid_edges(**kwargs)


def test_bare_edges_get_log_centres():
    bins = as_sid_bins(torch.tensor([1.0, 4.0, 16.0]))
    assert bins.centres.tolist() == [2.0, 8.0]


def test_labels_and_ordinal_targets():
    bins = sid_edges(1.0, 4.0, 2)  # edges 1, 2, 4
    torch.testing.assert_close(bins.edges, torch.tensor([1.0, 2.0, 4.0]))
    depth = torch.tensor([0.5, 1.0, 1.99, 2.0, 3.0, 4.0, 100.0]).view(1, 1, 1, 7)
    assert sid_labels(depth, bins).view(-1).tolist() == [0, 0, 0, 1, 1, 1, 1]
    y = sid_ordinal_targets(depth, bins)
    assert y.shape == (1, 2, 1, 7)
    assert y[0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1, 1]  # depth >= t_1 = 2
    assert y[0, 1, 0].tolist() == [0, 0, 0, 0, 0, 1, 1]  # depth >= t_2 = beta = 4


def _one_hot_classification(K: int, k: int) -> torch.Tensor:
    logits = torch.full((1, K, 1, 1), -BIG)
    logits[0, k] = 0.0
    return logits


def _one_hot_ordinal(K: int, k: int) -> torch.Tensor:
    """Pairs (0, +BIG) for classifiers j < k (P_j = 1), (0, -BIG) for j >= k (P_j = 0)."""
    logits = torch.zeros(1, 2 * K, 1, 1)
    for j in range(K):
        logits[0, 2 * j + 1] = BIG if j < k else -BIG
    return logits


@pytest.mark.parametrize('k', [0, 2, 4])
def test_one_hot_decodes_to_its_centre(k):
    bins = sid_edges(1.0, 80.0, 5)
    c = bins.centres[k]
    logits = _one_hot_classification(5, k)
    for method in ('soft', 'argmax'):
        depth, conf = sid_decode(logits, bins, 'classification', method)
        assert depth.shape == (1, 1, 1, 1) and conf.shape == (1, 1, 1, 1)
        assert depth.item() == c.item()  # exact
        assert conf.item() == 1.0
    logits = _one_hot_ordinal(5, k)
    soft, conf = sid_decode(logits, bins, 'ordinal', 'soft')
    torch.testing.assert_close(soft.view(()), c, rtol=1e-6, atol=0.0)  # c_0 + sum of steps
    hard, _ = sid_decode(logits, bins, 'ordinal', 'argmax')
    assert hard.item() == c.item()
    assert conf.item() == 1.0


def test_ordinal_argmax_clamps_the_beyond_beta_classifier():
    bins = sid_edges(1.0, 8.0, 3)
    logits = torch.zeros(1, 6, 1, 1)
    logits[0, 1::2] = BIG  # every classifier fires, including "depth >= beta"
    hard, _ = sid_decode(logits, bins, 'ordinal', 'argmax')
    soft, _ = sid_decode(logits, bins, 'ordinal', 'soft')
    assert hard.item() == bins.centres[-1].item()
    torch.testing.assert_close(soft.view(()), bins.centres[-1], rtol=1e-6, atol=0.0)


def test_soft_decoding_hand_computed():
    # K = 2, edges 1, 2, 4, log centres sqrt(2) and sqrt(8).
    bins = sid_edges(1.0, 4.0, 2)
    # classification probabilities (1/4, 3/4) -> sqrt(2)/4 + 3 sqrt(8)/4 = 7 sqrt(2) / 4
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    depth, _ = sid_decode(logits, bins, 'classification', 'soft')
    assert depth.item() == pytest.approx(7 * math.sqrt(2) / 4, rel=1e-6)
    # ordinal P_0 = 3/4: sqrt(2) + 3/4 (sqrt(8) - sqrt(2)) = 7 sqrt(2) / 4 as well
    logits = torch.tensor([0.0, math.log(3.0), 0.0, -BIG]).view(1, 4, 1, 1)
    depth, _ = sid_decode(logits, bins, 'ordinal', 'soft')
    assert depth.item() == pytest.approx(7 * math.sqrt(2) / 4, rel=1e-6)


def test_confidence_is_one_for_one_hot_and_zero_for_uniform():
    K = 6
    uniform = torch.zeros(1, K, 1, 1)
    _, conf = sid_decode(uniform, sid_edges(1.0, 80.0, K), 'classification')
    assert conf.item() == pytest.approx(0.0, abs=1e-6)
    # ordinal logits of the uniform distribution: P_k = (K - 1 - k) / K
    logits = torch.zeros(1, 2 * K, 1, 1)
    for k in range(K):
        P = (K - 1 - k) / K
        logits[0, 2 * k + 1] = math.log(P / (1 - P)) if P > 0 else -BIG
    p = sid_bin_probabilities(logits, 'ordinal')
    torch.testing.assert_close(p.view(-1), torch.full((K,), 1.0 / K), rtol=0, atol=1e-6)
    _, conf = sid_decode(logits, sid_edges(1.0, 80.0, K), 'ordinal')
    assert conf.item() == pytest.approx(0.0, abs=1e-5)
    # anything else lies between: two equal bins -> 1 - log 2 / log 6
    two = torch.tensor([0.5, 0.5, 0, 0, 0, 0]).view(1, K, 1, 1)
    assert sid_confidence(two).item() == pytest.approx(1 - math.log(2) / math.log(6), rel=1e-6)
    random = torch.randn(2, K, 3, 3, generator=torch.Generator().manual_seed(0))
    c = sid_confidence(sid_bin_probabilities(random, 'classification'))
    assert c.shape == (2, 1, 3, 3) and bool(((c > 0) & (c < 1)).all())


def test_ordinal_bin_probabilities_of_non_monotone_classifiers_are_a_distribution():
    logits = torch.randn(2, 10, 3, 4, generator=torch.Generator().manual_seed(1))
    p = sid_bin_probabilities(logits, 'ordinal')
    assert p.shape == (2, 5, 3, 4) and bool((p >= 0).all())
    torch.testing.assert_close(p.sum(1), torch.ones(2, 3, 4))


@pytest.mark.parametrize('mode,channels', [('ordinal', 142), ('classification', 71)])
def test_head_shapes_buffers_and_decode(mode, channels):
    head = SIDHead(8, mode=mode, hidden_channels=16)
    feats = torch.randn(2, 8, 4, 6)
    logits = head(feats)
    assert logits.shape == (2, channels, 4, 6)
    assert head.num_bins == 71
    assert {'edges', 'centres'} <= set(head.state_dict())
    assert isinstance(head.bins, SidBins) and head.bins.edges[-1].item() == 80.0
    depth, conf = head.decode(logits)
    assert depth.shape == conf.shape == (2, 1, 4, 6)
    assert bool(((depth >= head.centres[0]) & (depth <= head.centres[-1])).all())
    assert bool(((conf >= 0) & (conf <= 1)).all())


def test_decode_rejects_mismatched_bins_and_modes():
    with pytest.raises(ValueError):
        sid_decode(torch.zeros(1, 6, 1, 1), sid_edges(1.0, 8.0, 4), 'ordinal')
    with pytest.raises(ValueError):
        sid_decode(torch.zeros(1, 5, 1, 1), sid_edges(1.0, 8.0, 5), 'ordinal')
    with pytest.raises(ValueError):
        sid_decode(torch.zeros(1, 4, 1, 1), sid_edges(1.0, 8.0, 4), 'classification', 'median')
    with pytest.raises(ValueError):
        SIDHead(4, mode='regression')
