"""`ncfine-analyze` and `ncfine.analyze`: a run dir reproduces its run's final metrics, the run-dir
contract (results.json, report.md, depth curves) works with ncfine-collect / ncfine-plot, local
weights files, the fast offline-weights error, and one-line errors for bad inputs."""

import json
import shutil
import time

import pytest
import torch
import torch.nn as nn

from conftest import FAST, run_cli
from ncfine.api import analyze_run, compose, compose_analyze, train
from ncfine.utils.errors import ConfigError

# The penultimate keys both the training callbacks and the analysis write.
REPRODUCED = (
    "nc/train/nc1",
    "nc/test/nc1",
    "nc/train/nc3",
    "nc/test/nc4",
    "nc/train/fine/nc1",
    "fine/test/kmeans_per_coarse_acc",
    "fine/test/kmeans_global_nmi",
    "fine/probe_acc",
    "fine/knn_acc",
)
# Per-split caps below max_samples on train: `run=` must carry both over to reproduce the metrics.
MLP_RUN = FAST + [
    "data=synthetic",
    "model=mlp",
    "trainer.max_epochs=1",
    "logger=csv",
    "callbacks.neural_collapse.max_samples_per_split.train=150",
    "callbacks.fine_recovery.max_samples_per_split.train=150",
]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny completed ncfine run (synthetic data, MLP), trained in-process once per session.

    Named like a sweep cell ('=' and ','), as the run dirs users pass to `run=` are."""
    run_dir = tmp_path_factory.mktemp("analyze") / "optimizer.lr=0.05,optimizer.weight_decay=0.0005"
    results = train(compose(MLP_RUN, run_dir=run_dir))
    assert results["status"] == "completed", results["error"]
    return run_dir, results


def _analyze(overrides, out):
    return analyze_run(compose_analyze(overrides, run_dir=out), overrides)


def test_analysing_a_run_dir_reproduces_its_final_penultimate_metrics_exactly(trained_run, tmp_path):
    run_dir, trained = trained_run
    overrides = [f"run={run_dir}", "device=cpu"]
    results = _analyze(overrides, tmp_path / "analysis")
    assert results["status"] == "completed"
    for key in REPRODUCED:
        assert results["metrics"][key] == trained["metrics"][key], key
        assert results["metrics"][f"layer/penultimate/{key.split('/', 1)[1]}"] == trained["metrics"][key], key
    # The analysis settings came from the run (its max_samples and per-split caps, k-means restarts),
    # not analyze.yaml's.
    assert results["analysis"]["num_samples"] == {"train": 150, "test": 200}
    assert results["analysis"]["layers"] == ["net.3", "net.6", "net.9", "penultimate"]
    assert results["epochs_completed"] == 1 and results["config"]["backbone"] == "mlp"


def test_run_dir_contract_report_collect_and_plot(trained_run, tmp_path):
    from ncfine.collect import load_runs, summarize
    from ncfine.plot import compare_runs, render_run

    run_dir, _ = trained_run
    out = tmp_path / "sweep"
    a = _analyze([f"run={run_dir}", "device=cpu", "layers=[net.3,penultimate]", "analysis.kmeans_n_init=1"], out / "a")
    b = _analyze([f"run={run_dir}", "device=cpu", "pool=max", "analysis.kmeans_n_init=1"], out / "b")
    for results, path in ((a, out / "a"), (b, out / "b")):
        saved = json.loads((path / "results.json").read_text())
        assert saved["status"] == "completed" and saved["versions"]["torch"] and saved["metrics"] == results["metrics"]
        assert (path / "config.yaml").exists() and (path / "plots" / "depth_curves.png").stat().st_size > 0
        report = (path / "report.md").read_text()
        assert "| depth | layer |" in report and "`penultimate`" in report and "depth_curves.png" in report
    assert "`net.6`" not in (out / "a" / "report.md").read_text()
    table = summarize(load_runs(out))
    assert len(table) == 2 and (table["status"] == "completed").all()
    assert table["fine/test/kmeans_per_coarse_acc"].notna().all()
    assert tmp_path / "plots" / "depth_curves.png" in render_run(out / "a", tmp_path / "plots")
    assert compare_runs([str(out / "a"), str(out / "b")], str(tmp_path / "compare")).stat().st_size > 0
    from ncfine.plot import main as plot_main

    plot_main(["--compare", str(out / "a"), str(out / "b"), "--out", str(tmp_path / "cli")])
    assert (tmp_path / "cli" / "depth_curves.png").stat().st_size > 0


def test_cli_analyses_a_run_dir(trained_run, tmp_path):
    """The one end-to-end CLI check of the fast tier."""
    run_dir, trained = trained_run
    out = tmp_path / "cli"
    proc = run_cli(
        [f"run={run_dir}", "device=cpu", f"hydra.run.dir={out}", "layers=[net.6,penultimate]"],
        module="ncfine.posthoc.analyze_cli",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ncfine-analyze: completed" in proc.stdout and "report.md" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["nc/train/nc1"] == trained["metrics"]["nc/train/nc1"]


@pytest.mark.slow
def test_cli_multirun_over_sweep_cells_takes_their_dirs_as_printed(trained_run, tmp_path):
    """`-m run=A,B` where A and B are sweep-cell dirs ('=' and ',' in their names): one job each."""
    from ncfine.collect import load_runs, summarize

    run_dir, trained = trained_run
    other = tmp_path / "optimizer.lr=0.01,optimizer.weight_decay=0.0005"
    shutil.copytree(run_dir, other)
    proc = run_cli(
        ["-m", f"run={run_dir},{other}", "device=cpu", "layers=[penultimate]", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        module="ncfine.posthoc.analyze_cli",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = summarize(load_runs(tmp_path / "sweep"))
    assert len(table) == 2 and (table["status"] == "completed").all()
    assert (table["nc/train/nc1"] == trained["metrics"]["nc/train/nc1"]).all()


def test_python_api_on_any_module_with_loaders():
    import ncfine

    g = torch.Generator().manual_seed(0)
    fine = torch.arange(120) % 6
    coarse = fine // 2
    x = torch.randn(120, 8, generator=g) + 3 * nn.functional.one_hot(fine, 8).float()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    loaders = {"train": [(x[:80], coarse[:80], fine[:80])], "test": [(x[80:], coarse[80:], fine[80:])]}
    metrics = ncfine.analyze(model, loaders, layers=["input", "1", "3", "penultimate"], kmeans_n_init=2)
    assert [metrics[f"layer/{n}/depth"] for n in ("input", "1", "3", "penultimate")] == [0, 1, 2, 3]
    assert "nc/train/nc3" in metrics and "val/acc" in metrics  # the last Linear is the 3-class head
    # The input holds the fine classes: a probe reads them back far above chance (1/6).
    assert metrics["layer/input/probe_acc"] > 0.8


def test_weights_file_with_its_own_head(tmp_path):
    import timm

    from ncfine.posthoc.sources import build_model

    source = timm.create_model("resnet10t", num_classes=5)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "r.pth")
    loaded = build_model("resnet10t", str(tmp_path / "r.pth"), num_coarse=5, in_chans=3, img_size=32)
    assert isinstance(loaded.module.head, nn.Linear) and loaded.module.head.out_features == 5
    torch.testing.assert_close(loaded.module.head.weight, source.fc.weight)
    x = torch.randn(2, 3, 32, 32)
    source.eval(), loaded.module.eval()
    torch.testing.assert_close(loaded.module(x), source(x))


def test_weights_for_another_architecture_is_a_one_line_error(tmp_path):
    import timm

    from ncfine.posthoc.sources import build_model

    torch.save(timm.create_model("resnet10t", num_classes=5).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(
        ConfigError, match=r"weights '.*resnet\.pth' do not fit backbone 'vgg11': .*unexpected keys"
    ) as info:
        build_model("vgg11", str(tmp_path / "resnet.pth"), num_coarse=5, in_chans=3, img_size=32)
    assert "\n" not in str(info.value)


def test_bad_run_dir_and_unknown_layer_are_one_line_errors(trained_run, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"run dir '.*empty' has no config.yaml"):
        _analyze([f"run={tmp_path / 'empty'}"], tmp_path / "a")
    assert json.loads((tmp_path / "a" / "results.json").read_text())["status"] == "failed"
    run_dir, _ = trained_run
    with pytest.raises(ConfigError, match=r"unknown layer 'net.99' in MLPBackbone; closest: net.9"):
        _analyze([f"run={run_dir}", "layers=[net.99]"], tmp_path / "b")
    with pytest.raises(ConfigError, match=r"nothing to analyse: pass run=DIR"):
        _analyze([], tmp_path / "c")


def test_pretrained_weights_offline_fail_fast_with_one_line(monkeypatch, tmp_path):
    from ncfine.models.backbone import create_backbone

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cases = [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, "127.0.0.1 cannot be reached"),
    ]
    for env, why in cases:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        started = time.monotonic()
        with pytest.raises(ConfigError) as info:
            create_backbone("resnet18", False, pretrained=True)
        assert time.monotonic() - started < 10
        message = str(info.value)
        assert "\n" not in message and why in message
        assert "'resnet18'" in message and "timm/resnet18" in message and "weights=PATH" in message


@pytest.mark.slow
def test_cli_resnet_run_reproduced_and_bad_input_exit_code(log_dir, tmp_path):
    """A digits resnet10t run via the CLIs: analysis reproduces it; a bad layer exits 2 with one line."""
    run = run_cli(FAST + ["trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert run.returncode == 0, run.stderr[-2000:]
    trained = json.loads((tmp_path / "run" / "results.json").read_text())
    proc = run_cli(
        [f"run={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'an'}", "device=cpu"],
        module="ncfine.posthoc.analyze_cli",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "an" / "results.json").read_text())
    for key in REPRODUCED:
        assert results["metrics"][key] == trained["metrics"][key], key
    assert results["analysis"]["layers"] == ["act1", "layer1", "layer2", "layer3", "layer4", "penultimate"]
    bad = run_cli(
        [f"run={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'bad'}", "layers=[layer9]"],
        module="ncfine.posthoc.analyze_cli",
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("ncfine: error: unknown layer 'layer9'")


def test_pretrained_from_a_local_file_needs_no_network(tmp_path):
    """The way out the offline error names for training: timm's pretrained_cfg_overlay.file."""
    import timm

    from ncfine.models.backbone import create_backbone

    source = timm.create_model("resnet10t")
    torch.save(source.state_dict(), tmp_path / "r.pth")
    model, _ = create_backbone("resnet10t", pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "r.pth")})
    torch.testing.assert_close(model.conv1[0].weight, source.conv1[0].weight)
    with pytest.raises(
        ConfigError, match=r"pretrained weights file '.*nope.pth' for backbone 'resnet10t' does not exist"
    ):
        create_backbone("resnet10t", pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "nope.pth")})
