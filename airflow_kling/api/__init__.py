"""The Scenario API as this provider speaks it, with no Airflow in it.

The wire contract (paths, query strings, which calls submit a paid job, answers and errors:
:mod:`~airflow_kling.api.contract`) and the retry rules (:mod:`~airflow_kling.api.retry`). Both hooks, the
file transfers and polling build on it.
"""
