"""The emulator's HTTP surface.

The Scenario API under ``/v1``, signed file and part URLs, and an admin API under ``/_emulator`` for fault
injection and inspection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_kling.emulator.chaos import Chaos
from airflow_kling.emulator.store import (
    AUTHOR_ID,
    DEFAULT_OWNER_ID,
    ApiError,
    Asset,
    Fault,
    Job,
    Store,
    Upload,
)
from airflow_kling.jobs.status import api_date, parse_api_date
from airflow_kling.media.limits import VideoLimits
from airflow_kling.models import known_specs
from airflow_kling.models.schema import descriptor_inputs, input_problems

if TYPE_CHECKING:
    from airflow_kling.models.spec import ModelSpec

STORE_KEY: web.AppKey[Store] = web.AppKey("store", Store)
FILE_FAULT_KEY: web.RequestKey[str] = web.RequestKey("file_fault", str)
FILE_FAULTS = ("truncate", "ignore-range", "wrong-range")
"""Faults a file download meets in its body (:class:`~airflow_kling.emulator.store.Fault`'s ``action``)."""
LOG_ENTRY_KEY: web.RequestKey[dict[str, Any]] = web.RequestKey("log_entry", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DRY_RUN_STATUS = 269
PAGE_SIZE_RANGE = (1, 100)


def create_app(store: Store) -> web.Application:
    """The aiohttp application of one emulator."""
    app = web.Application(
        middlewares=[_log_requests, _inject_faults, _errors, _authenticate], client_max_size=0
    )
    app[STORE_KEY] = store
    app.on_response_prepare.append(_log_status)
    app.router.add_post("/v1/generate/custom/{model_id}", run_model)
    app.router.add_get("/v1/models/{model_id}", get_model)
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{job_id}", get_job)
    app.router.add_post("/v1/jobs/{job_id}/action", job_action)
    app.router.add_post("/v1/uploads", create_upload)
    app.router.add_get("/v1/uploads/{upload_id}", get_upload)
    app.router.add_post("/v1/uploads/{upload_id}/action", upload_action)
    app.router.add_get("/v1/assets/{asset_id}", get_asset)
    app.router.add_post("/v1/assets/{asset_id}/download", download_asset)
    app.router.add_put("/_uploads/{upload_id}/{number}", put_part)
    app.router.add_get("/_files/{asset_id}/{file_name}", get_file)
    app.router.add_get("/jobs/{job_id}", web_job_page)
    app.router.add_get("/_emulator/health", admin_health)
    app.router.add_get("/_emulator/requests", admin_requests)
    app.router.add_delete("/_emulator/requests", admin_reset)
    app.router.add_post("/_emulator/reset", admin_reset)
    app.router.add_post("/_emulator/faults", admin_faults)
    app.router.add_post("/_emulator/jobs/next", admin_next_jobs)
    app.router.add_post("/_emulator/jobs/{job_id}", admin_job)
    app.router.add_post("/_emulator/settings", admin_settings)
    app.router.add_post("/_emulator/models/{model_id}", admin_model)
    app.router.add_get("/_emulator/chaos", admin_chaos)
    return app


def _store(request: web.Request) -> Store:
    return request.app[STORE_KEY]


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, details: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"apiError": message, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=status, headers=headers)


# -- middlewares --------------------------------------------------------------------------------------------


@web.middleware
async def _log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_emulator"):
        return await handler(request)
    entry: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "at": time.time(),
        "authorization": "Authorization" in request.headers,
        "via": request.headers.get("Via"),  # the proxies the request came through, if any
        "client_port": (request.transport.get_extra_info("peername") or ("", 0))[1]
        if request.transport
        else 0,
        "status": None,
    }
    _store(request).log_request(entry)
    request[LOG_ENTRY_KEY] = entry
    return await handler(request)


