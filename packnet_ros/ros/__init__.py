"""ROS 2 adapters: the only subpackage that imports rclpy (node, conversions, bag tools).

In the venv install the ament resources live in the virtual environment itself; when
AMENT_PREFIX_PATH is unset there, point it at sys.prefix so that ament_index lookups
(package share directory, interface definitions) work without sourcing anything.
"""
import os as _os
import sys as _sys

if not _os.environ.get('AMENT_PREFIX_PATH') and \
        _os.path.isdir(_os.path.join(_sys.prefix, 'share', 'ament_index')):
    _os.environ['AMENT_PREFIX_PATH'] = _sys.prefix
