"""Ray at the edge: connect or start a local instance, and storage for Ray Train results."""

from __future__ import annotations

import logging
import os

from farm import store

# Ray logs this notice each time it starts a local instance with token authentication on by
# default (Ray >= 2.60 with RAY_AUTH_MODE unset); the README explains it once instead.
AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


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
        hide_auth_notice()
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **kwargs)


class _DropAuthNotice(logging.Filter):
    """Drops Ray's token-authentication notice and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the notice, True for every other record."""
        return not record.getMessage().startswith(AUTH_NOTICE)


def hide_auth_notice() -> None:
    """Hide Ray's notice that a new local instance uses token authentication; the mode stays.

    Token authentication itself is untouched: Ray still turns it on for a local instance when
    RAY_AUTH_MODE is unset, and any RAY_AUTH_MODE the user set is Ray's to honour.
    """
    logger = logging.getLogger(AUTH_LOGGER)
    if not any(isinstance(f, _DropAuthNotice) for f in logger.filters):
        logger.addFilter(_DropAuthNotice())


def storage_for_ray(url: str):
    """(storage_path, storage_filesystem) for RunConfig: local paths as is, remote through fsspec."""
    if store.is_local(url):
        path = store.normalize(url)
        os.makedirs(path, exist_ok=True)
        return path, None
    import pyarrow.fs

    fs, path = store.filesystem(url)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))
