"""The registrar's binding rules (RFC 3261 §10.3, RFC 5626)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from telebridge.calls.registrar import Registrar
from telebridge.sip.message import Request, parse_message

INSTANCE = '"<urn:uuid:00000000-0000-0000-0000-000000000001>"'


def register(contact: str | None = None, expires: str | None = None, call_id: str = "c1", cseq: int = 1, supported: str | None = None) -> Request:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK" + str(cseq) + call_id,
        "From: <sip:alice@127.0.0.1>;tag=1",
        "To: <sip:alice@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if supported is not None:
        lines.append(f"Supported: {supported}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_register_then_lookup_then_expire_at_the_deadline() -> None:
    """§10.3 step 8: the binding lives for the granted interval, no longer."""
    registrar = Registrar()
    response = registrar.register(register("<sip:alice@10.0.0.1>", "120"), "alice", None, 1000.0)
    assert response.status == 200
    assert response.headers.get_all("Contact") == ["<sip:alice@10.0.0.1>;expires=120"]
    assert registrar.next_expiry() == 1120.0
    assert registrar.expire(1119.9) == [] and len(registrar) == 1
    assert [b.user for b in registrar.expire(1120.0)] == ["alice"]
    assert len(registrar) == 0 and registrar.next_expiry() is None


def test_contact_expires_param_beats_header_and_default_applies() -> None:
    """§10.3 step 6: contact param > Expires header > default; above max is clamped."""
    registrar = Registrar(default_expires=600, max_expires=3600)
    registrar.register(register("<sip:a@h1>;expires=100, <sip:a@h2>", "200"), "alice", None, 0)
    registrar.register(register("<sip:a@h3>", None, cseq=2), "alice", None, 0)
    registrar.register(register("<sip:a@h4>", "99999", cseq=3), "alice", None, 0)
    times = {str(b.contact.uri): b.expires_at for b in registrar.lookup("alice", 0)}
    assert times == {"sip:a@h1": 100, "sip:a@h2": 200, "sip:a@h3": 600, "sip:a@h4": 3600}


def test_too_brief_interval_gets_423_with_min_expires() -> None:
    """§10.3 step 7: 423 Interval Too Brief carries Min-Expires."""
    registrar = Registrar(min_expires=60)
    response = registrar.register(register("<sip:a@h>", "30"), "alice", None, 0)
    assert response.status == 423 and response.headers.get("Min-Expires") == "60"
    assert len(registrar) == 0


def test_two_tabs_are_two_bindings_and_zero_removes_one() -> None:
    """Several contacts per user; expires=0 removes only that one."""
    registrar = Registrar()
    registrar.register(register("<sip:a@tab1.invalid;transport=ws>"), "alice", "ws1", 0)
    registrar.register(register("<sip:a@tab2.invalid;transport=ws>", call_id="c2"), "alice", "ws2", 0)
    assert len(registrar.lookup("alice", 1)) == 2
    registrar.register(register("<sip:a@tab1.invalid;transport=ws>;expires=0", cseq=2), "alice", "ws1", 1)
    assert [str(b.contact.uri) for b in registrar.lookup("alice", 1)] == ["sip:a@tab2.invalid;transport=ws"]


def test_star_removes_everything_only_with_expires_zero_and_alone() -> None:
    """§10.3 step 6: ``Contact: *`` needs Expires: 0 and no other contact."""
    registrar = Registrar()
    registrar.register(register("<sip:a@h1>, <sip:a@h2>"), "alice", None, 0)
    assert registrar.register(register("*", "60", cseq=2), "alice", None, 1).status == 400
    assert registrar.register(register("*, <sip:a@h3>", "0", cseq=3), "alice", None, 1).status == 400
    assert registrar.register(register("*", "0", cseq=4), "alice", None, 1).status == 200
    assert len(registrar) == 0


def test_out_of_order_cseq_for_same_call_id_is_refused() -> None:
    """§10.3 step 7: same Call-ID with a CSeq not above the stored one."""
    registrar = Registrar()
    registrar.register(register("<sip:a@h>", cseq=5), "alice", None, 0)
    assert registrar.register(register("<sip:a@h>", cseq=5), "alice", None, 1).status == 500
    assert registrar.register(register("<sip:a@h>", cseq=6), "alice", None, 1).status == 200


def test_query_without_contact_lists_bindings() -> None:
    """§10.2.3: a REGISTER without Contact asks for the current bindings."""
    registrar = Registrar()
    registrar.register(register("<sip:a@h>", "300"), "alice", None, 0)
    response = registrar.register(register(None, cseq=2), "alice", None, 100)
    assert response.headers.get_all("Contact") == ["<sip:a@h>;expires=200"]


def test_outbound_reregister_on_a_new_flow_replaces_the_binding() -> None:
    """RFC 5626 §6: same instance and reg-id from a new WebSocket replaces the flow."""
    registrar = Registrar()
    first = register(f"<sip:x@old.invalid;transport=ws>;+sip.instance={INSTANCE};reg-id=1", supported="path, outbound")
    response = registrar.register(first, "alice", "ws-old", 0)
    assert response.headers.get("Require") == "outbound"
    second = register(f"<sip:y@new.invalid;transport=ws>;+sip.instance={INSTANCE};reg-id=1", call_id="other", supported="outbound")
    registrar.register(second, "alice", "ws-new", 10)
    [binding] = registrar.lookup("alice", 10)
    assert binding.flow == "ws-new" and binding.contact.uri.host == "new.invalid"


def test_without_supported_outbound_instance_is_not_a_flow_key() -> None:
    """RFC 5626 §6: no ``Supported: outbound``, no outbound processing."""
    registrar = Registrar()
    registrar.register(register(f"<sip:x@a.invalid>;+sip.instance={INSTANCE};reg-id=1"), "alice", "f1", 0)
    response = registrar.register(register(f"<sip:y@b.invalid>;+sip.instance={INSTANCE};reg-id=1", call_id="c2"), "alice", "f2", 0)
    assert response.headers.get("Require") is None
    assert len(registrar.lookup("alice", 0)) == 2


def test_drop_flow_ends_its_bindings_at_once() -> None:
    """Issue 2 §5: a closed connection's registrations expire at once."""
    registrar = Registrar()
    registrar.register(register("<sip:a@tab1.invalid>"), "alice", "ws1", 0)
    registrar.register(register("<sip:a@tab2.invalid>", call_id="c2"), "alice", "ws2", 0)
    assert [b.flow for b in registrar.drop_flow("ws1")] == ["ws1"]
    assert [b.flow for b in registrar.lookup("alice", 0)] == ["ws2"]


def test_malformed_contact_or_expires_gets_400() -> None:
    """A bad Contact, q or Expires is a 400, never an exception."""
    registrar = Registrar()
    for contact, expires in [("<sip:a@h", None), ("<sip:a@h>;q=2", None), ("<sip:a@h>;q=x", None), ("<sip:a@h>", "soon"), ("<sip:a@h>;expires=-1", None)]:
        assert registrar.register(register(contact, expires), "alice", None, 0).status == 400


@given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=12)))
@settings(max_examples=300, deadline=None)
def test_random_contact_and_expires_give_a_response(contact: str, expires: str | None) -> None:
    """Total: any Contact/Expires text yields a 2xx/4xx/5xx response."""
    request = register("<sip:a@h>", cseq=1)
    request.headers.set("Contact", contact)
    if expires is not None:
        request.headers.set("Expires", expires)
    assert Registrar().register(request, "alice", None, 0).status in (200, 400, 423, 500)