async def _log_status(request: web.Request, response: web.StreamResponse) -> None:
    """Record the status actually sent (a file response decides on 200 or 206 only as it starts)."""
    entry = request.get(LOG_ENTRY_KEY)
    if entry is not None:
        entry["status"] = response.status


@web.middleware
async def _inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_emulator"):
        return await handler(request)
    fault = _store(request).take_fault(request.method, request.path)
    if fault is None:
        return await handler(request)
    if fault.after:
        return await _after_effect(request, handler, fault)
    if fault.action == "hold":
        await asyncio.sleep(fault.delay)
        if request.transport is None or request.transport.is_closing():
            raise asyncio.CancelledError  # the client gave up while it was queued: never forwarded
        return await handler(request)
    if fault.delay:
        await request.read()  # the server has the request, as a real one would, before the answer is late
        await asyncio.sleep(fault.delay)
    if fault.action == "drop":
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if fault.action in FILE_FAULTS:
        request[FILE_FAULT_KEY] = fault.action
        return await handler(request)
    if fault.action in ("flood", "flood-unsized"):
        return await _flood(request, fault.size, declared=fault.action == "flood")
    if fault.status is None:
        return await handler(request)
    if fault.body is not None:
        return web.json_response(fault.body, status=fault.status, headers=fault.headers)
    return _error(fault.status, f"Injected fault: HTTP {fault.status}", fault.headers)


async def _flood(request: web.Request, size: int, *, declared: bool) -> web.StreamResponse:
    """A 200 with a JSON object of ``size`` bytes, sent a chunk at a time (the emulator holds one chunk)."""
    head, tail = b'{"job": {"jobId": "job_flood", "padding": "', b'"}}'
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    if declared:
        response.content_length = size
    await response.prepare(request)
    chunk = b"x" * 65536
    await response.write(head)
    left = max(0, size - len(head) - len(tail))
    while left > 0:
        await response.write(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    await response.write(tail)
    await response.write_eof()
    return response


async def _after_effect(request: web.Request, handler: Handler, fault: Fault) -> web.StreamResponse:
    """Let the request take effect, then lose, delay or replace its answer."""
    response = await handler(request)
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.action == "drop":
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if fault.status is None:
        return response
    if fault.body is not None:
        return web.json_response(fault.body, status=fault.status, headers=fault.headers)
    return _error(
        fault.status, f"Injected fault after the request took effect: HTTP {fault.status}", fault.headers
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.message, details=exc.details)


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        config = _store(request).config
        expected = f"{config.api_key}:{config.api_secret}"
        if not _basic_credentials_match(request.headers.get("Authorization", ""), expected):
            return _error(401, "Unauthorized: wrong or missing API key and secret")
    elif request.path.startswith(("/_files/", "/_uploads/")) and "Authorization" in request.headers:
        # What S3 answers when a presigned URL also carries an Authorization header.
        return _error(400, "InvalidArgument: Only one auth mechanism allowed")
    return await handler(request)


def _basic_credentials_match(header: str, expected: str) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given, expected)


async def _json_body(request: web.Request) -> Any:
    if not request.body_exists:
        return {}
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON") from None


def _owner(request: web.Request) -> str:
    return request.query.get("projectId") or DEFAULT_OWNER_ID


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _storage_origin(request: web.Request) -> str:
    """Where signed file and part URLs point: the emulator itself unless configured otherwise."""
    return _store(request).config.storage_origin or _origin(request)


# -- renderers ----------------------------------------------------------------------------------------------


