"""packnet_ros.imageproc: sensor_msgs/Image buffers <-> numpy, colour conversion, resizing,
network tensors and REP 118 depth buffers.

Every buffer is built by hand (row padding filled with garbage, big-endian byte order
written explicitly) and the decoded pixels are compared exactly.
"""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
import torch

from packnet_ros.imageproc import (
    ImageFormatError,
    decode_image,
    depth_image_to_meters,
    depth_to_buffer,
    resize_rgb,
    rgb_to_tensor,
    to_rgb8,
)

H, W = 5, 7


def _buffer(arr: np.ndarray, pad: int, byteorder: str = '<') -> tuple[int, bytes]:
    """Row-major image buffer with ``pad`` garbage bytes after every row; returns (step, data)."""
    a = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(byteorder)))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    garbage = np.full((a.shape[0], pad), 0xAB, np.uint8)
    buf = np.concatenate([rows, garbage], 1)
    return buf.shape[1], buf.tobytes()


def _image(encoding: str, rng) -> np.ndarray:
    if encoding in ('rgb8', 'bgr8'):
        return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if encoding in ('rgba8', 'bgra8'):
        return rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    if encoding == 'mono8':
        return rng.integers(0, 256, (H, W), dtype=np.uint8)
    if encoding == '16UC1':
        return rng.integers(0, 65536, (H, W), dtype=np.uint16)
    return (rng.standard_normal((H, W)) * 30).astype(np.float32)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '16UC1', '32FC1'])
@pytest.mark.parametrize('pad', [0, 3])
def test_decode_image_little_endian_with_padding(encoding, pad):
    rng = np.random.default_rng(0)
    img = _image(encoding, rng)
    step, data = _buffer(img, pad)
    assert step == img[0].nbytes + pad
    out = decode_image(H, W, encoding, step, data, is_bigendian=False)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1'])
@pytest.mark.parametrize('pad', [0, 2])
def test_decode_image_big_endian(encoding, pad):
    img = _image(encoding, np.random.default_rng(1))
    img.flat[0] = 0x0102 if encoding == '16UC1' else 1.5  # byte order matters for every value
    step, data = _buffer(img, pad, '>')
    out = decode_image(H, W, encoding, step, data, is_bigendian=True)
    assert out.dtype.isnative  # converted to host order (torch.from_numpy needs it)
    np.testing.assert_array_equal(out, img)
    # read as little-endian, the same bytes give other values
    wrong = decode_image(H, W, encoding, step, data, is_bigendian=False)
    assert wrong.flat[0] != img.flat[0]
    if encoding == '16UC1':
        assert int(wrong[0, 0]) == 0x0201


def test_decode_image_accepts_rclpy_style_arrays():
    img = _image('rgb8', np.random.default_rng(2))
    step, data = _buffer(img, 1)
    for container in (bytearray(data), array.array('B', data), memoryview(data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(decode_image(H, W, 'rgb8', step, container), img)


def test_decode_image_ignores_trailing_bytes():
    img = _image('mono8', np.random.default_rng(3))
    step, data = _buffer(img, 0)
    np.testing.assert_array_equal(decode_image(H, W, 'mono8', step, data + b'\x00' * 9), img)


@pytest.mark.parametrize('args,kind', [
    ((H, W, 'yuv422', 2 * W, bytes(2 * W * H)), 'encoding'),
    ((H, W, 'bayer_rggb8', W, bytes(W * H)), 'encoding'),
    ((H, W, 'rgb8', 3 * W - 1, bytes(3 * W * H)), 'step'),
    ((H, W, '16UC1', W, bytes(2 * W * H)), 'step'),          # step counts bytes, not pixels
    ((H, W, 'rgb8', 3 * W, bytes(3 * W * H - 1)), 'size'),
    ((H, W, '32FC1', 4 * W + 4, bytes(4 * W * H)), 'size'),  # padding not accounted for in data
    ((0, W, 'rgb8', 3 * W, b''), 'empty'),
    ((H, 0, 'rgb8', 0, b''), 'empty'),
])
def test_decode_image_errors(args, kind):
    with pytest.raises(ImageFormatError) as exc:
        decode_image(*args)
    assert exc.value.kind == kind
    assert isinstance(exc.value, ValueError)


# ----------------------------------------------------------------------------- to_rgb8
def test_to_rgb8_pixel_exact():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (H, W, 1), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    assert to_rgb8(rgb, 'rgb8') is rgb
    np.testing.assert_array_equal(to_rgb8(bgr, 'bgr8'), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb, alpha], -1), 'rgba8'), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([bgr, alpha], -1), 'bgra8'), rgb)
    grey = rgb[..., 0].copy()
    out = to_rgb8(grey, 'mono8')
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_to_rgb8_after_decode_of_padded_bgr():
    rgb = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)
    step, data = _buffer(np.ascontiguousarray(rgb[..., ::-1]), 5)
    np.testing.assert_array_equal(to_rgb8(decode_image(H, W, 'bgr8', step, data), 'bgr8'), rgb)


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1', 'mono16'])
def test_to_rgb8_rejects_non_camera_encodings(encoding):
    with pytest.raises(ImageFormatError) as exc:
        to_rgb8(np.zeros((2, 2), np.uint16), encoding)
    assert exc.value.kind == 'encoding'


