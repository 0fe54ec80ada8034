"""The provider's Airflow UI plugin: a lipsync preview beside the task logs.

:mod:`airflow_kling.plugins.preview` declares the plugin (registered through the ``airflow.plugins`` entry
point: a stock Airflow 3.1+ loads it with nothing copied by hand); :mod:`~airflow_kling.plugins.app` is its
FastAPI app, :mod:`~airflow_kling.plugins.clips` finds what a task made, :mod:`~airflow_kling.plugins.ranges`
answers HTTP ``Range`` requests and :mod:`~airflow_kling.plugins.page` writes the page.
"""
