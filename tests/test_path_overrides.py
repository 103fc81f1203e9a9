"""Run-dir paths with '=' and ',' (ncfine's own sweep-cell names) pass through Hydra's override grammar."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from ncfine.utils.path_overrides import quote_path_overrides

CELL_A = "optimizer.lr=0.1,optimizer.weight_decay=0.0005"
CELL_B = "optimizer.lr=0.01,optimizer.weight_decay=0.0005"


@pytest.fixture
def sweep(tmp_path):
    for name in (CELL_A, CELL_B, "plain"):
        (tmp_path / name).mkdir()
    return tmp_path


def _parsed(argv):
    """What Hydra makes of argv's overrides: key -> the value, or the values a sweep's jobs get
    (Hydra's basic sweeper hands each job `key=<one sweep string>`, parsed again)."""
    parser = OverridesParser.create()
    parsed = {}
    for o in parser.parse_overrides([a for a in argv if not a.startswith("-")]):
        if o.is_sweep_override():
            jobs = [parser.parse_override(f"{o.key_or_group}={item}") for item in o.sweep_string_iterator()]
            parsed[o.key_or_group] = [job.value() for job in jobs]
        else:
            parsed[o.key_or_group] = o.value()
    return parsed


def test_a_run_dir_named_by_its_overrides_becomes_one_string(sweep):
    path, missing = str(sweep / CELL_A), str(sweep / CELL_B / "w.pth")
    argv = quote_path_overrides([f"run={path}", "device=cpu", f"+weights={missing}"], keys=("run", "weights"))
    # One path per key outside a multirun, existing or not: a missing one meets ncfine's own error.
    assert _parsed(argv) == {"run": path, "device": "cpu", "weights": missing}


def test_a_multirun_comma_list_of_such_dirs_becomes_a_sweep_over_them(sweep):
    a, b, plain = (str(sweep / n) for n in (CELL_A, CELL_B, "plain"))
    argv = quote_path_overrides(["-m", f"run={a},{plain},{b}"], keys=("run",))
    assert _parsed(argv)["run"] == [a, plain, b]
    # Without -m the list is taken as one (missing) path.
    assert _parsed(quote_path_overrides([f"run={a},{b}"], keys=("run",))) == {"run": f"{a},{b}"}


@pytest.mark.parametrize("value", ["'{a}'", "[{a}]", "{a},missing", "${{oc.env:HOME}}", "{plain}"])
def test_multirun_quoted_grammar_missing_and_plain_values_are_left_as_given(sweep, value):
    value = value.format(a=sweep / CELL_A, plain=sweep / "plain")
    assert quote_path_overrides(["-m", f"run={value}", f"other={sweep / CELL_A}"], keys=("run",)) == [
        "-m",
        f"run={value}",
        f"other={sweep / CELL_A}",
    ]
