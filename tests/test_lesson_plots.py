"""The lessons' pictures show every curve they list: overlapping curves are marked, and a
series that a log axis cannot draw is named in a note, not in the legend."""

import math

import numpy as np
import pytest

from fastconv.lessons import init_lesson

pytest.importorskip("matplotlib")


def _result(steps=40):
    flat = [math.log(4)] * steps
    falling = list(np.linspace(1.4, 0.05, steps))
    spike = [800.0] * 3 + flat[3:]
    runs = {"zeros": {"losses": flat}, "normal1": {"losses": spike},
            "he": {"losses": falling}}
    variances = {"zeros": [0.0] * 4, "normal1": [1e2, 1e4, 1e6, 1e8], "he": [1.0, 1.1, 0.9, 1.0]}
    return {"runs": runs, "variances": variances}


def test_overlapping_loss_curves_are_marked_and_both_drawn():
    import matplotlib.pyplot as plt

    fig = init_lesson.figure(_result())
    try:
        loss_ax, var_ax = fig.axes
        labels = loss_ax.get_legend_handles_labels()[1]
        assert "zeros (overlaps normal1)" in labels and "normal1 (overlaps zeros)" in labels
        assert "he" in labels  # a curve that overlaps nothing keeps its plain name
        widths = {ln.get_label().split()[0]: ln.get_linewidth() for ln in loss_ax.lines}
        assert widths["zeros"] > widths["normal1"]  # the band under stays visible around it
    finally:
        plt.close(fig)


def test_all_zero_variance_is_a_note_not_a_legend_entry():
    import matplotlib.pyplot as plt

    fig = init_lesson.figure(_result())
    try:
        var_ax = fig.axes[1]
        labels = var_ax.get_legend_handles_labels()[1]
        assert "zeros" not in labels and set(labels) == {"normal1", "he"}
        assert any("zeros" in t.get_text() for t in var_ax.texts)
        # one colour per init in both panels
        loss_colors = {ln.get_label().split()[0]: ln.get_color() for ln in fig.axes[0].lines}
        var_colors = {ln.get_label(): ln.get_color() for ln in var_ax.lines}
        assert all(loss_colors[n] == c for n, c in var_colors.items())
    finally:
        plt.close(fig)
