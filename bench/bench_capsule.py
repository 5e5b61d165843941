"""The capsule layer (prediction vectors + dynamic routing), forward and forward + backward:
fastconv's c and numba backends (and the NumPy reference) against the same algorithm in torch
eager, on the CPU with the same number of threads.

    pytest bench/bench_capsule.py --benchmark-enable   # time it (pytest-benchmark)
    python bench/bench_capsule.py [--threads T] [--rounds R]   # the Measured table

The problem is the paper's DigitCaps: batch 64, 1152 primary capsules of 8-D to 10 class
capsules of 16-D, 3 routing iterations, float32. torch runs the same algorithm: u_hat =
einsum("ijdk,nik->nijd", W, u), then b = 0 and three times c = softmax(b), s = sum_i c u_hat,
v = squash(s), b += u_hat . v (not after the last), with autograd for the backward pass.
fastconv's forward + backward is the layer's forward (retaining its inputs) and backward
(dL/dx and dL/dW for dL/dv = 1). GFLOP/s = 2 x MACs / time with fastconv's count
(``CapsuleLayer.count_ops``: predictions + (2r - 1) routing passes; backward = 2x forward).

Timing (the table): rounds that time every runner once in rotating order, each sample after
one untimed call and a 3 ms busy pause (another library's OpenMP threads stop spinning);
medians, and the speed-up over torch as the median of the per-round ratios. Without
--benchmark-enable pytest runs each runner once on a tiny layer, checked against the
reference backend.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

import fastconv
from fastconv import capsule
from fastconv.benchmark.probe import cpu_model
from fastconv.nn.capsule import CapsuleLayer

HAVE_TORCH = importlib.util.find_spec("torch") is not None
#: (batch, in capsules, in dim, out capsules, out dim, iterations)
PAPER = (64, 1152, 8, 10, 16, 3)
TINY = (3, 12, 4, 5, 6, 3)


def backends() -> List[str]:
    return [e for e in ("c", "numba") if capsule.capsule_backends()[e] == "available"]


def make_problem(shape=PAPER, dtype=np.float32, seed=0):
    N, I, Din, J, Dout, r = shape
    rng = np.random.default_rng(seed)
    x = capsule.squash(rng.standard_normal((N, I, Din))).astype(dtype)
    layer = CapsuleLayer(I, Din, J, Dout, r, dtype=dtype, generator=seed)
    layer.weight *= 5  # larger predictions than at initialisation: the routing is not flat
    return x, layer


def macs(layer: CapsuleLayer, batch: int) -> int:
    return layer.count_ops((batch, layer.in_capsules, layer.in_dim))["products"]


def fastconv_runner(backend: str, x, layer: CapsuleLayer, backward: bool) -> Callable:
    net = CapsuleLayer(layer.in_capsules, layer.in_dim, layer.out_capsules, layer.out_dim,
                       layer.routing_iterations, dtype=layer.weight.dtype, initialize=False)
    net.weight[...] = layer.weight
    net.set_backend(backend).retain_inputs(backward)
    ones = np.ones((x.shape[0], net.out_capsules, net.out_dim), x.dtype)

    def run():
        v = net(x)
        if backward:
            net.zero_grad()
            return v, net.backward(ones), net.grads["weight"]
        return v

    return run


def torch_runner(x, layer: CapsuleLayer, backward: bool) -> Callable:
    import torch

    tx = torch.from_numpy(x.copy())
    tw = torch.from_numpy(layer.weight.copy())
    r = layer.routing_iterations

    def squash(s):
        n2 = (s * s).sum(-1, keepdim=True)
        return s * (n2.sqrt() / (1 + n2))

    def forward(u, w):
        u_hat = torch.einsum("ijdk,nik->nijd", w, u)
        b = torch.zeros(u_hat.shape[:3], dtype=u_hat.dtype)
        for t in range(r):
            c = torch.softmax(b, dim=2)
            v = squash((c.unsqueeze(-1) * u_hat).sum(1))
            if t < r - 1:
                b = b + (u_hat * v.unsqueeze(1)).sum(-1)
        return v

    def run():
        if not backward:
            with torch.no_grad():
                return forward(tx, tw).numpy()
        u = tx.clone().requires_grad_()
        w = tw.clone().requires_grad_()
        v = forward(u, w)
        v.backward(torch.ones_like(v))
        return v.detach().numpy(), u.grad.numpy(), w.grad.numpy()

    return run


def runners(x, layer, backward: bool, with_reference: bool = True) -> Dict[str, Callable]:
    out = {e: fastconv_runner(e, x, layer, backward) for e in backends()}
    if with_reference:
        out["numpy (reference)"] = fastconv_runner("reference", x, layer, backward)
    if HAVE_TORCH:
        out["torch"] = torch_runner(x, layer, backward)
    return out


# --------------------------------------------------------------------------- pytest


def _smoke(config) -> bool:
    disabled = config.getoption("benchmark_disable", default=True)
    return bool(disabled) and not config.getoption("benchmark_enable", default=False)


_NAMES = backends() + ["numpy (reference)"] + (["torch"] if HAVE_TORCH else [])


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
@pytest.mark.parametrize("name", _NAMES)
def test_capsule_layer(benchmark, request, name, backward):
    x, layer = make_problem(TINY if _smoke(request.config) else PAPER)
    run = runners(x, layer, backward)[name]
    ref = fastconv_runner("reference", x.astype(np.float64), _as64(layer), backward)()
    benchmark.group = "capsule layer " + ("forward+backward" if backward else "forward")
    benchmark.extra_info["gflop"] = (3 if backward else 1) * 2 * macs(layer, x.shape[0]) / 1e9
    out = benchmark(run)  # called once in smoke mode
    for got, want in zip(*((o,) if not backward else o for o in (out, ref))):  # v [, dx, dW]
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


def _as64(layer: CapsuleLayer) -> CapsuleLayer:
    out = CapsuleLayer(layer.in_capsules, layer.in_dim, layer.out_capsules, layer.out_dim,
                       layer.routing_iterations, dtype=np.float64, initialize=False)
    out.weight[...] = layer.weight
    return out


# --------------------------------------------------------------------------- the table


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def measure(runs: Dict[str, Callable], rounds: int) -> Dict[str, Tuple[float, float]]:
    """{runner: (median seconds, median per-round speed-up over torch)}."""
    names = list(runs)
    times: Dict[str, List[float]] = {n: [] for n in names}
    for n in names:  # warm up (JIT, thread pools, first-touch of buffers)
        runs[n]()
    for k in range(rounds):
        for n in names[k % len(names):] + names[: k % len(names)]:
            runs[n]()
            _busy(0.003)
            t0 = time.perf_counter()
            runs[n]()
            times[n].append(time.perf_counter() - t0)
    out = {}
    for n in names:
        ratio = (float(np.median([t / s for t, s in zip(times["torch"], times[n])]))
                 if "torch" in times else float("nan"))
        out[n] = (float(np.median(times[n])), ratio)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=fastconv.get_num_threads())
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reference-rounds", type=int, default=2,
                   help="rounds of the (slow) NumPy reference, timed apart")
    args = p.parse_args(argv)
    fastconv.set_num_threads(args.threads)
    if HAVE_TORCH:
        import torch

        torch.set_num_threads(args.threads)
    x, layer = make_problem()
    N, I, Din, J, Dout, r = PAPER
    m = macs(layer, N)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CapsuleLayer {I} x {Din}-D -> {J} x {Dout}-D, {r} routing iterations, batch {N}, "
          f"float32; {m / 1e6:.1f} M MACs forward (x3 forward + backward)")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu_model()}, "
          f"{os.cpu_count()} CPUs, {args.threads} thread(s), load average {load:.1f}; "
          f"numpy {np.__version__}" + (f", torch {torch.__version__}" if HAVE_TORCH else ""))
    rows = {}
    for backward in (False, True):
        runs = runners(x, layer, backward, with_reference=False)
        res = measure(runs, args.rounds)
        ref = measure({"numpy (reference)": fastconv_runner("reference", x, layer, backward),
                       **({"torch": runs["torch"]} if "torch" in runs else {})},
                      args.reference_rounds)
        res["numpy (reference)"] = ref["numpy (reference)"]
        rows[backward] = res
    print(f"{'backend':<20}{'fwd ms':>9}{'GFLOP/s':>9}{'x torch':>9}"
          f"{'fwd+bwd ms':>12}{'GFLOP/s':>9}{'x torch':>9}")
    for name in rows[False]:
        f_t, f_r = rows[False][name]
        b_t, b_r = rows[True][name]
        print(f"{name:<20}{f_t * 1e3:>9.2f}{2 * m / f_t / 1e9:>9.2f}{f_r:>9.2f}"
              f"{b_t * 1e3:>12.2f}{6 * m / b_t / 1e9:>9.2f}{b_r:>9.2f}")


if __name__ == "__main__":
    main()