def render_job(store: Store, job: Job) -> dict[str, Any]:
    """A job as the API answers it (``GET /v1/jobs/{jobId}``)."""
    now = time.time()
    status, progress = store.job_state(job, now)
    history = store.status_history(job, status, now)
    metadata: dict[str, Any] = {"input": job.inputs}
    if status == "success" and job.output_asset_id:
        metadata["assetIds"] = [job.output_asset_id]
    if status == "failure":
        metadata["error"] = job.error or "The model could not process the inputs"
        if job.hint:
            metadata["hint"] = job.hint
    return {
        "jobId": job.id,
        "jobType": "custom",
        "status": status,
        "progress": progress,
        "metadata": metadata,
        "statusHistory": history,
        "createdAt": api_date(job.created_at),
        "updatedAt": history[-1]["date"] if history else api_date(job.created_at),
        "authorId": AUTHOR_ID,
        "ownerId": job.owner_id,
        "billing": {"cuCost": 0 if status in ("failure", "canceled") else job.cost, "cuDiscount": 0},
        "modelId": job.model_id,
    }


def render_asset(store: Store, asset: Asset, origin: str) -> dict[str, Any]:
    """An asset as the API answers it, its signed URL on ``origin``."""
    resource = f"{asset.id}/{asset.file_name}"
    metadata: dict[str, Any] = {
        "kind": asset.kind,
        "type": asset.source,
        "name": asset.file_name,
        "fileName": asset.file_name,
        "size": asset.properties.get("size"),
    }
    if asset.parent_job_id:
        metadata["parentJobId"] = asset.parent_job_id
    if asset.model_id:
        metadata["modelId"] = asset.model_id
    return {
        "id": asset.id,
        "url": f"{origin}/_files/{resource}?{store.signed_query(resource)}",
        "mimeType": asset.mime_type,
        "kind": asset.kind,
        "status": "success",
        "properties": dict(asset.properties),
        "metadata": metadata,
        "source": asset.source,
        "authorId": AUTHOR_ID,
        "ownerId": asset.owner_id,
        "createdAt": api_date(asset.created_at),
        "updatedAt": api_date(asset.created_at),
        "privacy": "private",
        "collectionIds": [],
        "tags": [],
        "editCapabilities": [],
    }


def render_upload(store: Store, upload: Upload, origin: str) -> dict[str, Any]:
    """An upload as the API answers it, its parts' signed URLs on ``origin``."""
    rendered: dict[str, Any] = {
        "id": upload.id,
        "status": upload.status,
        "kind": upload.kind,
        "source": "multipart",
        "fileName": upload.file_name,
        "originalFileName": upload.file_name,
        "contentType": upload.content_type,
        "fileSize": upload.file_size,
        "partsCount": upload.parts,
        "authorId": AUTHOR_ID,
        "ownerId": upload.owner_id,
        "createdAt": api_date(upload.created_at),
        "updatedAt": api_date(upload.updated_at),
    }
    if upload.status == "pending":
        expires = api_date(time.time() + store.config.url_ttl)
        rendered["parts"] = [
            {
                "number": number,
                "url": f"{origin}/_uploads/{upload.id}/{number}?{store.signed_query(f'{upload.id}/{number}')}",
                "expires": expires,
            }
            for number in range(1, upload.parts + 1)
        ]
    if upload.entity_id and upload.status != "failed":
        rendered["entityId"] = upload.entity_id
    if upload.error:
        rendered["errorMessage"] = upload.error
    return rendered


# -- API routes ---------------------------------------------------------------------------------------------


def _spec(model_id: str) -> ModelSpec:
    spec = known_specs().get(model_id)
    if spec is None:
        raise ApiError(404, f"Model {model_id} not found")
    return spec


def served_descriptor(store: Store, spec: ModelSpec) -> dict[str, Any]:
    """What ``GET /models/{modelId}`` answers: the spec's descriptor, with any admin override of its inputs."""
    descriptor = spec.descriptor()
    overrides = store.model_overrides.get(spec.model_id, {})
    for entry in descriptor["inputs"]:
        entry.update(overrides.get(entry["name"], {}))
    return descriptor


