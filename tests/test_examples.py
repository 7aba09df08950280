"""Every example runs: each script in examples/ as a subprocess from that folder (with short
step counts: these check that the examples work, not how well the remedies do), and the
shell commands of examples/ci/README.md exactly as written, with the exit codes it states."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 300  # seconds; each takes well under a minute on 2 shared cores

# script -> (arguments, lines its output must hold, in this order)
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    "quickstart.py": (
        ["--steps", "20", "--retrain-steps", "10"],
        ["labels at P2: ", "trained P2, hard, bce, bias zero for 20 steps: F1@0.5 ",
         "verdict: error: ", "top finding: ", "top remedy: ", "before  unchanged  remedy",
         "best_f1 ", "best F1 after 10 more steps: unchanged recipe "],
    ),
    "custom_model.py": (
        ["--steps", "20", "--retrain-steps", "10"],
        ["trained TinyNet for 20 steps in a plain loop -> tinynet.pt",
         "loaded a state_dict through custom_model:factory and custom_model:adapter; head "
         "parameters found by name: {'cls': 17, 'reg': 34}",
         "verdict: ", "top finding: ", "top remedy: ", "before: best F1 ",
         "baseline: best F1 ", "remedy: best F1 "],
    ),
    "monitor_loop.py": (
        ["--steps", "30", "--every", "10"],
        ["== hard: 30 steps", "last check (step ", "findings: ", "== focal: 30 steps",
         "last check (step ", "findings: "],
    ),
}  # fmt: skip


def _env() -> dict[str, str]:
    # no __pycache__ left in examples/ by the scripts importing themselves as factories
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONDONTWRITEBYTECODE": "1"}


def _in_order(text: str, lines: list[str]) -> None:
    """Each expected piece occurs, after the previous one."""
    at = 0
    for piece in lines:
        found = text.find(piece, at)
        assert found >= 0, f"{piece!r} not found after position {at} in:\n{text}"
        at = found + len(piece)


def test_every_script_is_run() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(SCRIPTS)
    assert (EXAMPLES / "README.md").is_file()
    readme = (EXAMPLES / "README.md").read_text()
    for name in [*SCRIPTS, "ci/"]:
        assert name in readme, f"examples/README.md does not mention {name}"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_script_runs(script: str) -> None:
    args, expected = SCRIPTS[script]
    res = subprocess.run(
        [sys.executable, script, *args],
        cwd=EXAMPLES, env=_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    _in_order(res.stdout, expected)


def _readme_commands(readme: Path) -> list[tuple[list[str], int, list[str]]]:
    """(argv, exit code, words the output must hold) per line of the README's bash block;
    a trailing ``# exit N: words`` comment states a non-zero exit and what it reports."""
    block = re.search(r"```bash\n(.*?)```", readme.read_text(), re.S)
    assert block, f"{readme}: no bash block"
    commands = []
    for line in block.group(1).splitlines():
        cmd, _, comment = line.partition("#")
        if not cmd.strip():
            continue
        m = re.match(r"\s*exit (\d+):?(.*)", comment)
        code, words = (int(m.group(1)), m.group(2).split()) if m else (0, [])
        commands.append((shlex.split(cmd), code, words))
    return commands


@pytest.mark.slow
def test_ci_example_readme_commands(tmp_path: Path) -> None:
    work = tmp_path / "ci"
    shutil.copytree(EXAMPLES / "ci", work)  # the commands write data/, runs/ and junit.xml
    commands = _readme_commands(work / "README.md")
    assert [c[0][:2] for c in commands] == [
        ["convdiag", "synth"], ["convdiag", "train"], ["convdiag", "check"],
    ]  # fmt: skip
    for argv, code, words in commands:
        res = subprocess.run(
            [sys.executable, "-m", "convdiag", *argv[1:]],
            cwd=work, env=_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert res.returncode == code, f"{shlex.join(argv)}:\n{res.stdout}{res.stderr}"
        assert "Traceback" not in res.stderr
        for word in words:
            assert word in res.stdout, f"{shlex.join(argv)}: {word!r} not in\n{res.stdout}"
    junit = (work / "junit.xml").read_text()
    assert "background-collapse" in junit and "<failure" in junit
