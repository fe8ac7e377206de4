"""``packnet-ros infer``: depth for an image file, a folder of images, a video file or a
rosbag2's image topic (what packnet-sfm's ``infer.py`` gives its users).

Per frame, into ``--out``: ``<name>.npy`` (float32 depth in metres, REP 117: +Inf beyond
``--max-depth``, NaN invalid; or ``<name>.npz`` with ``depth``, ``K`` and ``stamp_ns``),
``<name>.png`` (input above the depth in the evaluator's colours, with a colour bar in
metres) and with ``--ply`` ``<name>.ply`` (x y z in the optical frame + r g b). ``frames.csv``
lists every frame with its source and depth summary.

Intrinsics: ``--intrinsics camera.yaml`` (ROS camera_info YAML or this package's format;
distorted images are undistorted with K kept), else a bag's CameraInfo (K from P, images
taken as rectified, as ``packnet_node`` does), else none: the depth is then relative (the
network's scale holds only for a camera like its training camera) and no point cloud is
built.
"""
from __future__ import annotations

import csv
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.ppm', '.pgm', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv', '.flv')
BAG_EXTS = ('.mcap', '.db3')


@dataclass
class InferFrame:
    """One input frame: a name for its output files, its source, RGB, K (or None), stamp."""

    name: str
    source: str
    rgb: np.ndarray
    K: np.ndarray | None
    stamp_ns: int


def _user_error(text: str) -> Exception:
    from .cli import UserError
    return UserError(text)


# -- inputs -----------------------------------------------------------------------------------
def input_kind(path: Path, topic: str | None) -> str:
    """'image', 'folder', 'video' or 'bag' for an input path (UserError when none fits)."""
    if not path.exists():
        raise _user_error(f'no such file or folder: {path}')
    if path.is_dir():
        if (path / 'metadata.yaml').is_file() or any(path.glob('*.mcap')) or any(path.glob('*.db3')):
            return 'bag'
        if topic:
            raise _user_error(f'--topic given but {path} is not a rosbag2 folder (no metadata.yaml, .mcap or .db3)')
        return 'folder'
    ext = path.suffix.lower()
    if ext in BAG_EXTS:
        return 'bag'
    if topic:
        raise _user_error(f'--topic is for bags; {path} is not one (a rosbag2 folder, .mcap or .db3)')
    if ext in IMAGE_EXTS:
        return 'image'
    if ext in VIDEO_EXTS:
        return 'video'
    raise _user_error(f'{path}: unknown extension {ext or "(none)"!r}; give an image '
                      f'({", ".join(IMAGE_EXTS)}), a folder of images, a video ({", ".join(VIDEO_EXTS)}) '
                      f'or a rosbag2 (folder, .mcap, .db3) with --topic')


