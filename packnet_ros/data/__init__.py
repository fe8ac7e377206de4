"""Training data: the PyTorch dataset over the :mod:`packnet_ros.io` sequence readers
(KITTI raw drives, rosbag2 recordings, video) and the config -> sequences mapping."""
from .dataset import (
    ColorJitter,
    SfmDataset,
    apply_color_jitter,
    flip_intrinsics,
    resize_depth_nearest,
    resize_depth_preserve,
    sample_color_jitter,
)
from .sources import count_depth_samples, load_sequences

__all__ = ['load_sequences', 'count_depth_samples', 'SfmDataset', 'ColorJitter', 'sample_color_jitter', 'apply_color_jitter',
           'flip_intrinsics', 'resize_depth_nearest', 'resize_depth_preserve']
