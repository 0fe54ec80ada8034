"""Hooks for the Scenario REST API: :class:`ScenarioHook` (sync) and :class:`ScenarioAsyncHook` (async).

Import them from their modules (``airflow_kling.hooks.scenario``); this package stays empty so that
importing one does not pull in the other's dependencies.
"""