class _Camera:
    """Intrinsics of a camera YAML for frames of its size (undistortion maps when it has D)."""

    def __init__(self, path: str | Path):
        from ..io.camera_yaml import has_distortion, load_camera_yaml
        from ..io.sequence import DataError
        try:
            self.cam = load_camera_yaml(path)
        except DataError as exc:
            raise _user_error(f'--intrinsics: {exc}') from None
        self.path = Path(path)
        self.distorted = has_distortion(self.cam.D)
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def apply(self, rgb: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(undistorted RGB, K) of a frame; UserError when its size is not the YAML's."""
        import cv2

        from ..io.camera_yaml import undistort_maps
        h, w = rgb.shape[:2]
        if (w, h) != (self.cam.width, self.cam.height):
            raise _user_error(f'{source} is {w}x{h} but --intrinsics {self.path} is for '
                              f'{self.cam.width}x{self.cam.height}; give the camera YAML of these images')
        if self.distorted:
            if self._maps is None:
                self._maps = undistort_maps(self.cam, self.cam.K)
            m1, m2 = self._maps
            rgb = cv2.remap(rgb, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return rgb, self.cam.K.copy()


def _read_image(path: Path) -> np.ndarray:
    import cv2
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise _user_error(f'cannot read image {path} (corrupt or not an image OpenCV decodes)')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _folder_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise _user_error(f'{folder} has no images ({", ".join(IMAGE_EXTS)})')
    return files


def _image_frames(files: list[Path], camera: _Camera | None) -> Iterator[InferFrame]:
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    for i, f in enumerate(files):
        rgb = _read_image(f)
        K = None
        if camera is not None:
            rgb, K = camera.apply(rgb, str(f))
        name = f.stem if stems[f.stem] == 1 else f'{f.stem}_{f.suffix.lstrip(".").lower()}'
        yield InferFrame(name, str(f), rgb, K, i)


def _video_info(path: Path) -> tuple[int, float]:
    """(frame count, fps) of a video; UserError when OpenCV cannot decode it."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    try:
        ok = cap.isOpened() and cap.read()[0]
        if not ok:
            raise _user_error(f'cannot read video {path}: not a file OpenCV/FFmpeg can decode '
                              f'(corrupt, truncated or unsupported codec)')
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def _video_frames(path: Path, camera: _Camera | None, every: int) -> Iterator[InferFrame]:
    import cv2
    _, fps = _video_info(path)
    cap = cv2.VideoCapture(str(path))
    try:
        idx = 0
        while True:
            ok, bgr = cap.read() if idx % every == 0 else (cap.grab(), None)
            if not ok:
                return
            if bgr is not None:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                K = None
                if camera is not None:
                    rgb, K = camera.apply(rgb, f'{path} frame {idx}')
                stamp = int(round(idx * 1e9 / fps)) if fps > 0 else idx
                yield InferFrame(f'frame_{idx:06d}', f'{path}:{idx}', rgb, K, stamp)
            idx += 1
    finally:
        cap.release()


def _bag_topics(bag: Path) -> dict[str, str]:
    from ..io.bag import CorruptBagError, bag_topics_any
    try:
        return bag_topics_any(bag)
    except CorruptBagError as exc:
        raise _user_error(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - an unreadable bag is the user's input problem
        first = f'{type(exc).__name__}: {exc}'.splitlines()[0]
        raise _user_error(f'cannot read the bag {bag}: corrupt or not a rosbag2 recording ({first})') from None


IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')


def bag_image_topic(topics: dict[str, str], topic: str | None, bag: Path) -> str:
    """The image topic to read: ``topic``, else the only image topic (or /camera/image_raw)."""
    images = sorted(t for t, ty in topics.items() if ty in IMAGE_TYPES)
    listing = ', '.join(images) or '(none)'
    if topic:
        if topic not in topics:
            raise _user_error(f'{bag} has no topic {topic}; its image topics: {listing}')
        if topics[topic] not in IMAGE_TYPES:
            raise _user_error(f'{topic} in {bag} is {topics[topic]}, not an Image or CompressedImage; '
                              f'its image topics: {listing}')
        return topic
    if len(images) == 1:
        return images[0]
    if '/camera/image_raw' in images:
        return '/camera/image_raw'
    raise _user_error(f'{bag}: choose the image topic with --topic (image topics: {listing})')


def _bag_frames(bag: Path, topic: str, info_topic: str | None, camera: _Camera | None,
                every: int, notes: list[str]) -> Iterator[InferFrame]:
    import cv2

    from ..geometry import intrinsics_from_camera_info
    from ..io.bag import iter_messages
    from ..msgdata import header_ns, image_msg_to_rgb
    wanted = [topic] + ([info_topic] if info_topic else [])
    K_info: np.ndarray | None = None
    info_size = (0, 0)
    n = 0
    for m in iter_messages(bag, wanted):
        if m.topic == info_topic:
            try:
                K_info = intrinsics_from_camera_info(m.msg.k, m.msg.p)
                info_size = (int(m.msg.width), int(m.msg.height))
            except ValueError as exc:
                K_info = None
                notes.append(f'unusable CameraInfo on {info_topic}: {exc}')
            continue
        n += 1
        if (n - 1) % every:
            continue
        stamp = header_ns(m.msg) or int(m.log_time_ns)
        if m.msgtype == 'sensor_msgs/msg/CompressedImage':
            bgr = cv2.imdecode(np.frombuffer(bytes(m.msg.data), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                notes.append(f'{topic} @ {stamp}: undecodable CompressedImage, skipped')
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            try:
                rgb = image_msg_to_rgb(m.msg)
            except ValueError as exc:
                notes.append(f'{topic} @ {stamp}: {exc}; skipped')
                continue
        K = None
        if camera is not None:
            rgb, K = camera.apply(rgb, f'{topic} @ {stamp}')
        elif K_info is not None:
            if info_size[0] and info_size != (rgb.shape[1], rgb.shape[0]):
                notes.append(f'{topic} @ {stamp}: CameraInfo is for {info_size[0]}x{info_size[1]}, the image '
                             f'{rgb.shape[1]}x{rgb.shape[0]}: no intrinsics for this frame')
            else:
                K = K_info
        yield InferFrame(f'{n - 1:06d}', f'{bag}:{topic}:{stamp}', rgb, K, stamp)


# -- outputs ----------------------------------------------------------------------------------
def write_ply(path: str | Path, points: np.ndarray, colours: np.ndarray | None = None, binary: bool = True) -> int:
    """Write points (N, 3) float (+ colours (N, 3) uint8) as PLY (binary little-endian or
    ASCII); rows with a non-finite coordinate are dropped. Returns the number of points."""
    pts = np.asarray(points, np.float32).reshape(-1, 3)
    keep = np.isfinite(pts).all(1)
    pts = pts[keep]
    cols = None if colours is None else np.asarray(colours, np.uint8).reshape(-1, 3)[keep]
    props = ['property float x', 'property float y', 'property float z']
    if cols is not None:
        props += ['property uchar red', 'property uchar green', 'property uchar blue']
    header = '\n'.join(['ply', f'format {"binary_little_endian" if binary else "ascii"} 1.0',
                        'comment packnet_ros depth, camera optical frame (x right, y down, z forward), metres',
                        f'element vertex {len(pts)}', *props, 'end_header']) + '\n'
    path = Path(path)
    with open(path, 'wb') as f:
        f.write(header.encode('ascii'))
        if binary:
            fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
            if cols is not None:
                fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
            rec = np.empty(len(pts), np.dtype(fields))
            rec['x'], rec['y'], rec['z'] = pts[:, 0], pts[:, 1], pts[:, 2]
            if cols is not None:
                rec['red'], rec['green'], rec['blue'] = cols[:, 0], cols[:, 1], cols[:, 2]
            f.write(rec.tobytes())
        else:
            for k in range(len(pts)):
                line = f'{pts[k, 0]:.6g} {pts[k, 1]:.6g} {pts[k, 2]:.6g}'
                if cols is not None:
                    line += f' {cols[k, 0]} {cols[k, 1]} {cols[k, 2]}'
                f.write((line + '\n').encode('ascii'))
    return int(len(pts))


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a PLY written by :func:`write_ply` -> (points (N, 3) float32, colours (N, 3) uint8 or None)."""
    data = Path(path).read_bytes()
    end = data.index(b'end_header\n') + len(b'end_header\n')
    header = data[:end].decode('ascii').splitlines()
    n = next(int(line.split()[2]) for line in header if line.startswith('element vertex'))
    has_rgb = any(line.endswith(' red') for line in header)
    if 'format ascii 1.0' in header:
        rows = np.loadtxt(data[end:].decode('ascii').splitlines(), ndmin=2) if n else np.zeros((0, 6 if has_rgb else 3))
        return rows[:, :3].astype(np.float32), rows[:, 3:6].astype(np.uint8) if has_rgb else None
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')] + ([('r', 'u1'), ('g', 'u1'), ('b', 'u1')] if has_rgb else [])
    rec = np.frombuffer(data[end:], np.dtype(fields), count=n)
    pts = np.stack([rec['x'], rec['y'], rec['z']], 1)
    return pts, np.stack([rec['r'], rec['g'], rec['b']], 1) if has_rgb else None


class _Progress:
    """tqdm when installed (on a terminal), else a line every 25 frames on stderr."""

    def __init__(self, total: int | None, desc: str):
        self.total, self.desc, self.n, self.t0 = total, desc, 0, time.time()
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit='frame', disable=None)
        except ImportError:
            self.bar = None

    def update(self) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.n % 25 == 0 and sys.stderr.isatty():
            of = f'/{self.total}' if self.total else ''
            print(f'{self.desc}: {self.n}{of} frames ({self.n / (time.time() - self.t0):.1f}/s)', file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class InferOptions:
    """What ``packnet-ros infer`` does (the command-line options)."""

    input: Path
    out: Path
    checkpoint: str = 'default'
    intrinsics: str | None = None
    topic: str | None = None
    camera_info_topic: str | None = None
    fmt: str = 'npy'
    ply: bool = False
    ply_ascii: bool = False
    png: bool = True
    max_frames: int | None = None
    every: int = 1
    resolution: str = 'network'
    max_depth: float = 80.0
    device: str = 'auto'
    precision: str = 'auto'


def run_infer(opt: InferOptions, say=print) -> int:
    """Run inference over ``opt.input`` and write the outputs; returns 0.

    Raises:
        UserError: bad input (missing file, unknown extension, bag without the topic,
            unreadable video or image, intrinsics for another size).
        packnet_ros.weights.WeightsError: no such weights.
    """
    from ..evaluation.visualize import DepthColormap, depth_picture, panel, save_png, with_colorbar
    from ..pipeline import FrameInput, PipelineSettings, pipeline_from_weights
    from ..weights import resolve_weights

    if opt.every < 1:
        raise _user_error('--every must be >= 1')
    if opt.max_frames is not None and opt.max_frames < 1:
        raise _user_error('--max-frames must be >= 1')
    kind = input_kind(opt.input, opt.topic)
    camera = _Camera(opt.intrinsics) if opt.intrinsics else None
    notes: list[str] = []
    total: int | None
    if kind == 'image':
        frames, total = _image_frames([opt.input], camera), 1
    elif kind == 'folder':
        files = _folder_images(opt.input)[::opt.every]
        frames, total = _image_frames(files, camera), len(files)
    elif kind == 'video':
        count, _ = _video_info(opt.input)
        frames, total = _video_frames(opt.input, camera, opt.every), (count + opt.every - 1) // opt.every or None
    else:
        topics = _bag_topics(opt.input)
        topic = bag_image_topic(topics, opt.topic, opt.input)
        info_topic: str | None = opt.camera_info_topic or topic.rsplit('/', 1)[0] + '/camera_info'
        if info_topic not in topics:
            if opt.camera_info_topic:
                raise _user_error(f'{opt.input} has no topic {info_topic} (--camera-info-topic)')
            info_topic = None
        if camera is None and info_topic is None:
            notes.append(f'no CameraInfo beside {topic} in the bag')
        frames = _bag_frames(opt.input, topic, None if camera else info_topic, camera, opt.every, notes)
        total = None
        say(f'[infer] bag {opt.input}: images {topic}, intrinsics '
            f'{"--intrinsics " + str(opt.intrinsics) if camera else info_topic or "none"}')
    if opt.max_frames is not None and total is not None:
        total = min(total, opt.max_frames)
    first = next(frames, None)   # a bad input fails here, before the network loads or --out is made
    if first is None:
        raise _user_error(f'{opt.input}: no frame could be read' + (f' ({notes[0]})' if notes else ''))
    frames = itertools.chain([first], frames)

    resolved = resolve_weights(opt.checkpoint, with_pose=False)
    settings = PipelineSettings(max_depth_m=opt.max_depth, output_resolution=opt.resolution, cloud=opt.ply)
    pipeline = pipeline_from_weights(resolved.checkpoint, settings, opt.device, opt.precision)
    est = pipeline.estimator
    say(f'[infer] weights: {resolved.description}; {kind} {opt.input}; output at the {opt.resolution} resolution')
    if camera is not None and camera.distorted:
        say(f'[infer] undistorting the images with {opt.intrinsics} (K kept)')
    opt.out.mkdir(parents=True, exist_ok=True)
    rows = []
    no_k = 0
    progress = _Progress(total, 'infer')
    try:
        for i, frame in enumerate(frames):
            if opt.max_frames is not None and i >= opt.max_frames:
                break
            out = pipeline.process(FrameInput(frame.rgb, frame.K, frame.stamp_ns), cloud=opt.ply and frame.K is not None)
            depth = out.depth.astype(np.float32, copy=False)
            if frame.K is None:
                no_k += 1
            if opt.fmt == 'npz':
                stamp = np.asarray(frame.stamp_ns, np.int64)
                if out.K is not None:
                    np.savez(opt.out / f'{frame.name}.npz', depth=depth, K=np.asarray(out.K, np.float64), stamp_ns=stamp)
                else:
                    np.savez(opt.out / f'{frame.name}.npz', depth=depth, stamp_ns=stamp)
            else:
                np.save(opt.out / f'{frame.name}.npy', depth)
            if opt.png:
                cmap = DepthColormap.for_depth(depth)
                pic = depth_picture(depth, cmap)
                label = 'depth (m)' if frame.K is not None else 'relative depth (no intrinsics)'
                save_png(opt.out / f'{frame.name}.png', panel([(frame.name, with_colorbar(out.rgb)), (label, pic)]))
            n_points: int | str = ''
            if opt.ply and out.cloud is not None:
                cloud = out.cloud
                pts = np.stack([cloud['x'], cloud['y'], cloud['z']], -1)
                n_points = write_ply(opt.out / f'{frame.name}.ply', pts, out.rgb, binary=not opt.ply_ascii)
            s = out.depth_summary()
            rows.append({'name': frame.name, 'source': frame.source, 'stamp_ns': frame.stamp_ns,
                         'width': depth.shape[1], 'height': depth.shape[0], 'intrinsics': frame.K is not None,
                         'valid_ratio': round(s['valid_ratio'], 4), 'min_m': round(s['min_m'], 3),
                         'median_m': round(s['median_m'], 3), 'max_m': round(s['max_m'], 3),
                         'ply_points': n_points})
            progress.update()
    finally:
        progress.close()
        pipeline.stop()
    with open(opt.out / 'frames.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    for note in notes:
        say(f'[infer] note: {note}')
    if no_k:
        say(f'[infer] {no_k} of {len(rows)} frames without intrinsics (give --intrinsics camera.yaml): their '
            f'depth is relative (the scale of {est.spec.label} holds only for a camera like its training '
            f'camera), and they have no point cloud' + (' (--ply skipped)' if opt.ply else ''))
    outputs = [f'.{opt.fmt}'] + (['.png'] if opt.png else []) + (['.ply'] if opt.ply and no_k < len(rows) else [])
    say(f'[infer] wrote {len(rows)} frames ({", ".join(outputs)}) and frames.csv to {opt.out}')
    return 0


def _cmd_infer(args) -> int:
    opt = InferOptions(Path(args.input), Path(args.out), args.checkpoint, args.intrinsics, args.topic,
                       args.camera_info_topic, args.format, args.ply, args.ply_ascii, not args.no_png,
                       args.max_frames, args.every, args.resolution, args.max_depth, args.device, args.precision)
    return run_infer(opt)


def register(sub) -> None:
    """Add the ``infer`` verb."""
    p = sub.add_parser('infer', help='depth (.npy/.npz), colour PNGs and PLY clouds for images, a folder, '
                                     'a video or a bag topic')
    p.add_argument('input', help='image file, folder of images, video file, or rosbag2 (folder, .mcap, .db3)')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--checkpoint', default='default', help='"default", a .ckpt, or untrained[:Network[:width]]')
    p.add_argument('--intrinsics', default=None,
                   help='camera YAML (ROS camera_info or camera_matrix/distortion/image_size) for metric '
                        'depth and point clouds; a bag\'s CameraInfo is used without it')
    p.add_argument('--topic', default=None, help='bag image topic (default: the only one, or /camera/image_raw)')
    p.add_argument('--camera-info-topic', default=None, help='bag CameraInfo topic (default: beside --topic)')
    p.add_argument('--format', choices=('npy', 'npz'), default='npy',
                   help='npy: depth only; npz: depth, K and stamp_ns')
    p.add_argument('--ply', action='store_true', help='also write a PLY point cloud per frame (x y z r g b)')
    p.add_argument('--ply-ascii', action='store_true', help='ASCII PLY (default binary little-endian)')
    p.add_argument('--no-png', action='store_true', help='skip the colour pictures')
    p.add_argument('--max-frames', type=int, default=None, help='stop after N frames')
    p.add_argument('--every', type=int, default=1, help='use every N-th frame / image')
    p.add_argument('--resolution', choices=('network', 'camera'), default='network',
                   help='depth at the network input size or resized back to the camera image')
    p.add_argument('--max-depth', type=float, default=80.0, help='deeper pixels become +Inf (REP 117)')
    p.add_argument('--device', default='auto')
    p.add_argument('--precision', default='auto')
    p.set_defaults(func=_cmd_infer)
