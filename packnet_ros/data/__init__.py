"""Dataset readers: KITTI raw drives (numpy), training sequences (KITTI, rosbag2, video) and the
PyTorch training dataset over them."""
from .dataset import (ColorJitter, SfmDataset, apply_color_jitter, flip_intrinsics, resize_depth_nearest,
                      resize_depth_preserve, sample_color_jitter)
from .kitti import (EARTH_RADIUS_M, OXTS_FIELDS, KittiDrive, KittiFormatError, parse_calib_file,
                    parse_timestamp_ns)
from .sequences import (BagSequence, CameraIntrinsics, DataError, FrameSequence, KittiSequence, Sample,
                        VideoSequence, expected_translation, load_camera_yaml, load_sequences, select_context)

__all__ = ['KittiDrive', 'KittiFormatError', 'parse_calib_file', 'parse_timestamp_ns',
           'OXTS_FIELDS', 'EARTH_RADIUS_M',
           'Sample', 'DataError', 'CameraIntrinsics', 'load_camera_yaml', 'expected_translation',
           'select_context', 'FrameSequence', 'KittiSequence', 'BagSequence', 'VideoSequence',
           'load_sequences',
           'SfmDataset', 'ColorJitter', 'sample_color_jitter', 'apply_color_jitter', 'flip_intrinsics',
           'resize_depth_nearest', 'resize_depth_preserve']
