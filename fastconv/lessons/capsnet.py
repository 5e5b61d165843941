"""The capsule lesson: a small CapsNet and a plain CNN, trained the same way, then tested on
digits moved and turned further than any training digit.

Everything runs on fastconv: convolutions, the capsule kernels (prediction vectors, dynamic
routing and their backward passes, :mod:`fastconv.capsule`), the layers' backward passes;
the optimiser is Adam (as the paper's), written here in a few lines. The digits are
generated, no download: each class is drawn from one or two stroke templates (polylines and
arcs in a unit box), with the control points jittered, then scaled, sheared, rotated, shifted
and rasterised with an anti-aliased pen of random width into 28x28 (MNIST's frame: a 20-pixel
box centred in 28x28).

What it measures (docs/capsules.md has a run):

- test accuracy of both models on digits drawn like the training ones (shift up to
  ``TRAIN_SHIFT`` pixels, rotation up to ``TRAIN_ROTATION`` degrees);
- accuracy on digits shifted 3 to 5 pixels and rotated 20 to 45 degrees, beyond anything
  training saw: the claim to test is that capsules are "robust to transformations" (the
  paper's affNIST experiment: 79% for CapsNet, 66% for a CNN);
- for the CapsNet: reconstructions from the masked class capsule, the effect of perturbing
  one dimension of the winning capsule at a time (the paper's Figure 4), and the coupling
  coefficients the routing gave one sample.

Models: the CapsNet is the paper's architecture shrunk so that the whole lesson runs in a few
minutes on two cores (its defaults took 3 min 15 s of CPU time, docs/capsules.md)
(:func:`make_capsnet`: 32 channels 9x9, 8 primary capsule types of 8-D on a 6x6 grid
(288 capsules), 10 class capsules of 16-D, 3 routing iterations, decoder 256-512-784); the
CNN (:func:`make_cnn`) has two 5x5 conv + ReLU + 2x2 max-pool stages and two linear layers,
sized to about as many parameters as the CapsNet without its decoder.

>>> from fastconv.lessons import capsnet
>>> x, y = capsnet.make_digits(4, generator=0)
>>> x.shape, x.dtype, y.shape, float(x.max()) <= 1.0
((4, 1, 28, 28), dtype('float32'), (4,), True)
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import re
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _shapes, nn
from ..capsule import margin_loss, margin_loss_input
from ..nn import init as _init
from ..nn.capsule import CapsNet

__all__ = [
    "TEST_SETS", "Adam", "accuracy", "cross_entropy", "figure", "make_capsnet", "make_cnn",
    "make_digits", "plot", "report", "run_lesson", "train_model",
]

#: Training digits: shifted up to this many pixels (in a random direction) ...
TRAIN_SHIFT = 2.0
#: ... and rotated up to this many degrees either way.
TRAIN_ROTATION = 10.0
#: Reconstruction loss weight (the paper's 0.0005, on the sum of squared pixel errors).
RECONSTRUCTION_WEIGHT = 0.0005
#: Test sets: name -> (shift range in pixels, rotation range in degrees).
TEST_SETS: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {
    "as trained": ((0.0, TRAIN_SHIFT), (0.0, TRAIN_ROTATION)),
    "shift 3-4 px": ((3.0, 4.0), (0.0, TRAIN_ROTATION)),
    "shift 4-5 px": ((4.0, 5.0), (0.0, TRAIN_ROTATION)),
    "rotate 20-30 deg": ((0.0, TRAIN_SHIFT), (20.0, 30.0)),
    "rotate 30-45 deg": ((0.0, TRAIN_SHIFT), (30.0, 45.0)),
    "shift 3-5 + rotate 20-35": ((3.0, 5.0), (20.0, 35.0)),
}


# ------------------------------------------------------------------ data


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int):
    """Points of an elliptic arc from angle a0 to a1 (degrees, counter-clockwise on screen)."""
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + rx * math.cos(a), cy - ry * math.sin(a)) for a in t]


#: Per digit, one or two templates; a template is a list of strokes (polylines in the unit
#: box, x to the right, y down).
STROKES: Dict[int, List[List[List[Tuple[float, float]]]]] = {
    0: [[_arc(0.5, 0.5, 0.28, 0.4, 90, 450, 24)]],
    1: [[[(0.5, 0.1), (0.5, 0.9)]], [[(0.32, 0.28), (0.52, 0.1), (0.52, 0.9)]]],
    2: [[_arc(0.5, 0.32, 0.27, 0.22, 160, -20, 10) + [(0.2, 0.9), (0.82, 0.9)]]],
    3: [[_arc(0.48, 0.3, 0.24, 0.2, 150, -90, 10) + _arc(0.48, 0.7, 0.28, 0.2, 90, -150, 10)]],
    4: [[[(0.66, 0.9), (0.66, 0.1), (0.16, 0.66), (0.86, 0.66)]],
        [[(0.3, 0.1), (0.22, 0.6), (0.82, 0.6)], [(0.66, 0.3), (0.66, 0.9)]]],
    5: [[[(0.78, 0.1), (0.32, 0.1), (0.28, 0.45)] + _arc(0.48, 0.65, 0.28, 0.24, 120, -150, 12)]],
    6: [[[(0.7, 0.1)] + _arc(0.5, 0.66, 0.26, 0.24, 160, -200, 16)]],
    7: [[[(0.2, 0.1), (0.8, 0.1), (0.42, 0.9)]],
        [[(0.2, 0.1), (0.8, 0.1), (0.42, 0.9)], [(0.35, 0.5), (0.75, 0.5)]]],
    8: [[_arc(0.5, 0.29, 0.21, 0.19, -90, 270, 18), _arc(0.5, 0.7, 0.25, 0.21, 90, 450, 18)]],
    9: [[_arc(0.48, 0.32, 0.24, 0.22, 0, 360, 18), [(0.72, 0.32), (0.66, 0.9)]]],
}


def _range(value: Any, name: str) -> Tuple[float, float]:
    if not _shapes._is_sequence(value) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (low, high), got {value!r}")
    lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"{name} must be a pair 0 <= low <= high, got {value!r}")
    return lo, hi


def make_digits(n: int, *, shift: Sequence[float] = (0.0, TRAIN_SHIFT),
                rotation: Sequence[float] = (0.0, TRAIN_ROTATION), generator: Any = None
                ) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` generated digits (n, 1, 28, 28) float32 in [0, 1] and labels (n,) int64.

    Each digit: a template of its class (:data:`STROKES`), control points jittered by
    N(0, 0.025^2), scaled to a 20-pixel box (x 0.68-1.15, y 0.8-1.05, shear up to 0.2),
    rotated by an angle of magnitude in ``rotation`` (degrees, random sign), centred and
    moved by a distance in ``shift`` (pixels, random direction), drawn with a pen 1.9 to 2.6
    pixels wide with a one-pixel soft edge.
    """
    n = _shapes.as_int(n, "n", minimum=0)
    s_lo, s_hi = _range(shift, "shift")
    r_lo, r_hi = _range(rotation, "rotation")
    gen = _init.as_generator(generator)
    size = 28
    y = gen.integers(0, 10, n)
    x = np.zeros((n, 1, size, size), np.float32)
    pix = np.arange(size) + 0.5
    grid = np.stack(np.meshgrid(pix, pix), -1).reshape(-1, 1, 2)  # pixel centres (x, y)
    for k in range(n):
        variants = STROKES[int(y[k])]
        strokes = variants[int(gen.integers(len(variants)))]
        segs = []
        for st in strokes:
            pts = np.asarray(st, np.float64) + gen.normal(0.0, 0.025, (len(st), 2))
            segs.append(np.stack([pts[:-1], pts[1:]], 1))
        seg = np.concatenate(segs)  # (S, 2 ends, 2 coordinates), unit box
        sy = gen.uniform(0.8, 1.05)
        sx = sy * gen.uniform(0.85, 1.1)
        affine = np.array([[sx, gen.uniform(-0.2, 0.2)], [0.0, sy]]) * 20.0
        a = math.radians(gen.uniform(r_lo, r_hi) * gen.choice([-1.0, 1.0]))
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        d = gen.uniform(0.0, 2 * math.pi)
        move = gen.uniform(s_lo, s_hi) * np.array([math.cos(d), math.sin(d)])
        seg = (seg - 0.5) @ (rot @ affine).T + size / 2 + move
        p0, v = seg[None, :, 0], seg[None, :, 1] - seg[None, :, 0]
        t = np.clip(((grid - p0) * v).sum(-1) / np.maximum((v * v).sum(-1), 1e-12), 0, 1)
        dist = np.sqrt((((p0 + t[..., None] * v) - grid) ** 2).sum(-1)).min(axis=1)
        pen = gen.uniform(0.9, 1.6)  # half-width + 1/2: the ink fades over one pixel
        x[k, 0] = np.clip(pen + 0.5 - dist, 0.0, 1.0).reshape(size, size)
    return x, y.astype(np.int64)


