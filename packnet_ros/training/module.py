"""PackNet-SfM training as a Lightning module (paper Sec. 3, velocity Sec. 3.4), with the
LiDAR-supervised and semi-supervised objectives of ``loss.mode``; the BTS and SID depth heads
(``model.depth_net: BTS-ResNet18``, ``SID-ResNet18`` ...) train with the LiDAR-supervised
objective only.

The networks live under ``self.model.depth_net`` / ``self.model.pose_net``, so the
Lightning checkpoint's ``state_dict`` keys are exactly packnet-sfm's
(``model.depth_net.*``, ``model.pose_net.*``); ``on_save_checkpoint`` adds the project's
plain ``config``/``metadata``/``format``, making every epoch checkpoint loadable by the
node, ``packnet-ros evaluate`` and :func:`packnet_ros.checkpoint.load_checkpoint`, while
Lightning resumes from the same file.
"""
from __future__ import annotations

import math
import time

import lightning as L
import numpy as np
import torch
from torch import nn

from ..checkpoint import FORMAT, ModelSpec
from ..evaluation.metrics import NoValidPixels, compute_depth_metrics
from ..evaluation.scoring import resize_depth
from ..evaluation.visualize import colorize_depth
from ..geometry import inv_to_depth, pose_vec_to_mat
from ..losses import semi_supervised_loss, sfm_loss, sid_cross_entropy_loss, sid_ordinal_loss
from ..networks import (
    DEPTH_HEADS,
    SIDNet,
    build_depth_model,
    build_pose_net,
    canonical_depth_model_name,
    depth_output_kind,
)
from ..networks.sid import sid_depth
from ..weights import resolve_weights
from .completion import SplitSettings, completion_ssi_loss, split_batch
from .config import TrainConfig
from .teacher import Teacher, TeacherError, load_teacher, resize_bilinear, student_inverse_depth, teacher_ssi_loss


class SfmModel(nn.Module):
    """Container of the depth and pose networks (key prefixes ``depth_net.`` / ``pose_net.``);
    ``pose_net`` is None for the BTS / SID heads (trained without PoseNet)."""

    def __init__(self, depth_net: nn.Module, pose_net: nn.Module | None):
        super().__init__()
        self.depth_net = depth_net
        self.pose_net = pose_net


HEAD_LOSS_MODES = ('supervised',)
"""``loss.mode`` values the BTS and SID heads train with (they have no photometric objective
here: no PoseNet, no inverse-depth scales)."""

SID_LOSSES = {'ordinal': sid_ordinal_loss, 'cross_entropy': sid_cross_entropy_loss}
"""``loss.sid_loss`` -> the SID loss on the head's logits (DORN's ordinal loss on 2K ordinal
logits, or the cross-entropy over K bins on classification logits)."""

SID_HEAD_MODES = {'ordinal': 'ordinal', 'cross_entropy': 'classification'}
"""``loss.sid_loss`` -> the :class:`~packnet_ros.networks.SIDNet` ``mode`` whose logits it takes."""

SID_TRAIN_BINS = 71
SID_TRAIN_ALPHA_M = 1.0
"""SID discretisation a trained SID head uses: K = 71 intervals (DORN's KITTI head) from
alpha = 1 m to beta = ``model.max_depth`` (the :class:`~packnet_ros.networks.SIDNet` defaults)."""


def depth_head(depth_net: str) -> str | None:
    """The decoder head of a depth model name: "BTS" or "SID" (ResNet encoder, depth in
    metres), None for PackNet01 / PackNetSlim01 (inverse depth) and unknown names."""
    head = str(depth_net).partition('-')[0]
    return head if DEPTH_HEADS.get(head) is not None else None


