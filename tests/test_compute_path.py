"""The CPU fast path (#29): bf16-mixed + channels_last where the CPU has bf16 units, fp32 elsewhere.

The capability is simulated (torch's report replaced), so each case runs on any machine.
"""

import json
import logging
import shutil

import pytest
import torch

from conftest import FAST
from ncfine.api import analyze_run, compose, compose_analyze, train
from ncfine.models import CoarseClassifier
from ncfine.utils import compute_path
from ncfine.utils.compute_path import resolve_compute_path

AVX512_BF16 = {"avx512_bf16": True, "amx_bf16": False}
AMX_BF16 = {"avx512_bf16": True, "amx_bf16": True}
NO_BF16 = {"avx512_bf16": False, "amx_bf16": False}


@pytest.fixture
def cpu_reports(monkeypatch):
    """Set what torch reports about the CPU's bf16 units."""

    def report(capabilities):
        monkeypatch.setattr(compute_path, "_cpu_capabilities", lambda: dict(capabilities))

    return report


@pytest.mark.parametrize(
    "capabilities, line",
    [
        (AVX512_BF16, "cpu: bf16-mixed + channels_last (AVX512-BF16)"),
        (AMX_BF16, "cpu: bf16-mixed + channels_last (AMX-BF16)"),
    ],
)
def test_cpu_with_bf16_units_takes_the_fast_path(cpu_reports, capabilities, line):
    cpu_reports(capabilities)
    path = resolve_compute_path("cpu", "auto", "auto")
    assert (path.precision, path.channels_last) == ("bf16-mixed", True)
    assert path.describe() == line


def test_cpu_without_bf16_units_stays_in_float32(cpu_reports):
    cpu_reports(NO_BF16)
    path = resolve_compute_path("cpu", "auto", "auto")
    assert (path.precision, path.channels_last) == ("32-true", False)
    assert path.describe().startswith("cpu: 32-true (no bf16 units, ")


def test_explicit_settings_are_kept_and_said(cpu_reports):
    cpu_reports(AVX512_BF16)
    path = resolve_compute_path("cpu", "32-true", "auto")
    assert (path.precision, path.channels_last) == ("32-true", True)
    assert "trainer.precision=32-true as given" in path.reason
    path = resolve_compute_path("cpu", "auto", False)
    assert (path.precision, path.channels_last) == ("bf16-mixed", False)
    assert path.describe() == "cpu: bf16-mixed (AVX512-BF16; model.channels_last=false as given)"
    # Forcing bf16 on a CPU without the units is allowed (and said).
    cpu_reports(NO_BF16)
    assert resolve_compute_path("cpu", "bf16-mixed", "auto").precision == "bf16-mixed"


