"""Held-out discipline of training runs (``data.heldout``, issue 13): a held-out scene may
not be a training source; after training the model and untrained weights are scored on it,
and a model no better than untrained weights is not shipped. Also target-only samples
(empty ``context_offsets``) for LiDAR-supervised training."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import DATA, KITTI_DRIVE, ROOT, load_train_config
from packnet_ros.checkpoint import save_checkpoint
from packnet_ros.io.kitti_sequence import KittiSequence
from packnet_ros.training.config import load_config
from packnet_ros.training.heldout import check_heldout_disjoint, heldout_failures, score_heldout
from packnet_ros.weights import resolve_weights

TRAFFIC = DATA / 'kitti_traffic' / '2011_09_26' / '2011_09_26_traffic_sync'


def _cfg(tmp_path, **over):
    cfg = {
        'name': 'heldout', 'seed': 3, 'licence': 'CC BY-NC-SA 4.0 (test)',
        'model': {'depth_net': 'PackNetSlim01', 'width': 0.25, 'image_shape': [64, 224]},
        'loss': {'mode': 'supervised'},
        'optim': {'lr': 1e-3},
        'data': {'train': [{'type': 'kitti', 'path': str(KITTI_DRIVE), 'context_offsets': [],
                            'with_speed': False}],
                 'batch_size': 2, 'num_workers': 0, 'augment': False, 'heldout': [str(TRAFFIC)]},
        'trainer': {'max_epochs': 1, 'max_steps': 2, 'precision': '32', 'log_every_n_steps': 1, 'threads': 2},
        'ship_path': str(tmp_path / 'shipped.ckpt'),
    }
    return load_train_config(tmp_path, cfg, **over)


def test_target_only_samples_have_no_contexts_and_need_the_supervised_mode(tmp_path):
    seq = KittiSequence(KITTI_DRIVE, context_offsets=[], with_speed=False)
    assert len(seq) == 7 and not seq.skipped  # frames 0 and 6 too: no neighbour is needed
    from packnet_ros.training.train import build_data
    with pytest.raises(ValueError, match='needs context frames'):
        build_data(_cfg(tmp_path, **{'loss.mode': 'semi_supervised'}))
    train, _, summary = build_data(_cfg(tmp_path))
    assert summary['lidar_samples'] == 7 and train[0]['rgb_context'] == []
    assert summary['train_frames'] == [f'kitti:{KITTI_DRIVE.name}:{i}' for i in range(7)]  # named in the checkpoint


def test_a_heldout_scene_that_is_also_trained_on_is_refused(tmp_path):
    check_heldout_disjoint([TRAFFIC], [{'path': str(KITTI_DRIVE)}], '.')
    with pytest.raises(ValueError, match='must not be trained on'):
        check_heldout_disjoint([TRAFFIC], [{'path': str(KITTI_DRIVE)}, {'path': str(TRAFFIC)}], '.')
    with pytest.raises(ValueError, match='must not be trained on'):  # a folder above the drive counts too
        check_heldout_disjoint([TRAFFIC], [{'path': str(DATA / 'kitti_traffic')}], '.')
    with pytest.raises(ValueError, match='not a KITTI drive'):
        check_heldout_disjoint([tmp_path], [], '.')
    from packnet_ros.training.train import train
    cfg = _cfg(tmp_path, **{'data.train': [{'type': 'kitti', 'path': str(TRAFFIC), 'context_offsets': [],
                                            'with_speed': False}]})
    with pytest.raises(ValueError, match='must not be trained on'):
        train(cfg, out_dir=str(tmp_path / 'run'), progress=False)
    assert not (tmp_path / 'run' / 'checkpoints').exists()


@pytest.mark.slow
def test_untrained_weights_are_not_better_than_themselves_so_they_would_not_ship(tmp_path):
    w = resolve_weights('untrained:PackNetSlim01:0.25').checkpoint
    spec = dataclasses.replace(w.spec, image_shape=(64, 224))
    path = save_checkpoint(tmp_path / 'u.ckpt', w.depth_net, spec, None)
    scores = score_heldout(path, [TRAFFIC], '.')
    row = scores[TRAFFIC.name]
    assert row['frames'] == 78
    assert row['trained']['median']['abs_rel'] == pytest.approx(row['untrained']['median']['abs_rel'])
    assert heldout_failures(scores) == [TRAFFIC.name]


@pytest.mark.slow
def test_training_scores_the_heldout_scene_and_ships_only_a_model_better_than_untrained(tmp_path):
    from packnet_ros.training.train import train
    torch.manual_seed(0)
    report = train(_cfg(tmp_path), out_dir=str(tmp_path / 'run'), progress=False)
    row = report['heldout'][TRAFFIC.name]
    assert row['frames'] == 78
    for who in ('trained', 'untrained'):
        for mode in ('metric', 'median'):
            assert 0 < row[who][mode]['abs_rel'] < 10
    better = row['trained']['median']['abs_rel'] < row['untrained']['median']['abs_rel']
    assert row['better_than_untrained'] == better
    assert (tmp_path / 'shipped.ckpt').is_file() == better
    assert report['heldout_check'] == ('passed' if better else report['shipped']['refused'])


def test_recipe_configs_never_train_on_their_heldout_scene():
    """config/recipes: cand_* are trained without kitti_traffic and scored on it; xval_* the
    other way round (trained without kitti_tiny). Loading checks every key; the disjointness
    check is the one training runs first."""
    recipes = sorted((ROOT / 'config' / 'recipes').glob('*.yaml'))
    assert any(p.name.startswith('cand_') for p in recipes) and any(p.name.startswith('xval_') for p in recipes)
    for path in recipes:
        cfg = load_config(path)
        held = [str(cfg.resolve(h)) for h in cfg.data.heldout]
        want = 'kitti_traffic' if path.name.startswith('cand_') else 'kitti_tiny'
        assert len(held) == 1 and want in held[0], (path.name, held)
        check_heldout_disjoint(cfg.data.heldout, list(cfg.data.train) + list(cfg.data.val), cfg.base_dir)
        for spec in list(cfg.data.train) + list(cfg.data.val):
            assert want not in spec['path'] and cfg.resolve(spec['path']).exists(), (path.name, spec['path'])
