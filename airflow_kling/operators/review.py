"""A person's review before a lipsync clip is published.

Airflow's human-in-the-loop operator, wired to the clip the archive task wrote.

``KlingReviewOperator`` after the archive task asks a reviewer, under the UI's *Required actions* (or over
the REST API's ``hitlDetails``), to watch the clip in its *Lipsync preview* and to choose **Approve** or
**Reject**, with a comment. Approve publishes the clip: the verdict goes into its ``manifest.json``, the
files are copied (verified) to ``publish_to`` when given, and the asset ``kling_lipsync_published`` is
updated. Reject publishes nothing: the verdict and the comment go into the manifest, and the task and
what follows it are skipped. No answer within ``response_timeout`` rejects the clip, never approves it.

Needs Airflow's human-in-the-loop operators (Airflow 3.1+, the standard provider): without them, a DAG file
that uses this operator fails to parse, naming what to install (:func:`~airflow_kling.version_compat.require_hitl`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

from airflow.sdk import Asset, Param
from typing_extensions import override

from airflow_kling.exceptions import ScenarioValidationError
from airflow_kling.jobs.xcoms import ARCHIVE_XCOM_KEY, REVIEWING_XCOM_KEY
from airflow_kling.observability import metrics
from airflow_kling.operators.assets import set_asset_extra
from airflow_kling.operators.failures import invalid_input_fails_task
from airflow_kling.operators.links import dag_run_url
from airflow_kling.version_compat import AirflowSkipException, require_hitl

if TYPE_CHECKING:
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import Context

    from airflow_kling.jobs.xcoms import ArchivedFileRecord
else:
    HITLOperator = require_hitl()

LIPSYNC_PUBLISHED = Asset(name="kling_lipsync_published", group="kling")
"""The asset an approved clip updates: schedule the DAGs that show clips to customers on it (each event's
``extra`` lists the published ``uris``, the ``job_ids`` and who approved them)."""
APPROVE = "Approve"
REJECT = "Reject"
COMMENT = "comment"
"""The name of the reviewer's comment, a field of the required action (a param)."""
REVIEW_COMMENT_LIMIT = 2000
"""Characters of a reviewer's comment kept at most: the form's ``maxLength``, the manifest's, a re-run's conf."""
DEFAULT_RESPONSE_TIMEOUT = timedelta(days=3)
MIN_RESPONSE_TIMEOUT = timedelta(seconds=15)
"""A person watches the clip first; and a timeout within seconds of the task's pause can meet Airflow's
scheduler race (apache/airflow #67287: the pausing try's own end read late fails the resumed try)."""
REVIEW_RETRIES = 2
"""The review's default ``retries`` (5 s apart): on Airflow 3.3 a try that Airflow's scheduler race fails after
an answer given at once is retried, and the reviewer asked again."""
REVIEW_XCOM_KEY = "kling_review"
"""The verdict (a :class:`Review`) and the reviewed ``job_ids``, pushed by the review whatever it decided."""
PREVIEW_ROUTE = "kling-lipsync-preview"
"""The task instance tab of this provider's plugin (:mod:`airflow_kling.plugins.preview`)."""


NO_ANSWER: dict[str, Any] = {
    "chosen_options": [REJECT],
    "params_input": {},
    "responded_by_user": None,
    "responded_at": None,
}
"""What a review that timed out decides."""


class Review(TypedDict):
    """What a review decided, as the task returns it and the manifest keeps it."""

    decision: str  # "approved", "rejected" or "timed_out"
    by: str | None
    at: str | None
    comment: str | None


