"""Figures like Frankle & Carbin (2019), Figures 3 and 4, as PNG files.

x: percent of prunable weights remaining, on a log axis running from 100%
down; one line per branch (the ticket and each control), with the mean over
replicates and error bars spanning their minimum and maximum, as in the
paper.
"""

from __future__ import annotations

import io
import os
import textwrap

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tf_lottery.experiments import results  # noqa: E402
from tf_lottery.utils import atomic_io  # noqa: E402

_PLOTS = {
    "accuracy.png": ("early_stop_test_accuracy", "Test accuracy at early stopping (%)", 100.0),
    "early_stop.png": ("early_stop_step", "Early-stopping iteration", 1.0),
    "final_accuracy.png": ("final_test_accuracy", "Test accuracy at end of training (%)", 100.0),
}
_LABELS = {
    "ticket": "winning ticket (IMP)",
    "rewind": "IMP, rewound to an early point",
    "kd_ticket": "KD ticket",
    "kd_rewind": "KD rewinding",
    "reinit": "random reinit",
    "random_layerwise": "random pruning (layer-wise)",
    "random_global": "random pruning (global)",
    "lr_rewind": "learning-rate rewinding",
    "finetune": "fine-tuning",
}


def plot_all(rows: list[dict], directory: str, title: str = "", main: str = "ticket") -> list[str]:
    """Writes accuracy.png, early_stop.png and final_accuracy.png; returns their paths."""
    summary = results.aggregate(rows, main)
    branches = list(dict.fromkeys(entry["branch"] for entry in summary))
    paths = []
    for filename, (field, ylabel, scale) in _PLOTS.items():
        figure, axis = plt.subplots(figsize=(6.4, 4.4), dpi=120)
        plotted = False
        for branch in branches:
            entries = [e for e in summary if e["branch"] == branch and e[field] is not None]
            entries.sort(key=lambda e: -e["percent_remaining"]["mean"])
            if not entries:
                continue
            x = [e["percent_remaining"]["mean"] for e in entries]
            mean = [e[field]["mean"] * scale for e in entries]
            lower = [(e[field]["mean"] - e[field]["min"]) * scale for e in entries]
            upper = [(e[field]["max"] - e[field]["mean"]) * scale for e in entries]
            axis.errorbar(
                x,
                mean,
                yerr=[lower, upper],
                marker="o",
                markersize=3,
                capsize=2,
                label=_LABELS.get(branch, branch),
            )
            plotted = True
        axis.set_xscale("log")
        ticks = sorted({round(e["percent_remaining"]["mean"], 1) for e in summary}, reverse=True)
        axis.set_xticks(ticks[:: max(1, len(ticks) // 8)])
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.invert_xaxis()
        axis.set_xlabel("Percent of weights remaining")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        if title:
            axis.set_title(textwrap.fill(title, 80), fontsize=8)
        if plotted:
            axis.legend(fontsize=8)
        figure.tight_layout()
        path = os.path.join(directory, filename)
        image = io.BytesIO()
        figure.savefig(image, format="png")
        plt.close(figure)
        atomic_io.write_bytes(path, image.getvalue())
        paths.append(path)
    return paths
