"""The emulator's state: uploads, assets, jobs, signed URLs, injected faults and the request log.

Job status is computed from the clock on every read, so thousands of pollers cost no background work.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import secrets
import shutil
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from airflow_kling.exceptions import MediaError
from airflow_kling.jobs.status import TERMINAL_STATUSES, JobStatus, api_date
from airflow_kling.models import model_spec

if TYPE_CHECKING:
    from airflow_kling.models.spec import FileLookup, ModelSpec

AUTHOR_ID = "user_emulator"
DEFAULT_OWNER_ID = "proj_emulator"
# Share of a job's duration at which each status begins.
PHASES = (("queued", 0.0), ("warming-up", 0.1), ("in-progress", 0.2), ("finalizing", 0.9))
OUTCOMES = ("success", "failure", "canceled", "stuck")
REQUEST_LOG_LIMIT = 200_000
"""Requests the log keeps, newest last: a long-running emulator (docker compose) must not grow forever."""


class ApiError(Exception):
    """An answer with an error status, raised by the store and written out by the app.

    ``details`` becomes the body's ``details``.
    """

    def __init__(self, status: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


@dataclass
class EmulatorConfig:
    """Settings of one emulator.

    :param api_key: the API key it accepts.
    :param api_secret: the API secret it accepts.
    :param job_seconds: how long a job takes from ``queued`` to ``success``, in seconds.
    :param url_ttl: seconds a signed URL stays valid.
    :param storage_origin: see below.
    :param team_job_limit: custom jobs the team may have running at once; past it ``POST /generate/...``
        answers 429 naming ``parallel-custom-jobs`` and the limit, without ``Retry-After``, as Scenario
        does; default ``None`` (no limit).
    """

    api_key: str = "emulator-key"
    api_secret: str = "emulator-secret"
    job_seconds: float = 6.0
    url_ttl: float = 3600.0
    team_job_limit: int | None = None
    storage_origin: str | None = None
    """Scheme and host of the signed file and part URLs; default the API's own (set it to an unreachable
    host to see how clients fail when the storage cannot be reached)."""


@dataclass
class Asset:
    """A file the emulator holds: an upload's or a job's output."""

    id: str
    kind: str
    mime_type: str
    file_name: str
    path: Path
    source: str
    owner_id: str
    created_at: float
    properties: dict[str, Any]
    parent_job_id: str | None = None
    model_id: str | None = None
    """The model whose job made this asset (outputs only)."""


@dataclass
class Upload:
    """A multipart upload and the parts received so far."""

    id: str
    kind: str
    file_name: str
    content_type: str
    file_size: int
    parts: int
    owner_id: str
    created_at: float
    updated_at: float
    status: str = "pending"
    entity_id: str | None = None
    error: str | None = None
    received: dict[int, Path] = field(default_factory=dict)


@dataclass
class Job:
    """A job and its planned timeline (duration, outcome)."""

    id: str
    model_id: str
    inputs: dict[str, Any]
    owner_id: str
    created_at: float
    seconds: float
    cost: float
    outcome: str = "success"
    error: str | None = None
    hint: str | None = None
    ended_at: float | None = None
    forced_status: str | None = None
    output_asset_id: str | None = None

    @property
    def ends_at(self) -> float:
        """When the job ended, or ends as planned (epoch seconds): its cancel, else creation plus duration."""
        return self.ended_at or self.created_at + self.seconds


@dataclass
class Fault:
    """Make the next ``times`` requests that match answer otherwise.

    :param path: a regular expression searched in the request path.
    :param method: an HTTP method, or ``*`` for any.
    :param status: the status to answer with instead of the real one (``None``: answer normally).
    :param headers: headers of that answer, e.g. ``{"Retry-After": "1"}``.
    :param body: JSON body of that answer.
    :param delay: seconds to wait before answering.
    :param action: ``respond`` (default), ``drop`` (close the connection with no answer),
        ``truncate`` (file downloads: send half the body, then close), ``ignore-range`` (file downloads: the
        whole file with 200, whatever ``Range`` asked), ``wrong-range`` (file downloads: the whole file as a 206
        from byte 0, whatever ``Range`` asked), ``hold`` (a gateway's queue: the
        request reaches the API ``delay`` seconds late, and never if the client gave up meanwhile; with
        ``respond``, a delayed request is the API's, and takes effect late whatever the client does),
        ``flood`` (a 200 whose JSON body is ``size`` bytes long, declared in ``Content-Length``) or
        ``flood-unsized`` (the same streamed with no length declared), sent a chunk at a time.
    :param after: apply the fault *after* the request took effect (a job is created, an upload completed):
        the lost answer of a gateway that timed out in front of a busy backend; default ``False`` (the
        request is refused before any work).
    """

    path: str
    method: str = "*"
    times: int = 1
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    action: str = "respond"
    after: bool = False
    size: int = 0
    """Bytes of a ``flood``'s body."""


class FaultSource(Protocol):
    """Faults beyond the planned ones: :class:`airflow_kling.emulator.chaos.Chaos`."""

    def draw(self, method: str, path: str) -> Fault | None:
        """A fault for this request, or ``None``."""

    def report(self) -> dict[str, Any]:
        """What was drawn so far, for the books."""


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)


