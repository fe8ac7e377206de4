"""launch/packnet.launch.py, config/packnet.yaml, config/packnet.rviz and package.xml.

The launch / launch_ros wheels do not exist here, so the launch file is imported with
recording stand-ins for ``launch``, ``launch.actions``, ``launch.conditions``,
``launch.substitutions``, ``launch_ros.actions`` and ``ament_index_python.packages``;
``generate_launch_description()`` then yields the recorded actions, which are checked
against the node's real parameter table and the files shipped in config/.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
import xml.etree.ElementTree as ET

import pytest
import yaml

from conftest import ROOT, flatten_params
from packnet_ros.node_config import PARAMETERS as TABLE

PARAMETERS = {p.name: (p.default, p.description) for p in TABLE}

LAUNCH_FILE = ROOT / 'launch' / 'packnet.launch.py'


class _Recorded:
    """Stand-in for a launch class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f'{type(self).__name__}({self.args}, {self.kwargs})'


class LaunchConfiguration(_Recorded):
    def __eq__(self, other):
        return isinstance(other, LaunchConfiguration) and self.args == other.args

    def __hash__(self):
        return hash(self.args)


class PythonExpression(_Recorded):
    pass


class IfCondition(_Recorded):
    pass


class DeclareLaunchArgument(_Recorded):
    @property
    def name(self):
        return self.args[0]


class SetEnvironmentVariable(_Recorded):
    pass


class Node(_Recorded):
    pass


class LaunchDescription(_Recorded):
    @property
    def entities(self):
        return list(self.args[0])


def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__path__ = []  # importable as a package too
    return mod