class KlingReviewOperator(HITLOperator):
    """Ask a person to watch an archived lipsync clip and approve or reject it before it is published.

    Returns (XCom) ``{"decision": "approved", "by", "at", "comment", "uris"}`` for an approved clip; a
    rejected one skips this task and its downstream tasks. A clip whose manifest could not take the verdict
    (missing, or no JSON object of at most 1 MiB) fails the task before anyone is asked, and after the answer
    when it changed meanwhile: on that try, so that no retry asks again (the verdict is in the task's log). A
    storage error writing the verdict is tried again on that try, 2, 4 and 8 s later
    (:func:`~airflow_kling.files.publication.record_review`).

    :param destination: the archive location the clip was written to (the archive task's ``destination``):
        the files the archive task's XCom names must lie under it. Templated.
    :param archive_task_id: the archive task (:class:`~.assets.ScenarioArchiveAssetsOperator`) whose clip
        is reviewed, in the same task group and map index; default ``archive``.
    :param publish_to: where an approved clip is copied (``<publish_to>/<job id>/<file>`` and its
        manifest), a folder or object-storage URI; default none (published where it was archived).
        Templated.
    :param storage_conn_id: the object store's connection for both locations; default none.
    :param ask: ask for a review; when it renders false (``False``, ``"False"``, ``""``), the task is skipped
        without asking and nothing is published (a DAG whose review is a run's choice); default ``True``.
        Templated.
    :param response_timeout: how long to wait for a reviewer; default 3 days, at least 15 seconds
        (:data:`MIN_RESPONSE_TIMEOUT`). Then the clip is rejected (``timed_out``), never approved.
    :param subject: the required action's title; default ``<source clip> · <short job id>: review the lipsync clip``.
    :param kwargs: the arguments of Airflow's ``HITLOperator`` (``assigned_users``, ``notifiers``, ...)
        but ``options``, ``defaults``, ``multiple`` and ``params``, which the review fixes (its form is
        the comment alone, so ``{{ params.* }}`` does not render here: pass values through XComs).
    """

    template_fields: Sequence[str] = (*HITLOperator.template_fields, "destination", "publish_to", "ask")
    ui_color = "#fef3c7"
    overwrite_rtif_after_execution = True  # Rendered Templates show the subject and body the reviewer reads

    def __init__(
        self,
        *,
        destination: str,
        archive_task_id: str = "archive",
        publish_to: str | None = None,
        storage_conn_id: str | None = None,
        ask: bool | str = True,
        response_timeout: timedelta = DEFAULT_RESPONSE_TIMEOUT,
        subject: str | None = None,
        **kwargs: Any,
    ) -> None:
        for fixed in ("options", "defaults", "multiple"):
            if fixed in kwargs:
                raise ValueError(f"KlingReviewOperator fixes {fixed}: Approve or Reject, with a comment")
        if response_timeout is not None and response_timeout < MIN_RESPONSE_TIMEOUT:
            raise ValueError(
                f"KlingReviewOperator response_timeout={response_timeout.total_seconds():g} s is below "
                f"the minimum of {MIN_RESPONSE_TIMEOUT.total_seconds():g} s"
            )
        # Airflow passes the DAG's params in; the required action's form is the comment alone (the HITL
        # operator keeps only the task's own params), so this task's templates cannot read DAG params.
        kwargs.pop("params", None)
        kwargs.setdefault("outlets", [LIPSYNC_PUBLISHED])
        # On Airflow 3.3 an answer within about a second of the pause can meet Airflow's scheduler race, which
        # fails the try: it is retried, and the reviewer asked again, rather than the run failing.
        kwargs.setdefault("retries", REVIEW_RETRIES)
        kwargs.setdefault("retry_delay", timedelta(seconds=5))
        super().__init__(
            subject=subject or "Review a lipsync clip",
            options=[APPROVE, REJECT],
            defaults=None,  # both answers offered alike; a timeout still rejects (execute_complete)
            multiple=False,
            params={
                COMMENT: Param(
                    "",  # not None: Airflow 3.1's form shows a null default as "[object Object]"
                    type=["null", "string"],
                    maxLength=REVIEW_COMMENT_LIMIT,
                    format="multiline",
                    title="Comment",
                    description="Why you approve or reject the clip, kept in its manifest: what is wrong with "
                    "a rejected one, anything worth knowing about an approved one (optional).",
                )
            },
            response_timeout=response_timeout,
            **kwargs,
        )
        self.destination = destination
        self.archive_task_id = archive_task_id
        self.publish_to = publish_to
        self.storage_conn_id = storage_conn_id
        self.ask = ask
        self._subject_given = subject is not None

    @property
    def serialized_params(self) -> dict[str, dict[str, Any]]:
        """The required action's form.

        The comment alone (on Airflow 3.1 the HITL operator adds every DAG param to it).
        """
        return {key: value for key, value in super().serialized_params.items() if key == COMMENT}

    @override
    def execute(self, context: Context) -> Any:
        from airflow_kling.files.publication import reviewable_manifests
        from airflow_kling.files.storage import check_writable

        if renders_false(self.ask):
            raise AirflowSkipException("No review asked for: the clip stays archived, and is not published")
        publish_to = self._publish_to()
        if publish_to is not None:
            # Before anyone is asked to watch a clip that could not be published.
            with invalid_input_fails_task():
                check_writable(publish_to, "publish_to", self.storage_conn_id)
        files = self._archived_files(context)
        job_ids = reviewed_job_ids(files)
        # On this try: no one is asked about a clip whose verdict could not be kept.
        with invalid_input_fails_task():
            manifests = reviewable_manifests(files, self.storage_conn_id)
        names = self._clip_names(files, manifests)
        if not self._subject_given:
            self.subject = self._default_subject(names, job_ids)
        self.body = self._body(context, files, names)
        context["ti"].xcom_push(key=REVIEWING_XCOM_KEY, value=job_ids)  # for its own preview tab
        return super().execute(context)

    def defer(self, *, trigger: Any, **kwargs: Any) -> Any:
        """Pause as ``HITLOperator`` does, through :class:`~airflow_kling.triggers.review.ReviewTrigger`.

        No answer is looked for in the first :data:`~airflow_kling.operators.generate.FIRST_POLL_DELAY`
        seconds.
        """
        from airflow.providers.standard.triggers.hitl import HITLTrigger

        from airflow_kling.operators.generate import FIRST_POLL_DELAY
        from airflow_kling.triggers.review import ReviewTrigger

        if isinstance(trigger, HITLTrigger) and not isinstance(trigger, ReviewTrigger):
            trigger = ReviewTrigger.replacing(trigger, time.time() + FIRST_POLL_DELAY)
        return super().defer(trigger=trigger, **kwargs)

    @override
    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        # No answer in time: rejected, whichever way Airflow resumes the task (its trigger or, on 3.3, the
        # scheduler's sweep); never an unwatched clip published, never a failed task for a quiet reviewer.
        timed_out = isinstance(event, dict) and event.get("error_type") == "timeout"
        answer: dict[str, Any] = NO_ANSWER if timed_out else dict(super().execute_complete(context, event))
        files = self._archived_files(context)
        who = answer.get("responded_by_user") or {}
        at: Any = answer.get("responded_at")
        approved = answer["chosen_options"] == [APPROVE]
        review = Review(
            decision="approved" if approved else "timed_out" if timed_out or not who else "rejected",
            by=str(who.get("name") or who.get("id")) if who else None,
            at=at.isoformat() if hasattr(at, "isoformat") else str(at) if at else None,
            comment=cut_comment((answer.get("params_input") or {}).get(COMMENT)) or None,
        )
        job_ids = reviewed_job_ids(files)
        self.log.info(
            "Review of job(s) %s: %s by %s%s",
            ", ".join(job_ids),
            review["decision"],
            review["by"] or "nobody",
            f": {review['comment']}" if review["comment"] else "",
        )
        with invalid_input_fails_task():  # a manifest changed under the review: no retry asks again
            self._record(files, review)
        context["ti"].xcom_push(key=REVIEW_XCOM_KEY, value={**review, "job_ids": job_ids})
        metrics.reviewed(review["decision"])
        if not approved:
            raise AirflowSkipException(
                f"Clip {review['decision']}"
                + (
                    f" by {review['by']}"
                    if review["by"]
                    else f": no answer within {_spoken(self._timeout())}"
                )
                + (f": {review['comment']}" if review["comment"] else "")
                + "; nothing published"
            )
        from airflow_kling.files.publication import publish_copies

        publish_to = self._publish_to()
        uris = (
            publish_copies(files, publish_to, self.storage_conn_id)
            if publish_to is not None
            else [record["uri"] for record in files]
        )
        extra: dict[str, Any] = {
            "uris": uris,
            "job_ids": job_ids,
            "approved_by": review["by"],
        }
        set_asset_extra(self.outlets, context, extra)
        self.log.info("Clip approved by %s: published %s", review["by"], uris)
        return {**review, "uris": uris}

    def _archived_files(self, context: Context) -> list[ArchivedFileRecord]:
        """The archive task's record of the clip, checked against ``destination`` (an XCom is a claim)."""
        from airflow_kling.files.locations import check_input_location
        from airflow_kling.files.publication import checked_files

        task_id = sibling_task_id(self.task_id, self.archive_task_id)
        record = pull_from_sibling(context, task_id, ARCHIVE_XCOM_KEY)
        with invalid_input_fails_task():
            check_input_location(str(self.destination), "destination")
            if not isinstance(record, dict) or not record.get("files"):
                raise ScenarioValidationError(
                    f"{task_id} archived no clip to review (its XCom {ARCHIVE_XCOM_KEY} is empty)"
                )
            return checked_files(list(record["files"]), str(self.destination), "destination")

    def _publish_to(self) -> str | None:
        """``publish_to`` as rendered, ``None`` when it renders empty."""
        return None if self.publish_to in (None, "", "None") else str(self.publish_to)

    def _record(self, files: list[ArchivedFileRecord], review: Review) -> None:
        from airflow_kling.files.publication import record_review

        for manifest, job_id in sorted({(record["manifest_uri"], record["job_id"]) for record in files}):
            record_review(manifest, job_id, dict(review), self.storage_conn_id, log=self.log)

    def _timeout(self) -> timedelta:
        return self.response_timeout or DEFAULT_RESPONSE_TIMEOUT

    @staticmethod
    def _clip_names(files: list[ArchivedFileRecord], manifests: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Job id -> the file its clip was uploaded from, as its manifest (by URI, in ``manifests``) records it."""
        from airflow_kling.files.publication import source_names

        names: dict[str, str] = {}
        for record in files:
            if record["job_id"] not in names:
                found = source_names(manifests[record["manifest_uri"]])
                if found:
                    names[record["job_id"]] = found[0]  # the first file input: the clip itself
        return names

    @staticmethod
    def _default_subject(names: dict[str, str], job_ids: list[str]) -> str:
        """What tells clips apart first: the source clip's name, then a short job id (Browse cuts the rest)."""
        from airflow_kling.api.ids import short_id

        shown = list(dict.fromkeys(names[job_id] for job_id in job_ids if job_id in names))
        clips = ", ".join(shown[:3]) + (f" +{len(shown) - 3}" if len(shown) > 3 else "")
        jobs = ", ".join(short_id(job_id) for job_id in job_ids[:3]) + (" ..." if len(job_ids) > 3 else "")
        return f"{clips + ' · ' if clips else ''}{jobs}: review the lipsync clip"

    def _body(self, context: Context, files: list[ArchivedFileRecord], names: dict[str, str]) -> str:
        from airflow_kling.api.ids import short_id

        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        page = (
            dag_run_url(ti.dag_id, ti.run_id)
            + f"/tasks/{quote(sibling_task_id(self.task_id, self.archive_task_id), safe='')}"
            + (f"/mapped/{map_index}" if map_index >= 0 else "")
            + f"/plugin/{PREVIEW_ROUTE}"
        )
        listed = "\n".join(  # each value checked (:func:`~airflow_kling.files.publication.checked_files`)
            f"- **{markdown_text(names.get(record['job_id']) or record['uri'].rsplit('/', 1)[-1])}**: "
            f"{readable_size(record['size'])}, SHA-256 {record['sha256'][:16]}..., "
            f"job {markdown_text(short_id(record['job_id']))}"
            for record in files
        )
        timeout = self._timeout()
        return (  # read top-down as a decision: the clip, its facts, what each answer does, the timeout last
            f"**[Watch the clip in its Lipsync preview]({page})**, then judge it: the lips follow the voice, "
            f"the face is not distorted, no glitch in picture or sound.\n\n{listed}\n\n"
            "- **Approve** publishes it"
            + (f" to {markdown_text(str(self.publish_to))}" if self.publish_to else "")
            + " and tells the DAGs scheduled on kling\\_lipsync\\_published.\n"
            "- **Reject** publishes nothing; say why in *Comment*: it is kept in the clip's manifest.\n\n"
            f"Without an answer within {_spoken(timeout)}, the clip is rejected."
        )


def readable_size(size: int) -> str:
    """A number of bytes as a person reads it: ``900 B``, ``880.3 kB``, ``2.3 MB``, ``1.2 GB`` (powers of 1000)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
"""ASCII punctuation: what markdown could read as markup, each escaped by :func:`markdown_text`."""


def markdown_text(text: str) -> str:
    """``text`` as plain markdown text that nothing in it can turn into markup, a link or a new block.

    On one line, every ASCII punctuation character backslash-escaped (CommonMark shows it as it is).
    """
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(text.split()))


def _spoken(duration: timedelta) -> str:
    """``3 days``, ``2 hours``, ``90 seconds``: a duration as a reviewer reads it."""
    seconds = int(duration.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def sibling_task_id(task_id: str, other: str) -> str:
    """``other``'s full id when it is in ``task_id``'s task group (a plain id names a task of the same group)."""
    group = task_id.rpartition(".")[0]
    return f"{group}.{other}" if group and "." not in other else other


def pull_from_sibling(context: Context, task_id: str, key: str) -> Any:
    """XCom ``key`` of ``task_id`` in the same run, from the same map index when this task is mapped."""
    ti = context["ti"]
    mapped = ti.map_index is not None and ti.map_index >= 0
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=ti.map_index if mapped else None)


def renders_false(value: object) -> bool:
    """Whether a templated switch rendered off: ``False``, ``"False"``, ``""``, ``"None"``, ``0``."""
    return str(value).strip().lower() in ("false", "", "none", "0")


def reviewed_job_ids(files: list[ArchivedFileRecord]) -> list[str]:
    """The jobs whose archived files a review shows, sorted."""
    return sorted({record["job_id"] for record in files})


def cut_comment(value: Any) -> str | None:
    """A reviewer's comment as it is kept: a text cut at :data:`REVIEW_COMMENT_LIMIT` characters, else ``None``."""
    return value[:REVIEW_COMMENT_LIMIT] if isinstance(value, str) else None
