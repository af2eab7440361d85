"""nodelimits_tls_certificate_expiry_timestamp_seconds: read from the file the listener
serves, at each scrape, so a rotation (any mode) shows without a restart."""

from __future__ import annotations

import datetime
from pathlib import Path

from webhook.config import CertificateSettings
from webhook.metrics import Metrics
from webhook.serve.selfcerts import Material, plan, watch_certificate_expiry

EXPIRY = "nodelimits_tls_certificate_expiry_timestamp_seconds"
T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
S = CertificateSettings(
    self_managed=True,
    hosts=("nodelimits.ns.svc",),
    duration=3600,
    renew_before=600,
    ca_duration=86400,
    ca_renew_before=7200,
    propagation=60,
)


def issued(at: datetime.datetime) -> Material:
    material = plan(None, at, S)
    assert material is not None
    return material


def scrape(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(EXPIRY)


def test_the_served_certificates_not_after_is_exported(tmp_path: Path) -> None:
    cert_file = tmp_path / "tls.crt"
    cert_file.write_bytes(issued(T0).leaf.cert)
    metrics = Metrics()
    watch_certificate_expiry(metrics, cert_file)
    assert scrape(metrics) == (T0 + datetime.timedelta(seconds=S.duration)).timestamp()


def test_a_rotated_certificate_file_shows_its_new_expiry_at_the_next_scrape(
    tmp_path: Path,
) -> None:
    cert_file = tmp_path / "tls.crt"
    cert_file.write_bytes(issued(T0).leaf.cert)
    metrics = Metrics()
    watch_certificate_expiry(metrics, cert_file)
    first = scrape(metrics)
    rotated_at = T0 + datetime.timedelta(days=1)
    cert_file.write_bytes(issued(rotated_at).leaf.cert + b"\n")  # another size: another file
    assert scrape(metrics) == (rotated_at + datetime.timedelta(seconds=S.duration)).timestamp()
    assert first != scrape(metrics)


def test_a_missing_certificate_file_exports_zero(tmp_path: Path) -> None:
    metrics = Metrics()
    watch_certificate_expiry(metrics, tmp_path / "absent.crt")
    assert scrape(metrics) == 0.0


def test_a_certificate_file_that_is_not_pem_exports_zero(tmp_path: Path) -> None:
    cert_file = tmp_path / "tls.crt"
    cert_file.write_text("not a certificate\n")
    metrics = Metrics()
    watch_certificate_expiry(metrics, cert_file)
    assert scrape(metrics) == 0.0
