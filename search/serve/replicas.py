"""Serving replicas: the HTTP app as a Ray Serve deployment of N replicas, each loading the published index.

`serve_replicas(settings, replicas)` connects to (or starts) a Ray cluster, starts Serve's HTTP proxy on the
settings' host and port, and deploys `SearchReplica` N times. Each replica builds the app with `create_app` in its
own process (the factory runs there: nothing with a loaded model is pickled), so every replica has its own
`SearchService`: its own model, its own copy of the index, its own hot-reload watcher, guards and metrics. Ray is
imported only inside these functions: `search serve` without `--replicas` never imports it.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

import search
from search.config import Settings
from search.errors import ClusterUnavailable

log = logging.getLogger(__name__)

APP_NAME = "search"
# Serve's own limit of requests a replica holds at once (its default, 5, would queue requests in the proxy
# before the app's guards see them): above the guards' concurrency limit, so the guards answer 503 as they do on
# uvicorn, plus room for /health and /metrics, which the guards never count.
_UNLIMITED_ROOM = 8


class SearchReplica:
    """One replica: its app is built in the replica's own process, when Serve starts it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __serve_build_asgi_app__(self) -> FastAPI:
        from ray import serve

        from search.serve.app import create_app

        _access_log_to_stderr()
        return create_app(settings=self.settings, replica=serve.get_replica_context().replica_id.unique_id)


def missing_ray() -> str | None:
    """What to install when Ray Serve is missing, else None."""
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        return "--replicas needs Ray Serve: pip install 'search[cluster]' (or pip install 'ray[serve]')"
    return None


def replica_settings(settings: Settings) -> Settings:
    """The settings a replica gets: paths made absolute (a replica's working directory is Ray's, not the
    caller's), and torch threads set to the replica's CPUs unless SEARCH_THREADS says otherwise."""
    update: dict[str, Any] = {
        "index_dir": settings.index_dir.resolve(),
        "cache_dir": settings.cache_dir.resolve(),
    }
    if settings.embedding_cache is not None:
        update["embedding_cache"] = settings.embedding_cache.resolve()
    if settings.api_key_file is not None:
        update["api_key_file"] = settings.api_key_file.resolve()
    if "threads" not in settings.model_fields_set:
        update["threads"] = max(1, math.ceil(settings.replica_cpus))
    return settings.model_copy(update=update)


def serve_replicas(settings: Settings, replicas: int, on_ready: Callable[[str], None] = print) -> None:
    """Serve the app with `replicas` replicas until SIGINT or SIGTERM; then tear Serve down.

    `settings.ray_address` names the cluster (`auto`, or `ray://host:10001`, or `host:6379`); without it Ray starts
    a local cluster on this machine for as long as the command runs. The package's code travels to the cluster
    with the deployment (Ray's `py_modules`), so the nodes need the dependencies installed, not this checkout.
    """
    import ray
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        ray.init(
            # "local": a new Ray for this command. None would join any cluster this machine runs (`ray start`, or
            # another program's), and leave Serve on it.
            address=settings.ray_address or "local",
            runtime_env={"py_modules": [str(Path(search.__file__).parent)]},
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except ConnectionError as exc:
        raise ClusterUnavailable(
            f"SEARCH_RAY_ADDRESS={settings.ray_address!r} (--ray): no Ray cluster answers there ({exc}); start one "
            "with `ray start --head`, or leave --ray out to start a local one"
        ) from None
    # SIGTERM stops the command as Ctrl-C does, even while it waits for the replicas to start: Serve is torn down
    # below either way, never left running on the cluster.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        serve.start(
            http_options={"host": settings.host, "port": settings.port}, logging_config={"log_level": "WARNING"}
        )
        deployment = serve.deployment(
            name="SearchReplica",
            num_replicas=replicas,
            ray_actor_options={"num_cpus": settings.replica_cpus},
            max_ongoing_requests=settings.max_concurrency + _UNLIMITED_ROOM,
            # A replica loads the model and the index and warms up before it is healthy: tens of seconds.
            health_check_timeout_s=60,
            graceful_shutdown_timeout_s=5,
        )(serve.ingress()(SearchReplica))
        try:
            serve.run(deployment.bind(replica_settings(settings)), name=APP_NAME, route_prefix="/")
        except (RayServeException, RuntimeError) as exc:  # RuntimeError: an application that failed to deploy
            raise ClusterUnavailable(
                f"the replicas did not start: {exc}; their logs are under the Ray session's logs/serve/ "
                "(/tmp/ray/session_latest/logs/serve/ on the head node)"
            ) from None
        on_ready(f"http://{settings.host}:{settings.port}")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopping the replicas")
    finally:
        serve.shutdown()
        ray.shutdown()


def _access_log_to_stderr() -> None:
    """One JSON line per request on the replica's stderr (Ray keeps it in the replica's log file), as on uvicorn."""
    access = logging.getLogger("search.access")
    if not access.handlers:
        access.addHandler(logging.StreamHandler())
    access.setLevel(logging.INFO)
    access.propagate = False
