"""Pipeline test fixtures: a real S3 API (moto's server on 127.0.0.1) reached through s3fs with fake credentials."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server for the whole session (fake credentials; region from AWS_DEFAULT_REGION)."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)  # s3fs mkdir reads the region here, not from client_kwargs
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3_options(s3_endpoint: str) -> dict:
    """s3fs storage options for the moto server; fails fast (no long retries) if the server is gone."""
    return {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3_endpoint},
            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}


@pytest.fixture
def s3_bucket(s3_options: dict) -> str:
    """A fresh, empty bucket per test: 's3://<name>'."""
    import s3fs

    name = f"test-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(**s3_options)
    fs.mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local():
    """ONE local Ray for the whole session (2 logical CPUs; `pipeline.job.init_ray` then returns early).

    The AWS region is put in the workers' environment (s3fs reads it there); credentials travel in storage options.
    """
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"AWS_DEFAULT_REGION": "us-east-1", "TOKENIZERS_PARALLELISM": "false"}})
    try:
        yield ray
    finally:
        ray.shutdown()
