"""An API that lies: answers of the wrong types, pages that never end, a team limit of a million. Each is met
with a clear error naming the field, or a bound, against the emulator answering what a broken or hostile API
would."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_kling.api.contract import MAX_TEAM_LIMIT, team_limit
from airflow_kling.emulator import EmulatorServer
from airflow_kling.exceptions import ScenarioError, ScenarioResponseError
from airflow_kling.hooks.scenario import ScenarioHook

JOB = "job_lying"


def job_answer(**fields: Any) -> dict[str, Any]:
    return {"job": {"jobId": JOB, "status": "in-progress", "progress": 0.5, "metadata": {}, **fields}}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "success", "metadata": {"assetIds": "asset_abc"}}, "metadata.assetIds"),
        ({"metadata": []}, "metadata"),
        ({"progress": "50%"}, "progress"),
        ({"progress": True}, "progress"),
        ({"progress": float("nan")}, "progress"),  # Python's json reads NaN and Infinity
        ({"progress": float("inf")}, "progress"),
        ({"metadata": {"assetIds": ["../../etc/passwd"]}}, "metadata.assetIds item"),
        ({"status": 3}, "status"),
    ],
)
def test_a_job_of_the_wrong_types_is_an_error_naming_the_field(
    scenario_emulator: EmulatorServer, fields: dict[str, Any], field: str
) -> None:
    scenario_emulator.add_fault(f"^/v1/jobs/{JOB}$", status=200, body=job_answer(**fields))
    with pytest.raises(ScenarioResponseError, match=field.replace(".", r"\.")):
        ScenarioHook().get_job(JOB)


@pytest.mark.parametrize(
    ("sent", "read"),
    [(1.7, 1.0), (-0.2, 0.0), (None, 0.0), (1, 1.0), (0.25, 0.25), (10**400, 1.0), (-(10**400), 0.0)],
    ids=["above", "below", "absent", "int", "within", "huge int", "huge negative int"],  # not 400 digits
)
def test_a_jobs_progress_is_read_as_a_number_from_0_to_1(
    scenario_emulator: EmulatorServer, sent: Any, read: float
) -> None:
    scenario_emulator.add_fault(f"^/v1/jobs/{JOB}$", status=200, body=job_answer(progress=sent))
    progress = ScenarioHook().get_job(JOB)["progress"]
    assert progress == read
    assert type(progress) is float


@pytest.mark.parametrize(
    "sent",
    [10**400, "30", float("nan"), float("inf"), True],
    ids=["huge int", "text", "NaN", "Infinity", "boolean"],
)
def test_a_cost_that_is_not_a_finite_number_is_no_figure(
    scenario_emulator: EmulatorServer, sent: Any
) -> None:
    """The contract's costs are numbers: ``float(10**400)`` raised OverflowError, ``"30"`` was read as 30."""
    from airflow_kling.jobs.status import job_cost

    hook = ScenarioHook()
    scenario_emulator.add_fault("^/v1/generate/", method="POST", status=200, body={"creativeUnitsCost": sent})
    assert hook.estimate_cost("model_kling-lip-sync", {"videoUrl": "asset_abc", "text": "hi"}) is None
    scenario_emulator.add_fault(f"^/v1/jobs/{JOB}$", status=200, body=job_answer(billing={"cuCost": sent}))
    assert job_cost(hook.get_job(JOB)) is None
    scenario_emulator.add_fault(f"^/v1/jobs/{JOB}$", status=200, body=job_answer(billing={"cuCost": 30}))
    assert job_cost(hook.get_job(JOB)) == 30.0


@pytest.mark.parametrize("held", [None, "job_lying", ["job_lying"]])
def test_an_answer_without_its_object_is_an_error_naming_the_key_from_both_hooks(
    scenario_emulator: EmulatorServer, held: Any
) -> None:
    """``{"job": "job_lying"}`` was a ValueError (``dict("job_lying")``), a missing key a KeyError."""
    from airflow_kling.hooks.scenario_async import ScenarioAsyncHook, close_shared_session

    body = {} if held is None else {"job": held}
    scenario_emulator.add_fault(f"^/v1/jobs/{JOB}$", status=200, body=body, times=2)
    with pytest.raises(ScenarioResponseError, match=r"GET /jobs/\{id\} answered 'job' that is not an object"):
        ScenarioHook().get_job(JOB)

    async def get_job() -> dict[str, Any]:
        try:
            return await ScenarioAsyncHook().get_job(JOB)
        finally:
            await close_shared_session()

    with pytest.raises(ScenarioResponseError, match=f"'job' that is not an object: {type(held).__name__}"):
        asyncio.run(get_job())