def sid_options(sid_loss: str, max_depth: float) -> dict:
    """Keyword options of the SID head a config trains (stored in the checkpoint as
    ``model.depth_net.options``): 71 bins from 1 m to ``max_depth`` metres, ordinal logits
    for ``sid_loss`` 'ordinal', classification logits for 'cross_entropy'.

    Raises:
        ValueError: unknown ``sid_loss``.
    """
    if sid_loss not in SID_HEAD_MODES:
        raise ValueError(f'loss.sid_loss is {sid_loss!r}, expected one of {", ".join(SID_HEAD_MODES)}')
    return {'num_bins': SID_TRAIN_BINS, 'mode': SID_HEAD_MODES[sid_loss], 'alpha': SID_TRAIN_ALPHA_M,
            'beta': float(max_depth)}


def model_spec(cfg: TrainConfig) -> ModelSpec:
    """The :class:`ModelSpec` of the networks a config trains.

    PackNet: the config's names as written. BTS / SID: the registry's name (e.g.
    "BTS-ResNet18"), no pose network, and the model options a checkpoint needs to rebuild
    the head (BTS ``max_depth`` = ``model.max_depth`` metres; SID :func:`sid_options`;
    ``sparse_branch: True`` with ``model.sparse_branch``, ``sparse_guide`` when not 'none').

    Raises:
        ValueError: unknown BTS / SID encoder, or an unknown ``loss.sid_loss`` for SID.
    """
    m = cfg.model
    head = depth_head(m.depth_net)
    name: str = m.depth_net
    pose_net: str | None = m.pose_net
    options: dict = {}
    if head is not None:
        name, pose_net = canonical_depth_model_name(m.depth_net), None
        options = ({'max_depth': float(m.max_depth)} if head == 'BTS'
                   else sid_options(cfg.loss.sid_loss, float(m.max_depth)))
        if m.sparse_branch:
            options['sparse_branch'] = True
            if m.sparse_guide != 'none':
                options['sparse_guide'] = m.sparse_guide
            if m.guide_residual != 'image':
                options['guide_residual'] = m.guide_residual
    return ModelSpec(depth_net=name, version=m.version, width=float(m.width),
                     image_shape=(int(m.image_shape[0]), int(m.image_shape[1])), max_depth=float(m.max_depth),
                     pose_net=pose_net, options=options)