def validate_inputs(store: Store, spec: ModelSpec, inputs: Any) -> None:
    """Refuse (HTTP 400, naming the input) what the API would.

    The spec's own checks across inputs, the served descriptor's rules, and each file input's extension and
    picture size against the spec's media limits.
    """
    if not isinstance(inputs, dict):
        raise ApiError(400, "The request body must be a JSON object of the model's inputs")
    try:
        spec.check_inputs(inputs)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    problems = input_problems(descriptor_inputs(served_descriptor(store, spec)), inputs, store.find_asset)
    if problems:
        raise ApiError(400, "; ".join(problems))
    for name, limits in spec.media.items():
        asset = store.find_asset(str(inputs.get(name)))
        if asset is None:
            continue
        extension = "." + str(asset["file_name"]).rpartition(".")[2].lower()
        if extension not in limits.extensions:
            raise ApiError(400, f"{name} must be a {' or '.join(limits.extensions)} file, got {extension}")
        if not isinstance(limits, VideoLimits):
            continue
        for side in ("width", "height"):
            value = asset["properties"].get(side)
            if value is not None and not limits.min_side <= value <= limits.max_side:
                raise ApiError(
                    400, f"{name} {side} must be {limits.min_side}-{limits.max_side} px, got {value}"
                )


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{modelId}``: the model's descriptor, from its spec."""
    store = _store(request)
    return web.json_response({"model": served_descriptor(store, _spec(request.match_info["model_id"]))})


async def run_model(request: web.Request) -> web.Response:
    """``POST /v1/generate/custom/{modelId}``: check the inputs, then estimate (``dryRun``) or start a job."""
    store = _store(request)
    spec = _spec(request.match_info["model_id"])
    model_id = spec.model_id
    inputs = await _json_body(request)
    validate_inputs(store, spec, inputs)
    cost = spec.emulated_cost(inputs, store.find_asset)
    cost = int(cost) if float(cost).is_integer() else cost
    dry_run = request.query.get("dryRun")
    if dry_run is not None:
        if dry_run not in ("true", "api"):
            raise ApiError(400, "'dryRun' must be 'true' or 'api'")
        now = api_date(time.time())
        estimate_job = {
            "jobId": "job_dry_run",
            "jobType": "custom",
            "status": "pending",
            "progress": 0,
            "metadata": {"input": inputs},
            "statusHistory": [],
            "createdAt": now,
            "updatedAt": now,
        }
        body = {"job": estimate_job, "creativeUnitsCost": cost, "costDetails": {"custom-generation": cost}}
        return web.json_response(body, status=DRY_RUN_STATUS)
    job = store.create_job(model_id, inputs, _owner(request), cost)
    return web.json_response(
        {
            "job": render_job(store, job),
            "creativeUnitsCost": cost,
            "creativeUnitsDiscount": 0,
            "costDetails": {"custom-generation": cost},
        }
    )


async def get_job(request: web.Request) -> web.Response:
    """``GET /v1/jobs/{jobId}``: the job."""
    store = _store(request)
    return web.json_response({"job": render_job(store, store.job(request.match_info["job_id"]))})


async def list_jobs(request: web.Request) -> web.Response:
    """``GET /v1/jobs``: the caller's jobs, newest first, a page at a time."""
    store = _store(request)
    query = request.query
    try:
        page_size = int(query.get("pageSize", "50"))
        offset = int(query.get("paginationToken", "0").split(":")[0] or 0)
    except ValueError:
        raise ApiError(400, "'pageSize' and 'paginationToken' must be valid") from None
    low, high = PAGE_SIZE_RANGE
    if not low <= page_size <= high:
        raise ApiError(400, f"'pageSize' must be from {low} to {high}")
    created_after = _created_after(query)
    with store.lock:
        jobs = sorted(store.jobs.values(), key=lambda j: j.created_at, reverse=True)
    if "projectId" in query:
        jobs = [job for job in jobs if job.owner_id == query["projectId"]]
    if created_after is not None:
        jobs = [job for job in jobs if job.created_at > created_after]
    if "status" in query:
        jobs = [job for job in jobs if store.job_state(job)[0] == query["status"]]
    token = query.get("paginationToken", "")
    if store.empty_pages and offset > 0 and not token.endswith(":shown"):
        # The API may answer an empty page that still carries a token; clients must keep paging.
        return web.json_response({"jobs": [], "nextPaginationToken": f"{offset}:shown"})
    page = jobs[offset : offset + page_size]
    body: dict[str, Any] = {"jobs": [render_job(store, job) for job in page]}
    if offset + page_size < len(jobs):
        body["nextPaginationToken"] = str(offset + page_size)
    return web.json_response(body)


