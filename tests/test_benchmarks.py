"""The training benchmarks run anywhere (--tiny: digits + resnet10t on CPU) and report what they measured."""

import json
import subprocess
import sys

from conftest import REPO


def run_benchmark(script, json_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--tiny", "--epochs", "1",
                           "--json", str(json_path)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(json_path.read_text())


def test_throughput_compares_ncfine_with_the_plain_loop(tmp_path):
    stdout, result = run_benchmark("throughput.py", tmp_path / "throughput.json")
    assert result["device"].startswith("cpu") and result["backbone"] == "resnet10t"
    assert result["images"] == 1437  # the digits train split
    assert result["plain_images_per_s"] > 0 and result["ncfine_images_per_s"] > 0
    assert result["ratio"] == result["plain_s_per_epoch"] / result["ncfine_s_per_epoch"]
    assert "ncfine/plain" in stdout and f"{result['ratio']:.3f}" in stdout


def test_analysis_overhead_times_the_same_run_with_and_without_analysis(tmp_path):
    stdout, result = run_benchmark("analysis_overhead.py", tmp_path / "overhead.json")
    assert result["plain_s_per_epoch"] > 0 and result["analysis_s_per_epoch"] > 0
    assert result["ratio"] == result["analysis_s_per_epoch"] / result["plain_s_per_epoch"]
    assert f"{result['ratio']:.3f}" in stdout
