"""PoseNet of packnet-sfm (adapted there from SfMLearner; paper Sec. 3.3).

Predicts the 6-DoF motion between a target image and its context images.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _conv_gn(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Stride-2 convolution -> GroupNorm(16) -> ReLU (keys ``0`` conv, ``1`` norm)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=2, padding=(kernel_size - 1) // 2),
        nn.GroupNorm(16, out_channels),
        nn.ReLU(inplace=True))


class PoseNet(nn.Module):
    """Ego-motion network: target + N context images -> N pose vectors.

    Args:
        nb_ref_imgs: number of context images N (2 for back/forward context).
        rotation_mode: only "euler" (as packnet-sfm).

    Forward:
        image (B, 3, H, W) target, context: sequence of N tensors (B, 3, H, W); RGB in [0, 1].
        Returns (B, N, 6) pose vectors (tx, ty, tz, rx, ry, rz): translation in the
        network's unit (metres once trained with velocity supervision) and Euler angles
        in radians. Vector i converts (via :func:`packnet_ros.geometry.pose_vec_to_mat`)
        to T_context_target, mapping target-camera points into context camera i.

    Raises:
        ValueError: the number of context images is not N.
    """

    channels = (16, 32, 64, 128, 256, 256, 256)
    kernels = (7, 5, 3, 3, 3, 3, 3)

    def __init__(self, nb_ref_imgs: int = 2, rotation_mode: str = 'euler', **kwargs):
        super().__init__()
        if rotation_mode != 'euler':
            raise ValueError(f'PoseNet rotation_mode {rotation_mode!r} not supported (only "euler")')
        self.nb_ref_imgs = nb_ref_imgs
        self.rotation_mode = rotation_mode
        in_ch = 3 * (1 + nb_ref_imgs)
        for i, (ch, k) in enumerate(zip(self.channels, self.kernels), start=1):
            setattr(self, f'conv{i}', _conv_gn(in_ch, ch, k))
            in_ch = ch
        self.pose_pred = nn.Conv2d(in_ch, 6 * nb_ref_imgs, kernel_size=1, padding=0)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform convolution weights and zero biases (as packnet-sfm)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, image: torch.Tensor, context: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(context) != self.nb_ref_imgs:
            raise ValueError(f'PoseNet expects {self.nb_ref_imgs} context images, got {len(context)}')
        x = torch.cat([image, *context], 1)
        for i in range(1, len(self.channels) + 1):
            x = getattr(self, f'conv{i}')(x)
        pose = self.pose_pred(x).mean(dim=(2, 3))
        return 0.01 * pose.view(pose.shape[0], self.nb_ref_imgs, 6)
