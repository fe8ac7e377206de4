"""Geometry (plain PyTorch/numpy): intrinsics, (un)projection, SE(3) poses, view synthesis."""
from .camera import intrinsics_from_camera_info, pixel_grid, project, scale_intrinsics, transform_points, unproject
from .depth import inv_to_depth
from .pose import euler_to_matrix, invert_pose, pose_vec_to_mat
from .warp import view_synthesis

__all__ = ['inv_to_depth', 'intrinsics_from_camera_info', 'pixel_grid', 'project', 'scale_intrinsics',
           'transform_points', 'unproject', 'euler_to_matrix', 'invert_pose', 'pose_vec_to_mat',
           'view_synthesis']
