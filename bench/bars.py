"""The issue bars, from the JSON of a `fastconv bench --suite full` run.

    fastconv bench --suite full --json run.json && python bench/bars.py run.json [--stat min]

Ratios are torch time / engine time of the same run (> 1 = faster than torch): the median of
the per-round ratios that `fastconv bench` reports (``--stat min``: best sample over best
sample). A class's figure is the geometric mean of
its layers' ratios where the bar is per class, else every layer's own ratio.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Dict, List, Tuple

#: (engine, class, layer-name prefixes, bar, per class (geometric mean) or per layer, floor:
#: the lowest any single layer of a per-class bar may go, or 0). The convolution bars are
#: those of the performance issue (every class >= 1.0x torch, no layer below 0.8x).
BARS: List[Tuple[str, str, Tuple[str, ...], float, bool, float]] = [
    ("c", "standard convs", ("resnet50 stem", "resnet50 3x3", "vgg 3x3", "batch8 3x3"), 1.0,
     True, 0.8),
    ("c", "1x1 convs", ("resnet50 1x1",), 1.0, True, 0.8),
    ("c", "dilated convs", ("aspp",), 1.0, True, 0.8),
    ("c", "grouped convs", ("resnext",), 1.0, True, 0.8),
    ("c", "transposed convs", ("tconv", "batch8 tconv"), 1.0, True, 0.8),
    ("c", "depthwise N=1", ("mobilenet_v2 dw",), 1.0, False, 0.0),
    ("c", "depthwise N=8", ("batch8 dw",), 2.0, False, 0.0),
    ("c", "max / avg pooling", ("resnet50 maxpool", "vgg maxpool", "inception avgpool",
                                "resnet50 global avgpool"), 3.0, False, 0.0),
    ("numba", "3x3 convs", ("resnet50 3x3", "vgg 3x3", "batch8 3x3"), 0.3, False, 0.0),
    ("numba", "depthwise N=8", ("batch8 dw",), 1.0, False, 0.0),
    ("numba", "pooling", ("resnet50 maxpool", "vgg maxpool", "inception avgpool",
                          "resnet50 global avgpool"), 1.5, False, 0.0),
]


def ratios(run: Dict, engine: str, prefixes: Tuple[str, ...], stat: str) -> Dict[str, float]:
    out = {}
    for case in run["cases"]:
        if not case["name"].startswith(prefixes):
            continue
        res = case["results"]
        eng, torch = res.get(engine, {}), res.get("torch", {})
        if eng.get("status") == "ok" and torch.get("status") == "ok":
            if stat == "median" and eng.get("speedup_vs_torch"):
                out[case["name"]] = eng["speedup_vs_torch"]  # median of per-round ratios
            else:
                out[case["name"]] = torch[f"{stat}_s"] / eng[f"{stat}_s"]
    return out


def print_layers(run: Dict) -> None:
    """Per layer: torch / c and torch / numba (median of per-round ratios; best samples)."""
    print(f"{'layer':42s} {'c/t med':>8s} {'c/t min':>8s} {'nb/t med':>8s} {'nb/t min':>8s}")
    for case in run["cases"]:
        res, cells = case["results"], []
        for engine in ("c", "numba"):
            for stat in ("median", "min"):
                e, t = res.get(engine, {}), res.get("torch", {})
                ok = e.get("status") == "ok" and t.get("status") == "ok"
                if ok and stat == "median" and e.get("speedup_vs_torch"):
                    cells.append(f"{e['speedup_vs_torch']:8.2f}")
                else:
                    cells.append(f"{t[stat + '_s'] / e[stat + '_s']:8.2f}" if ok else f"{'-':>8s}")
        print(f"{case['name']:42s} {' '.join(cells)}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json")
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    ap.add_argument("--layers", action="store_true",
                    help="also print every layer's ratios (median and best samples)")
    args = ap.parse_args()
    with open(args.json) as f:
        run = json.load(f)
    if args.layers:
        print_layers(run)
    print(f"{run['date']}  {run['machine'].get('cpu')}  threads {run['machine'].get('threads')}"
          f"  ({args.stat} samples)")
    for engine, name, prefixes, bar, per_class, floor in BARS:
        r = ratios(run, engine, prefixes, args.stat)
        if not r:
            print(f"  {engine:6s} {name:20s} no data")
            continue
        if per_class:
            g = math.exp(sum(math.log(v) for v in r.values()) / len(r))
            low = min(r.values())
            ok = g >= bar and low >= floor
            detail = f"geomean {g:.2f}, lowest {low:.2f} (floor {floor})"
        else:
            ok = all(v >= bar for v in r.values())
            detail = ", ".join(f"{v:.2f}" for v in r.values())
        print(f"  {engine:6s} {name:20s} bar {bar:>4} {'met    ' if ok else 'NOT MET'}  {detail}")


if __name__ == "__main__":
    main()
