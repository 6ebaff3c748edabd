"""Client configuration in kubeconfig form (kubectl's file: clusters, users, contexts,
current-context), and how a client finds it: --kubeconfig, else $KETCH_CONFIG, else
~/.ketch/config.

A cluster's `server` is HOST:PORT (an `https://` prefix is accepted; `http://` means plaintext).
How a client talks to it:
- the cluster has certificate-authority(-data): TLS, the server verified against that CA;
- `insecure-skip-tls-verify: true`: TLS, trusting the CA the server presents (as kubectl's flag,
  nothing is verified: for a first look only);
- neither, or no kubeconfig at all: plaintext, for a control plane started with --insecure
  (credentials are not sent then).
Credentials (client certificate and key, or a bearer token) always come from the user of the
context; --token replaces the user's credentials with a bearer token.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV = "KETCH_CONFIG"
DEFAULT_PATH = "~/.ketch/config"


class ConfigError(ValueError):
    """A kubeconfig that cannot be used, in kubectl's words where it has them."""


class _Record:
    """Equality by attributes. (These classes are written out rather than dataclasses: every CLI
    command defines them, and dataclasses cost ~1 ms each at start-up, issue 14.)"""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable


class Credentials(_Record):
    """What one context resolves to."""

    def __init__(self, server: str = "", ca: bytes | None = None, client_cert: bytes | None = None,
                 client_key: bytes | None = None, token: str = "", insecure_skip_verify: bool = False,
                 plaintext: bool = False, namespace: str = "", context: str = "", user: str = "") -> None:
        self.server = server
        self.ca = ca
        self.client_cert = client_cert
        self.client_key = client_key
        self.token = token
        self.insecure_skip_verify = insecure_skip_verify
        self.plaintext = plaintext
        self.namespace = namespace
        self.context = context
        self.user = user

    @property
    def tls(self) -> bool:
        return not self.plaintext and (self.ca is not None or self.insecure_skip_verify)


def strip_scheme(server: str) -> tuple[str, bool]:
    """(HOST:PORT[,HOST:PORT], plaintext?) from a kubeconfig server (`https://h:p`, `http://h:p`
    or `h:p`, or several of them comma-separated: the addresses a client fails over across)."""
    addresses, plaintext = [], False
    for part in server.split(","):
        part = part.strip()
        if part.startswith("http://"):
            part, plaintext = part[len("http://"):], True
        part = part.removeprefix("https://").rstrip("/")
        if part:
            addresses.append(part)
    return ",".join(addresses), plaintext


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise ConfigError(f"{what} is not valid base64") from None


def _named(items: Any, key: str, what: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if items is None:
        return out
    if not isinstance(items, list):
        raise ConfigError(f"{what} must be a list")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"every entry of {what} needs a name")
        body = item.get(key) or {}
        if not isinstance(body, dict):
            raise ConfigError(f'{what} "{item["name"]}": {key} must be a mapping')
        out[item["name"]] = body
    return out


class Config(_Record):
    """A kubeconfig document; `path` is where it was read from (for relative file references)."""

    def __init__(self, clusters: dict[str, dict[str, Any]] | None = None,
                 users: dict[str, dict[str, Any]] | None = None, contexts: dict[str, dict[str, Any]] | None = None,
                 current_context: str = "", preferences: dict[str, Any] | None = None,
                 path: Path | None = None) -> None:
        self.clusters: dict[str, dict[str, Any]] = {} if clusters is None else clusters
        self.users: dict[str, dict[str, Any]] = {} if users is None else users
        self.contexts: dict[str, dict[str, Any]] = {} if contexts is None else contexts
        self.current_context = current_context
        self.preferences: dict[str, Any] = {} if preferences is None else preferences
        self.path = path

    # -- reading ------------------------------------------------------------------------------

    def _file(self, ref: str) -> bytes:
        p = Path(ref).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        try:
            return p.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read {p}: {err.strerror}") from None

    def _data(self, body: Mapping[str, Any], key: str, what: str) -> bytes | None:
        if body.get(f"{key}-data"):
            return _b64(str(body[f"{key}-data"]), f"{what} {key}-data")
        if body.get(key):
            return self._file(str(body[key]))
        return None

    def resolve(self, context: str = "", server: str = "", token: str = "") -> Credentials:
        """The credentials of a context (the current one by default); server and token override
        the context's."""
        name = context or self.current_context
        if not name:
            if server:
                return Credentials(*strip_scheme(server)[:1], token=token, plaintext=strip_scheme(server)[1])
            raise ConfigError("no context is set: use --context or `ketch config use-context NAME`")
        if name not in self.contexts:
            raise ConfigError(f'context "{name}" does not exist')
        ctx = self.contexts[name]
        cluster_name, user_name = str(ctx.get("cluster", "")), str(ctx.get("user", ""))
        cluster = self.clusters.get(cluster_name)
        if cluster is None and not server:
            raise ConfigError(f'context "{name}": cluster "{cluster_name}" does not exist')
        cluster = cluster or {}
        user = self.users.get(user_name, {}) if user_name else {}
        address, plaintext = strip_scheme(server or str(cluster.get("server", "")))
        if not address:
            raise ConfigError(f'cluster "{cluster_name}" has no server')
        creds = Credentials(address, namespace=str(ctx.get("namespace", "") or ""), context=name, user=user_name,
                            plaintext=plaintext)
        creds.ca = self._data(cluster, "certificate-authority", f'cluster "{cluster_name}"')
        creds.insecure_skip_verify = bool(cluster.get("insecure-skip-tls-verify", False))
        if token:
            creds.token = token
            return creds
        creds.client_cert = self._data(user, "client-certificate", f'user "{user_name}"')
        creds.client_key = self._data(user, "client-key", f'user "{user_name}"')
        if (creds.client_cert is None) != (creds.client_key is None):
            raise ConfigError(f'user "{user_name}" needs both a client certificate and a client key')
        if user.get("token"):
            creds.token = str(user["token"])
        elif user.get("tokenFile"):
            creds.token = self._file(str(user["tokenFile"])).decode().strip()
        return creds

    # -- writing ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": n, "cluster": c} for n, c in self.clusters.items()],
            "users": [{"name": n, "user": u} for n, u in self.users.items()],
            "contexts": [{"name": n, "context": c} for n, c in self.contexts.items()],
            "current-context": self.current_context,
            "preferences": self.preferences,
        }

    def dumps(self) -> str:
        import yaml  # here, not at the top: a CLI verb without a kubeconfig never loads it

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def save(self, path: Path | None = None) -> Path:
        """Write the file 0600 (it holds keys), atomically."""
        target = Path(path or self.path or Path(DEFAULT_PATH).expanduser())
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.dumps())
        os.replace(tmp, target)
        self.path = target
        return target


