"""The weight-initialisation lesson: the same small CNN trained from five initialisations.

Everything runs on fastconv: the layers of :mod:`fastconv.nn`, their backward passes and
:class:`fastconv.nn.SGD`, on the "auto" engine (the C one when it is built). The task is
generated here, no download: 16x16 images holding one bar (horizontal, vertical, diagonal or
anti-diagonal) at a random place, in noise; the label is the bar's orientation.

Initialisations (biases are zero in every case; see docs/init_lesson.md):

- ``zeros``     every weight 0
- ``constant``  every weight 0.05
- ``normal1``   N(1, 0.1): random, but the mean is not zero
- ``xavier``    Xavier/Glorot normal, std = sqrt(2 / (fan_in + fan_out))
- ``he``        He/Kaiming normal for ReLU, std = sqrt(2 / fan_in)

What it measures: the loss curve and final held-out accuracy per initialisation; whether the
filters of each conv layer stay identical (the largest difference between any two filters of
a layer: exactly 0 means the symmetry never broke); and, on a deeper plain stack at
initialisation, the variance of each conv layer's output through depth.

>>> from fastconv import init_lesson
>>> x, y = init_lesson.make_bars(4, generator=0)
>>> x.shape, y.shape
((4, 1, 16, 16), (4,))
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _shapes, nn
from ..nn import init as _init

__all__ = [
    "INITS", "activation_variances", "apply_init", "cross_entropy", "filter_spread",
    "make_bars", "make_model", "plot", "report", "run_lesson", "train",
]

INITS = ("zeros", "constant", "normal1", "xavier", "he")
EXTRA_INITS = ("small",)  # N(0, 0.01): only for the variance-through-depth table
CLASSES = ("horizontal", "vertical", "diagonal", "anti-diagonal")


# ------------------------------------------------------------------ data


def make_bars(n: int, size: int = 16, noise: float = 0.3, generator: Any = None
              ) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` images (n, 1, size, size) float32, each with one bar of length size // 2 at a
    random place, plus N(0, noise^2) noise; labels (n,) in 0..3 = CLASSES."""
    n = _shapes.as_int(n, "n", minimum=1)
    size = _shapes.as_int(size, "size", minimum=6)
    gen = _init.as_generator(generator)
    length = size // 2
    y = gen.integers(0, 4, n)
    x = gen.normal(0.0, noise, (n, 1, size, size)).astype(np.float32)
    steps = {0: (0, 1), 1: (1, 0), 2: (1, 1), 3: (1, -1)}
    for i, label in enumerate(y):
        di, dj = steps[int(label)]
        # a start that keeps the whole bar inside the image
        i0 = gen.integers(0, size - di * (length - 1))
        lo = (length - 1) if dj < 0 else 0
        hi = size - (dj * (length - 1) if dj > 0 else 0)
        j0 = gen.integers(lo, hi)
        for t in range(length):
            x[i, 0, i0 + di * t, j0 + dj * t] += 1.0
    return x, y.astype(np.int64)


# ------------------------------------------------------------------ model and inits


def make_model(channels: Sequence[int] = (8, 16), size: int = 16, backend: str = "auto"
               ) -> nn.Sequential:
    """conv3x3 - ReLU - maxpool2 per entry of ``channels``, then Flatten and Linear to 4
    classes. Weights uninitialised (zero): call :func:`apply_init`."""
    layers: List[nn.Module] = []
    cin, side = 1, size
    for c in channels:
        layers += [nn.Conv2d(cin, c, 3, padding=1, initialize=False), nn.ReLU(),
                   nn.MaxPool2d(2)]
        cin, side = c, side // 2
    layers += [nn.Flatten(), nn.Linear(cin * side * side, len(CLASSES), initialize=False)]
    model = nn.Sequential(*layers)
    model.set_backend(backend)
    return model


