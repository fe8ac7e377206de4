"""``packnet-ros benchmark``: latency, throughput against the machine's peak, node overheads,
end-to-end loopback latency and memory, all measured in one run (ratios are what to compare:
machines are shared and noisy).

Sections of the JSON report (``--json OUT``; keys documented in README.md "Benchmark"):
``machine`` (CPU/GPU, torch, threads), ``peak`` (measured matrix-multiply GFLOP/s per dtype),
``networks`` (per network, input size and path: median/p90 ms, speed-up vs fp32 eager, mean
relative depth difference vs fp32 eager, nominal and executed GFLOP, achieved GFLOP/s and
fraction of peak), ``node_overhead`` (the node's per-frame work outside the network, run
through the same pipeline and message functions as ``packnet_node``: message -> array, each
pipeline stage, output messages; for a 1242x375 rgb8 frame), ``completion`` (IP-Basic on a
1242x375 KITTI LiDAR depth image, one OpenCV thread), ``e2e`` (image
published -> cloud received over loopback with the Fast DDS profile at a fixed rate, minus
the node's own inference time), ``memory`` (peak RSS; CUDA max allocated). The ROS measurements live in
:mod:`packnet_ros.ros.loopback`.
"""
from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import default_checkpoint_path
from ..geometry import inv_to_depth
from ..jsonio import write_json
from ..machine import cpu_supports_fast_bf16, machine_info
from ..networks import depth_output_kind
from ..networks.fast import prepare_for_inference
from ..networks.flops import conv_flops
from ..networks.openvino_backend import OpenVINODepthNet, openvino_native_bf16, openvino_version
from ..pipeline import PipelineSettings, pipeline_from_weights
from ..weights import WeightsError, resolve_weights
from .args import parse_size


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


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured GEMM throughput (GFLOP/s) of an n x n x n matrix multiply in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == 'cuda' else None
    with torch.inference_mode():
        stats = timeit(lambda: a @ b, 2, repeats, sync)
    return 2 * n ** 3 / (stats['min_ms'] * 1e-3) / 1e9


def paths_for(device: torch.device) -> list[Path_]:
    """fp32 eager (the baseline) and the fast paths this device offers (CPU: ``ov-fp32`` and,
    with native bf16, ``ov-bf16`` when OpenVINO is installed)."""
    if device.type == 'cuda':
        return [Path_('fp32-eager', torch.float32, 'eager'), Path_('fp16-eager', torch.float16, 'eager'),
                Path_('fp16-fast', torch.float16, 'fast'), Path_('bf16-fast', torch.bfloat16, 'fast')]
    out = [Path_('fp32-eager', torch.float32, 'eager'), Path_('fp32-fast', torch.float32, 'fast')]
    if cpu_supports_fast_bf16():
        out += [Path_('bf16-eager', torch.bfloat16, 'eager'), Path_('bf16-fast', torch.bfloat16, 'fast')]
    if openvino_version() is not None:  # the OpenVINO backend where it is installed
        out.append(Path_('ov-fp32', torch.float32, 'openvino'))
        if openvino_native_bf16():
            out.append(Path_('ov-bf16', torch.bfloat16, 'openvino'))
    return out


def load_network(weights: str) -> tuple[torch.nn.Module, str, str]:
    """(depth network, table label, where its weights come from) for a weights choice
    (:mod:`packnet_ros.weights`: "default", a .ckpt path, "untrained:<Network>[:width]").

    Untrained networks get packnet-sfm's initialisation with a fixed seed (timing does not
    depend on the values; the depth difference of reduced precision is measured on them).

    Raises:
        WeightsError: no such weights.
    """
    resolved = resolve_weights(weights, with_pose=False)
    network = resolved.checkpoint.spec.label
    label = network if resolved.choice.untrained else f'{resolved.choice.label} ({network})'
    return resolved.checkpoint.depth_net.eval(), label, resolved.description


