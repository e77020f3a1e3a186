"""Per-round results of a run: rows, CSV and JSON files, the terminal table."""

from __future__ import annotations

import csv
import io
import math
import os
import time

import numpy as np

from tf_lottery.experiments import run_store
from tf_lottery.utils import atomic_io

FIELDS = (
    "experiment",
    "branch",
    "replicate",
    "level",
    "percent_remaining",
    "sparsity",
    "early_stop_step",
    "early_stop_test_accuracy",
    "early_stop_val_loss",
    "early_stop_val_accuracy",
    "final_test_accuracy",
    "final_test_loss",
    "final_val_accuracy",
    "final_train_loss",
    "elapsed_s",
    "found",
)


def _row(metrics: dict) -> dict:
    early, final = metrics.get("early_stop", {}), metrics.get("final", {})
    return {
        "experiment": metrics["experiment"],
        "branch": metrics["branch"],
        "replicate": metrics["replicate"],
        "level": metrics["level"],
        "percent_remaining": metrics["percent_remaining"],
        "sparsity": metrics["sparsity"],
        "early_stop_step": early.get("step"),
        "early_stop_test_accuracy": early.get("test_accuracy"),
        "early_stop_val_loss": early.get("val_loss"),
        "early_stop_val_accuracy": early.get("val_accuracy"),
        "final_test_accuracy": final.get("test_accuracy"),
        "final_test_loss": final.get("test_loss"),
        "final_val_accuracy": final.get("val_accuracy"),
        "final_train_loss": final.get("train_loss"),
        "elapsed_s": metrics.get("elapsed_s"),
        # Early-Bird: whether the search converged (absent for every other kind).
        "found": metrics.get("found"),
    }


def collect(store, levels: int, replicates: int, branches: list[str]) -> list[dict]:
    """One row per finished level of every replicate and branch."""
    rows = []
    for replicate in range(replicates):
        for level in range(levels + 1):
            for branch in [None] + (list(branches) if level else []):
                directory = store.level_dir(replicate, level, branch)
                if run_store.is_done(directory):
                    rows.append(_row(run_store.read_metrics(directory)))
    return rows


TIME_PARTS = ("train", "evaluate", "prune_reset", "store")


def time_breakdown(store, levels: int, replicates: int, branches: list[str]) -> dict:
    """Where the run's time went: seconds per part, per finished level and in total.

    Parts: `train` (fit), `evaluate`, `prune_reset` (pruning, rewinding and
    the rest of a level's start) and `store` (the level's files and
    checkpoints). Levels stored by a version without timings count as 0.
    """
    per_level = []
    for replicate in range(replicates):
        for level in range(levels + 1):
            for branch in [None] + (list(branches) if level else []):
                directory = store.level_dir(replicate, level, branch)
                if run_store.is_done(directory):
                    timing = run_store.read_metrics(directory).get("timing", {})
                    per_level.append(
                        {
                            "replicate": replicate,
                            "level": level,
                            "branch": branch or "main",
                            **{part: float(timing.get(part, 0.0)) for part in TIME_PARTS},
                        }
                    )
    total = {part: sum(entry[part] for entry in per_level) for part in TIME_PARTS}
    seconds = sum(total.values())
    share = {part: (total[part] / seconds if seconds else 0.0) for part in TIME_PARTS}
    return {"levels": per_level, "total_s": total, "share": share}


def time_line(breakdown: dict, reused: int = 0) -> str:
    """One line: seconds and share of each part, and the non-training share.

    `reused` finished levels were read back from the store rather than run by
    this command: their times are as stored when they ran, and the line says so.
    """
    total, share = breakdown["total_s"], breakdown["share"]
    parts = ", ".join(f"{part} {total[part]:.1f} s ({share[part]:.0%})" for part in TIME_PARTS)
    count = len(breakdown["levels"])
    if reused and reused >= count:
        label = "Time (as stored when they ran; every level was reused, none ran now)"
    elif reused:
        label = f"Time ({count - reused} level(s) ran now, {reused} reused, as stored when they ran)"
    else:
        label = "Time"
    return f"{label}: {parts}; not training {1.0 - share['train']:.0%}"


def finished_levels(store, replicates, levels: int, branches: list[str]) -> dict:
    """`{replicate: [(level, branch or None, finished time), ...]}` of the levels already done in `store`."""
    found = {}
    for replicate in replicates:
        for level in range(levels + 1):
            for branch in [None] + (list(branches) if level else []):
                directory = store.level_dir(replicate, level, branch)
                if run_store.is_done(directory):
                    found.setdefault(replicate, []).append(
                        (level, branch, run_store.finished_time(directory))
                    )
    return found


