"""Runs whenever new lipsync videos are archived.

Scheduled on the ``kling_lipsync_videos`` asset that ``ScenarioArchiveAssetsOperator`` updates. Here it writes
a summary of the new videos next to them; a real team would notify a channel or start an editing pipeline.

``kling_lipsync_on_publish`` does the same for the clips a reviewer approved (the asset
``kling_lipsync_published`` of ``KlingReviewOperator``): the place to show them to customers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_kling.operators.kling_lipsync import LIPSYNC_VIDEOS
from airflow_kling.operators.review import LIPSYNC_PUBLISHED

for dag_id, description, asset, summary_name in (
    ("kling_lipsync_on_archive", "Summarize newly archived lipsync videos", LIPSYNC_VIDEOS, "summary.json"),
    (
        "kling_lipsync_on_publish",
        "Summarize newly approved and published lipsync videos",
        LIPSYNC_PUBLISHED,
        "published.json",
    ),
):
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=[asset],
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["kling", "scenario", "example"],
        doc_md=__doc__,
    ):

        @task
        def summarize(
            triggering_asset_events: Any = None, summary_name: str = summary_name
        ) -> list[dict[str, Any]]:
            """Read each new video's manifest and write a summary beside it.

            The summary is ``summary.json`` for an archived video, ``published.json`` for a published one.
            """
            import json

            from airflow_kling.files.storage import storage_path

            summaries = []
            for events in (triggering_asset_events or {}).values():
                for event in events:
                    for uri in event.extra.get("uris", []):
                        manifest_path = storage_path(uri).parent / "manifest.json"
                        manifest = json.loads(manifest_path.read_text())
                        summary = {
                            "job_id": manifest["job_id"],
                            "videos": [entry["uri"] for entry in manifest["files"]],
                            "bytes": sum(entry["size"] for entry in manifest["files"]),
                            "creative_units_cost": manifest["creative_units_cost"],
                            "review": manifest.get("review"),
                        }
                        (manifest_path.parent / summary_name).write_text(json.dumps(summary, indent=2))
                        summaries.append(summary)
            print(f"{len(summaries)} new lipsync video(s): {summaries}")
            return summaries

        summarize()