SORTED_BY_UPDATE = ("status", "type", "types", "workflowId")


def _created_after(query: Any) -> float | None:
    """``createdAfter`` as epoch seconds; refused beside the filters that sort by update date, as the API does."""
    raw = query.get("createdAfter")
    if raw is None:
        return None
    clashing = [name for name in SORTED_BY_UPDATE if name in query]
    if clashing:
        raise ApiError(400, f"'createdAfter' cannot be combined with {clashing}: use 'updatedAfter'")
    try:
        return parse_api_date(raw).timestamp()
    except ValueError:
        raise ApiError(400, f"'createdAfter' must be an ISO-8601 date, got {raw!r}") from None


async def job_action(request: web.Request) -> web.Response:
    """``POST /v1/jobs/{jobId}/action``: cancel a job."""
    store = _store(request)
    body = await _json_body(request)
    if body.get("action") != "cancel":
        raise ApiError(400, "'action' must be 'cancel'")
    job = store.cancel_job(request.match_info["job_id"])
    return web.json_response({"job": render_job(store, job)})


async def create_upload(request: web.Request) -> web.Response:
    """``POST /v1/uploads``: start a multipart upload."""
    store = _store(request)
    upload = store.create_upload(await _json_body(request), _owner(request))
    return web.json_response({"upload": render_upload(store, upload, _storage_origin(request))})


async def get_upload(request: web.Request) -> web.Response:
    """``GET /v1/uploads/{uploadId}``: an upload, validated once complete."""
    store = _store(request)
    upload = store.read_upload(request.match_info["upload_id"])
    return web.json_response({"upload": render_upload(store, upload, _storage_origin(request))})


async def upload_action(request: web.Request) -> web.Response:
    """``POST /v1/uploads/{uploadId}/action``: complete an upload."""
    store = _store(request)
    body = await _json_body(request)
    if body.get("action") != "complete":
        raise ApiError(400, "'action' is required and must be 'complete'")
    upload = store.complete_upload(request.match_info["upload_id"])
    return web.json_response({"upload": render_upload(store, upload, _storage_origin(request))})


async def get_asset(request: web.Request) -> web.Response:
    """``GET /v1/assets/{assetId}``: an asset, with a signed URL to its file."""
    store = _store(request)
    asset = store.asset(request.match_info["asset_id"])
    return web.json_response({"asset": render_asset(store, asset, _storage_origin(request))})


async def download_asset(request: web.Request) -> web.Response:
    """``POST /v1/assets/{assetId}/download``: a signed URL to an asset's file."""
    store = _store(request)
    asset = store.asset(request.match_info["asset_id"])
    body = await _json_body(request)
    target = body.get("targetFormat")
    if (
        target is not None
        and asset.kind in ("audio", "video")
        and target != asset.file_name.rsplit(".", 1)[-1]
    ):
        raise ApiError(
            400, f"Audio and video assets can only be downloaded in their stored format, not {target}"
        )
    rendered = render_asset(store, asset, _storage_origin(request))
    return web.json_response({"url": rendered["url"], "mimeType": asset.mime_type})


# -- storage routes (presigned URLs) ------------------------------------------------------------------------


