"""Apache Airflow provider for Scenario's Kling Lipsync model (``model_kling-lip-sync``).

Importing this package is cheap: hooks, operators and media tools live in their own modules.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers`` and the connection form know about this provider."""
    return {
        "package-name": "airflow-provider-kling",
        "name": "Scenario Kling Lipsync",
        # Airflow's providers page strips backticks, underscores and angle brackets from the description.
        "description": "Run Scenario's Kling Lipsync model from Airflow DAGs: submit, wait deferred, archive.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Scenario",
                "external-doc-url": "https://docs.scenario.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Scenario",
                "python-modules": ["airflow_kling.hooks.scenario", "airflow_kling.hooks.scenario_async"],
            }
        ],
        "extra-links": [
            "airflow_kling.operators.links.ScenarioJobLink",
            "airflow_kling.operators.links.KlingRerunLink",
        ],
        "triggers": [
            {
                "integration-name": "Scenario",
                "python-modules": [
                    "airflow_kling.triggers.job",
                    "airflow_kling.triggers.review",
                    "airflow_kling.triggers.slot",
                ],
            },
        ],
        "operators": [
            {
                "integration-name": "Scenario",
                "python-modules": [
                    "airflow_kling.operators.assets",
                    "airflow_kling.operators.generate",
                    "airflow_kling.operators.kling_lipsync",
                    "airflow_kling.operators.media",
                    "airflow_kling.operators.rerun",
                    "airflow_kling.operators.review",
                ],
            }
        ],
        "sensors": [{"integration-name": "Scenario", "python-modules": ["airflow_kling.sensors.job"]}],
        "connection-types": [
            {
                "hook-class-name": "airflow_kling.hooks.scenario.ScenarioHook",
                "hook-name": "Scenario",
                "connection-type": "scenario",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "login": "API key",
                        "password": "API secret",
                        "host": "API base URL",
                    },
                    "placeholders": {
                        "login": "api_key from the Scenario web app (Settings > API keys)",
                        "password": "api_secret shown once when the key was created",
                        "host": "https://api.cloud.scenario.com/v1 (leave empty for this default)",
                    },
                },
                "conn-fields": {
                    "project_id": {
                        "label": "Project ID",
                        "description": "Sent as projectId: the project that owns jobs and assets "
                        "(empty: the key's default project).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Seconds to wait for an API answer before retrying. Default 60.",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    },
                    "web_url": {
                        "label": "Web app URL",
                        "description": "Base of the job links shown on task instances. "
                        "Default https://app.scenario.com.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of a failed call (connection errors, 408, 409, 429, 5xx) "
                        "with exponential backoff. Default 4.",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
                    },
                },
            }
        ],
    }
