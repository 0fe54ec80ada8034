# The official Airflow 3 image with this provider installed (and the s3 extra for object-storage archives).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}
COPY --chown=airflow:root pyproject.toml README.md CHANGELOG.md LICENSE /opt/airflow-provider-kling/
COPY --chown=airflow:root airflow_kling /opt/airflow-provider-kling/airflow_kling
RUN pip install --no-cache-dir "/opt/airflow-provider-kling[s3]"
COPY --chown=airflow:root dags /opt/airflow/dags
