"""Small places where `ketch` must answer as kubectl 1.31 does, run in-process against a real API server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import manifest

from .test_cli_support import CLI

NS = """
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels:
    tier: gold
    app.kubernetes.io/name: web
"""


async def test_label_columns_come_before_the_labels_column(api: TestAPIServer) -> None:
    # kubectl's decorateTable: the kind's columns, then one per -L label, then LABELS.
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=NS)
    r = await cli("get", "ns", "team-a", "--show-labels", "-L", "tier,app.kubernetes.io/name")
    header, row = (line.split() for line in r.out.splitlines())
    assert header == ["NAME", "STATUS", "AGE", "TIER", "NAME", "LABELS"]
    assert row[3:5] == ["gold", "web"] and row[5].startswith("app.kubernetes.io/name=web,")


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


async def test_apply_output_of_several_objects_is_one_list(api: TestAPIServer) -> None:
    # kubectl's printObjects: with -o json|yaml the objects print once, at the end, as one List.
    cli = CLI(api.client)
    two = CM.format(name="a") + "---\n" + CM.format(name="b")
    r = await cli("apply", "-f", "-", "-o", "json", stdin=two)
    doc = json.loads(r.out)
    assert (r.code, doc["kind"], doc["apiVersion"]) == (0, "List", "v1")
    assert [i["metadata"]["name"] for i in doc["items"]] == ["a", "b"]
    r = await cli("apply", "-f", "-", "-o", "yaml", stdin=two)
    assert [d["kind"] for d in yaml.safe_load_all(r.out)] == ["List"]
    r = await cli("apply", "-f", "-", "-o", "jsonpath={.items[*].metadata.name}", stdin=two)
    assert r.out == "a b"
    r = await cli("apply", "-f", "-", "-o", "json", stdin=CM.format(name="a"))
    assert json.loads(r.out)["kind"] == "ConfigMap"  # one object prints as itself
    r = await cli("apply", "-f", "-", "-o", "name", stdin=two)
    assert r.out == "configmap/a\nconfigmap/b\n"


async def test_apply_with_a_bad_output_format_writes_nothing(api: TestAPIServer) -> None:
    r = await CLI(api.client)("apply", "-f", "-", "-o", "toml", stdin=CM.format(name="a"))
    assert r.code == 1 and 'output format "toml"' in r.err
    assert not (await api.client.list("ConfigMap", "default"))[0]


DS = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agentd
spec:
  selector:
    matchLabels: {app: agentd}
  template:
    metadata:
      labels: {app: agentd}
    spec:
      containers:
      - name: c
        command: ["sleep", "3600"]
"""


@pytest.mark.parametrize(("verb", "flags"), [("status", ["--watch=false"]), ("history", []), ("restart", [])])
async def test_rollout_takes_type_and_name_as_two_words(api: TestAPIServer, verb: str, flags: list[str]) -> None:
    # kubectl rollout VERB (TYPE NAME | TYPE/NAME)
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=DS)
    two = await cli("rollout", verb, "daemonset", "agentd", *flags)
    one = await cli("rollout", verb, "daemonset/agentd", *flags)
    assert (two.code, two.out, two.err) == (one.code, one.out, one.err)
    assert two.code == 0 and two.out


async def test_rollout_refuses_more_words(api: TestAPIServer) -> None:
    r = await CLI(api.client)("rollout", "history", "ds/a", "ds/b")
    assert r.code == 1 and r.err.count("\n") == 1


async def test_cordon_takes_names_as_get_nodes_o_name_prints_them(api: TestAPIServer) -> None:
    # `ketch get nodes -o name | xargs ketch cordon`: kubectl's builder reads node/NAME too.
    await api.client.create(manifest.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
    cli = CLI(api.client)
    r = await cli("cordon", "node/n1")
    assert (r.code, r.out) == (0, "node/n1 cordoned\n")
    assert (await api.client.get("Node", "n1")).spec.unschedulable
    r = await cli("uncordon", "no/n1")
    assert (r.code, r.out) == (0, "node/n1 uncordoned\n")
    r = await cli("cordon", "pod/n1")
    assert r.code == 1 and r.err == "error: pod/n1 is not a node: cordon, uncordon and drain act on nodes only\n"


@pytest.mark.parametrize(
    ("flags", "line"),
    [(["--force"], 'configmap "a" force deleted\n'),
     (["--force", "--grace-period=0"], 'configmap "a" force deleted\n'),
     (["--force", "--grace-period=5"], 'configmap "a" deleted\n'),
     (["--grace-period=0"], 'configmap "a" deleted\n'),  # 0 without --force is 1
     (["--force", "--dry-run=client"], 'configmap "a" force deleted (dry run)\n'),
     (["--force", "--dry-run=server"], 'configmap "a" force deleted (server dry run)\n')],
)
async def test_delete_with_force_says_force_deleted(api: TestAPIServer, flags: list[str], line: str) -> None:
    # kubectl's DeleteOptions.PrintObj: a zero grace period prints "force deleted".
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=CM.format(name="a"))
    r = await cli("delete", "cm", "a", *flags)
    assert (r.code, r.out) == (0, line)