def bench_network(net: torch.nn.Module, label: str, shape: tuple[int, int], device: torch.device,
                  x_img: torch.Tensor, peaks: dict, warmup: int, repeats: int, paths: list[Path_]) -> list[dict]:
    """All paths of one network at one input size; the first path is the fp32-eager reference.

    A network that outputs depth (BTS, SID: no packing layers to fold) runs its eager and
    OpenVINO paths only; its output is taken as depth in metres."""
    depth_out = depth_output_kind(net) == 'depth'
    if depth_out:
        paths = [p for p in paths if p.backend in ('eager', 'openvino')]
    x = torch.nn.functional.interpolate(x_img, size=shape, mode='area').to(device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else None
    from ..networks.fast import fold_pack_layers
    net = net.float().cpu().eval()
    nominal = conv_flops(net, x.cpu())
    executed_by_backend = {'eager': nominal, 'fast': conv_flops(fold_pack_layers(net), x.cpu())}
    executed_by_backend['compile'] = executed_by_backend['openvino'] = executed_by_backend['fast']
    rows, ref_depth, ref_ms = [], None, None
    for p in paths:
        # openvino: compiled for this shape without the disk cache (the benchmark leaves no files)
        model = prepare_for_inference(net, device, p.dtype, p.backend, input_shape=shape, cache=False)
        # OpenVINO takes the float32 input and runs its own precision (INFERENCE_PRECISION_HINT)
        xin = x if p.backend == 'openvino' else x.to(p.dtype).contiguous(memory_format=torch.channels_last)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            stats = timeit(lambda m=model: m(xin), warmup, repeats, sync)
            depth = model(xin).float() if depth_out else inv_to_depth(model(xin).float())
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
        if isinstance(model, OpenVINODepthNet):
            row.update(openvino_hint=model.hint, openvino_compile_s=model.export_s + model.compile_s)
        rows.append(row)
        del model
    return rows


def bench_node_frame(weights: str, repeats: int, rgb: np.ndarray | None, K: np.ndarray | None,
                     device: str) -> dict:
    """The node's per-frame work outside the network (see
    :func:`packnet_ros.ros.loopback.node_frame_overhead`) with ``weights`` at the node's
    default settings, with both navigation outputs computed (KITTI camera pose), plus the
    cost of each refinement method (``refinement``: {method: stage timing}; dense CRF with
    fewer repeats, it takes about a second a frame)."""
    from ..io.kitti import KITTI_CAMERA_POSE
    from ..postprocess.obstacles import ObstacleSettings, camera_pose_matrix, navigation_stages
    from ..postprocess.refine import REFINEMENTS, check_available, insert_refinement
    from ..ros.loopback import node_frame_overhead
    resolved = resolve_weights(weights, with_pose=True)
    pipeline = pipeline_from_weights(resolved.checkpoint, PipelineSettings(), device=device)
    scan, obstacles = navigation_stages(ObstacleSettings(T_target_camera=camera_pose_matrix(*KITTI_CAMERA_POSE)))
    pipeline.insert_stage(scan, after='cloud')
    pipeline.insert_stage(obstacles, after='scan')
    result = node_frame_overhead(pipeline, repeats, rgb, K)
    result['refinement'] = {}
    for method in (m for m in REFINEMENTS if m != 'none'):
        try:
            check_available(method)
        except (ImportError, RuntimeError) as exc:
            result['refinement'][method] = {'skipped': str(exc)}
            continue
        stage = insert_refinement(pipeline, method)
        n = max(2, repeats // 10) if method == 'crf' else repeats
        result['refinement'][method] = node_frame_overhead(pipeline, n, rgb, K, warmup=1)['refine']
        pipeline.stages.remove(stage)
    return result


def bench_completion(sparse: np.ndarray | None, repeats: int) -> dict:
    """IP-Basic (:mod:`packnet_ros.completion.ipbasic`) on one sparse LiDAR depth image
    (KITTI, 1242x375) with OpenCV on one thread (the paper's "1 CPU core"): median / p90 ms
    per variant. Without a frame: an empty dict."""
    import cv2

    from ..completion import parse_completion
    if sparse is None:
        return {}
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        out = {'frame': f'{sparse.shape[1]}x{sparse.shape[0]}', 'input_pixels': int((sparse > 0).sum()),
               'opencv_threads': 1}
        for text in ('completion:ipbasic', 'completion:ipbasic:bilateral:noextrapolate',
                     'completion:ipbasic:multiscale'):
            method = parse_completion(text)
            out[text] = {**timeit(lambda: method(sparse), 1, repeats), 'method': method.description}
        return out
    finally:
        cv2.setNumThreads(threads)


def run_benchmark(device: str = 'cpu', quick: bool = False, networks: list[str] | None = None,
                  shapes: list[tuple[int, int]] | None = None, e2e_frames: int | None = None,
                  data: Path | None = None, log=print,
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
    report['machine']['openvino'] = openvino_version()
    log(f'[benchmark] {report["machine"].get("cpu", "")} / {report["machine"].get("gpu", "cpu only")}, '
        f'torch threads {torch.get_num_threads()}')
    dtypes = ([torch.float32, torch.bfloat16] if dev.type == 'cpu' and cpu_supports_fast_bf16() else [torch.float32]) \
        if dev.type == 'cpu' else [torch.float32, torch.float16, torch.bfloat16]
    report['peak'] = {str(dt).replace('torch.', ''): matmul_peak(dev, dt, 1024 if quick else 2048) for dt in dtypes}
    log('[benchmark] matmul peak GFLOP/s: ' + ', '.join(f'{k} {v:.0f}' for k, v in report['peak'].items()))
    if networks is None:
        networks = (['untrained:PackNetSlim01'] if quick
                    else ['untrained:PackNet01', 'untrained:PackNetSlim01', 'default'])
    shapes = shapes or ([(192, 640)] if dev.type == 'cpu' else [(192, 640), (384, 1280)])
    if quick:
        shapes = [(96, 320)]
    rows = []
    for name in networks:
        try:
            net, label, source = load_network(name)
        except WeightsError as exc:
            log(f'[benchmark] skip {name}: {exc}')
            continue
        for shape in shapes:
            for r in bench_network(net, label, shape, dev, x_img, report['peak'], warmup, repeats, paths_for(dev)):
                r['weights'] = source
                rows.append(r)
                log(f'[benchmark] {r["network"]:28s} {r["input"]:9s} {r["path"]:11s} median {r["median_ms"]:8.1f} ms '
                    f'p90 {r["p90_ms"]:8.1f} x{r["speedup_vs_fp32_eager"]:5.2f} rel.diff {r["mean_rel_depth_diff"]:.4f} '
                    f'exec {r["executed_gflops"]:6.0f} GFLOP/s')
    report['networks'] = rows
    node_weights = 'default' if default_checkpoint_path() else 'untrained:PackNetSlim01:0.25'
    report['node_overhead'] = bench_node_frame(node_weights, 5 if quick else 30, kitti_rgb, K, device)
    log(f'[benchmark] node per-frame work outside the network ({report["node_overhead"]["frame"]}): '
        f'{report["node_overhead"]["total_median_ms"]:.2f} ms; ~/scan '
        f'{report["node_overhead"]["scan"]["median_ms"]:.2f} ms, ~/obstacles '
        f'{report["node_overhead"]["obstacles"]["median_ms"]:.2f} ms; refinement ' + ', '.join(
            f'{m} {r["median_ms"]:.1f} ms' if 'median_ms' in r else f'{m} skipped'
            for m, r in report['node_overhead']['refinement'].items()))
    report['completion'] = bench_completion(_kitti_sparse(data), 5 if quick else 30)
    if report['completion']:
        log('[benchmark] depth completion, 1 OpenCV thread, ' + report['completion']['frame'] + ': ' + ', '.join(
            f'{k} {v["median_ms"]:.1f} ms' for k, v in report['completion'].items() if isinstance(v, dict)))
    n = e2e_frames if e2e_frames is not None else (10 if quick else 100)
    if n > 0:
        from ..ros.loopback import image_to_cloud_latency
        params = {'device': device} if dev.type == 'cuda' else {}
        rate = e2e_rate_hz or (2.0 if quick else 10.0)
        report['e2e'] = image_to_cloud_latency(node_weights, n, rate, params, kitti_rgb, K)
        e = report['e2e']
        if e['latency']:
            log(f'[benchmark] e2e image->cloud at {e["rate_hz"]:.0f} Hz: median {e["latency"]["median_ms"]:.1f} ms, '
                f'minus network {e["latency_minus_network"]["median_ms"]:.1f} ms '
                f'({e["frames_received"]}/{e["frames_sent"]} frames)')
    if soak_frames:
        from ..ros.loopback import soak
        report['soak'] = soak(soak_frames, soak_rate_hz, kitti_rgb, K)
        sk = report['soak']
        log(f'[benchmark] soak: {sk["frames_received"]}/{sk["frames_sent"]} frames at {sk["rate_hz"]:.0f} Hz '
            f'({sk["dropped"]} dropped), node RSS {sk["rss_warm_mb"]:.0f} -> {sk["rss_end_mb"]:.0f} MiB '
            f'({100 * sk["rss_growth"]:+.2f} %)')
    report['memory'] = {'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return report


def _default_kitti_root() -> Path:
    """kitti_tiny in ``../shared/data`` beside the repository (the documented layout), else
    in a ``shared/`` inside it."""
    here = Path(__file__).resolve()
    candidates = [here.parents[3] / 'shared' / 'data' / 'kitti_tiny', here.parents[2] / 'shared' / 'data' / 'kitti_tiny']
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _kitti_frame(data: Path | None):
    try:
        from ..io.kitti import KittiDrive, find_kitti_drive
        root = data or _default_kitti_root()
        drive = KittiDrive(find_kitti_drive(root))
        return drive.image(drive.frames[0]), drive.K
    except Exception:  # noqa: BLE001 - the benchmark runs on random input without the data
        return None, None


def _kitti_sparse(data: Path | None) -> np.ndarray | None:
    """The first frame's projected LiDAR depth of kitti_tiny (1242x375 metres, 0 = no return),
    the sparse input of the completion timing; None without the data."""
    try:
        from ..io.kitti import KittiDrive, find_kitti_drive
        drive = KittiDrive(find_kitti_drive(data or _default_kitti_root()))
        return np.nan_to_num(drive.gt_depth(drive.frames[0]), nan=0.0)
    except Exception:  # noqa: BLE001 - no completion timing without the data
        return None


def _cmd_benchmark(args) -> int:
    shapes = [parse_size(s, '--shapes', 32) for s in args.shapes.split(',')] if args.shapes else None
    nets = ([] if args.networks == 'none' else args.networks.split(',')) if args.networks else None
    report = run_benchmark(args.device, args.quick, nets, shapes, args.e2e_frames,
                           Path(args.data) if args.data else None, e2e_rate_hz=args.e2e_rate,
                           soak_frames=args.soak, soak_rate_hz=args.soak_rate)
    if args.json:
        write_json(args.json, report)
        print(f'[benchmark] wrote {args.json}')
    return 0


def register(sub) -> None:
    """Add the ``benchmark`` verb."""
    p = sub.add_parser('benchmark', help='latency / throughput / overhead / memory, measured in one run')
    p.add_argument('--device', default='cpu', help='cpu | cuda | cuda:N')
    p.add_argument('--json', default=None, help='write the report here')
    p.add_argument('--quick', action='store_true', help='small and fast (CI smoke test)')
    p.add_argument('--networks', default=None, help='comma list of weights ("default", a .ckpt, "untrained:<Network>[:width]"), or none')
    p.add_argument('--shapes', default=None, help='comma list of WxH (multiples of 32), e.g. 640x192,1280x384')
    p.add_argument('--soak', type=int, default=0, help='frames for the soak test (e.g. 10000; 0 = skip)')
    p.add_argument('--soak-rate', type=float, default=20.0, help='publish rate of the soak test, Hz')
    p.add_argument('--e2e-rate', type=float, default=None, help='publish rate of the loopback test, Hz (default 10)')
    p.add_argument('--e2e-frames', type=int, default=None, help='frames for the loopback latency test (0 = skip)')
    p.add_argument('--data', default=None, help='kitti_tiny folder (input frame)')
    p.set_defaults(func=_cmd_benchmark)
