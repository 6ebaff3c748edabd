"""Warnings for fields that are stored but mean nothing to a host process."""

from __future__ import annotations

from google.protobuf.message import Message


def ignored_fields(obj: Message) -> list[str]:
    return []
