"""Dataset readers (plain numpy; no torch, no ROS): KITTI raw drives."""
from .kitti import (EARTH_RADIUS_M, OXTS_FIELDS, KittiDrive, KittiFormatError, parse_calib_file,
                    parse_timestamp_ns)

__all__ = ['KittiDrive', 'KittiFormatError', 'parse_calib_file', 'parse_timestamp_ns',
           'OXTS_FIELDS', 'EARTH_RADIUS_M']