def reuse_lines(finished: dict, root: str) -> list[str]:
    """One line per replicate with reused levels: which, from where, and when the last one finished."""
    lines = []
    for replicate, entries in sorted(finished.items()):
        main = sorted({level for level, branch, _ in entries if branch is None})
        branches = sorted({branch for _, branch, _ in entries if branch is not None})
        span = _span(main) if main else "none"
        latest = max(t for _, _, t in entries)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(latest)) if latest else "at an unknown time"
        extra = (
            f" (and {len(entries) - len(main)} branch level(s): {', '.join(branches)})" if branches else ""
        )
        lines.append(
            f"Reused: level(s) {span} of replicate {replicate}{extra} from {root}, finished {when}. "
            "Delete that directory (or pass another --workdir) to run them again."
        )
    return lines


def _span(levels: list[int]) -> str:
    """`[0, 1, 2, 5]` -> `"0-2, 5"`."""
    parts, start = [], levels[0]
    for previous, current in zip(levels, levels[1:] + [None]):
        if current != previous + 1:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(parts)


def write(directory: str, rows: list[dict], timing: dict | None = None) -> dict:
    """Writes `rounds.csv` and `rounds.json` (rows, per-round aggregates and the time breakdown)."""
    atomic_io.makedirs(directory)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = os.path.join(directory, "rounds.csv")
    atomic_io.write_text(csv_path, buffer.getvalue())
    json_path = os.path.join(directory, "rounds.json")
    content = {"rows": rows, "summary": aggregate(rows)}
    if timing is not None:
        content["timing"] = timing
    atomic_io.write_json(json_path, content)
    return {"csv": csv_path, "json": json_path}


def _stats(values) -> dict | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
        "min": float(array.min()),
        "max": float(array.max()),
        "n": len(array),
    }


def aggregate(rows: list[dict], main: str = "ticket") -> list[dict]:
    """Mean, std, min and max over replicates for every (branch, level)."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["branch"], row["level"]), []).append(row)
    summary = []
    for (branch, level), members in sorted(groups.items(), key=lambda item: (item[0][0] != main, item[0])):
        entry = {"branch": branch, "level": level}
        for field in (
            "percent_remaining",
            "early_stop_step",
            "early_stop_test_accuracy",
            "final_test_accuracy",
        ):
            entry[field] = _stats([m[field] for m in members])
        summary.append(entry)
    return summary


def _cell(stats: dict | None, digits: int = 4, percent: bool = False) -> str:
    if stats is None:
        return "-"
    scale = 100.0 if percent else 1.0
    text = f"{stats['mean'] * scale:.{digits}f}"
    if stats["n"] > 1:
        text += f" ± {stats['std'] * scale:.{digits}f}"
    return text


def table(rows: list[dict], branches: list[str], title: str = "", main: str = "ticket") -> str:
    """A per-round table: the ticket's test accuracy beside each control's.

    Accuracies are test accuracies (in %) at the early-stopping iteration
    (lowest validation loss), mean ± std over replicates, as in Frankle &
    Carbin (2019), Figure 3; `end` is the accuracy at the end of training.
    """
    summary = {(e["branch"], e["level"]): e for e in aggregate(rows, main)}
    levels = sorted({row["level"] for row in rows})
    replicates = len({row["replicate"] for row in rows})
    header = ["round", "remaining", f"{main} (es)", "es step", f"{main} (end)"] + [
        f"{b} (es)" for b in branches
    ]
    lines = []
    for level in levels:
        ticket = summary.get((main, level), {})
        cells = [
            str(level),
            f"{ticket['percent_remaining']['mean']:.1f}%" if ticket else "-",
            _cell(ticket.get("early_stop_test_accuracy"), 2, percent=True),
            _cell(ticket.get("early_stop_step"), 0),
            _cell(ticket.get("final_test_accuracy"), 2, percent=True),
        ]
        for branch in branches:
            entry = summary.get((branch, level), {})
            cells.append(_cell(entry.get("early_stop_test_accuracy"), 2, percent=True))
        lines.append(cells)
    # Early-Bird replicates whose search never met its stop rule: their ticket is the mask
    # drawn at the end of dense training, not an early bird. Marked, not hidden in metrics.json.
    missed = sorted({row["replicate"] for row in rows if row["branch"] == main and row.get("found") is False})
    if missed:
        for cells, level in zip(lines, levels):
            if any(
                row["level"] == level and row["branch"] == main and row.get("found") is False for row in rows
            ):
                cells[2] += " *"
    widths = [
        max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i])
        for i in range(len(header))
    ]
    out = []
    if title:
        out.append(title)
    out.append(
        f"Test accuracy (%) at the early-stopping iteration (es) and at the end, mean ± std over "
        f"{replicates} replicate(s)."
    )
    out.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    out.append("  ".join("-" * w for w in widths))
    for cells in lines:
        out.append("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
    if missed:
        out.append(
            f"* the search did not converge in replicate(s) {', '.join(str(r) for r in missed)} "
            "(`found: false`): the mask was drawn at the end of dense training. Raise "
            "`early_bird.epsilon` or `early_bird.window`, or train longer."
        )
    return "\n".join(out)
