"""The training benchmarks run anywhere (--tiny: digits + resnet10t on CPU) and report what they measured."""

import json
import subprocess
import sys

import pytest

from conftest import REPO


def run_benchmark(script, json_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--tiny", "--epochs", "1", "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(json_path.read_text())


@pytest.mark.slow
def test_throughput_compares_ncfine_with_the_plain_loop(tmp_path):
    stdout, result = run_benchmark("throughput.py", tmp_path / "throughput.json")
    assert result["device"].startswith("cpu") and result["backbone"] == "resnet10t"
    assert result["images"] == 1437  # the digits train split
    assert result["plain_images_per_s"] > 0 and result["ncfine_images_per_s"] > 0
    assert result["ratio"] == result["plain_s_per_epoch"] / result["ncfine_s_per_epoch"]
    assert "ncfine/plain" in stdout and f"{result['ratio']:.3f}" in stdout


@pytest.mark.slow
def test_analysis_overhead_times_the_same_run_with_and_without_analysis(tmp_path):
    stdout, result = run_benchmark("analysis_overhead.py", tmp_path / "overhead.json")
    assert result["plain_s_per_epoch"] > 0 and result["analysis_s_per_epoch"] > 0
    assert result["ratio"] == result["analysis_s_per_epoch"] / result["plain_s_per_epoch"]
    assert f"{result['ratio']:.3f}" in stdout
    # The breakdown: eval passes (the train split's; test comes from validation) and metric compute,
    # both parts of the analysis epoch.
    assert 0 < result["features_s_per_epoch"] and 0 < result["metrics_s_per_epoch"]
    assert result["features_s_per_epoch"] + result["metrics_s_per_epoch"] < result["analysis_s_per_epoch"]
    assert result["floor_ratio"] == 1 + result["features_s_per_epoch"] / result["plain_s_per_epoch"]


def update_readme(out, readme):
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "update_readme.py"), str(out), "--readme", str(readme)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def readme_with_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n<!-- update_readme.py: begin -->\nold\n<!-- update_readme.py: end -->\ntail\n")
    return readme


@pytest.mark.slow
def test_gpu_session_json_written_into_the_readme_table(tmp_path):
    # The four JSON files gpu_session.sh writes, produced on CPU by the same scripts, then the table.
    out = tmp_path / "out"
    out.mkdir()
    (out / "gpu.txt").write_text(
        "name, memory.total [MiB], driver_version\nstand-in CPU, 0 MiB, none\n"
        "date 2026-11-30\ntorch 2 timm 1 lightning 2\n"
    )
    run_benchmark("throughput.py", out / "throughput_resnet18.json")
    run_benchmark("analysis_overhead.py", out / "analysis_overhead_resnet18.json")
    for script, args in (
        ("nc_metrics.py", ["--device", "cpu", "--quick", "--sizes", "cifar10", "--repeats", "1"]),
        ("recovery.py", ["--device", "cpu", "--quick", "--bundle-only", "--repeats", "1"]),
    ):
        name = script.replace(".py", ".json")
        proc = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / script), *args, "--json", str(out / name)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    readme = readme_with_markers(tmp_path)
    proc = update_readme(out, readme)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- update_readme.py: begin -->\nMachine: stand-in CPU, 0 MiB, none")
    assert text.endswith("<!-- update_readme.py: end -->\ntail\n") and "\nold\n" not in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| `throughput.py`",
        "| `analysis_overhead.py`",
        "| `nc_metrics.py`",
        "| `recovery.py`",
        "| `recovery.py`",
    ]
    overhead = json.loads((out / "analysis_overhead_resnet18.json").read_text())
    assert f"{overhead['ratio']:.3f} x" in rows[1] and "no verdict (not a GPU)" in rows[1]
    assert "stands for 60,000" in rows[2] and "scaled down" in rows[3]


def test_readme_table_says_which_benchmark_failed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "gpu.txt").write_text("name, memory.total [MiB], driver_version\nNVIDIA H200, 143771 MiB, 580\n")
    (out / "nc_metrics.json").write_text(
        json.dumps(
            {
                "rows": [
                    {
                        "device": "cuda",
                        "n": 1281167,
                        "n_full": 1281167,
                        "scaled_down": False,
                        "d": 2048,
                        "c": 1000,
                        "repeats": 5,
                        "median_s": 0.61,
                        "peak_extra_bytes": 500 * 2**20,
                        "target_s": 5.0,
                        "target_extra_bytes": 2 * 2**30,
                    }
                ]
            }
        )
    )
    readme = readme_with_markers(tmp_path)
    assert update_readme(out, readme).returncode == 0
    text = readme.read_text()
    assert "no throughput_resnet18.json: the benchmark failed" in text and "no recovery.json" in text
    assert (
        "| 1,281,167 x 2048 x 1000 | 610.00 ms (median of 5), 500 MiB beyond the features | < 5000 ms, < 2 GiB | met |"
        in text
    )
    bad = tmp_path / "plain.md"
    bad.write_text("# no markers\n")
    proc = update_readme(out, bad)
    assert proc.returncode != 0 and "needs the lines" in proc.stderr and bad.read_text() == "# no markers\n"


