"""The HTTPS resources without sockets (twisted.web's DummyRequest)."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from telebridge.metrics import Counters
from telebridge.web.http import DevTokenResource, MetricsResource


def _get(resource: DevTokenResource | MetricsResource, client: str, args: dict[bytes, list[bytes]]) -> tuple[int, bytes]:
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", client, 40000)
    request.args = args
    body = resource.render_GET(request)
    return request.responseCode or 200, body


def test_dev_token_only_for_loopback_clients() -> None:
    """Issue 2 §6: /api/dev-token serves loopback clients only."""
    resource = DevTokenResource(lambda user: f"token-for-{user}")
    status, body = _get(resource, "127.0.0.1", {b"user": [b"alice"]})
    assert status == 200 and json.loads(body)["token"] == "token-for-alice"
    status, body = _get(resource, "192.0.2.10", {b"user": [b"alice"]})
    assert status == 403 and "loopback" in json.loads(body)["error"]


def test_dev_token_rejects_a_bad_user_name() -> None:
    """A user that is not a SIP user name gets 400, not a token."""
    resource = DevTokenResource(lambda user: "never")
    for bad in (b"", b"a b", b"<script>", b"x" * 100):
        status, _ = _get(resource, "127.0.0.1", {b"user": [bad]})
        assert status == 400


def test_metrics_render_prometheus_text() -> None:
    """/metrics: counters with labels and gauges in the text format."""
    counters = Counters()
    counters.inc("sip_parse_errors_total", transport="UDP")
    counters.gauge("registrar_bindings", "live registrations", lambda: 3)
    _, body = _get(MetricsResource(counters), "127.0.0.1", {})
    text = body.decode()
    assert 'sip_parse_errors_total{transport="UDP"} 1' in text
    assert "# TYPE registrar_bindings gauge\nregistrar_bindings 3" in text
