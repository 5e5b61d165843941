"""1-D convs (conv1d) on every C path that runs them, against torch.

    python bench/conv1d.py [--threads 2] [--rounds 7] [--dtype float32]

For each signal: ms of the automatic choice (with the path it took: the direct kernel, folded
into rows where one signal must share the threads, or im2col + GEMM), of ``variant="direct"``
and ``"v5_threads"`` (im2col + packed GEMM), and of torch's conv1d when torch is installed;
medians of interleaved samples, as ``fastconv bench`` takes them. The basis of the 1-D rule of
the automatic choice (``fc_direct_1d_choice``, csrc/conv_direct.c; bench/RESULTS.md, "1-D
convs").
"""

from __future__ import annotations

import argparse

import numpy as np
from direct_conv import _median_ms, engines

import fastconv as fc

#: name -> (N, C, OC, taps, samples, stride, dilation)
SIGNALS = [
    ("raw audio 1->64, 80 taps /4", (1, 1, 64, 80, 16000, 4, 1)),
    ("64->64, 3 taps", (1, 64, 64, 3, 4096, 1, 1)),
    ("128->128, 5 taps", (1, 128, 128, 5, 2048, 1, 1)),
    ("256->256, 3 taps", (1, 256, 256, 3, 512, 1, 1)),
    ("512->512, 3 taps", (1, 512, 512, 3, 256, 1, 1)),
    ("16->16, 3 taps", (1, 16, 16, 3, 16000, 1, 1)),
    ("32->32, 9 taps", (1, 32, 32, 9, 8192, 1, 1)),
    ("64->64, 3 taps /2", (1, 64, 64, 3, 4096, 2, 1)),
    ("64->64, 2 taps, dilation 8", (1, 64, 64, 2, 4096, 1, 8)),
    ("128->128, 2 taps, dilation 64", (1, 128, 128, 2, 4000, 1, 64)),
    ("batch 8, 64->64, 3 taps", (8, 64, 64, 3, 1024, 1, 1)),
    ("batch 8, 128->128, 5 taps", (8, 128, 128, 5, 512, 1, 1)),
    ("batch 16, 32->64, 7 taps", (16, 32, 64, 7, 512, 1, 1)),
    # long windows (filters) and short rows
    ("16->16, 101 taps", (1, 16, 16, 101, 8192, 1, 1)),
    ("8->8, 255 taps", (1, 8, 8, 255, 16384, 1, 1)),
    ("64->64, 31 taps", (1, 64, 64, 31, 4096, 1, 1)),
    ("128->128, 15 taps", (1, 128, 128, 15, 1024, 1, 1)),
    ("64->64, 3 taps, 64 samples", (1, 64, 64, 3, 64, 1, 1)),
    ("64->64, 3 taps, 256 samples", (1, 64, 64, 3, 256, 1, 1)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = ap.parse_args()
    c, torch = engines(args.threads)
    from fastconv.benchmark.probe import cpu_model

    dt = np.dtype(args.dtype)
    print(f"{cpu_model()}  threads {fc.get_num_threads()}  {dt.name}  (ms, medians)")
    for name, (N, C, OC, k, L, s, d) in SIGNALS:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, C, L)).astype(dt)
        w = (rng.standard_normal((OC, C, k)) * (C * k) ** -0.5).astype(dt)
        kw = dict(stride=s, dilation=d)
        fns = {str(v): (lambda v=v: fc.conv1d(x, w, backend="c", variant=v, **kw))
               for v in (None, "direct", "v5_threads")}
        if torch is not None:
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)

            def run_torch():
                with torch.inference_mode():
                    return torch.nn.functional.conv1d(xt, wt, None, s, 0, d)

            fns["torch"] = run_torch
        ms = _median_ms(fns, args.rounds)
        o = (L - d * (k - 1) - 1) // s + 1
        path = c.conv2d_path((N, C, 1, L, OC, 1, k, 1, o, 1, s, 0, 0, 1, d, 1), dt)
        cells = "  ".join(f"{v}={t:.3f}" for v, t in ms.items())
        ratio = f"  x torch {ms['torch'] / ms['None']:.2f}" if torch is not None else ""
        print(f"  {name:32s} auto: {path}{ratio}\n    {cells}")


if __name__ == "__main__":
    main()
