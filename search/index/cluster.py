"""Connecting to a Ray cluster (the optional `cluster` extra), once per process; Ray is imported only here and in
the functions that run work on it, never when a module of the package is imported."""

from __future__ import annotations

import logging
from typing import Any

from search.errors import ClusterUnavailable

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'search[cluster]' (Ray is optional; without --ray / SEARCH_RAY_ADDRESS nothing needs it)"


def import_ray() -> Any:
    """The `ray` module, or ClusterUnavailable saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(address: str) -> Any:
    """Join the cluster at `address` (once: a process already connected keeps its connection) and return `ray`.

    `auto` is Ray's own default: the cluster named by RAY_ADDRESS or started on this machine by `ray start`, else a
    new single-machine one that ends with this process (no dashboard: it would take a core from the work). Any
    other value is an address, `ray://head:10001` (Ray Client) or `head:6379`.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    where = None if address == "auto" else address
    try:
        ray.init(address=where, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterUnavailable(
            f"cannot join the Ray cluster at {address!r}: {str(exc).strip().splitlines()[0]}; start one with "
            "`ray start --head` (and `ray start --address HEAD:6379` on the other nodes), or use --ray auto"
        ) from None
    log.info("joined Ray at %s: %s", address, ray.cluster_resources())
    return ray
