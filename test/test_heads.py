"""Every depth head (PackNet, BTS, SID) everywhere a model is used: checkpoints, the weights
syntax, DepthEstimator (metres, REP 117), the pipeline's confidence, ONNX export and the node's
~/confidence output and ``min_confidence`` parameter. Tiny models (ResNet18, small decoder
widths, 64x96 inputs) keep it cheap on shared CPUs."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from packnet_ros.checkpoint import ModelSpec, load_checkpoint, save_checkpoint
from packnet_ros.inference import DepthEstimator
from packnet_ros.networks import canonical_depth_model_name, depth_output_kind
from packnet_ros.pipeline import FrameInput, PipelineSettings, pipeline_from_weights
from packnet_ros.weights import WeightsError, parse_weights, resolve_weights

SHAPE = (64, 96)
SID_OPTIONS = {'num_bins': 8, 'mode': 'classification', 'alpha': 0.5, 'beta': 20.0}
SPECS = {
    'BTS': ModelSpec(depth_net='BTS-ResNet18', width=0.25, image_shape=SHAPE, max_depth=80.0, pose_net=None),
    'SID': ModelSpec(depth_net='SID-ResNet18', width=0.25, image_shape=SHAPE, max_depth=20.0, pose_net=None,
                     options=SID_OPTIONS),
}
K = np.array([[60.0, 0.0, 48.0], [0.0, 60.0, 32.0], [0.0, 0.0, 1.0]])


def _net(head: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return SPECS[head].build_depth_net().eval()


def _rgb(h: int = 70, w: int = 100) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize('head', ['BTS', 'SID'])
def test_checkpoint_round_trip_gives_the_same_outputs(head, tmp_path):
    net = _net(head)
    spec = SPECS[head]
    path = save_checkpoint(tmp_path / f'{head}.ckpt', net, spec)
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw['config']['model']['depth_net']['name'] == spec.depth_net
    ckpt = load_checkpoint(path)
    assert ckpt.spec == spec and ckpt.spec.label == f'{spec.depth_net}-w0.25'
    assert depth_output_kind(ckpt.depth_net) == 'depth'
    x = torch.rand(1, 3, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(ckpt.depth_net(x), net(x), rtol=0, atol=0)
    if head == 'SID':
        assert ckpt.depth_net.head.num_bins == 8 and ckpt.depth_net.head.mode == 'classification'
        assert float(ckpt.depth_net.head.edges[0]) == 0.5 and float(ckpt.depth_net.head.edges[-1]) == 20.0


def test_weights_syntax_names_the_new_heads():
    for text, name, width in (('untrained:BTS-ResNet18:0.25', 'BTS-ResNet18', 0.25),
                              ('untrained:SID-ResNet18:0.5', 'SID-ResNet18', 0.5),
                              ('untrained:SID-resnet34', 'SID-ResNet34', 1.0), ('untrained:BTS', 'BTS-ResNet50', 1.0),
                              ('untrained:PackNetSlim01:0.25', 'PackNetSlim01', 0.25)):
        choice = parse_weights(text)
        assert (choice.spec.depth_net, choice.spec.width) == (name, width), text
        assert parse_weights(choice.node_value).spec == choice.spec
    for bad in ('untrained:SID-ResNet99', 'untrained:PackNet01-ResNet18', 'untrained:DORN'):
        with pytest.raises(WeightsError, match='unknown network'):
            parse_weights(bad)
    assert canonical_depth_model_name('SID') == 'SID-ResNet18'
    a = resolve_weights('untrained:SID-ResNet18:0.25', with_pose=False).checkpoint
    b = resolve_weights('untrained:SID-ResNet18:0.25', with_pose=False).checkpoint
    assert a.spec.label == 'SID-ResNet18-w0.25' and depth_output_kind(a.depth_net) == 'depth'
    for (k, va), vb in zip(a.depth_net.state_dict().items(), b.depth_net.state_dict().values()):
        assert torch.equal(va, vb), k  # seeded


@pytest.mark.parametrize('head', ['BTS', 'SID'])
def test_estimator_returns_metres_with_rep117_marking(head):
    net = _net(head)
    x_rgb = _rgb()
    est = DepthEstimator(net, SPECS[head], device='cpu', precision='fp32', backend='fast')
    assert est.backend == 'eager' and 'eager' in est.backend_reason  # fast is PackNet's: falls back
    assert est.output_kind == 'depth' and est.has_confidence == (head == 'SID')
    x, _ = est.preprocess(x_rgb)
    with torch.inference_mode():
        ref = net(x)[0, 0].numpy()
    out = est.predict(x_rgb, K, scale=0.5).depth
    np.testing.assert_allclose(out, 0.5 * ref, rtol=1e-5)  # scale * depth, no inversion
    lo, hi = np.quantile(0.5 * ref, [0.25, 0.75])
    marked = DepthEstimator(net, SPECS[head], device='cpu', precision='fp32', backend='auto',
                            max_depth=float(hi), min_depth=float(lo)).predict(x_rgb, K, scale=0.5).depth
    sure = (np.abs(0.5 * ref - hi) > 1e-4 * hi) & (np.abs(0.5 * ref - lo) > 1e-4 * lo)  # not at a threshold
    assert np.array_equal(np.isposinf(marked)[sure], (0.5 * ref > hi)[sure])
    assert np.array_equal(np.isneginf(marked)[sure], (0.5 * ref < lo)[sure])
    assert np.isinf(marked).sum() >= ref.size // 3
    cam = est.predict(x_rgb, K, output='camera').depth
    assert cam.shape == x_rgb.shape[:2] and np.isfinite(cam).all()
    assert ref.min() - 1e-4 <= cam.min() and cam.max() <= ref.max() + 1e-4  # depth interpolated, not 1/depth
    pp = est.predict(x_rgb, K, flip_pp=True).depth
    assert pp.shape == SHAPE and np.isfinite(pp).all() and (pp > 0).all()


def test_sid_confidence_reaches_the_frame_output_and_min_confidence_masks_the_cloud():
    ckpt = resolve_weights('untrained:SID-ResNet18:0.25', with_pose=False).checkpoint
    pipe = pipeline_from_weights(ckpt, PipelineSettings(max_depth_m=200.0), device='cpu', precision='fp32',
                                 input_shape=SHAPE)
    frame = FrameInput(_rgb(), K, 0)
    out = pipe.process(frame)
    c = out.confidence
    assert c is not None and c.shape == out.depth.shape == SHAPE and c.dtype == np.float32
    assert 0.0 <= c.min() and c.max() <= 1.0
    assert not np.isnan(out.cloud['z']).any()
    threshold = float(np.median(c))
    pipe.update_settings(pipe.settings.replace(min_confidence=threshold, output_resolution='camera'))
    out = pipe.process(frame)
    assert out.confidence.shape == out.depth.shape == frame.rgb.shape[:2]
    np.testing.assert_array_equal(np.isnan(out.cloud['z']), out.confidence < threshold)
    with pytest.raises(ValueError, match='min_confidence'):
        PipelineSettings(min_confidence=1.5)
    bts = resolve_weights('untrained:BTS-ResNet18:0.25', with_pose=False).checkpoint
    out = pipeline_from_weights(bts, device='cpu', precision='fp32', input_shape=SHAPE).process(frame)
    assert out.confidence is None and out.depth.shape == SHAPE


@pytest.mark.parametrize('head', ['BTS', 'SID'])
def test_export_onnx_matches_pytorch_and_names_the_output_depth(head, tmp_path, capsys):
    import json

    import onnx
    import onnxruntime as ort

    from packnet_ros.apps.cli import main
    out = tmp_path / f'{head}.onnx'
    assert main(['export', '--checkpoint', f'untrained:{head}-ResNet18:0.25', '--shape', '96x64',
                 '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index('{\n'):])
    assert report['output_name'] == 'depth' and report['relative_error_vs_pytorch'] < 1e-3
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ['depth']
    net = resolve_weights(f'untrained:{head}-ResNet18:0.25', with_pose=False).checkpoint.depth_net
    x = torch.rand(1, 3, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = net(x).numpy()
    got = ort.InferenceSession(str(out), providers=['CPUExecutionProvider']).run(None, {'rgb': x.numpy()})[0]
    assert got.shape == ref.shape == (1, 1, *SHAPE)
    assert float(np.abs(got - ref).max() / np.abs(ref).max()) < 1e-3


def test_node_with_a_sid_checkpoint_publishes_confidence(tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from packnet_ros.ros.conversions import frame_from_msgs, make_camera_info, make_header, rgb_to_image_msg
    from packnet_ros.ros.packnet_node import PackNetNode
    path = save_checkpoint(tmp_path / 'sid.ckpt', _net('SID'), SPECS['SID'])
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = PackNetNode(context=ctx, parameter_overrides=[
            Parameter('checkpoint', value=str(path)), Parameter('device', value='cpu'),
            Parameter('precision', value='fp32'), Parameter('min_confidence', value=0.4),
            Parameter('lazy', value=False), Parameter('publish_cloud', value=False)])
        assert node.pub_confidence is not None and node.pub_confidence.topic_name == '/packnet_node/confidence'
        assert node.pipeline.settings.min_confidence == 0.4
        assert node.set_parameters([Parameter('min_confidence', value=0.6)])[0].successful
        assert node.pipeline.settings.min_confidence == 0.6
        assert not node.set_parameters([Parameter('min_confidence', value=1.5)])[0].successful
        assert node.pipeline.settings.min_confidence == 0.6
        received: list = []
        sub_node = rclpy.create_node('confidence_listener', context=ctx)
        sub_node.create_subscription(Image, '/packnet_node/confidence', received.append, 10)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(sub_node)
        rgb = _rgb(64, 96)
        header = make_header(123_000_000_456, 'cam')
        image, info = rgb_to_image_msg(rgb, header), make_camera_info(header, K, 96, 64)
        deadline = time.monotonic() + 20.0
        while not received and time.monotonic() < deadline:
            node._process(image, info, frame_from_msgs(image, info), time.perf_counter())
            ex.spin_once(timeout_sec=0.5)
        assert received, 'no ~/confidence message'
        msg = received[0]
        assert msg.encoding == '32FC1' and (msg.height, msg.width) == SHAPE and msg.header == header
        conf = np.frombuffer(bytes(msg.data), dtype=np.float32)
        assert conf.size == SHAPE[0] * SHAPE[1] and 0.0 <= conf.min() and conf.max() <= 1.0
        ex.shutdown()
        sub_node.destroy_node()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_benchmark_times_the_new_heads_on_their_eager_and_openvino_paths():
    from packnet_ros.apps.benchmark import bench_network, load_network, paths_for
    net, label, _ = load_network('untrained:SID-ResNet18:0.25')
    rows = bench_network(net, label, SHAPE, torch.device('cpu'), torch.rand(1, 3, 128, 192), {}, 0, 1,
                         paths_for(torch.device('cpu')))
    assert rows and rows[0]['path'] == 'fp32-eager'
    assert all(r['path'].endswith('-eager') or r['path'].startswith('ov-') for r in rows)  # no "fast": no packing'
    assert rows[0]['mean_rel_depth_diff'] == 0.0 and all(np.isfinite(r['mean_rel_depth_diff']) for r in rows)


@pytest.mark.parametrize('head', ['BTS', 'SID'])
def test_openvino_backend_runs_the_new_heads(head, tmp_path, monkeypatch):
    pytest.importorskip('openvino')
    monkeypatch.setenv('PACKNET_ROS_OPENVINO_CACHE', str(tmp_path))
    net, rgb = _net(head), _rgb()
    ov = DepthEstimator(net, SPECS[head], device='cpu', precision='fp32', backend='openvino')
    ref = DepthEstimator(net, SPECS[head], device='cpu', precision='fp32', backend='eager')
    assert ov.backend == 'openvino' and not ov.has_confidence  # the export carries the depth only
    a, b = ov.predict(rgb, K).depth, ref.predict(rgb, K).depth
    assert np.nanmax(np.abs(a - b) / b) < 1e-3


def test_online_adaptation_refuses_a_depth_output_model():
    from packnet_ros.adaptation import AdaptationConfig
    from packnet_ros.pipeline import PipelineSettings, pipeline_from_weights
    from packnet_ros.weights import resolve_weights
    w = resolve_weights('untrained:BTS-ResNet18:0.25', with_pose=True)
    with pytest.raises(ValueError, match='outputs depth: disable adaptation'):
        pipeline_from_weights(w.checkpoint, PipelineSettings(), device='cpu', precision='fp32',
                              input_shape=(64, 96), adaptation=AdaptationConfig())
