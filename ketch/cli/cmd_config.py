"""`ketch config view|get-contexts|current-context|use-context|set-context|set-cluster|set-credentials`,
as kubectl's: they read and write the kubeconfig (--kubeconfig, else $KETCH_CONFIG, else
~/.ketch/config) and never reach the server. `view` hides certificate and key data as
DATA+OMITTED and tokens as REDACTED unless --raw."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

import yaml

from ketch.client import kubeconfig

from .factory import Factory
from .main import CLIError, add_common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="view and change the client configuration (kubeconfig)")
    csub = p.add_subparsers(dest="config_verb", metavar="VERB", required=True)
    view = csub.add_parser("view", help="print the kubeconfig, secrets hidden")
    view.add_argument("--raw", action="store_true", help="show certificate, key and token data")
    view.add_argument("--minify", action="store_true", help="only what the current context uses")
    view.add_argument("-o", "--output", default="yaml", help="yaml (default), json or jsonpath=TEMPLATE")
    view.set_defaults(run=run_view)
    gc = csub.add_parser("get-contexts", help="list the contexts")
    gc.add_argument("name", nargs="?", default="")
    gc.add_argument("-o", "--output", default="", choices=["", "name"])
    gc.set_defaults(run=run_get_contexts)
    cc = csub.add_parser("current-context", help="print the current context")
    cc.set_defaults(run=run_current_context)
    uc = csub.add_parser("use-context", help="make a context the current one")
    uc.add_argument("name")
    uc.set_defaults(run=run_use_context)
    sc = csub.add_parser("set-context", help="add or change a context")
    sc.add_argument("name", nargs="?", default="")
    sc.add_argument("--current", action="store_true", help="change the current context")
    sc.add_argument("--cluster", default=None)
    sc.add_argument("--user", default=None)
    sc.add_argument("--namespace", dest="ctx_namespace", default=None)
    sc.set_defaults(run=run_set_context)
    scl = csub.add_parser("set-cluster", help="add or change a cluster")
    scl.add_argument("name")
    scl.add_argument("--server", dest="cluster_server", default=None)
    scl.add_argument("--certificate-authority", default=None, metavar="FILE")
    scl.add_argument("--embed-certs", action="store_true", help="store the files' contents, not their paths")
    scl.add_argument("--insecure-skip-tls-verify", default=None, choices=["true", "false"])
    scl.set_defaults(run=run_set_cluster)
    scr = csub.add_parser("set-credentials", help="add or change a user")
    scr.add_argument("name")
    scr.add_argument("--client-certificate", default=None, metavar="FILE")
    scr.add_argument("--client-key", default=None, metavar="FILE")
    scr.add_argument("--token", dest="user_token", default=None)
    scr.add_argument("--embed-certs", action="store_true", help="store the files' contents, not their paths")
    scr.set_defaults(run=run_set_credentials)
    for q in (view, gc, cc, uc, sc, scl, scr):
        q.add_argument("--kubeconfig", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add_common(p)


def _path(factory: Factory) -> Path:
    found = kubeconfig.find(factory.kubeconfig)
    return found if found is not None else Path(kubeconfig.DEFAULT_PATH).expanduser()


def _load(factory: Factory, must_exist: bool = True) -> kubeconfig.Config:
    path = _path(factory)
    if not path.exists():
        if must_exist:
            raise CLIError(f"no kubeconfig at {path}")
        return kubeconfig.Config(path=path)
    return kubeconfig.load(path)


async def run_view(args: argparse.Namespace, factory: Factory) -> int:
    cfg = _load(factory, must_exist=False)
    if args.minify:
        name = factory.context or cfg.current_context
        if name not in cfg.contexts:
            raise CLIError(f'current-context "{name}" does not exist' if name else "current-context is not set")
        ctx = cfg.contexts[name]
        cfg = kubeconfig.Config(
            clusters={k: v for k, v in cfg.clusters.items() if k == ctx.get("cluster")},
            users={k: v for k, v in cfg.users.items() if k == ctx.get("user")},
            contexts={name: ctx}, current_context=name, preferences=cfg.preferences, path=cfg.path)
    fmt, _, template = args.output.partition("=")
    if args.output not in ("yaml", "json") and fmt not in ("jsonpath", "jsonpath-as-json"):
        raise CLIError(f'unable to match a printer suitable for the output format "{args.output}", '
                       "allowed formats are: json,jsonpath,yaml")
    doc = kubeconfig.redacted(cfg, raw=args.raw)
    if args.output == "json":
        factory.out.write(json.dumps(doc, indent=4) + "\n")
    elif fmt == "jsonpath":  # `config view -o jsonpath='{.clusters[0].cluster.server}'`, as kubectl
        from . import jsonpath

        factory.out.write(jsonpath.render(template, doc))
    elif fmt == "jsonpath-as-json":
        from . import jsonpath

        factory.out.write(json.dumps(jsonpath.values(template, doc), indent=4) + "\n")
    else:
        factory.out.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return 0


async def run_get_contexts(args: argparse.Namespace, factory: Factory) -> int:
    cfg = _load(factory, must_exist=False)
    names = [args.name] if args.name else list(cfg.contexts)
    missing = [n for n in names if n not in cfg.contexts]
    if missing:
        raise CLIError(f'context {missing[0]} not found')
    if args.output == "name":
        for n in names:
            factory.print(n)
        return 0
    rows = [["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]]
    for n in names:
        c = cfg.contexts[n]
        rows.append(["*" if n == cfg.current_context else "", n, str(c.get("cluster", "")), str(c.get("user", "")),
                     str(c.get("namespace", "") or "")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        factory.print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


async def run_current_context(args: argparse.Namespace, factory: Factory) -> int:
    cfg = _load(factory)
    if not cfg.current_context:
        raise CLIError("current-context is not set")
    factory.print(cfg.current_context)
    return 0


async def run_use_context(args: argparse.Namespace, factory: Factory) -> int:
    cfg = _load(factory)
    if args.name not in cfg.contexts:
        raise CLIError(f'no context exists with the name: "{args.name}"')
    cfg.current_context = args.name
    cfg.save()
    factory.print(f'Switched to context "{args.name}".')
    return 0


async def run_set_context(args: argparse.Namespace, factory: Factory) -> int:
    cfg = _load(factory, must_exist=False)
    name = args.name or (cfg.current_context if args.current else "")
    if not name:
        raise CLIError("you must specify a non-empty context name or --current")
    existed = name in cfg.contexts
    ctx: dict[str, Any] = dict(cfg.contexts.get(name, {}))
    given = {"cluster": args.cluster, "user": args.user, "namespace": args.ctx_namespace}
    ctx.update({key: value for key, value in given.items() if value is not None})
    cfg.contexts[name] = ctx
    cfg.save(_path(factory))
    factory.print(f'Context "{name}" {"modified" if existed else "created"}.')
    return 0


def _file_or_data(body: dict[str, Any], key: str, path: str, embed: bool) -> None:
    if embed:
        body[f"{key}-data"] = base64.b64encode(Path(path).expanduser().read_bytes()).decode()
        body.pop(key, None)
    else:
        body[key] = str(Path(path).expanduser().resolve())
        body.pop(f"{key}-data", None)


async def run_set_cluster(args: argparse.Namespace, factory: Factory) -> int:
    cfg = _load(factory, must_exist=False)
    existed = args.name in cfg.clusters
    body = dict(cfg.clusters.get(args.name, {}))
    if args.cluster_server is not None:
        body["server"] = args.cluster_server
    if args.certificate_authority is not None:
        _file_or_data(body, "certificate-authority", args.certificate_authority, args.embed_certs)
    if args.insecure_skip_tls_verify is not None:
        if args.insecure_skip_tls_verify == "true":
            body["insecure-skip-tls-verify"] = True
        else:
            body.pop("insecure-skip-tls-verify", None)
    cfg.clusters[args.name] = body
    cfg.save(_path(factory))
    factory.print(f'Cluster "{args.name}" {"modified" if existed else "set"}.')
    return 0


async def run_set_credentials(args: argparse.Namespace, factory: Factory) -> int:
    cfg = _load(factory, must_exist=False)
    existed = args.name in cfg.users
    body = dict(cfg.users.get(args.name, {}))
    if args.client_certificate is not None:
        _file_or_data(body, "client-certificate", args.client_certificate, args.embed_certs)
    if args.client_key is not None:
        _file_or_data(body, "client-key", args.client_key, args.embed_certs)
    if args.user_token is not None:
        body["token"] = args.user_token
    cfg.users[args.name] = body
    cfg.save(_path(factory))
    factory.print(f'User "{args.name}" {"modified" if existed else "set"}.')
    return 0
