"""Runs whenever new lipsync videos are archived: scheduled on the ``kling_lipsync_videos`` asset that
``ScenarioArchiveAssetsOperator`` updates. Here it writes a summary of the new videos next to them; a real
team would publish them, notify a channel or start an editing pipeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_kling.operators.assets import LIPSYNC_VIDEOS

with DAG(
    dag_id="kling_lipsync_on_archive",
    description="Summarize newly archived lipsync videos",
    schedule=[LIPSYNC_VIDEOS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["kling", "scenario", "example"],
    doc_md=__doc__,
):

    @task
    def summarize(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Read each new video's manifest and write ``summary.json`` beside it."""
        import json

        from airflow_kling.storage import storage_path

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
                    }
                    (manifest_path.parent / "summary.json").write_text(json.dumps(summary, indent=2))
                    summaries.append(summary)
        print(f"{len(summaries)} new lipsync video(s): {summaries}")
        return summaries

    summarize()
