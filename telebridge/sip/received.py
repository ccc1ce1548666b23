"""Where a request came from and where its responses go.

RFC 3261 §18.2.1: a server adds ``received`` to the top Via when the sent-by
host is not the packet's source address. RFC 3581 §4: if the client asked
with an empty ``rport``, the server fills in the source port and always adds
``received``. RFC 3261 §18.2.2 and RFC 3581 §4 then say where an unreliable
transport sends the response. Reliable transports answer on the connection
the request came over and need none of this.
"""

from __future__ import annotations

from telebridge.sip.message import Request
from telebridge.sip.uri import Via, format_host

DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061, "WS": 80, "WSS": 443}


def stamp_received(request: Request, host: str, port: int) -> None:
    """Record the packet's source in the top Via (RFC 3261 §18.2.1, RFC 3581 §4).

    The Via is rewritten in place on the first Via line of ``request``.
    """
    via = request.top_via
    rport_requested = "rport" in via.params and not via.params.get("rport")
    if via.host == host and not rport_requested:
        return
    stamped = via.with_params(received=host)
    if rport_requested:
        stamped = stamped.with_params(rport=str(port))
    request.headers.remove_first_value("Via")
    request.headers.prepend("Via", str(stamped))


def response_address(via: Via) -> tuple[str, int]:
    """The (host, port) an unreliable transport sends a response to.

    ``maddr`` (multicast) is not supported: responses go to ``received``
    when present, else the sent-by host; the port is ``rport`` when the
    server filled it in, else the sent-by port, else the transport default.
    """
    host = via.params.get("received") or via.host
    rport = via.params.get("rport")
    if rport and rport.isdigit():
        return host, int(rport)
    return host, via.port or DEFAULT_PORTS.get(via.transport, 5060)


def sent_by_text(host: str, port: int) -> str:
    """A sent-by value for our own Via: ``host:port`` with IPv6 brackets."""
    return f"{format_host(host)}:{port}"
