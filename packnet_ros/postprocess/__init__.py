"""Post-processing of the depth pipeline's outputs (pure numpy / torch, no ROS).

:mod:`.obstacles`: navigation outputs in the vehicle frame (a LaserScan-like scan and a
ground-free, range-limited, voxel-downsampled obstacle cloud) and the pipeline stages
that produce them.
"""
from __future__ import annotations

from .obstacles import (
    OPTICAL_TO_BODY,
    LaserScanData,
    ObstacleCloud,
    ObstacleSettings,
    ObstacleStage,
    ScanStage,
    TargetPoints,
    camera_pose_matrix,
    camera_to_target,
    fit_ground_plane,
    laser_scan,
    navigation_stages,
    obstacle_cloud,
    scan_fov,
    voxel_downsample,
)

__all__ = ['OPTICAL_TO_BODY', 'LaserScanData', 'ObstacleCloud', 'ObstacleSettings', 'ObstacleStage', 'ScanStage',
           'TargetPoints', 'camera_pose_matrix', 'camera_to_target', 'fit_ground_plane', 'laser_scan',
           'navigation_stages', 'obstacle_cloud', 'scan_fov', 'voxel_downsample']
