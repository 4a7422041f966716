"""The docs site (mkdocs.yml) builds in strict mode, with no warnings, and its API reference
lists every public name: each name in ``__all__`` of each public package has its heading,
anchored ``<package>.<name>`` as mkdocstrings anchors it, on the package's reference page."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_public_api import PUBLIC_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = re.compile(r'\bid="([^"]+)"')


def build(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``out``."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The site built with ``mkdocs build --strict``, and what the build printed."""
    out = tmp_path_factory.mktemp("site")
    done = build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout + done.stderr


def page_of(package: str) -> str:
    return package.rpartition(".")[2]


def anchors(site: Path, package: str) -> set[str]:
    return set(ANCHOR.findall((site / "reference" / page_of(package) / "index.html").read_text()))


def test_the_site_builds_without_warnings(site: tuple[Path, str]) -> None:
    _, printed = site
    warnings = [line for line in printed.splitlines() if "WARNING" in line]
    assert warnings == []


def test_each_public_package_has_its_page_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    for package in PUBLIC_PACKAGES:
        page = f"reference/{page_of(package)}.md"
        assert f"- {package}: {page}" in config
        assert (ROOT / "docs" / page).read_text().startswith(f"::: {package}\n")


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_the_reference_lists_every_public_name(site: tuple[Path, str], package: str) -> None:
    built, _ = site
    names = importlib.import_module(package).__all__
    missing = [name for name in names if f"{package}.{name}" not in anchors(built, package)]
    assert missing == [], f"docs/reference/{page_of(package)}.md lacks {missing}"


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_the_reference_lists_nothing_else(site: tuple[Path, str], package: str) -> None:
    built, _ = site
    names = set(importlib.import_module(package).__all__)
    depth = package.count(".") + 1
    listed = {
        anchor.rpartition(".")[2]
        for anchor in anchors(built, package)
        if anchor.startswith(f"{package}.") and anchor.count(".") == depth
    }
    assert listed - names == set()


def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    """The strict build refuses what the reader would trip on: here a link to a heading that
    is not there (plain mkdocs only mentions it)."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    page = docs / "replay.md"
    page.write_text(page.read_text() + "\nSee [models](models.md#no-such-heading).\n")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    config["plugins"][1]["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT / "shared")]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "#no-such-heading" in done.stderr
