"""Every command README.md shows passes ``crossadapt validate`` with the same arguments.

Commands are taken from README's fenced code blocks and inline code: those that start with
``crossadapt`` and ``python ray_jobs/<job>.py`` (also after ``ray job submit ... --``), for the
commands that take a config. Commands with placeholders (``--config C``, ``distill.r=R``,
``tune_spaces/<name>.yaml``) are left out. A command naming paths that exist only on the cluster
(``/mnt/...``, ``s3://BUCKET``), or starting from an earlier run's results (``online``, an online
search), or from the real samples when they are absent, is checked with ``--no-paths``: names,
values, periods against what the generator writes, the search space; everything else is checked
against this checkout as a user would run it from the repository root.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from crossadapt import cli
from crossadapt.experiment.preflight import COMMANDS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
JOBS = {"prepare": "prepare", "train_teacher": "train", "transfer": "transfer", "online": "online", "tune": "tune"}
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|\.\.\.)$")


def _shell_lines(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip()]


def readme_commands(text: str) -> list[list[str]]:
    """``crossadapt`` argument lists (``[command, *args]``) of README's commands, in order."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    candidates = [line for block in blocks for line in _shell_lines(block)]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    candidates += re.findall(r"`(crossadapt [^`]+|python ray_jobs/[^`]+)`", prose)
    found = []
    for line in candidates:
        tokens = shlex.split(line, comments=True)
        if tokens[:1] == ["crossadapt"]:
            argv = tokens[1:]
        elif "python" in tokens and tokens.index("python") + 1 < len(tokens):
            script = tokens[tokens.index("python") + 1]
            match = re.fullmatch(r"ray_jobs/(\w+)\.py", script)
            if not match:
                continue
            argv = [JOBS[match.group(1)], *tokens[tokens.index("python") + 2:]]
        else:
            continue
        values = [t.split("=", 1)[1] if "=" in t else t for t in argv[1:]]
        if len(argv) < 2 or argv[0] not in COMMANDS or any(PLACEHOLDER.match(v) or "<" in v for v in values):
            continue  # a bare name (`crossadapt tune` in a table) names a command, it does not run one
        found.append(argv)
    return found


COMMAND_LINES = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_shows_the_commands_this_test_checks():
    """The parse finds the cluster block's two jobs and the results' reproduction commands."""
    shown = [" ".join(c) for c in COMMAND_LINES]
    assert any(c.startswith("transfer --config configs/demo.yaml") and "s3://BUCKET" in c for c in shown), shown
    assert any(c.startswith("online --config configs/demo.yaml") for c in shown), shown
    assert len(COMMAND_LINES) >= 4, shown


def _without_paths(argv: list[str]) -> bool:
    text = " ".join(argv)
    return ("/mnt/" in text or "://" in text or argv[0] == "online" or "tune_spaces/online" in text
            or ("_sample.yaml" in text and not SHARED_DATA.is_dir()))


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=[" ".join(c)[:80] for c in COMMAND_LINES])
def test_readme_command_passes_validate(argv, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # README's commands run from the repository root
    flags = ["--no-paths"] if _without_paths(argv) else []
    code = cli.main(["validate", *flags, "--", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith("out_dir: ")  # the resolved config, as YAML