class SfmLightningModule(L.LightningModule):
    """PackNet depth + PoseNet trained with the objective of ``cfg.loss.mode``:

    * ``self_supervised``: photometric, smoothness and velocity losses (:func:`sfm_loss`);
    * ``semi_supervised``: :func:`semi_supervised_loss` of that and the batch's 'depth'
      (projected LiDAR; NaN or 0 = no return), ``loss.supervised_term`` weighted by
      ``loss.lidar_weight``; a batch without LiDAR trains exactly as ``self_supervised``;
    * ``supervised``: ``loss.supervised_term`` on the LiDAR returns only. PoseNet is not
      run, frozen (``requires_grad`` False) and left out of the optimizer.

    The BTS and SID heads (``model.depth_net`` "BTS-ResNet18", "SID-ResNet50" ...; built with
    :func:`packnet_ros.networks.build_depth_model` from :func:`model_spec`) train with
    ``supervised`` only (:data:`HEAD_LOSS_MODES`), without a PoseNet:

    * BTS: ``loss.supervised_term`` on its final depth (B,1,H,W), metres (BTS supervises
      only the final depth; the LPG outputs are not used);
    * SID: ``loss.sid_loss`` (:data:`SID_LOSSES`) on its logits (B,2K,H,W) ordinal or
      (B,K,H,W) classification, at the LiDAR's resolution.

    With ``loss.teacher`` (every mode and network) the loss gains ``loss.teacher_weight`` x
    'teacher_ssi' (:func:`packnet_ros.training.teacher.teacher_ssi_loss`): the frozen
    teacher (:attr:`teacher`) runs on the un-jittered target image ('rgb_original'), and
    the student's inverse depth -- PackNet: the ``loss.num_scales`` scales the photometric
    loss uses, averaged; BTS: 1 / its depth; SID: 1 / the soft-decoded depth of its logits --
    is aligned to the teacher's per image by the SSI loss. Batches without LiDAR get it too.

    Batches (from :class:`packnet_ros.data.SfmDataset`): 'rgb' (B,3,H,W), 'rgb_context'
    list of N (B,3,H,W), 'intrinsics' (B,3,3), 'expected_translation' (B,N) metres (NaN =
    no speed), 'depth' (B,1,H,W) ground truth or NaN.
    """

    def __init__(self, cfg: TrainConfig, data_summary: dict | None = None):
        super().__init__()
        self.cfg = cfg
        self.head = depth_head(cfg.model.depth_net)
        if self.head is not None and cfg.loss.mode not in HEAD_LOSS_MODES:
            raise ValueError(f'model.depth_net {cfg.model.depth_net}: loss.mode {cfg.loss.mode!r} is not supported '
                             f'for the {self.head} head; it trains with loss.mode: {" or ".join(HEAD_LOSS_MODES)} '
                             f'(LiDAR depth) only')
        self.spec = model_spec(cfg)
        depth = build_depth_model(self.spec.depth_net, version=self.spec.version, width=self.spec.width,
                                  **self.spec.options)
        pose = build_pose_net(cfg.model.pose_net or 'PoseNet', nb_ref_imgs=2) if self.head is None else None
        if cfg.model.init_checkpoint:  # weights syntax (packnet_ros.weights); paths relative to the config
            text = cfg.model.init_checkpoint
            if text not in ('default', 'selfsup') and not text.startswith('untrained'):
                text = str(cfg.resolve(text))
            ckpt = resolve_weights(text, with_pose=pose is not None).checkpoint
            _load_init_depth(depth, ckpt.depth_net.state_dict(), text)
            if ckpt.pose_net is not None and pose is not None:
                pose.load_state_dict(ckpt.pose_net.state_dict())
        self.split: SplitSettings | None = None
        """Input / target split of the LiDAR for a network with a sparse branch (None: plain)."""
        self._split_rng = np.random.default_rng(int(cfg.seed))
        if cfg.model.sparse_branch:
            self.split = SplitSettings.from_config(cfg.loss.completion_inputs, cfg.loss.completion_monocular_fraction,
                                                   cfg.loss.completion_lidar_extrinsics, cfg.data.depth_resize)
        self.mode = cfg.loss.mode
        if self.mode == 'supervised' and pose is not None:
            pose.requires_grad_(False)
        self.model = SfmModel(depth, pose)
        self.loss_cfg = cfg.loss  # an SfmLossConfig
        self.data_summary = data_summary or {}
        self._val_rows: list = []
        self._val_images: list = []
        self.last_val_metrics: dict = {}
        self._t_start = time.time()
        self.scale_alignment: dict = {}
        self.teacher: Teacher | None = None
        """The frozen distillation teacher of ``loss.teacher`` (None = off). A plain attribute,
        not a child module: never trained, saved, put in train mode or wrapped by DDP."""
        if cfg.loss.teacher:
            try:
                self.teacher = load_teacher(cfg.loss.teacher, cfg.loss.teacher_output, cfg.base_dir,
                                            threads=int(cfg.trainer.threads))
            except TeacherError:
                raise
            except ValueError as exc:  # any other bad value: name the key
                raise TeacherError(f'loss.teacher {cfg.loss.teacher!r}: {exc}') from None
        self.teacher_scans = bool(cfg.loss.completion_teacher_scans)
        """DMD3C stage 1: frames without LiDAR train on scans simulated from the teacher's depth."""
        if self.teacher_scans and (self.teacher is None or self.teacher.output == 'relative'):
            raise TeacherError(f'loss.completion_teacher_scans needs a teacher with metric depth or inverse depth, '
                               f'got {getattr(self.teacher, "description", "none")} '
                               f'({getattr(self.teacher, "output", "no output")})')

    # -- forward -------------------------------------------------------------------------
    def forward(self, rgb: torch.Tensor):
        """Depth network only: (B,3,H,W) in [0, 1] -> PackNet: inverse depth, 1/m (train: 4
        scales, finest first; eval: (B,1,H,W)); BTS / SID: depth (B,1,H,W), metres."""
        return self.model.depth_net(rgb)

    def poses(self, rgb: torch.Tensor, contexts: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """PoseNet vectors (B,N,6) and the (B,4,4) T_context_target of each context."""
        if self.model.pose_net is None:
            raise RuntimeError(f'{self.spec.label} is trained without a pose network')
        vec = self.model.pose_net(rgb, contexts)
        return vec, [pose_vec_to_mat(vec[:, i].float()) for i in range(vec.shape[1])]

    def compute_loss(self, batch: dict) -> dict:
        """The objective of ``loss.mode`` on one batch; returns the loss dict of
        :func:`sfm_loss` (``self_supervised``) or :func:`semi_supervised_loss` (the LiDAR modes;
        for the BTS / SID heads see :meth:`_head_loss`). 'loss' is a scalar float32 tensor.

        The networks see the augmented images ('rgb', 'rgb_context'); the photometric loss
        compares the un-jittered ones ('rgb_original', 'rgb_context_original'), as
        packnet-sfm's SelfSupModel does.

        With a teacher (``loss.teacher``), 'loss' is that objective + ``loss.teacher_weight``
        x 'teacher_ssi' (added to the dict; see :meth:`_teacher_term`).
        """
        student: list[torch.Tensor] = []
        out = self._objective(batch, student)
        if self.teacher is not None and float(self.loss_cfg.teacher_weight) > 0:
            term = self._teacher_term(student, batch)
            out = {**out, 'loss': out['loss'] + float(self.loss_cfg.teacher_weight) * term, 'teacher_ssi': term}
        return out

    def _teacher_term(self, student: list[torch.Tensor], batch: dict) -> torch.Tensor:
        """SSI of the student's inverse depth against the teacher's on one batch.

        Args:
            student: the student's inverse-depth scales, 1/m, finest first (each (B,1,h,w)).
            batch: needs 'rgb' (B,3,H,W) in [0, 1]; the teacher sees 'rgb_original' (the
                un-jittered image) when present.

        Returns:
            Scalar float32 tensor (:func:`~packnet_ros.training.teacher.teacher_ssi_loss`).
        """
        assert self.teacher is not None
        target = self.teacher.disparity(batch.get('rgb_original', batch['rgb']))
        return teacher_ssi_loss(student, target)

    def _objective(self, batch: dict, student: list[torch.Tensor]) -> dict:
        """The objective of ``loss.mode`` (:meth:`compute_loss` without the teacher); appends
        the student's inverse-depth scales the teacher term compares (1/m) to ``student``."""
        rgb = batch['rgb']
        if self.head is not None:
            sparse, target, teacher_target = None, batch['depth'], None
            if self.split is not None:
                scans = self._teacher_scan_depth(batch) if self.teacher_scans else None
                sparse, target, teacher_target = split_batch(batch['depth'], batch['intrinsics'], self.split,
                                                             self._split_rng, self.cfg.model.sparse_guide, scans)
            return self._head_loss(rgb, target, student if self.teacher is not None else None, sparse,
                                   teacher_target)
        inv_depths = self.model.depth_net(rgb)
        if isinstance(inv_depths, torch.Tensor):
            inv_depths = [inv_depths]
        student.extend(inv_depths[:max(1, int(self.loss_cfg.num_scales))])
        if self.mode == 'supervised':
            return self._supervised_loss(inv_depths, batch['depth'])
        contexts = list(batch['rgb_context'])
        _, poses = self.poses(rgb, contexts)
        expected = batch.get('expected_translation')
        if expected is not None and torch.isnan(expected).all():
            expected = None
        target = batch.get('rgb_original', rgb)
        ref = list(batch.get('rgb_context_original', contexts))
        out = sfm_loss(target, ref, inv_depths, poses, batch['intrinsics'], expected, self.loss_cfg)
        if self.mode == 'semi_supervised':
            c = self.loss_cfg
            out = semi_supervised_loss(out, self._lidar_scales(inv_depths), batch['depth'], c.lidar_weight,
                                       c.supervised_term, c.silog_variance_focus)
        return out

    def _teacher_scan_depth(self, batch: dict) -> torch.Tensor | None:
        """The teacher's dense depth for DMD3C stage-1 scans, or None when every image of the
        batch has LiDAR (the teacher is not run).

        Returns:
            (B, 1, H, W) float32 metres at the size of batch['depth'] (bilinear resize,
            antialiased when shrinking), NaN where the teacher gives no positive depth or
            more than ``model.max_depth``. The teacher sees 'rgb_original' (un-jittered).
        """
        assert self.teacher is not None
        lidar = batch['depth']
        if bool((torch.isfinite(lidar) & (lidar > 0)).flatten(1).any(1).all()):
            return None
        pred = self.teacher.predict(batch.get('rgb_original', batch['rgb']))
        if self.teacher.output == 'inverse_depth':
            pred = torch.where(pred > 0, 1.0 / pred.clamp(min=1e-6), torch.full_like(pred, float('nan')))
        pred = resize_bilinear(pred, tuple(lidar.shape[-2:]))
        ok = torch.isfinite(pred) & (pred > 0) & (pred <= float(self.cfg.model.max_depth))
        return torch.where(ok, pred, torch.full_like(pred, float('nan'))).to(lidar.device)

    def _completion_terms(self, out: dict, depth: torch.Tensor, lidar: torch.Tensor,
                          teacher_target: torch.Tensor | None) -> dict:
        """Add the DMD3C SSI terms (:func:`~packnet_ros.training.completion.completion_ssi_loss`)
        to a head's loss dict: 'teacher_scan_ssi' (weight 1, stage 1: against the teacher depth
        of the frames without LiDAR) and ``loss.completion_ssi_weight`` x 'completion_ssi'
        (stage 2: against the held-out LiDAR returns). ``depth``: (B,1,h,w) student metres."""
        loss = out['loss']
        if teacher_target is not None:
            term = completion_ssi_loss(depth, teacher_target)
            out['teacher_scan_ssi'] = term.detach()
            loss = loss + term
        w = float(self.loss_cfg.completion_ssi_weight)
        if w > 0:
            term = completion_ssi_loss(depth, lidar)
            out['completion_ssi'] = term.detach()
            loss = loss + w * term
        out['loss'] = loss
        return out

    def _lidar_scales(self, inv_depths: list[torch.Tensor]) -> list[torch.Tensor]:
        """Depth (metres, float32) of the scales the photometric loss uses (the first num_scales)."""
        return [inv_to_depth(d.float()) for d in inv_depths[:max(1, int(self.loss_cfg.num_scales))]]

    def _supervised_loss(self, inv_depths: list[torch.Tensor], lidar: torch.Tensor) -> dict:
        """``loss.supervised_term`` on the LiDAR returns alone. A batch without any return
        gives a zero loss that still depends on every depth parameter (each DDP rank must
        run backward through the same parameters)."""
        return self._depth_supervised_loss(self._lidar_scales(inv_depths), inv_depths, lidar)

    def _depth_supervised_loss(self, depths: list[torch.Tensor], outputs: list[torch.Tensor],
                               lidar: torch.Tensor) -> dict:
        """``loss.supervised_term`` of predicted ``depths`` (each (B,1,h,w), metres) against
        ``lidar`` (B,1,H,W), metres (NaN or 0 = no return); without any return the loss is
        0 x the sum of the network ``outputs``, so it reaches every depth parameter.

        Returns:
            dict: 'loss' (scalar float32), 'supervised' (the term, 0 without LiDAR) and
            'lidar_images' (images with at least one return, float32).
        """
        c = self.loss_cfg
        zero = depths[0].new_zeros((), dtype=torch.float32)
        out = semi_supervised_loss({'loss': zero}, depths, lidar, 1.0, c.supervised_term, c.silog_variance_focus)
        if not out['lidar_images'] > 0:
            out['loss'] = sum(d.float().sum() for d in outputs) * 0.0
        del out['self_supervised']
        return out

    def _head_loss(self, rgb: torch.Tensor, lidar: torch.Tensor, student: list | None = None,
                   sparse: torch.Tensor | None = None, teacher_target: torch.Tensor | None = None) -> dict:
        """The supervised loss of a BTS / SID head on one batch.

        Args:
            rgb: (B,3,H,W) images in [0, 1].
            lidar: (B,1,H,W) projected LiDAR depth, metres; NaN or 0 = no return (with a
                sparse branch: the target returns, those not in ``sparse``).
            sparse: (B,1,H,W) sparse input depth for a network with a sparse branch, metres,
                0 = none; None = monocular.
            student: if given, receives the head's inverse depth (B,1,H,W), 1/m, for the
                teacher term (BTS: 1 / depth; SID: 1 / the soft-decoded depth of the logits,
                differentiable, at the logits' resolution).
            teacher_target: (B,1,H,W) teacher depth, metres, NaN = none: DMD3C stage 1's SSI
                target (:meth:`_completion_terms`); None = none.

        Returns:
            dict: 'loss' (scalar float32), 'supervised' (the unweighted term, 0 without
            LiDAR) and 'lidar_images' (float32 count). BTS: ``loss.supervised_term`` on its
            depth (metres); SID: ``loss.sid_loss`` on its logits (bilinearly resized to the
            LiDAR's size when they differ). A batch without any return gives a zero loss
            that still reaches every depth parameter (DDP).
        """
        net = self.model.depth_net
        if not isinstance(net, SIDNet):
            depth = net(rgb) if sparse is None else net(rgb, sparse.to(rgb.dtype))
            if student is not None:
                student.append(student_inverse_depth(depth))
            out = self._depth_supervised_loss([depth.float()], [depth], lidar)
            return self._completion_terms(out, depth, lidar, teacher_target)
        logits = net.logits(rgb) if sparse is None else net.logits(rgb, sparse.to(rgb.dtype))
        if tuple(logits.shape[-2:]) != tuple(lidar.shape[-2:]):
            logits = nn.functional.interpolate(logits, size=tuple(lidar.shape[-2:]), mode='bilinear',
                                               align_corners=False)
        if student is not None:
            student.append(student_inverse_depth(sid_depth(logits, net.head.bins, net.head.mode, 'soft')))
        gt = lidar.to(device=logits.device, dtype=torch.float32)
        lidar_images = (torch.isfinite(gt) & (gt > 0)).flatten(1).any(1).float().sum()
        if int(lidar_images) == 0:
            loss = logits.float().sum() * 0.0
            out = {'loss': loss, 'supervised': logits.new_zeros((), dtype=torch.float32),
                   'lidar_images': lidar_images}
        else:
            supervised = SID_LOSSES[self.loss_cfg.sid_loss](logits, gt, None, net.head.bins)
            out = {'loss': supervised, 'supervised': supervised, 'lidar_images': lidar_images}
        if teacher_target is None and not float(self.loss_cfg.completion_ssi_weight) > 0:
            return out
        return self._completion_terms(out, sid_depth(logits, net.head.bins, net.head.mode, 'soft'), gt,
                                      teacher_target)

    # -- Lightning hooks -----------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        out = self.compute_loss(batch)
        bs = batch['rgb'].shape[0]
        for k, v in out.items():
            self.log(f'train/{k}', v.detach().float() if torch.is_tensor(v) else float(v),
                     prog_bar=(k == 'loss'), batch_size=bs, on_step=True, on_epoch=True)
        self.log('global_step', float(self.global_step), on_step=False, on_epoch=True, batch_size=bs)
        if not torch.isfinite(out['loss']):
            raise FloatingPointError(f'non-finite loss at step {self.global_step}: {out}')
        return out['loss']

    def validation_step(self, batch, batch_idx):
        out = self.model.depth_net(batch['rgb'])
        out = out[0] if isinstance(out, (list, tuple)) else out
        if depth_output_kind(self.model.depth_net) == 'depth':  # BTS, SID: metres
            depth = out.float().cpu().numpy()
        else:  # PackNet: inverse depth, 1/m
            depth = inv_to_depth(out.float()).cpu().numpy()
        gts = batch['depth'].float().cpu().numpy()
        for b in range(depth.shape[0]):
            gt = gts[b, 0]
            if not np.isfinite(gt).any():
                continue
            pred = resize_depth(depth[b, 0], gt.shape, self.spec.max_depth)
            try:
                row = {m: compute_depth_metrics(pred, gt, 0.0, self.spec.max_depth, 'garg', median_scaling=(m == 'median'))
                       for m in ('metric', 'median')}
            except NoValidPixels:
                continue
            self._val_rows.append(row)
            if len(self._val_images) < 2:
                self._val_images.append((batch['rgb'][b].float().cpu().numpy(), depth[b, 0], gt))

    def on_validation_epoch_end(self):
        rows, self._val_rows = self._val_rows, []
        images, self._val_images = self._val_images, []
        if not rows:
            return
        metrics = {}
        for mode in ('metric', 'median'):
            for k in ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1'):
                metrics[f'{mode}_{k}'] = float(np.mean([getattr(r[mode], k) for r in rows]))
        metrics['scale_ratio'] = float(np.median([r['metric'].scale_ratio for r in rows]))
        metrics['n_frames'] = len(rows)
        self.last_val_metrics = metrics
        for k, v in metrics.items():
            self.log(f'val/{k}', float(v), sync_dist=True)
        self._log_images(images)

    def _log_images(self, images) -> None:
        logger = getattr(self, 'logger', None)
        exp = getattr(logger, 'experiment', None)
        if exp is None or not hasattr(exp, 'add_image'):
            return
        for i, (rgb, pred, gt) in enumerate(images):
            img = (np.clip(rgb.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
            pred_c = colorize_depth(pred)
            pred_c = np.asarray(__import__('cv2').resize(pred_c, (img.shape[1], img.shape[0])))
            stacked = np.concatenate([img, pred_c], 0)
            exp.add_image(f'val/sample_{i}', stacked, self.current_epoch, dataformats='HWC')

    def configure_optimizers(self):
        o = self.cfg.optim
        groups = [{'params': self.model.depth_net.parameters(), 'lr': o.lr}]
        if self.mode != 'supervised' and self.model.pose_net is not None:
            groups.append({'params': self.model.pose_net.parameters(), 'lr': o.pose_lr})
        opt = torch.optim.Adam(groups, weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)
        return {'optimizer': opt, 'lr_scheduler': {'scheduler': sched, 'interval': 'epoch'}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Make the Lightning checkpoint a project checkpoint too (plain config + metadata)."""
        checkpoint['format'] = FORMAT
        checkpoint['config'] = {**self.spec.to_config(), 'train': _plain(self.cfg.as_dict())}
        checkpoint['metadata'] = {
            'network': self.spec.label,
            'epoch': int(self.current_epoch),
            'global_step': int(self.global_step),
            'train_wall_s': round(time.time() - self._t_start, 1),
            'data': self.data_summary,
            'val_metrics': dict(self.last_val_metrics),
            'scale_alignment': dict(self.scale_alignment),
            'licence': self.cfg.licence,
            'torch_version': str(torch.__version__),
        }


def _load_init_depth(depth: nn.Module, state: dict, source: str) -> None:
    """``model.init_checkpoint``'s depth weights into ``depth``; a network with a sparse branch
    may start from a monocular checkpoint (the branch keeps its fresh init).

    Raises:
        RuntimeError: any other missing or unexpected key (another architecture).
    """
    missing, unexpected = depth.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith('sparse_branch.')]
    if missing or unexpected:
        raise RuntimeError(f'model.init_checkpoint {source}: its depth network does not match model.depth_net '
                           f'(missing {missing[:5]}, unexpected {list(unexpected)[:5]})')


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
