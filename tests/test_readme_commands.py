"""Every command README.md shows passes ``crossadapt validate`` with the same arguments.

Commands are taken from README's fenced code blocks and inline code: those that start with
``crossadapt`` and ``python ray_jobs/<job>.py`` (also after ``ray job submit ... --``), for the
commands that take a config. Commands with placeholders (``--config C``, ``distill.r=R``,
``tune_spaces/<name>.yaml``) are left out. A command naming paths that exist only on the cluster
(``/mnt/...``, ``s3://BUCKET``), or starting from an earlier run's results (``online``, an online
search), or from the real samples when they are absent, is checked with ``--no-paths``: names,
values, periods against what the generator writes, the search space; everything else is checked
against this checkout as a user would run it from the repository root. A command after
``ray job submit --working-dir .`` is checked as its driver runs: in a copy of the working dir (Ray's
job environment set, with the ``env_vars`` of its ``--runtime-env-json``), where an ``out_dir``,
``data.root`` or ``storage`` left relative would be written into the copy and is refused.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crossadapt import cli
from crossadapt.experiment.preflight import COMMANDS
from crossadapt.paths import RAY_JOB_ENV, SUBMIT_DIR_ENV

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
JOBS = {"prepare": "prepare", "train_teacher": "train", "transfer": "transfer", "online": "online", "tune": "tune"}
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|\.\.\.)$")


def _shell_lines(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip()]


def _changes_folder(block: str) -> bool:
    return any(re.search(r"(^|&&|;)\s*cd\s", line) for line in _shell_lines(block))


@dataclass(frozen=True)
class Command:
    """One README command: ``crossadapt`` arguments ``[command, *args]``; ``submitted``: after
    ``ray job submit --working-dir``, whose ``--runtime-env-json`` env_vars are ``env``."""

    argv: list[str]
    submitted: bool = False
    env: dict[str, str] = field(default_factory=dict)


def _submit_env(tokens: list[str]) -> tuple[bool, dict[str, str]]:
    """Whether ``tokens`` (up to ``--``) submit a job with a working dir, and the job's env_vars."""
    head = tokens[: tokens.index("--")] if "--" in tokens else tokens
    if head[:3] != ["ray", "job", "submit"]:
        return False, {}
    env: dict[str, str] = {}
    for i, t in enumerate(head):
        value = t.split("=", 1)[1] if t.startswith("--runtime-env-json=") else (
            head[i + 1] if t == "--runtime-env-json" and i + 1 < len(head) else None)
        if value is not None:
            env.update(json.loads(value).get("env_vars", {}))
    return any(t == "--working-dir" or t.startswith("--working-dir=") for t in head), env


def readme_commands(text: str) -> list[Command]:
    """README's ``crossadapt`` and ``ray_jobs`` commands, in order."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    # a block that changes folder runs elsewhere (the walk-through: tests/test_byo_walkthrough.py runs it)
    candidates = [line for block in blocks if not _changes_folder(block) for line in _shell_lines(block)]
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
        found.append(Command(argv, *_submit_env(tokens)))
    return found


COMMAND_LINES = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_shows_the_commands_this_test_checks():
    """The parse finds the cluster block's two jobs and the results' reproduction commands."""
    submitted = [" ".join(c.argv) for c in COMMAND_LINES if c.submitted]
    assert any(c.startswith("transfer --config configs/demo.yaml") and "s3://BUCKET" in c for c in submitted), submitted
    assert any(c.startswith("online --config configs/demo.yaml") for c in submitted), submitted
    assert len(COMMAND_LINES) >= 4, [c.argv for c in COMMAND_LINES]


def test_readme_walkthrough_is_the_script_the_walkthrough_test_runs():
    """The README's walk-through block (skipped above: it runs in a copy of examples/migrate) is
    docs/byo_walkthrough.sh's commands, which tests/test_byo_walkthrough.py runs as written."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if _changes_folder(b)]
    script = (REPO / "docs" / "byo_walkthrough.sh").read_text(encoding="utf-8")
    commands = [line for line in _shell_lines(script) if not line.startswith(("#", "set "))]
    assert _shell_lines(block)[1:] == commands


def _without_paths(argv: list[str]) -> bool:
    text = " ".join(argv)
    return ("/mnt/" in text or "://" in text or argv[0] == "online" or "tune_spaces/online" in text
            or ("_sample.yaml" in text and not SHARED_DATA.is_dir()))


def _as_submitted(command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of a submitted job's driver: Ray's job variable naming a working dir, the
    job's env_vars, and the current folder (the repository root here) taken for Ray's copy of it."""
    monkeypatch.delenv(SUBMIT_DIR_ENV, raising=False)
    monkeypatch.setenv(RAY_JOB_ENV, json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_readme.zip"}}))
    for key, value in command.env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("command", COMMAND_LINES, ids=[("submit " if c.submitted else "") + " ".join(c.argv)[:80]
                                                       for c in COMMAND_LINES])
def test_readme_command_passes_validate(command, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # README's commands run from the repository root
    monkeypatch.delenv(RAY_JOB_ENV, raising=False)
    if command.submitted:
        _as_submitted(command, monkeypatch)
    flags = ["--no-paths"] if _without_paths(command.argv) else []
    code = cli.main(["validate", *flags, "--", *command.argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith("out_dir: ")  # the resolved config, as YAML


def test_a_submitted_command_with_a_relative_out_dir_would_be_refused(monkeypatch, capsys):
    """What the check above relies on: the same README job without its absolute out_dir is refused
    under the submitted job's environment (so a README command that lost it fails the test)."""
    command = next(c for c in COMMAND_LINES if c.submitted and c.argv[0] == "transfer")
    argv, i = [], 0
    while i < len(command.argv):  # drop the `--set out_dir=...` pair
        if command.argv[i] == "--set" and command.argv[i + 1].startswith("out_dir="):
            i += 2
            continue
        argv.append(command.argv[i])
        i += 1
    assert len(argv) == len(command.argv) - 2
    monkeypatch.chdir(REPO)
    _as_submitted(command, monkeypatch)
    assert cli.main(["validate", "--no-paths", "--", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crossadapt: error: ") and "out_dir: " in err and "temporary copy" in err, err
