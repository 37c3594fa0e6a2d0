"""Storage: atomic writes and listing on local disk and on a real S3 server (moto)."""

from pathlib import Path

import pytest

from farm import store
from farm.errors import FarmError


@pytest.mark.parametrize("where", ["local", "s3"])
def test_atomic_write_roundtrip(where, tmp_path, request):
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    url = store.join(base, "a", "b.bin")
    store.write_bytes(url, b"hello")
    assert store.read_bytes(url) == b"hello"
    assert store.listdir(store.join(base, "a")) == ["b.bin"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_failed_write_leaves_nothing(where, tmp_path, request):
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    url = store.join(base, "out", "final.txt")
    with pytest.raises(RuntimeError), store.atomic_local_file(url) as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("crash mid-write")
    assert not store.exists(url)
    assert store.listdir(store.join(base, "out")) == []


def test_unwritable_store_is_one_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    import os

    if os.geteuid() == 0:  # root ignores permissions: use a path under a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = str(blocker / "sub")
    else:
        target = str(ro)
    with pytest.raises(FarmError, match="not writable"):
        store.check_writable(target)


def test_home_defaults_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("FARM_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert store.home() == str(tmp_path / "farm-home")
    monkeypatch.setenv("FARM_HOME", "s3://bucket/prefix/")
    assert store.home() == "s3://bucket/prefix"
