"""The lipsync preview in the Airflow UI, looked at in a real browser.

A real ``airflow standalone`` (with the provider and its plugin installed as a user installs them: the
``airflow.plugins`` entry point) and the emulator; Debian's headless Chromium, driven by Selenium, signs in,
fills the connection form, opens every example DAG's Trigger form, triggers the pipeline from it and plays
the result in the task instance's "Lipsync preview" tab. The plugin's endpoints are also asked directly:
who may see a video, ranges, ids. Screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from airflow_kling.emulator import EmulatorServer
from airflow_kling.media import probe
from airflow_kling.version_compat import AIRFLOW_V_3_2_PLUS
from tests.browser import buttons, chromium, log_in, replace_text, screenshot, wait_for
from tests.deployments import REPO, RUN_LIMIT, Deployment, emulator, scenario_emulator, standalone
from tests.s3 import environment, s3

PIPELINE = "kling_lipsync_pipeline"
EXAMPLES = [
    PIPELINE,
    "kling_lipsync_review",
    "kling_lipsync_batch",
    "kling_lipsync_on_archive",
    "kling_lipsync_on_publish",
]
PREVIEW = "/kling/preview"
__all__ = ["emulator", "s3", "scenario_emulator"]  # the shared fixtures, one emulator and bucket per module
# On one worker with the real-deployment tests (xdist group), so that two deployments never start at once.
pytestmark = pytest.mark.xdist_group("deployment")


@pytest.fixture(scope="module")
def deployment(
    emulator: EmulatorServer, s3: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tmp_path = tmp_path_factory.mktemp("ui")
    credentials = json.loads(emulator.connection_uri())
    env = {
        **environment(s3),  # archives to s3:// through boto's credential chain, as on a cloud worker
        # What the preview may read: the default archive and the bucket the S3 test archives to.
        "AIRFLOW__KLING_PREVIEW__ARCHIVE_ROOTS": f"{tmp_path / 'airflow' / 'kling-archive'},s3://kling/archive",
        # Another Scenario account the api-server holds, which no XCom may make the preview use.
        "AIRFLOW_CONN_SCENARIO_OTHER": emulator.connection_uri(),
        # A connection without credentials: the key and secret come from the environment (masked too).
        "AIRFLOW_CONN_SCENARIO_FALLBACK": json.dumps({"conn_type": "scenario", "host": credentials["host"]}),
        "SCENARIO_SDK_API_KEY": credentials["login"],
        "SCENARIO_SDK_API_SECRET": credentials["password"],
        # Simple auth manager users, and one per-DAG rule (tests/auth_manager.py): `outsider` may not read
        # the pipeline.
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.auth_manager.PerDagAuthManager",
        "PYTHONPATH": str(REPO),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }
    users = {"viewer": "viewer", "outsider": "viewer"}
    with standalone(tmp_path, emulator.connection_uri(), users=users, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser(deployment: Deployment) -> Iterator[Any]:
    with chromium() as driver:
        driver.implicitly_wait(2)
        log_in(driver, deployment.api, "admin", "admin")
        yield driver


def run_path(dag_id: str, run_id: str) -> str:
    return f"{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def finished_run(deployment: Deployment, dag_id: str, run_id: str) -> str:
    deadline = time.monotonic() + RUN_LIMIT
    while time.monotonic() < deadline:
        state = deployment.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]
        if state in ("success", "failed"):
            return str(state)
        time.sleep(1)
    pytest.fail(f"{dag_id} run {run_id} did not finish:\n{deployment.logs_of(dag_id)}")


def wait_until_no_run_is_active(deployment: Deployment, dag_id: str) -> None:
    def idle() -> bool:
        runs = deployment.get(f"/dags/{dag_id}/dagRuns?state=queued&state=running")["dag_runs"]
        return not runs

    wait_for(idle, f"every run of {dag_id} to finish", limit=RUN_LIMIT)


def xcom(deployment: Deployment, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
    return deployment.get(path)["value"]


def open_trigger_form(browser: Any, deployment: Deployment, dag_id: str) -> Any:
    """The DAG page's Trigger form; returns its Trigger button (the last one on the page)."""
    deployment.wait_for_dag(dag_id)
    browser.get(f"{deployment.api}/dags/{dag_id}")
    wait_for(lambda: buttons(browser, "Trigger"), f"the Trigger button of {dag_id}")[0].click()
    return wait_for(
        lambda: len(buttons(browser, "Trigger")) > 1 and buttons(browser, "Trigger")[-1], "the form"
    )


def enter_preview_frame(browser: Any) -> None:
    """Switch into the plugin's iframe on the current page once its page has loaded."""
    from selenium.webdriver.common.by import By

    frame = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, f"iframe[src*='{PREVIEW.lstrip('/')}']"),
        "the preview's iframe",
    )
    browser.switch_to.frame(frame)
    wait_for(lambda: browser.find_elements(By.TAG_NAME, "h1"), "the preview page")


def test_the_plugin_loads_with_its_views(deployment: Deployment) -> None:
    plugins = {plugin["name"]: plugin for plugin in deployment.get("/plugins")["plugins"]}
    ours = plugins["kling_lipsync_preview"]
    assert "airflow-provider-kling" in ours["source"]  # from the package's entry point, nothing copied
    assert {(view["destination"], view["url_route"]) for view in ours["external_views"]} == {
        ("task_instance", "kling-lipsync-preview"),
        ("dag_run", "kling-lipsync-videos"),
    }
    assert [app["url_prefix"] for app in ours["fastapi_apps"]] == [PREVIEW]
    errors = deployment.get("/plugins/importErrors")["import_errors"]
    assert errors == [], errors


