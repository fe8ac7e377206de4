"""Self-supervised training (PackNet-SfM with velocity supervision) on Lightning.

``packnet-ros train --config config/train_*.yaml``; see :mod:`packnet_ros.training.train`.
"""