def new_id(prefix: str) -> str:
    """A new random id such as ``job_...``, of Scenario's shape."""
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"


class Store:
    """All the emulator's state, safe to read and change from the test thread and the server loop."""

    def __init__(self, config: EmulatorConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.lock = threading.RLock()
        self.assets: dict[str, Asset] = {}
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, Job] = {}
        self.faults: list[Fault] = []
        self.chaos: FaultSource | None = None
        """Random faults for the requests no planned fault matches (chaos mode); ``None``: none."""
        self.next_outcomes: deque[dict[str, Any]] = deque()
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_LIMIT)
        self.empty_pages = False
        self.model_overrides: dict[str, dict[str, dict[str, Any]]] = {}
        """Model id -> input name -> descriptor fields served instead of the spec's (admin API)."""
        self.refused_submissions = 0
        """Job submissions refused at the team's limit (``team_job_limit``)."""
        self._signing_key = secrets.token_bytes(32)
        self._file_numbers = itertools.count()
        self._outputs: dict[str, Future[Path]] = {}
        self._muxer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="emulator-output")

    # -- signed URLs -----------------------------------------------------------------------------------

    def sign(self, resource: str, expires: int) -> str:
        """The HMAC-SHA-256 signature of ``resource`` until ``expires`` (epoch seconds)."""
        return hmac.new(self._signing_key, f"{resource}:{expires}".encode(), hashlib.sha256).hexdigest()

    def signed_query(self, resource: str) -> str:
        # Rounded up: a URL is good for at least ``url_ttl`` seconds (cut down, a 1 s URL could die at once).
        """The query string of a signed URL to ``resource``, good for ``url_ttl`` seconds at least."""
        expires = math.ceil(time.time() + self.config.url_ttl)
        return f"expires={expires}&signature={self.sign(resource, expires)}"

    def check_signature(self, resource: str, expires: str, signature: str) -> None:
        """Raise the error a presigned-URL host gives for a bad or expired signature."""
        try:
            expires_at = int(expires)
        except ValueError:
            raise ApiError(403, "AccessDenied: malformed expiry") from None
        if not hmac.compare_digest(self.sign(resource, expires_at), signature):
            raise ApiError(403, "AccessDenied: signature does not match")
        if time.time() > expires_at:
            raise ApiError(403, "AccessDenied: Request has expired")

    def new_file(self, suffix: str = "") -> Path:
        """A new file's path in the data folder."""
        return self.data_dir / f"{next(self._file_numbers)}{suffix}"

    # -- faults and the request log ---------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Plan ``fault`` for the requests it matches."""
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The planned fault this request meets, else one that chaos draws, else ``None``."""
        import re

        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method in ("*", method) and re.search(fault.path, path):
                    fault.times -= 1
                    return fault
            chaos = self.chaos
        return chaos.draw(method, path) if chaos is not None else None

    def log_request(self, entry: dict[str, Any]) -> None:
        """Add a request to the books."""
        with self.lock:
            self.request_log.append(entry)

    def requests(self, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first, optionally those whose path matches a regular expression."""
        import re

        with self.lock:
            return [
                dict(entry)
                for entry in self.request_log
                if (path is None or re.search(path, entry["path"])) and method in (None, entry["method"])
            ]

    def paid_submissions(self) -> list[dict[str, Any]]:
        """The logged job submissions, oldest first.

        ``POST /v1/generate/...`` that were not ``dryRun`` estimates (what a client pays for when its answer
        is a 200), refused ones included.
        """
        return [
            entry
            for entry in self.requests("^/v1/generate/", method="POST")
            if "dryRun" not in entry["query"]
        ]

    def reset(self) -> None:
        """Forget faults, chaos, planned outcomes, the request log and model overrides."""
        with self.lock:
            self.faults.clear()
            self.chaos = None
            self.next_outcomes.clear()
            self.request_log.clear()
            self.empty_pages = False
            self.refused_submissions = 0
            self.model_overrides.clear()

    # -- uploads --------------------------------------------------------------------------------------------

    def create_upload(self, body: dict[str, Any], owner_id: str) -> Upload:
        """Start a multipart upload from its ``POST /uploads`` body; errors as the API gives them."""
        for name in ("kind", "fileName", "contentType", "fileSize", "parts"):
            if body.get(name) in (None, ""):
                raise ApiError(400, f"'{name}' is required for a multipart upload")
        if body["kind"] not in ("3d", "asset", "audio", "avatar", "image", "model", "text", "video"):
            raise ApiError(400, f"'kind' {body['kind']!r} is not a known upload kind")
        size, parts = _whole_number(body["fileSize"]), _whole_number(body["parts"])
        if size is None or size <= 0:
            raise ApiError(400, "'fileSize' must be a positive number of bytes")
        if parts is None or not 1 <= parts <= 10000 or parts > size:
            raise ApiError(400, "'parts' must be a whole number from 1 to 10000, at most 'fileSize'")
        now = time.time()
        upload = Upload(
            id=new_id("upload"),
            kind=body["kind"],
            file_name=str(body["fileName"]),
            content_type=str(body["contentType"]),
            file_size=size,
            parts=parts,
            owner_id=owner_id,
            created_at=now,
            updated_at=now,
        )
        with self.lock:
            self.uploads[upload.id] = upload
        return upload

    def upload(self, upload_id: str) -> Upload:
        """The upload ``upload_id``; 404 if unknown."""
        return _found(self.uploads, upload_id, "Upload")

    def complete_upload(self, upload_id: str) -> Upload:
        """Complete an upload: its parts joined into an asset, probed and checked."""
        upload = self.upload(upload_id)
        with self.lock:
            if upload.status != "pending":
                raise ApiError(400, f"Upload {upload_id} is already {upload.status}")
            upload.updated_at = time.time()
            missing = [n for n in range(1, upload.parts + 1) if n not in upload.received]
            if missing:
                upload.status, upload.error = "failed", f"Missing part(s): {missing}"
                return upload
            path = self.new_file(Path(upload.file_name).suffix)
            with path.open("wb") as out:
                for number in range(1, upload.parts + 1):
                    with upload.received[number].open("rb") as part:
                        shutil.copyfileobj(part, out, 1024 * 1024)
                    upload.received[number].unlink()
            size = path.stat().st_size
            if size != upload.file_size:
                path.unlink()
                upload.status = "failed"
                upload.error = f"Received {size} bytes, announced fileSize was {upload.file_size}"
                return upload
            try:
                properties = {**media_properties(path, upload.kind), "size": size}
            except MediaError as error:
                path.unlink()
                upload.status, upload.error = (
                    "failed",
                    f"Invalid {upload.kind} file {upload.file_name}: {error}",
                )
                return upload
            asset = Asset(
                id=new_id("asset"),
                kind=upload.kind,
                mime_type=upload.content_type,
                file_name=upload.file_name,
                path=path,
                source=f"uploaded-{upload.kind}"
                if upload.kind in ("audio", "video", "3d", "text")
                else "uploaded",
                owner_id=upload.owner_id,
                created_at=upload.updated_at,
                properties=properties,
            )
            self.assets[asset.id] = asset
            upload.entity_id = asset.id
            upload.status = "validating"
        return upload

    def read_upload(self, upload_id: str) -> Upload:
        """An upload as a GET sees it: a completed one is ``validating`` once, then ``complete``."""
        upload = self.upload(upload_id)
        with self.lock:
            if upload.status == "validating":
                upload.status = "complete"
                upload.updated_at = time.time()
                return Upload(**{**upload.__dict__, "status": "validating"})
        return upload

    # -- assets ---------------------------------------------------------------------------------------------

    def asset(self, asset_id: str) -> Asset:
        """The asset ``asset_id``; 404 if unknown."""
        return _found(self.assets, asset_id, "Asset")

    def add_asset(
        self, path: Path, *, kind: str, mime_type: str, properties: dict[str, Any] | None = None
    ) -> str:
        """Register an existing file as an asset, as if uploaded (for benchmarks and fixtures of any size)."""
        asset = Asset(
            id=new_id("asset"),
            kind=kind,
            mime_type=mime_type,
            file_name=path.name,
            path=path,
            source=f"uploaded-{kind}",
            owner_id=DEFAULT_OWNER_ID,
            created_at=time.time(),
            properties={**(properties or {}), "size": path.stat().st_size},
        )
        with self.lock:
            self.assets[asset.id] = asset
        return asset.id

    def find_asset(self, asset_id: str) -> dict[str, Any] | None:
        """An asset's ``kind``, ``properties`` and ``file_name``, or ``None`` when there is no such asset."""
        asset = self.assets.get(asset_id)
        if asset is None:
            return None
        return {"kind": asset.kind, "properties": asset.properties, "file_name": asset.file_name}

    def asset_file(self, asset_id: str) -> Path | None:
        """An asset's file, or ``None`` when there is no such asset."""
        asset = self.assets.get(asset_id)
        return asset.path if asset is not None else None

    # -- jobs -----------------------------------------------------------------------------------------------

    def running_jobs(self, now: float | None = None) -> list[Job]:
        """The jobs that have not ended at ``now`` (what counts against the team's limit)."""
        with self.lock:
            return [job for job in self.jobs.values() if self.job_state(job, now)[0] not in TERMINAL_STATUSES]

    def create_job(self, model_id: str, inputs: dict[str, Any], owner_id: str, cost: float) -> Job:
        """Start a job, or refuse it with 429 at the team's limit; it plays the next planned outcome."""
        with self.lock:
            limit = self.config.team_job_limit
            if limit is not None and len(self.running_jobs()) >= limit:
                self.refused_submissions += 1
                raise ApiError(
                    429,
                    f"Your team has reached its limit of {limit} parallel custom jobs",
                    {"actionName": "parallel-custom-jobs", "actionLimit": limit},
                )
            plan = self.next_outcomes.popleft() if self.next_outcomes else {}
            job = Job(
                id=new_id("job"),
                model_id=model_id,
                inputs=inputs,
                owner_id=owner_id,
                created_at=time.time(),
                seconds=float(plan.get("seconds", self.config.job_seconds)),
                cost=cost,
                outcome=plan.get("outcome", "success"),
                error=plan.get("error"),
                hint=plan.get("hint"),
            )
            self.jobs[job.id] = job
        if job.outcome == "success":
            self._output_file(job)  # made while the job "runs", ready by its end
        return job

    def job(self, job_id: str) -> Job:
        """The job ``job_id``; 404 if unknown."""
        return _found(self.jobs, job_id, "Job")

    def plan_jobs(self, outcome: str, count: int = 1, **details: Any) -> None:
        """Make the next ``count`` jobs end in ``outcome`` (``success``, ``failure``, ``canceled``, ``stuck``)."""
        if outcome not in OUTCOMES:
            raise ApiError(400, f"outcome must be one of {OUTCOMES}")
        with self.lock:
            for _ in range(count):
                self.next_outcomes.append({"outcome": outcome, **details})

    def set_job_outcome(self, job_id: str, outcome: str, **details: Any) -> None:
        """Change how job ``job_id`` ends (``outcome``, ``error``, ``hint``, ``seconds``)."""
        if outcome not in OUTCOMES:
            raise ApiError(400, f"outcome must be one of {OUTCOMES}")
        job = self.job(job_id)
        with self.lock:
            job.outcome = outcome
            job.error = details.get("error", job.error)
            job.hint = details.get("hint", job.hint)
            if "seconds" in details:
                job.seconds = float(details["seconds"])

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job that has not ended; 400 if it has."""
        job = self.job(job_id)
        with self.lock:
            status, _ = self.job_state(job)
            if status in TERMINAL_STATUSES:
                raise ApiError(400, f"Job {job_id} is already {status} and cannot be canceled")
            job.forced_status = JobStatus.CANCELED
            job.ended_at = time.time()
        return job

    def job_state(self, job: Job, now: float | None = None) -> tuple[str, float]:
        """A job's (status, progress) at ``now``, from its timeline."""
        now = time.time() if now is None else now
        if job.forced_status:
            return job.forced_status, self._progress(job, job.ended_at or now)
        fraction = (now - job.created_at) / job.seconds if job.seconds > 0 else 1.0
        if job.outcome == "stuck":
            return "in-progress", 0.5
        if fraction >= 1.0:
            if job.outcome == "success":
                if not self._publish_output(job):  # still being made: the job is not over yet
                    return "finalizing", self._progress(job, now)
                return "success", 1.0
            return job.outcome, self._progress(job, job.created_at + job.seconds * 0.9)
        status = next(name for name, start in reversed(PHASES) if fraction >= start)
        return status, self._progress(job, now)

    @staticmethod
    def _progress(job: Job, at: float) -> float:
        fraction = (at - job.created_at) / job.seconds if job.seconds > 0 else 1.0
        return round(min(max((fraction - 0.2) / 0.8, 0.0), 0.99), 2)

    def status_history(self, job: Job, status: str, now: float | None = None) -> list[dict[str, str]]:
        """The statuses ``job`` went through up to ``status``, each with its time."""
        now = time.time() if now is None else now
        history = []
        for name, start in PHASES:
            at = job.created_at + job.seconds * start
            if at > now or (job.outcome == "stuck" and start > 0.2):
                break
            if job.forced_status and job.ended_at is not None and at > job.ended_at:
                break
            history.append({"date": api_date(at), "status": name})
        if status in TERMINAL_STATUSES:
            end = job.ends_at
            history.append({"date": api_date(end), "status": status})
        return history

    def _publish_output(self, job: Job) -> bool:
        """Register a succeeded job's output asset once its file is made; whether it is there now."""
        with self.lock:
            if job.output_asset_id is not None:
                return True
            made = self._output_file(job)
            if not made.done():
                return False
            path = made.result()
            spec = model_spec(job.model_id)
            source = next(
                (
                    self.assets[value]
                    for value in job.inputs.values()
                    if isinstance(value, str) and value in self.assets
                ),
                None,
            )
            asset = Asset(
                id=new_id("asset"),
                kind=spec.output.kind,
                mime_type=spec.output.mime_type,
                file_name=f"{job.id}{spec.output.extension}",
                path=path,
                source=f"{source.kind}2{spec.output.kind}" if source else f"txt2{spec.output.kind}",
                owner_id=job.owner_id,
                created_at=job.created_at + job.seconds,
                properties={**(source.properties if source else {}), "size": path.stat().st_size},
                parent_job_id=job.id,
                model_id=job.model_id,
            )
            self.assets[asset.id] = asset
            job.output_asset_id = asset.id
            return True

    def _output_file(self, job: Job) -> Future[Path]:
        """The job's output file, made by the model spec's ``emulated_output`` in a worker thread.

        Never in the server's event loop, never under the store's lock.

        Jobs with the same model and inputs share one file, so that thousands of emulated jobs cost one mux.
        """
        key = json.dumps([job.model_id, job.inputs], sort_keys=True)
        with self.lock:
            made = self._outputs.get(key)
            if made is None:
                spec = model_spec(job.model_id)
                made = self._muxer.submit(
                    _make_output,
                    spec,
                    dict(job.inputs),
                    self.asset_file,
                    self.new_file(spec.output.extension),
                )
                self._outputs[key] = made
        return made

    def close(self) -> None:
        """Stop the worker threads (outputs being made are finished first)."""
        self._muxer.shutdown(wait=True)


