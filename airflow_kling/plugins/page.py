"""The preview page.

One card per clip with its player, its job and what was archived. Plain HTML with a few lines of script,
served by the plugin's app and shown by Airflow in an iframe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from airflow_kling.api.ids import short_id
from airflow_kling.files.archive import recorded_sources
from airflow_kling.jobs.status import JobStatus, is_terminal, job_cost, job_error_text, parse_api_date
from airflow_kling.operators.review import REVIEW_COMMENT_LIMIT

if TYPE_CHECKING:
    from airflow_kling.models.spec import ModelSpec
    from airflow_kling.plugins.clips import Clip

REFRESH_SECONDS = 10
"""While a job runs, the page reloads itself this often."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; frame-ancestors 'self'"
)


@dataclass(frozen=True)
class ClipView:
    """What the page shows of one clip.

    :param job: the job as the API answered now; ``None`` with ``problem`` when it could not be read.
    :param manifest: the archive's ``manifest.json`` of the job, when one was written and can be read.
    :param video_path: where the page's player streams the video from (this app), ``None`` when there is
        no video (the job failed, or runs still).
    :param video_origin: ``"archive"`` or ``"scenario"`` (the job's output asset, fetched server-side).
    """

    clip: Clip
    job: dict[str, Any] | None
    problem: str | None
    manifest: dict[str, Any] | None
    video_path: str | None
    poster_path: str | None
    video_origin: str | None


def render_page(title: str, views: list[ClipView], empty_note: str) -> str:
    """The whole page for ``views`` (or ``empty_note`` when there is none)."""
    running = any(view.job is not None and not is_terminal(str(view.job.get("status"))) for view in views)
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if running else ""
    cards = "\n".join(_card(index, view, len(views) > 1) for index, view in enumerate(views))
    body = cards or f'<p class="empty">{escape(empty_note)}</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_STYLE}</style></head>
<body><main><h1>{escape(title)}</h1>
{body}
</main><script>{_SCRIPT}</script></body></html>"""


def _card(index: int, view: ClipView, numbered: bool) -> str:
    clip, job = view.clip, view.job or {}
    status = str(job.get("status") or "unknown")
    spec = _spec(view)
    names = _source_names(view)
    name = next(iter(names.values()), None)  # the first file input: the clip itself
    if name:
        heading = f"{name} · {short_id(clip.job_id)}"
    else:
        heading = f"Clip {clip.map_index}" if numbered and clip.map_index >= 0 else spec.title
    tasks = [task for task in (clip.task_id, clip.archive_task_id, clip.review_task_id) if task]
    facts = [
        ("Tasks", ", ".join(tasks) + (f" [{clip.map_index}]" if clip.map_index >= 0 else "")),
        ("Job", clip.job_id),
        ("Status", _status(job, status)),
        *_review(view),
        *[
            (label, f"{names[value]} ({value})" if value in names else value)
            for label, value in _inputs(view)
        ],
        ("Cost", _cost(job)),
        *(
            [
                (
                    "Duration",
                    _Html(
                        f'<span id="clip-{index}-duration">{"loading..." if view.video_path else "-"}</span>'
                    ),
                )
            ]
            if spec.output.kind == "video"
            else []
        ),
        ("Processing", _processing(job, status)),
        *_archive(view, status),
    ]
    rows = "\n".join(f"<tr><th>{escape(name)}</th><td>{_cell(value)}</td></tr>" for name, value in facts)
    return f"""<section class="clip" data-job-id="{escape(clip.job_id)}" data-status="{escape(status)}">
<h2>{escape(heading)} <span class="badge {escape(_tone(status))}">{escape(status)}</span></h2>
{_problem(view, status)}<div class="body"><div class="media">{_player(index, view)}</div>
<div class="facts"><table>{rows}</table>{_manifest(view)}</div></div>
</section>"""


def _source_names(view: ClipView) -> dict[str, str]:
    """Asset id -> the file it was uploaded from, as the manifest records it (plain file names only)."""
    return dict(recorded_sources(view.manifest))


def _review(view: ClipView) -> list[tuple[str, str]]:
    """The review's verdict as a row of its own: what, who, when and the comment."""
    review = (view.manifest or {}).get("review")
    if not isinstance(review, dict) or not isinstance(review.get("decision"), str):
        return []
    decision = review["decision"].replace("_", " ")[:20]
    by, at, comment = review.get("by"), review.get("at"), review.get("comment")
    text = decision + (f" by {str(by)[:100]}" if by else "") + (f", {_moment(str(at))}" if at else "")
    if isinstance(comment, str) and comment.strip():
        text += f": \u201c{comment.strip()[:REVIEW_COMMENT_LIMIT]}\u201d"
    return [("Review", text)]


