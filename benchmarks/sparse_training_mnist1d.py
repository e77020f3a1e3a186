"""Dense, static, SET, RigL (uniform and ERK) and the IMP ticket at 80/90/95% on MNIST-1D, through the runner.

Every row is a run of `python -m tf_lottery.main` kinds with
`configs/rigl_mnist1d.py` (the MNIST-1D MLP 40-256-256-10, Adam 1e-3, batch
100, 60 epochs = 2,100 steps per training, 3 seeds), all in one workdir, so
a finished run is read back instead of retrained and an interrupted table
resumes where it stopped:

- `dense`: round 0 of the IMP run (same seeds, same initial weights).
- `static_erk`, `static_uniform`: a fixed random mask (`static` kind).
- `set_erk`, `set_uniform`: SET (`set` kind), 15 updates (every 100 steps
  until 75% of training, drop fraction 0.3, cosine).
- `rigl_erk`, `rigl_uniform`: RigL (`rigl` kind), the same schedule, the
  dense gradient of each update step's own training batch.
- `imp`: the ticket of global IMP rewinding to initialisation
  (`configs/rigl_mnist1d.py:imp`, 20.63% per round): rounds 7, 10 and 13
  are at 80.2%, 90.1% and 95.0% sparsity. Each round trains the same 2,100
  steps as every other row; finding the ticket took that many trainings.

For a given seed every method starts from the same initial weights, and
static, SET and RigL of one distribution from the same random mask. The
table gives the test accuracy at the end of training (and, below it, at the
early-stopping iteration), mean ± std over the seeds, and says for each
ordering of the RigL paper whether it holds here and whether the difference
is larger than the seeds' spread.

    python benchmarks/sparse_training_mnist1d.py --workdir /tmp/tfl_sparse_table
    python benchmarks/sparse_training_mnist1d.py --workdir /tmp/tfl_sparse_table --methods rigl_erk imp
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tf_lottery.experiments import registry  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPARSE = ("static_erk", "static_uniform", "set_erk", "set_uniform", "rigl_erk", "rigl_uniform")
METHODS = ("imp",) + SPARSE
SPARSITIES = (0.8, 0.9, 0.95)
IMP_ROUNDS = {0.8: 7, 0.9: 10, 0.95: 13}
LABELS = {
    "dense": "dense",
    "static_erk": "static, ERK",
    "static_uniform": "static, uniform",
    "set_erk": "SET, ERK",
    "set_uniform": "SET, uniform",
    "rigl_erk": "RigL, ERK",
    "rigl_uniform": "RigL, uniform",
    "imp": "IMP ticket (global)",
}


def _config_module():
    path = os.path.join(ROOT, "configs", "rigl_mnist1d.py")
    spec = importlib.util.spec_from_file_location("rigl_mnist1d", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def configs(methods, sparsities, smoke: bool = False):
    """`(method, sparsity or None, config)` for every run of the table."""
    module = _config_module()
    suffix = ",smoke" if smoke else ""
    for method in methods:
        if method == "imp":
            yield method, None, module.get_config("imp" + suffix)
            continue
        kind, distribution = method.split("_")
        for sparsity in sparsities:
            config = module.get_config(f"{kind},{distribution}{suffix}")
            config.sparse.sparsity = sparsity
            yield method, sparsity, config


def _values(rows, level, field):
    return [row[field] for row in rows if row["level"] == level and row[field] is not None]


def collect(summaries) -> dict:
    """`{(method, sparsity): {"final": [...], "es": [...], "sparsity": [...]}}` from the runs' rows."""
    table = {}
    for method, sparsity, summary in summaries:
        rows = [row for row in summary["rows"] if row["branch"] in ("ticket", method.split("_")[0])]
        if method == "imp":
            entries = [("dense", 0.0, 0)] + [("imp", s, IMP_ROUNDS[s]) for s in SPARSITIES]
        else:
            entries = [(method, sparsity, 0)]
        for name, target, level in entries:
            table[(name, target)] = {
                "final": _values(rows, level, "final_test_accuracy"),
                "es": _values(rows, level, "early_stop_test_accuracy"),
                "sparsity": _values(rows, level, "sparsity"),
            }
    return table