@pytest.fixture()
def description(monkeypatch, tmp_path):
    share = tmp_path / 'share' / 'packnet_ros'
    calls = []

    def get_package_share_directory(name):
        calls.append(name)
        return str(share)

    stand_ins = {
        'launch': _module('launch', LaunchDescription=LaunchDescription),
        'launch.actions': _module('launch.actions', DeclareLaunchArgument=DeclareLaunchArgument,
                                  SetEnvironmentVariable=SetEnvironmentVariable),
        'launch.conditions': _module('launch.conditions', IfCondition=IfCondition),
        'launch.substitutions': _module('launch.substitutions', LaunchConfiguration=LaunchConfiguration,
                                        PythonExpression=PythonExpression),
        'launch_ros': _module('launch_ros'),
        'launch_ros.actions': _module('launch_ros.actions', Node=Node),
        'ament_index_python': _module('ament_index_python'),
        'ament_index_python.packages': _module('ament_index_python.packages',
                                               get_package_share_directory=get_package_share_directory),
    }
    for name, mod in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location('packnet_launch_under_test', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    assert calls == ['packnet_ros']
    return ld, share


def _by_type(ld, cls):
    return [e for e in ld.entities if type(e) is cls]


def _args(ld):
    return {a.name: a.kwargs for a in _by_type(ld, DeclareLaunchArgument)}


def _in_repo(path: str, share) -> os.PathLike:
    """A share-directory path -> the same file in this repository (CMake installs config/, launch/)."""
    rel = os.path.relpath(path, share)
    assert not rel.startswith('..'), path
    return ROOT / rel


def test_declared_arguments_and_defaults(description):
    ld, share = description
    args = _args(ld)
    assert set(args) == {'namespace', 'params_file', 'image', 'camera_info', 'odom', 'use_sim_time',
                         'fastdds_profile', 'rviz'}
    assert args['namespace']['default_value'] == ''
    assert args['image']['default_value'] == '/camera/image_raw'
    assert args['camera_info']['default_value'] == '/camera/camera_info'
    assert args['odom']['default_value'] == '/odom'
    assert args['use_sim_time']['default_value'] == 'false'
    assert args['rviz']['default_value'] == 'false'
    assert all(a.get('description') for a in args.values())

    params = args['params_file']['default_value']
    assert params.endswith(os.path.join('config', 'packnet.yaml'))
    assert _in_repo(params, share) == ROOT / 'config' / 'packnet.yaml'
    assert (ROOT / 'config' / 'packnet.yaml').is_file()
    profile = args['fastdds_profile']['default_value']
    assert _in_repo(profile, share).is_file()
    ET.parse(_in_repo(profile, share))  # well-formed XML


def test_packnet_node(description):
    ld, _ = description
    nodes = {n.kwargs['executable']: n.kwargs for n in _by_type(ld, Node)}
    node = nodes['packnet_node']
    assert node['package'] == 'packnet_ros'
    assert node['name'] == 'packnet_node'
    assert node['namespace'] == LaunchConfiguration('namespace')
    assert node['parameters'] == [LaunchConfiguration('params_file'),
                                  {'use_sim_time': LaunchConfiguration('use_sim_time')}]
    assert node['remappings'] == [('image', LaunchConfiguration('image')),
                                  ('camera_info', LaunchConfiguration('camera_info')),
                                  ('odom', LaunchConfiguration('odom'))]
    assert 'condition' not in node  # always started


def test_rviz_node(description):
    ld, share = description
    nodes = {n.kwargs['executable']: n.kwargs for n in _by_type(ld, Node)}
    assert set(nodes) == {'packnet_node', 'rviz2'}
    rviz = nodes['rviz2']
    assert rviz['package'] == 'rviz2'
    cond = rviz['condition']
    assert isinstance(cond, IfCondition) and cond.args == (LaunchConfiguration('rviz'),)
    args = list(rviz['arguments'])
    assert args[0] == '-d' and len(args) == 2
    assert args[1].endswith(os.path.join('config', 'packnet.rviz'))
    rviz_file = _in_repo(args[1], share)
    assert rviz_file.is_file()
    cfg = yaml.safe_load(rviz_file.read_text())
    displays = cfg['Visualization Manager']['Displays']
    clouds = {d['Topic']['Value']: d for d in displays if d['Class'] == 'rviz_default_plugins/PointCloud2'}
    assert set(clouds) == {'/packnet_node/points', '/packnet_node/obstacles'}
    scans = [d for d in displays if d['Class'] == 'rviz_default_plugins/LaserScan']
    assert len(scans) == 1 and scans[0]['Topic']['Value'] == '/packnet_node/scan'
    for nav in (clouds['/packnet_node/obstacles'], scans[0]):  # published with sensor-data QoS
        assert nav['Topic']['Reliability Policy'] == 'Best Effort'
    images = {d['Topic']['Value'] for d in displays if d['Class'] == 'rviz_default_plugins/Image'}
    assert '/packnet_node/depth' in images


def test_fastdds_environment(description):
    ld, _ = description
    (env,) = _by_type(ld, SetEnvironmentVariable)
    assert env.args[0] == 'FASTDDS_DEFAULT_PROFILES_FILE'
    assert env.args[1] == LaunchConfiguration('fastdds_profile')
    cond = env.kwargs['condition']
    assert isinstance(cond, IfCondition) and isinstance(cond.args[0], PythonExpression)
    assert LaunchConfiguration('fastdds_profile') in cond.args[0].args[0]
    # it is set before the nodes start (actions run in order)
    order = [type(e) for e in ld.entities]
    assert order.index(SetEnvironmentVariable) < order.index(Node)


# ----------------------------------------------------------------------------- config/packnet.yaml


def test_params_yaml_matches_node_parameters():
    doc = yaml.safe_load((ROOT / 'config' / 'packnet.yaml').read_text())
    assert list(doc) == ['/**/packnet_node']
    params = flatten_params(doc['/**/packnet_node']['ros__parameters'])
    assert params, 'no parameters'
    unknown = sorted(set(params) - set(PARAMETERS))
    assert not unknown, f'not declared by packnet_node: {unknown}'
    for name, value in params.items():
        default = PARAMETERS[name][0]
        assert type(value) is type(default), f'{name}: {value!r} ({type(value).__name__}) vs default ' \
                                             f'{default!r} ({type(default).__name__})'


def test_params_yaml_lists_every_parameter():
    # the shipped file is the template users copy: every declared parameter appears in it
    params = flatten_params(yaml.safe_load((ROOT / 'config' / 'packnet.yaml').read_text())['/**/packnet_node']['ros__parameters'])
    assert sorted(set(PARAMETERS) - set(params)) == []


# ----------------------------------------------------------------------------- package.xml
def test_package_xml():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.tag == 'package' and root.get('format') == '3'
    assert root.findtext('name') == 'packnet_ros'
    assert root.find('export').findtext('build_type') == 'ament_cmake'
    run_deps = {e.text for tag in ('exec_depend', 'depend') for e in root.findall(tag)}
    for dep in ('rclpy', 'sensor_msgs', 'nav_msgs', 'python3-torch', 'python3-numpy', 'python3-opencv'):
        assert dep in run_deps, dep
    assert {'launch', 'launch_ros'} <= run_deps  # the launch file needs them at run time
    assert root.findtext('license')


def test_cmake_installs_launch_and_config():
    text = (ROOT / 'CMakeLists.txt').read_text()
    assert 'install(DIRECTORY launch config' in text
