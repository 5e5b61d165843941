"""The report of a run: text tables, the JSON document, the bar chart.

  summarize      per runner, the geometric mean of its speed-ups over the cases it passed
  machine_line   the one-line account of the machine (CPU, threads, peak, bandwidths, load)
  format_header  the lines printed before the first case (what runs, on what, how to read it)
  format_case    one case's table, printed as soon as the case is done
  format_footer  the summary, the model's table and the elapsed time
  format_report  all three: the whole text report of a finished run
  write_json     the report as JSON (every figure, every sample)
  plot           a PNG bar chart of the speed-ups over NumPy (needs matplotlib)
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional

from .probe import is_busy

#: Heading of a case table; the rows below line up with it.
_HEAD = (
    f"  {'engine':<10}{'ms':>10}{'GFLOP/s':>10}{'GB/s':>8}{'%roof':>7}"
    f"{'xnumpy':>9}{'xtorch':>9}  check"
)


def summarize(report: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Per runner: geometric-mean speed-up over each baseline across the cases it passed."""
    out: Dict[str, Dict[str, Any]] = {}
    labels = list(report["engines"]) + list(report["baselines"])
    for label in labels:
        row: Dict[str, Any] = {}
        for b in report["baselines"]:
            vals = [
                c["results"][label].get(f"speedup_vs_{b}")
                for c in report["cases"]
                if label in c["results"]
            ]
            vals = [v for v in vals if v]
            row[f"geomean_speedup_vs_{b}"] = (
                math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None
            )
            row["cases_timed"] = len(vals)
        statuses = [c["results"][label]["status"] for c in report["cases"] if label in c["results"]]
        row["wrong"] = sum(s.startswith("WRONG") for s in statuses)
        row["errors"] = sum(s == "error" for s in statuses)
        row["n/a"] = sum(s == "n/a" for s in statuses)
        out[label] = row
    return out


# --------------------------------------------------------------------------- text


