"""``packnet-ros train``: build data, model and Lightning Trainer from a config and run it.

Outputs under the run folder: ``checkpoints/epoch_NNN.ckpt`` and ``last.ckpt`` (Lightning
checkpoints that are also project checkpoints: resume from them, or give them to the node
or ``packnet-ros evaluate``), ``model.ckpt`` (slim project checkpoint of the final weights:
no optimizer state), TensorBoard logs (``tb/``), ``report.json`` (data used, metrics before
and after training, time, hardware).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..checkpoint import load_checkpoint, save_checkpoint
from ..jsonio import write_json
from ..machine import cpu_supports_fast_bf16, machine_info
from .config import TrainConfig
from .heldout import check_heldout_disjoint, heldout_failures, score_heldout
from .module import SfmLightningModule
from .scale_alignment import ScaleAlignment


def resolve_precision(setting: str, accelerator: str) -> str:
    """Lightning precision string for ``auto``: bf16-mixed where bf16 is native, else 16-mixed
    on CUDA, else 32-true."""
    if setting != 'auto':
        return setting
    cuda = torch.cuda.is_available() and accelerator in ('auto', 'gpu', 'cuda')
    if cuda:
        return 'bf16-mixed' if torch.cuda.is_bf16_supported() else '16-mixed'
    return 'bf16-mixed' if cpu_supports_fast_bf16() else '32-true'


def build_data(cfg: TrainConfig):
    """(train dataset, val dataset or None, data summary dict) from the config's sequences."""
    from ..data import SfmDataset, count_depth_samples, load_sequences
    shape = tuple(cfg.model.image_shape)
    train_seqs = load_sequences(cfg.data.train, cfg.base_dir)
    val_seqs = load_sequences(cfg.data.val, cfg.base_dir) if cfg.data.val else []
    train = SfmDataset(train_seqs, shape, augment=cfg.data.augment, repeat=cfg.data.repeat, seed=cfg.seed,
                       depth_resize=cfg.data.depth_resize, zoom=cfg.data.zoom, zoom_prob=cfg.data.zoom_prob)
    val = SfmDataset(val_seqs, shape, augment=False) if val_seqs else None
    summary = {
        'train': [s.describe() for s in train_seqs],
        'val': [s.describe() for s in val_seqs],
        'train_samples': sum(len(s) for s in train_seqs),
        'train_frames': sorted({f for s in train_seqs for f in s.target_sources()}),
        'repeat': cfg.data.repeat,
        'skipped': [list(x) for s in train_seqs for x in getattr(s, 'skipped', [])],
        'velocity_supervision': any(_has_speed(s) for s in train_seqs),
        'lidar_samples': sum(count_depth_samples(s) for s in train_seqs),
    }
    if cfg.loss.mode != 'self_supervised' and summary['lidar_samples'] == 0 and not cfg.loss.completion_teacher_scans:
        raise ValueError(f'loss.mode {cfg.loss.mode} needs LiDAR depth, and no training sample has any '
                         f'(kitti: proj_depth/velodyne/<camera>/; bag: depth_topic; or simulate scans from a '
                         f'teacher: loss.completion_teacher_scans)')
    if cfg.loss.mode != 'supervised':
        bare = [s.name for s in train_seqs if not s.context_dts]
        if bare:
            raise ValueError(f'loss.mode {cfg.loss.mode} needs context frames for the photometric loss; '
                             f'these training sequences have none (empty context_offsets): {bare}')
    return train, val, summary


