"""The campaign manifest: one JSON record per committed shard, consolidated to Parquet at the end.

A shard is committed exactly when its record exists: data files are committed first (atomically),
the record last, so a crash leaves either a complete shard or none (files without a record are
overwritten by the deterministic retry).
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from farm import store
from farm.errors import FarmError, excerpt
from farm.records import ShardRecord

MANIFEST_DIR = "_manifest"
MANIFEST_PARQUET = "manifest.parquet"


def record_url(output: str, shard_id: int) -> str:
    """Where shard `shard_id`'s record lives under an output URL."""
    return store.join(output, MANIFEST_DIR, f"shard-{shard_id:08d}.json")


def write_record(output: str, record: ShardRecord) -> None:
    """Commit a shard: write its record (one atomic write)."""
    store.write_text(record_url(output, record.shard), record.model_dump_json())


def committed_ids(output: str) -> set[int]:
    """Shard ids with a committed manifest record."""
    ids = set()
    for name in store.listdir(store.join(output, MANIFEST_DIR)):
        if name.startswith("shard-") and name.endswith(".json"):
            ids.add(int(name[6:14]))
    return ids


def read_records(output: str) -> list[ShardRecord]:
    """All committed records, sorted by shard id."""
    fs, path = store.filesystem(store.join(output, MANIFEST_DIR))
    names = [n for n in store.listdir(store.join(output, MANIFEST_DIR)) if n.endswith(".json")]
    paths = [f"{path}/{n}" for n in names]
    blobs = fs.cat(paths) if paths else {}
    records = [
        _parse_record(store.join(output, MANIFEST_DIR, n), blobs[p])
        for n, p in zip(names, paths, strict=True)
    ]
    return sorted(records, key=lambda r: r.shard)


def _parse_record(url: str, blob: bytes) -> ShardRecord:
    """One shard record; FarmError naming the record (and a short excerpt) if it is unreadable."""
    try:
        return ShardRecord.model_validate_json(blob)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the record"
        raise FarmError(
            f"{url}: unreadable shard record ({where}: {first['msg']}; starts {excerpt(blob)})"
        ) from None


def write_parquet(output: str, records: list[ShardRecord]) -> str:
    """Consolidated manifest.parquet (one row per shard) in the output location."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in r.model_dump().items()}
        for r in records
    ]
    table = pa.Table.from_pylist(rows)
    url = store.join(output, MANIFEST_PARQUET)
    with store.atomic_local_file(url) as tmp:
        pq.write_table(table, tmp)
    return url
