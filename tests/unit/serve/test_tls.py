"""The webhook listener's TLS context: TLS 1.2 is the floor, whatever the defaults say."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from devtools.certs import make_ca_and_cert
from webhook.metrics import Metrics
from webhook.serve.tls import NodelimitsWebhookServer, ServingState


def test_server_context_refuses_tls_below_1_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even if the defaults allowed TLS 1.0 (old Python, permissive OpenSSL config).
    permissive = ssl.create_default_context

    def old_defaults(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = permissive(*args, **kwargs)  # type: ignore[arg-type]
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        return context

    monkeypatch.setattr(ssl, "create_default_context", old_defaults)
    certs = make_ca_and_cert(tmp_path)
    server = NodelimitsWebhookServer(
        state=ServingState(),
        metrics=Metrics(),
        handlers={},
        addr="127.0.0.1",
        port=0,
        certfile=str(certs.cert),
        pkeyfile=str(certs.key),
    )
    _, context = server._build_ssl()
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
