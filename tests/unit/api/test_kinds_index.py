"""ketch/v1/kinds_index.py, which ketch.api.kinds reads instead of loading every kind's module (CLI
start-up, issue 14), says exactly what the protos' `(ketch.v1.resource)` options say."""

from __future__ import annotations

import sys

from ketch.api import kinds
from ketch.v1 import kinds_index


def test_the_committed_index_is_what_the_protos_say() -> None:
    assert kinds.served() == kinds.SERVED, "ketch/v1/kinds_index.py is stale: run `make proto`"
    assert len(kinds_index.KINDS) == len(kinds.SERVED)


def test_every_kind_names_its_message() -> None:
    for info in kinds.SERVED:
        assert info.message.DESCRIPTOR.full_name == info.full_name
        assert info.new().DESCRIPTOR.name == info.kind
        assert kinds.info_for_type_url(info.type_url) is info


def test_resolving_a_kind_loads_only_its_own_module() -> None:
    import subprocess

    probe = ("import sys; from ketch.api import kinds; info = kinds.resolve('po'); info.new(); "
             "print(sorted(m for m in sys.modules if m.startswith('ketch.v1.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "['ketch.v1.core_pb2', 'ketch.v1.kinds_index', 'ketch.v1.meta_pb2']"