def _cell(values) -> str:
    if not values:
        return "-"
    values = [100.0 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown(table, field: str) -> str:
    names = ["dense"] + [m for m in SPARSE if any((m, s) in table for s in SPARSITIES)] + ["imp"]
    header = "| method | " + " | ".join(f"{s:.0%}" for s in SPARSITIES) + " |"
    lines = [header, "|---|" + "---:|" * len(SPARSITIES)]
    for name in names:
        if name == "dense":
            entry = table.get(("dense", 0.0))
            if entry:
                lines.append(f"| dense (0%) | {_cell(entry[field])} |" + " |" * (len(SPARSITIES) - 1))
            continue
        cells = []
        for sparsity in SPARSITIES:
            entry = table.get((name, sparsity))
            if not entry:
                cells.append("-")
                continue
            actual = statistics.mean(entry["sparsity"]) if entry["sparsity"] else float("nan")
            note = f" ({actual:.1%})" if abs(actual - sparsity) > 5e-4 else ""
            cells.append(_cell(entry[field]) + note)
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _compare(table, better, worse, sparsity, field) -> str | None:
    a, b = table.get((better, sparsity)), table.get((worse, sparsity))
    if not a or not b or len(a[field]) < 2 or len(b[field]) < 2:
        return None
    mean_a, mean_b = statistics.mean(a[field]), statistics.mean(b[field])
    spread = max(statistics.stdev(a[field]), statistics.stdev(b[field]))
    difference = 100.0 * (mean_a - mean_b)
    if mean_a >= mean_b:
        verdict = "holds" if mean_a - mean_b > spread else "holds, within the seeds' spread"
    else:
        verdict = "reversed" if mean_b - mean_a > spread else "reversed, within the seeds' spread"
    return (
        f"{sparsity:.0%}: {LABELS[better]} {100 * mean_a:.2f} vs {LABELS[worse]} {100 * mean_b:.2f} "
        f"({difference:+.2f} points; largest std {100 * spread:.2f}): {verdict}"
    )


def orderings(table, field: str = "final") -> str:
    claims = [
        ("RigL >= SET", "rigl_erk", "set_erk"),
        ("RigL >= SET (uniform)", "rigl_uniform", "set_uniform"),
        ("SET > static", "set_erk", "static_erk"),
        ("SET > static (uniform)", "set_uniform", "static_uniform"),
        ("ERK > uniform (RigL)", "rigl_erk", "rigl_uniform"),
        ("ERK > uniform (SET)", "set_erk", "set_uniform"),
        ("ERK > uniform (static)", "static_erk", "static_uniform"),
    ]
    lines = []
    for title, better, worse in claims:
        found = [_compare(table, better, worse, s, field) for s in SPARSITIES]
        found = [line for line in found if line]
        if found:
            lines.append(f"{title}:")
            lines.extend(f"  {line}" for line in found)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/tfl_sparse_table")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--sparsities", nargs="*", type=float, default=list(SPARSITIES))
    parser.add_argument("--smoke", action="store_true", help="3 epochs, 2 seeds, IMP 2 rounds")
    args = parser.parse_args()
    began = time.time()
    summaries = []
    for method, sparsity, config in configs(args.methods, args.sparsities, args.smoke):
        config.run.verbose = 0
        config.run.plots = False
        started = time.time()
        summary = registry.run(config, args.workdir, log=print)
        summaries.append((method, sparsity, summary))
        what = f"{method} at {sparsity:.0%}" if sparsity is not None else method
        print(f"{what}: {summary['root']} ({time.time() - started:.0f} s)", flush=True)
    table = collect(summaries)
    print("\nTest accuracy (%) at the end of training, mean ± std over seeds:\n")
    print(markdown(table, "final"))
    print("\nTest accuracy (%) at the early-stopping iteration, mean ± std over seeds:\n")
    print(markdown(table, "es"))
    print("\nOrderings of Evci et al. (2020), end of training:\n")
    print(orderings(table, "final"))
    print(f"\nWall time: {time.time() - began:.0f} s")


if __name__ == "__main__":
    main()
