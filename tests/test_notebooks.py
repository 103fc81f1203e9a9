"""The notebooks in notebooks/: committed without outputs, and each runs top to bottom on CPU.

The tiny settings are injected papermill-style: a cell tagged `injected-parameters` after the cell
tagged `parameters`, so the committed defaults stay the meaningful (minutes-long) run. Each notebook
runs in a kernel of this interpreter, with its working directory, NCFINE_ROOT, NCFINE_LOG_DIR, the
Jupyter/IPython dirs and TMPDIR all inside the test's tmp dir.
"""

import base64
import json
import re
import sys
import time

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from conftest import FAST, REPO

NOTEBOOKS = REPO / "notebooks"
KERNEL_NAME = "ncfine-test-kernel"
CELL_TIMEOUT_S = 600

# The smoke grid cut to 4 resnet10t jobs (2 lr x 2 wd) of one epoch on 256 training images, at the
# demo's 16x16 (the grid's 32x32 is for VGG).
TINY_SWEEP = [
    "experiment=smoke_grid",
    "trainer.max_epochs=1",
    "++data.max_train_samples=256",
    "model.backbone=resnet10t",
    "data.source.image_size=16",
    "callbacks.plots.save_features=true",
]


def read(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebooks_are_committed_without_outputs():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {"01_quickstart.ipynb", "02_sweep_analysis.ipynb"} <= {p.name for p in paths}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for num, cell in enumerate(code_cells(nb)):
            assert cell.outputs == [], f"{path.name}: code cell {num} ({cell.get('id')}) has outputs"
            assert cell.execution_count is None, (
                f"{path.name}: code cell {num} ({cell.get('id')}) has an execution count"
            )


@pytest.mark.parametrize(
    "name, parameter", [("01_quickstart.ipynb", "RUN_DIR = None"), ("02_sweep_analysis.ipynb", "SWEEP_DIR = None")]
)
def test_the_first_code_cell_holds_the_parameters(name, parameter):
    first = code_cells(read(name))[0]
    assert first.metadata.get("tags") == ["parameters"]
    assert parameter in first.source


def inject(nb, **params):
    """papermill's way: a cell after the `parameters` cell that assigns the new values."""
    [index] = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    source = "\n".join(f"{key} = {value!r}" for key, value in params.items())
    cell = nbformat.v4.new_code_cell(source, id="injected-parameters")
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)
    return nb


@pytest.fixture
def kernel_env(tmp_path, log_dir, monkeypatch):
    """A kernelspec for this interpreter (not whatever `python3` resolves to), and every
    Jupyter/IPython/temp dir in tmp_path; returns the working directory for the notebooks."""
    jupyter = tmp_path / "jupyter"
    spec_dir = jupyter / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "ncfine tests",
                "language": "python",
            }
        )
    )
    for var, sub in (
        ("JUPYTER_PATH", "jupyter"),
        ("JUPYTER_DATA_DIR", "jupyter"),
        ("JUPYTER_CONFIG_DIR", "jupyter"),
        ("JUPYTER_RUNTIME_DIR", "jupyter/runtime"),
        ("IPYTHONDIR", "ipython"),
        ("TMPDIR", "tmp"),
    ):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("JUPYTER_PLATFORM_DIRS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    return work


def execute(nb, cwd):
    """Run every cell (raises CellExecutionError on the first failing one); returns the seconds taken."""
    started = time.monotonic()
    NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(cwd)}},
        allow_errors=False,
    ).execute()
    return time.monotonic() - started


def cell(nb, cell_id):
    [found] = [c for c in nb.cells if c.get("id") == cell_id]
    assert found.execution_count is not None, f"cell {cell_id} did not run"
    return found


def text_of(nb_cell):
    """All stream output of a cell."""
    return "".join(o.get("text", "") for o in nb_cell.outputs if o.output_type == "stream")


def html_tables(nb_cell):
    return [
        o.data["text/html"]
        for o in nb_cell.outputs
        if o.output_type in ("execute_result", "display_data") and "text/html" in o.get("data", {})
    ]


def pngs(nb_cell):
    """The decoded image/png outputs of a cell."""
    images = [
        base64.b64decode(o.data["image/png"])
        for o in nb_cell.outputs
        if o.output_type in ("execute_result", "display_data") and "image/png" in o.get("data", {})
    ]
    for image in images:
        assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 5000
    return images


def row_labels(html):
    """The row labels of a DataFrame's HTML (the first <th> of each body row)."""
    body = html.split("<tbody>", 1)[1]
    return re.findall(r"<tr>\s*<th[^>]*>([^<]*)</th>", body)


def header_cells(html):
    return re.findall(r"<th[^>]*>([^<]*)</th>", html.split("<tbody>", 1)[0])


