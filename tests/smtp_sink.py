"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps the messages it receives, and an
Airflow SMTP connection (``AIRFLOW_CONN_SMTP_DEFAULT``) pointing at it."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class SmtpSink:
    port: int
    messages: list[email.message.EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"

    @staticmethod
    def body(message) -> str:
        part = message.get_body(preferencelist=("html", "plain"))
        return part.get_content() if part is not None else ""


@pytest.fixture(name="smtp_sink")
def smtp_sink_fixture(monkeypatch) -> Iterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    from recpipe.services import free_port

    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        f"smtp://127.0.0.1:{sink.port}?disable_ssl=true&disable_tls=true"
        "&from_email=recpipe%40example.com&timeout=10&retry_limit=0",
    )
    try:
        yield sink
    finally:
        controller.stop()
