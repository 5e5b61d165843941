"""The direct and implicit-GEMM conv2d kernels against the other paths, layer by layer.

    python bench/direct_conv.py [--threads 2] [--layers grouped,small,narrow,stems,wide]

For each layer: ms of every C path that runs it (``variant="direct"``, ``"implicit_gemm"``,
``"v5_threads"`` = im2col + packed GEMM, Winograd F2 / F4 where the geometry allows, and the
automatic choice ``None``, with the path it took), and torch's conv2d when torch is
installed; medians of interleaved samples, each after a settling pause (as ``fastconv
bench`` takes them). This is the basis of the automatic choice's rules (``fc_direct_choice``,
csrc/conv_direct.c, and ``fc_igemm_choice``, csrc/conv_igemm.c; bench/RESULTS.md, "Direct
and implicit-GEMM conv" and "Grouped convs on small planes").
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import fastconv as fc
from fastconv.backends import _registry
from fastconv.benchmark import Runner, time_interleaved

#: name -> (N, C, OC, groups, k, stride, hw)
LAYERS: Dict[str, List[Tuple[str, Tuple[int, ...]]]] = {
    "grouped": [
        ("ResNeXt 3x3 256 g32 @28", (1, 256, 256, 32, 3, 1, 28)),
        ("ResNeXt 3x3 128 g32 @56", (1, 128, 128, 32, 3, 1, 56)),
        ("ResNeXt 3x3 512 g32 @14", (1, 512, 512, 32, 3, 1, 14)),
        ("ResNeXt 3x3/2 256 g32 @56", (1, 256, 256, 32, 3, 2, 56)),
        ("3x3 64 g2 @56", (1, 64, 64, 2, 3, 1, 56)),
        ("3x3 128 g2 @28", (1, 128, 128, 2, 3, 1, 28)),
    ],
    # small planes (7x7 and 14x14 outputs): the implicit GEMM's share of the automatic choice
    "small": [
        ("ResNeXt 3x3 1024 g32 @7", (1, 1024, 1024, 32, 3, 1, 7)),
        ("ResNeXt 3x3 1024 g32 @7, batch 8", (8, 1024, 1024, 32, 3, 1, 7)),
        ("ResNeXt 3x3/2 1024 g32 @14", (1, 1024, 1024, 32, 3, 2, 14)),
        ("ResNeXt 3x3 512 g32 @14", (1, 512, 512, 32, 3, 1, 14)),
        ("3x3 512 g32 @7", (1, 512, 512, 32, 3, 1, 7)),
        ("3x3 256 g32 @7", (1, 256, 256, 32, 3, 1, 7)),
        ("3x3 32->64 @7", (1, 32, 64, 1, 3, 1, 7)),
        ("3x3 32->64 @7, batch 8", (8, 32, 64, 1, 3, 1, 7)),
    ],
    "narrow": [
        ("3x3 8->8 @112", (1, 8, 8, 1, 3, 1, 112)),
        ("3x3 16->16 @112", (1, 16, 16, 1, 3, 1, 112)),
        ("3x3 32->32 @56", (1, 32, 32, 1, 3, 1, 56)),
        ("3x3 32->64 @56", (1, 32, 64, 1, 3, 1, 56)),
        ("3x3 16->128 @28", (1, 16, 128, 1, 3, 1, 28)),
        ("3x3 32->128 @28", (1, 32, 128, 1, 3, 1, 28)),
        ("1x1 32->16 @112", (1, 32, 16, 1, 1, 1, 112)),
        ("1x1 16->96 @112", (1, 16, 96, 1, 1, 1, 112)),
    ],
    "stems": [
        ("7x7/2 3->64 @224", (1, 3, 64, 1, 7, 2, 224)),
        ("7x7/2 3->64 @224, batch 8", (8, 3, 64, 1, 7, 2, 224)),
        ("3x3/2 3->32 @224", (1, 3, 32, 1, 3, 2, 224)),
    ],
    "wide": [
        ("3x3 64->64 @56", (1, 64, 64, 1, 3, 1, 56)),
        ("3x3 256->256 @14", (1, 256, 256, 1, 3, 1, 14)),
        ("3x3 512->512 @7", (1, 512, 512, 1, 3, 1, 7)),
        ("3x3/2 128->128 @56", (1, 128, 128, 1, 3, 2, 56)),
        ("1x1 64->256 @56", (1, 64, 256, 1, 1, 1, 56)),
    ],
}


def _median_ms(fns: Dict[str, Callable[[], object]], rounds: int) -> Dict[str, float]:
    """Medians of interleaved samples as ``fastconv bench`` takes them: each after a pause in
    which the previous runner's threads stop spinning (torch's OpenMP workers would otherwise
    hold the second core), and a lead-in call; the order rotates between rounds."""
    stats = time_interleaved([Runner(name, fn) for name, fn in fns.items()], rounds, 60.0)
    return {name: stats[name]["median_s"] * 1e3 for name in fns}


def engines(threads: Optional[int]) -> Tuple[Any, Any]:
    """The C engine's module and torch (None where it is not installed), both at ``threads``
    threads (None: fastconv's default)."""
    if threads:
        fc.set_num_threads(threads)
    c = _registry.backend_module("c")
    if c is None:
        raise SystemExit("the C engine is not built: pip install -e .")
    try:
        import torch
    except ImportError:
        return c, None
    torch.set_num_threads(fc.get_num_threads())
    return c, torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--layers", default=",".join(LAYERS), help="comma-separated groups")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    c, torch = engines(args.threads)
    from fastconv.benchmark.probe import cpu_model

    print(f"{cpu_model()}  threads {fc.get_num_threads()}  (ms, medians)")
    for group in args.layers.split(","):
        print(f"\n{group}")
        for name, (N, C, OC, G, k, s, hw) in LAYERS[group]:
            rng = np.random.default_rng(0)
            x = rng.standard_normal((N, C, hw, hw)).astype(np.float32)
            w = (rng.standard_normal((OC, C // G, k, k)) * (C // G * k * k) ** -0.5).astype(
                np.float32)
            kw = dict(stride=s, padding=k // 2, groups=G)
            variants = [None, "direct", "implicit_gemm", "v5_threads"]
            if k == 3 and s == 1:
                variants += ["winograd_f2", "winograd_f4"]
            fns = {str(v): (lambda v=v: fc.conv2d(x, w, backend="c", variant=v, **kw))
                   for v in variants}
            if torch is not None:
                xt, wt = torch.from_numpy(x), torch.from_numpy(w)

                def run_torch():
                    with torch.inference_mode():
                        return torch.nn.functional.conv2d(xt, wt, None, s, k // 2, 1, G)

                fns["torch"] = run_torch
            ms = _median_ms(fns, args.rounds)
            o = (hw + 2 * (k // 2) - k) // s + 1
            path = c.conv2d_path((N, C, hw, hw, OC, k, k, o, o, s, s, k // 2, k // 2, 1, 1, G),
                                 np.float32)
            cells = "  ".join(f"{v}={t:.3f}" for v, t in ms.items())
            print(f"  {name:28s} auto: {path}\n    {cells}")


if __name__ == "__main__":
    main()