def test_quickstart_trains_and_shows_the_metric_table_and_figures(kernel_env, tmp_path):
    run_dir = tmp_path / "run"
    nb = inject(read("01_quickstart.ipynb"), RUN_DIR=str(run_dir), MAX_EPOCHS=2, OVERRIDES=[*FAST, "logger=none"])
    seconds = execute(nb, kernel_env)
    print(f"01_quickstart.ipynb ran in {seconds:.1f} s")

    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs_completed"] == 2
    assert "completed: 2 epochs in" in text_of(cell(nb, "train"))
    assert "resnet10t" in text_of(cell(nb, "compose")) and str(run_dir) in text_of(cell(nb, "compose"))

    [table] = html_tables(cell(nb, "metrics-table"))
    columns = header_cells(table)
    for column in (
        "train/loss",
        "val/acc",
        "nc/train/nc1",
        "nc/test/nc1",
        "nc/train/fine/nc1",
        "nc/train/nc2_etf_error",
        "nc/train/nc3",
        "nc/train/nc4",
        "fine/test/kmeans_per_coarse_acc",
        "fine/test/kmeans_global_acc",
        "fine/probe_acc",
        "fine/knn_acc",
        "epoch",
    ):
        assert column in columns, (column, columns)
    assert row_labels(table) == ["0", "1"]  # one row per epoch, as in metrics.csv
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert f"{metrics['nc/train/nc1'].iloc[-1]:.4f}".rstrip("0") in table

    figures = cell(nb, "figures")
    assert len(pngs(figures)) == 3
    for name in ("nc_curves.png", "recovery_curves.png", "pca_test.png"):
        assert (run_dir / "plots" / name).stat().st_size > 5000
    # Nothing outside the tmp dir: the run wrote only into RUN_DIR, the kernel's cwd stays empty.
    assert list(kernel_env.iterdir()) == []


@pytest.mark.slow
def test_sweep_analysis_runs_a_sweep_then_reads_an_existing_one(kernel_env, log_dir, tmp_path):
    nb = inject(read("02_sweep_analysis.ipynb"), SWEEP_OVERRIDES=TINY_SWEEP, SWEEP_LOG_DIR=str(log_dir))
    seconds = execute(nb, kernel_env)
    print(f"02_sweep_analysis.ipynb (running the sweep) ran in {seconds:.1f} s")

    sweep = log_dir / "smoke_grid" / "multirun" / "smoke_grid"
    assert f"sweep dir: {sweep}" in text_of(cell(nb, "sweep"))
    assert "Launching 4 jobs" in text_of(cell(nb, "sweep"))
    jobs = sorted(p.parent for p in sweep.glob("*/results.json"))
    assert len(jobs) == 4
    assert all(json.loads((job / "results.json").read_text())["status"] == "completed" for job in jobs)

    [jobs_table] = html_tables(cell(nb, "jobs-table"))
    for column in (
        "backbone",
        "lr",
        "weight_decay",
        "seed",
        "status",
        "val/acc",
        "nc/train/nc1",
        "fine/test/kmeans_per_coarse_acc",
        "epochs",
    ):
        assert column in header_cells(jobs_table), column
    assert len(row_labels(jobs_table)) == 4 and jobs_table.count("completed") == 4
    assert "4 jobs: {'completed': 4}" in text_of(cell(nb, "jobs-table"))
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 4 and set(summary["backbone"]) == {"resnet10t"}
    assert set(summary["lr"]) == {0.05, 0.01} and set(summary["weight_decay"]) == {5e-4, 5e-5}

    [grid] = html_tables(cell(nb, "grid-table"))  # backbone x lr rows, wd columns
    assert [c for c in header_cells(grid) if c.startswith("wd=")] == ["wd=0.0005", "wd=5e-05"]
    assert grid.count("resnet10t") == 1 and row_labels(grid)[1:] == ["0.01"]  # 0.05 shares the row label cell
    means = summary.groupby(["lr", "weight_decay"])["fine/test/kmeans_per_coarse_acc"].mean()
    assert all(0 <= v <= 1 for v in means) and f"{means.iloc[0]:.4f}".rstrip("0") in grid

    # The default metrics the jobs logged (the smoke grid analyses the test split only: no fine/train/...).
    metrics = ("fine_test_kmeans_per_coarse_acc", "nc_train_nc1", "train_acc", "val_acc")
    heatmaps = [f"heatmap_{m}_resnet10t.png" for m in metrics]
    assert sorted(p.name for p in sweep.glob("heatmap_*.png")) == heatmaps
    assert len(pngs(cell(nb, "heatmaps"))) == 4
    assert len(pngs(cell(nb, "pca"))) == 1 and (sweep / "pca_best_run.png").exists()
    shown = text_of(cell(nb, "pca")).splitlines()[0]  # the job with the best recovery (first of equals)
    best = summary["fine/test/kmeans_per_coarse_acc"].max()
    assert summary.set_index("job").loc[shown, "fine/test/kmeans_per_coarse_acc"] == best

    # The same notebook on the sweep that now exists: no new sweep, the report goes to OUT_DIR.
    report = tmp_path / "report"
    again = inject(read("02_sweep_analysis.ipynb"), SWEEP_DIR=str(sweep), OUT_DIR=str(report))
    seconds = execute(again, kernel_env)
    print(f"02_sweep_analysis.ipynb (existing sweep) ran in {seconds:.1f} s")
    assert "Launching" not in text_of(cell(again, "sweep"))
    assert html_tables(cell(again, "jobs-table")) == [jobs_table]
    assert sorted(p.name for p in report.iterdir()) == sorted(
        ["summary.csv", "summary.md", "pca_best_run.png", *heatmaps]
    )
    assert sorted(p.parent for p in sweep.glob("*/results.json")) == jobs
    assert list(kernel_env.iterdir()) == []