async def test_custom_columns_over_several_kinds_is_one_table(api: TestAPIServer) -> None:
    # kubectl's printGeneric prints every kind's items as one List: one header, one alignment.
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=CM.format(name="a-long-config-map-name") + "---\n" + NS)
    r = await cli("get", "cm,ns", "-o", "custom-columns=NAME:.metadata.name,KIND:.kind")
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "KIND"]
    assert [line.split()[1] for line in lines[1:]].count("KIND") == 0
    assert {line.index(line.split()[1]) for line in lines} == {len("a-long-config-map-name   ")}
    r = await cli("get", "cm,ns", "-o", "custom-columns=NAME:.metadata.name", "--no-headers")
    assert "a-long-config-map-name" in r.out.split() and "NAME" not in r.out.split()


async def test_custom_columns_and_names_of_nothing(api: TestAPIServer) -> None:
    # Not kubectl's human-readable printer: no "No resources found"; custom columns keep the header.
    cli = CLI(api.client)
    r = await cli("get", "cm", "-o", "custom-columns=NAME:.metadata.name")
    assert (r.code, r.out, r.err) == (0, "NAME\n", "")
    r = await cli("get", "cm", "-o", "name")
    assert (r.code, r.out, r.err) == (0, "", "")


async def test_create_o_yaml_of_several_objects_is_a_yaml_stream(api: TestAPIServer) -> None:
    # kubectl create prints each object with one YAMLPrinter, which puts "---" between documents.
    two = CM.format(name="a") + "---\n" + CM.format(name="b")
    r = await CLI(api.client)("create", "-f", "-", "-o", "yaml", "--dry-run=client", stdin=two)
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(r.out)] == ["a", "b"]
    assert not r.out.startswith("---")


async def test_recursive_reads_the_manifests_of_subdirectories(api: TestAPIServer, tmp_path: Path) -> None:
    # kubectl -f DIR reads DIR's manifests; -R (--recursive) walks its subdirectories too, in name order.
    (tmp_path / "b").mkdir()
    (tmp_path / "a.yaml").write_text(CM.format(name="a"))
    (tmp_path / "b" / "b.yml").write_text(CM.format(name="b"))
    (tmp_path / "c.json").write_text(json.dumps(yaml.safe_load(CM.format(name="c"))))
    (tmp_path / "b" / "notes.txt").write_text("not a manifest")
    cli = CLI(api.client)
    r = await cli("apply", "-f", str(tmp_path), "--dry-run=client")
    assert r.out == "configmap/a created (dry run)\nconfigmap/c created (dry run)\n"
    r = await cli("apply", "-R", "-f", str(tmp_path))
    assert (r.code, r.out) == (0, "configmap/a created\nconfigmap/b created\nconfigmap/c created\n")
    r = await cli("create", "--recursive", "-f", str(tmp_path), "--dry-run=client", "-o", "name")
    assert r.out == "configmap/a\nconfigmap/b\nconfigmap/c\n"
    r = await cli("delete", "-f", str(tmp_path), "-R", "--wait=false")
    assert (r.code, r.out) == (0, 'configmap "a" deleted\nconfigmap "b" deleted\nconfigmap "c" deleted\n')


