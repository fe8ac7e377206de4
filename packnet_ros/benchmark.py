"""``packnet-ros benchmark``: latency, throughput against the machine's peak, node overheads,
end-to-end loopback latency and memory, all measured in one run (ratios are what to compare:
machines are shared and noisy).

Sections of the JSON report (``--json OUT``; keys documented in README.md "Benchmark"):
``machine`` (CPU/GPU, torch, threads), ``peak`` (measured matrix-multiply GFLOP/s per dtype),
``networks`` (per network, input size and path: median/p90 ms, speed-up vs fp32 eager, mean
relative depth difference vs fp32 eager, nominal and executed GFLOP, achieved GFLOP/s and
fraction of peak), ``node_overhead`` (message -> array, preprocess, depth -> Image,
depth -> cloud -> PointCloud2, camera_info; for a 1242x375 rgb8 frame), ``e2e`` (image
published -> cloud received over loopback with the Fast DDS profile at a fixed rate, minus
the node's own inference time), ``memory`` (peak RSS; CUDA max allocated).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import ModelSpec, default_checkpoint_path, load_checkpoint
from .inference import cpu_supports_fast_bf16
from .networks import build_depth_net
from .networks.fast import prepare_for_inference
from .networks.flops import conv_flops
from .networks.reference import fill_reference_params


@dataclass
class Path_:
    """A way of running the network: name, dtype, backend."""

    name: str
    dtype: torch.dtype
    backend: str


def timeit(fn, warmup: int, repeats: int, sync=None) -> dict:
    """Wall-clock statistics of ``fn()`` in milliseconds after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(1e3 * (time.perf_counter() - t))
    times.sort()
    return {'median_ms': statistics.median(times), 'p90_ms': times[min(len(times) - 1, int(0.9 * len(times)))],
            'mean_ms': statistics.fmean(times), 'min_ms': times[0], 'n': len(times)}


def machine_info(device: torch.device) -> dict:
    info = {'platform': platform.platform(), 'python': platform.python_version(), 'torch': str(torch.__version__),
            'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
            'cpu_native_bf16': cpu_supports_fast_bf16(), 'device': str(device)}
    try:
        with open('/proc/cpuinfo') as f:
            flags = ''
            for line in f:
                if line.startswith('model name') and 'cpu' not in info:
                    info['cpu'] = line.split(':', 1)[1].strip()
                if line.startswith('flags') and not flags:
                    flags = line
            info['amx'] = 'amx_bf16' in flags
            info['avx512_bf16'] = 'avx512_bf16' in flags
    except OSError:
        pass
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured GEMM throughput (GFLOP/s) of an n x n x n matrix multiply in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == 'cuda' else None
    with torch.inference_mode():
        stats = timeit(lambda: a @ b, 2, repeats, sync)
    return 2 * n ** 3 / (stats['min_ms'] * 1e-3) / 1e9


def paths_for(device: torch.device) -> list[Path_]:
    """fp32 eager (the baseline) and the fast paths this device offers."""
    if device.type == 'cuda':
        return [Path_('fp32-eager', torch.float32, 'eager'), Path_('fp16-eager', torch.float16, 'eager'),
                Path_('fp16-fast', torch.float16, 'fast'), Path_('bf16-fast', torch.bfloat16, 'fast')]
    out = [Path_('fp32-eager', torch.float32, 'eager'), Path_('fp32-fast', torch.float32, 'fast')]
    if cpu_supports_fast_bf16():
        out += [Path_('bf16-eager', torch.bfloat16, 'eager'), Path_('bf16-fast', torch.bfloat16, 'fast')]
    return out


def load_network(name: str, fixtures: Path | None = None) -> tuple[torch.nn.Module, str]:
    """(depth network, where its weights come from) for "PackNet01", "PackNetSlim01", "default" or a .ckpt.

    PackNet01 / PackNetSlim01 get packnet-sfm's initialisation with a fixed seed (timing does
    not depend on the values). Not the fidelity fixture's parameters, unless ``fixtures`` is
    given: they make an ill-conditioned network (1e-3 of input noise changes its depth by ~3 %),
    so the depth difference of reduced precision would measure them, not the path.
    """
    if name in ('PackNet01', 'PackNetSlim01'):
        torch.manual_seed(0)
        net = build_depth_net(name, '1A')
        if fixtures is None:
            return net.eval(), 'packnet-sfm initialisation (seed 0)'
        fill_reference_params(net, name, fixtures)
        return net.eval(), 'fidelity-fixture parameters'
    path = default_checkpoint_path() if name == 'default' else Path(name)
    if path is None:
        raise FileNotFoundError('no default checkpoint is installed')
    return load_checkpoint(path, with_pose=False).depth_net.eval(), f'checkpoint {path.name}'


