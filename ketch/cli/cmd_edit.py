"""`ketch edit KIND NAME [-o yaml|json]`: change a live object in an editor, as kubectl edit.

The object goes to a temp file under kubectl's header comment; the editor is $KUBE_EDITOR, else
$EDITOR, else vi (split as shell words, the file appended). What comes back, `#` lines dropped,
is sent as an update carrying the fetched resourceVersion, so a change someone made meanwhile is
refused (Conflict) rather than overwritten. Unchanged: `Edit cancelled, no changes made.`. A
file the server (or decoding) rejects is reopened with the errors as comments on top; saved
unchanged again, the edit stops with the error and the file is kept, its path printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
from typing import TYPE_CHECKING, Any

from ketch.api import errors

from .factory import Factory
from .main import CLIError, add_common

if TYPE_CHECKING:
    from ketch.api.kinds import KindInfo

HEADER = """\
# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("edit", help="edit an object on the server in $KUBE_EDITOR or $EDITOR")
    p.add_argument("targets", nargs="+", metavar="KIND NAME")
    p.add_argument("-o", "--output", default="yaml", choices=["yaml", "json"], help="edit as yaml (default) or json")
    add_common(p)
    p.set_defaults(run=run)


def editor_command() -> list[str]:
    """kubectl's choice: KUBE_EDITOR, then EDITOR, then vi."""
    for var in ("KUBE_EDITOR", "EDITOR"):
        value = os.environ.get(var, "").strip()
        if value:
            return shlex.split(value)
    return ["vi"]


def strip_comments(text: str) -> str:
    """The file without its `#` lines (kubectl's cmdutil.StripComments), trailing space trimmed."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip()


def error_comments(reasons: list[str], head: str) -> str:
    """kubectl's block at the top of a reopened file: the head, then `# * cause` lines."""
    lines = [f"# {head}:"]
    for reason in reasons:  # every line commented, or a multi-line error would become content
        lines += [("# * " if i == 0 else "#   ") + part for i, part in enumerate(reason.splitlines() or [""])]
    lines.append("#")
    return "\n".join(lines) + "\n"


def reasons_of(err: errors.StatusError) -> list[str]:
    found = getattr(err, "errors", None)
    if found:
        return [str(e) for e in found]
    _, sep, rest = err.message.partition(" is invalid: ")
    return [rest if sep else err.message]


async def run_editor(path: str) -> None:
    import asyncio

    try:
        proc = await asyncio.create_subprocess_exec(*editor_command(), path)
    except OSError as err:
        raise CLIError(f"unable to launch the editor {' '.join(editor_command())!r}: {err.strerror}") from None
    code = await proc.wait()
    if code != 0:
        raise CLIError(f"there was a problem with the editor {' '.join(editor_command())!r}")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def render(doc: dict[str, Any], output: str) -> str:
    from ketch.api import manifest

    return manifest.to_json(doc) + "\n" if output == "json" else manifest.to_yaml(doc)


def parse_edited(text: str, output: str) -> dict[str, Any]:
    """The edited document, or ValueError with the syntax problem."""
    import json

    import yaml

    from ketch.api import safeyaml

    try:
        value = json.loads(text) if output == "json" else safeyaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, safeyaml.YAMLLimitError) as err:
        raise ValueError(str(err)) from None
    if not isinstance(value, dict):
        raise ValueError("the edited file is not an object")
    return value


async def edit_one(factory: Factory, info: KindInfo, name: str, namespace: str, output: str) -> int:
    from ketch.api import manifest

    from .resources import display_name

    client = factory.client()
    live = manifest.to_dict(await client.get(info.kind, name, namespace))
    live.get("metadata", {}).pop("managedFields", None)
    original = render(live, output)
    fd, path = tempfile.mkstemp(prefix="ketch-edit-", suffix="." + output)
    os.close(fd)
    keep = False
    try:
        body, comments, last_edited = original, "", ""
        while True:
            _write(path, HEADER + comments + body)
            await run_editor(path)
            edited = _read(path)
            content = strip_comments(edited)
            if comments and content == last_edited:
                keep = True
                factory.err.write(f'A copy of your changes has been stored to "{path}"\n')
                raise CLIError("Edit cancelled, no valid changes were saved.")
            if not content:
                factory.err.write("Edit cancelled, saved file was empty.\n")
                return 0
            if content == strip_comments(original):
                factory.err.write("Edit cancelled, no changes made.\n")
                return 0
            last_edited, body = content, content + "\n"
            try:
                doc = parse_edited(content, output)
            except ValueError as err:
                comments = error_comments([str(err)], "The edited file had a syntax error")
                continue
            md = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
            if doc.get("kind") != live.get("kind") or (md or {}).get("name") != name:
                comments = error_comments(["the kind and metadata.name of an edited object may not change"],
                                          f'{info.qualified_plural} "{name}" was not valid')
                continue
            try:
                obj = manifest.from_dict(doc)
                await client.update(obj)
            except (errors.Invalid, manifest.DecodeError) as err:
                comments = error_comments(reasons_of(err), f'{info.qualified_plural} "{name}" was not valid')
                continue
            except errors.StatusError:
                keep = True
                factory.err.write(f'A copy of your changes has been stored to "{path}"\n')
                raise
            factory.print(f"{display_name(info, name)} edited")
            return 0
    finally:
        if not keep:
            os.unlink(path)


async def run(args: argparse.Namespace, factory: Factory) -> int:
    from .resources import parse_targets

    targets = parse_targets(args.targets)
    for info, name in targets:
        if name is None:
            raise CLIError("resource name may not be empty")
        ns = factory.default_namespace if info.namespaced else ""
        code = await edit_one(factory, info, name, ns, args.output)
        if code:
            return code
    return 0
