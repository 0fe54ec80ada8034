"""TLS with a CA of the test's own (``trustme``), as behind a proxy that inspects TLS: the emulator serves https
with a certificate of that CA; without the CA's bundle every path fails at once saying what to set, and with it
named in the connection (``verify``) every path works, the deferrable one and the file URLs included; a client
certificate named in the connection (``cert``) is presented to a server that asks for one."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioConfigError, ScenarioTransportError
from airflow_kling.hooks.scenario import ScenarioHook
from tests.airflow_runs import dags_test
from tests.connections import use_connection
from tests.media_samples import poll_async, sample_video


@pytest.fixture(scope="module")
def ca() -> Any:
    import trustme

    return trustme.CA()


def tls_emulator(ca: Any, *, ask_client_certificate: bool = False) -> EmulatorServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if ask_client_certificate:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return EmulatorServer(tls=context)


@pytest.fixture
def https_emulator(ca: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    with tls_emulator(ca) as server:
        monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_DEFAULT", server.connection_uri())
        yield server


def test_a_private_ca_fails_at_once_and_says_what_to_set(https_emulator: EmulatorServer) -> None:
    assert https_emulator.base_url.startswith("https://127.0.0.1:")
    with pytest.raises(ScenarioTransportError) as sync_error:
        ScenarioHook().get_job("job_a")
    with pytest.raises(ScenarioTransportError) as async_error:
        poll_async("job_a")
    for error in (sync_error.value, async_error.value):
        message = str(error)
        assert "certificate verify failed: unable to get local issuer certificate" in message
        assert "extra field 'verify'" in message
        assert f"127.0.0.1:{https_emulator.port} (Airflow connection 'scenario_default')" in message
        assert "after" not in message  # not "failed after 5 attempts": at once, as no retry changes it
        assert error.__context__ is None  # no chain back to the TLS library
        assert error.__cause__ is None
    assert https_emulator.store.requests() == []  # no request got through the handshake


def test_the_ca_bundle_named_in_the_connection_serves_every_path(
    https_emulator: EmulatorServer,
    ca: Any,
    example_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = tmp_path / "company-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    use_connection(monkeypatch, https_emulator, verify=str(bundle))
    # requests prefers REQUESTS_CA_BUNDLE to a session's own setting: the connection's must win over it.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)
    destination = tmp_path / "archive"
    run = dags_test("kling_lipsync_pipeline", {"destination": str(destination)})
    assert set(run.states.values()) == {"success"}, run.output[-4000:]
    assert "Pausing task as DEFERRED" in run.output  # the wait ran in the trigger, through the async hook
    (job_id,) = https_emulator.store.jobs
    manifest = json.loads((destination / job_id / "manifest.json").read_text())
    archived = Path(manifest["files"][0]["uri"].removeprefix("file://"))
    assert archived.stat().st_size == manifest["files"][0]["size"] > 0
    seen = {entry["path"].split("/")[1] for entry in https_emulator.store.requests()}
    assert {"v1", "_uploads", "_files"} <= seen  # the API, the presigned parts and the signed file, over TLS


def test_a_client_certificate_named_in_the_connection_is_presented(
    ca: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, client = tmp_path / "ca.pem", tmp_path / "client.pem"
    ca.cert_pem.write_to_path(str(bundle))
    ca.issue_cert("airflow-worker@example.com").private_key_and_cert_chain_pem.write_to_path(str(client))
    with tls_emulator(ca, ask_client_certificate=True) as server:
        use_connection(monkeypatch, server, verify=str(bundle), max_retries=0)
        with pytest.raises(ScenarioTransportError):
            ScenarioHook().upload_asset(sample_video())
        assert server.store.requests() == []
        use_connection(monkeypatch, server, verify=str(bundle), cert=str(client))
        asset_id = ScenarioHook().upload_asset(sample_video())
        job_id = ScenarioHook().run_model("model_kling-lip-sync", {"videoUrl": asset_id, "text": "hi"})[
            "job"
        ]["jobId"]
        assert poll_async(job_id)["jobId"] == job_id
        assert len(server.store.paid_submissions()) == 1


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"verify": "/nonexistent/ca.pem"}, "'verify' must be true, false or the path of a CA bundle"),
        ({"verify": 3}, "'verify' must be true, false or the path of a CA bundle"),
        ({"cert": "/nonexistent/client.pem"}, "'cert' must be the path of a PEM file"),
        (
            {"cert": ["/etc/hostname", "/etc/hostname", "/etc/hostname"]},
            "'cert' must be the path of a PEM file",
        ),
        (
            {"proxies": {"ftp": "http://proxy:3128"}},
            "'proxies' must be a proxy URL, or an object of proxy URLs",
        ),
        ({"proxies": "socks5://user:hunter2@proxy:1080"}, "'proxies' must be http:// or https:// URLs"),
        ({"proxy": "proxy-without-scheme:3128"}, "'proxies' must be http:// or https:// URLs"),
    ],
)
def test_transport_extras_are_checked_before_any_request(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], named: str
) -> None:
    use_connection(monkeypatch, scenario_emulator, **extra)
    with pytest.raises(ScenarioConfigError, match="Connection 'scenario_default': extra field ") as error:
        ScenarioHook().get_job("job_a")
    assert named in str(error.value)
    assert "hunter2" not in str(error.value)  # a proxy's password is never repeated
    assert scenario_emulator.store.requests() == []