def test_the_connection_form_offers_scenario_and_saves_a_working_connection(
    browser: Any, deployment: Deployment, emulator: EmulatorServer
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.switch_to.default_content()
    browser.get(f"{deployment.api}/connections")
    wait_for(
        lambda: [b for b in browser.find_elements(By.TAG_NAME, "button") if "Add Connection" in b.text],
        "Add Connection",
    )[0].click()
    wait_for(lambda: browser.find_elements(By.NAME, "connection_id"), "the connection form")
    browser.find_element(By.NAME, "connection_id").send_keys("scenario_ui")
    kind = browser.find_element(By.CSS_SELECTOR, "input[role=combobox]")
    kind.send_keys("Scenario")
    wait_for(
        lambda: [o for o in browser.find_elements(By.CSS_SELECTOR, "[role=option]") if o.text == "Scenario"],
        "the Scenario type",
    )
    kind.send_keys(Keys.ENTER)
    wait_for(lambda: browser.find_elements(By.NAME, "login"), "the Scenario fields")
    host = f"http://127.0.0.1:{emulator.port}/v1"
    browser.find_element(By.NAME, "host").send_keys(host)
    browser.find_element(By.NAME, "login").send_keys(emulator.config.api_key)
    browser.find_element(By.NAME, "password").send_keys(emulator.config.api_secret)
    next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Extra Fields").click()
    timeout = wait_for(lambda: browser.find_element(By.NAME, "element_timeout"), "the extra fields")
    wait_for(timeout.is_displayed, "the extra fields to open")
    timeout.send_keys("30")
    labels = {
        label.get_attribute("textContent").strip(" *")
        for label in browser.find_elements(By.TAG_NAME, "label")
    }
    assert {
        "API key",
        "API secret",
        "API base URL",
        "Project ID",
        "Timeout (seconds)",
        "Web app URL",
        "Max retries",
    } <= labels
    screenshot(browser, "connection-form")
    save = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Save")
    wait_for(save.is_enabled, "Save to be enabled")
    save.click()

    def saved_connection() -> Any:
        answer = deployment.session.get(f"{deployment.api}/api/v2/connections/scenario_ui", timeout=10)
        return answer.json() if answer.ok else None

    saved = wait_for(
        saved_connection,
        "the saved connection",
    )
    assert (saved["conn_type"], saved["host"], saved["login"]) == ("scenario", host, emulator.config.api_key)
    assert json.loads(saved["extra"])["timeout"] in ("30", 30)
    # The UI's Test button has an Airflow 3.3.2 bug; the REST call it makes works:
    tested = deployment.session.post(
        f"{deployment.api}/api/v2/connections/test",
        json={
            **{k: saved[k] for k in ("connection_id", "conn_type", "host", "login", "extra")},
            "password": emulator.config.api_secret,
        },
        timeout=30,
    )
    assert tested.status_code == 200, tested.text
    assert tested.json()["status"] is True, tested.text


@pytest.mark.parametrize("dag_id", EXAMPLES)
def test_every_example_dags_trigger_form_takes_its_defaults(
    browser: Any, deployment: Deployment, dag_id: str
) -> None:
    from selenium.webdriver.common.by import By

    trigger = open_trigger_form(browser, deployment, dag_id)
    wait_for(trigger.is_enabled, f"{dag_id}'s Trigger button to be enabled with the defaults", limit=10)
    screenshot(browser, f"trigger-form-{dag_id}")
    sections = [
        button.text for button in browser.find_elements(By.TAG_NAME, "button") if button.text in FORM_ORDER
    ]
    # In the order a person fills them: media, text mode, storage and budget, review.
    assert sections == sorted(sections, key=FORM_ORDER.index), sections
    if dag_id == "kling_lipsync_pipeline":
        assert sections[:3] == ["Media", "Text mode", "Storage and budget"], sections
    if dag_id == "kling_lipsync_review":
        assert sections[:4] == ["Media", "Text mode", "Storage and budget", "Review"], sections


FORM_ORDER = ["Media", "Text mode", "Storage and budget", "Review", "Advanced Options"]


@pytest.fixture(scope="module")
def text_run(browser: Any, deployment: Deployment, emulator: EmulatorServer) -> str:
    """A pipeline run in text mode, triggered from the UI form; its run id once it has finished."""
    from selenium.webdriver.common.by import By

    emulator.store.reset()
    before = {run["dag_run_id"] for run in deployment.get(f"/dags/{PIPELINE}/dagRuns")["dag_runs"]}
    trigger = open_trigger_form(browser, deployment, PIPELINE)
    next(
        button for button in browser.find_elements(By.TAG_NAME, "button") if button.text == "Text mode"
    ).click()
    text = wait_for(lambda: browser.find_element(By.NAME, "element_text"), "the Text mode section")
    wait_for(text.is_displayed, "the Text field")
    text.send_keys("Hello from the Airflow form")
    replace_text(browser.find_element(By.NAME, "element_voice_speed"), "1.2", "the voice speed")
    wait_for(trigger.is_enabled, "Trigger to be enabled")
    trigger.click()
    new = wait_for(
        lambda: (
            {run["dag_run_id"] for run in deployment.get(f"/dags/{PIPELINE}/dagRuns")["dag_runs"]} - before
        ),
        "the run the form started",
    )
    (run_id,) = new
    assert finished_run(deployment, PIPELINE, run_id) == "success", deployment.logs_of(PIPELINE)
    return str(run_id)


def test_the_preview_plays_the_archived_video_of_a_run_started_from_the_form(
    browser: Any, deployment: Deployment, emulator: EmulatorServer, text_run: str
) -> None:
    from selenium.webdriver.common.by import By

    job_id = xcom(deployment, PIPELINE, text_run, "lipsync", "scenario_job_id")
    assert emulator.store.jobs[job_id].inputs["text"] == "Hello from the Airflow form"
    assert emulator.store.jobs[job_id].inputs["voiceSpeed"] == 1.2
    task_page = f"{deployment.api}/dags/{PIPELINE}/runs/{quote(text_run, safe='')}/tasks/lipsync"

    browser.switch_to.default_content()
    browser.get(f"{task_page}/details")
    link = wait_for(
        lambda: [a for a in browser.find_elements(By.TAG_NAME, "a") if a.text == "Scenario job"],
        "the Scenario job link",
    )[0]
    assert link.get_attribute("href") == f"http://127.0.0.1:{emulator.port}/jobs/{job_id}"

    browser.get(task_page)
    wait_for(
        lambda: [a for a in browser.find_elements(By.TAG_NAME, "a") if a.text == "Lipsync preview"],
        "the preview tab",
    )[0].click()
    enter_preview_frame(browser)
    video = wait_for(lambda: browser.find_element(By.TAG_NAME, "video"), "the player")
    wait_for(
        lambda: browser.execute_script("return arguments[0].readyState", video) >= 2, "the video to play"
    )
    archived = xcom(deployment, PIPELINE, text_run, "archive", "scenario_archive")["files"][0]
    expected = probe(Path(archived["uri"].removeprefix("file://"))).duration
    duration = browser.execute_script("return arguments[0].duration", video)
    assert duration == pytest.approx(expected, abs=0.05)
    shown = wait_for(
        lambda: (
            browser.find_element(By.ID, "clip-0-duration").text.endswith(" s")
            and browser.find_element(By.ID, "clip-0-duration").text
        ),
        "the duration",
    )
    assert shown == f"{duration:.2f} s"
    browser.execute_script("arguments[0].currentTime = arguments[0].duration / 2", video)  # seeking: Range
    wait_for(
        lambda: browser.execute_script("return !arguments[0].seeking && arguments[0].readyState >= 2", video),
        "the seek",
    )
    text = browser.find_element(By.TAG_NAME, "main").text
    for fact in (
        job_id,
        "success",
        "text + voice",
        "Hello from the Airflow form",
        "1.2",
        "en_AOT",
        ".../" + "/".join(archived["uri"].split("/")[-2:]),  # a long location shortened for the eye
        "manifest.json",
        "creative units",
    ):
        assert fact in text, fact
    assert archived["uri"] not in text
    location = browser.find_element(By.CSS_SELECTOR, "details.location")
    location.find_element(By.TAG_NAME, "summary").click()  # the whole location, a click away
    assert archived["uri"] in location.text
    assert "Streamed from the archive." in text
    poster = video.get_attribute("poster")
    assert "/poster/" in str(poster)
    assert "signature=" not in browser.page_source
    browser.switch_to.default_content()
    kept = screenshot(browser, "lipsync-preview")
    other_task = f"{deployment.api}{PREVIEW}/ti/{run_path(PIPELINE, text_run)}/prepare/-1"
    assert "This task ran no Kling Lipsync job" in deployment.session.get(other_task, timeout=30).text
    assert kept.stat().st_size > 10_000


def test_the_preview_of_a_failed_job_shows_its_error_and_hint(
    browser: Any, deployment: Deployment, scenario_emulator: EmulatorServer
) -> None:
    from selenium.webdriver.common.by import By

    wait_until_no_run_is_active(deployment, PIPELINE)  # the planned outcome is for this test's job alone
    # The job runs 8 s: a trigger that fires within ~2 s of the deferral can meet an Airflow scheduler race (the
    # deferring try's executor event read after the trigger's event) that puts the task up for retry.
    scenario_emulator.plan_jobs(
        "failure", error="No face detected", hint="Use a clip with a visible face", seconds=8
    )
    run_id = deployment.trigger(PIPELINE, {})
    runs = deployment.get(f"/dags/{PIPELINE}/dagRuns")["dag_runs"]
    assert finished_run(deployment, PIPELINE, run_id) == "failed", (
        [(r["dag_run_id"], r["state"]) for r in runs],
        {job.id: (job.created_at, job.inputs) for job in scenario_emulator.store.jobs.values()},
        deployment.logs_of(PIPELINE),
    )
    browser.switch_to.default_content()
    browser.get(
        f"{deployment.api}/dags/{PIPELINE}/runs/{quote(run_id, safe='')}/tasks/lipsync/plugin/kling-lipsync-preview"
    )
    enter_preview_frame(browser)
    alert = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "[role=alert]"), "the job's error")
    assert alert.text == "Job failed: No face detected Hint: Use a clip with a visible face"
    assert browser.find_elements(By.TAG_NAME, "video") == []  # no broken player
    assert "failure" in browser.find_element(By.TAG_NAME, "h2").text
    assert "nothing to archive" in browser.find_element(By.TAG_NAME, "main").text
    browser.switch_to.default_content()
    screenshot(browser, "lipsync-preview-failed")


