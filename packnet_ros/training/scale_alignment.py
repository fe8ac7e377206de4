"""One-time metric-scale alignment during velocity-supervised training.

The photometric loss is invariant to scaling depth and ego-motion together, so a network
trained from scratch first learns structure and motion direction at an arbitrary scale
(packnet-sfm's initialisation starts every pixel near 1 m). The weak velocity loss
(weight 0.1) then has to move that common scale, which through Adam's bounded updates
takes tens of thousands of steps: far more than a short run on a few frames has. Once
the structure has formed, this callback aligns the scale in one go from the odometry:

    s = median over training samples with speed of (v * dt) / ||t_pred||

* PoseNet: the translation rows of its last convolution (and their biases) are multiplied
  by s, which scales every predicted translation by exactly s;
* depth network: the inverse-depth heads' biases are shifted so that the median inverse
  depth becomes inv / s (sigmoid heads: the shift is exact at the median, approximate
  elsewhere), and the coarser inverse depths that feed the next decoder stage as an input
  channel get that channel's weights multiplied by s, compensating the change.

Training then continues with the unchanged objective (photometric + smoothness + velocity
0.1), which removes the residual within tens of steps. This is an addition to
packnet-sfm's procedure, enabled per config (``loss.scale_alignment_step``).
"""
from __future__ import annotations

import math

import lightning as L
import torch


@torch.no_grad()
def estimate_scale(model, batches) -> float | None:
    """median(expected translation / ||PoseNet translation||) over batches; None without speed."""
    ratios = []
    for b in batches:
        vec = model.pose_net(b['rgb'], list(b['rgb_context']))
        t = vec[..., :3].float().norm(dim=-1)
        e = b['expected_translation'].to(t.device)
        ok = torch.isfinite(e) & (t > 1e-6)
        ratios.append((e[ok] / t[ok]).flatten())
    ratios = torch.cat(ratios) if ratios else torch.empty(0)
    return float(ratios.median()) if ratios.numel() else None


@torch.no_grad()
def apply_scale(model, s: float, rgb: torch.Tensor) -> float:
    """Rescale PoseNet translations by ``s`` and depth by ~``s`` (see module docstring).

    Returns:
        the logit shift applied to the inverse-depth heads.
    """
    pose = model.pose_net.pose_pred
    for i in range(pose.out_channels // 6):
        pose.weight[6 * i:6 * i + 3] *= s
        pose.bias[6 * i:6 * i + 3] *= s
    net = model.depth_net
    was_training = net.training
    net.eval()
    inv = net(rgb)
    net.train(was_training)
    p = float((inv.float() * net.min_depth).clamp(1e-4, 1 - 1e-4).median())
    q = min(max(p / s, 1e-6), 1 - 1e-6)
    delta = math.log(q / (1 - q)) - math.log(p / (1 - p))
    for head in (net.disp1_layer, net.disp2_layer, net.disp3_layer, net.disp4_layer):
        head.conv1.bias += delta
    for iconv in (net.iconv3, net.iconv2, net.iconv1):  # their last input channel is the coarser inverse depth
        iconv.conv_base.weight[:, -1] *= s
    return delta


class ScaleAlignment(L.Callback):
    """Lightning callback: align the metric scale once at ``step`` (see module docstring).

    Args:
        step: global step at which to align.
        n_batches: training batches used to estimate the scale.
    """

    def __init__(self, step: int, n_batches: int = 4):
        self.step = int(step)
        self.n_batches = n_batches
        self.done = False
        self.scale: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.done or trainer.global_step < self.step:
            return
        self.done = True
        batches = []
        for b in trainer.train_dataloader:
            batches.append(pl_module.transfer_batch_to_device(b, pl_module.device, 0))
            if len(batches) >= self.n_batches:
                break
        s = estimate_scale(pl_module.model, batches)
        if s is None or not math.isfinite(s) or s <= 0:
            pl_module.print(f'[scale alignment] skipped at step {trainer.global_step}: no sample carries speed')
            return
        delta = apply_scale(pl_module.model, s, batches[0]['rgb'])
        self.scale = s
        pl_module.scale_alignment = {'step': int(trainer.global_step), 'scale': s, 'logit_shift': delta}
        pl_module.log('train/scale_alignment', s)
        pl_module.print(f'[scale alignment] step {trainer.global_step}: scale x{s:.3f}, head logit shift {delta:+.3f}')

    def state_dict(self):
        return {'done': self.done, 'scale': self.scale}

    def load_state_dict(self, state):
        self.done = bool(state.get('done', False))
        self.scale = state.get('scale')