async def test_label_and_annotate_say_what_kubectl_says(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=CM.format(name="a"))
    assert (await cli("label", "cm", "a", "x=1", "y=2")).out == "configmap/a labeled\n"
    # label: a removal without --overwrite that leaves the labels shorter is "unlabeled"
    assert (await cli("label", "cm", "a", "x-")).out == "configmap/a unlabeled\n"
    assert (await cli("label", "cm", "a", "y-", "--overwrite")).out == "configmap/a labeled\n"
    assert (await cli("label", "cm", "a", "nope-")).out == 'label "nope" not found.\nconfigmap/a not labeled\n'
    # annotate: always "annotated"; a clash is named in annotate's own words
    assert (await cli("annotate", "cm", "a", "note=hi")).out == "configmap/a annotated\n"
    assert (await cli("annotate", "cm", "a", "note=hi")).out == "configmap/a annotated\n"
    assert (await cli("annotate", "cm", "a", "nope-")).out == "configmap/a annotated\n"
    r = await cli("annotate", "cm", "a", "note=bye")
    assert (r.code, r.err) == (1, "error: --overwrite is false but found the following declared annotation(s): "
                                  "'note' already has a value (hi)\n")


async def test_api_resources_filters_and_get_show_kind(api: TestAPIServer) -> None:
    # The well-known "everything in a namespace" line: api-resources --verbs=list --namespaced -o name
    # | xargs -n 1 kubectl get --show-kind --ignore-not-found
    cli = CLI(api.client)
    r = await cli("api-resources", "--verbs=list", "--namespaced", "-o", "name")
    names = r.out.split()
    assert (r.code, "jobs.batch" in names, "pods" in names) == (0, True, True)
    assert "nodes" not in names and "localsubjectaccessreviews.authorization.k8s.io" not in names
    r = await cli("api-resources", "--namespaced=false", "-o", "name")
    assert "nodes" in r.out.split() and "pods" not in r.out.split()
    r = await cli("api-resources", "--api-group=batch", "--no-headers")
    assert [line.split()[0] for line in r.out.splitlines()] == ["cronjobs", "jobs"]
    r = await cli("api-resources", "--api-group", "", "--verbs", "watch", "-o", "wide")
    header, *rows = r.out.splitlines()
    assert header.split()[-2:] == ["VERBS", "CATEGORIES"]
    assert "[create delete get list patch update watch]" in next(row for row in rows if row.startswith("pods "))
    await cli("apply", "-f", "-", stdin=CM.format(name="a"))
    r = await cli("get", "configmaps", "--show-kind")
    assert r.out.splitlines()[1].split()[0] == "configmap/a"
    r = await cli("get", "configmaps", "a", "--show-kind")
    assert r.out.splitlines()[1].split()[0] == "configmap/a"


async def test_several_kinds_prefix_only_the_name_column(api: TestAPIServer) -> None:
    # An event's table has no NAME column unless -o wide: its LAST SEEN cell stays a time.
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=CM.format(name="a"))
    await api.client.create(manifest.from_dict({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "a.1", "namespace": "default"},
        "involvedObject": {"kind": "ConfigMap", "name": "a", "namespace": "default"},
        "reason": "Tested", "message": "hello", "type": "Normal"}))
    r = await cli("get", "ev,cm")
    events = r.out.split("\n\n")[0].splitlines()
    assert events[0].split()[:2] == ["LAST", "SEEN"] and not events[1].startswith("event/")
    r = await cli("get", "ev,cm", "-o", "wide")
    assert r.out.split("\n\n")[0].splitlines()[1].split()[-1] == "event/a.1"
    r = await cli("get", "ev,cm", "-A")
    assert r.out.split("\n\n")[1].splitlines()[1].split()[:2] == ["default", "configmap/a"]


async def test_create_job_with_an_image_and_a_command(api: TestAPIServer) -> None:
    # kubectl create job NAME --image=IMAGE -- CMD ARGS: one container named after the Job, Never.
    cli = CLI(api.client)
    r = await cli("create", "job", "hello", "--image=busybox", "--", "sh", "-c", "echo hi")
    assert (r.code, r.out) == (0, "job.batch/hello created\n")
    job = await api.client.get("Job", "hello", "default")
    pod = job.spec.template.spec
    assert (pod.restart_policy, [(c.name, c.image, list(c.command)) for c in pod.containers]) == (
        "Never", [("hello", "busybox", ["sh", "-c", "echo hi"])])
    r = await cli("create", "job", "dry", "--image=busybox", "--dry-run=client", "-o", "yaml", "--", "true")
    assert yaml.safe_load(r.out)["spec"]["template"]["spec"]["containers"][0]["command"] == ["true"]
    either = "error: either --image or --from must be specified\n"
    for argv, err in ((["create", "job", "x"], either),
                      (["create", "job", "x", "--image=a", "--from=cronjob/y"], either),
                      (["create", "job", "x", "--from=cronjob/y", "--", "true"],
                       "error: cannot specify --from and command\n")):
        assert (await cli(*argv)).err == err