def test_a_batch_run_shows_one_entry_per_clip(
    browser: Any, deployment: Deployment, scenario_emulator: EmulatorServer
) -> None:
    from selenium.webdriver.common.by import By

    pool = {"name": "kling_lipsync", "slots": 4, "include_deferred": True}  # as the README says to make it
    made = deployment.session.post(f"{deployment.api}/api/v2/pools", json=pool, timeout=10)
    assert made.status_code in (200, 201, 409), made.text
    run_id = deployment.trigger("kling_lipsync_batch", {"text": "One for each clip"})
    assert finished_run(deployment, "kling_lipsync_batch", run_id) == "success", deployment.logs_of(
        "kling_lipsync_batch"
    )
    jobs = set(scenario_emulator.store.jobs)
    assert len(jobs) == 3  # the batch's three sample clips

    browser.switch_to.default_content()
    browser.get(
        f"{deployment.api}/dags/kling_lipsync_batch/runs/{quote(run_id, safe='')}/plugin/kling-lipsync-videos"
    )
    enter_preview_frame(browser)
    clips = browser.find_elements(By.CSS_SELECTOR, "section.clip")
    assert {clip.get_attribute("data-job-id") for clip in clips} == jobs
    store = scenario_emulator.store
    for clip in clips:  # each named after the file its clip was uploaded from, then a short job id
        job_id = clip.get_attribute("data-job-id")
        name = store.assets[store.jobs[job_id].inputs["videoUrl"]].file_name
        assert clip.find_element(By.TAG_NAME, "h2").text.startswith(f"{name} · {job_id[:10]}..."), name
    assert len({clip.find_element(By.TAG_NAME, "h2").text for clip in clips}) == 3  # told apart
    videos = browser.find_elements(By.TAG_NAME, "video")
    assert len(videos) == 3
    for video in videos:
        wait_for(
            lambda video=video: browser.execute_script("return arguments[0].readyState", video) >= 2,
            "each clip's video",
        )
    browser.switch_to.default_content()
    screenshot(browser, "lipsync-videos-batch")

    # One mapped task instance's tab shows its own clip only.
    page = deployment.session.get(
        f"{deployment.api}{PREVIEW}/ti/{run_path('kling_lipsync_batch', run_id)}/clip.lipsync/1",
        timeout=30,
    )
    assert page.status_code == 200
    job_of_clip_1 = xcom_of_map_index(deployment, "kling_lipsync_batch", run_id, "clip.lipsync", 1)
    assert page.text.count('<section class="clip"') == 1
    assert job_of_clip_1 in page.text


