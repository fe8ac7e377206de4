"""Self-supervised training losses of PackNet-SfM (plain PyTorch).

Photometric (SSIM + L1, minimum reprojection, automasking), edge-aware smoothness and
velocity supervision, combined by :func:`sfm_loss` as packnet-sfm's SelfSupModel /
VelSupModel do.
"""
from .photometric import min_reprojection, photometric_error, ssim
from .sfm import SfmLossConfig, sfm_loss
from .smoothness import edge_aware_smoothness
from .velocity import velocity_loss

__all__ = ['ssim', 'photometric_error', 'min_reprojection', 'edge_aware_smoothness',
           'velocity_loss', 'SfmLossConfig', 'sfm_loss']
