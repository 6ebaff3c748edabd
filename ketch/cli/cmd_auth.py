"""`ketch auth can-i VERB KIND[/NAME] [NAME] [-n NS|-A] [--subresource S] [-q]` and
`ketch auth whoami [-o json|yaml]`, as kubectl's: can-i asks the server through a
SelfSubjectAccessReview and prints yes or no (with the server's reason after a no), exiting 0 or
1; whoami prints who the server takes the caller for (a SelfSubjectReview). With `--as USER
[--as-group G]` both answer for the impersonated user, if the caller may impersonate them.
"""

from __future__ import annotations

import argparse

from ketch.api import manifest
from ketch.api.kinds import UnknownKindError
from ketch.v1 import authorization_pb2

from .factory import Factory
from .main import CLIError, add_common
from .resources import resolve_kind
from .tabwriter import table_text


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("auth", help="inspect authorization: can-i, whoami")
    verbs = p.add_subparsers(dest="auth_verb", metavar="COMMAND")
    can = verbs.add_parser("can-i", help="check whether an action is allowed (prints yes or no, exits 0 or 1)")
    can.add_argument("verb", help="get, list, watch, create, update, patch, delete, ... or *")
    can.add_argument("target", help="KIND, KIND/NAME (jobs, pods/p1, *) or a path (/version)")
    can.add_argument("name", nargs="?", default="", help="the object's name")
    can.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    can.add_argument("--subresource", default="", help="a subresource, such as log or status")
    can.add_argument("-q", "--quiet", action="store_true", help="print nothing: only the exit code answers")
    add_common(can)
    can.set_defaults(run=run_can_i)
    who = verbs.add_parser("whoami", help="print who the server takes you for (user name and groups)")
    who.add_argument("-o", "--output", default="", choices=["", "json", "yaml"])
    add_common(who)
    who.set_defaults(run=run_whoami)
    add_common(p)
    p.set_defaults(run=lambda args, factory: _usage(p, factory))


async def _usage(p: argparse.ArgumentParser, factory: Factory) -> int:
    p.print_help(factory.out)
    return 0


def access_review(args: argparse.Namespace, factory: Factory) -> authorization_pb2.SelfSubjectAccessReview:
    """The question, as kubectl builds it from the arguments."""
    review = authorization_pb2.SelfSubjectAccessReview(api_version="authorization.k8s.io/v1",
                                                       kind="SelfSubjectAccessReview")
    if args.target.startswith("/"):
        if args.name:
            raise CLIError("a non-resource URL takes no name")
        review.spec.non_resource_attributes.path = args.target
        review.spec.non_resource_attributes.verb = args.verb
        return review
    resource, _, name = args.target.partition("/")
    if name and args.name:
        raise CLIError(f"give the name once: {args.target} or {resource} {args.name}")
    attrs = review.spec.resource_attributes
    attrs.verb, attrs.name, attrs.subresource = args.verb, name or args.name, args.subresource
    namespaced = True
    if resource == "*":
        attrs.resource, attrs.group = "*", "*"
    else:
        try:
            info = resolve_kind(resource)
            attrs.resource, attrs.group, namespaced = info.plural, info.group, info.namespaced
        except UnknownKindError:
            factory.warn(f"the server doesn't have a resource type '{resource}'")
            attrs.resource = resource
    if namespaced and not args.all_namespaces:
        attrs.namespace = factory.default_namespace
    return review


async def run_can_i(args: argparse.Namespace, factory: Factory) -> int:
    answer = await factory.client().create(access_review(args, factory))
    status = answer.status
    if not args.quiet:
        if status.allowed:
            factory.print("yes")
        else:
            text = "no"
            if status.reason:
                text += f" - {status.reason}"
            if status.evaluation_error:
                text += f" - {status.evaluation_error}"
            factory.print(text)
    return 0 if status.allowed else 1


def go_list(values: list[str]) -> str:
    """A list as Go's %v prints it: [a b]."""
    return "[" + " ".join(values) + "]"


async def run_whoami(args: argparse.Namespace, factory: Factory) -> int:
    review = authorization_pb2.SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
    answer = await factory.client().create(review)
    if args.output == "json":
        factory.out.write(manifest.to_json(answer) + "\n")
        return 0
    if args.output == "yaml":
        factory.out.write(manifest.to_yaml(answer))
        return 0
    info = answer.status.user_info
    rows = [["ATTRIBUTE", "VALUE"]]
    if info.username:
        rows.append(["Username", info.username])
    if info.uid:
        rows.append(["UID", info.uid])
    if info.groups:
        rows.append(["Groups", go_list(list(info.groups))])
    factory.out.write(table_text(rows))
    return 0