async def put_part(request: web.Request) -> web.Response:
    """``PUT /_uploads/{uploadId}/{number}``: an upload part, to its signed URL."""
    store = _store(request)
    upload_id, number_text = request.match_info["upload_id"], request.match_info["number"]
    store.check_signature(
        f"{upload_id}/{number_text}", request.query.get("expires", ""), request.query.get("signature", "")
    )
    upload = store.upload(upload_id)
    number = int(number_text)
    if upload.status != "pending" or not 1 <= number <= upload.parts:
        raise ApiError(400, f"Part {number} cannot be uploaded to upload {upload_id} ({upload.status})")
    path = store.new_file(".part")
    with path.open("wb") as out:
        async for chunk in request.content.iter_chunked(1024 * 1024):
            out.write(chunk)
    with store.lock:
        previous = upload.received.get(number)
        upload.received[number] = path
    if previous is not None:
        previous.unlink(missing_ok=True)
    return web.Response(status=200, headers={"ETag": f'"{upload_id}-{number}"'})


async def get_file(request: web.Request) -> web.StreamResponse:
    """``GET /_files/{assetId}/{fileName}``: a file by its signed URL, with ``Range`` support."""
    store = _store(request)
    asset_id, file_name = request.match_info["asset_id"], request.match_info["file_name"]
    store.check_signature(
        f"{asset_id}/{file_name}", request.query.get("expires", ""), request.query.get("signature", "")
    )
    asset = store.asset(asset_id)
    fault = request.get(FILE_FAULT_KEY)
    if fault is None:
        return web.FileResponse(asset.path, headers={"Content-Type": asset.mime_type})
    size = asset.path.stat().st_size
    response = web.StreamResponse(headers={"Content-Type": asset.mime_type})
    response.content_length = size
    if fault == "wrong-range":  # the whole file as a part, whatever range was asked: a stale cache's answer
        response.set_status(206)
        response.headers["Content-Range"] = f"bytes 0-{size - 1}/{size}"
    await response.prepare(request)
    with asset.path.open("rb") as source:
        if fault == "truncate":
            await response.write(source.read(size // 2))
            if request.transport is not None:
                request.transport.close()  # sends what was written, then hangs up short of Content-Length
            return response
        while chunk := source.read(1024 * 1024):  # "ignore-range": the whole file, as a host without ranges
            await response.write(chunk)
    await response.write_eof()
    return response


async def web_job_page(request: web.Request) -> web.Response:
    """What the operator's "Scenario job" link opens when it points at the emulator.

    A page a person reads (the job's status, progress, history, error, outputs and cost); JSON for a client
    that asks for it.
    """
    from html import escape

    store = _store(request)
    job = render_job(store, store.job(request.match_info["job_id"]))
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"job": job})
    metadata = job["metadata"]
    rows = [
        ("Status", f"{job['status']} ({round(100 * float(job['progress']))} %)"),
        ("Model", str(job.get("modelId") or "-")),
        ("Created", job["createdAt"]),
        ("History", ", ".join(f"{step['status']} at {step['date'][11:19]}" for step in job["statusHistory"])),
        ("Outputs", ", ".join(metadata.get("assetIds") or []) or "-"),
        (
            "Error",
            " Hint: ".join(str(metadata[key]) for key in ("error", "hint") if metadata.get(key)) or "-",
        ),
        ("Cost", f"{job['billing']['cuCost']} creative units"),
    ]
    table = "".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in rows)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(job["jobId"])}</title>'
        "<style>body{font:15px system-ui,sans-serif;margin:2rem}th{text-align:left;padding-right:1rem}"
        "td,th{padding:.2rem 0;vertical-align:top}</style></head><body>"
        f"<h1>Scenario job {escape(job['jobId'])}</h1><p>On the local Scenario emulator.</p>"
        f"<table>{table}</table></body></html>"
    )
    return web.Response(text=page, content_type="text/html")


# -- admin routes -------------------------------------------------------------------------------------------


async def admin_health(request: web.Request) -> web.Response:
    """``GET /_emulator/health``: whether the emulator serves."""
    return web.json_response({"status": "ok"})