def apply_init(model: nn.Module, name: str, generator: Any = None) -> nn.Module:
    """Initialise every conv and linear weight of ``model`` by ``name`` (INITS, or "small"
    for N(0, 0.01)); biases to zero."""
    if name not in INITS + EXTRA_INITS:
        raise ValueError(f"init must be one of {INITS + EXTRA_INITS}, got {name!r}")
    gen = _init.as_generator(generator)
    for _, m in model.named_modules():
        w = getattr(m, "weight", None)
        if not isinstance(m, (nn.Conv2d, nn.Linear)) or w is None:
            continue
        if name == "zeros":
            _init.zeros_(w)
        elif name == "constant":
            _init.constant_(w, 0.05)
        elif name == "normal1":
            _init.normal_(w, 1.0, 0.1, generator=gen)
        elif name == "small":
            _init.normal_(w, 0.0, 0.01, generator=gen)
        elif name == "xavier":
            _init.xavier_normal_(w, generator=gen)
        else:
            _init.kaiming_normal_(w, nonlinearity="relu", generator=gen)
        if m.bias is not None:
            _init.zeros_(m.bias)
    return model


def filter_spread(model: nn.Module) -> Dict[str, float]:
    """For each conv layer, the largest difference between two of its filters (over every
    weight position): 0.0 exactly when all filters are identical."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = float(np.ptp(m.weight.astype(np.float64), axis=0).max())
    return out


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> Tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of (N, K) logits and its gradient dL/dlogits."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -float(logp[np.arange(n), labels].mean())
    g = np.exp(logp)
    g[np.arange(n), labels] -= 1
    return loss, (g / n).astype(logits.dtype)


# ------------------------------------------------------------------ experiments


def train(init: str, steps: int = 200, batch: int = 32, lr: float = 0.05,
          momentum: float = 0.9, seed: int = 0, backend: str = "auto",
          log: Optional[Callable[[str], None]] = None, log_every: int = 50) -> Dict[str, Any]:
    """Train :func:`make_model` from ``init`` on fresh batches of :func:`make_bars`.

    Returns a dict: ``losses`` (per step; NaN once it diverged), ``accuracy`` on 512
    held-out images, ``spread_before`` / ``spread_after`` (:func:`filter_spread`),
    ``seconds``. The data and the random init use ``seed``, so every init sees the same
    batches.
    """
    steps = _shapes.as_int(steps, "steps", minimum=1)
    batch = _shapes.as_int(batch, "batch", minimum=1)
    seed = _shapes.as_int(seed, "seed", minimum=0)
    model = apply_init(make_model(backend=backend), init, generator=seed + 1)
    model.retain_inputs()
    opt = nn.SGD(model, lr=lr, momentum=momentum)
    data = np.random.default_rng(seed)
    spread_before = filter_spread(model)
    losses: List[float] = []
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(steps):
            x, y = make_bars(batch, generator=data)
            logits = model(x)
            loss, g = cross_entropy(logits, y)
            if not math.isfinite(loss):
                losses += [math.nan] * (steps - step)
                if log:
                    log(f"  {init}: loss is not finite at step {step}; stopped")
                break
            losses.append(loss)
            opt.zero_grad()
            model.backward(g)
            opt.step()
            if log and (step + 1) % log_every == 0:
                log(f"  {init}: step {step + 1}/{steps} loss {loss:.4f}")
        xt, yt = make_bars(512, generator=np.random.default_rng(10_000 + seed))
        model.retain_inputs(False)
        pred = np.argmax(model(xt), axis=1)
    acc = float((pred == yt).mean()) if math.isfinite(losses[-1]) else math.nan
    return dict(init=init, losses=losses, accuracy=acc, spread_before=spread_before,
                spread_after=filter_spread(model), seconds=time.perf_counter() - t0)


def activation_variances(init: str, depth: int = 10, channels: int = 64, size: int = 16,
                         batch: int = 4, networks: int = 4, seed: int = 0,
                         backend: str = "auto") -> List[float]:
    """Variance of each conv layer's output (before its ReLU) in a plain stack of ``depth``
    conv3x3 (``channels`` in and out) + ReLU layers at initialisation, for an N(0, 1)
    input: the signal's scale through depth.

    The values are averaged over ``networks`` independent initialisations: He's rule keeps
    the *expected* variance constant, while one finite-width network drifts by a random
    factor per layer. Padding is circular so that no layer loses signal at the image border
    (with zero padding the border pixels see fewer inputs and the variance sags a little
    with depth whatever the init).
    """
    depth = _shapes.as_int(depth, "depth", minimum=1)
    networks = _shapes.as_int(networks, "networks", minimum=1)
    seed = _shapes.as_int(seed, "seed", minimum=0)
    total = np.zeros(depth)
    for k in range(networks):
        layers: List[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular",
                                 dtype=np.float64, initialize=False), nn.ReLU()]
        model = nn.Sequential(*layers)
        apply_init(model.set_backend(backend), init, generator=seed * 1000 + k + 1)
        x = np.random.default_rng(seed * 1000 + k).standard_normal(
            (batch, channels, size, size))
        with np.errstate(over="ignore", invalid="ignore"):
            i = 0
            for m in model:
                x = m(x)
                if isinstance(m, nn.Conv2d):
                    total[i] += float(np.var(x))
                    i += 1
    return [float(v) for v in total / networks]


def run_lesson(steps: int = 200, inits: Sequence[str] = INITS, seed: int = 0,
               backend: str = "auto", depth: int = 10,
               log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Train from every init in ``inits`` and measure activation variances through depth
    (a plain stack of ``depth`` >= 1 conv layers). Every argument is checked before any
    training starts."""
    steps = _shapes.as_int(steps, "steps", minimum=1)
    seed = _shapes.as_int(seed, "seed", minimum=0)
    depth = _shapes.as_int(depth, "depth", minimum=1)
    if isinstance(inits, str):
        inits = (inits,)
    inits = tuple(inits)
    if not inits:
        raise ValueError("inits must name at least one initialisation")
    for name in inits:
        if name not in INITS + EXTRA_INITS:
            raise ValueError(f"inits: each must be one of {INITS + EXTRA_INITS}, got {name!r}")
    runs = {}
    for name in inits:
        if log:
            log(f"training from {name} ({steps} steps)")
        runs[name] = train(name, steps=steps, seed=seed, backend=backend, log=log)
    variances = {name: activation_variances(name, depth=depth, seed=seed, backend=backend)
                 for name in tuple(inits) + EXTRA_INITS}
    return dict(steps=steps, runs=runs, variances=variances)