def test_the_job_trigger_ends_with_an_error_event_naming_the_field(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It crashed with a ValueError on ``progress: "50%"``; now its one event says what was wrong."""
    from airflow_kling.hooks.scenario_async import close_shared_session
    from airflow_kling.triggers.job import ScenarioJobTrigger

    scenario_emulator.add_fault(f"^/v1/jobs/{JOB}$", status=200, body=job_answer(progress="50%"), times=10)

    async def first_event() -> dict[str, Any]:
        try:
            trigger = ScenarioJobTrigger(JOB, poll_interval=0.1)
            return dict((await asyncio.wait_for(anext(aiter(trigger.run())), 30)).payload)
        finally:
            await close_shared_session()

    event = asyncio.run(first_event())
    assert event["status"] == "error"
    assert "progress of another type than a number from 0 to 1" in event["message"]


def test_a_repeated_page_token_stops_the_listing(scenario_emulator: EmulatorServer) -> None:
    scenario_emulator.add_fault(
        "^/v1/jobs$", status=200, body={"jobs": [], "nextPaginationToken": "same"}, times=1000
    )
    with pytest.raises(ScenarioResponseError, match="nextPaginationToken it had already given"):
        list(ScenarioHook().list_jobs())
    assert len(scenario_emulator.store.requests("^/v1/jobs$")) == 2  # bounded: the token was seen again


def test_a_listing_stops_at_its_page_cap(
    scenario_emulator: EmulatorServer, inputs: dict[str, object]
) -> None:
    hook = ScenarioHook()
    for text in ("one", "two", "three", "four"):
        hook.run_model("model_kling-lip-sync", {**inputs, "text": text})
    assert len(list(hook.list_jobs(page_size=1, max_pages=4))) == 4  # the last page carries no token
    with pytest.raises(ScenarioResponseError, match="after 3 pages"):
        list(hook.list_jobs(page_size=1, max_pages=3))


def test_a_team_limit_of_a_million_is_read_as_one_page_of_jobs() -> None:
    body = '{"details": {"actionName": "parallel-custom-jobs", "actionLimit": 1000000}}'
    assert team_limit(body) == MAX_TEAM_LIMIT
    assert team_limit('{"details": {"actionLimit": true}}') is None


def test_a_look_wakes_a_bounded_number_of_waiters() -> None:
    from airflow_kling.triggers.slot import WAKES_PER_LOOK, SlotBoard

    board = SlotBoard(clock=lambda: 1000.0)

    async def look() -> list[asyncio.Future[None]]:
        waiters = [board.join("team", since=float(n)) for n in range(200)]

        async def no_jobs() -> list[dict[str, Any]]:
            return []

        board.look_if_due("team", 1_000_000, no_jobs)
        under_way = board.look_under_way("team")
        assert under_way is not None
        await under_way
        return waiters

    woken = [waiter.done() for waiter in asyncio.run(look())]
    assert sum(woken) == WAKES_PER_LOOK
    assert woken[:WAKES_PER_LOOK] == [True] * WAKES_PER_LOOK  # the longest waiters first


def test_a_sensors_trigger_for_an_ended_job_hands_no_slot_over(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a trigger that saw its job running (or that paid for it) hands its slot to a waiter."""
    from airflow_kling.hooks.scenario_async import close_shared_session
    from airflow_kling.triggers.job import ScenarioJobTrigger
    from airflow_kling.triggers.slot import SLOTS
    from tests.media_samples import submit_text_job

    team = "scenario_watched"
    monkeypatch.setenv("AIRFLOW_CONN_SCENARIO_WATCHED", scenario_emulator.connection_uri())
    job = submit_text_job(scenario_emulator, seconds=0.2)
    while scenario_emulator.store.job_state(scenario_emulator.store.job(job))[0] != "success":
        time.sleep(0.1)

    async def watch_then_pay() -> tuple[bool, bool]:
        try:
            waiter = SLOTS.join(team, since=0.0)
            watched = ScenarioJobTrigger(job, team, poll_interval=0.1)
            assert (await anext(aiter(watched.run()))).payload["status"] == "success"
            after_watcher = waiter.done()
            payer = ScenarioJobTrigger(job, team, poll_interval=0.1, cancel_on_exit=True)
            assert (await anext(aiter(payer.run()))).payload["status"] == "success"
            return after_watcher, waiter.done()
        finally:
            SLOTS.leave(team, waiter)
            await close_shared_session()

    assert asyncio.run(watch_then_pay()) == (False, True)


class CountingServer:
    """A loopback HTTP service that counts the connections it accepts (an internal service a hostile answer
    might point at), answering each with ``answer``."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret") -> None:
        import socket
        import threading

        self.answer = answer
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            with connection:
                connection.recv(65536)
                connection.sendall(self.answer)

    def close(self) -> None:
        self._server.close()


def archive_of_a_job(emulator: EmulatorServer, tmp_path: Any) -> Any:
    """Archive a succeeded job's output into ``tmp_path / "archive"``: the call, to run once faults are set."""
    from airflow_kling.files.archive import archive_assets
    from airflow_kling.files.storage import storage_path
    from tests.media_samples import output_assets, submit_text_job

    (output,) = output_assets(submit_text_job(emulator, seconds=0.2))
    return lambda: archive_assets(ScenarioHook(), [output], storage_path(tmp_path / "archive"))


def test_a_signed_url_on_an_internal_service_is_not_fetched(
    scenario_emulator: EmulatorServer, tmp_path: Any
) -> None:
    internal = CountingServer()
    try:
        archive = archive_of_a_job(scenario_emulator, tmp_path)
        scenario_emulator.store.config.storage_origin = internal.origin  # the API now names files there
        with pytest.raises(
            ScenarioResponseError, match=r"only https is fetched from a host other than the API's own"
        ):
            archive()
        assert internal.accepted == 0  # no request reached it
        assert not any((tmp_path / "archive").rglob("*.mp4"))  # nothing written
    finally:
        internal.close()


def test_a_file_hosts_redirect_is_not_followed(
    scenario_emulator: EmulatorServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = CountingServer()
    redirecting = CountingServer(
        f"HTTP/1.1 302 Found\r\nLocation: {target.origin}/x\r\nContent-Length: 0\r\n\r\n".encode()
    )
    try:
        monkeypatch.setenv(
            "AIRFLOW__KLING__STORAGE_HOSTS", f"127.0.0.1:{redirecting.port}"
        )  # an allowed host
        archive = archive_of_a_job(scenario_emulator, tmp_path)
        scenario_emulator.store.config.storage_origin = redirecting.origin
        with pytest.raises(ScenarioError, match="HTTP 302"):
            archive()
        assert redirecting.accepted >= 1
        assert target.accepted == 0  # the redirect was not followed
    finally:
        target.close()
        redirecting.close()


@pytest.mark.parametrize(
    ("url", "addresses", "allowed"),
    [
        ("https://files.example/a.mp4?Signature=x", ["93.184.216.34"], True),
        ("https://files.example/a.mp4?Signature=x", ["10.0.0.5"], False),
        ("https://files.example/a.mp4", ["93.184.216.34", "169.254.169.254"], False),
        ("https://files.example/a.mp4", ["::1"], False),
        ("http://files.example/a.mp4", ["93.184.216.34"], False),
        ("http://127.0.0.1:8089/_files/a.mp4", [], True),  # the API's own origin
        ("file:///etc/passwd", [], False),
    ],
)
def test_where_a_signed_url_may_point(url: str, addresses: list[str], allowed: bool) -> None:
    """Checked on the addresses the name resolves to (a resolver injected: no network)."""
    import socket

    from airflow_kling.api.origins import checked_storage_url

    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    if allowed:
        assert checked_storage_url(url, "http://127.0.0.1:8089/v1", resolve=resolve) == url
    else:
        with pytest.raises(ScenarioResponseError) as refused:
            checked_storage_url(url, "http://127.0.0.1:8089/v1", resolve=resolve)
        assert "Signature" not in str(refused.value)


MEMORY_PROBE = """
import asyncio, json, resource, sys

from airflow_kling.exceptions import ScenarioError
from airflow_kling.hooks import scenario_async
from airflow_kling.hooks.scenario import ScenarioHook


def poll(job_id):
    if sys.argv[1] == "sync":
        return ScenarioHook().get_job(job_id)

    async def go():
        try:
            return await scenario_async.ScenarioAsyncHook().get_job(job_id)
        finally:
            await scenario_async.close_shared_session()

    return asyncio.run(go())


def outcome(job_id):
    try:
        poll(job_id)
        return "answered"
    except ScenarioError as error:
        return str(error)


warm = outcome("job_missing")  # every module loaded, a connection made: what any poll costs
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
flooded = outcome("job_flood")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"warm": warm, "flooded": flooded, "grew_kib": after - before}))
"""


@pytest.mark.parametrize("hook", ["sync", "async"])
@pytest.mark.parametrize("action", ["flood", "flood-unsized"])
def test_a_150_mb_answer_is_refused_with_memory_bounded(
    scenario_emulator: EmulatorServer, hook: str, action: str
) -> None:
    """The issue's case: one 150 MB job answer took a process from 125 to 430 MiB. Now it is refused, whether
    its size is declared or found while it streams, and the process's peak grows by less than 32 MiB."""
    import json
    import subprocess
    import sys

    scenario_emulator.add_fault("^/v1/jobs/job_flood$", action=action, size=150 * 1024 * 1024)
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, hook], capture_output=True, text=True, timeout=300
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "answered HTTP 404" in seen["warm"]
    found = "declared 157286400 bytes" if action == "flood" else "sent more than 8388608 bytes"
    assert seen["flooded"] == (
        f"Scenario GET /jobs/job_flood answered with a body too large to read ({found}; an answer may hold "
        "8 MiB): refused"
    )
    assert seen["grew_kib"] < 32 * 1024, seen
    assert len(scenario_emulator.store.requests("^/v1/jobs/job_flood$")) == 1  # refused, not asked again


@pytest.mark.parametrize(
    ("size", "error"),
    [
        (1000, "Asset asset_\\w+: the file host sent more than its size, 1000 bytes"),
        ("1000", "properties.size must be a whole number of bytes up to 2147483648, got '1000'"),
        (-1, "properties.size must be a whole number of bytes up to 2147483648, got '-1'"),
    ],
)
def test_a_file_longer_than_its_asset_says_is_cut_off(
    scenario_emulator: EmulatorServer, tmp_path: Any, size: Any, error: str
) -> None:
    """A file is read no further than its asset's declared size (a hostile host could stream forever), and a
    size of another shape is refused before any byte; nothing is left in the archive either way."""
    from tests.media_samples import output_assets, submit_text_job

    (output,) = output_assets(submit_text_job(scenario_emulator, seconds=0.2))
    asset = ScenarioHook().get_asset(output)
    assert asset["properties"]["size"] > 1000
    asset["properties"]["size"] = size
    scenario_emulator.add_fault(
        f"^/v1/assets/{output}$", method="GET", status=200, body={"asset": asset}, times=9
    )
    from airflow_kling.files.archive import archive_assets
    from airflow_kling.files.storage import storage_path

    with pytest.raises(ScenarioError, match=error):
        archive_assets(ScenarioHook(), [output], storage_path(tmp_path / "archive"))
    assert [path for path in (tmp_path / "archive").rglob("*") if path.is_file()] == []


def test_a_storage_error_keeps_only_its_code_and_status(
    scenario_emulator: EmulatorServer, captured_logs: Any
) -> None:
    """S3's ``SignatureDoesNotMatch`` body carries the string that was signed and the access key id: of a
    storage host's error body only its code goes into the error, and nothing of it into the log."""
    from airflow_kling.exceptions import ScenarioUploadError
    from tests.media_samples import sample_video

    planted = "AKIAPLANTEDSECRET42"
    body = (
        "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match"
        f"</Message><AWSAccessKeyId>{planted}</AWSAccessKeyId><StringToSign>PUT\n{planted}-to-sign"
        "</StringToSign></Error>"
    )
    scenario_emulator.add_fault("^/_uploads/", method="PUT", status=403, body=body)
    with pytest.raises(ScenarioUploadError) as refused:
        ScenarioHook().upload_asset(sample_video())
    assert str(refused.value) == "Storage refused upload part 1 with HTTP 403 (SignatureDoesNotMatch)"
    assert planted not in captured_logs()


SIGNED = "https://storage.example/part?X-Amz-Signature=planted-signature"


@pytest.mark.parametrize(
    ("parts", "named"),
    [
        (None, "upload.parts with NoneType for the 1 part"),
        ([], "upload.parts with 0 item"),
        ([{"number": 1, "url": SIGNED}, {"number": 2, "url": SIGNED}], "upload.parts with 2 item"),
        ([{"number": 2, "url": SIGNED}], r"numbered 1 to 1, each once, with a url \(number 2\)"),
        ([{"number": "1", "url": SIGNED}], r"numbered 1 to 1, each once, with a url \(number '1'\)"),
        ([{"number": 1}], r"numbered 1 to 1, each once, with a url \(number 1\)"),
        (["not a part"], r"numbered 1 to 1, each once, with a url \(number None\)"),
    ],
    ids=[
        "none",
        "empty",
        "more than announced",
        "beyond those announced",
        "number as text",
        "no url",
        "text",
    ],
)
def test_an_upload_whose_parts_are_not_those_announced_sends_nothing(
    scenario_emulator: EmulatorServer, parts: Any, named: str
) -> None:
    from tests.media_samples import sample_video

    answer = {"upload": {"id": "upload_lying", "status": "pending", "parts": parts}}
    scenario_emulator.add_fault("^/v1/uploads$", method="POST", status=200, body=answer)
    with pytest.raises(ScenarioResponseError, match=named) as refused:
        ScenarioHook().upload_asset(sample_video())
    assert "planted-signature" not in str(refused.value)
    assert scenario_emulator.store.requests("^/_uploads/") == []  # no part sent
    assert scenario_emulator.store.requests("^/v1/uploads/") == []  # nothing completed


def test_a_part_listed_twice_is_refused() -> None:
    from airflow_kling.files.uploads import part_urls

    assert part_urls([{"number": 2, "url": "b"}, {"number": 1, "url": "a"}], 2) == [(1, "a"), (2, "b")]
    with pytest.raises(ScenarioResponseError, match=r"numbered 1 to 2, each once, with a url \(number 1\)"):
        part_urls([{"number": 1, "url": SIGNED}, {"number": 1, "url": SIGNED}], 2)


@pytest.mark.parametrize(
    ("upload", "error"),
    [
        ({"id": "upload_lying", "status": "validated", "entityId": "../../etc"}, r"upload\.entityId"),
        ({"id": "upload_lying", "status": "validated", "entityId": ["asset_a"]}, r"upload\.entityId"),
        ({"id": "upload_lying", "status": "failed", "errorMessage": "Not a video. " * 10_000}, "Not a video"),
        ({"id": "upload_lying", "status": {"deep": "x" * 10_000}}, "still"),
    ],
    ids=["path", "list", "long reason", "status of another type"],
)
def test_an_uploads_outcome_is_read_within_bounds(
    scenario_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, upload: dict[str, Any], error: str
) -> None:
    """The asset id an upload names is an id before anything uses it; the reasons and statuses it gives are
    cut to a few hundred characters in the error."""
    from airflow_kling.files import uploads
    from tests.media_samples import sample_video

    monkeypatch.setattr(uploads, "UPLOAD_WAIT_SECONDS", 0.0)  # a status that never ends the wait: once
    scenario_emulator.add_fault(
        r"^/v1/uploads/[^/]+$", method="GET", status=200, body={"upload": upload}, times=100
    )
    with pytest.raises(ScenarioError, match=error) as refused:
        ScenarioHook().upload_asset(sample_video())
    assert len(str(refused.value)) < 700
    # the part was sent, then the answer read
    assert len(scenario_emulator.store.requests("^/_uploads/")) == 1
