"""packnet_ros.pointcloud and the rclpy message builders of packnet_ros.ros.conversions.

Checks: depth_image_proc's back-projection on a hand-computed depth map (non-finite depth
-> NaN point), PCL's 0x00RRGGBB colour packing bit by bit, the PointCloud2 memory layout,
decimation with matching intrinsics, PointCloud2 round trips (also clouds with padded
points / rows and big-endian clouds built by hand), and the Image / CameraInfo builders
(image_proc ResizeNode convention for resized CameraInfo).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from packnet_ros.pointcloud import (
    XYZ_DTYPE,
    XYZRGB_DTYPE,
    cloud_msg_to_arrays,
    decimate,
    depth_to_xyz,
    make_cloud_array,
    pack_rgb,
)
from packnet_ros.ros.conversions import (
    camera_info_to_K,
    cloud_to_msg,
    decode_image_msg,
    depth_msg_to_meters,
    depth_to_image_msg,
    image_msg_to_rgb,
    make_camera_info,
    make_header,
    resized_camera_info,
    rgb_to_image_msg,
    stamp_to_ns,
)

K_SMALL = np.array([[2.0, 0.0, 1.0], [0.0, 4.0, 0.5], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- depth -> xyz
def test_depth_to_xyz_hand_computed():
    depth = np.array([[1.0, 2.0, 4.0], [8.0, 0.5, 3.0]], np.float32)
    pts = depth_to_xyz(depth, K_SMALL)
    assert pts.shape == (2, 3, 3) and pts.dtype == np.float32
    # X = (u - 1) z / 2, Y = (v - 0.5) z / 4, Z = z
    expected = np.array([[[-0.5, -0.125, 1.0], [0.0, -0.25, 2.0], [2.0, -0.5, 4.0]],
                         [[-4.0, 1.0, 8.0], [0.0, 0.0625, 0.5], [1.5, 0.375, 3.0]]], np.float32)
    np.testing.assert_allclose(pts, expected, rtol=0, atol=1e-6)


def test_depth_to_xyz_non_finite_is_nan_point():
    depth = np.array([[np.nan, np.inf, -np.inf, 2.0]], np.float32)
    K = np.array([[10.0, 0.0, 1.5], [0.0, 10.0, 0.0], [0.0, 0.0, 1.0]])
    pts = depth_to_xyz(depth, K)
    assert np.isnan(pts[0, :3]).all()  # all three coordinates, for every non-finite depth
    np.testing.assert_allclose(pts[0, 3], [0.3, 0.0, 2.0], atol=1e-6)


def test_depth_to_xyz_accepts_tensor_and_rejects_3d():
    depth = torch.tensor([[1.0, 2.0, 4.0], [8.0, 0.5, 3.0]])
    np.testing.assert_array_equal(depth_to_xyz(depth, K_SMALL), depth_to_xyz(depth.numpy(), K_SMALL))
    with pytest.raises(ValueError):
        depth_to_xyz(np.ones((1, 2, 3), np.float32), K_SMALL)


# ----------------------------------------------------------------------------- colour, layout
def test_pack_rgb_bit_layout():
    rgb = np.array([[[0x12, 0x34, 0x56], [255, 0, 0]], [[0, 255, 0], [0, 0, 255]]], np.uint8)
    packed = pack_rgb(rgb)
    assert packed.shape == (2, 2) and packed.dtype == np.float32
    bits = packed.view(np.uint32)
    assert bits.tolist() == [[0x00123456, 0x00FF0000], [0x0000FF00, 0x000000FF]]
    # little-endian bytes of the float: B, G, R, 0 (what RViz's RGB8 transformer reads)
    assert packed[0, 0].tobytes() == bytes([0x56, 0x34, 0x12, 0x00])


def test_make_cloud_array_layout():
    pts = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    xyz = make_cloud_array(pts)
    assert xyz.dtype == XYZ_DTYPE and xyz.shape == (2, 3) and xyz.dtype.itemsize == 12
    assert [xyz.dtype.fields[n][1] for n in 'xyz'] == [0, 4, 8]
    np.testing.assert_array_equal(np.frombuffer(xyz.tobytes(), '<f4'), pts.reshape(-1))

    rgb = np.full((2, 3, 3), 7, np.uint8)
    rgb[1, 2] = (1, 2, 3)
    cloud = make_cloud_array(pts, rgb)
    assert cloud.dtype == XYZRGB_DTYPE and cloud.dtype.itemsize == 16
    assert [cloud.dtype.fields[n][1] for n in ('x', 'y', 'z', 'rgb')] == [0, 4, 8, 12]
    raw = np.frombuffer(cloud.tobytes(), np.uint8).reshape(2, 3, 16)
    assert raw[1, 2, 12:].tolist() == [3, 2, 1, 0]
    assert raw[1, 2, :12].view('<f4').tolist() == pts[1, 2].tolist()
    with pytest.raises(ValueError, match='differ in size'):
        make_cloud_array(pts, rgb[:1])


def test_decimate_samples_and_intrinsics():
    depth = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    K = np.array([[100.0, 0.0, 40.0], [0.0, 90.0, 30.0], [0.0, 0.0, 1.0]])
    d2, K2 = decimate(depth, K, 2)
    assert d2.shape == (3, 4)
    np.testing.assert_allclose(K2, [[50.0, 0.0, 20.0], [0.0, 45.0, 15.0], [0.0, 0.0, 1.0]])
    for v in range(3):
        for u in range(4):
            assert d2[v, u] == depth[2 * v, 2 * u]
    # the decimated cloud is exactly the subsampled full cloud
    full = depth_to_xyz(depth + 1.0, K)
    np.testing.assert_allclose(depth_to_xyz(d2 + 1.0, K2), full[::2, ::2], rtol=1e-6, atol=1e-6)
    d3, K3 = decimate(depth, K, 3)
    assert d3.shape == (2, 3) and d3[1, 2] == depth[3, 6]
    np.testing.assert_allclose(depth_to_xyz(d3 + 1.0, K3), full[::3, ::3], rtol=1e-6, atol=1e-6)
    assert K[0, 0] == 100.0  # not modified
    d1, K1 = decimate(depth, K, 1)
    assert d1 is depth and K1 is K


# ----------------------------------------------------------------------------- PointCloud2
def _header(t=1_317_043_079_123_456_789, frame='cam2_optical'):
    return make_header(t, frame)


def test_cloud_to_msg_and_back_xyzrgb():
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((3, 4, 3)).astype(np.float32)
    pts[0, 1] = np.nan
    rgb = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    msg = cloud_to_msg(make_cloud_array(pts, rgb), _header())
    assert isinstance(msg, PointCloud2)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (3, 4, 16, 64)
    assert not msg.is_bigendian and not msg.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1), ('z', 8, PointField.FLOAT32, 1),
        ('rgb', 12, PointField.FLOAT32, 1)]
    assert stamp_to_ns(msg.header.stamp) == 1_317_043_079_123_456_789
    assert msg.header.frame_id == 'cam2_optical'
    xyz, col = cloud_msg_to_arrays(msg)
    np.testing.assert_array_equal(xyz, pts)  # NaN in the same place (assert_array_equal treats NaN == NaN)
    np.testing.assert_array_equal(col, rgb)


def test_cloud_to_msg_and_back_xyz():
    pts = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    msg = cloud_to_msg(make_cloud_array(pts), _header())
    assert msg.point_step == 12 and msg.row_step == 60 and len(msg.fields) == 3
    xyz, col = cloud_msg_to_arrays(msg)
    assert col is None
    np.testing.assert_array_equal(xyz, pts)
    with pytest.raises(ValueError, match='structured'):
        cloud_to_msg(pts, _header())


def _hand_cloud(pts, rgb, order, point_step, row_pad, height, offsets=(0, 4, 8, 16)):
    """PointCloud2 built byte by byte: fields at ``offsets``, garbage in the padding."""
    n_h, n_w = pts.shape[:2]
    row_step = n_w * point_step + row_pad
    buf = np.full((n_h, row_step), 0xCD, np.uint8)
    for v in range(n_h):
        for u in range(n_w):
            base = u * point_step
            for c in range(3):
                buf[v, base + offsets[c]: base + offsets[c] + 4] = np.frombuffer(
                    np.array(pts[v, u, c], order + 'f4').tobytes(), np.uint8)
            if rgb is not None:
                packed = (int(rgb[v, u, 0]) << 16) | (int(rgb[v, u, 1]) << 8) | int(rgb[v, u, 2])
                buf[v, base + offsets[3]: base + offsets[3] + 4] = np.frombuffer(
                    np.array(packed, order + 'u4').tobytes(), np.uint8)
    fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
              for n, o in zip('xyz', offsets[:3])]
    if rgb is not None:
        fields.append(PointField(name='rgb', offset=offsets[3], datatype=PointField.FLOAT32, count=1))
    return PointCloud2(header=_header(), height=height, width=n_w * n_h // height, fields=fields,
                       is_bigendian=order == '>', point_step=point_step, row_step=row_step,
                       data=buf.tobytes(), is_dense=False)


@pytest.mark.parametrize('order', ['<', '>'])
def test_cloud_msg_to_arrays_padded_points_and_rows(order):
    rng = np.random.default_rng(1)
    pts = (rng.standard_normal((2, 3, 3)) * 10).astype(np.float32)
    rgb = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    msg = _hand_cloud(pts, rgb, order, point_step=32, row_pad=8, height=2)
    xyz, col = cloud_msg_to_arrays(msg)
    assert xyz.shape == (2, 3, 3) and xyz.dtype == np.float32 and xyz.dtype.isnative
    np.testing.assert_array_equal(xyz, pts)
    np.testing.assert_array_equal(col, rgb)


def test_cloud_msg_to_arrays_big_endian_xyz_other_field_order():
    pts = np.array([[[1.5, -2.25, 30.0], [0.125, 4.0, 1e3]]], np.float32)
    msg = _hand_cloud(pts, None, '>', point_step=20, row_pad=0, height=1, offsets=(8, 0, 12, 0))
    xyz, col = cloud_msg_to_arrays(msg)
    assert col is None
    assert xyz.shape == (2, 3)  # unorganised (height 1): (N, 3)
    np.testing.assert_array_equal(xyz, pts[0])


def test_cloud_msg_to_arrays_requires_float_xyz():
    msg = cloud_to_msg(make_cloud_array(np.zeros((1, 2, 3), np.float32)), _header())
    msg.fields = [f for f in msg.fields if f.name != 'z']
    with pytest.raises(ValueError, match='x, y, z'):
        cloud_msg_to_arrays(msg)
    msg = cloud_to_msg(make_cloud_array(np.zeros((1, 2, 3), np.float32)), _header())
    msg.fields[0].datatype = PointField.FLOAT64
    with pytest.raises(ValueError):
        cloud_msg_to_arrays(msg)


# ----------------------------------------------------------------------------- Image / CameraInfo
def test_make_header_and_stamp():
    h = make_header(1_317_043_079_000_000_001, 'cam')
    assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (1_317_043_079, 1, 'cam')
    assert stamp_to_ns(h.stamp) == 1_317_043_079_000_000_001


def test_rgb_to_image_msg():
    rgb = np.random.default_rng(2).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    msg = rgb_to_image_msg(rgb, _header())
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian) == (3, 5, 'rgb8', 15, 0)
    assert bytes(msg.data) == rgb.tobytes()
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)
    # a non-contiguous view (BGR flipped) is packed correctly
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    assert bytes(rgb_to_image_msg(bgr[..., ::-1], _header()).data) == rgb.tobytes()


def test_depth_to_image_msg_keeps_nan_inf():
    d = np.array([[1.5, np.nan, np.inf], [-np.inf, 0.75, 80.0]], np.float32)
    msg = depth_to_image_msg(d, _header())
    assert (msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian) == (2, 3, '32FC1', 12, 0)
    raw = np.frombuffer(bytes(msg.data), '<f4').reshape(2, 3)
    np.testing.assert_array_equal(raw.view(np.uint32), d.view(np.uint32))  # bit exact
    decoded = decode_image_msg(msg)
    assert np.isnan(decoded[0, 1]) and decoded[0, 2] == np.inf and decoded[1, 0] == -np.inf
    meters = depth_msg_to_meters(msg)
    np.testing.assert_array_equal(meters, d)


def test_make_camera_info_and_K():
    K = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
    info = make_camera_info(_header(), K, 1242, 375)
    assert (info.width, info.height, info.distortion_model) == (1242, 375, 'plumb_bob')
    np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), K)
    P = np.asarray(info.p).reshape(3, 4)
    np.testing.assert_array_equal(P[:, :3], K)
    np.testing.assert_array_equal(P[:, 3], 0.0)
    np.testing.assert_array_equal(np.asarray(info.r).reshape(3, 3), np.eye(3))
    assert list(info.d) == [0.0] * 5
    np.testing.assert_array_equal(camera_info_to_K(info), K)


def test_resized_camera_info_follows_image_proc_resize():
    info = CameraInfo(header=_header(), width=1242, height=375, distortion_model='rational_polynomial',
                      d=[0.1, -0.2, 0.001, 0.002, 0.03, 0.4, 0.5, 0.6],
                      k=[721.0, 0.5, 609.0, 0.0, 722.0, 172.0, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0],
                      p=[700.0, 0.0, 600.0, -380.0, 0.0, 701.0, 170.0, 2.0, 0.0, 0.0, 1.0, 0.003])
    out = resized_camera_info(info, _header(5, 'other'), 640, 192)
    sx, sy = 640 / 1242, 192 / 375
    assert (out.width, out.height) == (640, 192)
    assert out.header.frame_id == 'other'
    k = [721.0 * sx, 0.5, 609.0 * sx, 0.0, 722.0 * sy, 172.0 * sy, 0.0, 0.0, 1.0]
    p = [700.0 * sx, 0.0, 600.0 * sx, -380.0 * sx, 0.0, 701.0 * sy, 170.0 * sy, 2.0, 0.0, 0.0, 1.0, 0.003]
    np.testing.assert_allclose(out.k, k, rtol=1e-12)
    np.testing.assert_allclose(out.p, p, rtol=1e-12)
    assert list(out.d) == pytest.approx([0.1, -0.2, 0.001, 0.002, 0.03, 0.4, 0.5, 0.6])
    assert out.distortion_model == 'rational_polynomial'
    assert list(out.r) == [1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0]
    assert list(info.k)[0] == 721.0  # input untouched
    # the K read back from the resized info is P's 3x3, scaled like an image resize
    np.testing.assert_allclose(camera_info_to_K(out), [[700.0 * sx, 0, 600.0 * sx], [0, 701.0 * sy, 170.0 * sy],
                                                       [0, 0, 1]], rtol=1e-12)