def _parse(text: str) -> Any:
    import yaml

    try:
        # libyaml's parser when PyYAML has it: the pure-Python one costs every CLI command ~5 ms.
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"the kubeconfig is not valid YAML: {err}") from None


def _from_doc(doc: Any, path: Path | None) -> Config:
    if not isinstance(doc, dict):
        raise ConfigError("the kubeconfig is not a mapping")
    return Config(clusters=_named(doc.get("clusters"), "cluster", "clusters"),
                  users=_named(doc.get("users"), "user", "users"),
                  contexts=_named(doc.get("contexts"), "context", "contexts"),
                  current_context=str(doc.get("current-context") or ""),
                  preferences=dict(doc.get("preferences") or {}), path=path)


def loads(text: str, path: Path | None = None) -> Config:
    return _from_doc(_parse(text), path)


def load(path: Path) -> Config:
    """The kubeconfig at path; its parse comes from the JSON cache beside it when that cache was
    made from exactly this text (parsing YAML means importing PyYAML: ~10 ms of every command)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read the kubeconfig {path}: {err.strerror}") from None
    from . import parsecache

    doc = parsecache.read(path, text)
    if doc is None:
        doc = _parse(text)
        parsecache.write(path, text, doc)
    return _from_doc(doc, path)


def find(explicit: str = "") -> Path | None:
    """--kubeconfig, else $KETCH_CONFIG, else ~/.ketch/config; None when the last does not exist
    (an explicit path that does not exist is an error when it is read)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    default = Path(DEFAULT_PATH).expanduser()
    return default if default.exists() else None


def single(cluster: str, server: str, ca: bytes | None, user: str, *, client_cert: bytes | None = None,
           client_key: bytes | None = None, token: str = "") -> Config:
    """A kubeconfig of one cluster, one user and their context (`user@cluster`), current."""
    cfg = Config()
    body: dict[str, Any] = {"server": server}
    if ca is not None:
        body["certificate-authority-data"] = base64.b64encode(ca).decode()
    cfg.clusters[cluster] = body
    ubody: dict[str, Any] = {}
    if client_cert is not None and client_key is not None:
        ubody["client-certificate-data"] = base64.b64encode(client_cert).decode()
        ubody["client-key-data"] = base64.b64encode(client_key).decode()
    if token:
        ubody["token"] = token
    cfg.users[user] = ubody
    name = f"{user}@{cluster}"
    cfg.contexts[name] = {"cluster": cluster, "user": user}
    cfg.current_context = name
    return cfg


def redacted(cfg: Config, raw: bool = False) -> dict[str, Any]:
    """The document as `kubectl config view` prints it: certificate and key data as
    DATA+OMITTED, tokens as REDACTED (unless raw)."""
    doc = cfg.to_dict()
    if raw:
        return doc
    for entry in doc["clusters"]:
        if "certificate-authority-data" in entry["cluster"]:
            entry["cluster"] = {**entry["cluster"], "certificate-authority-data": "DATA+OMITTED"}
    for entry in doc["users"]:
        user = dict(entry["user"])
        for key in ("client-certificate-data", "client-key-data"):
            if key in user:
                user[key] = "DATA+OMITTED"
        if "token" in user:
            user["token"] = "REDACTED"
        entry["user"] = user
    return doc
