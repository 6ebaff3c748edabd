"""`ketch create job NAME --from=cronjob/CJ`: run a CronJob once, now, as kubectl does.

The Job gets the CronJob's jobTemplate (labels, annotations, spec), the annotation
`cronjob.kubernetes.io/instantiate: manual`, and a controller reference to the CronJob (so that
its history limits and garbage collection cover it). `cmd_create.run` delegates here when
positional arguments are given.
"""

from __future__ import annotations

import argparse

from ketch.api import manifest
from ketch.api.kinds import resolve
from ketch.v1 import batch_pb2, meta_pb2

from .factory import Factory
from .resources import display_name

INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"


def job_from_cronjob(cj: batch_pb2.CronJob, name: str) -> batch_pb2.Job:
    """The manual Job kubectl's createJobFromCronJob makes."""
    tmpl = cj.spec.job_template
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    md = job.metadata
    md.name = name
    md.namespace = cj.metadata.namespace
    md.annotations[INSTANTIATE_ANNOTATION] = "manual"
    for k, v in tmpl.metadata.annotations.items():
        md.annotations[k] = v
    for k, v in tmpl.metadata.labels.items():
        md.labels[k] = v
    md.owner_references.append(meta_pb2.OwnerReference(
        api_version="batch/v1", kind="CronJob", name=cj.metadata.name, uid=cj.metadata.uid, controller=True))
    job.spec.CopyFrom(tmpl.spec)
    return job


def _parse_from(text: str) -> str:
    """`cronjob/NAME` (any of CronJob's names) to NAME."""
    kind, sep, name = text.partition("/")
    if not sep or not name:
        raise ValueError(f"from must be of the form cronjob/NAME, not {text!r}")
    if resolve(kind).kind != "CronJob":
        raise ValueError(f"unknown object type {kind}: only cronjob/NAME is supported in --from")
    return name


async def run(args: argparse.Namespace, factory: Factory) -> int:
    what = list(args.what)
    if not what or what[0] not in ("job", "jobs", "job.batch"):
        raise ValueError(f"unknown type to create: {' '.join(what) or '(none)'}: supported is `create job NAME "
                         "--from=cronjob/CJ`")
    if len(what) != 2:
        raise ValueError("exactly one NAME is required, got: " + (" ".join(what[1:]) or "none"))
    name = what[1]
    if not args.from_:
        raise ValueError("--from=cronjob/NAME is required (create job NAME --from=cronjob/CJ)")
    cj_name = _parse_from(args.from_)
    client = factory.client()
    cj = await client.get("CronJob", cj_name, factory.default_namespace)
    job = job_from_cronjob(cj, name)
    dry_run = getattr(args, "dry_run", "none")  # cmd_create resolved it: none, client or server
    created = job if dry_run == "client" else await client.create(job, dry_run=dry_run == "server")
    info = resolve("job")
    output = getattr(args, "output", "")
    if output == "json":
        print(manifest.to_json(created), file=factory.out)
    elif output == "yaml":
        print(manifest.to_yaml(created), file=factory.out)
    elif output == "name":
        print(display_name(info, created.metadata.name), file=factory.out)
    else:
        suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")
        print(f"{display_name(info, created.metadata.name)} created{suffix}", file=factory.out)
    return 0
