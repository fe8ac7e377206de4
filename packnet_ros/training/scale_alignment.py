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
* depth network: a sigmoid head cannot scale every depth by one factor through its bias,
  so the network is re-fitted to itself: a frozen copy (the teacher) predicts depth D, and
  the network, started from a bias shift (exact at the median inverse depth, with the
  coarser inverse depths that feed the next decoder stage compensated), is trained for a
  few dozen steps to predict s * D at all four scales (L1 on log inverse depth). This
  keeps the learned structure intact while moving it to metres.

Training then continues with the unchanged objective (photometric + smoothness + velocity
0.1), which removes the residual within tens of steps. This is an addition to
packnet-sfm's procedure, enabled per config (``loss.scale_alignment_step``).
"""
from __future__ import annotations

import contextlib
import copy
import math

import lightning as L
import torch
from torch.utils.data import DataLoader


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


def distill_scale(model, teacher, batches, s: float, lr: float = 1e-3,
                  forward_context=contextlib.nullcontext) -> float:
    """Fit ``model.depth_net`` to ``s`` x the frozen ``teacher``'s depth (log inverse depth L1,
    all scales); one Adam step per batch. ``forward_context()`` wraps the student's forward
    (the trainer's mixed-precision context). Returns the last loss."""
    net = model.depth_net
    net.train()
    teacher.train()
    opt = torch.optim.Adam(net.parameters(), lr)
    loss = torch.zeros(())
    for b in batches:
        with torch.no_grad():
            target = [torch.log(t.float().clamp(min=1e-6) / s) for t in teacher(b['rgb'])]
        with forward_context():
            pred = net(b['rgb'])
        loss = sum((torch.log(p.float().clamp(min=1e-6)) - t).abs().mean() for p, t in zip(pred, target)) / len(pred)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


class ScaleAlignment(L.Callback):
    """Lightning callback: align the metric scale once at ``step`` (see module docstring).

    Args:
        step: global step at which to align.
        n_batches: training batches used to estimate the scale.
        distill_steps: self-distillation steps that move the depth network to the new scale.
        distill_lr: their Adam learning rate.
    """

    def __init__(self, step: int, n_batches: int = 4, distill_steps: int = 60, distill_lr: float = 1e-3):
        self.step = int(step)
        self.n_batches = n_batches
        self.distill_steps = int(distill_steps)
        self.distill_lr = float(distill_lr)
        self.done = False
        self.scale: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.done or trainer.global_step < self.step:
            return
        self.done = True
        loader = trainer.train_dataloader
        # a separate single-process loader: never disturb the training loop's (persistent) iterator
        own = DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=True, num_workers=0, drop_last=True)

        def batches(n):
            """n batches, streamed (the loader is cycled as needed)."""
            k = 0
            while k < n:
                for b in own:
                    yield pl_module.transfer_batch_to_device(b, pl_module.device, 0)
                    k += 1
                    if k >= n:
                        return

        model = pl_module.model
        s = estimate_scale(model, batches(self.n_batches))
        if s is None or not math.isfinite(s) or s <= 0:
            pl_module.print(f'[scale alignment] skipped at step {trainer.global_step}: no sample carries speed')
            return
        teacher = copy.deepcopy(model.depth_net)
        for p in teacher.parameters():
            p.requires_grad_(False)
        delta = apply_scale(model, s, next(batches(1))['rgb'])
        loss = distill_scale(model, teacher, batches(self.distill_steps), s, self.distill_lr,
                             trainer.precision_plugin.forward_context) \
            if self.distill_steps > 0 else float('nan')
        self.scale = s
        pl_module.scale_alignment = {'step': int(trainer.global_step), 'scale': s, 'logit_shift': delta,
                                     'distill_steps': self.distill_steps, 'distill_loss': loss}
        pl_module.log('train/scale_alignment', s)
        pl_module.print(f'[scale alignment] step {trainer.global_step}: scale x{s:.3f}, head logit shift '
                        f'{delta:+.3f}, self-distillation {self.distill_steps} steps (final log-L1 {loss:.4f})')

    def state_dict(self):
        return {'done': self.done, 'scale': self.scale}

    def load_state_dict(self, state):
        self.done = bool(state.get('done', False))
        self.scale = state.get('scale')
