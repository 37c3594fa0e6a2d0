"""Whole events as Parquet: one row per event, truth and reco sets as list columns (docs/events.md).

Columns (plain Arrow types, so pyarrow, pandas, polars and awkward read the files without farm):
event_id, event_index int64; n_truth, n_reco int32; met_x, met_y, ht, truth_met_x, truth_met_y,
truth_ht float32 (GeV) and, for DIS, q2 (GeV^2), x_bj, y_inel and the scattered electron's
electron_e, electron_pt (GeV), electron_eta, electron_phi (rad) float32; truth_pt, truth_eta,
truth_phi list<float32>, truth_pdg list<int32>, truth_charge list<int8>; reco_pt, reco_eta,
reco_phi list<float32>, reco_class list<int8>, reco_charge list<int8>. Units live in field
metadata; class names, detector parameters and generator provenance as JSON under b"farm.events".
Reading refuses missing columns, counts that disagree with the lists, unknown pdg ids, events
without truth particles, unknown classes and non-finite kinematics, in one line naming the file.
A file without any reco column is truth-only conditions: truth lists required, event_id, n_truth,
event_index, truth_met_x/y, truth_ht and the DIS columns optional (`arrow_to_truth`).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from farm import store
from farm.errors import FarmError
from farm.samples import EVENT_CLASSES, STABLE_PDG, EventSample, unknown_pdg

META_KEY = b"farm.events"
FORMAT = "farm-events"
N_CLASSES = len(EVENT_CLASSES)
TRUTH = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "pdg": np.int32, "charge": np.int8}
RECO = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "class": np.int8, "charge": np.int8}
PARTICLE_UNITS = {"pt": "GeV", "eta": "1", "phi": "rad", "pdg": "PDG id", "class": "index"}
EVENT = {
    "event_index": (np.int64, "1"),
    "met_x": (np.float32, "GeV"),
    "met_y": (np.float32, "GeV"),
    "ht": (np.float32, "GeV"),
    "truth_met_x": (np.float32, "GeV"),
    "truth_met_y": (np.float32, "GeV"),
    "truth_ht": (np.float32, "GeV"),
}
OPTIONAL_EVENT = {
    "q2": (np.float32, "GeV^2"),
    "x_bj": (np.float32, "1"),
    "y_inel": (np.float32, "1"),
    "electron_e": (np.float32, "GeV"),
    "electron_pt": (np.float32, "GeV"),
    "electron_eta": (np.float32, "1"),
    "electron_phi": (np.float32, "rad"),
}
TRUTH_COLUMNS = tuple(f"truth_{k}" for k in TRUTH)
TRUTH_OPTIONAL = (
    "event_id", "n_truth", "event_index", "truth_met_x", "truth_met_y", "truth_ht", *OPTIONAL_EVENT,
)  # fmt: skip
REQUIRED = (
    "event_id", "n_truth", "n_reco", *EVENT,
    *(f"truth_{k}" for k in TRUTH), *(f"reco_{k}" for k in RECO),
)  # fmt: skip


def _lists(counts: np.ndarray, values: np.ndarray) -> pa.ListArray:
    offsets = pa.array(EventSample.offsets(counts).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(values)))


def events_to_arrow(sample: EventSample, meta: dict | None = None, url: str = "<memory>"):
    """A pyarrow Table, one row per event, units and provenance in its metadata."""
    check_events(sample, url)
    cols = [
        ("event_id", pa.array(sample.event_id.astype(np.int64)), "1"),
        ("n_truth", pa.array(sample.truth_counts.astype(np.int32)), "1"),
        ("n_reco", pa.array(sample.reco_counts.astype(np.int32)), "1"),
    ]
    for name, (dtype, unit) in (EVENT | OPTIONAL_EVENT).items():
        if name in sample.event:
            cols.append((name, pa.array(sample.event[name].astype(dtype)), unit))
    for side, spec, counts in (
        ("truth", TRUTH, sample.truth_counts),
        ("reco", RECO, sample.reco_counts),
    ):
        values = getattr(sample, side)
        for k, dtype in spec.items():
            unit = PARTICLE_UNITS.get(k, "1")
            cols.append((f"{side}_{k}", _lists(counts, values[k].astype(dtype)), unit))
    description = {
        "format": FORMAT,
        "version": 1,
        "classes": list(EVENT_CLASSES),
        "units": {name: unit for name, _, unit in cols},
        "reco": "synthetic parametrised particle flow (farm.data.detector, docs/events.md)",
        **(meta or {}),
    }
    fields = [pa.field(name, arr.type, metadata={"unit": unit}) for name, arr, unit in cols]
    schema = pa.schema(fields, metadata={META_KEY: json.dumps(description).encode()})
    return pa.Table.from_arrays([arr for _, arr, _ in cols], schema=schema)


def write_events_parquet(
    url: str, sample: EventSample, meta: dict | None = None, truth_only: bool = False
) -> str:
    """Write events as Parquet (zstd) atomically; returns the URL.

    truth_only keeps the truth columns and event_id alone (a conditions file, `arrow_to_truth`).
    """
    table = events_to_arrow(sample, meta, url)
    if truth_only:
        table = table.select(
            [c for c in table.schema.names if c in (*TRUTH_COLUMNS, *TRUTH_OPTIONAL)]
        )
    with store.atomic_local_file(url) as tmp:
        pq.write_table(table, tmp, row_group_size=10_000, compression="zstd")
    return url


def check_truth(sample: EventSample, url: str, sides: tuple[str, ...] = ("truth",)) -> None:
    """The checks of `check_events` on the truth side only (truth-only conditions)."""
    n = len(sample.event_id)
    specs = {"truth": (TRUTH, sample.truth_counts), "reco": (RECO, sample.reco_counts)}
    for side in sides:
        spec, counts = specs[side]
        if counts.shape != (n,) or (counts < 0).any():
            raise FarmError(f"{url}: {side} counts must be ({n},) non-negative, got {counts.shape}")
        values = getattr(sample, side)
        missing = [k for k in spec if k not in values]
        if missing:
            raise FarmError(f"{url}: {side} set has no {missing} values")
        for k in spec:
            if len(values[k]) != int(counts.sum()):
                raise FarmError(f"{url}: n_{side} disagrees with the length of {side}_{k}")
        for k in ("pt", "eta", "phi"):
            if not np.isfinite(values[k]).all():
                raise FarmError(f"{url}: non-finite {side}_{k}")
    empty = np.flatnonzero(sample.truth_counts == 0)
    if len(empty):
        raise FarmError(
            f"{url}: {len(empty)} event(s) without truth particles (first: event_id "
            f"{int(sample.event_id[empty[0]])})"
        )
    bad = unknown_pdg(sample.truth["pdg"])
    if bad is not None:
        raise FarmError(f"{url}: unknown pdg id {bad} in truth_pdg (known: +-{sorted(STABLE_PDG)})")


def check_events(sample: EventSample, url: str) -> None:
    """One FarmError line naming the file for anything a model or a hand-made file gets wrong."""
    check_truth(sample, url, ("truth", "reco"))
    cls = sample.reco["class"]
    if len(cls) and (cls.min() < 0 or cls.max() >= N_CLASSES):
        raise FarmError(f"{url}: reco_class outside 0..{N_CLASSES - 1}")
    missing = [k for k in EVENT if k not in sample.event]
    if missing:
        raise FarmError(f"{url}: missing event-level column(s) {missing}")


def _flat(table: pa.Table, name: str, dtype) -> np.ndarray:
    column = table.column(name).combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _lengths(table: pa.Table, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    column = table.column(name).combine_chunks()
    return pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)


def arrow_to_events(table: pa.Table, url: str = "<memory>") -> EventSample:
    """An EventSample from a table of events, checked (see `check_events`)."""
    missing = [c for c in REQUIRED if c not in table.schema.names]
    if missing:
        raise FarmError(f"{url}: not a farm events file: missing column(s) {missing}")
    counts = {}
    for side, spec in (("truth", TRUTH), ("reco", RECO)):
        n_col = table.column(f"n_{side}").to_numpy().astype(np.int64)
        for k in spec:
            if not np.array_equal(_lengths(table, f"{side}_{k}"), n_col):
                raise FarmError(f"{url}: n_{side} disagrees with the lists in {side}_{k}")
        counts[side] = n_col
    event = {
        name: table.column(name).to_numpy().astype(dtype)
        for name, (dtype, _) in (EVENT | OPTIONAL_EVENT).items()
        if name in table.schema.names
    }
    sample = EventSample(
        {k: _flat(table, f"truth_{k}", d) for k, d in TRUTH.items()},
        counts["truth"],
        {k: _flat(table, f"reco_{k}", d) for k, d in RECO.items()},
        counts["reco"],
        event,
        table.column("event_id").to_numpy().astype(np.int64),
        {"url": url},
    )
    check_events(sample, url)
    return sample


def read_metadata(url: str) -> dict:
    """The JSON description stored in a file's schema metadata ({} when absent)."""
    with store.open_input(url) as handle:
        raw = (pq.ParquetFile(handle).schema_arrow.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def is_truth_only(names: list[str]) -> bool:
    """A truth-only conditions file: truth lists but no reco column at all."""
    return not any(n == "n_reco" or n.startswith("reco_") for n in names)


def arrow_to_truth(table: pa.Table, url: str = "<memory>") -> EventSample:
    """Truth-only conditions from the truth lists; reco left empty.

    Optional: event_id, n_truth, event_index and the truth event columns (truth MET and HT
    recomputed from the truth set when absent).
    """
    from farm.kinematics import met_ht

    names = table.schema.names
    missing = [c for c in TRUTH_COLUMNS if c not in names]
    if missing:
        raise FarmError(
            f"{url}: truth-only file: missing column(s) {missing} (required: "
            f"{list(TRUTH_COLUMNS)}; optional: {list(TRUTH_OPTIONAL)})"
        )
    counts = _lengths(table, "truth_pt")
    for k in TRUTH:
        if not np.array_equal(_lengths(table, f"truth_{k}"), counts):
            raise FarmError(f"{url}: truth_pt and truth_{k} lists differ in length")
    if "n_truth" in names and not np.array_equal(table.column("n_truth").to_numpy(), counts):
        raise FarmError(f"{url}: n_truth disagrees with the lists in truth_pt")
    truth = {k: _flat(table, f"truth_{k}", d) for k, d in TRUTH.items()}
    n = len(counts)
    event_id = (
        table.column("event_id").to_numpy().astype(np.int64)
        if "event_id" in names
        else np.arange(n)
    )
    event = {
        name: table.column(name).to_numpy().astype(dtype)
        for name, (dtype, _) in (EVENT | OPTIONAL_EVENT).items()
        if name in names and name in TRUTH_OPTIONAL
    }
    event.setdefault("event_index", np.arange(n, dtype=np.int64))
    if not {"truth_met_x", "truth_met_y", "truth_ht"} <= set(event):
        mx, my, ht = met_ht(counts, truth["pt"].astype(np.float64), truth["phi"].astype(np.float64))
        event |= {"truth_met_x": mx.astype(np.float32), "truth_met_y": my.astype(np.float32)}
        event["truth_ht"] = ht.astype(np.float32)
    reco = {k: np.zeros(0, d) for k, d in RECO.items()}
    sample = EventSample(truth, counts, reco, np.zeros(n, np.int64), event, event_id, {"url": url})
    check_truth(sample, url)
    return sample


def read_events_parquet(url: str) -> EventSample:
    """An EventSample from a farm events Parquet file; every problem one line naming the file.

    A file without any reco column is read as truth-only conditions (`arrow_to_truth`, only the
    truth columns are read); any reco column present makes it a full events file, checked whole.
    """
    from farm.formats.files import unreadable

    with store.open_input(url) as handle:
        try:
            parquet = pq.ParquetFile(handle)
            names = parquet.schema_arrow.names
            if is_truth_only(names):
                wanted = [c for c in (*TRUTH_COLUMNS, *TRUTH_OPTIONAL) if c in names]
                return arrow_to_truth(parquet.read(columns=wanted), url)
            table = parquet.read()
        except (pa.ArrowException, OSError) as exc:
            raise unreadable(url, exc) from None
    return arrow_to_events(table, url)
