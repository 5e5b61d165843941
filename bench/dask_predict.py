"""Measured runs of fastconv.dask (not a test; the figures go to bench/RESULTS.md).

unet:     a 3 x S x S float32 image in a zarr store on disk through models.unet(depth 3,
          base 16) with `fastconv predict` (tile 1024): wall time, pixels/s, the peak RSS of
          the predict process, and the halo overhead (computed input pixels / output pixels),
          against the same model on one in-memory 1024 x 1024 image (median of runs taken
          before and after the tiled run).
resnet50: a batch of 64 x 3 x 224 x 224 through models.resnet50 on a 2-worker
          LocalCluster (processes, one thread each) in chunks of 8 images, against the
          in-memory batch of 64 in this process.

    python bench/dask_predict.py unet --size 16384          # 3.2 GB input under --dir
    python bench/dask_predict.py unet --size 4096           # the quick estimate
    python bench/dask_predict.py interleaved --size 16384 --repeat 7   # the steady-state ratio
    python bench/dask_predict.py resnet50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = re.search(r"Model name:\s*(.+)", out)
        return f"{name.group(1).strip() if name else platform.processor()}, {os.cpu_count()} CPUs"
    except OSError:
        return f"{platform.processor()}, {os.cpu_count()} CPUs"


def make_image(path: str, size: int, chunk: int = 1024) -> None:
    """3 x size x size float32 in [0, 1), written chunk by chunk (uncompressed: 4 bytes a
    value on disk), so writing it never holds more than one chunk row."""
    import zarr

    if os.path.exists(path):
        z = zarr.open_array(path, mode="r")
        if z.shape == (3, size, size):
            return
        shutil.rmtree(path)
    z = zarr.create_array(path, shape=(3, size, size), chunks=(3, chunk, chunk), dtype="f4",
                          compressors=None, overwrite=True)
    rng = np.random.default_rng(0)
    for i in range(0, size, chunk):
        z[:, i:i + chunk, :] = rng.random((3, min(chunk, size - i), size), np.float32)


def in_memory_unet(repeat: int) -> list:
    """Seconds per forward pass of unet(depth 3, base 16) on one 1024 x 1024 image."""
    from fastconv import models

    net = models.unet(3, 2, base=16, depth=3, generator=0)
    x = np.random.default_rng(1).random((1, 3, 1024, 1024), np.float32)
    net(x[:, :, :64, :64])  # load the backend
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - t)
    return times


def run_cli(argv: list, env: dict) -> tuple:
    """Run `fastconv predict` in a child process: (stdout+stderr, wall s, peak RSS bytes)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out}")
    return out, wall, usage.ru_maxrss * 1024