async def admin_requests(request: web.Request) -> web.Response:
    """``GET /_emulator/requests``: the requests seen so far (the books)."""
    return web.json_response({"requests": _store(request).requests(request.query.get("path"))})


async def admin_reset(request: web.Request) -> web.Response:
    """``POST /_emulator/reset`` (or ``DELETE /_emulator/requests``): forget faults, plans and the books."""
    _store(request).reset()
    return web.json_response({"status": "ok"})


async def admin_faults(request: web.Request) -> web.Response:
    """``POST /_emulator/faults``: plan faults for the requests they match."""
    body = await _json_body(request)
    known = {f.name for f in fields(Fault)}
    for spec in body.get("faults", [body]):
        unknown = set(spec) - known
        if unknown or "path" not in spec:
            raise ApiError(400, f"A fault needs 'path' and takes only {sorted(known)}; got {sorted(spec)}")
        _store(request).add_fault(Fault(**spec))
    return web.json_response({"status": "ok"})


async def admin_next_jobs(request: web.Request) -> web.Response:
    """``POST /_emulator/jobs/next``: plan the outcome of the next jobs."""
    body = await _json_body(request)
    details = {key: body[key] for key in ("error", "hint", "seconds") if key in body}
    _store(request).plan_jobs(str(body.get("outcome", "success")), int(body.get("count", 1)), **details)
    return web.json_response({"status": "ok"})


async def admin_job(request: web.Request) -> web.Response:
    """``POST /_emulator/jobs/{jobId}``: change a job's outcome or duration."""
    store = _store(request)
    body = await _json_body(request)
    details = {key: body[key] for key in ("error", "hint", "seconds") if key in body}
    store.set_job_outcome(request.match_info["job_id"], str(body.get("outcome", "success")), **details)
    return web.json_response({"job": render_job(store, store.job(request.match_info["job_id"]))})


async def admin_settings(request: web.Request) -> web.Response:
    """``POST /_emulator/settings``: change the emulator's settings."""
    store = _store(request)
    body = await _json_body(request)
    if "empty_pages" in body:
        store.empty_pages = bool(body["empty_pages"])
    for name in ("job_seconds", "url_ttl"):
        if name in body:
            setattr(store.config, name, float(body[name]))
    if "team_job_limit" in body:
        store.config.team_job_limit = None if body["team_job_limit"] is None else int(body["team_job_limit"])
    if "storage_origin" in body:
        store.config.storage_origin = body["storage_origin"] or None
    if "chaos" in body:
        store.chaos = _chaos(body["chaos"])
    return web.json_response({"status": "ok"})


def _chaos(settings: Any) -> Chaos | None:
    if settings is None:
        return None
    try:
        return Chaos.from_settings(dict(settings))
    except (KeyError, TypeError, ValueError) as error:
        raise ApiError(
            400, f"chaos wants seed (an integer), rate (0-1), max_in_a_row, routes: {error}"
        ) from None


async def admin_model(request: web.Request) -> web.Response:
    """Change what ``GET /models/{modelId}`` serves (and the emulator checks).

    ``{"inputs": {name: {field: value}}}`` merged into the spec's descriptor, e.g. ``allowedValues`` of a
    voice; ``{}`` restores it.
    """
    store = _store(request)
    spec = _spec(request.match_info["model_id"])
    body = await _json_body(request)
    inputs = body.get("inputs", {}) if isinstance(body, dict) else None
    if not isinstance(inputs, dict) or not all(isinstance(value, dict) for value in inputs.values()):
        raise ApiError(400, "Send {'inputs': {name: {field: value}}}")
    store.model_overrides[spec.model_id] = inputs
    return web.json_response({"model": served_descriptor(store, spec)})


async def admin_chaos(request: web.Request) -> web.Response:
    """What chaos mode has injected so far (``null`` when it is off)."""
    chaos = _store(request).chaos
    return web.json_response(chaos.report() if chaos is not None else None)
