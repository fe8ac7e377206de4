"""packnet_ros: monocular metric depth for ROS 2 with PackNet (Guizilini et al., CVPR 2020).

Layers (see docs in README.md): ``networks`` and ``geometry`` (plain PyTorch), then
``losses``/``training``, ``inference`` and ``pointcloud`` (the core, no ROS imports),
then ``ros`` (the only place that imports rclpy) and ``cli``.
"""
import pkgutil as _pkgutil

# The rosidl-generated interfaces (packnet_ros.msg) may be installed in another
# directory than these sources (the venv path installs them into site-packages while
# the sources are an editable install). Merge every packnet_ros directory on sys.path.
__path__ = _pkgutil.extend_path(__path__, __name__)

__version__ = '0.1.0'
