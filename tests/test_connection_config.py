"""Reading a ``scenario`` connection: URL forms, extras, and the credential fallback."""

from __future__ import annotations

import base64
import json

import pytest
from airflow.sdk import Connection

from airflow_kling.exceptions import ScenarioConfigError, ScenarioCredentialsError
from airflow_kling.hooks.connection import DEFAULT_BASE_URL, ScenarioConnectionConfig

# On every line: the connection form and the http provider's hook differ by line.
pytestmark = pytest.mark.every_line


def config_of(**fields: object) -> ScenarioConnectionConfig:
    return ScenarioConnectionConfig.from_connection(
        Connection(conn_id="c", conn_type="scenario", **fields), "c"
    )


def test_empty_host_means_the_public_api() -> None:
    config = config_of(login="key", password="secret")
    assert config.base_url == DEFAULT_BASE_URL
    assert config.url("/jobs/job_1") == "https://api.cloud.scenario.com/v1/jobs/job_1"


def test_basic_authorization_is_key_colon_secret() -> None:
    config = config_of(login="key", password="s3cr3t:x")
    assert config.authorization == "Basic " + base64.b64encode(b"key:s3cr3t:x").decode()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"host": "http://127.0.0.1:8089/v1/"}, "http://127.0.0.1:8089/v1"),
        ({"host": "http://127.0.0.1/v1", "port": 8089}, "http://127.0.0.1:8089/v1"),
        ({"host": "api.cloud.scenario.com", "schema": "v1"}, "https://api.cloud.scenario.com/v1"),
        ({"host": "localhost", "port": 8089}, "http://localhost:8089/v1"),
        ({"host": "127.0.0.1", "port": 8089, "schema": "v1"}, "http://127.0.0.1:8089/v1"),
        # one rule: without /v1, with or without a scheme, the path is v1
        ({"host": "http://127.0.0.1:8089"}, "http://127.0.0.1:8089/v1"),
        ({"host": "http://127.0.0.1:8089/"}, "http://127.0.0.1:8089/v1"),
        ({"host": "127.0.0.1:8089"}, "http://127.0.0.1:8089/v1"),
        ({"host": "https://gateway.example/scenario/v1"}, "https://gateway.example/scenario/v1"),
        ({"host": "[::1]", "port": 8089}, "http://[::1]:8089/v1"),
    ],
)
def test_base_url_forms(fields: dict[str, object], expected: str) -> None:
    assert config_of(login="k", password="s", **fields).base_url == expected


def test_uri_form_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import BaseHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_SCENARIO_URI",
        "scenario://my-key:my%2Fsecret@127.0.0.1:8089/v1?project_id=proj_42&timeout=5",
    )
    conn = BaseHook.get_connection("scenario_uri")
    config = ScenarioConnectionConfig.from_connection(conn, "scenario_uri")
    assert (config.base_url, config.api_key, config.api_secret) == (
        "http://127.0.0.1:8089/v1",
        "my-key",
        "my/secret",
    )
    assert (config.project_id, config.timeout) == ("proj_42", 5.0)


def test_extras_are_read_and_coerced_from_form_strings() -> None:
    config = config_of(
        login="k",
        password="s",
        extra=json.dumps({"project_id": "proj_1", "timeout": "12.5", "max_retries": "7"}),
    )
    assert (config.project_id, config.timeout, config.max_retries) == ("proj_1", 12.5, 7)


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"timeout": "-1"}, "timeout"), ({"timeout": "soon"}, "timeout"), ({"max_retries": 99}, "max_retries")],
)
def test_bad_extras_name_the_field(extra: dict[str, object], field: str) -> None:
    with pytest.raises(ScenarioConfigError, match=field):
        config_of(login="k", password="s", extra=json.dumps(extra))


def test_environment_credentials_fill_a_connection_without_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", "env-key")
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", "env-secret")
    config = config_of(host="http://127.0.0.1:1/v1")
    assert (config.api_key, config.api_secret) == ("env-key", "env-secret")


def test_connection_credentials_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", "env-key")
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", "env-secret")
    assert config_of(login="conn-key", password="conn-secret").api_key == "conn-key"


def test_missing_credentials_say_where_to_set_them() -> None:
    with pytest.raises(ScenarioCredentialsError) as raised:
        config_of(host="http://127.0.0.1:1/v1")
    message = str(raised.value)
    assert "'c'" in message
    assert "SCENARIO_SDK_API_KEY" in message
    assert "AIRFLOW_CONN_C" in message


def test_the_secret_is_not_in_the_repr() -> None:
    config = config_of(login="key", password="very-secret-value")
    assert "very-secret-value" not in repr(config)


def test_a_job_link_stays_with_the_host_it_came_from() -> None:
    """Scenario's API links to Scenario's web app; any other host (the emulator) to its own origin, unless
    the ``web_url`` extra says otherwise."""
    assert config_of(login="k", password="s").job_web_url("job_1") == "https://app.scenario.com/jobs/job_1"
    emulator = config_of(login="k", password="s", host="http://127.0.0.1:8089")
    assert emulator.job_web_url("job_1") == "http://127.0.0.1:8089/jobs/job_1"
    chosen = config_of(
        login="k", password="s", host="127.0.0.1:8089", extra=json.dumps({"web_url": "https://x.test/"})
    )
    assert chosen.job_web_url("job_1") == "https://x.test/jobs/job_1"


@pytest.mark.parametrize(
    "host", ["http://127.0.0.1:{port}", "http://127.0.0.1:{port}/v1", "127.0.0.1:{port}"]
)
def test_every_form_reaches_the_api(
    host: str, scenario_emulator: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``airflow connections test`` runs, against the emulator, in each form of the same address."""
    from airflow_kling.emulator import EmulatorServer
    from airflow_kling.hooks.scenario import ScenarioHook

    assert isinstance(scenario_emulator, EmulatorServer)
    conn = json.loads(scenario_emulator.connection_uri())
    conn["host"] = host.format(port=scenario_emulator.port)
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_FORMS", json.dumps(conn))
    assert ScenarioHook("scenario_forms").test_connection()[0] is True


def test_a_connection_error_names_the_host_and_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from airflow_kling.exceptions import ScenarioTransportError
    from airflow_kling.hooks.scenario import ScenarioHook

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once the socket is closed
    conn = {"conn_type": "scenario", "host": f"127.0.0.1:{port}", "login": "k", "password": "s"}
    conn["extra"] = {"max_retries": 0}
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_CLOSED", json.dumps(conn))
    with pytest.raises(ScenarioTransportError) as raised:
        ScenarioHook("scenario_closed").get_job("job_1")
    assert f"to 127.0.0.1:{port} (Airflow connection 'scenario_closed') failed after 1 attempts" in str(
        raised.value
    )
