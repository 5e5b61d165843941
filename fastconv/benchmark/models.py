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

from collections import OrderedDict
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


def torch_resnet(torch: Any, bottleneck: bool, counts: Sequence[int]) -> Any:
    """A torchvision ResNet in torch with its module names (conv1, layer1.0.downsample.0, fc):
    Bottleneck blocks (expansion 4, stride on the 3x3) or BasicBlocks (expansion 1)."""
    tnn = torch.nn
    Module: Any = tnn.Module
    expansion = 4 if bottleneck else 1

    class Block(Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            out = planes * expansion
            if bottleneck:
                self.conv1 = tnn.Conv2d(cin, planes, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(planes)
                self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
                self.bn2 = tnn.BatchNorm2d(planes)
                self.conv3 = tnn.Conv2d(planes, out, 1, bias=False)
                self.bn3 = tnn.BatchNorm2d(out)
            else:
                self.conv1 = tnn.Conv2d(cin, planes, 3, stride, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(planes)
                self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
                self.bn2 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != out:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(cin, out, 1, stride, bias=False), tnn.BatchNorm2d(out)
                )

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            if bottleneck:
                y = self.relu(self.bn2(self.conv2(y)))
                y = self.bn3(self.conv3(y))
            else:
                y = self.bn2(self.conv2(y))
            s = x if self.downsample is None else self.downsample(x)
            return self.relu(y + s)

    parts: OrderedDict[str, Any] = OrderedDict(
        conv1=tnn.Conv2d(3, 64, 7, 2, 3, bias=False),
        bn1=tnn.BatchNorm2d(64),
        relu=tnn.ReLU(inplace=True),
        maxpool=tnn.MaxPool2d(3, 2, 1),
    )
    cin = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
        blocks = []
        for j in range(n):
            blocks.append(Block(cin, planes, 2 if (i > 0 and j == 0) else 1))
            cin = planes * expansion
        parts[f"layer{i + 1}"] = tnn.Sequential(*blocks)
    parts["avgpool"] = tnn.AdaptiveAvgPool2d((1, 1))
    parts["flatten"] = tnn.Flatten(1)
    parts["fc"] = tnn.Linear(512 * expansion, 1000)
    return tnn.Sequential(parts)


TORCH_TWINS: Dict[str, Callable[[Any], Any]] = {
    "resnet18": lambda torch: torch_resnet(torch, False, (2, 2, 2, 2)),
    "resnet50": lambda torch: torch_resnet(torch, True, (3, 4, 6, 3)),
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
        with torch.no_grad():
            ref = twin.double()(torch.from_numpy(x.astype(np.float64))).numpy()
        ref_by = "torch float64"
        twin = twin.to(getattr(torch, dt.name))

        def run_torch():
            with torch.no_grad():
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
