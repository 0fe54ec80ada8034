"""The preview's FastAPI app, mounted by the api-server at :data:`~airflow_kling.plugins.preview.URL_PREFIX`.

Every route is behind Airflow's own authentication and authorization: the caller must be allowed to read
the task instances of the DAG named in the path (``requires_access_dag("GET", TASK_INSTANCE)``, the check
Airflow's own task-instance endpoints make), so an anonymous request is answered 401 and a user without
access to that DAG 403. Ids in the path are validated, and a video is only ever one the task's own XComs
name: an archived file (streamed from its storage, local or any fsspec store) or the job's output asset
(streamed from a fresh signed URL fetched here, which never reaches the page). What an XCom names is a claim:
files are read only under the allowed archive roots, Scenario and object stores only through allowed
connections (:mod:`airflow_kling.plugins.trust`), and only MP4 and QuickTime bodies are sent as video.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time.
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import requests
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from airflow_kling.exceptions import MediaError, ScenarioError
from airflow_kling.jobs.status import JobStatus, is_terminal, job_asset_ids
from airflow_kling.jobs.xcoms import ArchivedFileRecord
from airflow_kling.plugins.clips import Clip, load_clips, run_exists
from airflow_kling.plugins.page import CONTENT_SECURITY_POLICY, ClipView, render_page
from airflow_kling.plugins.ranges import CHUNK, UnsatisfiableRange, parse_range, read_range
from airflow_kling.plugins.trust import UntrustedValue, playable_type, preview_trust
from airflow_kling.version_compat import AirflowNotFoundException

log = logging.getLogger(__name__)

# Airflow's own rules for ids (ASCII: the ids these pages link are Airflow's and Scenario's).
DagId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]+$", max_length=250)]
RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.~:+-]+$", max_length=250)]
TaskId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]+$", max_length=250)]
# The UI leaves the href's "{MAP_INDEX}" as it is on the page of a task that is not mapped.
MapIndex = Annotated[str, Path(pattern=r"^(-1|\d{1,9}|\{MAP_INDEX\})$")]
AssetId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]+$", max_length=128)]

READ_TASK_INSTANCES = [Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))]
NO_SNIFF = {"X-Content-Type-Options": "nosniff"}
MEDIA_HEADERS = {**NO_SNIFF, "Content-Security-Policy": "sandbox"}

app = FastAPI(title="Kling Lipsync preview", docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(RequestValidationError)
async def invalid_path(request: Request, error: RequestValidationError) -> JSONResponse:
    """HTTP 422 naming each bad part of the path and its rule, without echoing what was sent."""
    problems = sorted(
        {f"{'.'.join(str(part) for part in item['loc'][1:])}: {item['msg']}" for item in error.errors()}
    )
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422, headers=NO_SNIFF)


@app.get("/ti/{dag_id}/{run_id}/{task_id}/{map_index}", dependencies=READ_TASK_INSTANCES)
def task_instance_page(
    request: Request, dag_id: DagId, run_id: RunId, task_id: TaskId, map_index: MapIndex, session: SessionDep
) -> HTMLResponse:
    """The clips one task instance ran or archived (every map index of a mapped task for ``-1``)."""
    index = _map_index(map_index)
    clips = [clip for clip in _clips(session, dag_id, run_id) if clip.made_by(task_id, index)]
    return _page(
        request,
        dag_id,
        run_id,
        f"Lipsync preview: {task_id}" + (f" [{index}]" if index >= 0 else ""),
        clips,
        "This task ran no Kling Lipsync job and archived none: the preview shows the lipsync and archive "
        "tasks of this provider.",
    )


@app.get("/run/{dag_id}/{run_id}", dependencies=READ_TASK_INSTANCES)
def run_page(request: Request, dag_id: DagId, run_id: RunId, session: SessionDep) -> HTMLResponse:
    """Every clip of a DAG run: one entry per lipsync job (per clip of a mapped batch)."""
    return _page(
        request,
        dag_id,
        run_id,
        f"Lipsync videos of {run_id}",
        _clips(session, dag_id, run_id),
        "This run has no Kling Lipsync job (yet).",
    )


@app.get("/video/{dag_id}/{run_id}/{task_id}/{map_index}/{asset_id}", dependencies=READ_TASK_INSTANCES)
def video(
    dag_id: DagId,
    run_id: RunId,
    task_id: TaskId,
    map_index: MapIndex,
    asset_id: AssetId,
    session: SessionDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """The video, answering ``Range`` requests (HTTP 206) so that the player can seek."""
    clip, archived = _find_asset(session, dag_id, run_id, task_id, map_index, asset_id)
    if archived is not None:
        return _stream_archived(archived, clip, range_header)
    return _stream_from_scenario(clip, asset_id, range_header)


@app.get("/poster/{dag_id}/{run_id}/{task_id}/{map_index}/{asset_id}", dependencies=READ_TASK_INSTANCES)
def poster(
    dag_id: DagId, run_id: RunId, task_id: TaskId, map_index: MapIndex, asset_id: AssetId, session: SessionDep
) -> Response:
    """The archived video's first picture as a JPEG, for the player's ``poster``."""
    from airflow_kling.media.poster import poster_frame

    clip, archived = _find_asset(session, dag_id, run_id, task_id, map_index, asset_id)
    if archived is None:
        raise HTTPException(404, "A poster frame is made from an archived video only")
    path = _archived_path(archived, clip)
    try:
        with path.open("rb") as source:
            image = poster_frame(source)
    except (OSError, MediaError) as error:
        raise HTTPException(404, f"No poster frame for asset {asset_id}: {type(error).__name__}") from None
    return Response(
        image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600", **MEDIA_HEADERS}
    )


# -- what the routes share ----------------------------------------------------------------------------------


def _map_index(text: str) -> int:
    return -1 if text.startswith("{") else int(text)


def _clips(session: Any, dag_id: str, run_id: str) -> list[Clip]:
    if not run_exists(session, dag_id, run_id):
        raise HTTPException(404, f"DAG {dag_id} has no run {run_id}")
    return load_clips(session, dag_id, run_id)


def _page(
    request: Request, dag_id: str, run_id: str, title: str, clips: list[Clip], empty: str
) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    views = [_view(root, dag_id, run_id, clip) for clip in clips]
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store", **NO_SNIFF}
    return HTMLResponse(render_page(title, views, empty), headers=headers)


def _view(root: str, dag_id: str, run_id: str, clip: Clip) -> ClipView:
    job, problem = _read_job(clip)
    manifest = _read_manifest(clip)
    archived = next((item for item in clip.files if playable_type(item["mime_type"])), None)
    if archived is not None:
        try:
            preview_trust().archived_path(archived["uri"], clip.storage_conn_id)
        except UntrustedValue as error:
            refusal = f"The archived video is not served: {error}"
            return ClipView(
                clip, job, f"{problem}; {refusal}" if problem else refusal, None, None, None, None
            )
    outputs = job_asset_ids(job) if job is not None and job.get("status") == JobStatus.SUCCESS else []
    asset_id = archived["asset_id"] if archived is not None else (outputs[0] if outputs else None)
    if asset_id is None:
        return ClipView(clip, job, problem, manifest, None, None, None)
    where = "/".join(quote(part, safe="") for part in (dag_id, run_id, clip.owner_task_id))
    where = f"{where}/{clip.map_index}/{quote(asset_id, safe='')}"
    return ClipView(
        clip,
        job,
        problem,
        manifest,
        video_path=f"{root}/video/{where}",
        poster_path=f"{root}/poster/{where}"
        if archived is not None and archived["mime_type"].startswith("video/")
        else None,
        video_origin="archive" if archived is not None else "scenario",
    )


ENDED_JOBS_KEPT = 1024
"""Ended jobs an api-server process keeps in memory (an ended job no longer changes: a page reloaded, a batch
page of many clips, a player's range requests ask Scenario for each job once). Running jobs are always read."""
_ended_jobs: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_ended_jobs_lock = threading.Lock()  # the routes run in a thread pool


def _read_job(clip: Clip) -> tuple[dict[str, Any] | None, str | None]:
    from airflow_kling.hooks.scenario import ScenarioHook

    try:
        conn_id = preview_trust().scenario_conn_id(clip.conn_id)
    except UntrustedValue as error:
        return None, f"Job {clip.job_id} is not read: {error}"
    key = (conn_id, clip.job_id)
    with _ended_jobs_lock:
        if key in _ended_jobs:
            _ended_jobs.move_to_end(key)
            return _ended_jobs[key], None
    try:
        job = ScenarioHook(conn_id).get_job(clip.job_id)
    except (ScenarioError, AirflowNotFoundException) as error:
        return None, f"Could not read job {clip.job_id} from Scenario ({conn_id}): {error}"
    if is_terminal(str(job.get("status"))):
        with _ended_jobs_lock:
            _ended_jobs[key] = job
            while len(_ended_jobs) > ENDED_JOBS_KEPT:
                _ended_jobs.popitem(last=False)
    return job, None


def _read_manifest(clip: Clip) -> dict[str, Any] | None:
    from airflow_kling.files.archive import read_manifest

    if not clip.files:
        return None
    try:
        path = preview_trust().archived_path(clip.files[0]["manifest_uri"], clip.storage_conn_id)
        return read_manifest(path)
    except UntrustedValue as error:
        log.warning("The manifest of job %s is not read: %s", clip.job_id, error)
        return None
    except OSError as error:
        log.info("No manifest for job %s: %s", clip.job_id, type(error).__name__)
        return None


def _find_asset(
    session: Any, dag_id: str, run_id: str, task_id: str, map_index: str, asset_id: str
) -> tuple[Clip, ArchivedFileRecord | None]:
    """The clip of this task instance that made ``asset_id``, and its archived file when there is one.

    Only an asset the task's own XComs (or its job) name is ever served: anything else is a 404.
    """
    index = _map_index(map_index)
    clips = [clip for clip in _clips(session, dag_id, run_id) if clip.made_by(task_id, index)]
    for clip in clips:
        archived = clip.archived_file(asset_id)
        if archived is not None:
            return clip, archived
    for clip in clips:
        job, _ = _read_job(clip)
        if job is not None and asset_id in job_asset_ids(job):
            return clip, None
    raise HTTPException(404, f"Task {task_id} of run {run_id} made no asset {asset_id}")


def _archived_path(archived: ArchivedFileRecord, clip: Clip) -> Any:
    """Where an archived file may be read, or HTTP 403 naming why not (nothing is read)."""
    try:
        return preview_trust().archived_path(archived["uri"], clip.storage_conn_id)
    except UntrustedValue as error:
        log.warning("The preview refused asset %s of job %s: %s", archived["asset_id"], clip.job_id, error)
        raise HTTPException(
            403, f"The archive of asset {archived['asset_id']} is not served: {error}"
        ) from None


def _media(mime_type: str | None, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The media type a body is sent as.

    A playable video type as it is, anything else as a download (never as a type a browser would render on
    Airflow's origin).
    """
    playable = playable_type(mime_type)
    if playable is not None:
        return playable, {**headers, **MEDIA_HEADERS}
    return "application/octet-stream", {**headers, **MEDIA_HEADERS, "Content-Disposition": "attachment"}


def _stream_archived(archived: ArchivedFileRecord, clip: Clip, range_header: str | None) -> Response:
    path = _archived_path(archived, clip)
    try:
        size = int(path.stat().st_size)
    except FileNotFoundError:
        raise HTTPException(404, f"The archived file is no longer at {archived['uri']}") from None
    try:
        byte_range = parse_range(range_header, size)
    except UnsatisfiableRange:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **MEDIA_HEADERS})
    start, length = (byte_range.start, byte_range.length) if byte_range else (0, size)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(length), "Cache-Control": "private"}
    if byte_range is not None:
        headers["Content-Range"] = byte_range.content_range
    media_type, headers = _media(archived["mime_type"], headers)
    return StreamingResponse(
        read_range(path.open("rb"), start, length),
        status_code=206 if byte_range else 200,
        media_type=media_type,
        headers=headers,
    )


def _stream_from_scenario(clip: Clip, asset_id: str, range_header: str | None) -> Response:
    from airflow_kling.files.downloads import open_asset_file
    from airflow_kling.hooks.scenario import ScenarioHook

    try:
        hook = ScenarioHook(preview_trust().scenario_conn_id(clip.conn_id))
    except UntrustedValue as error:
        raise HTTPException(403, f"Asset {asset_id} is not served: {error}") from None
    try:
        response = open_asset_file(hook, hook.get_asset(asset_id), range_header)
    except ScenarioError as error:
        raise HTTPException(502, f"Scenario did not give the file of asset {asset_id}: {error}") from None
    passed_on = {
        name: response.headers[name]
        for name in ("Content-Length", "Content-Range")
        if name in response.headers
    }
    media_type, headers = _media(
        response.headers.get("Content-Type"),
        {**passed_on, "Accept-Ranges": "bytes", "Cache-Control": "private"},
    )
    return StreamingResponse(
        _relay(response, asset_id), status_code=response.status_code, media_type=media_type, headers=headers
    )


def _relay(response: requests.Response, asset_id: str) -> Iterator[bytes]:
    try:
        yield from response.iter_content(CHUNK)
    except requests.RequestException as error:  # the player asks again from where it stopped
        log.warning("Streaming asset %s to the preview stopped: %s", asset_id, type(error).__name__)
    finally:
        response.close()