def bench_network(net: torch.nn.Module, label: str, shape: tuple[int, int], device: torch.device,
                  x_img: torch.Tensor, peaks: dict, warmup: int, repeats: int, paths: list[Path_]) -> list[dict]:
    """All paths of one network at one input size; the first path is the fp32-eager reference."""
    x = torch.nn.functional.interpolate(x_img, size=shape, mode='area').to(device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else None
    from .networks.fast import fold_pack_layers
    net = net.float().cpu().eval()
    nominal = conv_flops(net, x.cpu())
    executed_by_backend = {'eager': nominal, 'fast': conv_flops(fold_pack_layers(net), x.cpu())}
    rows, ref_depth, ref_ms = [], None, None
    for p in paths:
        model = prepare_for_inference(net, device, p.dtype, p.backend)
        xin = x.to(p.dtype).contiguous(memory_format=torch.channels_last)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            stats = timeit(lambda: model(xin), warmup, repeats, sync)
            depth = 1.0 / model(xin).float().clamp(min=1e-6)
        executed = executed_by_backend[p.backend]
        if ref_depth is None:
            ref_depth, ref_ms = depth, stats['median_ms']
        rel = float(((depth - ref_depth).abs() / ref_depth).mean())
        peak = peaks.get(str(p.dtype).replace('torch.', ''))
        achieved = nominal / (stats['median_ms'] * 1e-3) / 1e9
        row = {'network': label, 'input': f'{shape[1]}x{shape[0]}', 'path': p.name, **stats,
               'speedup_vs_fp32_eager': ref_ms / stats['median_ms'], 'mean_rel_depth_diff': rel,
               'gflop_nominal': nominal / 1e9, 'gflop_executed': executed / 1e9,
               'effective_gflops': achieved, 'executed_gflops': executed / (stats['median_ms'] * 1e-3) / 1e9,
               'peak_gflops': peak,
               'executed_fraction_of_peak': (executed / (stats['median_ms'] * 1e-3) / 1e9 / peak) if peak else None}
        if device.type == 'cuda':
            row['cuda_max_allocated_mb'] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        rows.append(row)
        del model
    return rows


def bench_node_overhead(repeats: int, kitti_image: np.ndarray | None) -> dict:
    """The node's costs outside the network for a 1242x375 rgb8 frame (same functions the node calls)."""
    from .geometry import scale_intrinsics
    from .imageproc import resize_rgb, rgb_to_tensor
    from .pointcloud import depth_to_xyz, make_cloud_array
    from .ros.conversions import (cloud_to_msg, depth_to_image_msg, image_msg_to_rgb, make_camera_info,
                                  make_header, resized_camera_info, rgb_to_image_msg)
    rgb = kitti_image if kitti_image is not None else np.random.default_rng(0).integers(0, 255, (375, 1242, 3), np.uint8)
    H, W = rgb.shape[:2]
    header = make_header(1, 'cam')
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    msg = rgb_to_image_msg(rgb, header)
    info = make_camera_info(header, K, W, H)
    depth = np.random.default_rng(1).uniform(2, 60, (192, 640)).astype(np.float32)
    small = resize_rgb(rgb, 192, 640)
    Ks = scale_intrinsics(K, 640 / W, 192 / H)
    parts = {
        'image_msg_to_array': lambda: image_msg_to_rgb(msg),
        'preprocess_resize_to_tensor': lambda: rgb_to_tensor(resize_rgb(rgb, 192, 640)),
        'depth_to_image_msg': lambda: depth_to_image_msg(depth, header),
        'camera_info_msg': lambda: resized_camera_info(info, header, 640, 192),
        'depth_to_cloud_xyzrgb': lambda: make_cloud_array(depth_to_xyz(depth, Ks), small),
        'cloud_to_pointcloud2_msg': (lambda c=make_cloud_array(depth_to_xyz(depth, Ks), small): cloud_to_msg(c, header)),
    }
    out = {name: timeit(fn, 3, repeats) for name, fn in parts.items()}
    out['total_median_ms'] = sum(v['median_ms'] for v in out.values())
    out['frame'] = f'{W}x{H} rgb8 -> 640x192 depth + xyzrgb cloud'
    return out


def _rss_mb(pid: int) -> float | None:
    """Resident set size of process ``pid`` in MiB (Linux /proc), None if unreadable."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def bench_e2e(checkpoint: str, frames: int, rate_hz: float, node_params: dict | None = None,
              kitti_image: np.ndarray | None = None, K: np.ndarray | None = None, rss_every: int = 0) -> dict:
    """Image published -> cloud received over loopback (node in its own process, Fast DDS profile).

    Frames are published at ``rate_hz`` (not paced); latency = cloud arrival - publish time;
    overhead = latency - the node's inference_ms for that frame (from ~/stats). With
    ``rss_every`` > 0 the node process's RSS (MiB) is sampled every that many frames
    (``rss_mb``: list of [frame, MiB]).
    """
    from .ros.live import NodeProcess, local_ros_env
    local_ros_env()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from packnet_ros.msg import DepthStats

    from .ros.conversions import make_camera_info, make_header, rgb_to_image_msg, stamp_to_ns
    rgb = kitti_image if kitti_image is not None else np.random.default_rng(0).integers(0, 255, (375, 1242, 3), np.uint8)
    K = K if K is not None else np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    params = {'checkpoint': checkpoint, **(node_params or {})}
    with NodeProcess(params, remap={'image': '/bench/image', 'camera_info': '/bench/camera_info'},
                     use_sim_time=False, log_path=Path('/tmp') / f'packnet_bench_node_{os.getpid()}.log') as proc:
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        node = rclpy.create_node('packnet_bench', context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        try:
            reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            pub_img = node.create_publisher(Image, '/bench/image', qos_profile_sensor_data)
            pub_info = node.create_publisher(CameraInfo, '/bench/camera_info', qos_profile_sensor_data)
            sent, cloud_at, infer = {}, {}, {}
            node.create_subscription(PointCloud2, '/packnet_node/points',
                                     lambda m: cloud_at.setdefault(stamp_to_ns(m.header.stamp), time.perf_counter()),
                                     reliable)
            node.create_subscription(DepthStats, '/packnet_node/stats',
                                     lambda m: infer.setdefault(stamp_to_ns(m.header.stamp), m.inference_ms), reliable)
            end = time.time() + 120
            while time.time() < end and not (pub_img.get_subscription_count() and pub_info.get_subscription_count()
                                             and node.count_publishers('/packnet_node/points')):
                if not proc.alive():
                    raise RuntimeError('packnet_node exited during start-up')
                ex.spin_once(timeout_sec=0.05)
            for _ in range(10):
                ex.spin_once(timeout_sec=0.05)
            period = 1.0 / rate_hz
            t_next = time.perf_counter()
            rss = []
            for i in range(frames):
                if rss_every and i % rss_every == 0:
                    rss.append([i, _rss_mb(proc.proc.pid)])
                stamp = 1_000_000_000 * (i + 1)
                header = make_header(stamp, 'cam')
                pub_info.publish(make_camera_info(header, K, rgb.shape[1], rgb.shape[0]))
                img = rgb_to_image_msg(rgb, header)
                sent[stamp] = time.perf_counter()
                pub_img.publish(img)
                t_next += period
                while time.perf_counter() < t_next:
                    ex.spin_once(timeout_sec=max(0.0, min(0.005, t_next - time.perf_counter())))
            end = time.time() + 10
            while time.time() < end and len(cloud_at) < len(sent):
                ex.spin_once(timeout_sec=0.05)
            if rss_every:
                rss.append([frames, _rss_mb(proc.proc.pid)])
        finally:
            ex.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=ctx)
    lat = [1e3 * (cloud_at[s] - sent[s]) for s in sent if s in cloud_at]
    over = [1e3 * (cloud_at[s] - sent[s]) - infer[s] for s in sent if s in cloud_at and s in infer]
    summary = (lambda v: {'median_ms': statistics.median(v), 'p90_ms': sorted(v)[int(0.9 * (len(v) - 1))],
                          'max_ms': max(v)} if v else {})
    return {'rate_hz': rate_hz, 'frames_sent': len(sent), 'frames_received': len(lat),
            'latency': summary(lat), 'latency_minus_network': summary(over),
            'node': params, **({'rss_mb': rss} if rss_every else {})}


SOAK_NODE = {'checkpoint': 'untrained', 'network': 'PackNetSlim01', 'network_width': 0.25,
             'input_height': 96, 'input_width': 320}
"""The soak's small model: PackNetSlim01 at width 0.25 and 320x96 input (issue 5 allows a small model on CPU)."""


def soak(frames: int, rate_hz: float, kitti_image: np.ndarray | None = None, K: np.ndarray | None = None,
         node_params: dict | None = None) -> dict:
    """``frames`` images through a node process at ``rate_hz``: dropped frames and RSS growth.

    The camera frame is the KITTI frame at half resolution (621x187, K scaled alike).
    Growth is measured from the sample after the first 10 % of frames (allocator and caches
    warm) to the end: ``rss_growth`` = (end - warm) / warm.
    """
    if kitti_image is not None and K is not None:
        import cv2
        kitti_image = cv2.resize(kitti_image, (kitti_image.shape[1] // 2, kitti_image.shape[0] // 2),
                                 interpolation=cv2.INTER_AREA)
        K = np.diag([0.5, 0.5, 1.0]) @ K
    params = dict(SOAK_NODE, **(node_params or {}))
    checkpoint = params.pop('checkpoint')
    every = max(1, frames // 50)
    r = bench_e2e(checkpoint, frames, rate_hz, params, kitti_image, K, rss_every=every)
    samples = [v for i, v in r['rss_mb'] if v is not None and i >= frames // 10]
    r['dropped'] = r['frames_sent'] - r['frames_received']
    r['rss_warm_mb'], r['rss_end_mb'] = (samples[0], samples[-1]) if samples else (None, None)
    r['rss_growth'] = (samples[-1] - samples[0]) / samples[0] if samples else None
    r['node']['checkpoint'] = checkpoint
    return r


def run_benchmark(device: str = 'cpu', quick: bool = False, networks: list[str] | None = None,
                  shapes: list[tuple[int, int]] | None = None, e2e_frames: int | None = None,
                  fixtures: Path | None = None, data: Path | None = None, log=print,
                  e2e_rate_hz: float | None = None, soak_frames: int = 0, soak_rate_hz: float = 20.0) -> dict:
    """Run every section; returns the JSON-serialisable report."""
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda but CUDA is not available')
    warmup, repeats = (1, 3) if quick else (2, 7)
    kitti_rgb, K = _kitti_frame(data)
    x_img = (torch.from_numpy(kitti_rgb).permute(2, 0, 1)[None].float() / 255.0) if kitti_rgb is not None \
        else torch.rand(1, 3, 375, 1242)
    report = {'machine': machine_info(dev), 'quick': quick, 'created': time.strftime('%Y-%m-%d %H:%M:%S')}
    log(f'[benchmark] {report["machine"].get("cpu", "")} / {report["machine"].get("gpu", "cpu only")}, '
        f'torch threads {torch.get_num_threads()}')
    dtypes = ([torch.float32, torch.bfloat16] if dev.type == 'cpu' and cpu_supports_fast_bf16() else [torch.float32]) \
        if dev.type == 'cpu' else [torch.float32, torch.float16, torch.bfloat16]
    report['peak'] = {str(dt).replace('torch.', ''): matmul_peak(dev, dt, 1024 if quick else 2048) for dt in dtypes}
    report['peak_gflops'] = report['peak']
    log('[benchmark] matmul peak GFLOP/s: ' + ', '.join(f'{k} {v:.0f}' for k, v in report['peak'].items()))
    if networks is None:
        networks = ['PackNetSlim01'] if quick else ['PackNet01', 'PackNetSlim01', 'default']
    shapes = shapes or ([(192, 640)] if dev.type == 'cpu' else [(192, 640), (384, 1280)])
    if quick:
        shapes = [(96, 320)]
    rows = []
    for name in networks:
        try:
            net, source = load_network(name, fixtures)
        except FileNotFoundError as exc:
            log(f'[benchmark] skip {name}: {exc}')
            continue
        label = name if name in ('PackNet01', 'PackNetSlim01') else f'default ({getattr(net, "channels", "")})'
        for shape in shapes:
            for r in bench_network(net, label, shape, dev, x_img, report['peak'], warmup, repeats, paths_for(dev)):
                r['weights'] = source
                rows.append(r)
                log(f'[benchmark] {r["network"]:28s} {r["input"]:9s} {r["path"]:11s} median {r["median_ms"]:8.1f} ms '
                    f'p90 {r["p90_ms"]:8.1f} x{r["speedup_vs_fp32_eager"]:5.2f} rel.diff {r["mean_rel_depth_diff"]:.4f} '
                    f'exec {r["executed_gflops"]:6.0f} GFLOP/s')
    report['networks'] = rows
    report['node_overhead'] = bench_node_overhead(5 if quick else 30, kitti_rgb)
    log(f'[benchmark] node overhead outside the network (1242x375 rgb8): '
        f'{report["node_overhead"]["total_median_ms"]:.2f} ms')
    n = e2e_frames if e2e_frames is not None else (10 if quick else 100)
    if n > 0:
        ckpt = 'default' if default_checkpoint_path() else 'untrained'
        params = {} if ckpt == 'default' else {'network': 'PackNetSlim01', 'network_width': 0.25}
        if dev.type == 'cuda':
            params['device'] = device
        rate = e2e_rate_hz or (2.0 if quick else 10.0)
        report['e2e'] = bench_e2e(ckpt, n, rate, params, kitti_rgb, K)
        e = report['e2e']
        if e['latency']:
            log(f'[benchmark] e2e image->cloud at {e["rate_hz"]:.0f} Hz: median {e["latency"]["median_ms"]:.1f} ms, '
                f'minus network {e["latency_minus_network"]["median_ms"]:.1f} ms '
                f'({e["frames_received"]}/{e["frames_sent"]} frames)')
    if soak_frames:
        report['soak'] = soak(soak_frames, soak_rate_hz, kitti_rgb, K)
        sk = report['soak']
        log(f'[benchmark] soak: {sk["frames_received"]}/{sk["frames_sent"]} frames at {sk["rate_hz"]:.0f} Hz '
            f'({sk["dropped"]} dropped), node RSS {sk["rss_warm_mb"]:.0f} -> {sk["rss_end_mb"]:.0f} MiB '
            f'({100 * sk["rss_growth"]:+.2f} %)')
    report['memory'] = {'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return report


def _kitti_frame(data: Path | None):
    try:
        from .data import KittiDrive
        from .demo import find_kitti_drive
        root = data or (Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'kitti_tiny')
        drive = KittiDrive(find_kitti_drive(root))
        return drive.image(drive.frames[0]), drive.K
    except Exception:  # noqa: BLE001 - the benchmark runs on random input without the data
        return None, None


def _cmd_benchmark(args) -> int:
    shapes = [tuple(int(v) for v in s.lower().split('x'))[::-1] for s in args.shapes.split(',')] if args.shapes else None
    nets = ([] if args.networks == 'none' else args.networks.split(',')) if args.networks else None
    report = run_benchmark(args.device, args.quick, nets, shapes, args.e2e_frames,
                           Path(args.fixtures) if args.fixtures else None,
                           Path(args.data) if args.data else None, e2e_rate_hz=args.e2e_rate,
                           soak_frames=args.soak, soak_rate_hz=args.soak_rate)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + '\n')
        print(f'[benchmark] wrote {args.json}')
    return 0


def register(sub) -> None:
    """Add the ``benchmark`` verb."""
    p = sub.add_parser('benchmark', help='latency / throughput / overhead / memory, measured in one run')
    p.add_argument('--device', default='cpu', help='cpu | cuda | cuda:N')
    p.add_argument('--json', default=None, help='write the report here')
    p.add_argument('--quick', action='store_true', help='small and fast (CI smoke test)')
    p.add_argument('--networks', default=None, help='comma list: PackNet01,PackNetSlim01,default,<ckpt>, or none')
    p.add_argument('--shapes', default=None, help='comma list of WxH (multiples of 32), e.g. 640x192,1280x384')
    p.add_argument('--soak', type=int, default=0, help='frames for the soak test (e.g. 10000; 0 = skip)')
    p.add_argument('--soak-rate', type=float, default=20.0, help='publish rate of the soak test, Hz')
    p.add_argument('--e2e-rate', type=float, default=None, help='publish rate of the loopback test, Hz (default 10)')
    p.add_argument('--e2e-frames', type=int, default=None, help='frames for the loopback latency test (0 = skip)')
    p.add_argument('--fixtures', default=None, help='use the packnet_reference fixture parameters for PackNet01/Slim '
                   '(default: packnet-sfm initialisation, seed 0)')
    p.add_argument('--data', default=None, help='kitti_tiny folder (input frame)')
    p.set_defaults(func=_cmd_benchmark)