def bench_unet(args) -> dict:
    from fastconv import models
    from fastconv.dask.tiling import plan

    os.makedirs(args.dir, exist_ok=True)
    src = os.path.join(args.dir, f"image-{args.size}.zarr")
    dst = os.path.join(args.dir, f"unet-{args.size}.zarr")
    t = time.perf_counter()
    make_image(src, args.size)
    print(f"input {src}: 3 x {args.size} x {args.size} float32 ({time.perf_counter() - t:.0f} s "
          "to write)", flush=True)
    net = models.unet(3, 2, base=16, depth=3, initialize=False)
    tp = plan(net, (3, args.size, args.size), args.tile)
    before = in_memory_unet(args.repeat)
    exe = shutil.which("fastconv") or os.path.join(os.path.dirname(sys.executable), "fastconv")
    cmd = [exe, "predict", "unet", "--model-args",
           "depth=3,base=16", "--input", src, "--output", dst, "--tile", str(args.tile),
           "--overwrite"]
    env = dict(os.environ)
    if args.dask_threads:
        env["DASK_NUM_WORKERS"] = str(args.dask_threads)
    if args.kernel_threads:
        env["FASTCONV_NUM_THREADS"] = str(args.kernel_threads)
    out, wall, rss = run_cli(cmd, env)
    after = in_memory_unet(args.repeat)
    wrote = re.search(r"tiles in ([\d.]+) s", out)
    compute = float(wrote.group(1)) if wrote else wall
    base = statistics.median(before + after)
    tiled_rate = args.size**2 / compute
    mem_rate = 1024**2 / base
    res = {
        "bench": "unet", "size": args.size, "tile": args.tile, "cpu": cpu_model(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": os.getloadavg(), "dask_threads": args.dask_threads,
        "kernel_threads": args.kernel_threads, "tiles": tp.n_tiles,
        "halo_overhead": round(tp.halo_overhead, 4), "crop_example": tp.h.crops[1:2],
        "tiled_s": round(compute, 1), "process_s": round(wall, 1),
        "tiled_px_per_s": round(tiled_rate), "in_memory_s": [round(v, 2) for v in before + after],
        "in_memory_px_per_s": round(mem_rate), "ratio": round(tiled_rate / mem_rate, 3),
        "peak_rss_gib": round(rss / 2**30, 3), "command": "fastconv " + " ".join(cmd[1:]),
    }
    print(out.strip().splitlines()[-1])
    print(json.dumps(res, indent=1))
    if not args.keep:
        shutil.rmtree(dst, ignore_errors=True)
    return res


def bench_interleaved(args) -> dict:
    """Rounds of (one in-memory 1024 x 1024 forward pass, one interior tile of the zarr image
    through predict: read its crop, forward, cut); the median of the per-round ratios is the
    steady-state throughput ratio of a large image, robust to a machine whose load drifts."""
    import zarr

    from fastconv import models
    from fastconv.dask import predict
    from fastconv.dask.tiling import plan

    src = os.path.join(args.dir, f"image-{args.size}.zarr")
    make_image(src, args.size)
    image = zarr.open_array(src, mode="r")
    net = models.unet(3, 2, base=16, depth=3, generator=0)
    x = np.random.default_rng(1).random((1, 3, 1024, 1024), np.float32)
    y = predict(net, image, tile=args.tile)
    tp = plan(net, image.shape, args.tile)
    mid = len(tp.h.tiles) // 2
    (o0, o1), (c0, c1) = tp.h.tiles[mid], tp.h.crops[mid]
    block = y[:, o0:o1, o0:o1]  # an interior tile: dask keeps its one task
    net(x[:, :, :64, :64])
    block.compute(scheduler="sync")
    mem, tile, ratios = [], [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        net(x)
        mem.append(time.perf_counter() - t)
        t = time.perf_counter()
        block.compute(scheduler="sync")
        tile.append(time.perf_counter() - t)
        ratios.append(mem[-1] / tile[-1])  # both give 1024 x 1024 output pixels
    res = {
        "bench": "unet-interleaved", "size": args.size, "tile": args.tile, "cpu": cpu_model(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": os.getloadavg(), "interior_crop": (c0, c1),
        "interior_tile_overhead": round(((c1 - c0) / (o1 - o0)) ** 2, 4),
        "halo_overhead": round(tp.halo_overhead, 4),
        "in_memory_s": [round(v, 2) for v in mem], "tile_s": [round(v, 2) for v in tile],
        "ratios": [round(r, 3) for r in ratios], "median_ratio": round(statistics.median(ratios), 3),
    }
    print(json.dumps(res, indent=1))
    return res


def _worker_env(n: int) -> None:
    import fastconv

    fastconv.set_num_threads(n)


def bench_resnet50(args) -> dict:
    import dask.array as da
    import distributed

    import fastconv
    from fastconv import models
    from fastconv.dask import predict

    net = models.resnet50(generator=0)
    x = np.random.default_rng(0).random((64, 3, 224, 224), np.float32)
    net(x[:1])
    mem = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        ref = net(x)
        mem.append(time.perf_counter() - t)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.run(_worker_env, args.kernel_threads or 1)
        xd = da.from_array(x, chunks=(8, 3, 224, 224))
        y = predict(net, xd, tile=None, client=client)
        client.compute(y).result()  # load the backends in both workers (JIT, extension)
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            got = client.compute(y).result()
            runs.append(time.perf_counter() - t)
    err = float(np.abs(got - ref).max() / np.abs(ref).max())
    res = {
        "bench": "resnet50", "batch": 64, "chunk": 8, "cpu": cpu_model(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": os.getloadavg(), "worker_kernel_threads": args.kernel_threads or 1,
        "in_memory_s": [round(v, 2) for v in mem], "cluster_s": [round(v, 2) for v in runs],
        "in_memory_img_per_s": round(64 / statistics.median(mem), 2),
        "cluster_img_per_s": round(64 / statistics.median(runs), 2),
        "ratio": round(statistics.median(mem) / statistics.median(runs), 3),
        "max_rel_err": err, "in_memory_threads": fastconv.get_num_threads(),
    }
    print(json.dumps(res, indent=1))
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=["unet", "interleaved", "resnet50"])
    p.add_argument("--size", type=int, default=16384)
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--dir", default="/tmp/fastconv-dask-bench")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dask-threads", type=int, default=None,
                   help="threads of dask's local scheduler (DASK_NUM_WORKERS)")
    p.add_argument("--kernel-threads", type=int, default=None,
                   help="fastconv threads per task (FASTCONV_NUM_THREADS / per worker)")
    p.add_argument("--keep", action="store_true", help="keep the output store")
    p.add_argument("--json", default=None, help="append the result to this JSON-lines file")
    args = p.parse_args()
    res = {"unet": bench_unet, "interleaved": bench_interleaved,
           "resnet50": bench_resnet50}[args.which](args)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