class _Html(str):
    """Markup made here (already escaped), as opposed to text from the job or the archive."""


def _cell(value: str) -> str:
    return value if isinstance(value, _Html) else escape(value)


def _status(job: dict[str, Any], status: str) -> str:
    progress = job.get("progress")
    if not is_terminal(status) and isinstance(progress, int | float):
        return f"{status} ({round(float(progress) * 100)}%)"
    return status


def _tone(status: str) -> str:
    if status == JobStatus.SUCCESS:
        return "ok"
    if status in (JobStatus.FAILURE, JobStatus.CANCELED, "unknown"):
        return "bad"
    return "busy"


def _problem(view: ClipView, status: str) -> str:
    if view.problem:
        return f'<p class="alert" role="alert">{escape(view.problem)}</p>'
    if status == JobStatus.FAILURE:
        text = job_error_text(view.job or {}) or "The job failed without saying why."
        return f'<p class="alert" role="alert">Job failed: {escape(text)}</p>'
    if status == JobStatus.CANCELED:
        return '<p class="alert" role="alert">The job was canceled: there is no video.</p>'
    if not view.video_path and not is_terminal(status):
        return '<p class="note">The job is still running: this page reloads until its video is ready.</p>'
    return ""


def _player(index: int, view: ClipView) -> str:
    if not view.video_path:
        return ""
    origin = (
        "from the archive"
        if view.video_origin == "archive"
        else "from the job's output on Scenario (not archived yet)"
    )
    note = f'<p class="note" id="clip-{index}-origin">Streamed {escape(origin)}.</p>'
    kind = _spec(view).output.kind
    if kind == "image":
        return f'<img id="clip-{index}" class="output" alt="Output of the job" src="{escape(view.video_path)}">{note}'
    if kind != "video":
        return f'<p><a id="clip-{index}" href="{escape(view.video_path)}">Output of the job</a></p>{note}'
    poster = f' poster="{escape(view.poster_path)}"' if view.poster_path else ""
    return (
        f'<video id="clip-{index}" data-clip="clip-{index}" controls preload="metadata" playsinline{poster}'
        f' src="{escape(view.video_path)}"></video>{note}'
    )


def _spec(view: ClipView) -> ModelSpec:
    """The spec of the clip's model.

    As its task pushed it, else as its manifest records it; a generic one titled "Scenario job" when neither
    says.
    """
    from airflow_kling.models import model_spec
    from airflow_kling.models.spec import ModelSpec

    model_id = view.clip.model_id or (view.manifest or {}).get("model_id")
    if not isinstance(model_id, str) or not model_id:
        return ModelSpec(model_id="", title="Scenario job")
    return model_spec(model_id)


def _inputs(view: ClipView) -> list[tuple[str, str]]:
    """The inputs' rows as the model's spec shows them."""
    recorded = (view.manifest or {}).get("inputs") or ((view.job or {}).get("metadata") or {}).get("input")
    return _spec(view).preview_rows(recorded if isinstance(recorded, dict) else {})


def _cost(job: dict[str, Any]) -> str:
    cost = job_cost(job)
    return "-" if cost is None else f"{cost:g} creative units"


def _processing(job: dict[str, Any], status: str) -> str:
    """How long the job took (or runs), and when: ``38 s, 6 Dec 2026 10:31:02 to 10:31:40 UTC``."""
    created, updated = job.get("createdAt"), job.get("updatedAt")
    try:
        start = parse_api_date(str(created)) if created else None
        end = parse_api_date(str(updated)) if updated and is_terminal(status) else None
    except ValueError:
        return "-"
    if start is None:
        return "-"
    if end is None:
        return f"running for {_span((datetime.now(UTC) - start).total_seconds())} (since {_moment(start)})"
    ended = f"{end.astimezone(UTC):%H:%M:%S} UTC"
    return f"{_span((end - start).total_seconds())}, {_moment(start).removesuffix(' UTC')} to {ended}"


