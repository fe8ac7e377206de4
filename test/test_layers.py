"""Import direction of the package's layers (README "Architecture"), checked on the source.

Every module's imports are read from its AST, including imports inside functions (lazy
imports) and ``try`` blocks, so a backward arrow cannot hide behind a deferred import.

Layers, lowest first; a module may import its own layer and the layers below it:

    core        networks, geometry, losses, imageproc, msgdata, jsonio, machine, paths,
                pointcloud, odometry, scale, checkpoint, weights, inference, adaptation,
                online, pipeline, node_config
    io          plain-Python readers/writers (bags, KITTI, video)
    data        training samples from io readers
    evaluation  metrics, scoring, reports (pure)
    training    Lightning module, configs, training loop
    ros         the only importer of rclpy and ROS message modules
    apps        the ``packnet-ros`` verbs

Within the core, the networks/geometry base never imports the rest of the core.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'packnet_ros'

LAYERS = ['core', 'io', 'data', 'evaluation', 'training', 'ros', 'apps']
SUBPACKAGE_LAYER = {'io': 'io', 'data': 'data', 'evaluation': 'evaluation', 'training': 'training',
                    'ros': 'ros', 'apps': 'apps'}
BASE = {'networks', 'geometry'}
"""The bottom of the core: nn.Modules and geometry import nothing else of the package."""
ROS_MODULES = ('rclpy', 'rcl_interfaces', 'rosgraph_msgs', 'sensor_msgs', 'std_msgs', 'nav_msgs',
               'geometry_msgs', 'std_srvs', 'builtin_interfaces', 'tf2_msgs', 'launch', 'launch_ros',
               'packnet_ros.msg', 'ament_index_python')
"""Modules only ``ros/`` may import (``paths`` may ask the ament index where an installed
package's share folder is, see ALLOWED)."""
ALLOWED = {('packnet_ros.paths', 'ament_index_python')}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob('*.py') if '__pycache__' not in p.parts)


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix('')
    parts = list(rel.parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _name(path) if path.name == '__init__.py' else _name(path).rpartition('.')[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - (node.level - 1)]
                prefix = '.'.join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ''
            out.add(prefix)
            out.update(f'{prefix}.{a.name}' for a in node.names)  # "from . import x" names modules
    return out


def _layer(module: str) -> str:
    parts = module.split('.')
    if len(parts) >= 2 and parts[1] in SUBPACKAGE_LAYER:
        return SUBPACKAGE_LAYER[parts[1]]
    return 'core'


def _is_module(name: str) -> bool:
    parts = name.split('.')
    return (PACKAGE.parent.joinpath(*parts).with_suffix('.py').is_file()
            or PACKAGE.parent.joinpath(*parts, '__init__.py').is_file())


def _violations() -> list[str]:
    problems = []
    for path in _modules():
        me = _name(path)
        my_layer = _layer(me)
        for imp in _imports(path):
            if any(imp == r or imp.startswith(r + '.') for r in ROS_MODULES):
                if my_layer != 'ros' and (me, imp.split('.')[0]) not in ALLOWED:
                    problems.append(f'{me} imports {imp}: only packnet_ros.ros may import ROS modules')
                continue
            if not imp.startswith('packnet_ros.') or not _is_module(imp):
                continue
            other = _layer(imp)
            if LAYERS.index(other) > LAYERS.index(my_layer):
                problems.append(f'{me} ({my_layer}) imports {imp} ({other}): a higher layer')
            if my_layer == 'core' and me.split('.')[1] in BASE and imp.split('.')[1] not in BASE \
                    and imp != 'packnet_ros':
                problems.append(f'{me} (networks/geometry base) imports {imp}')
    return problems


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    src = tmp_path / 'packnet_ros' / 'evaluation' / 'x.py'
    src.parent.mkdir(parents=True)
    src.write_text('from ..ros import bag\n\ndef f():\n    from . import report\n    import rclpy\n')
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / 'packnet_ros'
    try:
        assert {'packnet_ros.ros', 'packnet_ros.ros.bag', 'packnet_ros.evaluation', 'packnet_ros.evaluation.report',
                'rclpy'} <= _imports(src)
    finally:
        PACKAGE = saved


def test_layers_point_one_way():
    problems = _violations()
    assert not problems, 'backward imports:\n' + '\n'.join(sorted(problems))


@pytest.mark.parametrize('module', ['packnet_ros.pipeline', 'packnet_ros.inference', 'packnet_ros.node_config',
                                    'packnet_ros.weights'])
def test_core_modules_import_without_ros(module):
    """The core runs where rclpy is not installed: import it in a process that has none."""
    import subprocess
    import sys
    code = ('import sys\n'
            'class Block:\n'
            '    def find_spec(self, name, *a):\n'
            '        if name.split(".")[0] in ("rclpy", "sensor_msgs", "std_msgs", "nav_msgs", "rcl_interfaces"):\n'
            '            raise ImportError("blocked " + name)\n'
            'sys.meta_path.insert(0, Block())\n'
            f'import {module}\n')
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
