"""`ketch token create [--server] [--ttl 24h] [--description TEXT] | list | delete ID`: join
tokens, as `kubeadm token`. A token is the Secret kube-system/bootstrap-token-<id>; `create` prints
the whole join token, K10<sha256 of the cluster CA>::<id>.<secret>, for `ketch-agent --token`.
`--server` makes a server token instead, for `ketch-controlplane --join`: it fetches the cluster's
CA key, so it is short-lived by default (2h, as kubeadm's --certificate-key) and shows `server` among its USAGES."""

from __future__ import annotations

import argparse
import time

from ketch.api import durations, errors, timeutil
from ketch.client import kubeconfig
from ketch.security import certs, jointoken

from .factory import Factory
from .main import CLIError, add_common

DEFAULT_TTL = "24h"  # kubeadm's
DEFAULT_SERVER_TTL = "2h"  # kubeadm's upload-certs key, which also unlocks the CA key, lasts 2h


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="join tokens for agents: create, list, delete")
    tsub = p.add_subparsers(dest="token_verb", metavar="create|list|delete", required=True)
    c = tsub.add_parser("create", help="make a join token and print it")
    c.add_argument("--server", dest="server_token", action="store_true",
                   help="a server token, for `ketch-controlplane --join`: fetches the cluster's CA and its key "
                        "(the address then goes before the verb: `ketch --server HOST:PORT token create --server`)")
    c.add_argument("--ttl", default=None,
                   help=f"how long it lasts; 0 for ever (default {DEFAULT_TTL}, {DEFAULT_SERVER_TTL} with --server)")
    c.add_argument("--description", default="", help="a note kept with the token")
    c.set_defaults(run=run_create)
    ls = tsub.add_parser("list", help="list the join tokens")
    ls.set_defaults(run=run_list)
    d = tsub.add_parser("delete", help="delete join tokens by id (or whole token)")
    d.add_argument("ids", nargs="+", metavar="ID")
    d.set_defaults(run=run_delete)
    add_common(c, server=False)
    for q in (ls, d):
        add_common(q)
    add_common(p)


def _ca_hash(factory: Factory) -> str:
    creds = factory.credentials()
    if creds is None or creds.ca is None:
        raise CLIError("the kubeconfig has no certificate-authority-data: a join token pins the cluster CA")
    return certs.der_sha256(certs.load_certs(creds.ca)[-1])


async def run_create(args: argparse.Namespace, factory: Factory) -> int:
    text = args.ttl if args.ttl is not None else DEFAULT_SERVER_TTL if args.server_token else DEFAULT_TTL
    try:
        ttl = durations.parse(text)
    except ValueError as err:
        raise CLIError(f"invalid --ttl {text!r}: {err}") from None
    try:
        ca_hash = _ca_hash(factory)
    except kubeconfig.ConfigError as err:
        raise CLIError(str(err)) from None
    token = jointoken.new(ca_hash)
    expiration = timeutil.format(time.time() + ttl) if ttl > 0 else ""
    description = args.description or ("server token (joins control planes)" if args.server_token else "")
    await factory.client().create(jointoken.bootstrap_secret(token.id, token.secret, expiration, description,
                                                             server=args.server_token))
    factory.print(str(token))
    return 0


async def run_list(args: argparse.Namespace, factory: Factory) -> int:
    secrets, _ = await factory.client().list("Secret", jointoken.SECRET_NAMESPACE,
                                             field_selector=f"type={jointoken.SECRET_TYPE}")
    rows = [["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]]
    now = factory.now()
    for s in secrets:
        data = {k: v.decode(errors="replace") for k, v in s.data.items()}
        token_id = data.get("token-id", "")
        if not token_id:
            continue
        expires = data.get("expiration", "")
        when = timeutil.parse_or_none(expires) if expires else None
        if when is None:
            ttl = "<forever>"
            expires = "<never>"
        else:
            ttl = "<invalid>" if when <= now else durations.format(when - now)
        usages = ",".join(k.removeprefix("usage-bootstrap-") for k, v in sorted(data.items())
                          if k.startswith("usage-bootstrap-") and v == "true")
        rows.append([f"{token_id}.<secret>", ttl, expires, usages, data.get("description", "") or "<none>",
                     data.get("auth-extra-groups", "")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        factory.print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


async def run_delete(args: argparse.Namespace, factory: Factory) -> int:
    client = factory.client()
    code = 0
    for given in args.ids:
        token_id = given.split("::")[-1].split(".")[0]
        if not jointoken.ID_RE.match(token_id):
            factory.error_line(f'error: invalid token id "{given}": expected 6 characters of [a-z0-9]')
            code = 1
            continue
        try:
            await client.delete("Secret", jointoken.secret_name(token_id), jointoken.SECRET_NAMESPACE)
        except errors.NotFound:
            factory.error_line(f'error: bootstrap token "{token_id}" not found')
            code = 1
            continue
        factory.print(f'bootstrap token "{token_id}" deleted')
    return code
