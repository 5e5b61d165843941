"""`fastconv bench --model`: one whole forward pass of a ``fastconv.models`` network per
engine, against the same network in PyTorch with the same weights.

  bench_model     check, then time the model's forward pass per engine and in torch
  model_warmup    a small forward pass on the numba engine (compiles its kernels)
  TORCH_TWINS     the zoo networks rebuilt in torch with torchvision's module names
                  (torchvision is not a dependency), so fastconv's state_dict loads unchanged

Every engine's output is checked before it is timed, against the same network in float64:
torch's twin in float64 when torch is installed, else the reference engine on a float64
copy of the model. Both load the float32 model's own weights (cast up), so the check compares
like with like: the float64 output differs from an engine's only by the engine's rounding.
MACs come from ``fastconv.analysis.accounting`` (the one place they are counted). Timing is
interleaved as for single layers (``timing.time_interleaved``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, TextIO, Tuple

import numpy as np

from .checking import check
from .timing import Runner, first_call, speedup, time_interleaved

#: Default input, (N, C, H, W).
INPUT = (1, 3, 224, 224)
#: Seconds of timing per model at most (fewer rounds, at least 3, when over).
MODEL_BUDGET_S = 20.0


def model_names() -> Tuple[str, ...]:
    """The networks ``--model`` takes: every model of the zoo (``fastconv.models.MODELS``)."""
    from .. import models

    return tuple(models.MODELS)


def model_macs(model, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass at ``input_shape`` (N, C, H, W)."""
    from ..analysis import accounting

    return accounting.count(model, tuple(input_shape[1:]), batch=input_shape[0]).macs


# --------------------------------------------------------------------------- torch twins





def torch_archs(tnn: Any) -> Dict[str, Callable[[], Any]]:
    """The zoo's image classifiers in plain torch.nn (``tnn`` = torch.nn), with torchvision's
    module names, so that a fastconv model's state_dict loads unchanged."""

    class Basic(tnn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or cin != planes:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, planes, 1, stride, bias=False),
                                                 tnn.BatchNorm2d(planes))

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    class Bottle(tnn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, planes, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = tnn.BatchNorm2d(planes * 4)
            self.relu = tnn.ReLU()
            self.downsample = None
            if stride != 1 or cin != planes * 4:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(cin, planes * 4, 1, stride, bias=False), tnn.BatchNorm2d(planes * 4))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet(tnn.Module):
        def __init__(self, block, exp, counts):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU()
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
                blocks = []
                for j in range(n):
                    blocks.append(block(cin, planes, 2 if i and not j else 1))
                    cin = planes * exp
                setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(512 * exp, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    def cbr6(cin, cout, k=3, s=1, g=1):
        return tnn.Sequential(tnn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=g, bias=False),
                              tnn.BatchNorm2d(cout), tnn.ReLU6())

    class InvRes(tnn.Module):
        def __init__(self, cin, cout, s, t):
            super().__init__()
            hid = cin * t
            layers = ([cbr6(cin, hid, 1)] if t != 1 else []) + [
                cbr6(hid, hid, 3, s, hid), tnn.Conv2d(hid, cout, 1, bias=False),
                tnn.BatchNorm2d(cout)]
            self.conv = tnn.Sequential(*layers)
            self.res = s == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.res else self.conv(x)

    class MobileNetV2(tnn.Module):
        def __init__(self):
            super().__init__()
            feats, cin = [cbr6(3, 32, 3, 2)], 32
            for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
                for i in range(n):
                    feats.append(InvRes(cin, c, s if i == 0 else 1, t))
                    cin = c
            feats.append(cbr6(320, 1280, 1))
            self.features = tnn.Sequential(*feats)
            self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, 1000))

        def forward(self, x):
            pooled = tnn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(pooled.flatten(1))

    class Plain(tnn.Module):  # AlexNet and VGG: features, avgpool, classifier
        def __init__(self, features, pool, classifier):
            super().__init__()
            self.features, self.classifier = features, classifier
            self.avgpool = tnn.AdaptiveAvgPool2d(pool)

        def forward(self, x):
            return self.classifier(self.avgpool(self.features(x)).flatten(1))

    def alexnet():
        C, R, M = tnn.Conv2d, tnn.ReLU, tnn.MaxPool2d
        f = tnn.Sequential(C(3, 64, 11, 4, 2), R(), M(3, 2), C(64, 192, 5, padding=2), R(), M(3, 2),
                           C(192, 384, 3, padding=1), R(), C(384, 256, 3, padding=1), R(),
                           C(256, 256, 3, padding=1), R(), M(3, 2))
        c = tnn.Sequential(tnn.Dropout(), tnn.Linear(9216, 4096), R(), tnn.Dropout(),
                           tnn.Linear(4096, 4096), R(), tnn.Linear(4096, 1000))
        return Plain(f, 6, c)

    def vgg16():
        layers, cin = [], 3
        for v in [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]:
            if v:
                layers += [tnn.Conv2d(cin, v, 3, padding=1), tnn.ReLU()]
                cin = v
            else:
                layers.append(tnn.MaxPool2d(2, 2))
        c = tnn.Sequential(tnn.Linear(25088, 4096), tnn.ReLU(), tnn.Dropout(),
                           tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(),
                           tnn.Linear(4096, 1000))
        return Plain(tnn.Sequential(*layers), 7, c)

    return {
        "alexnet": alexnet, "vgg16": vgg16,
        "resnet18": lambda: ResNet(Basic, 1, [2, 2, 2, 2]),
        "resnet50": lambda: ResNet(Bottle, 4, [3, 4, 6, 3]),
        "mobilenet_v2": MobileNetV2,
    }


