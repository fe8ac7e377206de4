"""packnet_node online features with real rclpy on the real kitti_tiny bag (issue 6):
the odometry scale estimate converging, and adaptation stepping without blocking publication."""
from __future__ import annotations

import pytest

from packnet_ros.checkpoint import SELFSUP_CHECKPOINT
from packnet_ros.io.bag import iter_messages
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.ros.bag import write_kitti_bag
from packnet_ros.ros.harness import NodeProcess
from packnet_ros.ros.replay import replay_into_node

pytestmark = pytest.mark.slow
REMAP = {'image': '/camera/image_raw', 'camera_info': '/camera/camera_info', 'odom': '/odom'}


@pytest.fixture(scope='module')
def kitti_bag(kitti_drive, tmp_path_factory):
    out = tmp_path_factory.mktemp('online') / 'kitti'
    write_kitti_bag(KittiDrive(kitti_drive), out)
    return out


def _stats(bag):
    return [m.msg for m in iter_messages(bag, ['/packnet_node/stats'])]


@pytest.mark.skipif(not SELFSUP_CHECKPOINT.is_file(), reason='needs the shipped self-supervised checkpoint (PoseNet)')
def test_odometry_scale_estimate_converges_on_the_kitti_bag(kitti_bag, tmp_path):
    params = {'checkpoint': 'selfsup', 'scale_source': 'odometry'}
    with NodeProcess(params, remap=REMAP, log_path=tmp_path / 'node.log') as node:
        rep = replay_into_node(kitti_bag, tmp_path / 'out', '/camera/image_raw', ['/camera/camera_info', '/odom'],
                               node_process=node, replays=2)
    assert rep.frames_answered == rep.frames_sent == 14
    first, second = _stats(rep.replay_bags[0]), _stats(rep.replay_bags[1])
    assert all(s.scale_source == 'odometry' for s in first + second)
    # frames 0 and 1: no PoseNet sample yet; the published scale is 1 and marked invalid
    assert [s.scale_valid for s in first[:2]] == [False, False]
    assert first[0].scale_status.startswith('waiting') and first[0].scale_factor == 1.0
    # one sample per frame from the third on, all accepted (moving at ~9 m/s, fresh odometry)
    assert [s.scale_samples for s in first] == [0, 0, 1, 2, 3, 4, 5]
    assert all(s.scale_updated and s.scale_status == 'ok' for s in first[2:])
    # the replay restarts (time runs backwards): the estimate is held, then grows again
    assert [s.scale_samples for s in second] == [5, 5, 6, 7, 8, 9, 10]
    assert not second[0].scale_updated
    final = second[-1]
    # the shipped self-supervised model is velocity-supervised: PoseNet's translation is already metric
    assert final.scale_valid and 0.8 < final.scale_factor < 1.25, final
    assert final.scale_spread < 0.15  # converged: consistent samples
    values = [s.scale_factor for s in second[2:]]
    assert max(values) / min(values) < 1.1  # stable over the second pass


def test_adaptation_steps_in_the_node_without_blocking_publication(kitti_bag, tmp_path):
    params = {'checkpoint': 'untrained', 'network': 'PackNetSlim01', 'network_width': 0.25,
              'input_height': 96, 'input_width': 320, 'adaptation.enabled': True, 'adaptation.lr': 1e-4,
              'adaptation.max_steps_per_frame': 3.0, 'adaptation.save_path': str(tmp_path / 'adapted.ckpt')}
    with NodeProcess(params, remap=REMAP, log_path=tmp_path / 'node.log') as node:
        rep = replay_into_node(kitti_bag, tmp_path / 'out', '/camera/image_raw', ['/camera/camera_info', '/odom'],
                               node_process=node, replays=3, max_rate_hz=2.0)
        log = (tmp_path / 'node.log').read_text()
    assert rep.frames_answered == rep.frames_sent == 21, log[-2000:]  # every frame published
    stats = [s for b in rep.replay_bags for s in _stats(b)]
    assert all(s.adaptation_enabled for s in stats)
    last = stats[-1]
    assert last.adaptation_steps >= 3, (last, log[-2000:])
    assert last.weights_version >= 1  # adapted weights were swapped in between frames
    assert last.adaptation_rollbacks == 0 and last.adaptation_last_loss > 0
    assert 'online adaptation ON' in log