def _smooth(losses: Sequence[float], at: int, window: int = 20) -> float:
    lo = max(0, at - window + 1)
    return float(np.mean(losses[lo : at + 1]))


def report(result: Dict[str, Any]) -> str:
    """The lesson's numbers as text: loss (mean of the 20 steps up to each mark), accuracy,
    filter symmetry, activation variance through depth."""
    steps = result["steps"]
    marks = sorted({0, steps // 10, steps // 3, (2 * steps) // 3, steps - 1})
    lines = [f"loss (mean of the 20 steps up to each step) and held-out accuracy; chance "
             f"is ln 4 = {math.log(4):.3f}, 25%"]
    lines.append(f"{'init':<10}" + "".join(f"{'step ' + str(s + 1):>11}" for s in marks)
                 + f"{'accuracy':>10}")
    for name, r in result["runs"].items():
        cells = "".join(f"{_smooth(r['losses'], s):>11.4f}" for s in marks)
        acc = "diverged" if math.isnan(r["accuracy"]) else f"{100 * r['accuracy']:.1f}%"
        lines.append(f"{name:<10}{cells}{acc:>10}")
    lines.append("")
    lines.append("largest difference between two filters of a layer (0 = all identical: "
                 "the symmetry never broke)")
    convs = list(next(iter(result["runs"].values()))["spread_after"])
    lines.append(f"{'init':<10}" + "".join(f"{'conv ' + c + ' before':>16}{'after':>10}"
                                           for c in convs))
    for name, r in result["runs"].items():
        lines.append(f"{name:<10}" + "".join(
            f"{r['spread_before'][c]:>16.3g}{r['spread_after'][c]:>10.3g}" for c in convs))
    lines.append("")
    var = result["variances"]
    depth = len(next(iter(var.values())))
    show = sorted(i for i in {0, 1, depth // 2, depth - 1} if i < depth)
    lines.append(f"variance of each conv output at initialisation: plain stack of {depth} "
                 "conv3x3 + ReLU, 64 channels, N(0, 1) input, mean of 4 networks")
    lines.append(f"{'init':<10}" + "".join(f"{'layer ' + str(i + 1):>12}" for i in show)
                 + f"{'last/first':>12}")
    for name, v in var.items():
        ratio = v[-1] / v[0] if v[0] else float("nan")
        lines.append(f"{name:<10}" + "".join(f"{v[i]:>12.3g}" for i in show)
                     + f"{ratio:>12.3g}")
    return "\n".join(lines)


def _same_curve(a: np.ndarray, b: np.ndarray) -> bool:
    """Two loss curves that a reader cannot tell apart over their second half (within 2%)."""
    if a.shape != b.shape:
        return False
    h = len(a) // 2
    return bool(np.all(np.abs(a[h:] - b[h:]) <= 0.02 * np.abs(b[h:])))


def plot(result: Dict[str, Any], path: str) -> None:
    """Loss curves and variance through depth, side by side, to a PNG (needs matplotlib)."""
    import matplotlib.pyplot as plt

    fig = figure(result)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure(result: Dict[str, Any]) -> Any:
    """The matplotlib figure that :func:`plot` saves (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {n: f"C{i}" for i, n in enumerate(result["variances"])}  # one colour per init
    curves = {}
    for name, r in result["runs"].items():
        losses = np.asarray(r["losses"], dtype=np.float64)
        k = min(10, len(losses))
        curves[name] = (k, np.convolve(losses, np.ones(k) / k, mode="valid"))
    # Curves that coincide (zeros and normal1 both end flat at ln 4) would hide one another:
    # each curve that a later one overlaps is drawn as a wide pale band under it, and the
    # legend says which overlap.
    names = list(curves)
    for i, name in enumerate(names):
        k, smooth = curves[name]
        same = [o for o in names if o != name and _same_curve(smooth, curves[o][1])]
        under = any(names.index(o) > i for o in same)
        label = name + (f" (overlaps {', '.join(same)})" if same else "")
        a.plot(np.arange(len(smooth)) + k, smooth, label=label, color=colors.get(name),
               linewidth=6 if under else 1.6, alpha=0.45 if under else 1.0,
               linestyle="--" if same and not under else "-", zorder=2 + i)
    a.axhline(math.log(4), color="grey", linestyle=":", label="chance (ln 4)")
    a.set_yscale("log")
    a.set_xlabel("SGD step")
    a.set_ylabel("training loss (10-step mean)")
    a.set_title("loss by initialisation")
    a.legend(fontsize=8)
    absent = []
    for name, v in result["variances"].items():
        v = np.asarray(v, dtype=np.float64)
        ok = np.isfinite(v) & (v > 0)
        if not ok.any():  # all zero (zeros init): nothing to draw on a log axis
            absent.append(name)
            continue
        b.plot(np.arange(1, len(v) + 1)[ok], v[ok], marker="o", label=name,
               color=colors[name])
    if absent:
        b.text(0.02, 0.02, f"{', '.join(absent)}: variance 0 at every layer (not drawable on "
               "a log axis)", transform=b.transAxes, fontsize=8, color="dimgrey")
    b.set_yscale("log")
    b.set_xlabel("conv layer")
    b.set_ylabel("output variance at init")
    b.set_title("signal through depth (ReLU stack)")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig
