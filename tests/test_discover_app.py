"""`ncfine-discover` end to end (issue #35): a run dir in, discovery.json, report.md, results.json and
one montage per superclass out; one-line errors with nothing written for bad input; and an image
folder with only coarse classes trained by ncfine-train and discovered, fine metrics absent."""

import json

import numpy as np
import pytest

from conftest import FAST, run_cli
from ncfine.api import compose, compose_discover, discover_run, train
from ncfine.utils.errors import ConfigError

FAST_DISCOVERY = ["device=cpu", "kmeans_backend=torch", "kmeans_n_init=2", "max_k=4", "images_per_cluster=3"]


def _discover(overrides, out):
    return discover_run(compose_discover(overrides, run_dir=out), overrides)


def test_discovery_of_a_run_dir_writes_its_files(tiny_digits_run, tmp_path):
    out = tmp_path / "out"
    results = _discover([f"run={tiny_digits_run}", *FAST_DISCOVERY], out)
    assert results["status"] == "completed"
    discovery = json.loads((out / "discovery.json").read_text())
    assert discovery["split"] == "train" and discovery["layer"] == "penultimate" and discovery["fine_labels"]
    assert discovery["num_samples"] == 1437  # the digits' train split, every sample
    names = [item["name"] for item in discovery["superclasses"]]
    assert names == ["0+5", "1+6", "2+7", "3+8", "4+9"]  # the hierarchy's class names, not ids
    for item in discovery["superclasses"]:
        assert 1 <= item["k"] <= 4 and set(item["scores"]) == {"1", "2", "3", "4"}
        assert item["fine"]["true_k"] == 2 and item["fine"]["classes"] == item["name"].split("+")
        assert sum(c["size"] for c in item["clusters"]) == item["n"]
        for cluster in item["clusters"]:
            assert 0.0 <= cluster["accuracy"] <= 1.0 and cluster["loss"] >= 0.0
            assert sum(cluster["fine_counts"].values()) == cluster["size"]
            assert set(cluster["fine_counts"]) <= set(item["fine"]["classes"])
            assert 1 <= len(cluster["nearest_images"]) <= 3
        assert (out / item["figure"]).stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved == results and saved["metrics"]["discover/train/k_mean"] >= 1
    assert saved["metrics"]["discover/train/0/true_k"] == 2.0
    report = (out / "report.md").read_text()
    assert report.splitlines()[2].startswith("**") and "superclasses split into sub-clusters" in report
    assert "## 0+5: k = " in report and "(plots/discover_0+5.png)" in report
    assert (out / "config.yaml").exists()


def test_another_split_and_layer(tiny_digits_run, tmp_path):
    results = _discover([f"run={tiny_digits_run}", *FAST_DISCOVERY, "split=test", "layer=layer3"], tmp_path / "out")
    discovery = json.loads((tmp_path / "out" / "discovery.json").read_text())
    assert results["discovery"]["split"] == "test" and discovery["layer"] == "layer3"
    assert discovery["num_samples"] == 360 and discovery["feature_dim"] == 256


def test_the_cli_prints_the_verdict(tiny_digits_run, tmp_path):
    out = tmp_path / "cli"
    proc = run_cli(
        [f"run={tiny_digits_run}", *FAST_DISCOVERY, f"hydra.run.dir={out}"], module="ncfine.posthoc.discover_cli"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ncfine-discover: completed" in proc.stdout and "superclasses split into sub-clusters" in proc.stdout
    assert (out / "discovery.json").exists() and not (out / ".hydra").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("max_k=0", "max_k must be a positive integer (1 allows only 'nothing inside'), got 0"),
        ("max_k=100000", "max_k=100000 is larger than superclass 0's 287 samples; use max_k <= 287"),
        ("split=val", "unknown split 'val'; valid splits are ['train', 'test']"),
        ("layer=layer9", "unknown layer"),
        ("criterion=elbow", "unknown criterion 'elbow'; valid criteria are"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tiny_digits_run, tmp_path, override, message):
    out = tmp_path / "bad"
    out.mkdir()  # as Hydra makes it before the job runs
    with pytest.raises(ConfigError) as caught:
        _discover([f"run={tiny_digits_run}", *FAST_DISCOVERY, override], out)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists()


@pytest.mark.slow
def test_bad_input_on_the_command_line_exits_2(tiny_digits_run, tmp_path):
    out = tmp_path / "bad"
    proc = run_cli(
        [f"run={tiny_digits_run}", *FAST_DISCOVERY, "max_k=100000", f"hydra.run.dir={out}"],
        module="ncfine.posthoc.discover_cli",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert line == "ncfine: error: max_k=100000 is larger than superclass 0's 287 samples; use max_k <= 287"
    assert not out.exists()


def test_a_run_dir_without_checkpoint_is_one_line(tiny_digits_run, tmp_path):
    run_dir = tmp_path / "no_ckpt"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text((tiny_digits_run / "config.yaml").read_text())
    with pytest.raises(ConfigError, match=r"has no readable checkpoints/last.ckpt or previous.ckpt"):
        _discover([f"run={run_dir}", *FAST_DISCOVERY], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _coarse_only_folder(root):
    """root/{train,test}/<class>/*.png: two folder classes, each of two colours (its hidden sub-classes)."""
    from PIL import Image

    colours = {"bolts": [(220, 30, 30), (30, 30, 220)], "nuts": [(30, 200, 30), (230, 230, 230)]}
    for split, n in (("train", 12), ("test", 6)):
        for cls, pair in colours.items():
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.zeros((12, 12, 3), dtype=np.uint8) + np.array(pair[i % 2], dtype=np.uint8)
                pixels[i % 12, :, :] = 0  # not all identical
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_a_coarse_only_image_folder_trains_and_is_discovered(tmp_path, caplog):
    root = _coarse_only_folder(tmp_path / "folder")
    run_dir = tmp_path / "run"
    overrides = [
        "data=imagefolder_coarse",
        f"data.source.root={root}",
        "data.source.image_size=16",
        "data.batch_size=8",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "logger=none",
        "callbacks.plots=null",
        "callbacks.progress_bar.refresh_rate=0",
        "callbacks.fine_recovery.kmeans_n_init=2",
        "callbacks.baselines.kmeans_n_init=2",
    ]
    with caplog.at_level("INFO"):
        trained = train(compose(overrides, run_dir=run_dir))
    assert trained["status"] == "completed", trained["error"]
    # The fine-label metrics are skipped with one line, not computed against the folder classes.
    assert not any(key.startswith("fine/") or "/fine/" in key for key in trained["metrics"])
    assert "fine-label metrics skipped" in caplog.text
    assert "nc/train/nc1" in trained["metrics"] and "val/acc" in trained["metrics"]

    out = tmp_path / "out"
    results = _discover([f"run={run_dir}", *FAST_DISCOVERY], out)
    assert results["status"] == "completed"
    discovery = json.loads((out / "discovery.json").read_text())
    assert discovery["fine_labels"] is False
    assert [item["name"] for item in discovery["superclasses"]] == ["bolts", "nuts"]
    for item in discovery["superclasses"]:
        assert "fine" not in item and all("fine_counts" not in c for c in item["clusters"])
        assert item["n"] == 12
    assert not any("true_k" in key or "ari" in key for key in results["metrics"])
    report = (out / "report.md").read_text()
    assert "no fine labels in this data" in report and "composition" in report
    assert (out / "plots" / "discover_bolts.png").stat().st_size > 0


def test_feature_data_gets_the_numbers_and_a_note_instead_of_images(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*FAST, "data=synthetic", "model=mlp", "trainer.max_epochs=1", "logger=none", "callbacks.plots=null"]
    trained = train(compose(overrides, run_dir=run_dir))
    assert trained["status"] == "completed", trained["error"]
    out = tmp_path / "out"
    _discover([f"run={run_dir}", *FAST_DISCOVERY], out)
    discovery = json.loads((out / "discovery.json").read_text())
    assert discovery["images"] is False and discovery["fine_labels"] is True
    assert all(c["nearest_images"] for item in discovery["superclasses"] for c in item["clusters"])
    assert "this data has no images (feature vectors)" in (out / "report.md").read_text()
    assert all((out / item["figure"]).stat().st_size > 0 for item in discovery["superclasses"])
