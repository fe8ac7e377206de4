"""Self-supervised training losses of PackNet-SfM (plain PyTorch).

Photometric (SSIM + L1, minimum reprojection, automasking), edge-aware smoothness and
velocity supervision, combined by :func:`sfm_loss` as packnet-sfm's SelfSupModel /
VelSupModel do. Supervised terms (``supervised``): SILog (BTS), scale-and-shift-invariant
(MiDaS), the semi-supervised sfm + sparse-LiDAR combination and the SID ordinal /
cross-entropy losses (DORN).
"""
from .photometric import min_reprojection, photometric_error, ssim
from .sfm import SfmLossConfig, sfm_loss
from .smoothness import edge_aware_smoothness
from .supervised import (
    SUPERVISED_METHODS,
    semi_supervised_loss,
    sid_cross_entropy_loss,
    sid_ordinal_loss,
    silog_loss,
    ssi_loss,
)
from .velocity import velocity_loss

__all__ = ['ssim', 'photometric_error', 'min_reprojection', 'edge_aware_smoothness',
           'velocity_loss', 'SfmLossConfig', 'sfm_loss', 'silog_loss', 'ssi_loss',
           'semi_supervised_loss', 'sid_ordinal_loss', 'sid_cross_entropy_loss', 'SUPERVISED_METHODS']
