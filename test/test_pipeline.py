"""packnet_ros.pipeline.DepthPipeline (the node's per-frame work) and packnet_ros.weights (the
one weights resolver), on a real KITTI frame with a small untrained PackNetSlim01.

Checked: the pipeline's depth is the estimator's depth (one path), the cloud is the depth
unprojected with the published intrinsics, settings replaced between frames take effect on
the next frame (max depth, fixed scale, decimation, output resolution) and are validated as
a whole, the odometry estimator's window follows a runtime change, stages can be inserted by
name, and the weights syntax resolves to what it says.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from packnet_ros.checkpoint import DEFAULT_CHECKPOINT, SELFSUP_CHECKPOINT, default_checkpoint_path, save_checkpoint
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.online import ScaleSettings
from packnet_ros.pipeline import DepthPipeline, FrameInput, PipelineSettings, pipeline_from_weights
from packnet_ros.pointcloud import depth_to_xyz
from packnet_ros.weights import WeightsError, parse_weights, resolve_weights

SHAPE = (64, 224)


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


@pytest.fixture(scope='module')
def frame(kitti_drive):
    d = KittiDrive(kitti_drive)
    return FrameInput(d.image(0), d.K.copy(), d.timestamp_ns(d.frames[0]))


@pytest.fixture(scope='module')
def weights():
    return resolve_weights('untrained:PackNetSlim01:0.25', with_pose=True)


def _pipeline(weights, **settings) -> DepthPipeline:
    return pipeline_from_weights(weights.checkpoint, PipelineSettings(**settings), device='cpu',
                                 precision='fp32', input_shape=SHAPE)


def test_pipeline_depth_is_the_estimators_and_the_cloud_its_unprojection(weights, frame):
    p = _pipeline(weights)
    out = p.process(frame)
    ref = p.estimator.predict(frame.rgb, frame.K)
    np.testing.assert_array_equal(out.depth, ref.depth)
    np.testing.assert_array_equal(out.K, ref.K)
    assert out.depth.shape == SHAPE and out.rgb.shape == (*SHAPE, 3)
    # K scaled as image_proc's resize: fx, cx by w/W; fy, cy by h/H
    sx, sy = SHAPE[1] / frame.rgb.shape[1], SHAPE[0] / frame.rgb.shape[0]
    np.testing.assert_allclose(out.K[0], frame.K[0] * [sx, 1, sx])
    np.testing.assert_allclose(out.K[1], frame.K[1] * [1, sy, sy])
    xyz = np.stack([out.cloud['x'], out.cloud['y'], out.cloud['z']], -1)
    np.testing.assert_allclose(xyz, depth_to_xyz(out.depth, out.K), rtol=1e-6)
    assert set(out.timings_ms) >= {'preprocess_ms', 'inference_ms', 'scale_ms', 'depth_ms', 'cloud_ms', 'total_ms'}
    assert out.timings_ms['total_ms'] >= out.timings_ms['inference_ms'] > 0
    summary = out.depth_summary()
    finite = out.depth[np.isfinite(out.depth)]
    assert summary['valid_ratio'] == finite.size / out.depth.size
    assert summary['median_m'] == pytest.approx(float(np.median(finite)))


def test_settings_take_effect_on_the_next_frame(weights, frame):
    p = _pipeline(weights)
    base = p.process(frame)
    finite = base.depth[np.isfinite(base.depth)]
    cut = float(np.median(finite))
    p.update_settings(p.settings.replace(max_depth_m=cut, cloud_decimation=4, cloud_fields='xyz'))
    out = p.process(frame)
    beyond = base.depth > cut
    assert np.all(np.isposinf(out.depth[beyond])) and np.array_equal(out.depth[~beyond], base.depth[~beyond])
    assert out.cloud.shape == (SHAPE[0] // 4, SHAPE[1] // 4) and out.cloud.dtype.names == ('x', 'y', 'z')
    p.update_settings(p.settings.replace(max_depth_m=1e6, scale={'source': 'model', 'fixed_scale': 3.0}))
    assert p.process(frame).scale == 1.0  # fixed_scale only matters for the "fixed" source


def test_fixed_scale_and_camera_resolution(weights, frame):
    p = _pipeline(weights, max_depth_m=1e6, scale=ScaleSettings(source='fixed', fixed_scale=2.5))
    ref = _pipeline(weights, max_depth_m=1e6).process(frame, cloud=False)
    out = p.process(frame, cloud=False)
    assert out.scale == 2.5 and out.cloud is None
    np.testing.assert_allclose(out.depth, 2.5 * ref.depth, rtol=1e-6)
    p.update_settings(p.settings.replace(scale={'fixed_scale': 0.5}, output_resolution='camera'))
    cam = p.process(frame, cloud=False)
    assert cam.depth.shape == frame.rgb.shape[:2] and cam.scale == 0.5
    np.testing.assert_array_equal(cam.K, frame.K)


def test_invalid_settings_are_refused_whole(weights):
    p = _pipeline(weights)
    before = p.settings
    for bad in ({'max_depth_m': 0.0}, {'min_depth_m': 90.0}, {'output_resolution': 'foo'},
                {'cloud_fields': 'xyzw'}, {'cloud_decimation': 0}):
        with pytest.raises(ValueError):
            p.update_settings(p.settings.replace(**bad))
        assert p.settings is before
    with pytest.raises(ValueError, match='scale source'):
        p.update_settings(p.settings.replace(scale={'source': 'odometry'}))
    assert p.settings is before


def test_odometry_estimator_window_follows_the_settings(weights, frame):
    p = _pipeline(weights, scale=ScaleSettings(source='odometry', window=50))
    assert p.online.scale.window == 50
    p.update_settings(p.settings.replace(scale={'window': 7, 'outlier_k': 2.0, 'min_speed_mps': 0.5}))
    assert p.online.scale.window == 7 and p.online.scale.outlier_k == 2.0 and p.online.scale.min_speed == 0.5
    out = p.process(frame)  # the first frame: no estimate yet, published at scale 1 with a reason
    assert out.scale == 1.0 and not out.scale_status.valid


def test_odometry_scale_without_posenet_is_refused(frame):
    w = resolve_weights('untrained:PackNetSlim01:0.25', with_pose=False)
    with pytest.raises(ValueError, match='PoseNet'):
        pipeline_from_weights(w.checkpoint, PipelineSettings(scale=ScaleSettings(source='odometry')),
                              device='cpu', precision='fp32', input_shape=SHAPE)


def test_a_stage_inserted_by_name_runs_in_order(weights, frame):
    p = _pipeline(weights)
    seen = []

    class Refine:
        name = 'refine'

        def __call__(self, state, settings):
            seen.append((state.depth is not None, state.cloud is None))
            state.depth = np.minimum(state.depth, 5.0)

    p.insert_stage(Refine(), after='depth')
    assert [s.name for s in p.stages] == ['infer', 'scale', 'depth', 'refine', 'cloud']
    out = p.process(frame)
    assert seen == [(True, True)] and np.nanmax(out.depth[np.isfinite(out.depth)]) <= 5.0
    assert np.nanmax(out.cloud['z']) <= 5.0 and 'refine_ms' in out.timings_ms
    with pytest.raises(KeyError, match='no stage'):
        p.insert_stage(Refine(), after='nothing')


def test_add_speed_reaches_the_speed_track(weights, frame):
    p = _pipeline(weights)
    p.add_speed(frame.stamp_ns - 50_000_000, 10.0)
    p.process(FrameInput(frame.rgb, frame.K, frame.stamp_ns, speed_mps=12.0))
    assert p.speeds.speed_at(frame.stamp_ns) == 12.0
    assert p.speeds.speed_at(frame.stamp_ns - 25_000_000) == pytest.approx(11.0)


# ------------------------------------------------------------------------ weights syntax
def test_weights_syntax(tmp_path):
    slim = parse_weights('untrained:PackNetSlim01:0.25')
    assert slim.untrained and slim.spec.label == 'PackNetSlim01-1A-w0.25' and not slim.fallback
    assert slim.node_value == 'untrained:PackNetSlim01:0.25' and slim.label == 'untrained PackNetSlim01-1A-w0.25'
    bare = parse_weights('untrained', network='PackNetSlim01', width=0.5)
    assert bare.spec.label == 'PackNetSlim01-1A-w0.5'
    assert parse_weights('untrained:PackNet01').spec.width == 1.0
    default = parse_weights('default')
    if default_checkpoint_path() is not None:
        assert default.path == DEFAULT_CHECKPOINT and parse_weights('').path == DEFAULT_CHECKPOINT
    else:
        assert default.fallback and default.untrained
    selfsup = resolve_weights('selfsup', with_pose=True)  # the shipped PackNet with its PoseNet
    assert selfsup.choice.path == SELFSUP_CHECKPOINT and selfsup.checkpoint.pose_net is not None
    assert selfsup.checkpoint.spec.depth_net == 'PackNetSlim01'
    for bad, text in (('untrained:ResNet', 'unknown network'), ('untrained:PackNet01:x', 'not a number'),
                      ('untrained:PackNet01:0', 'width must be > 0'), (str(tmp_path / 'no.ckpt'), 'no such file'),
                      ('untrained:a:b:c', 'weights are')):
        with pytest.raises(WeightsError, match=text):
            parse_weights(bad)


def test_untrained_weights_are_seeded_and_a_path_loads_what_was_saved(tmp_path):
    a = resolve_weights('untrained:PackNetSlim01:0.25', with_pose=False).checkpoint
    b = resolve_weights('untrained:PackNetSlim01:0.25', with_pose=True).checkpoint
    assert a.pose_net is None and b.pose_net is not None
    for (k, va), vb in zip(a.depth_net.state_dict().items(), b.depth_net.state_dict().values()):
        assert torch.equal(va, vb), k
    path = save_checkpoint(tmp_path / 'w.ckpt', a.depth_net, a.spec)
    loaded = resolve_weights(str(path), with_pose=False)
    assert loaded.choice.kind == 'path' and loaded.description == f'checkpoint {path}'
    for (k, va), vb in zip(a.depth_net.state_dict().items(), loaded.checkpoint.depth_net.state_dict().values()):
        assert torch.equal(va, vb), k