def test_auto_accelerator_lands_on_cuda_when_there_is_one(monkeypatch, cpu_reports):
    cpu_reports(NO_BF16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    path = resolve_compute_path("auto", "auto", "auto")
    assert path.describe() == "cuda: bf16-mixed + channels_last (CUDA bf16)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_compute_path("auto", "auto", "auto").device == "cpu"


def test_channels_last_weights_and_inputs(cpu_reports):
    model = CoarseClassifier("resnet10t", num_classes=5, img_size=16, channels_last=True)
    conv = model.backbone.conv1[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    conv.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    model.features(torch.randn(4, 3, 16, 16))
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()

    # auto: decided in setup from the device, by the same rule as the run's path.
    for capabilities, expected in ((AVX512_BF16, True), (NO_BF16, False)):
        cpu_reports(capabilities)
        model = CoarseClassifier("resnet10t", num_classes=5, img_size=16, channels_last="auto")
        model.setup("fit")
        weight = model.backbone.conv1[0].weight
        assert weight.is_contiguous(memory_format=torch.channels_last) is expected


def run_cfg(tmp_path, *overrides, epochs=1):
    return compose(
        [*FAST, f"trainer.max_epochs={epochs}", "logger=none", "data.batch_size=64", *overrides],
        run_dir=tmp_path / "run",
    )


@pytest.mark.parametrize(
    "capabilities, overrides, precision, channels_last",
    [
        pytest.param(AVX512_BF16, [], "bf16-mixed", True, id="bf16-units"),
        pytest.param(NO_BF16, [], "32-true", False, id="no-bf16-units"),
        pytest.param(AVX512_BF16, ["trainer.precision=32-true", "model.channels_last=false"], "32-true", False, id="explicit"),
    ],
)  # fmt: skip
def test_a_run_logs_and_records_its_path(
    tmp_path, cpu_reports, caplog, capabilities, overrides, precision, channels_last
):
    cpu_reports(capabilities)
    with caplog.at_level(logging.INFO, logger="ncfine.run.pipeline"):
        results = train(run_cfg(tmp_path, *overrides))
    assert results["status"] == "completed", results["error"]
    compute = results["compute"]
    assert (compute["device"], compute["precision"], compute["channels_last"]) == ("cpu", precision, channels_last)
    assert compute["path"] in caplog.text  # the one line at the start
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())["compute"]
    assert on_disk == compute
    # config.yaml records what ran, not "auto".
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert f"precision: {precision}" in config and f"channels_last: {str(channels_last).lower()}" in config


def test_a_checkpoint_of_the_fast_path_resumes(tmp_path):
    # Forced, so the bf16 + channels_last checkpoint is tested on any CPU.
    fast = ["trainer.precision=bf16-mixed", "model.channels_last=true"]
    first = train(run_cfg(tmp_path, *fast, epochs=1))
    assert first["status"] == "completed" and first["compute"]["precision"] == "bf16-mixed"
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert all(v.dtype == torch.float32 for v in ckpt["state_dict"].values() if v.is_floating_point())  # fp32 master
    longer = train(run_cfg(tmp_path, *fast, "skip_completed=false", epochs=2))
    assert longer["status"] == "completed" and longer["epochs_completed"] == 2
    assert longer["resumed_from"].endswith("last.ckpt")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]


def test_analyze_gives_the_fp32_paths_metrics_to_bf16_tolerance(tmp_path):
    """ncfine-analyze of a bf16 run extracts under bf16 autocast, as its training callbacks did (so it
    reproduces them exactly); the same weights through the float32 path agree within bf16 tolerance."""
    trained = train(run_cfg(tmp_path, "trainer.precision=bf16-mixed", "model.channels_last=true", epochs=2))
    assert trained["status"] == "completed", trained["error"]
    fp32_run = tmp_path / "run_fp32"
    shutil.copytree(tmp_path / "run", fp32_run)
    config = fp32_run / "config.yaml"
    config.write_text(config.read_text().replace("precision: bf16-mixed", "precision: 32-true"))

    def analyze(run, out):
        overrides = [f"run={run}", "device=cpu", "layers=[penultimate]"]
        results = analyze_run(compose_analyze(overrides, run_dir=tmp_path / out), overrides)
        assert results["status"] == "completed", results["error"]
        return results["metrics"]

    bf16, fp32 = analyze(tmp_path / "run", "an_bf16"), analyze(fp32_run, "an_fp32")
    for key in ("nc/train/nc1", "nc/test/nc1", "fine/test/kmeans_per_coarse_acc", "fine/probe_acc"):
        assert bf16[key] == trained["metrics"][key], key
    for key in ("nc/train/nc1", "nc/test/nc1", "nc/train/fine/nc1"):
        assert fp32[key] != bf16[key] and abs(fp32[key] - bf16[key]) <= 0.02 * abs(fp32[key]), key
    # 360 test images: one image is 0.28 points.
    for key in ("fine/test/kmeans_per_coarse_acc", "fine/probe_acc", "fine/knn_acc", "val/acc"):
        if key in fp32:
            assert abs(fp32[key] - bf16[key]) <= 0.02, key