# ------------------------------------------------------------------ models and training


def make_capsnet(generator: Any = None, backend: str = "auto") -> CapsNet:
    """The lesson's small CapsNet (module docstring); 537,216 parameters without the decoder,
    1,112,208 with it.

    >>> from fastconv.lessons.capsnet import make_capsnet
    >>> make_capsnet(generator=0).num_parameters()
    1112208
    """
    model = CapsNet(1, (28, 28), 10, 3, True, conv_channels=32, primary_capsules=8,
                    primary_dim=8, digit_dim=16, decoder_hidden=(256, 512), generator=generator)
    model.set_backend(backend)
    return model


def make_cnn(generator: Any = None, backend: str = "auto") -> nn.Sequential:
    """conv 5x5 32 - ReLU - max-pool 2 - conv 5x5 64 - ReLU - max-pool 2 - Flatten - Linear
    1024 -> 470 - ReLU - Linear 470 -> 10: 538,556 parameters, about the CapsNet's without
    its decoder.

    >>> import numpy as np
    >>> from fastconv.lessons.capsnet import make_cnn
    >>> cnn = make_cnn(generator=0)
    >>> cnn.num_parameters(), cnn(np.zeros((2, 1, 28, 28), np.float32)).shape
    (538556, (2, 10))
    """
    gen = _init.as_generator(generator)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, generator=gen), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, generator=gen), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1024, 470, generator=gen), nn.ReLU(),
        nn.Linear(470, 10, generator=gen))
    model.set_backend(backend)
    return model


