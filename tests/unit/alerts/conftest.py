"""Fixtures of the alerts tests: a local SMTP sink that can refuse, a store with targets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from soapd.models import Target
from soapd.store import Store

TRIGGER = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@dataclass
class SmtpSink:
    """An aiosmtpd handler keeping messages; it answers 451 to the first ``refuse`` DATA."""

    refuse: int = 0
    attempts: int = 0
    messages: list[Message] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.attempts <= self.refuse:
            return "451 4.3.0 try again later"
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(name="smtp_sink")
def fixture_smtp_sink() -> Iterator[SmtpSink]:
    """A running SMTP server on 127.0.0.1 (set ``.refuse`` to refuse the first attempts)."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    sink.port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store with targets 'GRB A' (trigger set) and 'VAR B'."""
    s = Store(tmp_path / "soapd.db")
    s.upsert_target(Target(name="GRB A", ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=TRIGGER))
    s.upsert_target(Target(name="VAR B", ra_deg=150.1, dec_deg=-30.0))
    yield s
    s.close()