@pytest.mark.parametrize('encoding', ['yuv422', '16UC1', '32FC1', '8UC3'])
def test_camera_image_error_lists_the_camera_encodings_only(encoding):
    """A camera image of another encoding is refused before decoding, and the message lists
    what a camera image may be (not the depth encodings decode_image also reads)."""
    from types import SimpleNamespace

    from packnet_ros.msgdata import image_msg_to_rgb
    msg = SimpleNamespace(height=H, width=W, encoding=encoding, step=4 * W, data=bytes(4 * W * H), is_bigendian=0)
    with pytest.raises(ImageFormatError) as exc:
        image_msg_to_rgb(msg)
    text = str(exc.value)
    assert exc.value.kind == 'encoding' and '\n' not in text
    assert text == (f"unsupported encoding {encoding!r} (a camera image must be one of "
                    f"rgb8, bgr8, rgba8, bgra8, mono8, 8UC1)")
    assert '32FC1' not in text.split('(')[1] and '16UC1' not in text.split('(')[1]
    with pytest.raises(ImageFormatError, match='a camera image must be one of rgb8'):
        to_rgb8(np.zeros((2, 2), np.uint16), encoding)


def test_8uc1_camera_image_is_read_as_mono8():
    from types import SimpleNamespace

    from packnet_ros.imageproc import COLOR_ENCODINGS
    from packnet_ros.msgdata import image_msg_to_rgb
    grey = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    for encoding in ('mono8', '8UC1'):
        assert encoding in COLOR_ENCODINGS
        msg = SimpleNamespace(height=H, width=W, encoding=encoding, step=W, data=grey.tobytes(), is_bigendian=0)
        np.testing.assert_array_equal(image_msg_to_rgb(msg), np.repeat(grey[..., None], 3, axis=2))


# ----------------------------------------------------------------------------- resize / tensor
def test_resize_rgb_same_size_is_identity():
    img = np.random.default_rng(5).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    assert resize_rgb(img, 32, 64) is img


def test_resize_rgb_shrinks_with_area_averaging():
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    out = resize_rgb(img, 2, 4)  # factor 4: each output pixel is the mean of a 4x4 block
    assert out.shape == (2, 4, 3) and out.dtype == np.uint8
    block_mean = img.astype(np.float64).reshape(2, 4, 4, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out.astype(np.float64), block_mean, atol=0.5 + 1e-9)
    # bilinear would only look at the two centre pixels of each block: clearly different
    linear = cv2.resize(img, (4, 2), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    assert np.abs(linear - block_mean).max() > 5


def test_resize_rgb_enlarges_bilinearly():
    img = np.array([[[0, 0, 0], [200, 100, 40]]], dtype=np.uint8)  # 1x2
    out = resize_rgb(img, 1, 4)
    assert out.shape == (1, 4, 3)
    # OpenCV bilinear, half-pixel centres: x_src = (x + 0.5) / 2 - 0.5 -> -0.25, 0.25, 0.75, 1.25
    np.testing.assert_array_equal(out[0, :, 0], [0, 50, 150, 200])


def test_rgb_to_tensor_range_layout():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 1] = (255, 0, 51)
    rgb[1, 2] = (1, 128, 254)
    t = rgb_to_tensor(rgb)
    assert t.shape == (1, 3, 2, 3) and t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert t[0, :, 0, 1].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert t[0, :, 1, 2].tolist() == pytest.approx([1 / 255, 128 / 255, 254 / 255])
    np.testing.assert_allclose(t[0].permute(1, 2, 0).numpy(), rgb / 255.0, rtol=0, atol=1e-7)
    # non-contiguous input (a BGR view flipped back) works too
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    torch.testing.assert_close(rgb_to_tensor(bgr[..., ::-1]), t)