class Adam:
    """Adam (Kingma and Ba) on a model's parameter gradients, in place, as torch.optim.Adam
    without weight decay: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).

    >>> import numpy as np
    >>> from fastconv import nn
    >>> from fastconv.lessons.capsnet import Adam
    >>> lin = nn.Linear(2, 1, dtype=np.float64, generator=0).retain_inputs()
    >>> before = lin.weight.copy()
    >>> _ = lin.backward(lin(np.ones((1, 2))) * 0 + 1)    # dL/dy = 1: dL/dw = 1 each
    >>> Adam(lin, lr=0.1).step()                          # the first step moves lr each
    >>> np.round(lin.weight - before, 6)
    array([[-0.1, -0.1]])
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, betas: Tuple[float, float] = (0.9,
                 0.999), eps: float = 1e-8):
        self.model, self.lr, self.betas, self.eps = model, float(lr), betas, float(eps)
        self.t = 0
        self.state: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for pre, mod in self.model.named_modules():
            for name in mod._param_names:
                p, g = getattr(mod, name), mod.grads.get(name)
                if p is None or g is None:
                    continue
                key = f"{pre}.{name}"
                m, v = self.state.get(key, (np.zeros_like(p), np.zeros_like(p)))
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * (g * g)
                self.state[key] = (m, v)
                p -= (self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(p.dtype)

    def zero_grad(self) -> None:
        self.model.zero_grad()


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> Tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of (N, K) logits and its gradient dL/dlogits.

    >>> import numpy as np
    >>> from fastconv.lessons.capsnet import cross_entropy
    >>> loss, g = cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 4), g[0]                   # ln 4; softmax - onehot, over the batch of 2
    (1.3863, array([-0.375,  0.125,  0.125,  0.125]))
    """
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    g = np.exp(logp)
    g[np.arange(n), labels] -= 1
    return -float(logp[np.arange(n), labels].mean()), (g / n).astype(logits.dtype)