def _make_output(spec: ModelSpec, inputs: dict[str, Any], files: FileLookup, path: Path) -> Path:
    if spec.emulated_output is not None:
        spec.emulated_output(inputs, files, path)
        return path
    source = next(
        (files(value) for value in inputs.values() if isinstance(value, str) and files(value)), None
    )
    if source is not None:
        shutil.copyfile(source, path)
    else:
        path.write_bytes(b"emulated output of " + spec.model_id.encode())
    return path


def media_properties(path: Path, kind: str) -> dict[str, Any]:
    """What the API reports in ``asset.properties`` for an uploaded audio or video file."""
    if kind not in ("audio", "video"):
        return {}
    from airflow_kling.media.probing import probe

    info = probe(path)
    if kind == "video" and not info.has_video:
        raise MediaError("no video stream")
    if kind == "audio" and not info.has_audio:
        raise MediaError("no audio stream")
    properties: dict[str, Any] = {"duration": info.duration, "bitrate": info.bitrate}
    if info.has_video:
        properties.update(
            width=info.display_width,
            height=info.display_height,
            frameRate=info.frame_rate,
            codecName=info.video_codec,
        )
    elif info.has_audio:
        properties.update(codecName=info.audio_codec, sampleRate=info.sample_rate, channels=info.channels)
    return properties


T = TypeVar("T")


def _found(table: dict[str, T], key: str, kind: str) -> T:
    """The record ``key`` of a table, or the API's 404."""
    record = table.get(key)
    if record is None:
        raise ApiError(404, f"{kind} {key} not found")
    return record
