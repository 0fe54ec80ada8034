"""S3 for real on loopback: moto's server, and a client of it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deployments import free_port

BUCKET = "kling"
"""The bucket of the :func:`s3` fixture."""

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[Any]:
    """A moto S3 server with ``bucket`` in it; yields a boto3 client whose ``endpoint`` attribute is the
    server's URL and whose ``server`` attribute is the server (a test may stop it and start another on the same
    port: moto keeps the objects in the process, and the one running at the end is stopped).
    ``environment(client)`` is what a process needs to reach it through boto's credential chain (as a worker
    with an instance role does: no Airflow connection)."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=bucket)
    client.endpoint, client.server = endpoint, server
    try:
        yield client
    finally:
        client.server.stop()


def environment(client: Any) -> dict[str, str]:
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": str(client.endpoint)}


def put_clips(client: Any, bucket: str, prefix: str, names: list[str], broken: str | None = None) -> None:
    """A generated 2.5 s 720p clip at ``<prefix>/<name>.mp4`` for each name; ``broken``: one more object that
    is no video at all."""
    import tempfile
    from pathlib import Path

    from airflow_kling.media.samples import make_video

    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            local = make_video(Path(scratch) / f"{name}.mp4", width=1280, height=720, seconds=2.5, fps=10)
            client.upload_file(local, bucket, f"{prefix}/{name}.mp4")
    if broken:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{broken}.mp4", Body=b"not a video at all")


def keys(client: Any, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """A moto S3 server for a test module, with :data:`BUCKET` in it (a client of it, see :func:`moto_s3`)."""
    with moto_s3(BUCKET) as client:
        yield client
