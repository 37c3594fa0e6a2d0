"""Ray at the edge: connect or start a local instance, and storage for Ray Train results."""

from __future__ import annotations

import logging
import os

from farm import store


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect to RAY_ADDRESS if set, else start a fresh local Ray (dashboard off, quiet logs)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    kwargs = dict(
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        configure_logging=False,
    )
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **kwargs)
    else:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **kwargs)


def storage_for_ray(url: str):
    """(storage_path, storage_filesystem) for RunConfig: local paths as is, remote through fsspec."""
    if store.is_local(url):
        path = store.normalize(url)
        os.makedirs(path, exist_ok=True)
        return path, None
    import pyarrow.fs

    fs, path = store.filesystem(url)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))
