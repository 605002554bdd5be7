"""The notebook's settings: read once in its first code cell, in the forms a person types, under both
spellings (KK_<NAME> canonical, KAGGLE_KIT_<NAME> an alias); a bad value is the default with a warning in the
hidden run and an error naming the variable in the public run."""
import json

import pytest

from tests.conftest import ROOT

NB = ROOT / "submission" / "kaggle_kit_inference.ipynb"


def _settings_cell() -> str:
    cells = [c for c in json.loads(NB.read_text())["cells"] if c["cell_type"] == "code"]
    return "".join(cells[0]["source"])


@pytest.fixture
def hidden_root(synth_root):
    return synth_root  # test/ has images, sample_submission.csv rows: the hidden re-run


@pytest.fixture
def public_root(tmp_path):
    root = tmp_path / "public"
    (root / "test").mkdir(parents=True)
    (root / "sample_submission.csv").write_text("id,class,predicted\n")
    return root


def _run_cell(monkeypatch, capsys, root, **env) -> tuple[dict, str]:
    """Execute the settings cell with exactly ``env`` as the KK_/KAGGLE_KIT_ variables (plus KK_DATA);
    returns (the cell's globals, what it printed)."""
    import os

    for k in list(os.environ):
        if k.startswith("KK_") or (k.startswith("KAGGLE_KIT_") and k not in ("KAGGLE_KIT_HOME", "KAGGLE_KIT_NO_PROGRESS")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("KK_DATA", str(root))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ns: dict = {}
    exec(compile(_settings_cell(), "settings-cell", "exec"), ns)  # noqa: S102 - the notebook's own cell
    return ns, capsys.readouterr().out


@pytest.mark.parametrize("text, hours", [("8", 8.0), ("8h", 8.0), ("90m", 1.5), ("0.5", 0.5), (" 2 H ", 2.0),
                                         ("1h30m", 1.5), ("5400s", 1.5), ("1e-6", 1e-6)])
def test_time_budget_forms(monkeypatch, capsys, hidden_root, text, hours):
    ns, out = _run_cell(monkeypatch, capsys, hidden_root, KK_TIME_BUDGET_H=text)
    assert ns["TIME_BUDGET_H"] == pytest.approx(hours) and not ns["PUBLIC"]
    assert "WARNING setting" not in out


def test_alias_spelling_is_the_same_setting(monkeypatch, capsys, hidden_root, tmp_path):
    ns, out = _run_cell(monkeypatch, capsys, hidden_root, KAGGLE_KIT_TIME_BUDGET_H="90m",
                        KAGGLE_KIT_DEBUG_CASE_DAYS="5", KAGGLE_KIT_OUT=str(tmp_path / "s.csv"))
    assert ns["TIME_BUDGET_H"] == 1.5 and ns["DEBUG_CASE_DAYS"] == 5 and ns["OUT"] == str(tmp_path / "s.csv")
    assert ns["REPORT"] == str(tmp_path / "s_report.json") and "WARNING" not in out


@pytest.mark.parametrize("env, name", [
    ({"KK_TIME_BUDGET_H": "8x"}, "KK_TIME_BUDGET_H"),
    ({"KK_TIME_BUDGET_H": "-1"}, "KK_TIME_BUDGET_H"),
    ({"KK_TIME_BUDGET_H": "0"}, "KK_TIME_BUDGET_H"),
    ({"KAGGLE_KIT_TIME_BUDGET_H": "eight"}, "KAGGLE_KIT_TIME_BUDGET_H"),
    ({"KK_DEBUG_CASE_DAYS": "2.5"}, "KK_DEBUG_CASE_DAYS"),
    ({"KK_BUDGET_CHECK_AFTER": "two"}, "KK_BUDGET_CHECK_AFTER"),
    ({"KK_OUT": " "}, "KK_OUT"),
    ({"KK_TIME_BUDGET_H": "2h", "KAGGLE_KIT_TIME_BUDGET_H": "3h"}, "KAGGLE_KIT_TIME_BUDGET_H"),
])
def test_bad_value_hidden_default_with_warning_public_raises(monkeypatch, capsys, hidden_root, public_root, env, name):
    ns, out = _run_cell(monkeypatch, capsys, hidden_root, **env)
    warn = [line for line in out.splitlines() if line.startswith("WARNING setting") and name in line]
    assert len(warn) == 1, out
    defaults = {"TIME_BUDGET_H": 2.0 if env.get("KK_TIME_BUDGET_H") == "2h" else 8.0,
                "DEBUG_CASE_DAYS": 3, "BUDGET_CHECK_AFTER": 2, "OUT": "/kaggle/working/submission.csv"}
    assert {k: ns[k] for k in defaults} == defaults  # the default (the canonical KK_ value where both are set)
    with pytest.raises(ValueError, match=name):
        _run_cell(monkeypatch, capsys, public_root, **env)


def test_unknown_variable_is_named_with_its_likely_setting(monkeypatch, capsys, hidden_root, public_root):
    """A typo'd name is not silently ignored: a warning names it and the setting it resembles (in both runs:
    a name that is no setting cannot be checked, only pointed out)."""
    for root in (hidden_root, public_root):
        ns, out = _run_cell(monkeypatch, capsys, root, KK_TIME_BUDGET="6")
        assert "KK_TIME_BUDGET is not a setting" in out and "did you mean KK_TIME_BUDGET_H?" in out
        assert ns["TIME_BUDGET_H"] == 8.0


def test_first_cell_documents_the_canonical_spelling():
    md = "".join(json.loads(NB.read_text())["cells"][0]["source"])
    assert "canonical spelling is `KK_<NAME>`" in md and "KAGGLE_KIT_<NAME>" in md
    for name in ("KK_BUNDLE", "KK_DATA", "KK_OUT", "KK_DEBUG_CASE_DAYS", "KK_TIME_BUDGET_H", "KK_BUDGET_CHECK_AFTER"):
        assert f"`{name}`" in md
    # every setting the cell reads is in the table
    ns_names = {line.split('"')[1] for line in _settings_cell().splitlines() if line.strip().startswith('"KK_')}
    assert ns_names == {"KK_BUNDLE", "KK_DATA", "KK_OUT", "KK_DEBUG_CASE_DAYS", "KK_TIME_BUDGET_H",
                        "KK_BUDGET_CHECK_AFTER"}
