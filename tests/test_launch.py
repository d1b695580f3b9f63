"""The repository URL lives in one place, ``_config.yml`` (``repository.url``, ``repository.branch``),
which the launch buttons read; every chapter's setup cell (which clones it on Colab), the student
editions, the README's Colab link and the intro's citation must name the same repository, and
``environment.yml`` (conda, Binder) must install the same packages as ``pyproject.toml``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
SLUG = URL.removeprefix("https://github.com/")
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb")) + sorted((ROOT / "student").glob("*.ipynb"))


def setup_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return next("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_the_config_names_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", URL), URL


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_setup_cell_fetches_the_configured_repository(path):
    cell = setup_cell(path)
    clones = re.findall(r"git clone -q --depth 1 (\S+) ", cell)
    assert clones == [URL], f"{path.name}: the setup cell must clone {URL} (found {clones})"
    assert re.findall(r"https://github\.com/\S+", cell) == [URL], "one repository URL per setup cell"
    assert "%pip install -q -e ." in cell


def test_readme_and_intro_name_the_configured_repository():
    readme = (ROOT / "README.md").read_text()
    colab = re.findall(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/", readme)
    assert colab and set(colab) == {(SLUG, BRANCH)}, colab
    github = set(re.findall(r"https://github\.com/(vaeas/[\w.-]+)", readme + (ROOT / "book/intro.md").read_text()))
    assert github <= {SLUG}, github


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_installs_what_pyproject_declares():
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("book", "dev"):
        # the platform-bound wheels (a marker after ";") are left out of the conda file
        wanted |= {_name(r) for r in project["optional-dependencies"][extra] if ";" not in r}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    listed = {_name(d) for d in env if isinstance(d, str)} | {
        _name(p) for d in env if isinstance(d, dict) for p in d["pip"] if not p.startswith("-e")}
    assert wanted <= listed, f"environment.yml lacks {sorted(wanted - listed)}"