async def test_run_with_dry_run_or_output_prints_the_pod(api: TestAPIServer) -> None:
    # kubectl run NAME --image=I --restart=Never --dry-run=client -o yaml -- CMD: a pod manifest.
    cli = CLI(api.client)
    r = await cli("run", "p", "--image=busybox", "--restart=Never", "--dry-run=client", "-o", "yaml", "--", "true")
    doc = yaml.safe_load(r.out)
    assert (r.code, doc["kind"], doc["spec"]["containers"][0]["command"]) == (0, "Pod", ["true"])
    assert not (await api.client.list("Pod", "default"))[0]
    r = await cli("run", "p", "--restart=Never", "--dry-run=server", "--", "true")
    assert (r.code, r.out) == (0, "pod/p created (server dry run)\n")
    assert not (await api.client.list("Pod", "default"))[0]
    r = await cli("run", "p", "--restart=Never", "-o", "name", "--", "true")  # created, not followed
    assert (r.code, r.out) == (0, "pod/p\n")
    assert (await api.client.get("Pod", "p", "default")).spec.restart_policy == "Never"
    r = await cli("run", "q", "--rm", "-i", "--dry-run=client", "--", "true")
    assert r.code == 1 and "--dry-run can't be used with attached containers" in r.err


@pytest.mark.parametrize("argv", [
    ["get", "cm", "a", "-A"], ["get", "cm/a", "--all-namespaces"], ["describe", "cm", "a", "-A"],
    ["delete", "cm", "a", "-A"], ["wait", "--for=delete", "cm/a", "-A"]])
async def test_a_name_across_all_namespaces_is_refused(api: TestAPIServer, argv: list[str]) -> None:
    # kubectl's builder: a namespaced object cannot be named with -A (ketch looked in one namespace).
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=CM.format(name="a"))
    r = await cli(*argv)
    assert (r.code, r.err) == (1, "error: a resource cannot be retrieved by name across all namespaces\n")
    assert (await api.client.get("ConfigMap", "a", "default")).metadata.name == "a"


async def test_a_cluster_wide_name_with_all_namespaces_is_fine(api: TestAPIServer) -> None:
    await api.client.create(manifest.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
    r = await CLI(api.client)("get", "node", "n1", "-A", "-o", "name")
    assert (r.code, r.out) == (0, "node/n1\n")


JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        command: ["true"]
"""


async def test_replace_updates_the_whole_object(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=CM.format(name="a").replace("  k: v\n", "  k: v\n  gone: soon\n"))
    r = await cli("replace", "-f", "-", stdin=CM.format(name="a").replace("k: v", "k: w"))
    assert (r.code, r.out) == (0, "configmap/a replaced\n")
    assert dict((await api.client.get("ConfigMap", "a", "default")).data) == {"k": "w"}  # a PUT, not a merge
    r = await cli("replace", "-f", "-", "--dry-run=client", "-o", "jsonpath={.data.k}", stdin=CM.format(name="a"))
    assert (r.code, r.out) == (0, "v")
    r = await cli("replace", "-f", "-", stdin=CM.format(name="nope"))
    assert (r.code, r.err) == (1, 'Error from server (NotFound): error when replacing "STDIN": '
                                  'configmaps "nope" not found\n')
    r = await cli("replace", "-f", "-", "--grace-period=0", stdin=CM.format(name="a"))
    assert (r.code, r.err) == (1, "error: --grace-period must have --force specified\n")


async def test_replace_force_deletes_then_creates_the_job_anew(api: TestAPIServer) -> None:
    # kubectl replace --force -f job.yaml: how a Job is run again from its manifest.
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=JOB)
    old = await api.client.get("Job", "once", "default")
    r = await cli("replace", "-f", "-", stdin=JOB.replace('["true"]', '["false"]'))  # the template is immutable
    assert r.code == 1 and "field is immutable" in r.err
    r = await cli("replace", "--force", "-f", "-", stdin=JOB.replace('["true"]', '["false"]'))
    assert (r.code, r.out) == (0, 'job.batch "once" deleted\njob.batch/once replaced\n')
    new = await api.client.get("Job", "once", "default")
    assert new.metadata.uid != old.metadata.uid
    assert list(new.spec.template.spec.containers[0].command) == ["false"]
    r = await cli("replace", "--force", "-f", "-", stdin=CM.format(name="fresh"))  # nothing to delete: created
    assert (r.code, r.out) == (0, "configmap/fresh replaced\n")
