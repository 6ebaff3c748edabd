"""kubectl's --dry-run=none|client|server for the writing verbs (apply, create, delete, patch).

client: print what would be sent and send nothing; server: the server decides the request as a
real one (authorization, defaults, admission, validation) and stores nothing. A bare --dry-run
and --dry-run=true|false still work with kubectl 1.31's deprecation warnings.

Each accepted form is its own option string, so a bare --dry-run never takes the next word
(`ketch delete --dry-run job pi`) as its value, as kubectl's flag does not.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import NoReturn

from .factory import Factory
from .main import CLIError

NONE, CLIENT, SERVER = "none", "client", "server"
_BARE = "unchanged"  # kubectl's NoOptDefVal for the flag
_IGNORED = re.compile(r"argument --dry-run: ignored explicit argument '(.*)'", re.S)
_FORMS = {"": _BARE, "none": NONE, "client": CLIENT, "server": SERVER, "true": "true", "false": "false"}


def add_dry_run_flag(p: argparse.ArgumentParser) -> None:
    help_text = ('"none", "server", or "client". client: only print the object that would be sent, without '
                 "sending it. server: submit the request without persisting the resource.")
    for value, stored in _FORMS.items():
        flag = f"--dry-run={value}" if value else "--dry-run"
        p.add_argument(flag, dest="dry_run", action="store_const", const=stored, default=NONE,
                       help=help_text if not value else argparse.SUPPRESS)
    p.error = _kubectl_words(p.error)  # type: ignore[method-assign,assignment]


def _kubectl_words(error: Callable[[str], NoReturn]) -> Callable[[str], NoReturn]:
    """argparse refuses --dry-run=VALUE for an unknown VALUE in its own words; say kubectl's."""
    def refuse(message: str) -> NoReturn:
        bad = _IGNORED.fullmatch(message)
        if bad:
            message = f'Invalid dry-run value ({bad[1]}). Must be "none", "server", or "client".'
        error(message)
    return refuse


def strategy(args: argparse.Namespace, factory: Factory) -> str:
    """none, client or server, warning as kubectl for the deprecated forms."""
    value = getattr(args, "dry_run", NONE)
    if value == _BARE:
        factory.warn("--dry-run is deprecated and can be replaced with --dry-run=client.")
        return CLIENT
    if value in ("true", "false"):
        replaced = CLIENT if value == "true" else NONE
        factory.warn(f"--dry-run={value} is deprecated (boolean value) and can be replaced with "
                     f"--dry-run={replaced}.")
        return replaced
    if value not in (NONE, CLIENT, SERVER):
        raise CLIError(f'Invalid dry-run value ({value}). Must be "none", "server", or "client".')
    return str(value)


def suffix(dry_run: str) -> str:
    """What kubectl adds to its `job.batch/pi created` line."""
    return {CLIENT: " (dry run)", SERVER: " (server dry run)"}.get(dry_run, "")
