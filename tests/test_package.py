"""The package as a user installs it: the wheel built from this tree, installed in a fresh virtualenv with
only its runtime dependencies and the newest Airflow line's constraints (from uv's cache: no network), then
checked there as a platform team would: ``pip check``, ``airflow providers list``, the plugin, the example
DAGs parsed against the installed package, ``twine check`` of both distributions, and ``mypy --strict`` on a
user's module (the types are real: a wrong call is an error, not ``Any``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
NEWEST = "3.3"

USER_MODULE = """
from airflow.sdk import DAG

from airflow_kling.hooks.scenario import ScenarioHook
from airflow_kling.operators.kling_lipsync import KlingLipsyncOperator


def job_status(job_id: str) -> str:
    job: dict[str, object] = ScenarioHook("scenario_default").get_job(job_id)
    return str(job["status"])


with DAG("user_dag", schedule=None):
    KlingLipsyncOperator(task_id="lipsync", video_asset_id="asset_x", text="Hello", deferrable=True)
"""
WRONG_CALL = "\nScenarioHook().get_job(123)\n"


def uv() -> str:
    found = shutil.which("uv", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, "uv is installed with the development tools (make install)"
    return found


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """The built distributions' folder, the fresh virtualenv's python, and an environment for it."""
    work = tmp_path_factory.mktemp("package")
    dist = work / "dist"
    run(uv(), "build", "--offline", "--quiet", "--out-dir", dist, REPO, cwd=work)
    (wheel,) = dist.glob("*.whl")
    run(uv(), "venv", "--quiet", "--offline", "--python", sys.executable, work / "venv", cwd=work)
    python = work / "venv" / "bin" / "python"
    constraints = REPO / "constraints" / f"airflow-{NEWEST}.txt"
    run(
        uv(),
        "pip",
        "install",
        "--quiet",
        "--offline",
        "--python",
        python,
        "-c",
        constraints,
        wheel,
        "mypy",
        cwd=work,
    )
    home = work / "airflow-home"
    shutil.copytree(REPO / "dags", home / "dags")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV")) and key != "PATH"
    }
    env.update(
        PATH=f"{python.parent}{os.pathsep}/usr/bin:/bin",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
    )
    return dist, python, env


def test_the_wheel_installs_with_only_its_runtime_dependencies(
    installed: tuple[Path, Path, dict[str, str]],
) -> None:
    _, python, env = installed
    run(uv(), "pip", "check", "--python", python, cwd=python.parent)
    names = {
        line.split("==")[0].lower()
        for line in run(uv(), "pip", "freeze", "--python", python, cwd=python.parent).splitlines()
    }
    for development_tool in ("pytest", "ruff", "selenium", "moto", "scenario-sdk", "psycopg2-binary"):
        assert development_tool not in names  # no published extra pulled them in
    where = run(
        python, "-c", "import airflow_kling; print(airflow_kling.__file__)", cwd=python.parent, env=env
    )
    assert "site-packages" in where  # the installed package, not this tree


def test_airflow_sees_the_provider_its_plugin_and_the_example_dags(
    installed: tuple[Path, Path, dict[str, str]],
) -> None:
    _, python, env = installed
    airflow = python.parent / "airflow"
    run(airflow, "db", "migrate", cwd=python.parent, env=env)
    providers = json.loads(run(airflow, "providers", "list", "--output", "json", cwd=python.parent, env=env))
    ours = [item for item in providers if item["package_name"] == "airflow-provider-kling"]
    assert ours, providers
    from airflow_kling import __version__

    assert ours[0]["version"] == __version__
    plugins = json.loads(run(airflow, "plugins", "--output", "json", cwd=python.parent, env=env))
    assert any(plugin["name"] == "kling_lipsync_preview" for plugin in plugins), plugins
    parse = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag()\n"
        "print(sorted(bag.dag_ids), bag.import_errors)\n"
        "sys.exit(1 if bag.import_errors else 0)\n"
    )
    out = run(python, "-c", parse, cwd=python.parent, env=env)
    assert (
        "['kling_lipsync_batch', 'kling_lipsync_on_archive', 'kling_lipsync_on_publish', "
        "'kling_lipsync_pipeline', 'kling_lipsync_review'] {}" in out
    )


def test_a_users_module_type_checks_strictly_against_the_installed_package(
    installed: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    _, python, env = installed
    (tmp_path / "user_dag.py").write_text(USER_MODULE)
    run(python, "-m", "mypy", "--strict", "--no-incremental", "user_dag.py", cwd=tmp_path, env=env)
    (tmp_path / "user_dag.py").write_text(USER_MODULE + WRONG_CALL)
    wrong = subprocess.run(
        [str(python), "-m", "mypy", "--strict", "--no-incremental", "user_dag.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert wrong.returncode == 1, wrong.stdout
    assert 'Argument 1 to "get_job" of "ScenarioHook" has incompatible type "int"' in wrong.stdout


def archive_text(wheel: Path, suffix: str) -> str:
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        return archive.read(next(name for name in archive.namelist() if name.endswith(suffix))).decode()


def test_both_distributions_pass_twine_check_and_ship_the_license_and_changelog(
    installed: tuple[Path, Path, dict[str, str]],
) -> None:
    import tarfile
    import zipfile

    dist, _, _ = installed
    out = run(
        sys.executable,
        "-m",
        "twine",
        "check",
        "--strict",
        *sorted(dist.glob("airflow_provider_kling-*")),
        cwd=dist,
    )
    assert out.count("PASSED") == 2, out
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(name for name in names if name.endswith("/METADATA"))).decode()
    assert "airflow_kling/py.typed" in names
    entry_points = archive_text(wheel, "/entry_points.txt")
    assert "[apache_airflow_provider]" in entry_points
    assert "[airflow.plugins]" in entry_points
    assert (
        "pytest11" not in entry_points
    )  # the emulator's fixtures are opt-in: no tax on other pytest sessions
    assert any(name.endswith("licenses/LICENSE") for name in names)
    with tarfile.open(sdist) as archive:
        members = {
            Path(name).relative_to(Path(name).parts[0]).as_posix()
            for name in archive.getnames()
            if "/" in name
        }
    assert {"LICENSE", "CHANGELOG.md", "README.md", "dags/kling_lipsync_pipeline.py"} <= members
    assert not any(member.startswith(("tests/", "bench/")) for member in members)
    description = metadata.split("\n\n", 1)[1]
    assert "## Changelog" in description  # what changed, last
    for clone_only in ("make demo", "make test", "](docs/", "](bench/", "package-index:"):
        assert clone_only not in description, clone_only
    assert "Programming Language :: Python :: 3.11" in metadata
    assert "Typing :: Typed" in metadata


def test_make_demo_installs_what_a_user_installs(tmp_path: Path) -> None:
    """``make demo``'s virtualenv holds the package and its runtime dependencies, no test tool: its install
    command, as make would run it, is run (offline, from uv's cache) and ``import pytest`` fails there."""
    venv = tmp_path / "demo"
    planned = run("make", "-n", "--always-make", "demo", f"DEMO_VENV={venv}", cwd=REPO)
    (install,) = [line for line in planned.splitlines() if " pip install " in line and "uv pip" in line]
    assert " -e ." in install
    assert "--group" not in install
    assert "[" not in install.split(" -e ", 1)[1]
    run(uv(), "venv", "--quiet", "--offline", "--python", sys.executable, venv, cwd=tmp_path)
    offline = install.split("uv pip install ", 1)[1].replace(" --quiet", " --quiet --offline")
    run(uv(), "pip", "install", *offline.split(), cwd=REPO)
    python = venv / "bin" / "python"
    assert subprocess.run([python, "-c", "import pytest"], capture_output=True).returncode != 0
    run(
        python,
        "-c",
        "import airflow.sdk, av, aiohttp, airflow_kling.emulator, airflow_kling.operators.kling_lipsync",
        cwd=tmp_path,
    )
