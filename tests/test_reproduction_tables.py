"""benchmarks/gpu_reproduce.sh's tarball -> the RESULTS.md tables and figures (ncfine-collect --reproduction)."""

import json
import tarfile

import pytest

from conftest import run_cli
from ncfine.collect.reproduction import MARKERS, reproduction
from ncfine.collect.schema import CollectError

RUNS = {  # name: (backbone, hierarchy, per-superclass k-means accuracy)
    "resnet18_coarse": ("resnet18", "mod:5", 0.8512),
    "vgg16_bn_coarse": ("vgg16_bn", "mod:5", 0.6123),
    "densenet121_coarse": ("densenet121", "mod:5", 0.9301),
    "resnet18_fine": ("resnet18", "identity", None),
}


def make_tarball(tmp_path, status="completed"):
    """A tarball laid out as gpu_reproduce.sh writes it: one dir per run, manifest.json, gpu.txt."""
    work = tmp_path / "work"
    for name, (backbone, hierarchy, recovery) in RUNS.items():
        run = work / name
        (run / "plots").mkdir(parents=True)
        (run / "plots" / "nc_curves.png").write_bytes(b"\x89PNG fake " + name.encode())
        metrics = {"val/acc": 0.9, "nc/train/nc1": 0.25, "nc/test/nc1": 0.5, "nc/train/nc4": 0.01, "nc/test/nc4": 0.08}
        if recovery is not None:
            metrics.update(
                {
                    "fine/test/kmeans_per_coarse_acc": recovery,
                    "fine/test/kmeans_per_coarse_nmi": 0.5,
                    "fine/test/kmeans_global_acc": 0.7,
                    "fine/probe_acc": 0.88,
                    "fine/knn_acc": 0.86,
                    "nc/train/fine/nc1": 1.5,
                    "nc/test/fine/nc1": 2.5,
                }
            )
        (run / "results.json").write_text(
            json.dumps(
                {
                    "status": status if name == "vgg16_bn_coarse" else "completed",
                    "error": None,
                    "epochs_completed": 30,
                    "wall_time_s": 321.4,
                    "metrics": metrics,
                    "config": {
                        "backbone": backbone,
                        "hierarchy": hierarchy,
                        "lr": 0.1,
                        "weight_decay": 5e-4,
                        "seed": 0,
                    },
                }
            )
        )
    (work / "manifest.json").write_text(
        json.dumps({"date": "2026-12-01", "epochs": 30, "batch_size": 512, "wall_s": 512})
    )
    (work / "gpu.txt").write_text(
        "name, memory.total [MiB], driver_version\nNVIDIA H200, 143771 MiB, 580.159.03\n"
        "torch 2.11.0 timm 1.0.31 lightning 2.6.6\n"
    )
    tarball = tmp_path / "out" / "reproduction.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(work.iterdir()):
            archive.add(path, arcname=path.name)
    return tarball


def test_tarball_to_results_tables_and_figures(tmp_path):
    tarball = make_tarball(tmp_path, status="failed")
    docs = tmp_path / "docs"
    (docs / "figures").mkdir(parents=True)
    results = docs / "RESULTS.md"
    results.write_text(f"# Results\n\nbefore\n{MARKERS[0]}\nnot run yet\n{MARKERS[1]}\nafter\n")

    proc = run_cli(
        ["--reproduction", str(tarball), "--results", str(results), "--figures", str(docs / "figures")],
        module="ncfine.collect",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 reproduction runs (3 completed, 1 failed)" in proc.stdout
    text = results.read_text()
    assert text.startswith("# Results\n\nbefore\n") and text.endswith(f"{MARKERS[1]}\nafter\n")
    assert "not run yet" not in text
    assert "NVIDIA H200, 143771 MiB" in text and "2026-12-01" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    # Coarse runs first in the paper's order, the fine-label baseline last; a failed run says so.
    labels = [row.split(" | ")[0] for row in rows if "labels" in row.split(" | ")[0]]
    assert labels[:4] == [
        "| resnet18, 5 coarse labels",
        "| densenet121, 5 coarse labels",
        "| vgg16_bn, 5 coarse labels [failed: ]",
        "| resnet18, 10 fine labels (baseline)",
    ]
    resnet = next(row for row in rows if row.startswith("| resnet18, 5 coarse") and "0.8512" in row)
    assert "0.8512 / 0.5000 / -" in resnet and "0.8800" in resnet and "| 30 | 321 |" in resnet
    assert "Fine-label baseline (ResNet-18 trained on the 10 fine labels, test accuracy): 0.9000" in text
    # 85.1% against the paper's 93%: called out with the difference.
    assert "resnet18: per-superclass k-means 0.8512 against the paper's 0.93 (-7.9 points, more than 3 points" in text
    figure = docs / "figures" / "cifar10_densenet121_coarse_nc_curves.png"
    assert figure.read_bytes() == b"\x89PNG fake densenet121_coarse"
    assert "(figures/cifar10_densenet121_coarse_nc_curves.png)" in text
    assert (tarball.parent / "reproduction" / "reproduction.md").read_text() in text


def test_results_file_without_markers_is_a_one_line_error(tmp_path):
    tarball = make_tarball(tmp_path)
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    with pytest.raises(CollectError, match="needs the two lines"):
        reproduction(tarball, results=results)
    assert results.read_text() == "# Results\n"
    with pytest.raises(CollectError, match="does not exist"):
        reproduction(tmp_path / "missing.tar.gz")
