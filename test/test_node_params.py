"""packnet_node's parameters with a real rclpy node in this process (its own context).

Checked: invalid start-up values stop the node with a message naming the parameter and what
it allows (in process and as ``packnet_node`` exiting non-zero); a runtime request is
validated as a whole (one bad value: nothing applied); read-only parameters are refused;
every parameter that is accepted at runtime reaches the per-frame pipeline (the odometry
estimator's window included).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter

from packnet_ros.node_config import PARAMETERS
from packnet_ros.ros.packnet_node import PackNetNode, ParameterError

SMALL = [Parameter('checkpoint', value='untrained:PackNetSlim01:0.25'), Parameter('input_height', value=64),
         Parameter('input_width', value=224), Parameter('device', value='cpu'), Parameter('precision', value='fp32')]


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture
def node(context):
    n = PackNetNode(context=context, parameter_overrides=SMALL + [Parameter('scale_source', value='odometry')])
    yield n
    n.destroy_node()


def test_invalid_start_up_value_names_the_parameter_and_its_choices(context):
    with pytest.raises(ParameterError, match=r"output_resolution: 'foo' is not one of network, camera"):
        PackNetNode(context=context, parameter_overrides=SMALL + [Parameter('output_resolution', value='foo')])
    with pytest.raises(ParameterError, match='min_depth_m'):
        PackNetNode(context=context, parameter_overrides=SMALL + [Parameter('min_depth_m', value=90.0)])


def test_packnet_node_exits_non_zero_on_a_bad_parameter():
    p = subprocess.run([sys.executable, '-m', 'packnet_ros.ros.packnet_node', '--ros-args',
                        '-p', 'output_resolution:=foo', '-p', 'checkpoint:=untrained:PackNetSlim01:0.25'],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    line = [ln for ln in p.stdout.splitlines() if 'cannot start' in ln]
    assert len(line) == 1 and "output_resolution: 'foo' is not one of network, camera" in line[0], p.stdout


def test_a_request_with_one_bad_value_changes_nothing(node):
    before = node.pipeline.settings
    result = node.set_parameters_atomically([Parameter('max_depth_m', value=30.0),
                                             Parameter('fixed_scale', value=2.0),
                                             Parameter('cloud_decimation', value=0)])
    assert not result.successful and 'cloud_decimation' in result.reason
    assert node.get_parameter('max_depth_m').value == 80.0 and node.get_parameter('fixed_scale').value == 1.0
    assert node.pipeline.settings is before and node.estimator.max_depth == 80.0
    bad_pair = node.set_parameters_atomically([Parameter('min_depth_m', value=50.0),
                                               Parameter('max_depth_m', value=40.0)])
    assert not bad_pair.successful and 'min_depth_m' in bad_pair.reason
    assert node.pipeline.settings is before


def test_read_only_parameters_are_refused(node):
    for name, value in (('checkpoint', 'x.ckpt'), ('scale_source', 'model'), ('image_queue_size', 3)):
        result = node.set_parameters_atomically([Parameter(name, value=value)])
        assert not result.successful and 'read-only' in result.reason, name


def test_every_runtime_parameter_reaches_the_pipeline(node):
    new = {'max_depth_m': 40.0, 'min_depth_m': 1.5, 'output_resolution': 'camera', 'publish_cloud': False,
           'cloud_fields': 'xyz', 'cloud_decimation': 3, 'fixed_scale': 2.0, 'scale.window': 7,
           'scale.min_speed_mps': 0.5, 'scale.max_odom_gap_s': 0.3, 'scale.max_frame_gap_s': 0.7,
           'scale.outlier_k': 2.5, 'adaptation.max_steps_per_frame': 1.0, 'adaptation.spike_factor': 4.0,
           'adaptation.save_path': '/tmp/adapted.ckpt', 'lazy': False, 'min_confidence': 0.3}
    nav = {'obstacles.target_frame': 'odom', 'obstacles.camera_x_m': 0.3, 'obstacles.camera_y_m': 0.1,
           'obstacles.camera_z_m': 1.5, 'obstacles.camera_roll_rad': 0.01, 'obstacles.camera_pitch_rad': 0.02,
           'obstacles.camera_yaw_rad': 0.03, 'obstacles.min_height_m': 0.3, 'obstacles.max_height_m': 1.9,
           'obstacles.max_range_m': 6.0, 'obstacles.voxel_m': 0.2, 'obstacles.ground_plane': True,
           'obstacles.min_confidence': 0.5, 'scan.angle_increment_deg': 1.0, 'scan.range_min_m': 0.5,
           'scan.range_max_m': 7.0}
    completion = {'completion.max_staleness_s': 0.3, 'completion.extrinsics': '0.1 0.2 0.3 0 0 0'}
    runtime = {p.name for p in PARAMETERS if not p.read_only}
    assert set(new) | set(nav) | set(completion) == runtime  # this test covers every runtime parameter of the table
    new.update(nav)
    new.update(completion)  # completion is off here: test_completion_parameters_reach_the_stage
    result = node.set_parameters_atomically([Parameter(k, value=v) for k, v in new.items()])
    assert result.successful, result.reason
    s = node.pipeline.settings
    assert (s.max_depth_m, s.min_depth_m, s.output_resolution, s.cloud, s.cloud_fields, s.cloud_decimation) == \
        (40.0, 1.5, 'camera', False, 'xyz', 3)
    assert (s.scale.fixed_scale, s.scale.window, s.scale.min_speed_mps, s.scale.max_odom_gap_s,
            s.scale.max_frame_gap_s, s.scale.outlier_k) == (2.0, 7, 0.5, 0.3, 0.7, 2.5)
    assert (s.adaptation_max_steps_per_frame, s.adaptation_spike_factor) == (1.0, 4.0)
    assert s.min_confidence == 0.3
    est = node.pipeline.online.scale  # the odometry estimator itself, used by the next frame
    assert (est.window, est.min_speed, est.outlier_k) == (7, 0.5, 2.5)
    assert est.max_odom_gap_ns == 300_000_000 and est.max_frame_dt_ns == 700_000_000
    assert node._p('adaptation.save_path') == '/tmp/adapted.ckpt' and node._p('lazy') is False
    ns = node._nav_settings  # what the navigation stages use from the next frame on
    from packnet_ros.postprocess.obstacles import camera_pose_matrix
    np.testing.assert_allclose(ns.T_target_camera, camera_pose_matrix(0.3, 0.1, 1.5, 0.01, 0.02, 0.03))
    assert (ns.target_frame, ns.min_height_m, ns.max_height_m, ns.max_range_m, ns.voxel_m, ns.ground_plane,
            ns.min_confidence) == ('odom', 0.3, 1.9, 6.0, 0.2, True, 0.5)
    assert (ns.scan_angle_increment, ns.scan_range_min_m, ns.scan_range_max_m) == \
        (pytest.approx(np.radians(1.0)), 0.5, 7.0)
    assert node._p('completion.max_staleness_s') == 0.3 and node.completion_stage is None


def test_completion_parameters_reach_the_stage(context):
    n = PackNetNode(context=context, parameter_overrides=SMALL + [Parameter('completion.method', value='ipbasic')])
    try:
        assert [s.name for s in n.pipeline.stages][2:5] == ['depth', 'completion', 'cloud']
        assert n.completion_stage.settings.max_staleness_s == 0.1 and n._completion_T is None
        result = n.set_parameters_atomically([Parameter('completion.max_staleness_s', value=0.25),
                                              Parameter('completion.extrinsics', value='0.1 0.2 0.3 0 0 0')])
        assert result.successful, result.reason
        assert n.completion_stage.settings.max_staleness_s == 0.25  # what the next frame uses
        np.testing.assert_allclose(n._completion_T, [[1, 0, 0, 0.1], [0, 1, 0, 0.2], [0, 0, 1, 0.3], [0, 0, 0, 1]])
        bad = n.set_parameters_atomically([Parameter('completion.max_staleness_s', value=0.5),
                                           Parameter('completion.extrinsics', value='1 2')])
        assert not bad.successful and 'completion.extrinsics' in bad.reason
        assert n.completion_stage.settings.max_staleness_s == 0.25 and n._completion_T[0, 3] == 0.1
        for name, value in (('completion.method', 'none'), ('completion.topic', '/velodyne_points'),
                            ('completion.kind', 'depth_image')):
            result = n.set_parameters_atomically([Parameter(name, value=value)])
            assert not result.successful and 'read-only' in result.reason, name
    finally:
        n.destroy_node()


def test_declared_descriptors_follow_the_table(node):
    for p in PARAMETERS:
        d = node.describe_parameter(p.name)
        assert (d.read_only, d.description, d.additional_constraints) == (p.read_only, p.description,
                                                                          p.constraints()), p.name
        assert node.get_parameter(p.name).value == p.default or p.name in {s.name for s in SMALL} | {'scale_source'}


def test_out_of_range_values_are_refused_at_runtime(node):
    for name, value in (('cloud_decimation', 2 ** 63 - 1), ('max_depth_m', 0.0), ('fixed_scale', -1.0),
                        ('scale.window', 0)):
        result = node.set_parameters_atomically([Parameter(name, value=value)])
        assert not result.successful and name in result.reason, (name, result.reason)


@pytest.mark.parametrize('args, text', [
    (['--params-file', '/nonexistent/packnet.yaml'], "Couldn't parse params file"),
    (['--params-file', 'BAD_YAML'], "Couldn't parse params file"),
    (['-p', 'max_depth_m:=5'], 'max_depth_m: expected a double (write 5.0, not 5)'),
    (['-p', 'image_queue_size:=-1'], 'image_queue_size: -1 is out of range'),
    (['-p', 'checkpoint:=/nonexistent/model.ckpt'], '/nonexistent/model.ckpt: no such file'),
])
def test_bad_start_up_input_is_one_line_and_exit_1(args, text, tmp_path):
    bad_yaml = tmp_path / 'bad.yaml'
    bad_yaml.write_text('packnet_node: [\n')
    args = [str(bad_yaml) if a == 'BAD_YAML' else a for a in args]
    p = subprocess.run([sys.executable, '-m', 'packnet_ros.ros.packnet_node', '--ros-args', *args],
                       capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 1 and 'Traceback' not in out, out
    lines = [ln for ln in out.splitlines() if 'cannot start' in ln]
    assert len(lines) == 1 and text in lines[0], out
