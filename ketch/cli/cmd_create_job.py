"""`ketch create job NAME --from=cronjob/CJ`: run a CronJob once, now, as kubectl does; and
`ketch create job NAME --image=IMAGE -- CMD [ARGS...]`, kubectl's one-container Job.

The Job gets the CronJob's jobTemplate (labels, annotations, spec), the annotation
`cronjob.kubernetes.io/instantiate: manual`, and a controller reference to the CronJob (so that
its history limits and garbage collection cover it). `cmd_create.run` delegates here when
positional arguments are given.
"""

from __future__ import annotations

import argparse

from ketch.api.kinds import resolve
from ketch.v1 import batch_pb2, meta_pb2

from .factory import Factory
from .printers import print_objects
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


def job_from_image(name: str, namespace: str, image: str, command: list[str]) -> batch_pb2.Job:
    """The Job kubectl's createJob makes: one container named after the Job, restartPolicy Never."""
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    job.metadata.name = name
    job.metadata.namespace = namespace
    pod_spec = job.spec.template.spec
    pod_spec.restart_policy = "Never"
    container = pod_spec.containers.add(name=name, image=image)
    container.command.extend(command)
    return job


async def run(args: argparse.Namespace, factory: Factory) -> int:
    what = list(args.what)
    if not what or what[0] not in ("job", "jobs", "job.batch"):
        raise ValueError(f"unknown type to create: {' '.join(what) or '(none)'}: supported is `create job NAME "
                         "--from=cronjob/CJ`")
    if len(what) != 2:
        raise ValueError("exactly one NAME is required, got: " + (" ".join(what[1:]) or "none"))
    name = what[1]
    image = getattr(args, "image", "")
    command = list(getattr(args, "dash_args", None) or [])
    if bool(image) == bool(args.from_):  # kubectl's Validate: exactly one of them
        raise ValueError("either --image or --from must be specified")
    if command and args.from_:
        raise ValueError("cannot specify --from and command")
    client = factory.client()
    if image:
        job = job_from_image(name, factory.default_namespace, image, command)
    else:
        cj = await client.get("CronJob", _parse_from(args.from_), factory.default_namespace)
        job = job_from_cronjob(cj, name)
    dry_run = getattr(args, "dry_run", "none")  # cmd_create resolved it: none, client or server
    created = job if dry_run == "client" else await client.create(job, dry_run=dry_run == "server")
    info = resolve("job")
    output = getattr(args, "output", "")
    if output:
        print_objects(factory.out, [created], output, True, info)
    else:
        suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")
        print(f"{display_name(info, created.metadata.name)} created{suffix}", file=factory.out)
    return 0
