"""packnet_node's parameter table: one source of truth, agreeing with config/packnet.yaml and
README.md, and its validation (no ROS needed except the last test)."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from conftest import ROOT, flatten_params
from packnet_ros import node_config
from packnet_ros.node_config import PARAMETERS, NodeSettings, check_changes, defaults, spec, validate

NAMES = [p.name for p in PARAMETERS]




def _yaml_params() -> dict:
    doc = yaml.safe_load((ROOT / 'config' / 'packnet.yaml').read_text())
    return flatten_params(doc['/**/packnet_node']['ros__parameters'])


def _readme_rows() -> dict[str, tuple[str, str]]:
    """{name: (type word, default cell)} from the parameter tables of README's packnet_node
    section (tables headed "| name | type | default | meaning |"); a row may name several
    parameters ("`input_height`, `input_width`"); wildcard rows ("`scale.*`") are pointers."""
    text = (ROOT / 'README.md').read_text()
    section = text[text.index('\n## packnet_node'):]
    section = section[:section.index('\n## ', 1)]
    rows, in_table = {}, False
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.startswith('|') else None
        if cells is None:
            in_table = False
        elif [c.lower() for c in cells[:3]] == ['name', 'type', 'default']:
            in_table = True
        elif in_table and not set(cells[0]) <= set('-: '):
            names = re.findall(r'`([^`]+)`', cells[0])
            assert names, f'README parameter row without a `name`: {line}'
            for name in names:
                if '*' not in name:
                    assert name not in rows, f'{name} is documented twice in README'
                    rows[name] = (cells[1], cells[2])
    return rows


def _readme_value(type_word: str, cell: str):
    cell = cell.strip().strip('`')
    if type_word == 'string':
        return '' if cell in ('""', "''") else cell
    if type_word == 'double':
        return float(cell)
    if type_word == 'int':
        return int(cell)
    if type_word == 'bool':
        assert cell in ('true', 'false'), cell
        return cell == 'true'
    raise AssertionError(f'unknown README type word {type_word!r}')


# ----------------------------------------------------------------------------- the table
def test_table_is_well_formed():
    assert len(NAMES) == len(set(NAMES))
    for p in PARAMETERS:
        assert p.type in (bool, int, float, str) and type(p.default) is p.type, p
        assert p.description and p.check(p.default) is None, p
        assert p.choices is None or (p.type is str and p.default in p.choices), p
        assert spec(p.name) is p
    with pytest.raises(KeyError):
        spec('no_such_parameter')
    assert defaults() == {p.name: p.default for p in PARAMETERS}
    assert validate(defaults()) == []


def test_yaml_lists_every_parameter_with_the_default_value():
    params = _yaml_params()
    assert sorted(set(params) - set(NAMES)) == [], 'in config/packnet.yaml but not a parameter'
    assert sorted(set(NAMES) - set(params)) == [], 'parameters missing from config/packnet.yaml'
    for name, value in params.items():
        p = spec(name)
        assert type(value) is p.type and value == p.default, \
            f'{name}: yaml {value!r} ({type(value).__name__}) vs default {p.default!r} ({p.type.__name__})'


def test_readme_documents_every_parameter_with_its_type_and_default():
    rows = _readme_rows()
    assert sorted(set(rows) - set(NAMES)) == [], 'in README.md but not a parameter'
    assert sorted(set(NAMES) - set(rows)) == [], 'parameters missing from the README.md tables'
    for name, (type_word, cell) in rows.items():
        p = spec(name)
        assert type_word == p.type_name, f'{name}: README type {type_word!r}, table {p.type_name!r}'
        value = _readme_value(type_word, cell)
        assert value == p.default, f'{name}: README default {cell!r}, table {p.default!r}'


def test_readme_lists_the_read_only_parameters():
    text = (ROOT / 'README.md').read_text()
    section = text[text.index('\n## packnet_node'):]
    section = section[:section.index('\n## ', 1)]
    paragraph = section[section.index('Parameters that need a model reload'):]
    paragraph = paragraph[:paragraph.index('\n\n')]
    listed = re.findall(r'`([^`]+)`', paragraph)

    def covered(name):
        return any(name == pat or (pat.endswith('*') and name.startswith(pat[:-1])) for pat in listed)

    read_only = {p.name for p in PARAMETERS if p.read_only}
    assert sorted(n for n in read_only if not covered(n)) == []
    assert sorted(n for n in set(NAMES) - read_only if covered(n)) == []


# ----------------------------------------------------------------------------- validation
def test_validate_names_the_parameter_the_value_and_the_choices():
    errors = validate({'output_resolution': 'foo'})
    assert errors == ["output_resolution: 'foo' is not one of network, camera"]
    [e] = validate({'device': 'gpu'})
    assert e.startswith('device:') and "'gpu'" in e and 'cuda:N' in e
    assert validate({'device': 'cuda:1'}) == validate({'device': 'cpu'}) == []
    [e] = validate({'precision': 'int8'})
    assert e == "precision: 'int8' is not one of auto, fp32, bf16, fp16"


def test_validate_rejects_out_of_range_values():
    [e] = validate({'max_depth_m': 0.0})
    assert e.startswith('max_depth_m: 0.0') and '> 0' in e
    assert validate({'max_depth_m': 0.001}) == []
    cases = {'min_depth_m': -1.0, 'cloud_decimation': 0, 'fixed_scale': 0.0, 'network_width': -0.5,
             'input_height': -32, 'scale.window': 0, 'scale.min_speed_mps': -0.1, 'scale.max_odom_gap_s': 0.0,
             'scale.max_frame_gap_s': 0.0, 'scale.outlier_k': 0.0, 'adaptation.lr': 0.0, 'adaptation.pose_lr': -1e-5,
             'adaptation.buffer_size': 0, 'adaptation.batch_size': 0, 'adaptation.max_steps_per_frame': -1.0,
             'adaptation.spike_factor': 1.0, 'adaptation.threads': 0, 'adaptation.nice': 20,
             'image_queue_size': 0, 'output_queue_size': 0, 'max_depth_m': float('inf')}
    for name, value in cases.items():
        errors = validate({name: value})
        assert len(errors) == 1 and errors[0].startswith(f'{name}: {value!r}'), (name, errors)
    [e] = validate({'adaptation.nice': -21})
    assert e == 'adaptation.nice: -21 is out of range, must be in [-20, 19]'
    assert validate({'adaptation.nice': -20}) == validate({'adaptation.nice': 19}) == []
    assert validate({'adaptation.max_steps_per_frame': 0.0}) == []  # 0 = unlimited


def test_input_size_is_a_multiple_of_32_set_in_pairs():
    assert validate({'input_height': 192, 'input_width': 640}) == []
    [e] = validate({'input_height': 100, 'input_width': 640})
    assert e == 'input_height: 100 is not a multiple of 32'
    [e] = validate({'input_height': 192})  # width 0 = from the checkpoint, height set: ambiguous
    assert 'input_height' in e and 'input_width' in e


def test_validate_cross_checks_min_and_max_depth():
    [e] = validate({'min_depth_m': 90.0, 'max_depth_m': 80.0})
    assert e.startswith('min_depth_m: 90.0') and 'max_depth_m (80.0)' in e
    assert validate({'min_depth_m': 80.0, 'max_depth_m': 80.0}) != []
    assert validate({'min_depth_m': 0.5, 'max_depth_m': 80.0}) == []
    assert validate({'min_depth_m': 0.0, 'max_depth_m': 1.0}) == []  # 0 disables the minimum
    assert validate({'min_depth_m': 90.0}) != []  # against the default max_depth_m 80


def test_validate_checks_types_and_names():
    [e] = validate({'cloud_decimation': 2.0})
    assert e == 'cloud_decimation: 2.0 is float, expected int'
    [e] = validate({'publish_cloud': 1})
    assert e == 'publish_cloud: 1 is int, expected bool'
    assert validate({'max_depth_m': 50}) == []  # an integer is a valid double
    assert validate({'no_such': 1}) == ['no_such: unknown parameter']
    assert len(validate({'output_resolution': 'foo', 'max_depth_m': 0.0, 'lazy': 'yes'})) == 3


# ----------------------------------------------------------------------------- settings snapshot
def test_settings_snapshot_is_typed_and_complete():
    s = NodeSettings.from_values(defaults())
    assert s == NodeSettings.default() and dict(s.values) == defaults()
    assert (s.max_depth_m, s.min_depth_m, s.output_resolution, s.publish_cloud, s.cloud_fields,
            s.cloud_decimation, s.lazy) == (80.0, 0.0, 'network', True, 'xyzrgb', 1, True)
    assert (s.scale_source, s.fixed_scale, s.input_shape) == ('model', 1.0, None)
    assert s.scale.estimator_kwargs() == dict(window=50, min_speed=1.0, max_odom_gap_s=0.2, max_frame_dt_s=0.5,
                                              outlier_k=3.5)
    assert s.adaptation.adapter_kwargs() == dict(max_steps_per_frame=2.0, spike_factor=3.0)
    assert s.adaptation.config_kwargs()['lr'] == 2e-5 and s.adaptation.save_path == 'packnet_adapted.ckpt'
    s2 = NodeSettings.from_values({'max_depth_m': 50, 'input_height': 96, 'input_width': 320})
    assert s2.max_depth_m == 50.0 and type(s2.max_depth_m) is float and s2.input_shape == (96, 320)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_depth_m = 1.0
    with pytest.raises(TypeError):
        s.values['max_depth_m'] = 1.0
    hash(s)


def test_settings_from_invalid_values_raise_every_error():
    with pytest.raises(ValueError) as info:
        NodeSettings.from_values({'output_resolution': 'foo', 'cloud_decimation': 0})
    assert 'output_resolution' in str(info.value) and 'cloud_decimation' in str(info.value)


def test_runtime_changes_are_validated_as_a_whole():
    s = NodeSettings.default()
    s2 = s.with_values({'max_depth_m': 30.0, 'scale.window': 5, 'adaptation.spike_factor': 4.0})
    assert (s2.max_depth_m, s2.scale.window, s2.adaptation.spike_factor) == (30.0, 5, 4.0)
    assert s.max_depth_m == 80.0  # the old snapshot is untouched
    assert s.changed(s2) == {'max_depth_m', 'scale.window', 'adaptation.spike_factor'}
    # one bad value rejects the whole request, with every reason
    with pytest.raises(ValueError) as info:
        s.with_values({'max_depth_m': 30.0, 'min_depth_m': 40.0, 'cloud_fields': 'xyzw'})
    assert 'min_depth_m' in str(info.value) and 'cloud_fields' in str(info.value)
    # a cross check against the current value of a parameter not in the request
    with pytest.raises(ValueError, match='min_depth_m'):
        s.with_values({'min_depth_m': 1.0}).with_values({'max_depth_m': 0.5})
    # read_only parameters need a restart; the current value again is accepted
    assert check_changes(s.values, {'checkpoint': 'x.ckpt'}) == [f'checkpoint {node_config.RELOAD_REASON}']
    assert check_changes(s.values, {'checkpoint': 'default', 'scale_source': 'model'}) == []
    with pytest.raises(ValueError, match='restart'):
        s.with_values({'adaptation.lr': 1e-4})
    assert s.with_values({'adaptation.lr': 1e-4}, allow_read_only=True).adaptation.lr == 1e-4
    assert check_changes(s.values, {'bogus': 1}) == ['bogus: unknown parameter']


# ----------------------------------------------------------------------------- the node
def test_packnet_node_declares_this_table():
    """packnet_node declares exactly this table (one place; descriptors are checked on a live
    node in test_node_params.py)."""
    pytest.importorskip('rclpy')
    from packnet_ros.ros import packnet_node
    assert packnet_node.PARAMETERS is PARAMETERS
    assert not hasattr(packnet_node, 'RELOAD') and not hasattr(packnet_node, 'CHOICES')
