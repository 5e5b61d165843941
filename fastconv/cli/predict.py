"""`fastconv predict MODEL --input IN.zarr --output OUT.zarr`: tiled inference from zarr to
zarr (fastconv.dask.predict), with a progress bar; needs ``pip install "fastconv[dask]"``.

The output is written to a temporary store beside OUT and renamed to OUT only once every
tile is written, so an error or an interrupt leaves nothing partial under OUT; an existing
OUT is replaced only with --overwrite.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import sys
import threading
import time
import uuid
from typing import Any, Dict, Optional

HELP = "tiled inference of a model over a zarr image into a zarr store (needs fastconv[dask])"


def add_arguments(parser) -> None:
    from ..models import MODELS
    from ._args import int_at_least

    parser.add_argument("model", help=f"one of: {', '.join(MODELS)}")
    parser.add_argument("--input", required=True, metavar="IN.zarr",
                        help="zarr array (N, C, H, W) or (C, H, W)")
    parser.add_argument("--output", required=True, metavar="OUT.zarr",
                        help="zarr store to write (refused if it exists, unless --overwrite)")
    parser.add_argument("--weights", default=None, metavar="W.npz",
                        help="state_dict saved with numpy.savez (default: random weights, seed 0)")
    parser.add_argument("--tile", type=int_at_least(1), default=1024, metavar="PX",
                        help="tile side in input pixels, rounded up to the network's coarsest "
                             "grid (default 1024)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="K",
                        help="tiles per forward call (default 1)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="a dask.distributed scheduler (tcp://host:8786); default: dask's "
                             "local threaded scheduler")
    parser.add_argument("--model-args", default="", metavar="K=V,...",
                        help="model constructor arguments, e.g. depth=3,base=16 (in_channels "
                             "defaults to the image's channels)")
    parser.add_argument("--backend", default=None, help="backend of every layer (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _model_args(text: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--model-args must be KEY=VALUE pairs separated by commas, got "
                             f"{item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"needs {module} ({exc}); install with: pip install "
                         "\"fastconv[dask]\"") from None


def _open_input(zarr, path: str):
    if not os.path.exists(path):
        raise ValueError(f"--input {path!r} does not exist")
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:  # zarr raises its own types for unreadable stores
        raise ValueError(f"--input {path!r} is not a zarr store: {exc}") from None
    if not hasattr(node, "shape"):
        names = ", ".join(sorted(getattr(node, "array_keys", lambda: [])()))
        raise ValueError(f"--input {path!r} is a zarr group, not an array"
                         + (f" (its arrays: {names}; pass IN.zarr/NAME)" if names else ""))
    return node


def _check_output(path: str, overwrite: bool) -> str:
    out = os.path.abspath(path)
    folder = os.path.dirname(out)
    if not os.path.isdir(folder):
        raise ValueError(f"--output {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--output {path!r}: folder {folder!r} is not writable")
    if os.path.exists(out) and not overwrite:
        raise ValueError(f"--output {path!r} exists; pass --overwrite to replace it")
    return out


def _build_model(args, channels: int):
    import numpy as np

    from ..models import MODELS, model_key

    ctor = MODELS[model_key(args.model)]
    kwargs = _model_args(args.model_args)
    params = inspect.signature(ctor).parameters
    if "in_channels" in params and "in_channels" not in kwargs:
        kwargs["in_channels"] = channels
    if args.weights is None:
        kwargs.setdefault("generator", 0)
    try:
        model = ctor(**kwargs)
    except TypeError as exc:
        raise ValueError(f"--model-args: {exc}") from None
    if args.weights is not None:
        if not os.path.isfile(args.weights):
            raise ValueError(f"--weights {args.weights!r} does not exist")
        with np.load(args.weights) as state:
            model.load_state_dict(dict(state))
    else:
        print("fastconv predict: no --weights: random weights (seed 0)", file=sys.stderr)
    if args.backend is not None:
        model.set_backend(args.backend)
    return model.eval()


class Progress:
    """Tiles done / total, pixels per second and the time left, on stderr: one line redrawn
    on a terminal, else a line every 10% of the tiles."""

    def __init__(self, total_tiles: int, total_pixels: float, stream=None, quiet=False):
        self.total, self.pixels = total_tiles, total_pixels
        self.done, self.done_px = 0, 0.0
        self.t0 = time.perf_counter()
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._next = 0.1

    def update(self, pixels: float) -> None:
        self.done += 1
        self.done_px += pixels
        if self.quiet:
            return
        frac = self.done / max(self.total, 1)
        if self.tty or frac >= self._next or self.done == self.total:
            while self._next <= frac:
                self._next += 0.1
            self.stream.write(("\r" if self.tty else "") + self.line()
                              + ("" if self.tty and self.done < self.total else "\n"))
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = self.done_px / elapsed
        left = (self.pixels - self.done_px) / rate if rate > 0 else float("inf")
        width = 24
        fill = int(width * self.done / max(self.total, 1))
        eta = "--:--" if left == float("inf") else time.strftime("%M:%S", time.gmtime(left))
        if left >= 3600 and left != float("inf"):
            eta = f"{int(left // 3600)}:" + time.strftime("%M:%S", time.gmtime(left))
        return (f"[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} tiles  "
                f"{rate_text(rate)}  ETA {eta}")


def rate_text(px_per_s: float) -> str:
    """Pixels per second in px/s, kpx/s or Mpx/s, three significant digits."""
    for scale, unit in ((1e6, "Mpx/s"), (1e3, "kpx/s")):
        if px_per_s >= scale:
            return f"{px_per_s / scale:.3g} {unit}"
    return f"{px_per_s:.3g} px/s"


def _write_block(block, array, region, pixels: float) -> float:
    array[region] = block
    return pixels


class _Writes:
    """The local scheduler's writes into the temporary store. When one fails, dask raises at
    once while other threads may still be writing: :meth:`stop` refuses new writes and waits
    for those in flight, so that removing the store afterwards removes all of it."""

    def __init__(self):
        self._cond = threading.Condition()
        self._active = 0
        self._stopped = False

    def write(self, block, array, region, pixels: float) -> float:
        with self._cond:
            if self._stopped:
                return 0.0
            self._active += 1
        try:
            return _write_block(block, array, region, pixels)
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def stop(self, timeout: float = 300.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.wait_for(lambda: self._active == 0, timeout)


def run(args) -> int:
    dask = _need("dask")
    zarr = _need("zarr")
    _need("dask.array")
    from dask.callbacks import Callback

    from ..dask import predict
    from ..dask.tiling import plan

    out_path = _check_output(args.output, args.overwrite)
    image = _open_input(zarr, args.input)
    if len(image.shape) not in (3, 4):
        raise ValueError(f"--input must be a (N, C, H, W) or (C, H, W) array, got shape "
                         f"{tuple(image.shape)}")
    model = _build_model(args, int(image.shape[-3]))
    client = None
    if args.scheduler is not None:
        distributed = _need("distributed")
        try:
            client = distributed.Client(args.scheduler, timeout="20s")
        except OSError as exc:
            raise ValueError(f"--scheduler {args.scheduler!r}: cannot connect ({exc})") from None
    try:
        y = predict(model, image, tile=args.tile, batch_size=args.batch_size, client=client)
        tp = plan(model, image.shape, args.tile)
        return _store(dask, zarr, Callback, y, tp, image, out_path, args, client)
    finally:
        if client is not None:
            client.close()


def _store(dask, zarr, Callback, y, tp, image, out_path: str, args, client) -> int:
    import numpy as np

    H, W = image.shape[-2:]
    OH, OW = y.shape[-2:]
    chunks = tuple(c[0] for c in y.chunks)
    tmp = os.path.join(os.path.dirname(out_path),
                       f".{os.path.basename(out_path)}.tmp-{uuid.uuid4().hex[:8]}")
    blocks = y.to_delayed()
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in y.chunks]
    local = _Writes()
    futures: list = []
    try:
        target = zarr.open_array(tmp, mode="w", shape=y.shape, chunks=chunks, dtype=y.dtype)
        target.attrs["fastconv"] = {
            "model": args.model, "model_args": args.model_args, "tile": args.tile,
            "input": os.path.abspath(args.input), "weights": args.weights,
        }
        writes = []
        for idx in np.ndindex(*blocks.shape):
            region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx))
            shape = [r.stop - r.start for r in region]
            n = shape[0] if y.ndim == 4 else 1
            pixels = n * shape[-2] * H / OH * shape[-1] * W / OW
            write = _write_block if client is not None else local.write
            writes.append(dask.delayed(write)(blocks[idx], target, region, pixels))
        total_px = (image.shape[0] if y.ndim == 4 else 1) * H * W
        bar = Progress(len(writes), total_px, quiet=args.quiet)
        t0 = time.perf_counter()
        if client is not None:
            from distributed import as_completed

            futures = client.compute(writes)
            for fut in as_completed(futures):
                bar.update(fut.result())
        else:
            keys = {w.key for w in writes}

            class _Tick(Callback):
                def _posttask(self, key, result, dsk, state, worker_id):
                    if key in keys:
                        bar.update(result)

            with _Tick():
                dask.compute(*writes)
        elapsed = time.perf_counter() - t0
        _publish(tmp, out_path)
    except BaseException:
        local.stop()  # no write may land in the store after it is removed
        if futures:
            client.cancel(futures)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {args.output}: shape {tuple(y.shape)} {y.dtype}, {len(writes)} tiles in "
          f"{elapsed:.1f} s ({rate_text(total_px / elapsed)}), halo overhead "
          f"{tp.halo_overhead:.2f}")
    return 0


def _publish(tmp: str, out: str) -> None:
    """Move the finished store to ``out``; an existing ``out`` is moved aside first and
    removed only once the new one is in place."""
    old: Optional[str] = None
    if os.path.exists(out):
        old = f"{out}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        if os.path.isdir(old):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.remove(old)
