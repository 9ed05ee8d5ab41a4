"""moto's S3 server on loopback for the object-store tests, and copies of local stores into its bucket.

The server's settings (test credentials, region, ``AWS_ENDPOINT_URL``) go into the environment
before the local Ray session is started, so its workers inherit them (on a cluster, the job's
``runtime_env.env_vars`` does that). Any Ray session of the test process is shut down first, and
Ray is left shut down afterwards; the next module that needs one starts its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow.fs as pafs

from mixture_ray.locations import Location


@contextlib.contextmanager
def loopback_s3(bucket: str, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """An S3 server on 127.0.0.1 holding an empty ``bucket``, then a 2-CPU local Ray session.

    Args:
        bucket: the bucket created on the server.
        env: more environment settings for the test process and Ray's workers.

    Yields:
        The server's endpoint (``http://127.0.0.1:<port>``); the environment is restored after.
    """
    import boto3
    import ray
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in a failure's log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    settings = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, **(env or {})}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        boto3.client("s3").create_bucket(Bucket=bucket)
        if ray.is_initialized():
            ray.shutdown()
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        yield endpoint
    finally:
        ray.shutdown()
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def upload_folder(local: Path, uri: str) -> str:
    """Copy every file below ``local`` to ``uri``, keeping their relative names; returns ``uri``."""
    target = Location.of(uri)
    pafs.copy_files(str(local), target.path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=target.fs)
    return uri