def xcom_of_map_index(deployment: Deployment, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    path = (
        f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/scenario_job_id"
    )
    return str(deployment.get(f"{path}?map_index={map_index}")["value"])


@pytest.fixture(scope="module")
def unarchived_run(deployment: Deployment, emulator: EmulatorServer) -> tuple[str, str]:
    """A lipsync with no archive task (the test DAG ``kling_deferrable``): its run id and output asset."""
    from airflow_kling.hooks.scenario import ScenarioHook
    from tests.media_samples import sample_video

    emulator.store.reset()
    video = ScenarioHook().upload_asset(sample_video())
    run_id = deployment.trigger("kling_deferrable", {"video": video, "text": "hello there"})
    assert finished_run(deployment, "kling_deferrable", run_id) == "success", deployment.logs_of(
        "kling_deferrable"
    )
    (job_id,) = [
        job for job in emulator.store.jobs if emulator.store.jobs[job].inputs.get("videoUrl") == video
    ]
    return run_id, str(emulator.store.jobs[job_id].output_asset_id)


def test_a_video_not_archived_streams_from_scenario_without_a_signed_url_in_the_page(
    deployment: Deployment, emulator: EmulatorServer, unarchived_run: tuple[str, str]
) -> None:
    run_id, asset_id = unarchived_run
    where = f"{run_path('kling_deferrable', run_id)}/lipsync/-1"
    page = deployment.session.get(f"{deployment.api}{PREVIEW}/ti/{where}", timeout=30)
    assert page.status_code == 200
    assert "Streamed from the job&#x27;s output on Scenario (not archived yet)." in page.text
    assert f'src="{PREVIEW}/video/{where}/{asset_id}"' in page.text
    for absent in ("signature", "_files", "poster="):  # no signed URL, and a poster only from the archive
        assert absent not in page.text
    original = emulator.store.asset(asset_id).path.read_bytes()
    video = f"{deployment.api}{PREVIEW}/video/{where}/{asset_id}"
    whole = deployment.session.get(video, timeout=30)
    assert (whole.status_code, whole.content) == (200, original)
    part = deployment.session.get(video, headers={"Range": "bytes=1000-1999"}, timeout=30)
    assert (part.status_code, part.content) == (206, original[1000:2000])
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(original)}"
    assert not any("signature" in value for value in part.headers.values())


def test_archived_videos_answer_range_requests(deployment: Deployment, text_run: str) -> None:
    archived = xcom(deployment, PIPELINE, text_run, "archive", "scenario_archive")["files"][0]
    original = Path(archived["uri"].removeprefix("file://")).read_bytes()
    url = f"{deployment.api}{PREVIEW}/video/{run_path(PIPELINE, text_run)}/lipsync/-1/{archived['asset_id']}"
    whole = deployment.session.get(url, timeout=30)
    assert (whole.status_code, whole.headers["Accept-Ranges"], whole.content) == (200, "bytes", original)
    cases = {
        "bytes=0-99": (206, original[:100], f"bytes 0-99/{len(original)}"),
        "bytes=-100": (
            206,
            original[-100:],
            f"bytes {len(original) - 100}-{len(original) - 1}/{len(original)}",
        ),
        f"bytes={len(original) - 10}-": (
            206,
            original[-10:],
            f"bytes {len(original) - 10}-{len(original) - 1}/{len(original)}",
        ),
        f"bytes={len(original)}-": (416, b"", f"bytes */{len(original)}"),
    }
    for header, (status, body, content_range) in cases.items():
        answer = deployment.session.get(url, headers={"Range": header}, timeout=30)
        assert (answer.status_code, answer.content, answer.headers["Content-Range"]) == (
            status,
            body,
            content_range,
        ), header
    poster = deployment.session.get(url.replace("/video/", "/poster/"), timeout=30)
    assert (poster.status_code, poster.headers["Content-Type"]) == (200, "image/jpeg")
    assert poster.content[:2] == b"\xff\xd8"


