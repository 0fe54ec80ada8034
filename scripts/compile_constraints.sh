#!/usr/bin/env bash
# Pin every dependency, dev tools included, for each supported Airflow line: constraints/airflow-<line>.txt,
# which `make test` and `make test-matrix` install from. Run it after changing pyproject.toml's dependencies
# or moving a line to a newer patch release.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
# Airflow 3.2.2's execution API fails to build its models with cadwyn 9 / fastapi 0.165 (both newer than it):
# held at the releases 3.3.2 resolves to.
declare -A EXTRA=([3.2.2]="cadwyn<8 fastapi<0.137")
# apache-airflow-providers-celery 3.26.0 imports celery.backends.database.retry, which celery 5.7 removed.
COMMON="celery<5.7"
for release in 3.1.8 3.2.2 3.3.2; do
  printf '%s\n' "apache-airflow==${release}" $COMMON ${EXTRA[$release]:-} |
    "$UV" pip compile --quiet --no-header --python-version 3.11 pyproject.toml - --extra dev \
      -o "constraints/airflow-${release%.*}.txt"
done
