"""What the analysis epochs of a finished sweep cost, read off its log (no run is repeated).

`ncfine-train` prints one line per epoch when stdout is not a terminal (`epoch 5/20 ... 118.1 s`);
the seconds cover training, validation and the analysis callbacks of that epoch. In a sweep where
validation and analysis run every n-th epoch (experiment=cifar10_cpu: every 5th), the other
epochs are training only, so per job:

    train epoch      median seconds of the epochs without validation / analysis
    analysis epoch   median seconds of the epochs with them (`val/acc` on the line)
    extra            analysis epoch - train epoch: the test pass (validation, whose features the
                     analysis reuses), the train-subset pass and the metrics (NC, k-means, probes)
    ratio            all epochs' seconds / (epochs x train epoch): the run's cost against the same
                     run without validation and analysis

Medians keep an epoch slowed by other work on the machine from moving the numbers much; the log
says nothing about such work, so say what else ran when you quote them.

    python benchmarks/sweep_epoch_times.py sweep.log            # the stdout+stderr of ncfine-train -m
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys

JOB = re.compile(r"\[HYDRA\]\s+#(\d+) : (.*)$")
EPOCH = re.compile(r"^epoch (\d+)/(\d+)\s+(.*?)\s+([0-9.]+) s$")


def parse(lines: list[str]) -> list[dict]:
    """[{job, overrides, epochs: [(epoch, seconds, analysed)]}] in launch order."""
    jobs: list[dict] = []
    for line in lines:
        line = line.rstrip("\n")
        started = JOB.search(line)
        if started:
            jobs.append({"job": int(started.group(1)), "overrides": started.group(2), "epochs": []})
            continue
        epoch = EPOCH.match(line)
        if epoch and jobs:
            jobs[-1]["epochs"].append((int(epoch.group(1)), float(epoch.group(4)), "val/acc" in epoch.group(3)))
    return jobs


def summarize(job: dict) -> dict | None:
    plain = [s for _, s, analysed in job["epochs"] if not analysed]
    analysed = [s for _, s, analysed in job["epochs"] if analysed]
    if not plain or not analysed:
        return None
    train, analysis = statistics.median(plain), statistics.median(analysed)
    total = sum(s for _, s, _ in job["epochs"])
    return {
        "epochs": len(job["epochs"]),
        "analysed": len(analysed),
        "train_s": train,
        "analysis_s": analysis,
        "extra_s": analysis - train,
        "ratio": total / (len(job["epochs"]) * train),
        "total_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="a sweep's log (ncfine-train -m ... > sweep.log 2>&1)")
    args = parser.parse_args()
    with open(args.log, errors="replace") as handle:
        jobs = parse(handle.readlines())
    if not jobs:
        sys.exit(f"no '#N : overrides' job lines in {args.log}: is it the log of ncfine-train -m?")
    print(
        f"{'job':<4} {'epochs':>6} {'train s':>8} {'analysis s':>10} {'extra s':>8} {'ratio':>6} {'total s':>8}  overrides"
    )
    for job in jobs:
        row = summarize(job)
        if row is None:
            print(
                f"#{job['job']:<3} {len(job['epochs']):>6}  (no epochs with and without analysis)  {job['overrides']}"
            )
            continue
        print(
            f"#{job['job']:<3} {row['epochs']:>6} {row['train_s']:>8.1f} {row['analysis_s']:>10.1f} "
            f"{row['extra_s']:>8.1f} {row['ratio']:>6.2f} {row['total_s']:>8.0f}  {job['overrides']}"
        )


if __name__ == "__main__":
    main()