def _num(v: Optional[float], fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _ms(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB" if n < 2**30 else f"{n / 2**30:.3g} GiB"


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 3] + "..."


def bandwidths(m: Dict[str, Any]) -> str:
    """"bandwidth L2 95 GB/s (<= 4 MiB), L3 56 GB/s (<= 480 MiB), DRAM 27.5 GB/s"."""
    roofs = m.get("roofs") or []
    if not roofs:
        bw = m.get("bandwidth_gbs")
        return f"copy {bw:.1f} GB/s" if bw else "bandwidth unknown"
    parts = []
    for r in roofs:
        cap = f" (<= {_mib(r['capacity_bytes'])})" if r.get("capacity_bytes") else ""
        parts.append(f"{r['level']} {r['gbs']:.1f} GB/s{cap}")
    return "bandwidth " + ", ".join(parts)


def machine_line(m: Dict[str, Any]) -> str:
    peak = (
        f"FMA peak {m['fma_gflops_core']:.1f} GFLOP/s/core x {m['threads']} = "
        f"{m['fma_gflops']:.0f} GFLOP/s fp32"
        if m.get("fma_gflops")
        else "FMA peak unknown"
    )
    isa = f" ({m['isa']})" if m.get("isa") else ""
    load = m.get("load_average_1min")
    busy = ""
    if load is not None:
        busy = f"; load {load:.1f}" + (
            " (BUSY: other work shares the cores, figures are noisy)" if is_busy(m) else ""
        )
    return (
        f"machine: {m['cpu']}, {m['cores']} cores{isa}; kernels: {m['kernels']}; "
        f"{m['threads']} thread(s); {peak}; {bandwidths(m)}{busy}"
    )


def busy_advice(m: Dict[str, Any]) -> Optional[str]:
    """What to do about a busy machine (None when it is not busy)."""
    if not is_busy(m):
        return None
    return (
        f"note: the machine is busy (load {m['load_average_1min']:.1f} on {m['cores']} cores), "
        "so the figures vary from run to run. For steadier ones stop the other work, or run "
        "with --threads 1 (leaves the other cores to it) and more samples, e.g. --repeat 15."
    )


def _torch_isa(m: Dict[str, Any]) -> str:
    """Torch's kernel level where known, as it follows the thread count on the baselines
    line: ', AVX2' or ', AVX512; oneDNN capped at AVX2' (empty when unknown)."""
    isa, onednn = m.get("torch_isa"), m.get("torch_onednn_max_isa")
    out = f", {isa}" if isa else ""
    return out + (f"; oneDNN capped at {onednn}" if onednn else "")


def format_header(report: Dict[str, Any]) -> List[str]:
    """The lines before the first case; needs the report's machine, not its cases."""
    m = report["machine"]
    blas = m.get("numpy_blas_threads")
    what = f"suite {report['suite'] or '-'}" if report.get("suite") else "model only"
    lines = [
        f"fastconv bench: {what}, {report['dtype']}, "
        f"median of {report['repeat']} interleaved samples",
        machine_line(m),
    ]
    advice = busy_advice(m)
    if advice:
        lines.append(advice)
    lines += [
        "baselines: numpy "
        + m["numpy"]
        + " (sliding_window_view + einsum"
        + (f", OpenBLAS {blas} threads)" if blas else ")")
        + (
            f"; torch {m['torch']} ({m['torch_threads']} threads{_torch_isa(m)})"
            if "torch" in report["baselines"]
            else "; torch not run"
        ),
        "%roof: share of the roofline bound max(flops / FMA peak, bytes / bandwidth of the "
        "level the working set fits in); xnumpy/xtorch: speed-up (>1 = faster)"
        if report.get("suite")
        else "xtorch: speed-up over torch (>1 = faster)",
    ]
    return lines


def format_case(c: Dict[str, Any]) -> List[str]:
    """One case's table: a blank line, what it computes and its roof, one row per runner."""
    roof = c.get("roof")
    bound = ""
    if c.get("bound"):
        bound = f", {c['bound']}-bound" + (f" ({roof} roof)" if roof else "")
    work = (
        (f"{c['flops'] / 1e9:.3g} GFLOP, " if c["flops"] else "")
        + f"{c['bytes'] / 1e6:.3g} MB"
        + bound
    )
    lines = ["", f"{c['name']}   [{c['call']}; {work}]", _HEAD]
    over = False
    for label, r in c["results"].items():
        if "ms" in r:
            err = f" {r['error']:.0e}" if r.get("error") is not None else ""
            pct = r.get("pct_roof")
            cell = _num(pct, ".0f")
            if pct is not None and round(pct) > 100:
                cell += "*"
                over = True
            lines.append(
                f"  {label:<10}{_ms(r['ms']):>10}{_num(r['gflops'], '.1f'):>10}"
                f"{_num(r['gbs'], '.1f'):>8}{cell:>7}"
                f"{_num(r.get('speedup_vs_numpy'), '.2f'):>9}"
                f"{_num(r.get('speedup_vs_torch'), '.2f'):>9}  ok{err}"
            )
        else:
            why = (
                r["status"]
                if r["status"].startswith("WRONG")
                else f"{r['status']}: {r.get('message', '')}"
            )
            lines.append(f"  {label:<10}{'':>53}  {_clip(why, 70)}")
    if over:
        lines.append(
            f"  * over 100%: faster than the {roof or 'measured'} roof, which is itself measured "
            "(at start-up, and low when other work shared the cores then)"
        )
    return lines


def format_model(rec: Dict[str, Any]) -> List[str]:
    gflop = f" [{rec['gflop']:.3g} GFLOP]" if rec.get("gflop") else ""
    lines = [
        f"model {rec['model']} forward, input {tuple(rec['input'])}, {rec['dtype']}{gflop}; "
        f"checked against {rec['checked_against']}",
        f"  {'engine':<10}{'ms':>10}{'GFLOP/s':>10}{'xtorch':>9}  check",
    ]
    for label, r in rec["results"].items():
        if "ms" in r:
            err = f" {r['error']:.0e}" if r.get("error") is not None else ""
            lines.append(
                f"  {label:<10}{_ms(r['ms']):>10}{_num(r.get('gflops'), '.1f'):>10}"
                f"{_num(r.get('speedup_vs_torch'), '.2f'):>9}  {r['status']}{err}"
            )
        else:
            why = _clip(r["status"] + (": " + r["message"] if r.get("message") else ""), 70)
            lines.append(f"  {label:<10}{'':>29}  {why}")
    return lines


def format_footer(report: Dict[str, Any]) -> List[str]:
    """The summary over the cases (when there were any), the model, the elapsed time."""
    lines: List[str] = []
    if report["cases"]:
        lines.append("")
        lines.append("summary (geometric mean of speed-ups over the cases each engine passed):")
        for label, s in report["summary"].items():
            parts = [
                f"x{s[k]:.2f} vs {k.rsplit('_', 1)[1]}"
                for k in s
                if k.startswith("geomean") and s[k] and not k.endswith("_" + label)
            ]
            bad = [f"{s[k]} {k}" for k in ("wrong", "errors", "n/a") if s[k]]
            lines.append(
                f"  {label:<10}"
                + (", ".join(parts) or "-")
                + (f"  ({', '.join(bad)})" if bad else "")
            )
    for rec in report.get("models") or ([report["model"]] if report.get("model") else []):
        lines.append("")
        lines += format_model(rec)
    lines.append("")
    lines.append(f"elapsed {report['elapsed_s']:.1f} s")
    return lines


def format_report(report: Dict[str, Any]) -> str:
    lines = format_header(report)
    for c in report["cases"]:
        lines += format_case(c)
    lines += format_footer(report)
    return "\n".join(lines)


# --------------------------------------------------------------------------- files


def write_json(report: Dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=1, default=str)
        f.write("\n")


def require_matplotlib() -> None:
    """Raise a clear error now, before a long run, if --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'fastconv[plot]')"
        ) from None


def plot(report: Dict[str, Any], path: str) -> None:
    """Horizontal bars: each runner's speed-up over NumPy per case (log scale), each bar
    labelled with its value; the title names the machine and the date, and says so when
    the machine was busy."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [lb for lb in list(report["engines"]) + list(report["baselines"]) if lb != "numpy"]
    cases = report["cases"]
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(1, len(cases)) * max(1, len(labels)) + 2.2))
    height = 0.8 / max(1, len(labels))
    vmax = 1.0
    for j, label in enumerate(labels):
        vals = [c["results"].get(label, {}).get("speedup_vs_numpy") or 0.0 for c in cases]
        ys = [i + j * height for i in range(len(cases))]
        bars = ax.barh(ys, vals, height=height, label=label)
        for bar, v, c in zip(bars, vals, cases):
            status = c["results"].get(label, {}).get("status", "")
            text = f"x{v:.2f}" if v else ("WRONG" if status.startswith("WRONG") else status)
            if text:
                ax.annotate(
                    text,
                    (v if v else 1.0, bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                )
        vmax = max([vmax] + vals)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(cases))])
    ax.set_yticklabels([c["name"] for c in cases], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", lw=0.8)
    if any(c["results"].get(lb, {}).get("speedup_vs_numpy") for c in cases for lb in labels):
        ax.set_xscale("log")
        ax.set_xlim(right=vmax * 2.5)  # room for the labels of the longest bars
    ax.set_xlabel("speed-up over the NumPy baseline (sliding_window_view + einsum)")
    m = report["machine"]
    title = (
        f"fastconv bench, {report['dtype']}, {m['threads']} thread(s), {report.get('date', '')}\n"
        f"{m['cpu']}, {m['cores']} cores"
        + (f"; FMA peak {m['fma_gflops']:.0f} GFLOP/s" if m.get("fma_gflops") else "")
        + (f"; load {m['load_average_1min']:.1f}" if m.get("load_average_1min") is not None
           else "")
    )
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    bottom = 0.0
    if is_busy(m):
        fig.text(
            0.01, 0.01,
            "BUSY machine: other work shared the cores, so these figures are noisy "
            "(rerun on a quiet machine, or with --threads 1)",
            color="firebrick", fontsize=8, ha="left", va="bottom",
        )
        bottom = 0.35 / fig.get_figheight()  # room for the note under the axis label
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    fig.savefig(path, dpi=120)
    plt.close(fig)