def _capsnet_step(model: CapsNet, x: np.ndarray, y: np.ndarray) -> float:
    """One forward and backward pass: margin loss + 0.0005 * sum of squared pixel errors of
    the reconstruction from the true class's capsule, both averaged over the batch."""
    v = model(x)
    lengths = model.lengths(v)
    recon = model.reconstruct(v, y)
    n = len(y)
    err = recon.astype(np.float64) - x
    loss = float(margin_loss(lengths, y)) + RECONSTRUCTION_WEIGHT * float((err ** 2).sum()) / n
    g_v = model.lengths_input(v, margin_loss_input(lengths, y))
    g_recon = (2 * RECONSTRUCTION_WEIGHT / n * err).astype(recon.dtype)
    model.backward(g_v.astype(v.dtype), g_recon)
    return loss


def _predict(model: nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        y = model(x[i : i + batch])
        out.append(np.argmax(CapsNet.lengths(y) if y.ndim == 3 else y, axis=1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def train_model(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int = 3,
                batch: int = 32, lr: float = 1e-3, seed: int = 0, name: str = "",
                log: Optional[Callable[[str], None]] = None,
                steps: Optional[int] = None) -> Dict[str, Any]:
    """Train ``model`` (a CapsNet: margin + reconstruction loss; else cross-entropy on its
    logits) with Adam on (x, y), shuffled each epoch with ``seed``. ``steps`` stops early
    (the tests' short runs). Returns the per-epoch mean losses and the seconds taken.

    >>> from fastconv.lessons.capsnet import make_cnn, make_digits, train_model
    >>> x, y = make_digits(8, generator=0)
    >>> run = train_model(make_cnn(generator=0), x, y, epochs=1, batch=8)
    >>> len(run["losses"])
    1
    """
    epochs = _shapes.as_int(epochs, "epochs", minimum=1)
    batch = _shapes.as_int(batch, "batch", minimum=1)
    is_caps = isinstance(model, CapsNet)
    model.retain_inputs().train()
    opt = Adam(model, lr=lr)
    order = np.random.default_rng(seed)
    losses: List[float] = []
    t0 = time.perf_counter()
    done = 0
    for epoch in range(epochs):
        perm = order.permutation(len(x))
        total, count = 0.0, 0
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            if is_caps:
                loss = _capsnet_step(model, xb, yb)  # type: ignore[arg-type]
            else:
                logits = model(xb)
                loss, g = cross_entropy(logits, yb)
                model.backward(g)
            opt.step()
            total += loss * len(idx)
            count += len(idx)
            done += 1
            if steps is not None and done >= steps:
                break
        losses.append(total / max(count, 1))
        if log:
            log(f"  {name} epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}, "
                f"{time.perf_counter() - t0:.0f} s")
        if steps is not None and done >= steps:
            break
    model.retain_inputs(False).eval()
    return {"losses": losses, "seconds": time.perf_counter() - t0}


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Share of samples whose predicted class (the longest capsule, or the largest logit) is
    the label.

    >>> from fastconv.lessons.capsnet import accuracy, make_cnn, make_digits
    >>> x, y = make_digits(10, generator=0)
    >>> 0.0 <= accuracy(make_cnn(generator=0), x, y) <= 1.0
    True
    """
    return float((_predict(model, x) == y).mean()) if len(y) else math.nan


@contextlib.contextmanager
def _one_blas_thread():
    """Run NumPy's BLAS (the Linear layers' matmuls) on one thread meanwhile.

    NumPy's OpenBLAS threads and the C backend's OpenMP threads each spin-wait for a while
    after their work; on two cores each pool then waits for the other: a 0.2 ms matmul took
    60 ms right after a conv2d call. The lesson's matmuls are small, so one thread costs
    nothing. Linux with an OpenBLAS that NumPy loaded; elsewhere this does nothing.
    """
    pairs = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
        for path in paths:
            lib = ctypes.CDLL(path)
            for setter, getter in (("scipy_openblas_set_num_threads64_",
                                    "scipy_openblas_get_num_threads64_"),
                                   ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                                   ("openblas_set_num_threads", "openblas_get_num_threads")):
                if hasattr(lib, setter) and hasattr(lib, getter):
                    pairs.append((getattr(lib, setter), int(getattr(lib, getter)())))
                    break
    except OSError:  # no /proc (not Linux) or a library that cannot be opened
        pairs = []
    for set_threads, _ in pairs:
        set_threads(1)
    try:
        yield
    finally:
        for set_threads, before in pairs:
            set_threads(before)


def _figures(model: CapsNet, x: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    """What the plot shows: reconstructions of 8 test digits, the perturbation grid of one
    digit's winning capsule (16 dimensions x 11 offsets in [-0.25, 0.25], the paper's
    Figure 4) and that digit's coupling coefficients."""
    model.eval()
    v = model(x[:8])
    recon = model.reconstruct(v)
    k = 0
    win = int(np.argmax(model.lengths(v[k : k + 1])))
    deltas = np.linspace(-0.25, 0.25, 11)
    D = v.shape[2]
    tweaked = np.repeat(v[k : k + 1], D * len(deltas), axis=0)
    for d in range(D):
        tweaked[d * len(deltas) : (d + 1) * len(deltas), win, d] += deltas
    labels = np.full(len(tweaked), win, np.int64)
    grid = model.reconstruct(tweaked, labels).reshape(D, len(deltas), *x.shape[2:])
    u = model.primary_caps(model.relu(model.conv1(x[k : k + 1])))
    coupling = model.digit_caps.coupling(u)[0]  # (I, J)
    T = model.primary_caps.num_capsules
    return {"images": x[:8, 0], "labels": y[:8], "predicted": np.argmax(model.lengths(v), 1),
            "reconstructions": recon[:, 0], "perturbed": grid, "deltas": deltas,
            "perturbed_class": win, "coupling": coupling, "coupling_types": T,
            "lengths": model.lengths(v[k : k + 1])[0]}


def run_lesson(train_size: int = 6000, test_size: int = 1000, epochs: int = 3, batch: int = 32,
               seed: int = 0, backend: str = "auto",
               log: Optional[Callable[[str], None]] = None,
               steps: Optional[int] = None) -> Dict[str, Any]:
    """Generate the data, train the CapsNet and the CNN the same way (Adam, lr 1e-3, the
    same batches), measure both on every :data:`TEST_SETS` set. ``steps`` caps the optimiser
    steps per model (the tests' short runs). Returns a dict for :func:`report` and
    :func:`plot`.

    >>> from fastconv.lessons import capsnet
    >>> result = capsnet.run_lesson(log=print)            # doctest: +SKIP
    >>> print(capsnet.report(result))                     # doctest: +SKIP
    >>> capsnet.plot(result, "capsnet.png")               # doctest: +SKIP
    """
    train_size = _shapes.as_int(train_size, "train_size", minimum=1)
    test_size = _shapes.as_int(test_size, "test_size", minimum=8)
    epochs = _shapes.as_int(epochs, "epochs", minimum=1)
    batch = _shapes.as_int(batch, "batch", minimum=1)
    seed = _shapes.as_int(seed, "seed", minimum=0)
    t0 = time.perf_counter()
    x, y = make_digits(train_size, generator=seed)
    tests = {name: make_digits(test_size, shift=s, rotation=r, generator=seed + 1000 + i)
             for i, (name, (s, r)) in enumerate(TEST_SETS.items())}
    if log:
        log(f"generated {train_size} training and {len(tests)} x {test_size} test digits in "
            f"{time.perf_counter() - t0:.1f} s")
    models: Dict[str, nn.Module] = {"CapsNet": make_capsnet(seed + 1, backend),
                                    "CNN": make_cnn(seed + 2, backend)}
    runs: Dict[str, Any] = {}
    with _one_blas_thread():
        for name, model in models.items():
            if log:
                log(f"training the {name} ({model.num_parameters():,} parameters, {epochs} "
                    f"epochs of {train_size} digits)")
            run = train_model(model, x, y, epochs=epochs, batch=batch, seed=seed, name=name,
                              log=log, steps=steps)
            run["accuracy"] = {t: accuracy(model, xt, yt) for t, (xt, yt) in tests.items()}
            run["params"] = model.num_parameters()
            runs[name] = run
        caps = models["CapsNet"]
        assert isinstance(caps, CapsNet)
        figures = _figures(caps, *tests["as trained"])
    decoder = caps.decoder.num_parameters()
    return {"runs": runs, "figures": figures, "train_size": train_size,
            "test_size": test_size, "epochs": epochs, "batch": batch, "seed": seed,
            "decoder_params": decoder, "seconds": time.perf_counter() - t0}


def report(result: Dict[str, Any]) -> str:
    """The lesson's numbers as text: parameters, training time and loss, accuracy per test
    set for both models (``print(report(run_lesson()))``, see :func:`run_lesson`)."""
    runs = result["runs"]
    caps, cnn = runs["CapsNet"], runs["CNN"]
    dec = result["decoder_params"]
    lines = [
        f"CapsNet: {caps['params'] - dec:,} parameters + {dec:,} in the reconstruction "
        f"decoder; CNN: {cnn['params']:,}",
        f"trained on {result['train_size']} digits (shift <= {TRAIN_SHIFT:g} px, rotation <= "
        f"{TRAIN_ROTATION:g} deg), {result['epochs']} epochs, batch {result['batch']}, Adam",
        f"training time: CapsNet {caps['seconds']:.0f} s, CNN {cnn['seconds']:.0f} s; "
        f"final loss: CapsNet {caps['losses'][-1]:.4f} (margin + reconstruction), CNN "
        f"{cnn['losses'][-1]:.4f} (cross-entropy)",
        "",
        f"accuracy on {result['test_size']} test digits per set",
        f"{'test set':<28}{'CapsNet':>9}{'CNN':>9}",
    ]
    for name in caps["accuracy"]:
        a, b = caps["accuracy"][name], cnn["accuracy"][name]
        lines.append(f"{name:<28}{100 * a:>8.1f}%{100 * b:>8.1f}%")
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from None
    return plt


def plot(result: Dict[str, Any], path: str) -> None:
    """:func:`figure` saved as a PNG at ``path`` (needs matplotlib); see :func:`run_lesson`."""
    plt = _pyplot()
    fig = figure(result)
    try:
        fig.savefig(path, dpi=90, bbox_inches="tight")
    finally:
        plt.close(fig)


def figure(result: Dict[str, Any]):
    """The lesson's picture as a matplotlib Figure: accuracy per test set; test digits and
    their reconstructions; the coupling coefficients of one digit; the effect of each
    dimension of that digit's winning capsule (the paper's Figure 4). Needs matplotlib."""
    plt = _pyplot()
    f = result["figures"]
    fig = plt.figure(figsize=(16, 10))
    gs = fig.add_gridspec(3, 2, width_ratios=[1.0, 1.25], height_ratios=[1.0, 0.8, 1.1],
                          hspace=0.45, wspace=0.12)
    # accuracy per test set
    ax = fig.add_subplot(gs[0, 0])
    names = list(result["runs"]["CapsNet"]["accuracy"])
    pos = np.arange(len(names))
    for off, model in ((-0.2, "CapsNet"), (0.2, "CNN")):
        acc = [100 * result["runs"][model]["accuracy"][n] for n in names]
        bars = ax.bar(pos + off, acc, 0.4, label=f"{model} ({result['runs'][model]['params']:,}"
                      " parameters)")
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(pos, [n.replace(" + ", "\n+ ") for n in names], fontsize=7, rotation=15)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 119)
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    ax.set_title(f"trained with shift <= {TRAIN_SHIFT:g} px, rotation <= {TRAIN_ROTATION:g} deg",
                 fontsize=9)
    # digits and reconstructions
    sub = gs[1, 0].subgridspec(2, 8, wspace=0.05, hspace=0.25)
    for i in range(8):
        for row, img, title in ((0, f["images"][i], f"digit {f['labels'][i]}"),
                                (1, f["reconstructions"][i], f"recon. {f['predicted'][i]}")):
            a = fig.add_subplot(sub[row, i])
            a.imshow(img, cmap="gray", vmin=0, vmax=1)
            a.set_title(title, fontsize=7)
            a.axis("off")
    # coupling coefficients of digit 0
    sub = gs[2, 0].subgridspec(1, 3, width_ratios=[1.3, 1, 1], wspace=0.35)
    c, T = f["coupling"], f["coupling_types"]
    side = int(round(math.sqrt(c.shape[0] / T)))
    a = fig.add_subplot(sub[0])
    im = a.imshow(c, aspect="auto", cmap="viridis", interpolation="nearest")
    a.set_xlabel("class capsule j", fontsize=8)
    a.set_ylabel(f"primary capsule i ({T} types x {side}x{side})", fontsize=8)
    a.set_title(f"coupling c_ij of digit {f['labels'][0]}", fontsize=8)
    fig.colorbar(im, ax=a, fraction=0.05)
    a = fig.add_subplot(sub[1])
    a.imshow(f["images"][0], cmap="gray", vmin=0, vmax=1)
    a.set_title(f"the digit ({f['labels'][0]})", fontsize=8)
    a.axis("off")
    a = fig.add_subplot(sub[2])
    win = f["perturbed_class"]
    m = c[:, win].reshape(T, side, side).mean(axis=0)
    im = a.imshow(m, cmap="magma")
    a.set_title(f"mean c_i,{win} per grid cell\n(uniform: {1 / c.shape[1]:.2f})", fontsize=8)
    a.axis("off")
    fig.colorbar(im, ax=a, fraction=0.05)
    # Figure 4: perturbing one dimension of the winning capsule at a time, drawn as mosaics
    # (a row per dimension, a column per offset, 2-pixel gaps): the reconstructions, and their
    # differences from the unperturbed one (column +0.00), which show small changes too
    grid, deltas = f["perturbed"], f["deltas"]
    D, K, H, W = grid.shape
    diff = grid - grid[:, K // 2 : K // 2 + 1]
    lim = float(np.abs(diff).max()) or 1.0
    sub = gs[:, 1].subgridspec(1, 2, wspace=0.08)
    for col, (data, cmap, lo, hi, title) in enumerate((
            (grid, "gray", 0.0, 1.0, f"reconstructions from class capsule {win}\nwith one "
             "dimension moved"),
            (diff, "RdBu_r", -lim, lim, f"difference from the unmoved one (+0.00)\nred +, "
             f"blue -, largest {lim:.2f}"))):
        gap = 2
        mosaic = np.full((D * (H + gap) - gap, K * (W + gap) - gap), np.nan)
        for d in range(D):
            for k in range(K):
                mosaic[d * (H + gap) : d * (H + gap) + H,
                       k * (W + gap) : k * (W + gap) + W] = data[d, k]
        a = fig.add_subplot(sub[col])
        a.set_facecolor("0.6")
        a.imshow(mosaic, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        a.set_xticks(np.arange(K) * (W + gap) + W / 2, [f"{v:+.2f}" for v in deltas],
                     fontsize=6, rotation=90)
        a.set_yticks(np.arange(D) * (H + gap) + H / 2,
                     [f"dim {d}" for d in range(D)] if col == 0 else [], fontsize=7)
        a.tick_params(length=0)
        a.set_title(title, fontsize=8)
    fig.text(0.75, 0.99, f"the paper's Figure 4: offsets {deltas[0]:+.2f} .. {deltas[-1]:+.2f} "
             "on one dimension of the winning capsule", ha="center", va="top", fontsize=9)
    fig.suptitle("fastconv demo capsnet", x=0.02, ha="left", fontsize=11)
    return fig
