"""The preview's FastAPI app, mounted by the api-server at :data:`~airflow_kling.plugins.preview.URL_PREFIX`.

Every route is behind Airflow's own authentication and authorization: the caller must be allowed to read
the task instances of the DAG named in the path (``requires_access_dag("GET", TASK_INSTANCE)``, the check
Airflow's own task-instance endpoints make), so an anonymous request is answered 401 and a user without
access to that DAG 403. Ids in the path are validated, and a video is only ever one the task's own XComs
name: an archived file (streamed from its storage, local or any fsspec store) or the job's output asset
(streamed from a fresh signed URL fetched here, which never reaches the page).
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
from airflow_kling.jobs import JobStatus, is_terminal, job_asset_ids
from airflow_kling.plugins.clips import Clip, load_clips, run_exists
from airflow_kling.plugins.page import CONTENT_SECURITY_POLICY, ClipView, render_page
from airflow_kling.plugins.ranges import CHUNK, UnsatisfiableRange, parse_range, read_range
from airflow_kling.storage import io_path, storage_path
from airflow_kling.version_compat import AirflowNotFoundException
from airflow_kling.xcoms import ArchivedFileRecord

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
        return _stream_archived(archived, clip.storage_conn_id, range_header)
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
    try:
        with io_path(storage_path(archived["uri"], clip.storage_conn_id)).open("rb") as source:
            image = poster_frame(source)
    except (OSError, MediaError) as error:
        raise HTTPException(404, f"No poster frame for asset {asset_id}: {type(error).__name__}") from None
    return Response(
        image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600", **NO_SNIFF}
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
    archived = next((item for item in clip.files if item["mime_type"].startswith("video/")), None)
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
        poster_path=f"{root}/poster/{where}" if archived is not None else None,
        video_origin="archive" if archived is not None else "scenario",
    )


ENDED_JOBS_KEPT = 1024
"""Ended jobs an api-server process keeps in memory (an ended job no longer changes: a page reloaded, a batch
page of many clips, a player's range requests ask Scenario for each job once). Running jobs are always read."""
_ended_jobs: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_ended_jobs_lock = threading.Lock()  # the routes run in a thread pool


def _read_job(clip: Clip) -> tuple[dict[str, Any] | None, str | None]:
    from airflow_kling.hooks.scenario import ScenarioHook

    key = (clip.conn_id, clip.job_id)
    with _ended_jobs_lock:
        if key in _ended_jobs:
            _ended_jobs.move_to_end(key)
            return _ended_jobs[key], None
    try:
        job = ScenarioHook(clip.conn_id).get_job(clip.job_id)
    except (ScenarioError, AirflowNotFoundException) as error:
        return None, f"Could not read job {clip.job_id} from Scenario ({clip.conn_id}): {error}"
    if is_terminal(str(job.get("status"))):
        with _ended_jobs_lock:
            _ended_jobs[key] = job
            while len(_ended_jobs) > ENDED_JOBS_KEPT:
                _ended_jobs.popitem(last=False)
    return job, None


def _read_manifest(clip: Clip) -> dict[str, Any] | None:
    import json

    if not clip.files:
        return None
    try:
        text = io_path(storage_path(clip.files[0]["manifest_uri"], clip.storage_conn_id)).read_text()
        manifest = json.loads(text)
    except (OSError, ValueError) as error:
        log.info("No manifest for job %s: %s", clip.job_id, type(error).__name__)
        return None
    return manifest if isinstance(manifest, dict) else None


def _find_asset(
    session: Any, dag_id: str, run_id: str, task_id: str, map_index: str, asset_id: str
) -> tuple[Clip, ArchivedFileRecord | None]:
    """The clip of this task instance that made ``asset_id``, and its archived file when there is one.
    Only an asset the task's own XComs (or its job) name is ever served: anything else is a 404."""
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


def _stream_archived(
    archived: ArchivedFileRecord, storage_conn_id: str | None, range_header: str | None
) -> Response:
    path = io_path(storage_path(archived["uri"], storage_conn_id))
    try:
        size = int(path.stat().st_size)
    except FileNotFoundError:
        raise HTTPException(404, f"The archived file is no longer at {archived['uri']}") from None
    try:
        byte_range = parse_range(range_header, size)
    except UnsatisfiableRange:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **NO_SNIFF})
    start, length = (byte_range.start, byte_range.length) if byte_range else (0, size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(length),
        "Cache-Control": "private",
        **NO_SNIFF,
    }
    if byte_range is not None:
        headers["Content-Range"] = byte_range.content_range
    return StreamingResponse(
        read_range(path.open("rb"), start, length),
        status_code=206 if byte_range else 200,
        media_type=archived["mime_type"],
        headers=headers,
    )


def _stream_from_scenario(clip: Clip, asset_id: str, range_header: str | None) -> Response:
    from airflow_kling.hooks.scenario import ScenarioHook
    from airflow_kling.transfers.downloads import open_asset_file

    hook = ScenarioHook(clip.conn_id)
    try:
        response = open_asset_file(hook, hook.get_asset(asset_id), range_header)
    except ScenarioError as error:
        raise HTTPException(502, f"Scenario did not give the file of asset {asset_id}: {error}") from None
    passed_on = {
        name: response.headers[name]
        for name in ("Content-Length", "Content-Range")
        if name in response.headers
    }
    return StreamingResponse(
        _relay(response, asset_id),
        status_code=response.status_code,
        media_type=response.headers.get("Content-Type") or "video/mp4",
        headers={**passed_on, "Accept-Ranges": "bytes", "Cache-Control": "private", **NO_SNIFF},
    )


def _relay(response: requests.Response, asset_id: str) -> Iterator[bytes]:
    try:
        yield from response.iter_content(CHUNK)
    except requests.RequestException as error:  # the player asks again from where it stopped
        log.warning("Streaming asset %s to the preview stopped: %s", asset_id, type(error).__name__)
    finally:
        response.close()
