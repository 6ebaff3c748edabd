"""The Examples section of every verb's --help, as kubectl prints one under each command.

Kept apart from the verb modules so a verb's parser stays about flags; build_parser() attaches
each text to the parser whose prog (`ketch rollout status`) names it.
"""

from __future__ import annotations

import argparse

EXAMPLES: dict[str, str] = {
    "apply": """\
  # Create or update the objects in a file, a directory, or the standard input
  ketch apply -f job.yaml
  ketch apply -f manifests/
  cat job.yaml | ketch apply -f -""",
    "create": """\
  # Create the objects in a file (refused if they exist)
  ketch create -f job.yaml
  # Run a CronJob's job now, or make a namespace
  ketch create job tick-manual --from=cronjob/tick
  ketch create namespace team-a
  # A one-container Job running a command (the image is recorded; the command runs on the host)
  ketch create job hello --image=busybox -- sh -c 'echo hello'
  # Configuration and credentials for pods' env (valueFrom, envFrom)
  ketch create configmap app-config --from-literal=mode=batch --from-file=conf/
  ketch create secret generic db --from-literal=password=s3cret""",
    "get": """\
  # List jobs, then one pod as YAML, then leases of another namespace (flags go anywhere)
  ketch get jobs
  ketch get pod pi-0-abcde -o yaml
  ketch get lease -n kube-system
  # Every namespace, with labels, watching for changes
  ketch get pods -A --show-labels -w
  # Only some fields
  ketch get jobs -o jsonpath='{.items[*].metadata.name}'""",
    "api-resources": """\
  # The kinds the server serves, with their short names
  ketch api-resources
  ketch api-resources -o name""",
    "api-versions": """\
  # The group/versions the server serves, one per line
  ketch api-versions""",
    "describe": """\
  # Details and recent events of a job, or of every pod with a label
  ketch describe job pi
  ketch describe pods -l app=web""",
    "delete": """\
  # Delete by name, by file, or by label
  ketch delete job pi
  ketch delete -f job.yaml
  ketch delete pods -l app=web --wait=false""",
    "patch": """\
  # Merge patch a job's parallelism; a JSON patch on a label
  ketch patch job pi -p '{"spec":{"parallelism":4}}'
  ketch patch job pi --type=json -p '[{"op":"add","path":"/metadata/labels/tier","value":"batch"}]'""",
    "label": """\
  # Add a label, change it (needs --overwrite), remove it
  ketch label pods foo unhealthy=true
  ketch label --overwrite pods foo unhealthy=false
  ketch label pods foo unhealthy-
  # Label every pod in the namespace
  ketch label pods --all status=unhealthy""",
    "annotate": """\
  # Add an annotation, change it (needs --overwrite), remove it
  ketch annotate pods foo description='my frontend'
  ketch annotate --overwrite pods foo description='my frontend running nginx'
  ketch annotate pods foo description-""",
    "wait": """\
  # Wait for a job to complete, or for pods to be deleted
  ketch wait --for=condition=Complete job/pi --timeout=60s
  ketch wait --for=delete pod/busybox1""",
    "run": """\
  # Run a command in a new pod, see its output, exit with its exit code, delete the pod
  ketch run --rm --restart=Never hello -- echo hello
  # Environment, labels and a recorded image; stdin is not forwarded (-i attaches the output)
  ketch run --restart=Never train --env EPOCHS=3 -l team=ml --image python:3.12 -- python3 train.py
  # restartPolicy Always (the default): created, not attached
  ketch run web -- python3 -m http.server 8080""",
    "logs": """\
  # The logs of a pod, of one container, following them
  ketch logs pi-0-abcde
  ketch logs pi-0-abcde -c main -f
  # One of a job's pods (says which on stderr), or a daemonset's
  ketch logs job/pi
  ketch logs daemonset/agent --tail=20
  # Every pod with a label
  ketch logs -l app=web --prefix""",
    "exec": """\
  # Run a command in a running pod's container (its user, env, working dir); exits with its code
  ketch exec web-0 -- ls -l
  ketch exec web-0 -c sidecar -- sh -c 'echo $HOME'
  # No stdin or tty: -i/-t are not supported""",
    "rollout": """\
  # Follow, list, undo and restart a DaemonSet's rollout
  ketch rollout status daemonset/agent
  ketch rollout history daemonset/agent
  ketch rollout undo daemonset/agent
  ketch rollout restart daemonset/agent""",
    "rollout status": """\
  # Wait until the DaemonSet's pods are all updated and ready
  ketch rollout status daemonset/agent --timeout=5m""",
    "rollout history": """\
  # The revisions, then the pod template of one
  ketch rollout history daemonset/agent
  ketch rollout history daemonset/agent --revision=3""",
    "rollout undo": """\
  # Back to the previous revision, or to a given one
  ketch rollout undo daemonset/agent
  ketch rollout undo daemonset/agent --to-revision=2""",
    "rollout restart": """\
  # Replace every pod of a DaemonSet
  ketch rollout restart daemonset/agent""",
    "cordon": """\
  # Keep new pods off a node
  ketch cordon node-1""",
    "uncordon": """\
  # Let pods be scheduled on a node again
  ketch uncordon node-1""",
    "drain": """\
  # Cordon a node and evict its pods, leaving DaemonSet pods alone
  ketch drain node-1 --ignore-daemonsets --timeout=2m""",
    "taint": """\
  # Keep pods without a matching toleration off node-1
  ketch taint nodes node-1 dedicated=special-user:NoSchedule
  # Remove that taint, or every taint with the key
  ketch taint nodes node-1 dedicated:NoSchedule-
  ketch taint nodes node-1 dedicated-
  # Change a taint's value
  ketch taint nodes node-1 dedicated=other:NoSchedule --overwrite""",
    "top": """\
  # CPU and memory of nodes and pods
  ketch top nodes
  ketch top pods -A --sort-by=cpu""",
    "top nodes": """\
  ketch top nodes
  ketch top nodes node-1""",
    "top pods": """\
  ketch top pods
  ketch top pods --containers -n kube-system""",
    "events": """\
  # Recent events, oldest first, then the ones of one job as they come
  ketch events
  ketch events --for job/pi -w""",
    "version": """\
  ketch version
  ketch version --client -o json""",
    "auth": """\
  ketch auth can-i create jobs
  ketch auth whoami""",
    "auth can-i": """\
  # May I create jobs here, or delete pods in every namespace?
  ketch auth can-i create jobs
  ketch auth can-i delete pods -A""",
    "auth whoami": """\
  ketch auth whoami -o yaml""",
    "local": """\
  # A control plane and two agents on this machine, in the foreground
  ketch local up --agents 2
  # From another terminal: what runs, then stop it
  ketch local status
  ketch local down""",
    "local up": """\
  ketch local up --agents 2
  # A second cluster beside the first, on its own port and state
  ketch local up --name other --port 6444""",
    "local down": """\
  ketch local down
  ketch local down --name other""",
    "local status": """\
  ketch local status
  ketch local status --name other""",
    "config": """\
  ketch config view
  ketch config use-context prod""",
    "config view": """\
  ketch config view --minify""",
    "config get-contexts": """\
  ketch config get-contexts""",
    "config current-context": """\
  ketch config current-context""",
    "config use-context": """\
  ketch config use-context prod""",
    "config set-context": """\
  ketch config set-context --current --namespace=team-a""",
    "config set-cluster": """\
  ketch config set-cluster prod --server=10.0.0.1:6443 --certificate-authority=ca.crt --embed-certs""",
    "config set-credentials": """\
  ketch config set-credentials admin --token=TOKEN""",
    "token": """\
  ketch token create --ttl 1h
  ketch token list""",
    "token create": """\
  # A join token for agents, valid for an hour
  ketch token create --ttl 1h --description 'rack 4'""",
    "token list": """\
  ketch token list""",
    "token delete": """\
  ketch token delete abcdef""",
    "replace": """\
  # Put a manifest in place of the live object (fields it leaves out are cleared)
  ketch replace -f job.yaml
  # Run a Job again from its file: delete it, wait until it is gone, create it anew
  ketch replace --force -f job.yaml""",
    "diff": """\
  # What apply would change in the live objects (exit 1 when something would)
  ketch diff -f job.yaml
  cat job.yaml | ketch diff -f -""",
    "edit": """\
  # Edit a job in $KUBE_EDITOR, else $EDITOR, else vi; as JSON; with another editor
  ketch edit job pi
  ketch edit job/pi -o json
  KUBE_EDITOR=nano ketch edit cronjob tick""",
    "explain": """\
  # A kind's fields, one field's documentation, or every field at once
  ketch explain jobs
  ketch explain jobs.spec.parallelism
  ketch explain pods.spec.containers --recursive""",
    "completion": """\
  # Load completion into the current bash or zsh
  source <(ketch completion bash)
  source <(ketch completion zsh)
  # Or for every new bash
  ketch completion bash > ~/.local/share/bash-completion/completions/ketch""",
}


def attach(parser: argparse.ArgumentParser) -> None:
    """Give every parser under `parser` its Examples section (RawDescription keeps the lines)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
            text = EXAMPLES.get(sub.prog.removeprefix(parser.prog.split(" ")[0] + " "))
            if text and not sub.epilog:
                sub.epilog = "Examples:\n" + text
                sub.formatter_class = argparse.RawDescriptionHelpFormatter
            attach(sub)
