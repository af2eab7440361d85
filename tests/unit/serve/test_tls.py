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


def test_each_tls_connection_holds_a_small_read_buffer(tmp_path: Path) -> None:
    """asyncio zero-fills 256 KiB per TLS connection: 1,000 slow connections were ~280 MB,
    over the chart's 256Mi limit (issue 12, finding 6). The listener lowers it."""
    import asyncio.sslproto

    from webhook.serve.tls import TLS_READ_BUFFER

    certs = make_ca_and_cert(tmp_path)
    NodelimitsWebhookServer(state=ServingState(), metrics=Metrics(), handlers={},
                            certfile=str(certs.cert), pkeyfile=str(certs.key))  # fmt: skip
    assert asyncio.sslproto.SSLProtocol.max_size <= TLS_READ_BUFFER


def test_a_configured_client_ca_requires_client_certificates(tmp_path: Path) -> None:
    certs = make_ca_and_cert(tmp_path)
    server = NodelimitsWebhookServer(state=ServingState(), metrics=Metrics(), handlers={},
                                     certfile=str(certs.cert), pkeyfile=str(certs.key),
                                     verify_cafile=str(certs.ca))  # fmt: skip
    _, context = server._build_ssl()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
