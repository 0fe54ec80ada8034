"""What the README promises a user can import, imports; and Airflow knows every operator module."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_kling import get_provider_info

# On every line: the public imports, through the version module.
pytestmark = pytest.mark.every_line

README = Path(__file__).parent.parent / "README.md"
DOCS = sorted((Path(__file__).parent.parent / "docs").glob("*.md"))
PACKAGE = Path(__file__).parent.parent / "airflow_kling"


def snippets(*pages: Path) -> list[tuple[str, str]]:
    """Every Python snippet of the README and the docs (or of ``pages``): ``(page name, code)``."""
    return [
        (page.name, code)
        for page in pages or (README, *DOCS)
        for code in re.findall(r"^```python\n(.*?)^```", page.read_text(), re.DOTALL | re.MULTILINE)
    ]


def readme_snippets() -> list[str]:
    return [code for _, code in snippets(README)]


def readme_names() -> list[tuple[str, str]]:
    """Every ``from airflow_kling... import X`` of the README's and the docs' code, and every dotted
    ``airflow_kling.module.Name`` they mention in their text."""
    names: set[tuple[str, str]] = set()
    for _, snippet in snippets():
        for node in ast.walk(ast.parse(snippet)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_kling"):
                names.update((str(node.module), alias.name) for alias in node.names)
    for page in (README, *DOCS):
        for dotted in re.findall(r"`(airflow_kling(?:\.[a-z_]+)+\.[A-Z_][A-Za-z_]*)", page.read_text()):
            module, _, name = dotted.rpartition(".")
            names.add((module, name))
    return sorted(names)


@pytest.mark.parametrize(("page", "code"), snippets(), ids=lambda value: str(value)[:40])
def test_every_snippet_compiles_and_imports(page: str, code: str) -> None:
    """Each snippet is Python, and what it imports imports (the names, by the test below)."""
    tree = ast.parse(code, page)
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            exec(compile(ast.Module(body=[node], type_ignores=[]), page, "exec"), {})


@pytest.mark.parametrize(("module", "name"), readme_names())
def test_every_name_the_readme_shows_imports(module: str, name: str) -> None:
    value = getattr(importlib.import_module(module), name)
    assert not isinstance(value, type(sys)), f"{module}.{name} is a module, not what the README says"


def test_media_exports_its_functions_without_loading_pyav() -> None:
    code = (
        "import sys\n"
        "from airflow_kling.media import MediaInfo, check_audio, check_video, prepare_audio, prepare_video, probe\n"
        "assert callable(probe) and callable(prepare_video), (probe, prepare_video)\n"
        "print('av' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_provider_info_lists_every_operator_module() -> None:
    listed = {module for entry in get_provider_info()["operators"] for module in entry["python-modules"]}
    on_disk = {
        f"airflow_kling.operators.{path.stem}"
        for path in (PACKAGE / "operators").glob("*.py")
        if "Operator(" in path.read_text()
    }
    assert on_disk
    assert listed == on_disk


def test_the_readme_media_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_kling.media import probe
    from airflow_kling.media.samples import make_video

    (snippet,) = [code for _, code in snippets() if "from airflow_kling.media import" in code]
    make_video(tmp_path / "take.mov", width=640, height=360, seconds=6, fps=10)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})
    prepared = probe(tmp_path / "take.kling.mp4")
    assert prepared.duration == pytest.approx(3.0, abs=0.2)  # from 3.0 s to the end of the 6 s clip
    assert min(prepared.display_width, prepared.display_height) >= 720  # scaled up to fit
