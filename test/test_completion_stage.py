"""Depth completion as a pipeline stage (packnet_ros.completion.stage): the sparse input
through ``FrameInput.sparse``, IP-Basic where it gives a value and the monocular depth
elsewhere, REP 117 marking, every fallback with its reason, the extrinsics text of the
node's ``completion.extrinsics``, and the stage in a real pipeline on a kitti_traffic frame.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import DATA
from packnet_ros.completion import Subsample, beam_rings
from packnet_ros.completion.sparse import project_to_depth, project_with_count
from packnet_ros.completion.stage import (
    CompletionSettings,
    CompletionStage,
    SparseInput,
    insert_completion,
    parse_extrinsics,
    resample_sparse,
    rotation_rpy,
    transform_points,
)
from packnet_ros.io.kitti import KittiDrive
from packnet_ros.node_config import validate
from packnet_ros.pipeline import FrameInput, PipelineSettings, pipeline_from_weights
from packnet_ros.pointcloud import depth_to_xyz
from packnet_ros.weights import resolve_weights

TRAFFIC = DATA / 'kitti_traffic' / '2011_09_26' / '2011_09_26_traffic_sync'
H, W = 48, 64
K = np.array([[50.0, 0.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]])
T0 = 1_000_000_000


def _wall(z: float = 10.0, step: int = 4) -> np.ndarray:
    """Points of a fronto-parallel wall at depth z seen by K, one per ``step`` rows and columns
    (sparse scan lines), in the camera optical frame."""
    v, u = np.mgrid[0:H:step, 0:W]
    x = (u.ravel() - K[0, 2]) * z / K[0, 0]
    y = (v.ravel() - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, np.full(x.shape, z)], -1)


def _frame(sparse: SparseInput | None, depth: float = 3.0, K_=K, confidence=None):
    """A FrameState-like object after the ``depth`` stage: monocular depth ``depth`` everywhere."""
    return SimpleNamespace(input=FrameInput(np.zeros((H, W, 3), np.uint8), K_, T0, sparse=sparse),
                           depth=np.full((H, W), depth, np.float32), K=K_, confidence=confidence, completion=None)


SETTINGS = PipelineSettings()


# ----------------------------------------------------------------------------- the stage
def test_completed_where_ipbasic_gives_a_value_monocular_elsewhere():
    stage = CompletionStage('ipbasic')
    pts = _wall(10.0)
    pts = pts[pts[:, 0] < 0]  # the left half of the image only: the right half stays monocular
    f = _frame(SparseInput(T0, points=pts))
    stage(f, SETTINGS)
    st = f.completion
    assert st.mode == 'completion' and st.label == 'completion' and st.reason == ''
    _, n = project_with_count(pts, K, (H, W))
    assert st.sparse_points == n == len(pts) and st.sparse_pixels == int((project_to_depth(pts, K, (H, W)) > 0).sum())
    filled = f.depth != 3.0
    assert 0 < st.completed_ratio < 1 and st.completed_ratio == pytest.approx(filled.mean())
    # a plane stays a plane (IP-Basic's blur mixes the empty pixels into its last 2 columns)
    np.testing.assert_allclose(f.depth[:, :30], 10.0, rtol=1e-4)
    assert filled[:, :30].all() and not filled[:, -10:].any()  # IP-Basic reaches ~15 px beyond the last return
    assert f.depth.dtype == np.float32 and np.isfinite(f.depth).all()


def test_completed_values_get_the_rep117_marking_and_confidence_one():
    stage = CompletionStage('ipbasic:multiscale')
    f = _frame(SparseInput(T0, points=_wall(10.0)), confidence=np.full((H, W), 0.2, np.float32))
    stage(f, PipelineSettings(max_depth_m=8.0))
    assert f.completion.mode == 'completion' and f.completion.completed_ratio == 1.0
    assert np.all(f.depth == np.inf) and np.all(f.confidence == 1.0)
    f = _frame(SparseInput(T0, points=_wall(10.0)))
    stage(f, PipelineSettings(min_depth_m=12.0, max_depth_m=80.0))
    assert np.all(f.depth == -np.inf)


def test_a_sparse_depth_image_of_another_size_keeps_its_returns():
    sparse = project_to_depth(_wall(10.0, step=3), K * [[2], [2], [1]], (2 * H, 2 * W))
    small, n = resample_sparse(sparse, (H, W))
    assert n == int((sparse > 0).sum()) and small.shape == (H, W) and np.all(small[small > 0] == 10.0)
    rows = np.unique(np.nonzero(sparse)[0])
    assert np.array_equal(np.unique(np.nonzero(small)[0]), np.floor(rows / 2 + 0.5))  # every scan line kept
    sparse[0, 0], sparse[0, 1] = np.nan, -1.0  # no value
    f = _frame(SparseInput(T0, depth=sparse))
    CompletionStage('ipbasic')(f, SETTINGS)
    assert f.completion.mode == 'completion' and f.completion.sparse_points == int((sparse > 0).sum())
    np.testing.assert_allclose(f.depth[f.depth != 3.0], 10.0, rtol=1e-4)


@pytest.mark.parametrize('sparse, kind, words', [
    (None, 'no_input', 'no sparse input'),
    (SparseInput(T0 + 150_000_000, points=_wall()), 'stale', 'stale: the nearest sparse input is 0.150 s'),
    (SparseInput(T0 - 150_000_000, points=_wall()), 'stale', '0.150 s from the image'),
    (SparseInput(T0, problem='no transform from "velodyne"', problem_kind='no_transform'), 'no_transform',
     'no transform from "velodyne"'),
    (SparseInput(T0, points=np.full((100, 3), np.nan)), 'empty', 'no finite point in the sparse input (100 points)'),
    (SparseInput(T0, points=np.zeros((0, 3))), 'empty', 'no finite point'),
    (SparseInput(T0, points=-_wall()), 'empty', 'no sparse return inside the image'),  # behind the camera
    (SparseInput(T0, depth=np.zeros((H, W), np.float32)), 'empty', 'no sparse return inside the image'),
    (SparseInput(T0), 'empty', 'empty sparse input'),
    (SparseInput(T0, points=np.zeros((5, 2))), 'input', 'sparse points must be (N, 3)'),
])
def test_unusable_input_falls_back_to_monocular_and_says_why(sparse, kind, words):
    f = _frame(sparse)
    CompletionStage('ipbasic', CompletionSettings(max_staleness_s=0.1))(f, SETTINGS)
    st = f.completion
    assert st.mode == 'monocular' and st.kind == kind and words in st.reason, st
    assert st.label == f'monocular (fallback: {st.reason})' and st.sparse_points == 0
    assert np.all(f.depth == 3.0)


def test_nan_points_are_ignored_and_staleness_is_inclusive():
    pts = _wall()
    pts[::2] = np.nan
    f = _frame(SparseInput(T0 + 100_000_000, points=pts))
    CompletionStage('ipbasic', CompletionSettings(max_staleness_s=0.1))(f, SETTINGS)
    assert f.completion.mode == 'completion' and f.completion.sparse_points == len(pts) // 2
    f = _frame(SparseInput(T0, points=_wall()), K_=None)
    CompletionStage('ipbasic')(f, SETTINGS)
    assert f.completion.kind == 'no_intrinsics'
    with pytest.raises(ValueError, match='max_staleness_s'):
        CompletionSettings(max_staleness_s=-1.0)
    with pytest.raises(ValueError, match='unknown'):
        CompletionStage('bilinear')


# ----------------------------------------------------------------------------- extrinsics text
def test_extrinsics_text_forms():
    assert parse_extrinsics('') is None and parse_extrinsics('   ') is None and parse_extrinsics(None) is None
    T = np.eye(4)
    T[:3, :3] = rotation_rpy(0.1, -0.2, 0.3)
    T[:3, 3] = (0.5, -1.0, 2.0)
    assert np.allclose(parse_extrinsics(' '.join(map(str, T.ravel().tolist()))), T)
    assert np.allclose(parse_extrinsics('[' + ', '.join(map(str, T[:3].ravel().tolist())) + ']'), T)
    assert np.allclose(parse_extrinsics('0.5 -1.0 2.0 0.1 -0.2 0.3'), T)
    # URDF rpy: yaw about z first seen from the fixed frame; a quarter turn of yaw maps x to y
    assert np.allclose(rotation_rpy(0, 0, math.pi / 2) @ [1, 0, 0], [0, 1, 0])
    assert np.allclose(rotation_rpy(0, -math.pi / 2, 0) @ [1, 0, 0], [0, 0, 1])
    for bad, words in (('1 2 3', 'got 3'), ('a b c d e f', 'expected numbers'), ('1 2 3 nan 0 0', 'finite'),
                       (' '.join(['1'] * 16), 'last row'), (' '.join(['1'] * 12), 'not a rotation')):
        with pytest.raises(ValueError, match=words):
            parse_extrinsics(bad)
    [e] = validate({'completion.extrinsics': '1 2 3'})
    assert e.startswith("completion.extrinsics: '1 2 3': expected 6 numbers")
    assert validate({'completion.extrinsics': '0 0 0 0 0 0'}) == []
    [e] = validate({'completion.method': 'bts'})
    assert e == "completion.method: 'bts' is not one of none, ipbasic, ipbasic:multiscale, learned"


def test_kitti_extrinsics_as_text_move_the_scan_like_the_calibration():
    drive = KittiDrive(TRAFFIC)
    T = drive.T_cam_velo
    assert np.allclose(parse_extrinsics(' '.join(repr(float(v)) for v in T.ravel())), T, atol=0)
    # the same transform as x y z roll pitch yaw (R = Rz Ry Rx)
    R = T[:3, :3]
    pitch = math.asin(-R[2, 0])
    roll, yaw = math.atan2(R[2, 1], R[2, 2]), math.atan2(R[1, 0], R[0, 0])
    T6 = parse_extrinsics(' '.join(repr(float(v)) for v in (*T[:3, 3], roll, pitch, yaw)))
    assert np.abs(T6[:3, :3] - R).max() < 1e-5  # KITTI's calibration rotation is orthonormal to ~1e-6
    p = drive.velodyne(0)[:, :3]
    assert np.abs(transform_points(p, T6) - transform_points(p, T)).max() < 1e-4


# ----------------------------------------------------------------------------- in a pipeline
@pytest.mark.usefixtures('one_intra_op_thread')
def test_the_stage_in_a_pipeline_on_a_kitti_traffic_frame():
    """Inserted after depth (after refine when there is one); the published depth and the
    cloud are the completed depth; a frame without sparse input is the monocular depth."""
    drive = KittiDrive(TRAFFIC)
    weights = resolve_weights('untrained:PackNetSlim01:0.25', with_pose=False)
    pipe = pipeline_from_weights(weights.checkpoint, PipelineSettings(), device='cpu', precision='fp32',
                                 input_shape=(96, 320))
    pipe.insert_stage(SimpleNamespace(name='refine', __call__=None), after='depth')  # placeholder: order only
    stage = insert_completion(pipe, 'ipbasic')
    assert [s.name for s in pipe.stages] == ['infer', 'scale', 'depth', 'refine', 'completion', 'cloud']
    assert insert_completion(pipe, 'none') is None
    pipe.stages.remove(pipe.stages[3])

    i = drive.frames[5]
    v = drive.velodyne(i)
    keep = Subsample.parse('beams:16').mask(len(v), beam_rings(v[:, :3]))
    cam = transform_points(v[keep, :3], drive.T_cam_velo)
    t = drive.timestamp_ns(i)
    mono = pipe.process(FrameInput(drive.image(i), drive.K, t))
    out = pipe.process(FrameInput(drive.image(i), drive.K, t, sparse=SparseInput(t, points=cam)))
    assert mono.completion.label == 'monocular (fallback: no sparse input)'
    assert out.completion.mode == 'completion' and out.completion.sparse_points > 1000
    assert out.depth.shape == (96, 320) and not np.isnan(out.depth).any()
    assert out.completion.completed_ratio > 0.9 and 'completion_ms' in out.timings_ms
    # the cloud is the completed depth unprojected
    xyz = np.stack([out.cloud['x'], out.cloud['y'], out.cloud['z']], -1)
    np.testing.assert_allclose(xyz, depth_to_xyz(out.depth, out.K), rtol=1e-6)
    # input pixels at the output resolution hold (nearly) the LiDAR depth: IP-Basic's median and blur
    sparse = project_to_depth(cam, out.K, out.depth.shape)
    has = (sparse > 0) & np.isfinite(out.depth)
    assert np.median(np.abs(out.depth[has] - sparse[has]) / sparse[has]) < 0.02
    assert stage.median_ms() >= 0
