"""The docs cannot drift from the code: every command they show exists with the flags they give it.

Commands are read from the fenced code blocks and the inline code of README.md and docs/**/*.md:
``kk SUB ...``, ``python tools/X.py ...`` (also ``.venv/bin/python``, ``torchrun ... tools/X.py``),
``python -m kaggle_kit SUB``, ``python benchmarks/X.py`` / ``python docs/X.py`` (the file must exist) and
``make TARGET``. A subcommand must be in ``kaggle_kit.commands.COMMANDS``; each ``--flag`` must be one that
subcommand's own ``--help`` lists (the parser is asked, nothing is run); a make target must be in the Makefile.
The generated pages (docs/cli.md, docs/results/README.md) must equal what their scripts write today.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from kaggle_kit.commands import COMMANDS, TOOLS

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 120


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CLI_REF = _load(ROOT / "docs" / "make_cli_reference.py", "make_cli_reference")
TABLES = _load(ROOT / "docs" / "results" / "make_tables.py", "make_tables")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def code_segments(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every command-like piece of code: lines of fenced blocks (``\\`` continuations
    joined, ``#`` comments cut; a ```` ```text ```` block is a diagram or output and is skipped) and inline code
    spans outside them."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            skip = lines[i].strip() == "```text"  # a diagram or printed output, not commands
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith("```"):
                if skip:
                    i += 1
                    continue
                start, line = i + 1, lines[i]
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i]
                out.append((start, re.split(r"(?:^|\s)#", line, maxsplit=1)[0]))
                i += 1
        else:
            out += [(i + 1, m) for m in re.findall(r"`([^`\n]+)`", lines[i])]
        i += 1
    return out


_SUB = r"(?:(?<![\w./-])kk|python3?\s+-m\s+kaggle_kit)\s+(?P<sub>[^\s|;&)\]]+)"
_TOOL = r"(?<![\w-])tools/(?P<tool>[\w]+)\.py"
_FILE = r"python3?\s+(?P<file>(?:benchmarks|docs)/[\w/.-]+\.py)"
_MAKE = r"(?<![\w-])make\s+(?P<make>[a-z][\w-]*)"
_CMD = re.compile("|".join([_SUB, _TOOL, _FILE, _MAKE]))


def commands_in(segment: str) -> list[tuple[str, str, list[str]]]:
    """(kind, name, flags) of each command in one piece of code; a command's flags run up to the next command,
    ``;``, ``&&`` or a pipe followed by a space (``oof|test`` is an alternative, not a pipe)."""
    found = []
    for piece in re.split(r";|&&|\|\s", segment):
        ms = list(_CMD.finditer(piece))
        for k, m in enumerate(ms):
            end = ms[k + 1].start() if k + 1 < len(ms) else len(piece)
            flags = re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", piece[m.end():end])
            kind = next(g for g in ("sub", "tool", "file", "make") if m.group(g))
            found.append((kind, m.group(kind), flags))
    return found


_help_cache: dict[str | None, set[str]] = {}


def accepted(sub: str | None) -> set[str]:
    """The option strings of ``kk SUB --help`` (``kk --help`` for None)."""
    if sub not in _help_cache:
        opts = CLI_REF.options(CLI_REF.help_text(sub))
        _help_cache[sub] = opts | ({"-h", "--help", "-V", "--version"} if sub is None else set())
    return _help_cache[sub]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, flags=re.M))


def problems_in(text: str, where: str) -> list[str]:
    """Every command in ``text`` that names a subcommand, flag, file or make target that does not exist."""
    bad, targets = [], make_targets()
    for line, seg in code_segments(text):
        for kind, name, flags in commands_in(seg):
            at = f"{where}:{line}: `{seg.strip()}`"
            if kind == "make":
                if name not in targets:
                    bad.append(f"{at}: no make target {name!r}")
                continue
            if kind == "file":
                if not (ROOT / name).is_file():
                    bad.append(f"{at}: no file {name}")
                continue
            if kind == "tool":
                if name not in TOOLS:
                    bad.append(f"{at}: no tools/{name}.py shim (tools: {sorted(TOOLS)})")
                    continue
                sub = TOOLS[name]
            elif name.startswith("-"):
                sub, flags = None, [name, *flags]
            elif name.startswith("<") or name in ("COMMAND", "SUB"):
                continue  # a placeholder: kk <command> --help
            elif name not in COMMANDS:
                bad.append(f"{at}: no subcommand {name!r}")
                continue
            else:
                sub = name
            for f in flags:
                if f not in accepted(sub):
                    bad.append(f"{at}: kk {sub or ''} has no flag {f} (it has {sorted(accepted(sub))})")
    return bad


def test_docs_name_only_commands_and_flags_that_exist():
    bad = []
    n = 0
    for path in doc_files():
        if path.name == "cli.md" and path.parent.name == "docs":
            continue  # generated from --help itself
        text = path.read_text()
        n += sum(len(commands_in(s)) for _, s in code_segments(text))
        bad += problems_in(text, str(path.relative_to(ROOT)))
    assert n > 50, f"only {n} commands found in the docs: is the parser still reading them?"
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_wrong_flag_subcommand_target_and_shim():
    doc = "\n".join([
        "Run `kk train configs/seg25d/tiny_cpu.yaml --fold 0 --epochs 3` first.",
        "```bash",
        "kk prepare --data-root data \\",
        "    --cache cache --no-such-flag",
        "kk trian configs/x.yaml",
        "python tools/tune_oof.py s.yaml --cache c --out t.yaml && make demoo",
        "python tools/nope.py --x",
        "python benchmarks/bench_nothing.py",
        "```",
        "`kk cfg --list` and `kk predict CONFIG --split oof|test` and `make test` are fine.",
    ])
    bad = problems_in(doc, "doc")
    assert len(bad) == 6, "\n".join(bad)
    for needle in ("doc:1:", "--epochs", "doc:3:", "--no-such-flag", "'trian'", "'demoo'", "tools/nope.py",
                   "bench_nothing.py"):
        assert any(needle in b for b in bad), (needle, bad)
    assert not any("no flag --split " in b or "no flag --list " in b or "'test'" in b for b in bad)


def test_options_are_read_from_the_parser_not_from_prose():
    opts = accepted("train")
    assert {"--fold", "--resume", "-h", "--help"} <= opts
    assert "--split" not in opts  # predict's flag, not train's
    assert "--list" in accepted("cfg") and "--fold" not in accepted("cfg")


def test_readme_is_at_most_120_lines():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}); move detail into docs/"


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+\s+(.+?)\s*$", md.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_doc_links_resolve():
    for path in doc_files():
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", path.read_text()):
            if "://" in target:
                continue
            dest = path.parent / target if target else path
            assert dest.exists(), f"{path.relative_to(ROOT)} links to missing {target}"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest), f"{path.relative_to(ROOT)} links to {target}#{anchor}: no such heading"


def test_cli_reference_is_generated_from_help():
    assert (ROOT / "docs" / "cli.md").read_text() == CLI_REF.render(), (
        "docs/cli.md is out of date: run python docs/make_cli_reference.py")


def test_results_page_is_generated_from_the_json_files():
    assert (ROOT / "docs" / "results" / "README.md").read_text() == TABLES.render(), (
        "docs/results/README.md is out of date: run python docs/results/make_tables.py")


def test_results_rows_come_from_run_all_json(tmp_path):
    summary = {"oof": {"det_tiny_cpu": None, "seg25d_tiny_cpu_boxes": 0.8}, "test": 0.81, "held_out": 0.82,
               "held_out_plain_average_05": 0.79, "detector_box_recall": {"det_tiny_cpu": 0.99},
               "baselines": {"empty": 0.0, "intensity": 0.5}, "seconds": 900.0}
    assert TABLES.pick(summary, "oof[seg25d]") == 0.8
    assert TABLES.pick(summary, "baselines.intensity") == 0.5
    assert TABLES.pick(summary, "seconds/60") == 15.0
    assert TABLES.pick(summary, "no.such") is None


@pytest.mark.parametrize("name", ["demo", "folders"])
def test_result_tables_say_where_they_were_measured(name):
    import json

    t = json.loads((ROOT / "docs" / "results" / f"{name}.json").read_text())
    assert t["machine"] and t["date"] and t["version"]


def _config_files() -> list[Path]:
    return sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_header_is_why_plus_a_docs_link(path):
    """A config opens with at most three comment lines saying why, one naming an existing docs page; the
    evidence (measurements) lives in docs/results, not in the config."""
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert 1 <= len(header) <= 3, f"{path}: a header of 1-3 comment lines, not {len(header)}"
    links = re.findall(r"docs/[\w./-]+\.md", " ".join(header))
    assert links, f"{path}: the header names no docs page"
    for link in links:
        assert (ROOT / link).is_file(), f"{path}: header links to missing {link}"
    history = [ln for ln in lines if "#" in ln and re.search(r"\bsessions?\b|\bREADME, \"", ln.split("#", 1)[1])]
    assert not history, f"{path}: comments that tell history: {history}"


def test_architecture_page_names_every_stage_part():
    from tests.test_architecture import STAGES

    text = (ROOT / "docs" / "architecture.md").read_text()
    plan = text.split("stage  part of kaggle_kit/", 1)[1].split("```", 1)[0]
    col = " ".join(line[6:38] for line in plan.splitlines())  # the "part of kaggle_kit/" column only
    missing = [p for p in STAGES if p != "__init__" and not re.search(rf"(?<![\w.]){re.escape(p)}\b", col)]
    assert not missing, f"docs/architecture.md's stage plan lacks {missing} (tests/test_architecture.py STAGES)"


def test_results_add_appends_a_row_from_a_kk_run_log(tmp_path, monkeypatch):
    import json
    import shutil

    for p in (ROOT / "docs" / "results").glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    monkeypatch.setattr(TABLES, "HERE", tmp_path)
    monkeypatch.setattr(TABLES, "OUT", tmp_path / "README.md")
    line = {"oof": {"det_tiny_cpu": None, "seg25d_tiny_cpu_boxes": 0.84}, "test": 0.85, "held_out": 0.86,
            "held_out_plain_average_05": 0.83, "detector_box_recall": {"det_tiny_cpu": 0.995},
            "baselines": {"empty": 0.0, "intensity": 0.5}, "seconds": 912.0}
    (tmp_path / "run.log").write_text("[run_all] done\n" + json.dumps(line) + "\n")
    n = len(json.loads((tmp_path / "demo.json").read_text())["rows"])
    assert TABLES.main(["add", "demo", str(tmp_path / "run.log"), "--set", "seed=3"]) == 0
    row = json.loads((tmp_path / "demo.json").read_text())["rows"][-1]
    assert len(json.loads((tmp_path / "demo.json").read_text())["rows"]) == n + 1
    assert row == {"test": 0.85, "held_out": 0.86, "plain_held_out": 0.83, "oof_25d": 0.84, "box_recall": 0.995,
                   "intensity": 0.5, "wall_min": 15.2, "seed": 3}
    assert "| 3 | 15.2 | - |" in (tmp_path / "README.md").read_text()
    with pytest.raises(SystemExit, match="not a column"):
        TABLES.main(["add", "demo", str(tmp_path / "run.log"), "--set", "bogus=1"])
