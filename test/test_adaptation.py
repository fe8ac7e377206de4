"""Online adaptation: atomic weight swaps, rollback on NaN / spiking losses, save, reset (issue 6)."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from conftest import KITTI_DRIVE
from packnet_ros.adaptation import AdaptationConfig, OnlineAdapter
from packnet_ros.checkpoint import Checkpoint, ModelSpec, load_checkpoint
from packnet_ros.inference import DepthEstimator
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.networks import PoseNet
from packnet_ros.networks.fast import prepare_for_inference
from packnet_ros.odometry import SpeedTrack
from packnet_ros.online import OnlineProcessor, ScaleSettings

SHAPE = (64, 192)


@pytest.fixture(scope='module')
def frames():
    drive = KittiDrive(KITTI_DRIVE)
    return [(drive.timestamp_ns(i), drive.image(i), drive.K, drive.speed(i)) for i in drive.frames]


def _estimator():
    spec = ModelSpec('PackNetSlim01', width=0.25, image_shape=SHAPE)
    est = DepthEstimator.untrained(spec, seed=1, device='cpu', precision='fp32')
    torch.manual_seed(2)
    return est, Checkpoint(est.source_net, PoseNet().eval(), spec, spec.to_config())


def _feed(proc, est, frames, speeds):
    for t, rgb, K, _ in frames:
        proc.begin_frame()
        pred = est.run(rgb, K)
        proc.scale_for_frame(t, pred.x, pred.K_net, speeds)


def _speeds(frames):
    tr = SpeedTrack()
    for t, _, _, v in frames:
        tr.add(t, v)
    return tr


def test_steps_hand_over_new_weights_swapped_between_frames(frames):
    est, ckpt = _estimator()
    cfg = AdaptationConfig(lr=1e-3, pose_lr=1e-3, max_steps_per_frame=0)
    proc = OnlineProcessor(est, ckpt, ScaleSettings('model'), None)
    received = []
    adapter = OnlineAdapter(est.source_net, ckpt.pose_net, est.spec, cfg,
                            lambda net: prepare_for_inference(net, est.device, est.dtype, est.backend),
                            lambda m, v: (received.append(v), proc._receive(m, v)), est.device)
    proc.adapter = adapter  # synchronous: the test calls step() itself (no thread)
    _feed(proc, est, frames, _speeds(frames))
    assert adapter.stats.triplets == len(frames) - 2
    before = est.net
    first = est.predict(frames[3][1], frames[3][2]).depth
    losses = [adapter.step() for _ in range(3)]
    assert all(np.isfinite(losses)) and adapter.stats.steps == 3 and received == [1, 2, 3]
    assert est.net is before  # nothing changes until the next frame boundary
    proc.begin_frame()
    assert est.net is not before and proc.weights_version == 3
    after = est.predict(frames[3][1], frames[3][2]).depth
    assert not np.allclose(first, after)  # the adapted weights are in use


def test_nan_or_spiking_loss_rolls_back_to_the_last_good_weights(frames):
    est, ckpt = _estimator()
    adapter = OnlineAdapter(est.source_net, ckpt.pose_net, est.spec, AdaptationConfig(lr=1e-3, max_steps_per_frame=0),
                            lambda net: net, lambda m, v: None)
    for t, rgb, K, v in frames:
        x, _ = est.preprocess(rgb)
        adapter.add_frame(t, x, K * np.array([[SHAPE[1] / 1242], [SHAPE[0] / 375], [1]]), v)
    adapter.step()
    good = {k: v.clone() for k, v in adapter.depth.state_dict().items()}
    # weights gone non-finite (a diverged step): the loss is NaN and the last good weights return
    with torch.no_grad():
        next(adapter.depth.parameters()).fill_(float('nan'))
    assert np.isnan(adapter.step())
    assert adapter.stats.rollbacks == 1 and adapter.stats.steps == 1 and 'non-finite' in adapter.stats.last_error
    assert all(torch.equal(good[k], v) for k, v in adapter.depth.state_dict().items())
    # a loss spike (here: forced by a tiny spike factor) also rolls back
    adapter.cfg.spike_factor = 1e-6
    assert np.isnan(adapter.step()) and adapter.stats.rollbacks == 2 and 'spike' in adapter.stats.last_error
    assert all(torch.equal(good[k], v) for k, v in adapter.depth.state_dict().items())
    adapter.cfg.spike_factor = 3.0
    assert np.isfinite(adapter.step()) and adapter.stats.steps == 2  # and training goes on


def test_background_worker_does_not_block_inference(frames, tmp_path):
    est, ckpt = _estimator()
    proc = OnlineProcessor(est, ckpt, ScaleSettings('model'),
                           AdaptationConfig(lr=1e-4, max_steps_per_frame=0, threads=1, nice=10))
    try:
        speeds = _speeds(frames)
        _feed(proc, est, frames, speeds)
        t_end = time.time() + 60
        versions = set()
        n = 0
        while time.time() < t_end and proc.adapter.stats.steps < 3:
            proc.begin_frame()  # frames keep being served while the worker trains
            est.predict(frames[n % len(frames)][1], frames[n % len(frames)][2])
            versions.add(proc.weights_version)
            n += 1
        assert proc.adapter.stats.steps >= 3, proc.adapter.stats
        assert n >= 3 and len(versions) >= 2  # inference ran during training and picked up new weights
        path = proc.adapter.save(str(tmp_path / 'adapted.ckpt'))
        loaded = load_checkpoint(path)
        assert loaded.pose_net is not None and loaded.metadata['adaptation']['steps'] >= 3
        proc.adapter.reset()
        assert proc.adapter.stats.steps == 0
        proc.begin_frame()
        ref = DepthEstimator(ckpt.depth_net, ckpt.spec, device='cpu', precision='fp32')
        rgb, K = frames[2][1], frames[2][2]
        np.testing.assert_allclose(est.predict(rgb, K).depth, ref.predict(rgb, K).depth, rtol=1e-5)
    finally:
        proc.stop()


def test_time_reversal_restarts_the_triplet_chain(frames):
    est, ckpt = _estimator()
    adapter = OnlineAdapter(est.source_net, ckpt.pose_net, est.spec, AdaptationConfig(), lambda n: n, lambda m, v: None)
    x = torch.rand(1, 3, *SHAPE)
    for t in (0, 100, 200, 50, 150, 250):  # a bag loop restarts at 50
        adapter.add_frame(t * 1_000_000, x, np.eye(3), 5.0)
    assert adapter.stats.triplets == 2  # (0,100,200) and (50,150,250); nothing across the jump


def _one_triplet_adapter(frames, **cfg):
    """Adapter holding exactly one triplet: three copies of a real frame (no speed)."""
    est, ckpt = _estimator()
    adapter = OnlineAdapter(est.source_net, ckpt.pose_net, est.spec,
                            AdaptationConfig(lr=1e-3, buffer_size=1, max_steps_per_frame=0, **cfg),
                            lambda net: net, lambda m, v: None)
    x, _ = est.preprocess(frames[0][1])
    K = frames[0][2] * np.array([[SHAPE[1] / 1242], [SHAPE[0] / 375], [1]])
    for k in range(3):
        adapter.add_frame(k * 100_000_000, x, K, None)
    return adapter, K


def test_spike_factor_set_at_runtime_decides_whether_a_loss_rolls_back(frames):
    adapter, K = _one_triplet_adapter(frames)
    good_loss = adapter.step()  # identical frames: a small loss, the recent median
    assert np.isfinite(good_loss) and adapter.stats.steps == 1
    torch.manual_seed(3)
    for k in range(3, 6):  # the ring buffer (size 1) now holds a triplet of unrelated noise images
        adapter.add_frame(k * 100_000_000, torch.rand(1, 3, *SHAPE), K, None)
    good = {k: v.clone() for k, v in adapter.depth.state_dict().items()}
    adapter.configure(spike_factor=1.5)
    assert np.isnan(adapter.step())  # the noise loss is a spike: > 1.5 x the median
    noise_loss = adapter.stats.last_loss
    assert noise_loss > 1.5 * good_loss and adapter.stats.rollbacks == 1 and 'spike' in adapter.stats.last_error
    assert all(torch.equal(good[k], v) for k, v in adapter.depth.state_dict().items())
    # the same loss (same weights, same triplet) under a factor above the ratio is a normal step
    adapter.configure(spike_factor=2.0 * noise_loss / good_loss)
    assert adapter.step() == pytest.approx(noise_loss, rel=1e-5)
    assert adapter.stats.steps == 2 and adapter.stats.rollbacks == 1
    assert adapter.cfg.spike_factor == pytest.approx(2.0 * noise_loss / good_loss)


def test_max_steps_per_frame_set_at_runtime_changes_the_step_budget(frames):
    est, ckpt = _estimator()
    adapter = OnlineAdapter(est.source_net, ckpt.pose_net, est.spec, AdaptationConfig(max_steps_per_frame=2.0),
                            lambda net: net, lambda m, v: None)  # no worker thread: budget only
    x = torch.rand(1, 3, *SHAPE)

    def frame(k):
        adapter.add_frame(k * 100_000_000, x, np.eye(3), 5.0)

    for k in range(5):
        frame(k)
    assert adapter._budget == 8.0  # 2 per frame, capped at 4 x 2
    adapter.configure(max_steps_per_frame=0.5)
    assert adapter._budget == 2.0  # steps already earned are capped at 4 x the new rate
    adapter._budget = 0.0
    frame(5)
    assert adapter._budget == 0.5 and not adapter._can_step()  # < 1 step: the worker waits
    frame(6)
    assert adapter._budget == 1.0 and adapter._can_step()
    adapter.configure(max_steps_per_frame=0)  # unlimited: no budget needed
    adapter._budget = 0.0
    assert adapter._can_step()
    frame(7)
    assert adapter._budget == 0.0
    adapter.configure(spike_factor=4.0)  # None leaves the other setting as it is
    assert adapter.cfg.max_steps_per_frame == 0.0 and adapter.cfg.spike_factor == 4.0
    for bad in (dict(max_steps_per_frame=-1.0), dict(spike_factor=1.0), dict(spike_factor=float('nan'))):
        with pytest.raises(ValueError):
            adapter.configure(**bad)
    assert adapter.cfg.max_steps_per_frame == 0.0 and adapter.cfg.spike_factor == 4.0
