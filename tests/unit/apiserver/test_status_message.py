"""The status message of a refused call fits the trailers a gRPC client accepts."""

from __future__ import annotations

import pytest

from controlplane.apiserver.server import MAX_STATUS_MESSAGE, _encoded_size, status_message


@pytest.mark.parametrize("message", ["short", "x" * MAX_STATUS_MESSAGE, "%" * (MAX_STATUS_MESSAGE // 3),
                                     "\u00e9" * (MAX_STATUS_MESSAGE // 6)])
def test_a_message_that_fits_is_kept(message: str) -> None:
    assert status_message(message) == message


@pytest.mark.parametrize("char", ["x", "%", "\u00e9", "\u6f22", "\U0001f600", "\n"])
def test_a_longer_message_is_clipped_to_fit_once_percent_encoded(char: str) -> None:
    message = char * 50_000
    clipped = status_message(message)
    assert _encoded_size(clipped.encode()) <= MAX_STATUS_MESSAGE
    assert clipped.startswith(char * 100)
    assert clipped.endswith("... (clipped: the message had 50000 characters)")
