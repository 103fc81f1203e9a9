"""One progress line per run of gpu_reproduce.sh, read from each run dir's metrics.csv.

    python benchmarks/_progress.py WORK_DIR EPOCHS ELAPSED_S RUN [RUN ...]

Reads only the files (no torch import), so it costs nothing next to the training processes.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def line(run_dir: Path, epochs: int) -> str:
    rows = []
    try:
        with open(run_dir / "metrics.csv") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        pass
    status = ""
    try:
        status = json.loads((run_dir / "results.json").read_text()).get("status", "")
    except (OSError, ValueError):
        pass
    if not rows:
        return f"{run_dir.name}: no epoch finished yet" + (f" [{status}]" if status else "")
    last = rows[-1]
    shown = [
        f"{key.split('/', 1)[-1] if key == 'val/acc' else key} {float(last[key]):.4g}"
        for key in ("val/acc", "nc/train/nc1", "fine/test/kmeans_per_coarse_acc")
        if last.get(key)
    ]
    return f"{run_dir.name}: epoch {len(rows)}/{epochs} " + ", ".join(shown) + (f" [{status}]" if status else "")


def main(argv: list[str]) -> None:
    work, epochs, elapsed, runs = Path(argv[0]), int(argv[1]), argv[2], argv[3:]
    print(f"-- {elapsed} s: " + " | ".join(line(work / run, epochs) for run in runs), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