def test_the_plugin_refuses_anonymous_and_unauthorized_users(
    deployment: Deployment, text_run: str, unarchived_run: tuple[str, str]
) -> None:
    archived = xcom(deployment, PIPELINE, text_run, "archive", "scenario_archive")["files"][0]
    where = f"{run_path(PIPELINE, text_run)}/lipsync/-1"
    urls = [
        f"{PREVIEW}/ti/{where}",
        f"{PREVIEW}/run/{run_path(PIPELINE, text_run)}",
        f"{PREVIEW}/video/{where}/{archived['asset_id']}",
        f"{PREVIEW}/poster/{where}/{archived['asset_id']}",
    ]
    viewer = {"Authorization": f"Bearer {deployment.token('viewer', 'viewer')}"}
    outsider = {"Authorization": f"Bearer {deployment.token('outsider', 'outsider')}"}
    for url in urls:
        assert requests.get(f"{deployment.api}{url}", timeout=30).status_code == 401, url
        assert requests.get(
            f"{deployment.api}{url}", headers={"Authorization": "Bearer forged"}, timeout=30
        ).status_code in (401, 403), url
        assert requests.get(f"{deployment.api}{url}", headers=outsider, timeout=30).status_code == 403, url
        assert requests.get(f"{deployment.api}{url}", headers=viewer, timeout=30).status_code == 200, url
    # The rule is per DAG: the same outsider may watch a DAG it may read, as Airflow's own API agrees.
    run_id, _ = unarchived_run
    other = f"{PREVIEW}/ti/{run_path('kling_deferrable', run_id)}/lipsync/-1"
    assert requests.get(f"{deployment.api}{other}", headers=outsider, timeout=30).status_code == 200
    own_api = (
        f"{deployment.api}/api/v2/dags/{PIPELINE}/dagRuns/{quote(text_run, safe='')}/taskInstances/lipsync"
    )
    assert requests.get(own_api, headers=outsider, timeout=30).status_code == 403


def test_ids_in_the_path_are_checked_and_only_the_tasks_own_assets_are_served(
    deployment: Deployment, text_run: str, unarchived_run: tuple[str, str]
) -> None:
    where = f"{run_path(PIPELINE, text_run)}/lipsync/-1"
    _, other_asset = unarchived_run  # made by another DAG's run: not this task's to serve
    answers = {
        f"{PREVIEW}/video/{where}/{other_asset}": 404,
        f"{PREVIEW}/video/{where}/..%2F..%2Fmanifest.json": 404,
        f"{PREVIEW}/video/{where}/asset%2F..%2F..%2Fetc%2Fpasswd": 404,
        f"{PREVIEW}/video/{where}/file:%2F%2F%2Fetc%2Fpasswd": 404,  # no route: the slashes are segments
        f"{PREVIEW}/video/{where}/http:example.com": 422,
        f"{PREVIEW}/video/{run_path(PIPELINE, text_run)}/lipsync/x/{other_asset}": 422,
        f"{PREVIEW}/ti/{run_path(PIPELINE, 'manual__1999-01-01T00:00:00+00:00')}/lipsync/-1": 404,
        f"{PREVIEW}/ti/{PIPELINE}/run%20id%3Cscript%3E/lipsync/-1": 422,
    }
    for url, status in answers.items():
        answer = deployment.session.get(f"{deployment.api}{url}", timeout=30)
        assert answer.status_code == status, (url, answer.status_code, answer.text)
        assert "<script>" not in answer.text


def test_a_video_archived_to_s3_streams_from_the_bucket(
    deployment: Deployment, scenario_emulator: EmulatorServer, s3: Any
) -> None:
    run_id = deployment.trigger(PIPELINE, {"destination": "s3://kling/archive"})
    assert finished_run(deployment, PIPELINE, run_id) == "success", deployment.logs_of(PIPELINE)
    (archived,) = xcom(deployment, PIPELINE, run_id, "archive", "scenario_archive")["files"]
    assert archived["uri"].startswith("s3://kling/archive/")
    key = archived["uri"].removeprefix("s3://kling/")
    original = s3.get_object(Bucket="kling", Key=key)["Body"].read()
    where = f"{run_path(PIPELINE, run_id)}/lipsync/-1"
    page = deployment.session.get(f"{deployment.api}{PREVIEW}/ti/{where}", timeout=30).text
    assert "Streamed from the archive." in page
    assert archived["uri"] in page
    assert "manifest.json</summary>" in page  # read back from the bucket
    video = f"{deployment.api}{PREVIEW}/video/{where}/{archived['asset_id']}"
    part = deployment.session.get(video, headers={"Range": "bytes=100-"}, timeout=30)
    assert (part.status_code, part.content) == (206, original[100:])
    poster = deployment.session.get(video.replace("/video/", "/poster/"), timeout=30)
    assert (poster.status_code, poster.content[:2]) == (200, b"\xff\xd8")
    # One download from Scenario: the archive task's. The preview read the bucket only.
    assert len(scenario_emulator.store.requests("^/_files/")) == 1


