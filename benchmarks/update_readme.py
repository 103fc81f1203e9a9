"""Write the JSON files of one gpu_session.sh call into the table of benchmarks/README.md.

    python benchmarks/update_readme.py OUT_DIR [--readme benchmarks/README.md]

Reads OUT_DIR/{gpu.txt, throughput_resnet18.json, analysis_overhead_resnet18.json, nc_metrics.json,
recovery.json} and replaces the block between the two MARKERS lines of the README with one table
(benchmark, case, measured, target, verdict) headed by the machine and date from gpu.txt. A file
that is missing (its benchmark failed) becomes a row that says so. Verdicts are given for CUDA
rows only: the targets are GPU targets, and a CPU dry run checks the plumbing, not the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

MARKERS = ("<!-- update_readme.py: begin -->", "<!-- update_readme.py: end -->")
THROUGHPUT_TARGET = 0.95  # ncfine images/s over the plain loop's, at least
OVERHEAD_TARGET = 1.30  # s/epoch with analysis over without, at most
BUNDLE_TARGET_S = 0.3


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _verdict(on_cuda: bool, ok: bool) -> str:
    return ("met" if ok else "MISSED") if on_cuda else "no verdict (not a GPU)"


def _breakdown(overhead: dict) -> str:
    """Where the analysis epoch's extra time went (JSON written before the breakdown existed: nothing)."""
    if "features_s_per_epoch" not in overhead:
        return ""
    return (
        f" (eval passes {overhead['features_s_per_epoch']:.3f} s, metrics {overhead['metrics_s_per_epoch']:.3f} s "
        f"per epoch; eval passes alone: {overhead['floor_ratio']:.3f} x)"
    )


def rows(out: Path) -> tuple[list[list[str]], str]:
    """The table rows and the heading line (machine, software, date)."""
    gpu = (
        [line.strip() for line in (out / "gpu.txt").read_text().splitlines() if line.strip()]
        if (out / "gpu.txt").exists()
        else []
    )
    machine = gpu[1] if len(gpu) > 1 else "unknown machine (no gpu.txt)"
    software = next((line for line in gpu if line.startswith("torch ")), "")
    date = next((line[5:] for line in gpu if line.startswith("date ")), "unknown date")
    table: list[list[str]] = []

    def missing(name: str, script: str) -> None:
        table.append([f"`{script}`", name, f"no {name}.json: the benchmark failed (see session.log)", "", ""])

    t = _load(out / "throughput_resnet18.json")
    if t is None:
        missing("throughput_resnet18", "throughput.py")
    else:
        cuda = not str(t["device"]).lower().startswith("cpu")  # device_name(): the GPU's name or "cpu (...)"
        table.append(
            [
                "`throughput.py`",
                f"{t['backbone']}, {t['images']} images, batch {t['batch_size']}",
                f"ncfine {t['ncfine_images_per_s']:,.0f} img/s, plain {t['plain_images_per_s']:,.0f} img/s: "
                f"{t['ratio']:.3f} x",
                f">= {THROUGHPUT_TARGET} x",
                _verdict(cuda, t["ratio"] >= THROUGHPUT_TARGET),
            ]
        )
    a = _load(out / "analysis_overhead_resnet18.json")
    if a is None:
        missing("analysis_overhead_resnet18", "analysis_overhead.py")
    else:
        cuda = not str(a["device"]).lower().startswith("cpu")
        table.append(
            [
                "`analysis_overhead.py`",
                f"{a['backbone']}, {a['epochs']} epochs",
                f"{a['analysis_s_per_epoch']:.3f} s/epoch with analysis, {a['plain_s_per_epoch']:.3f} without: "
                f"{a['ratio']:.3f} x" + _breakdown(a),
                f"<= {OVERHEAD_TARGET} x",
                _verdict(cuda, a["ratio"] <= OVERHEAD_TARGET),
            ]
        )
    n = _load(out / "nc_metrics.json")
    if n is None:
        missing("nc_metrics", "nc_metrics.py")
    else:
        for row in n["rows"]:
            cuda = row["device"] == "cuda"
            case = f"{row['n']:,} x {row['d']} x {row['c']}" + (
                f" (stands for {row['n_full']:,})" if row["scaled_down"] else ""
            )
            measured = f"{1e3 * row['median_s']:.2f} ms (median of {row['repeats']})"
            if row.get("peak_extra_bytes") is not None:
                measured += f", {row['peak_extra_bytes'] / 2**20:.0f} MiB beyond the features"
            targets, ok = [], True
            if row.get("target_s"):
                targets.append(f"< {1e3 * row['target_s']:g} ms")
                ok &= row["median_s"] < row["target_s"]
            if row.get("target_extra_bytes"):
                targets.append(f"< {row['target_extra_bytes'] / 2**30:g} GiB")
                ok &= (row.get("peak_extra_bytes") or 0) < row["target_extra_bytes"]
            table.append(
                [
                    "`nc_metrics.py`",
                    case,
                    measured,
                    ", ".join(targets),
                    _verdict(cuda, ok) if targets or not cuda else "",
                ]
            )
    r = _load(out / "recovery.json")
    if r is None:
        missing("recovery", "recovery.py")
    else:
        for row in r["rows"]:
            if row["case"] != "bundle":
                continue
            cuda = row["device"].startswith("cuda")
            scaled = " (scaled down: --quick)" if r["meta"].get("quick") else ""
            table.append(
                [
                    "`recovery.py`",
                    f"bundle {row['shape']}, {row['backend']} k-means{scaled}",
                    f"{1e3 * row['median_s']:.1f} ms (median)",
                    f"< {BUNDLE_TARGET_S} s",
                    _verdict(cuda, row["median_s"] < BUNDLE_TARGET_S),
                ]
            )
    heading = (
        f"Machine: {machine}; {software}. Date: {date}. From `gpu_session.sh` (JSON in its `$OUT`), "
        "written here by `python benchmarks/update_readme.py OUT`."
    )
    return table, heading


def render(out: Path) -> str:
    table, heading = rows(out)
    lines = [heading, "", "| benchmark | case | measured | target | verdict |", "| --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def replace_block(readme: Path, block: str) -> None:
    text = readme.read_text()
    begin, end = MARKERS
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"update_readme.py: error: {readme} needs the lines {begin!r} and {end!r} once each, in order")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    # Atomic: a temp file in the same folder, then rename.
    fd, tmp = tempfile.mkstemp(dir=readme.parent, prefix=f".{readme.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{head}{begin}\n{block}{end}{tail}")
    os.replace(tmp, readme)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the $OUT folder of gpu_session.sh")
    parser.add_argument("--readme", type=Path, default=Path(__file__).with_name("README.md"))
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        parser.error(f"{args.out} is not a folder (give gpu_session.sh's $OUT)")
    block = render(args.out)
    replace_block(args.readme, block)
    sys.stdout.write(block)


if __name__ == "__main__":
    main()
