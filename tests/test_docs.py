"""The documentation: the README stays a front door, and the site builds in strict mode (``make docs``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    return subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_readme_is_a_front_door() -> None:
    readme = (REPO / "README.md").read_text().splitlines()
    assert len(readme) <= 250
    headings = [line for line in readme if line.startswith("## ")]
    for section in ("## Install", "## The connection", "## A DAG", "## Kling's limits", "## Where next"):
        assert any(heading.startswith(section) for heading in headings), section


def test_the_site_builds_in_strict_mode_and_a_broken_link_fails_it(tmp_path: Path) -> None:
    built = build(REPO, tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert "ScenarioGenerateOperator" in reference  # the API reference, from the docstrings
    assert "wait_for_job" in reference
    pipeline = (tmp_path / "site" / "pipeline" / "index.html").read_text()
    assert "kling_lipsync_batch" in pipeline  # the example DAGs, included from dags/

    copy = tmp_path / "copy"
    copy.mkdir()
    for part in ("mkdocs.yml", "docs", "dags", "airflow_kling"):
        source = REPO / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / part)
    (copy / "docs" / "index.md").write_text(
        (copy / "docs" / "index.md").read_text() + "\n[gone](no-such-page.md)\n"
    )
    broken = build(copy, tmp_path / "broken")
    assert broken.returncode != 0
    assert "no-such-page.md" in broken.stdout + broken.stderr