@pytest.fixture(scope="module")
def credentials_run(deployment: Deployment) -> str:
    """A finished run of the test DAG ``log_credentials`` (its task logs the fallback secret and the
    header); the preview tests hang hostile XComs on its task instance."""
    run_id = deployment.trigger("log_credentials", {})
    assert finished_run(deployment, "log_credentials", run_id) == "success", deployment.logs_of(
        "log_credentials"
    )
    return run_id


def test_the_fallback_secret_and_the_header_are_masked_in_the_task_log(
    deployment: Deployment, emulator: EmulatorServer, credentials_run: str
) -> None:
    credentials = json.loads(emulator.connection_uri())
    files = sorted((deployment.home / "logs").glob("dag_id=log_credentials/**/*.log*"))
    assert files
    logs = "\n".join(path.read_text(errors="replace") for path in files)  # the task's log, as the UI shows it
    assert "secret=***" in logs
    assert "header=Basic ***" in logs
    assert credentials["password"] not in logs
    token = base64.b64encode(f"{credentials['login']}:{credentials['password']}".encode()).decode()
    assert token not in logs


@contextlib.contextmanager
def metadata_service() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP service standing in for a cloud metadata endpoint: its URL and the paths asked of it."""
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = b'{"files": [], "secret": "instance-role-credentials"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def put_xcom(deployment: Deployment, dag_id: str, run_id: str, task_id: str, key: str, value: Any) -> None:
    """Write an XCom through the REST API, as any user allowed to edit the DAG's XComs can."""
    entries = (
        f"{deployment.api}/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
    )
    answer = deployment.session.patch(f"{entries}/xcomEntries/{key}", json={"value": value}, timeout=10)
    if answer.status_code == 404:
        answer = deployment.session.post(
            f"{entries}/xcomEntries", json={"key": key, "value": value}, timeout=10
        )
    assert answer.status_code in (200, 201), answer.text
    if answer.status_code == 200 and not AIRFLOW_V_3_2_PLUS:
        # Airflow 3.1's PATCH serializes the value twice (a reader then gets the text of an object, not the
        # object; 3.2 fixed it): the row is written as its POST writes it, as any writer of XComs can.
        import psycopg2

        with psycopg2.connect(deployment.database) as db, db.cursor() as cursor:
            cursor.execute(
                "UPDATE xcom SET value = %s::jsonb WHERE dag_id = %s AND run_id = %s AND task_id = %s "
                "AND key = %s AND map_index = -1",
                (json.dumps(json.dumps(value)), dag_id, run_id, task_id, key),
            )
            assert cursor.rowcount == 1


def hostile_archive(
    uri: str, manifest_uri: str, *, mime_type: str = "video/mp4", **record: Any
) -> dict[str, Any]:
    files = [
        {
            "asset_id": "asset_hostile",
            "job_id": "job_onlyinanxcom",
            "uri": uri,
            "size": 1,
            "sha256": "0" * 64,
            "mime_type": mime_type,
            "manifest_uri": manifest_uri,
        }
    ]
    return {"conn_id": "scenario_default", "storage_conn_id": None, "files": files, **record}


def test_an_xcom_rewritten_through_the_rest_api_reads_no_file_url_or_connection_outside_the_settings(
    deployment: Deployment, emulator: EmulatorServer, credentials_run: str, tmp_path: Path
) -> None:
    outside = tmp_path / "secrets" / "creds.mp4"
    outside.parent.mkdir()
    outside.write_text("aws_secret_access_key=outside-the-archive-roots")
    inside = deployment.home / "kling-archive" / "link-out.mp4"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.symlink_to(outside)  # inside the root by name, outside it in fact
    task = ("log_credentials", credentials_run, "log_credentials")
    where = f"{PREVIEW}/ti/{run_path('log_credentials', credentials_run)}/log_credentials/-1"
    video = f"{deployment.api}{PREVIEW}/video/{run_path('log_credentials', credentials_run)}/log_credentials/-1/asset_hostile"
    with metadata_service() as (metadata_url, asked):
        cases = {
            "a file outside the roots": hostile_archive(f"file://{outside}", f"file://{outside}"),
            "a link out of a root": hostile_archive(f"file://{inside}", f"{metadata_url}/latest/meta-data"),
            "an http URL": hostile_archive(f"{metadata_url}/video.mp4", f"{metadata_url}/manifest.json"),
            "another storage connection": hostile_archive(
                f"file://{inside}", f"file://{inside}", storage_conn_id="aws_other_team"
            ),
        }
        for case, record in cases.items():
            emulator.store.reset()
            put_xcom(deployment, *task, "scenario_archive", record)
            answer = deployment.session.get(video, timeout=30)
            assert answer.status_code in (403, 404), (case, answer.status_code)
            assert "outside-the-archive-roots" not in answer.text, case
            page = deployment.session.get(f"{deployment.api}{where}", timeout=30)
            assert page.status_code == 200, case
            assert "not served" in page.text, case
            assert "outside-the-archive-roots" not in page.text, case
            assert "instance-role" not in page.text, case
        assert asked == []  # the api-server never asked the "metadata service"

        # A job id and another of the api-server's connections, named by XComs: Scenario is not asked.
        emulator.store.reset()
        put_xcom(
            deployment, *task, "scenario_archive", hostile_archive(f"file://{outside}", f"file://{outside}")
        )
        put_xcom(deployment, *task, "scenario_job_id", "job_onlyinanxcom")
        put_xcom(deployment, *task, "scenario_conn_id", "scenario_other")
        page = deployment.session.get(f"{deployment.api}{where}", timeout=30).text
        assert "connection &#x27;scenario_other&#x27; is not one the preview may use" in page
        assert emulator.store.requests("job_onlyinanxcom") == []


