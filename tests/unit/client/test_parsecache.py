"""The kubeconfig's JSON parse cache (ketch/client/parsecache.py): used only when it was made
from exactly the kubeconfig's text, only when it is this user's and private, and never for a
document JSON cannot hold exactly."""

from __future__ import annotations

import os
from pathlib import Path

from ketch.client import kubeconfig, parsecache


def saved(tmp_path: Path, token: str = "s3cret") -> Path:
    return kubeconfig.single("c", "127.0.0.1:6443", b"ca", "u", token=token).save(tmp_path / "config")


def test_the_first_load_caches_privately_and_later_loads_read_the_same_config(tmp_path: Path) -> None:
    path = saved(tmp_path)
    first = kubeconfig.load(path)
    cache = parsecache.cache_path(path)
    assert cache.exists() and cache.stat().st_mode & 0o777 == 0o600
    assert parsecache.read(path, path.read_text()) is not None
    again = kubeconfig.load(path)
    assert again.to_dict() == first.to_dict() and again.resolve().token == "s3cret"


def test_an_edit_is_seen_even_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    path = saved(tmp_path)
    kubeconfig.load(path)
    st = path.stat()
    path.write_text(path.read_text().replace("s3cret", "s4cret"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert kubeconfig.load(path).resolve().token == "s4cret"


def test_a_cache_others_may_read_or_a_symlink_is_ignored(tmp_path: Path) -> None:
    path = saved(tmp_path)
    text = path.read_text()
    kubeconfig.load(path)
    cache = parsecache.cache_path(path)
    cache.chmod(0o644)
    assert parsecache.read(path, text) is None
    planted = tmp_path / "planted.json"
    cache.rename(planted)
    planted.chmod(0o600)
    cache.symlink_to(planted)
    assert parsecache.read(path, text) is None
    assert kubeconfig.load(path).resolve().token == "s3cret"


def test_a_document_json_cannot_hold_is_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nkind: Config\npreferences: {since: 2024-01-02}\n")
    assert kubeconfig.load(path).preferences["since"].isoformat() == "2024-01-02"
    assert not parsecache.cache_path(path).exists()
    assert kubeconfig.load(path).preferences["since"].isoformat() == "2024-01-02"


def test_a_tampered_cache_for_other_text_is_not_used(tmp_path: Path) -> None:
    path = saved(tmp_path)
    kubeconfig.load(path)
    cache = parsecache.cache_path(path)
    cache.write_text(cache.read_text().replace("s3cret", "stolen"))
    assert kubeconfig.load(path).resolve().token == "s3cret"  # its source no longer matches
    assert parsecache.read(path, path.read_text() + "\n") is None