#: name -> torch -> the network in torch (tests/test_models.py checks each against fastconv's).
def _twin(name: str) -> Callable[[Any], Any]:
    return lambda torch: torch_archs(torch.nn)[name]()


TORCH_TWINS: Dict[str, Callable[[Any], Any]] = {
    name: _twin(name) for name in ("alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2")
}


# --------------------------------------------------------------------------- the run


def _build(name: str, dtype: np.dtype, initialize: bool = True):
    from .. import models

    model = models.MODELS[name](generator=0, dtype=dtype, initialize=initialize)
    model.eval()
    return model


def model_warmup(name: str, dtype: Any, input_shape: Sequence[int]) -> Callable[[], Any]:
    """A call that runs the model once on the numba engine on a small input (at most 64 x 64,
    enough for every zoo network), which compiles every numba kernel the model uses."""
    dt = np.dtype(dtype)
    shape = (1, input_shape[1], min(input_shape[2], 64), min(input_shape[3], 64))

    def go():
        model = _build(name, dt, initialize=False).set_backend("numba")
        return model(np.zeros(shape, dt))

    return go


def _say(progress: Optional[TextIO], text: str) -> None:
    if progress is not None:
        print(text, file=progress, flush=True)


def bench_model(
    name: str,
    engines: Sequence[str],
    baselines: Sequence[str],
    dtype: Any,
    repeat: int,
    progress: Optional[TextIO] = None,
    input_shape: Sequence[int] = INPUT,
    before_numba: Optional[Callable[[], Any]] = None,
) -> Dict[str, Any]:
    """Check and time one forward pass of ``fastconv.models.<name>`` per engine (and in
    torch, when a torch twin exists and torch is among ``baselines``); the JSON record.

    ``input_shape`` is (N, C, H, W); ``before_numba`` is called before the numba engine's
    first call (the harness waits there for numba's kernels to be compiled).
    """
    names = model_names()
    if name not in names:
        raise ValueError(f"bench_model: name must be one of {', '.join(names)}, got {name!r}")
    shape = tuple(int(s) for s in input_shape)
    dt = np.dtype(dtype)
    _say(progress, f"[model] {name}: building")
    model = _build(name, dt)
    x = np.random.default_rng(0).standard_normal(shape).astype(dt)
    macs = model_macs(model, shape)
    torch_runner, ref, ref_by, skipped = None, None, None, None
    if "torch" in baselines and name in TORCH_TWINS:
        import torch

        twin = TORCH_TWINS[name](torch).eval()
        state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
        twin.load_state_dict(state, strict=True)
        with torch.inference_mode():
            ref = twin.double()(torch.from_numpy(x.astype(np.float64))).numpy()
        ref_by = "torch float64"
        twin = twin.to(getattr(torch, dt.name))

        def run_torch():
            with torch.inference_mode():
                return twin(torch.from_numpy(x)).numpy()

        torch_runner = Runner("torch", run_torch)
    elif "torch" in baselines:
        skipped = f"no torch version of {name} here (torch twins: {', '.join(TORCH_TWINS)})"
    if ref is None:
        _say(progress, f"[model] {name}: computing the float64 reference output (slow)")
        model64 = _build(name, np.dtype(np.float64), initialize=False)
        model64.load_state_dict(model.state_dict())  # the float32 weights, cast up
        model64.set_backend("reference")
        ref = np.asarray(model64(x.astype(np.float64)))
        ref_by = "reference float64"

    def engine_runner(engine: str) -> Runner:
        def go():
            model.set_backend(engine)
            return model(x)

        return Runner(engine, go)

    runners = [engine_runner(e) for e in engines]
    if torch_runner is not None:
        runners.append(torch_runner)
    results: Dict[str, Dict[str, Any]] = {}
    timed = []
    for r in runners:
        if r.label == "numba" and before_numba is not None:
            before_numba()
        _say(progress, f"[model] {name}: checking {r.label}")
        y, first, failure = first_call(r.fn)
        res: Dict[str, Any] = {"first_call_ms": first * 1e3}
        if failure is not None:
            res["status"], res["message"] = failure
        else:
            res["status"], res["error"] = check(np.asarray(y), ref, dt)
            if res["status"] == "ok":
                timed.append(r)
        results[r.label] = res
    if skipped is not None:
        results["torch"] = {"status": "n/a", "message": skipped}
    if timed:
        _say(progress, f"[model] {name}: timing {', '.join(r.label for r in timed)}")
        for label, stats in time_interleaved(timed, repeat, MODEL_BUDGET_S).items():
            results[label].update(stats)
    torch_res = results.get("torch", {})
    for res in results.values():
        t = res.get("median_s")
        if t is None:
            continue
        res["ms"] = t * 1e3
        res["gflops"] = 2 * macs / t * 1e-9 if macs else None
        res["speedup_vs_torch"] = speedup(torch_res, res) if torch_res.get("median_s") else None
    return {
        "model": name,
        "input": list(shape),
        "dtype": dt.name,
        "gflop": 2 * macs / 1e9 if macs else None,
        "checked_against": ref_by,
        "results": results,
    }
