"""docker-compose.yml and the Dockerfile, checked without a Docker engine: what they say is consistent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def default_of(value: str) -> str:
    """The default of a ``${VAR:-default}`` interpolation, as compose resolves it with VAR unset."""
    match = re.fullmatch(r"\$\{[A-Z_]+:-(.*)\}", value, flags=re.DOTALL)
    return match.group(1) if match else value


def test_every_airflow_component_runs_the_provider_image() -> None:
    services = compose()["services"]
    for name, command in AIRFLOW_COMMANDS.items():
        service = services[name]
        assert service["command"] == command, name
        assert service["image"] == "airflow-provider-kling:local", name
        assert service["build"] == ".", name
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "triggerer" in services["airflow-triggerer"]["command"]


def test_shared_environment_is_consistent() -> None:
    services = compose()["services"]
    environments = [services[name]["environment"] for name in AIRFLOW_COMMANDS]
    assert all(environment == environments[0] for environment in environments)
    environment = environments[0]
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    assert "postgres" in services
    api_port = services["airflow-apiserver"]["ports"][0].split(":")[1]
    assert (
        environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        == f"http://airflow-apiserver:{api_port}/execution/"
    )
    assert default_of(environment["AIRFLOW__CORE__EXECUTOR"]) == "LocalExecutor"
    from airflow.sdk import Connection

    from airflow_kling.hooks.connection import ScenarioConnectionConfig

    uri = default_of(environment["AIRFLOW_CONN_SCENARIO_DEFAULT"])
    config = ScenarioConnectionConfig.from_connection(
        Connection.from_uri(uri, conn_id="scenario_default"), "x"
    )
    emulator = services["scenario-emulator"]["command"]
    assert config.base_url == f"http://scenario-emulator:{emulator[emulator.index('--port') + 1]}/v1"
    assert config.api_key == emulator[emulator.index("--api-key") + 1]
    assert config.api_secret == emulator[emulator.index("--api-secret") + 1]
    assert emulator[:3] == ["python", "-m", "airflow_kling.emulator"]


def test_celery_profile_brings_redis_and_workers() -> None:
    services = compose()["services"]
    assert services["redis"]["profiles"] == ["celery"]
    assert services["airflow-worker"]["profiles"] == ["celery"]
    assert services["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    broker = services["airflow-worker"]["environment"]["AIRFLOW__CELERY__BROKER_URL"]
    assert broker.startswith("redis://redis:")
    # as the distributed test runs it: two workers and two triggerers
    assert services["airflow-worker"]["deploy"]["replicas"] == 2
    assert services["airflow-triggerer"]["deploy"]["replicas"] == 2


def test_init_creates_the_pool_the_batch_dag_uses() -> None:
    init = compose()["services"]["airflow-init"]["command"][-1]
    assert "airflow db migrate" in init
    assert "pools set kling_lipsync" in init
    assert "--include-deferred" in init
    from tests.airflow_runs import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "kling_lipsync_batch.py"))
    pools = {task.pool for task in bag.dags["kling_lipsync_batch"].tasks if task.pool != "default_pool"}
    assert pools == {"kling_lipsync"}


def test_dockerfile_installs_the_provider_on_the_official_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:3\.\d+\.\d+", dockerfile, flags=re.MULTILINE)
    assert "FROM ${AIRFLOW_IMAGE}" in dockerfile
    assert 'pip install --no-cache-dir "/opt/airflow-provider-kling[s3]"' in dockerfile
    copied = {
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in [word for word in line.split()[1:] if not word.startswith("--")][:-1]
    }
    # What the build reads: the long description is made of README.md and CHANGELOG.md, the license shipped.
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "airflow_kling", "dags"} <= copied


def test_every_airflow_container_shares_the_locations_where_the_dags_write(monkeypatch: Any) -> None:
    import runpy

    services = compose()["services"]
    home = "/opt/airflow"  # AIRFLOW_HOME of the official image, which the compose file keeps
    assert all("AIRFLOW_HOME" not in services[name]["environment"] for name in AIRFLOW_COMMANDS)
    monkeypatch.setenv("AIRFLOW_HOME", home)
    dag_module = runpy.run_path(str(ROOT / "dags" / "kling_lipsync_batch.py"))
    written = {dag_module["_home_location"](folder) for folder in ("kling-work", "kling-archive")}
    declared = set(compose()["volumes"])
    for name in [*AIRFLOW_COMMANDS, "scenario-emulator"]:
        mounts = {
            target: source
            for source, target in (volume.split(":")[:2] for volume in services[name]["volumes"])
        }
        assert written <= set(mounts), name
        assert {mounts[path] for path in written} <= declared, name


def test_the_emulator_is_published_on_loopback_only() -> None:
    """Its admin API (faults, planned outcomes, the request log) has no auth: never on every interface."""
    assert compose()["services"]["scenario-emulator"]["ports"] == ["127.0.0.1:8089:8089"]
