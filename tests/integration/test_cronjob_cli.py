"""`ketch create job NAME --from=cronjob/CJ` against a real API server."""

from __future__ import annotations

import argparse
import io

import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors, meta
from ketch.cli import cmd_create_job
from ketch.cli.factory import Factory
from tests.integration.test_cronjob_controller import NS, cronjob


def _factory(api: TestAPIServer) -> Factory:
    f = Factory(out=io.StringIO(), err=io.StringIO())
    f._client = api.client
    return f


def _args(*what: str, from_: str = "", output: str = "") -> argparse.Namespace:
    return argparse.Namespace(what=list(what), from_=from_, output=output, filename=None)


async def test_create_job_from_cronjob_makes_a_manual_run(api: TestAPIServer) -> None:
    assert api.client is not None
    cj = cronjob("nightly", "0 3 * * *")
    cj.spec.job_template.metadata.annotations["team"] = "ops"
    cj = await api.client.create(cj)
    f = _factory(api)
    assert await cmd_create_job.run(_args("job", "nightly-now", from_="cronjob/nightly"), f) == 0
    assert f.out.getvalue() == "job.batch/nightly-now created\n"  # type: ignore[attr-defined]
    job = await api.client.get("Job", "nightly-now", NS)
    assert job.metadata.annotations["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job.metadata.annotations["team"] == "ops"
    assert job.metadata.labels["app"] == "nightly"
    ref = meta.controller_ref(job)
    assert ref is not None and (ref.api_version, ref.kind, ref.name, ref.uid) == (
        "batch/v1", "CronJob", "nightly", cj.metadata.uid)
    assert job.spec.template.spec.containers[0].command == ["true"]


@pytest.mark.parametrize(("what", "from_", "message"), [
    (("job", "x"), "", "either --image or --from must be specified"),  # kubectl's words
    (("job", "x"), "job/other", "unknown object type job"),
    (("job", "x"), "cronjob", "from must be of the form cronjob/NAME"),
    (("job",), "cronjob/nightly", "exactly one NAME is required"),
])
async def test_create_job_refuses_bad_arguments(api: TestAPIServer, what: tuple[str, ...], from_: str,
                                                message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await cmd_create_job.run(_args(*what, from_=from_), _factory(api))


async def test_create_job_from_a_missing_cronjob_is_not_found(api: TestAPIServer) -> None:
    with pytest.raises(errors.NotFound, match=r'cronjobs\.batch "nope" not found'):
        await cmd_create_job.run(_args("job", "x", from_="cj/nope"), _factory(api))