def weights_digest(module) -> str:
    """SHA-256 of every parameter of the model (names, shapes and float32 bytes, in order):
    equal digests = identical weights (e.g. on every DDP rank after training)."""
    h = hashlib.sha256()
    for name, p in module.model.named_parameters():
        t = p.detach().float().cpu().contiguous()
        h.update(f'{name}:{tuple(t.shape)};'.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _has_speed(seq) -> bool:
    try:
        return len(seq) > 0 and seq[0].speed is not None
    except Exception:  # noqa: BLE001 - a reader that fails here fails again, loudly, in training
        return False


def train(cfg: TrainConfig, resume: str | None = None, out_dir: str | None = None, progress: bool = True) -> dict:
    """Run a training; returns the report written to ``report.json``.

    Args:
        cfg: the loaded config.
        resume: a checkpoint path, or "auto" for the run folder's last.ckpt (if any).
        out_dir: run folder (default: cfg.output_dir or outputs/train/<name>).
    """
    L.seed_everything(cfg.seed, workers=True)
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    out = Path(out_dir or (cfg.resolve(cfg.output_dir) if cfg.output_dir else Path('outputs/train') / cfg.name))
    out.mkdir(parents=True, exist_ok=True)
    if cfg.data.heldout:  # before any training: a held-out scene must not be read by the run
        check_heldout_disjoint(cfg.data.heldout, list(cfg.data.train) + list(cfg.data.val), cfg.base_dir)
    train_ds, val_ds, summary = build_data(cfg)
    t = cfg.data
    loader_kw = dict(num_workers=t.num_workers, persistent_workers=t.num_workers > 0)
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, shuffle=True, drop_last=len(train_ds) > t.batch_size,
                              **loader_kw)
    val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, **loader_kw) if val_ds else None
    module = SfmLightningModule(cfg, summary)

    tc = cfg.trainer
    precision = resolve_precision(tc.precision, tc.accelerator)
    keep = int(tc.keep_checkpoints)
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=out / 'checkpoints', filename='epoch_{epoch:03d}',
                                                  auto_insert_metric_name=False, save_last=True,
                                                  save_top_k=keep, monitor='global_step' if keep >= 0 else None,
                                                  mode='max', every_n_epochs=1, save_on_train_epoch_end=True)
    callbacks = [ckpt_cb, L.pytorch.callbacks.LearningRateMonitor()]
    alignment = None
    if cfg.loss.scale_alignment_step > 0 and summary['velocity_supervision'] and cfg.loss.mode != 'supervised':
        alignment = ScaleAlignment(cfg.loss.scale_alignment_step,
                                   distill_steps=cfg.loss.scale_alignment_distill_steps)
        callbacks.append(alignment)
    logger = L.pytorch.loggers.TensorBoardLogger(str(out), name='tb', version='')
    trainer = L.Trainer(
        max_epochs=tc.max_epochs, max_steps=tc.max_steps, accelerator=tc.accelerator, devices=tc.devices,
        num_nodes=tc.num_nodes, strategy=tc.strategy, precision=precision, logger=logger,
        callbacks=callbacks,
        log_every_n_steps=tc.log_every_n_steps, gradient_clip_val=tc.gradient_clip_val or None,
        num_sanity_val_steps=tc.num_sanity_val_steps, check_val_every_n_epoch=t.val_every_n_epochs,
        enable_progress_bar=progress, default_root_dir=str(out), deterministic=False)

    ckpt_path = None
    if resume == 'auto':
        last = out / 'checkpoints' / 'last.ckpt'
        ckpt_path = str(last) if last.is_file() else None
    elif resume:
        ckpt_path = resume

    before = {}
    if val_loader is not None and ckpt_path is None:
        trainer.validate(module, val_loader, verbose=False)
        before = dict(module.last_val_metrics)
    t0 = time.time()
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    wall = time.time() - t0
    after = {}
    if val_loader is not None:
        trainer.validate(module, val_loader, verbose=False)
        after = dict(module.last_val_metrics)

    report = {
        'name': cfg.name, 'network': module.spec.label,
        'parameters': sum(p.numel() for p in module.model.depth_net.parameters()),
        'image_shape': list(cfg.model.image_shape), 'precision': precision,
        'epochs': int(trainer.current_epoch), 'steps': int(trainer.global_step), 'train_wall_s': round(wall, 1),
        'resumed_from': ckpt_path, 'data': summary, 'val_before': before, 'val_after': after,
        'scale_alignment': dict(module.scale_alignment), 'loss_mode': cfg.loss.mode,
        'hardware': machine_info(), 'config': cfg.as_dict(),
        'rank': int(trainer.global_rank), 'world_size': int(trainer.world_size),
        'weights_sha256': weights_digest(module),
    }
    if trainer.world_size > 1:  # every rank: its weights' digest (equal on all ranks = in sync)
        (out / f'weights_sha256.rank{trainer.global_rank}').write_text(report['weights_sha256'] + '\n')
    # supervised mode never trains PoseNet: the slim checkpoint leaves it out
    pose_net = module.model.pose_net if cfg.loss.mode != 'supervised' else None
    if trainer.is_global_zero:
        model_path = save_checkpoint(out / 'model.ckpt', module.model.depth_net, module.spec,
                                     pose_net,
                                     metadata={'summary': f'{cfg.name}: {report["steps"]} steps',
                                               'training': {k: report[k] for k in ('epochs', 'steps', 'train_wall_s',
                                                                                   'precision', 'hardware')},
                                               'data': summary, 'val_before': before, 'val_after': after,
                                               'scale_alignment': dict(module.scale_alignment),
                                               'licence': cfg.licence},
                                     config={'train': cfg.as_dict()})
        report['model'] = str(model_path)
        failures: list[str] = []
        if cfg.data.heldout:
            report['heldout'] = score_heldout(model_path, cfg.data.heldout, cfg.base_dir)
            failures = heldout_failures(report['heldout'])
            report['heldout_check'] = ('FAILED: no better than untrained weights (median-scaled abs_rel) on '
                                       + ', '.join(failures)) if failures else 'passed'
        if cfg.ship_path and failures:
            report['shipped'] = {'refused': report['heldout_check']}
        elif cfg.ship_path:
            shipped = save_checkpoint(cfg.resolve(cfg.ship_path), module.model.depth_net, module.spec,
                                      pose_net, metadata=load_checkpoint(model_path).metadata,
                                      config={'train': cfg.as_dict()}, pose_dtype=torch.float16,
                                      depth_dtype=getattr(torch, cfg.ship_dtype))
            report['shipped'] = {'path': str(shipped), 'size_mb': round(shipped.stat().st_size / 2 ** 20, 2)}
        write_json(out / 'report.json', report)
    return report
