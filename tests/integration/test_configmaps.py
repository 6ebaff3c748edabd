"""ConfigMaps through a real API server and the CLI: Kubernetes 1.31's validation, immutability,
and the kubectl verbs a user reaches for (create --from-literal, get, describe, apply)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors
from ketch.v1 import configmap_pb2, secret_pb2

from .test_cli_support import CLI


def _cm(name: str) -> configmap_pb2.ConfigMap:
    cm = configmap_pb2.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name, cm.metadata.namespace = name, "default"
    return cm


async def test_configmap_round_trip_and_immutability(api: TestAPIServer) -> None:
    assert api.client is not None
    cm = _cm("settings")
    cm.data["LOG_LEVEL"] = "debug"
    cm.binary_data["blob.bin"] = b"\x00\xff"
    cm.immutable = True
    made = await api.client.create(cm)
    got = await api.client.get("ConfigMap", "settings", "default")
    assert dict(got.data) == {"LOG_LEVEL": "debug"} and dict(got.binary_data) == {"blob.bin": b"\x00\xff"}
    made.data["LOG_LEVEL"] = "info"
    with pytest.raises(errors.Invalid, match=r"data: Forbidden: field is immutable when `immutable` is set"):
        await api.client.update(made)
    again = await api.client.get("ConfigMap", "settings", "default")
    again.immutable = False
    with pytest.raises(errors.Invalid, match=r"immutable: Forbidden"):
        await api.client.update(again)
    # Labels may still change.
    again.immutable = True
    again.metadata.labels["tier"] = "web"
    await api.client.update(again)


@pytest.mark.parametrize(("key", "where", "message"), [
    ("no/slash", r"data\[no/slash\]", r"a valid config key must consist of alphanumeric characters"),
    ("..", r"data\[\.\.\]", r"must not be '\.\.'"),
    ("..x", r"data\[\.\.x\]", r"must not start with '\.\.'"),
    ("k" * 254, r"data\[k+\]", r"must be no more than 253 characters"),
])
async def test_configmap_bad_keys_are_refused_and_nothing_stored(api: TestAPIServer, key: str, where: str,
                                                                  message: str) -> None:
    assert api.client is not None
    cm = _cm("bad")
    cm.data[key] = "v"
    with pytest.raises(errors.Invalid, match=f"{where}: Invalid value: .*{message}") as info:
        await api.client.create(cm)
    assert info.value.reason == "Invalid"
    with pytest.raises(errors.NotFound):
        await api.client.get("ConfigMap", "bad", "default")


async def test_configmap_duplicate_key_and_size_limit(api: TestAPIServer) -> None:
    assert api.client is not None
    cm = _cm("dup")
    cm.data["k"] = "v"
    cm.binary_data["k"] = b"v"
    dup = r"data\[k\]: Invalid value: \"k\": duplicate of key present in binaryData"
    with pytest.raises(errors.Invalid, match=dup):
        await api.client.create(cm)
    big = _cm("big")
    big.data["a"] = "x" * (512 * 1024)
    big.binary_data["b"] = b"y" * (512 * 1024 + 1)
    with pytest.raises(errors.Invalid, match=r"Too long: may not be more than 1048576 bytes"):
        await api.client.create(big)
    fits = _cm("fits")
    fits.data["a"] = "x" * (1024 * 1024)
    await api.client.create(fits)


async def test_cli_create_get_describe_apply_configmap(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    r = await cli("create", "configmap", "app", "--from-literal", "MODE=fast", "--from-literal=URL=http://x/?a=b")
    assert (r.code, r.out) == (0, "configmap/app created\n"), r.err
    cm = await api.client.get("ConfigMap", "app", "default")
    assert dict(cm.data) == {"MODE": "fast", "URL": "http://x/?a=b"}
    r = await cli("get", "cm")
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"] and lines[1].split()[:2] == ["app", "2"]
    r = await cli("describe", "configmap", "app")
    assert r.code == 0, r.err
    assert "Data\n====\nMODE:\n----\nfast\n\nURL:\n----\nhttp://x/?a=b\n" in r.out
    assert "BinaryData\n====\n" in r.out
    r = await cli("create", "configmap", "bad", "--from-literal", "novalue")
    assert r.code != 0 and "invalid literal source novalue, expected key=value" in r.err
    r = await cli("create", "secret", "generic", "creds", "--from-literal", "password=hunter2")
    assert (r.code, r.out) == (0, "secret/creds created\n"), r.err
    secret: secret_pb2.Secret = await api.client.get("Secret", "creds", "default")
    assert dict(secret.data) == {"password": b"hunter2"}
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    r = await cli("apply", "-f", "-", stdin=manifest)
    assert (r.code, r.out) == (0, "configmap/applied created\n"), r.err
    r = await cli("apply", "-f", "-", stdin=manifest.replace("'1'", "'2'"))
    assert (r.code, r.out) == (0, "configmap/applied configured\n"), r.err
    assert dict((await api.client.get("ConfigMap", "applied", "default")).data) == {"a": "2"}


async def test_cli_create_configmap_from_files(api: TestAPIServer, tmp_path: Path) -> None:
    cli = CLI(api.client)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "app.properties").write_text("a=1\n")
    (conf / "logo.bin").write_bytes(b"\x89PNG\xff")
    (conf / "bad name").write_text("skipped: not a config key")
    single = tmp_path / "settings.ini"
    single.write_text("[x]\n")
    r = await cli("create", "configmap", "files", "--from-file", str(conf), "--from-file", f"renamed.ini={single}")
    assert (r.code, r.out) == (0, "configmap/files created\n"), r.err
    cm = await api.client.get("ConfigMap", "files", "default")
    assert dict(cm.data) == {"app.properties": "a=1\n", "renamed.ini": "[x]\n"}
    assert dict(cm.binary_data) == {"logo.bin": b"\x89PNG\xff"}
    r = await cli("create", "configmap", "dup", "--from-file", f"k={single}", "--from-literal", "k=v")
    assert r.code != 0 and 'cannot add key k, another key by that name already exists in Data for ConfigMap "dup"' \
        in r.err
    r = await cli("create", "configmap", "missing", "--from-file", str(tmp_path / "nope"))
    assert r.code != 0 and "No such file or directory" in r.err


async def test_secret_string_data_is_merged_on_update_and_patch(api: TestAPIServer) -> None:
    """stringData is write-only: merged into data (winning over it) on every write, never stored."""
    assert api.client is not None
    s = secret_pb2.Secret(api_version="v1", kind="Secret")
    s.metadata.name, s.metadata.namespace = "db", "default"
    s.data["user"] = b"root"
    made = await api.client.create(s)
    made.string_data["user"] = "admin"
    made.string_data["password"] = "hunter2"
    updated = await api.client.update(made)
    assert dict(updated.data) == {"user": b"admin", "password": b"hunter2"} and not updated.string_data
    patched = await api.client.patch("Secret", "db", {"stringData": {"password": "other"}}, "default")
    assert dict(patched.data) == {"user": b"admin", "password": b"other"} and not patched.string_data
    stored = await api.client.get("Secret", "db", "default")
    assert dict(stored.data) == {"user": b"admin", "password": b"other"} and not stored.string_data


async def test_cli_create_configmap_and_secret_from_env_files(api: TestAPIServer, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl's --from-env-file rules: KEY=VALUE lines with the value verbatim, comments and blank
    lines skipped, a bare KEY from the environment, a BOM on the first line dropped."""
    cli = CLI(api.client)
    env = tmp_path / "app.env"
    env.write_bytes("\ufeffMODE=fast\r\n# a comment\n\n   URL=http://x/?a=b=c\nQUOTED=\"kept\"  \nFROM_ENV\n"
                    "EMPTY=\n".encode())
    other = tmp_path / "more.env"
    other.write_text("  # indented comment\nLAST=1")
    monkeypatch.setenv("FROM_ENV", "from the environment")
    r = await cli("create", "configmap", "envs", "--from-env-file", str(env), f"--from-env-file={other}")
    assert (r.code, r.out) == (0, "configmap/envs created\n"), r.err
    cm = await api.client.get("ConfigMap", "envs", "default")
    assert dict(cm.data) == {"MODE": "fast", "URL": "http://x/?a=b=c", "QUOTED": '"kept"  ',
                             "FROM_ENV": "from the environment", "EMPTY": "", "LAST": "1"}
    r = await cli("create", "secret", "generic", "envs", "--from-env-file", str(other))
    assert (r.code, r.out) == (0, "secret/envs created\n"), r.err
    assert dict((await api.client.get("Secret", "envs", "default")).data) == {"LAST": b"1"}

    bad = tmp_path / "bad.env"
    for text, message in [
        ("1ABC=x\n", '"1ABC" is not a valid key name: a valid environment variable name must consist of '
                     "alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"),
        ("KEY =x\n", '"KEY " is not a valid key name'),
        ("A=1\nA=2\n", 'cannot add key A, another key by that name already exists in Data for ConfigMap "bad"'),
    ]:
        bad.write_text(text)
        r = await cli("create", "configmap", "bad", "--from-env-file", str(bad))
        assert r.code == 1 and r.out == "" and message in r.err, r.err
    bad.write_bytes(b"OK=1\nBAD=\xff\n")
    r = await cli("create", "configmap", "bad", "--from-env-file", str(bad))
    assert r.err == f"error: env file {bad} contains invalid utf8 bytes at line 2: [66 65 68 61 255]\n"
    r = await cli("create", "configmap", "bad", "--from-env-file", str(tmp_path))
    assert r.err == "error: env config file cannot be a directory\n"
    r = await cli("create", "configmap", "bad", "--from-env-file", str(env), "--from-literal", "a=b")
    assert r.err == "error: from-env-file cannot be combined with from-file or from-literal\n"
    with pytest.raises(errors.NotFound):
        await api.client.get("ConfigMap", "bad", "default")
