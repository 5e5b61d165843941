"""`fastconv bench --model`: one whole forward pass of a ``fastconv.models`` network per
engine, against the same network in PyTorch with the same weights.

fastconv's models carry torchvision's state_dict keys, so the torch twin below (built here:
torchvision is not a dependency) loads the fastconv model's weights unchanged. Each engine's
output is checked against the torch twin in float64 (or, without torch, against the
reference engine) before it is timed; timing is interleaved as for single layers.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Sequence, TextIO

import numpy as np

from .. import benchmark as B

INPUT = (1, 3, 224, 224)


def model_macs(model, shape) -> Optional[int]:
    """Multiply-adds of the model's convolutions and linears, from nn's shape tracer."""
    from .. import nn

    class Count(nn.Tracer):
        macs = 0

        def leaf(self, name, module, in_shape, out_shape, state):
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                per_out = (module.in_channels // module.groups) * kh * kw
                Count.macs += int(np.prod(out_shape)) * per_out
            elif isinstance(module, nn.Linear):
                Count.macs += int(np.prod(out_shape)) * module.in_features
            return state

    try:
        model._trace(Count(), "", tuple(shape), None)
    except Exception:  # the count is a nicety; the timing does not depend on it
        return None
    return Count.macs


def torch_resnet50(torch):
    """ResNet-50 in torch with torchvision's module names (conv1, layer1.0.downsample.0, fc)."""
    tnn = torch.nn

    class Bottleneck(tnn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            out = planes * 4
            self.conv1 = tnn.Conv2d(cin, planes, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.conv3 = tnn.Conv2d(planes, out, 1, bias=False)
            self.bn3 = tnn.BatchNorm2d(out)
            self.relu = tnn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != out:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(cin, out, 1, stride, bias=False), tnn.BatchNorm2d(out)
                )

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            s = x if self.downsample is None else self.downsample(x)
            return self.relu(y + s)

    parts: OrderedDict[str, Any] = OrderedDict(
        conv1=tnn.Conv2d(3, 64, 7, 2, 3, bias=False),
        bn1=tnn.BatchNorm2d(64),
        relu=tnn.ReLU(inplace=True),
        maxpool=tnn.MaxPool2d(3, 2, 1),
    )
    cin = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        blocks = []
        for j in range(n):
            blocks.append(Bottleneck(cin, planes, 2 if (i > 0 and j == 0) else 1))
            cin = planes * 4
        parts[f"layer{i + 1}"] = tnn.Sequential(*blocks)
    parts["avgpool"] = tnn.AdaptiveAvgPool2d((1, 1))
    parts["flatten"] = tnn.Flatten(1)
    parts["fc"] = tnn.Linear(2048, 1000)
    return tnn.Sequential(parts)


TORCH_TWINS = {"resnet50": torch_resnet50}


def model_runners(
    name: str,
    build: Callable,
    engines: Sequence[str],
    baselines: Sequence[str],
    dtype: Any,
    repeat: int,
    progress: Optional[TextIO] = None,
) -> Dict[str, Any]:
    """Check and time ``build()``'s forward pass per engine and in torch; the JSON record."""
    dt = np.dtype(dtype)
    if progress is not None:
        print(f"[model] {name}: building", file=progress, flush=True)
    model = build(generator=0, dtype=dt)
    if hasattr(model, "eval"):
        model.eval()
    x = np.random.default_rng(0).standard_normal(INPUT).astype(dt)
    macs = model_macs(model, INPUT)
    runners, ref, ref_by = [], None, None
    if "torch" in baselines:
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

        runners.append(B.Runner("torch", run_torch))
    if ref is None:
        if progress is not None:
            print("[model] computing the reference output (slow)", file=progress, flush=True)
        model64 = build(generator=0, dtype=np.float64)
        if hasattr(model64, "eval"):
            model64.eval()
        model64.set_backend("reference")
        ref = np.asarray(model64(x.astype(np.float64)))
        ref_by = "reference float64"

    def engine_runner(engine):
        def go():
            model.set_backend(engine)
            return model(x)

        return B.Runner(engine, go)

    runners = [engine_runner(e) for e in engines] + runners
    results: Dict[str, Dict[str, Any]] = {}
    timed = []
    for r in runners:
        if progress is not None:
            print(f"[model] {name}: checking {r.label}", file=progress, flush=True)
        y, first, failure = B._first_call(r.fn)
        res: Dict[str, Any] = {"first_call_ms": first * 1e3}
        if failure is not None:
            res["status"], res["message"] = failure
        else:
            res["status"], res["error"] = B.check(np.asarray(y), ref, dt)
            if res["status"] == "ok":
                timed.append(r)
        results[r.label] = res
    if progress is not None and timed:
        print(
            f"[model] {name}: timing {', '.join(r.label for r in timed)}", file=progress, flush=True
        )
    if timed:
        for label, stats in B.time_interleaved(timed, repeat, budget_s=20.0).items():
            results[label].update(stats)
    t_torch = results.get("torch", {}).get("median_s")
    for res in results.values():
        t = res.get("median_s")
        if t is None:
            continue
        res["ms"] = t * 1e3
        res["gflops"] = 2 * macs / t * 1e-9 if macs else None
        res["speedup_vs_torch"] = t_torch / t if t_torch else None
    return {
        "model": name,
        "input": list(INPUT),
        "dtype": dt.name,
        "gflop": 2 * macs / 1e9 if macs else None,
        "checked_against": ref_by,
        "results": results,
    }