def test_a_label_of_another_type_is_never_served_as_such(
    deployment: Deployment, emulator: EmulatorServer, credentials_run: str, unarchived_run: tuple[str, str]
) -> None:
    page = deployment.home / "kling-archive" / "stored-script.mp4"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("<html><script>fetch('/api/v2/connections')</script></html>")
    task = ("log_credentials", credentials_run, "log_credentials")
    put_xcom(deployment, *task, "scenario_conn_id", "scenario_default")
    video = f"{deployment.api}{PREVIEW}/video/{run_path('log_credentials', credentials_run)}/log_credentials/-1/asset_hostile"
    for label in ("text/html", "image/svg+xml", "video/mp4"):
        put_xcom(
            deployment,
            *task,
            "scenario_archive",
            hostile_archive(f"file://{page}", f"file://{page}", mime_type=label),
        )
        answer = deployment.session.get(video, timeout=30)
        assert answer.status_code == 200, (label, answer.text)
        assert answer.headers["Content-Type"] == (
            "video/mp4" if label == "video/mp4" else "application/octet-stream"
        )
        assert (answer.headers.get("Content-Disposition") == "attachment") is (label != "video/mp4")
        assert answer.headers["Content-Security-Policy"] == "sandbox"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    # The storage host's Content-Type is not passed through either.
    run_id, asset_id = unarchived_run
    asset = emulator.store.assets[asset_id]
    asset.mime_type, original = "text/html", asset.mime_type
    try:
        answer = deployment.session.get(
            f"{deployment.api}{PREVIEW}/video/{run_path('kling_deferrable', run_id)}/lipsync/-1/{asset_id}",
            timeout=30,
        )
    finally:
        asset.mime_type = original
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.headers["Content-Security-Policy"] == "sandbox"


def test_a_manifest_over_the_read_limit_is_not_shown(deployment: Deployment, credentials_run: str) -> None:
    from airflow_kling.files.archive import MANIFEST_READ_LIMIT

    folder = deployment.home / "kling-archive" / "job_bigmanifest"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    manifest = folder / "manifest.json"
    task = ("log_credentials", credentials_run, "log_credentials")
    where = f"{PREVIEW}/ti/{run_path('log_credentials', credentials_run)}/log_credentials/-1"
    put_xcom(
        deployment,
        *task,
        "scenario_archive",
        hostile_archive(f"file://{folder / 'clip.mp4'}", f"file://{manifest}"),
    )
    for padding, shown in ((0, True), (MANIFEST_READ_LIMIT, False)):
        manifest.write_text(json.dumps({"files": [], "note": "written-by-someone", "padding": "x" * padding}))
        page = deployment.session.get(f"{deployment.api}{where}", timeout=30)
        assert page.status_code == 200, padding
        assert ("written-by-someone" in page.text) is shown, padding
        assert len(page.text) < MANIFEST_READ_LIMIT  # not the manifest, whole, in the page


def test_a_range_of_thousands_of_digits_is_no_server_error(deployment: Deployment, text_run: str) -> None:
    archived = xcom(deployment, PIPELINE, text_run, "archive", "scenario_archive")["files"][0]
    url = f"{deployment.api}{PREVIEW}/video/{run_path(PIPELINE, text_run)}/lipsync/-1/{archived['asset_id']}"
    answer = deployment.session.get(url, headers={"Range": f"bytes={'9' * 5000}-"}, timeout=30)
    assert answer.status_code == 200  # a range this server does not honour: the whole file (RFC 9110)
    assert len(answer.content) == archived["size"]


REVIEW_DAG = "kling_lipsync_review"


