"""File names and kinds: the one suffix/format check, data files of a folder, kind of a file."""

from __future__ import annotations

from collections.abc import Iterable

from farm import store
from farm.errors import FarmError

FORMATS = ("parquet", "h5")
"""File formats farm writes: Parquet and HDF5 (CaloChallenge layout for showers, JetNet's for jets)."""
SUFFIXES = {".h5": "h5", ".hdf5": "h5", ".parquet": "parquet"}
ALLOWED = ".h5, .hdf5 or .parquet"
EXTENSION = {"parquet": "parquet", "h5": "h5"}
"""Extension (without the dot) of the files farm writes in each format."""


def file_format(url: str) -> str:
    """'parquet' or 'h5' from a file's suffix; FarmError naming the allowed suffixes otherwise."""
    for suffix, fmt in SUFFIXES.items():
        if url.endswith(suffix):
            return fmt
    raise FarmError(f"{url}: unknown file type; expected {ALLOWED}")


def is_data_file(url: str) -> bool:
    """Whether a name ends in one of the data-file suffixes."""
    return url.endswith(tuple(SUFFIXES))


def check_formats(formats: Iterable[str], what: str = "output") -> tuple[str, ...]:
    """The distinct formats in order; FarmError naming the allowed ones if any is unknown."""
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise FarmError(
            f"unknown {what} format {bad[0] if bad else ''!r}: allowed {', '.join(FORMATS)}"
        )
    return formats


def data_files(url: str) -> list[str]:
    """The file itself, or the data files of a folder (shards, sorted; hidden files skipped)."""
    fs, path = store.filesystem(url)
    if not fs.exists(path):
        raise FarmError(f"{url}: file not found")
    if not fs.isdir(path):
        return [url]
    names = [n for n in store.listdir(url) if is_data_file(n) and not n.startswith(".")]
    if not names:
        raise FarmError(f"{url}: folder holds no {ALLOWED} files")
    return [store.join(url, n) for n in names]


SIGNATURES = {b"\x89HDF\r\n\x1a\n": "h5", b"PAR1": "parquet"}
"""The first bytes of an HDF5 and of a Parquet file."""


def sniff(url: str) -> str | None:
    """'h5' or 'parquet' from a file's first bytes (None: neither, or empty)."""
    with store.open_input(url) as handle:
        head = handle.read(8)
    for signature, fmt in SIGNATURES.items():
        if head.startswith(signature):
            return fmt
    return None


def unreadable(url: str, exc: BaseException) -> FarmError:
    """The one line for a data file that cannot be opened: empty, truncated, renamed, corrupt."""
    names = {"h5": "HDF5", "parquet": "Parquet"}
    expected = file_format(url)
    fs, path = store.filesystem(url)
    size = fs.size(path)
    found = sniff(url) if size else None
    if size == 0:
        why = "the file is empty"
    elif found is not None and found != expected:
        why = f"it holds {names[found]} data under a .{url.rsplit('.', 1)[-1]} name; rename it"
    elif found is None:
        article = "an" if expected == "h5" else "a"
        why = f"it does not start like {article} {names[expected]} file (another kind, or corrupt)"
    else:
        why = f"truncated or corrupt ({' '.join(str(exc).split())[:160]})"
    return FarmError(f"{url}: not a readable {names[expected]} file: {why}")


def detect_kind(url: str) -> str:
    """'showers', 'points', 'jets' or 'events' from a file's HDF5 datasets or Parquet columns."""
    try:
        names = _names(url)
    except FarmError:
        raise
    except Exception as exc:  # h5py's OSError, pyarrow's ArrowInvalid: the file, not the store
        raise unreadable(url, exc) from None
    if "showers" in names or {"voxel_index", "voxel_energy"} <= names:  # dense or sparse
        return "showers"
    if {"n_hits", "e"} <= names:
        return "points"
    if {"particle_features", "eta_rel"} & names:
        return "jets"
    if "truth_pt" in names:  # full events, or truth-only conditions (no reco_* columns)
        return "events"
    raise FarmError(f"{url}: not a showers, jets or events file (found {sorted(names)[:20]})")


def _names(url: str) -> set[str]:
    """The HDF5 datasets or Parquet columns of a file."""
    if file_format(url) == "parquet":
        import pyarrow.parquet as pq

        with store.open_input(url) as handle:
            return set(pq.ParquetFile(handle).schema_arrow.names)
    import h5py

    with store.open_input(url) as handle, h5py.File(handle, "r") as f:
        return set(f.keys())
