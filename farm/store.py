"""Object storage behind fsspec URLs: the farm home, S3 settings and atomic writes to final names."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import fsspec
from fsspec.core import url_to_fs

from farm import faults
from farm.errors import FarmError

DEFAULT_HOME = "farm-home"
T = TypeVar("T")


def s3_endpoint() -> str | None:
    """The S3 endpoint for MinIO-style servers: FARM_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL[_S3]."""
    for var in ("FARM_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def storage_options(url: str) -> dict:
    """Fsspec options for a URL; credentials come from the standard AWS variables.

    S3 listings are never cached (`use_listings_cache=False`): resume, status, finalize and
    validation decide from listings that other processes (the actors) keep changing.
    """
    if url.startswith(("s3://", "s3a://")):
        endpoint = s3_endpoint()
        options: dict = {"use_listings_cache": False}
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        return options
    return {}


def is_local(url: str) -> bool:
    """True for plain paths and file:// URLs."""
    return "://" not in url or url.startswith("file://")


def normalize(url: str) -> str:
    """Absolute plain path for local URLs; remote URLs unchanged (no trailing slash)."""
    if is_local(url):
        path = url[len("file://") :] if url.startswith("file://") else url
        return str(Path(path).expanduser().resolve())
    return url.rstrip("/")


def home() -> str:
    """The farm store: FARM_HOME, default ./farm-home (FarmError if a file stands in its way)."""
    url = normalize(os.environ.get("FARM_HOME", DEFAULT_HOME))
    if is_local(url):
        check_folder_path(url, "FARM_HOME")
    return url


def check_folder_path(path: str, what: str) -> None:
    """FarmError unless `path` is a folder or can become one (no file at it or above it)."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.is_dir():
            return
        if candidate.exists():
            raise FarmError(
                f"{what}={path}: store is not writable ({candidate} is a file, not a folder); "
                f"point {what} at a folder (it is created if missing)"
            )


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL with '/'."""
    out = url.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path) for a URL."""
    url = normalize(url)
    if url.startswith("flaky://"):
        fsspec.register_implementation("flaky", faults.FlakyFileSystem, clobber=True)
    return url_to_fs(url, **storage_options(url))


def _fresh(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Forget what a filesystem cached about a path, so the next question asks the store."""
    fs.invalidate_cache(path)


def exists(url: str) -> bool:
    """Whether anything (a file or a folder) exists at a URL (never from a cached listing)."""
    fs, path = filesystem(url)
    _fresh(fs, path)
    return fs.exists(path)


def read_bytes(url: str) -> bytes:
    """The bytes of the file at a URL (FarmError when there is none)."""
    fs, path = filesystem(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise FarmError(f"{url}: file not found") from None


@contextlib.contextmanager
def open_input(url: str) -> Iterator:
    """A binary file object to read a URL; FarmError naming the URL if there is no such file."""
    fs, path = filesystem(url)
    try:
        handle = fs.open(path, "rb")
    except FileNotFoundError:
        raise FarmError(f"{url}: file not found") from None
    with handle:
        yield handle


def read_text(url: str) -> str:
    """The text of the file at a URL, decoded as UTF-8."""
    return read_bytes(url).decode()


def listdir(url: str) -> list[str]:
    """Base names under a URL (empty if it does not exist), from a fresh listing."""
    fs, path = filesystem(url)
    _fresh(fs, path)
    try:
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
    except FileNotFoundError:
        return []


TMP_MARK = ".tmp-"
UPLOAD_PREFIX = "farm-upload-"


def _tmp_sibling(path: str) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/.{tail}{TMP_MARK}{uuid.uuid4().hex[:12]}"


def is_temporary(name: str) -> bool:
    """Whether a base name is one of atomic_local_file's hidden temporaries (.x.tmp-1a2b...)."""
    return name.startswith(".") and TMP_MARK in name


def remove_temporaries(url: str) -> int:
    """Delete the hidden temporaries a killed writer left in a local folder; how many.

    Only safe while nobody writes into the folder (a campaign's driver holds its lease and has
    no actors, or every shard is committed). Remote stores never hold temporaries (one PUT).
    """
    if not is_local(url):
        return 0
    folder = Path(normalize(url))
    removed = 0
    for path in folder.glob(".*"):
        if is_temporary(path.name) and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def _upload_owner(name: str) -> int | None:
    """The pid in an upload folder's name (farm-upload-<pid>-...), None for other names."""
    head, _, _ = name.removeprefix(UPLOAD_PREFIX).partition("-")
    return int(head) if name.startswith(UPLOAD_PREFIX) and head.isdigit() else None


def clean_stale_uploads(tmpdir: str | None = None) -> int:
    """Delete upload folders (S3 staging) of processes that died mid-upload; how many.

    Folders are named farm-upload-<pid>-...; only those whose process no longer exists go.
    """
    import shutil

    import psutil

    removed = 0
    root = Path(tmpdir or tempfile.gettempdir())
    for path in root.glob(f"{UPLOAD_PREFIX}*"):
        owner = _upload_owner(path.name)
        if owner is None or psutil.pid_exists(owner) or not path.is_dir():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def write_bytes(url: str, data: bytes) -> None:
    """Write bytes to a final name atomically (tmp + rename locally; one PUT on S3)."""
    with atomic_local_file(url) as tmp:
        Path(tmp).write_bytes(data)


def write_text(url: str, text: str) -> None:
    """Write text (UTF-8) to a final name atomically, as write_bytes does."""
    write_bytes(url, text.encode())


@contextlib.contextmanager
def atomic_local_file(url: str) -> Iterator[str]:
    """Yield a local path to write; on success it becomes `url` atomically, on error it vanishes.

    Local: a hidden temporary sibling renamed with os.replace. Remote (S3): a local temporary
    file uploaded in one PUT (or one multipart upload), which S3 makes visible all at once.
    """
    url = normalize(url)
    fs, path = filesystem(url)
    if is_local(url):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(path)
        try:
            yield tmp
            faults.kill_once("writing")
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return
    with tempfile.TemporaryDirectory(prefix=f"{UPLOAD_PREFIX}{os.getpid()}-") as tmpdir:
        tmp = os.path.join(tmpdir, path.rsplit("/", 1)[-1])
        yield tmp
        faults.kill_once("writing")
        fs.put_file(tmp, path)


def with_retries(fn: Callable[[], T], what: str, attempts: int = 5, base_delay: float = 0.2) -> T:
    """Call fn, retrying transient storage errors (OSError and friends) with exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except (OSError, TimeoutError, ConnectionError) as exc:
            if attempt == attempts - 1:
                raise OSError(f"{what}: still failing after {attempts} attempts: {exc}") from exc
            time.sleep(base_delay * 2**attempt)
    raise AssertionError("unreachable")


def check_writable(url: str) -> None:
    """Raise FarmError unless a small object can be written and removed under `url`."""
    probe = join(url, f".farm-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        with_retries(lambda: write_bytes(probe, b"ok"), f"writing {probe}", attempts=3)
        fs, path = filesystem(probe)
        fs.rm_file(path)
    except FarmError:
        raise
    except Exception as exc:
        raise FarmError(f"{url}: store is not writable ({type(exc).__name__}: {exc})") from None