@pytest.mark.parametrize('shape', [(4, 4), (4, 4, 4), (4, 4, 1)])
def test_rgb_to_tensor_rejects_non_rgb(shape):
    with pytest.raises(ImageFormatError):
        rgb_to_tensor(np.zeros(shape, np.uint8))


# ----------------------------------------------------------------------------- depth
def test_depth_image_to_meters_32fc1():
    d = np.array([[1.5, 0.0, np.nan], [np.inf, -np.inf, 80.25]], np.float32)
    before = d.copy()
    out = depth_image_to_meters(d, '32FC1')
    assert out.dtype == np.float32 and out is not d
    assert out[0, 0] == 1.5 and out[1, 2] == 80.25
    assert np.isnan(out[0, 1]) and np.isnan(out[0, 2])  # 0 -> NaN (invalid), NaN kept
    assert out[1, 0] == np.inf and out[1, 1] == -np.inf   # REP 117 markers kept
    np.testing.assert_array_equal(d, before)                # input untouched


@pytest.mark.parametrize('encoding', ['16UC1', 'mono16'])
def test_depth_image_to_meters_16uc1_millimetres(encoding):
    d = np.array([[1500, 0], [65535, 1]], np.uint16)
    out = depth_image_to_meters(d, encoding)
    assert out.dtype == np.float32
    assert out[0, 0] == pytest.approx(1.5, abs=1e-6)
    assert out[1, 0] == pytest.approx(65.535, abs=1e-5)
    assert out[1, 1] == pytest.approx(0.001, abs=1e-9)
    assert np.isnan(out[0, 1])
    assert np.isfinite(out).sum() == 3


def test_depth_image_to_meters_from_big_endian_buffer():
    mm = np.array([[1000, 2500, 0]], np.uint16)
    step, data = _buffer(mm, 2, '>')
    out = depth_image_to_meters(decode_image(1, 3, '16UC1', step, data, True), '16UC1')
    np.testing.assert_allclose(out[0, :2], [1.0, 2.5], rtol=1e-6)
    assert np.isnan(out[0, 2])


def test_depth_image_to_meters_rejects_colour():
    with pytest.raises(ImageFormatError):
        depth_image_to_meters(np.zeros((2, 2, 3), np.uint8), 'rgb8')


def test_depth_to_buffer_round_trip():
    d = np.array([[1.25, np.nan, np.inf], [-np.inf, 0.5, 79.0]], np.float32)
    enc, step, data = depth_to_buffer(d)
    assert enc == '32FC1' and step == 3 * 4 and isinstance(data, bytes) and len(data) == 2 * 3 * 4
    back = np.frombuffer(data, '<f4').reshape(2, 3)
    np.testing.assert_array_equal(back.view(np.uint32), d.view(np.uint32))  # bit-exact, NaN included
    np.testing.assert_array_equal(decode_image(2, 3, enc, step, data), d)


def test_depth_to_buffer_converts_and_handles_views():
    d64 = np.arange(12, dtype=np.float64).reshape(3, 4) / 4.0
    enc, step, data = depth_to_buffer(d64.T)  # float64, non-contiguous (4, 3)
    assert step == 3 * 4
    np.testing.assert_array_equal(np.frombuffer(data, '<f4').reshape(4, 3), d64.T.astype(np.float32))
    with pytest.raises(ValueError):
        depth_to_buffer(np.zeros((2, 2, 1), np.float32))