def test_sweep_epoch_times_reads_a_sweep_log(tmp_path):
    """benchmarks/sweep_epoch_times.py: analysis epochs (val/acc on the line) against training-only ones."""
    log = tmp_path / "sweep.log"
    log.write_text(
        "[2026-12-06 00:00:00,000][HYDRA] \t#0 : +cifar10_cpu=resnet18 seed=0\n"
        "epoch 1/4  train/acc 0.3  train/loss 1.5  10.0 s\n"
        "epoch 2/4  train/acc 0.4  train/loss 1.4  12.0 s\n"
        "epoch 3/4  train/acc 0.5  train/loss 1.3  11.0 s\n"
        "epoch 4/4  train/acc 0.6  train/loss 1.2  val/acc 0.5  val/loss 1.3  31.0 s\n"
        "[2026-12-06 00:01:00,000][HYDRA] \t#1 : +cifar10_cpu=vgg16_bn seed=0\n"
        "epoch 1/4  train/acc 0.3  train/loss 1.5  5.0 s\n"
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sweep_epoch_times.py"), str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # median train epoch 11.0, analysis epoch 31.0, extra 20.0, ratio 64 / (4 x 11) = 1.45
    assert lines[1].split()[:7] == ["#0", "4", "11.0", "31.0", "20.0", "1.45", "64"]
    assert "no epochs with and without analysis" in lines[2]


@pytest.mark.slow
def test_throughput_cpu_mode_compares_ncfine_with_both_plain_variants(tmp_path):
    json_path = tmp_path / "cpu.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--cpu", "--tiny", "--backbones", "resnet10t"]
        + ["--width", "0.25", "--images", "256", "--epochs", "2", "--rounds", "2", "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(json_path.read_text())
    assert result["path"]["device"] == "cpu" and result["path"]["precision"] in ("bf16-mixed", "32-true")
    (row,) = result["rows"]
    assert row["backbone"] == "resnet10t x 0.25" and row["images"] == 256
    rates = [row[k] for k in ("plain_fp32_images_per_s", "plain_bf16_cl_images_per_s", "ncfine_images_per_s")]
    assert all(r > 0 for r in rates)
    assert row["ncfine_vs_best_plain"] == rates[2] / max(rates[:2])
    # Each variant ran twice (orders ncfine-first, then ncfine-last); the median of two rounds is their mean.
    rounds = row["rounds_images_per_s"]
    assert all(len(rounds[k]) == 2 for k in ("ncfine", "plain fp32", "plain bf16+cl"))
    assert rates[2] == pytest.approx(sum(rounds["ncfine"]) / 2)
    first = rounds["ncfine"][0] / max(rounds["plain fp32"][0], rounds["plain bf16+cl"][0])
    assert row["ncfine_vs_best_plain_per_round"][0] == pytest.approx(first)
    assert "resnet10t x 0.25 round 2: ncfine" in proc.stdout
    assert f"ncfine/best plain {row['ncfine_vs_best_plain']:.3f}" in proc.stdout


@pytest.mark.slow
def test_recovery_subsets_scores_features_and_pixels_of_the_same_images(tiny_digits_run, tmp_path):
    out = tmp_path / "subsets.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "recovery_subsets.py"), str(tiny_digits_run), "--splits", "test"]
        + ["--per-class", "40", "--draws", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    by_subset = {row["subset"]: row for row in rows}
    assert by_subset["all"]["images"] == 360  # the digits' test split
    assert by_subset["correct"]["images"] + by_subset.get("wrong", {"images": 0})["images"] == 360
    assert by_subset["correct"]["images"] == round(360 * by_subset["all"]["coarse_acc"])
    sampled = by_subset["40 per superclass"]
    assert sampled["images"] == 200 and len(sampled["features_range"]) == 2
    assert all(0.0 <= row[name] <= 1.0 for row in rows for name in ("features", "inputs"))
    assert "per superclass x 2" in proc.stdout


@pytest.mark.slow
def test_discovery_criteria_scores_every_criterion_against_the_fine_labels(tiny_digits_run, tmp_path):
    out = tmp_path / "criteria.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "discovery_criteria.py"), str(tiny_digits_run), "--splits", "test"]
        + ["--max-k", "3", "--n-init", "2", "--backend", "torch", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert sorted(row["criterion"] for row in rows) == ["bic", "gap", "prediction_strength", "silhouette"]
    for row in rows:
        assert row["k_true"] == [2, 2, 2, 2, 2] and all(1 <= k <= 3 for k in row["k_found"])
        assert row["exact"] == sum(f == t for f, t in zip(row["k_found"], row["k_true"]))
    assert "exact k" in proc.stdout