def _span(seconds: float) -> str:
    """Seconds as a person says them: ``38 s``, ``2 min 5 s``, ``1 h 4 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _moment(value: datetime | str) -> str:
    """A moment as a person reads it: ``6 Dec 2026 10:31:02 UTC`` (what cannot be read, as it is)."""
    try:
        when = value if isinstance(value, datetime) else parse_api_date(value)
    except ValueError:
        return str(value)[:40]
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return f"{when.day} {when:%b %Y %H:%M:%S} UTC"


def _archive(view: ClipView, status: str) -> list[tuple[str, str]]:
    if not view.clip.files:
        failed = status in (JobStatus.FAILURE, JobStatus.CANCELED)
        return [("Archive", "nothing to archive" if failed else "not archived (yet)")]
    rows: list[tuple[str, str]] = [
        (
            "Archived",
            _Html(
                f"{_location(item['uri'])} ({item['size'] / 1e6:.2f} MB, SHA-256 "
                f"<code>{escape(item['sha256'][:16])}...</code>)"
            ),
        )
        for item in view.clip.files
    ]
    return [*rows, ("Manifest", _Html(_location(view.clip.files[0]["manifest_uri"])))]


def _location(uri: str) -> str:
    """A long location shortened for the eye (``.../job_x/asset_y.mp4``), the whole of it a click away."""
    parts = uri.rstrip("/").split("/")
    short = uri if len(parts) <= 5 else ".../" + "/".join(parts[-2:])
    if short == uri:
        return f"<code>{escape(uri)}</code>"
    return (
        f'<details class="location"><summary><code>{escape(short)}</code></summary>'
        f"<code>{escape(uri)}</code></details>"
    )


def _manifest(view: ClipView) -> str:
    if view.manifest is None:
        return ""
    text = json.dumps(view.manifest, indent=2, sort_keys=True)
    return f'<details class="manifest"><summary>manifest.json</summary><pre>{escape(text)}</pre></details>'


_STYLE = """
:root { color-scheme: light dark; --fg: #1a202c; --muted: #4a5568; --line: #e2e8f0; --card: #fff;
  --bg: #f7fafc; --ok: #2f855a; --bad: #c53030; --busy: #2b6cb0; }
@media (prefers-color-scheme: dark) { :root { --fg: #e2e8f0; --muted: #a0aec0; --line: #2d3748;
  --card: #1a202c; --bg: #171923; } }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); }
main { padding: 16px; max-width: 1100px; }
h1 { font-size: 18px; margin: 0 0 12px; }
h2 { font-size: 16px; margin: 0 0 8px; display: flex; gap: 8px; align-items: center; }
.clip { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px;
  margin-bottom: 14px; }
.body { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.media { flex: 1 1 420px; max-width: 640px; } .media:empty { display: none; }
.facts { flex: 1 1 320px; min-width: 0; }
video { display: block; width: 100%; max-height: 60vh; background: #000; border-radius: 6px; }
table { border-collapse: collapse; }
th { text-align: left; color: var(--muted); font-weight: 500; padding: 3px 16px 3px 0; vertical-align: top;
  white-space: nowrap; }
td { padding: 3px 0; overflow-wrap: anywhere; }
.badge { font-size: 12px; padding: 1px 8px; border-radius: 10px; color: #fff; background: var(--busy); }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); }
.alert { border-left: 4px solid var(--bad); padding: 8px 12px; background: rgba(197, 48, 48, .08); }
.note, .empty { color: var(--muted); }
pre { font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0 0; }
details.location { display: inline; } details.location[open] summary { display: none; }
summary { cursor: pointer; } code { font-size: 12px; }
"""

_SCRIPT = """
for (const video of document.querySelectorAll("video[data-clip]")) {
  const duration = document.getElementById(video.dataset.clip + "-duration");
  video.addEventListener("loadedmetadata", () => {
    duration.textContent = video.duration.toFixed(2) + " s";
  });
  video.addEventListener("error", () => {
    duration.textContent = "-";
    document.getElementById(video.dataset.clip + "-origin").textContent =
      "The video could not be loaded: see the api-server's log.";
  });
}
"""