def review_in_the_browser(
    browser: Any, deployment: Deployment, run_id: str, option: str, comment: str
) -> None:
    """What a reviewer does: open the run's required action, follow its link to the clip's preview, watch
    the clip play, come back, write a comment and choose ``option``."""
    from selenium.webdriver.common.by import By

    browser.switch_to.default_content()
    action_page = (
        f"{deployment.api}/dags/{REVIEW_DAG}/runs/{quote(run_id, safe='')}/tasks/review/required_actions"
    )
    wait_for(
        lambda: (
            deployment.session.get(
                f"{deployment.api}/api/v2/dags/{REVIEW_DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/review/-1/hitlDetails",
                timeout=30,
            ).status_code
            == 200
        ),
        "the review to ask",
        limit=RUN_LIMIT,
    )
    browser.get(action_page)
    link = wait_for(
        lambda: [a for a in browser.find_elements(By.TAG_NAME, "a") if "Watch the clip" in a.text],
        "the action's link to the preview",
        limit=RUN_LIMIT,
    )[0]
    preview = f"/dags/{REVIEW_DAG}/runs/{quote(run_id, safe='')}/tasks/archive/plugin/kling-lipsync-preview"
    assert link.get_attribute("href") == f"{deployment.api}{preview}"
    asked_at = time.monotonic()
    panel = browser.find_element(By.TAG_NAME, "body").text
    assert re.search(r"\d+(\.\d)? (kB|MB), SHA-256", panel), panel  # the clip's facts in human units
    screenshot(browser, f"review-required-action-{option.lower()}")
    browser.get(link.get_attribute("href"))  # the link, followed (the UI opens markdown links in a new tab)
    enter_preview_frame(browser)
    video = wait_for(lambda: browser.find_element(By.TAG_NAME, "video"), "the player")
    wait_for(lambda: browser.execute_script("return arguments[0].readyState", video) >= 2, "the clip to play")
    clip_name = browser.find_element(By.TAG_NAME, "h2").text.split(" · ")[0]
    assert clip_name.endswith(".kling.mp4"), clip_name  # the card is named after the clip's file
    browser.switch_to.default_content()
    # The review task's own preview tab shows the clip it asks about, and plays it.
    browser.get(
        f"{deployment.api}/dags/{REVIEW_DAG}/runs/{quote(run_id, safe='')}/tasks/review/plugin/kling-lipsync-preview"
    )
    enter_preview_frame(browser)
    video = wait_for(lambda: browser.find_element(By.TAG_NAME, "video"), "the review tab's player")
    wait_for(lambda: browser.execute_script("return arguments[0].readyState", video) >= 2, "the clip to play")
    assert browser.find_element(By.TAG_NAME, "h2").text.startswith(clip_name)
    browser.switch_to.default_content()
    screenshot(browser, f"review-task-preview-tab-{option.lower()}")
    # Browse > Required actions: the subject starts with what tells clips apart.
    browser.get(f"{deployment.api}/required_actions")
    wait_for(
        lambda: clip_name in browser.find_element(By.TAG_NAME, "body").text, "the clip's name in the list"
    )
    screenshot(browser, f"required-actions-list-{option.lower()}")
    # A person watches the clip; an answer within seconds of the pause can meet an Airflow scheduler race.
    time.sleep(max(0.0, asked_at + 10 - time.monotonic()))
    browser.get(action_page)
    field = wait_for(lambda: browser.find_element(By.NAME, "element_comment"), "the comment field")
    wait_for(field.is_displayed, "the comment field to show")
    field.send_keys(comment)
    approve = wait_for(lambda: buttons(browser, "Approve"), "the Approve button")[0]
    reject = wait_for(lambda: buttons(browser, "Reject"), "the Reject button")[0]
    look = ("background-color", "color", "border-color")  # the two answers offered alike
    assert [approve.value_of_css_property(key) for key in look] == [
        reject.value_of_css_property(key) for key in look
    ]
    screenshot(browser, f"review-panel-answered-with-comment-{option.lower()}")
    wait_for(lambda: buttons(browser, option), f"the {option} button")[0].click()
    wait_for(
        lambda: deployment.get(
            f"/dags/{REVIEW_DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/review/-1/hitlDetails"
        )["response_received"],
        "the answer to be received",
    )
    screenshot(browser, f"review-answered-{option.lower()}")


@pytest.mark.every_line  # the approval on the oldest line too (3.1 answers through its HITL trigger)
def test_a_reviewer_approves_a_clip_in_the_browser_and_it_is_published(
    browser: Any, deployment: Deployment, scenario_emulator: EmulatorServer
) -> None:
    published = deployment.home / "kling-published"
    before = deployment.get("/dags/kling_lipsync_on_publish/dagRuns")["total_entries"]
    run_id = deployment.trigger(REVIEW_DAG, {"text": "Approve me", "publish_to": str(published)})
    review_in_the_browser(browser, deployment, run_id, "Approve", "Lips and voice match")
    assert finished_run(deployment, REVIEW_DAG, run_id) == "success", deployment.logs_of(REVIEW_DAG)
    (job_id,) = scenario_emulator.store.jobs
    archive = deployment.home / "kling-archive" / job_id
    review = json.loads((archive / "manifest.json").read_text())["review"]
    assert (review["decision"], review["by"], review["comment"]) == (
        "approved",
        "admin",
        "Lips and voice match",
    )
    assert [path.name for path in (published / job_id).iterdir() if path.suffix == ".mp4"]
    # The preview shows the verdict in a row of its own: who, and the comment.
    browser.get(
        f"{deployment.api}/dags/{REVIEW_DAG}/runs/{quote(run_id, safe='')}/tasks/archive/plugin/kling-lipsync-preview"
    )
    enter_preview_frame(browser)
    from selenium.webdriver.common.by import By

    rows = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in browser.find_elements(By.CSS_SELECTOR, "table tr")
    }
    assert rows["Review"].startswith("approved by admin, "), rows
    assert rows["Review"].endswith("\u201cLips and voice match\u201d"), rows
    browser.switch_to.default_content()
    screenshot(browser, "preview-after-approve")
    wait_for(
        lambda: deployment.get("/dags/kling_lipsync_on_publish/dagRuns")["total_entries"] == before + 1,
        "the published asset's DAG to run",
        limit=RUN_LIMIT,
    )


def test_a_reviewer_rejects_a_clip_in_the_browser_and_nothing_is_published(
    browser: Any, deployment: Deployment, scenario_emulator: EmulatorServer
) -> None:
    published = deployment.home / "kling-published"
    run_id = deployment.trigger(REVIEW_DAG, {"text": "Reject me", "publish_to": str(published)})
    review_in_the_browser(browser, deployment, run_id, "Reject", "The lips drift after two seconds")
    assert finished_run(deployment, REVIEW_DAG, run_id) == "success", deployment.logs_of(REVIEW_DAG)
    (job_id,) = scenario_emulator.store.jobs
    review = json.loads((deployment.home / "kling-archive" / job_id / "manifest.json").read_text())["review"]
    assert (review["decision"], review["comment"]) == ("rejected", "The lips drift after two seconds")
    assert not (published / job_id).exists()
    task = deployment.get(f"/dags/{REVIEW_DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/review")
    assert task["state"] == "skipped"
