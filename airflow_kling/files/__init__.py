"""Files between your storage and Scenario.

Upload a file as an asset (:mod:`~airflow_kling.files.uploads`), download an asset's file
(:mod:`~airflow_kling.files.downloads`), archive a job's outputs with their manifest
(:mod:`~airflow_kling.files.archive`). Each takes the narrow client it needs
(:mod:`~airflow_kling.files.client`), which :class:`~airflow_kling.hooks.scenario.ScenarioHook` is.
"""
