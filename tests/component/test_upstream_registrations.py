"""Upstream registrations (PBX mode) on a fake clock: what is left behind after each ending."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from twisted.internet.task import Clock

from telebridge.calls.accounts import AccountSource
from telebridge.calls.upstream import Upstream
from telebridge.calls.upstream_registrations import Outcome, UpstreamRegistrations
from telebridge.config import AccountConfig, ListenAddress, UpstreamConfig
from telebridge.metrics import Counters
from telebridge.sip.message import Request, Response, make_response


@dataclass
class FakeListener:
    local: tuple[str, int] = ("127.0.0.1", 5060)


@dataclass
class FakeStack:
    """Records requests; the test answers them."""

    sent: list[tuple[Request, Callable[[Response], None]]] = field(default_factory=list)

    def send_request(self, request: Request, flow: object, on_response: Callable[[Response], None]) -> None:
        self.sent.append((request, on_response))

    def answer(self, status: int, **headers: str) -> None:
        request, on_response = self.sent[-1]
        response = make_response(request, status, to_tag="pbx")
        for name, value in headers.items():
            response.headers.add(name.replace("_", "-"), value)
        on_response(response)


def make() -> tuple[UpstreamRegistrations, FakeStack, Clock]:
    config = UpstreamConfig(ListenAddress("udp", "192.0.2.10", 5060), "pbx.test", register_expires=600, timeout=5.0)
    clock, stack = Clock(), FakeStack()
    accounts = AccountSource({"alice": AccountConfig("1001", "pw")}, clock)
    upstream = Upstream(config, accounts, lambda: FakeListener(), None)  # type: ignore[arg-type,return-value]
    return UpstreamRegistrations(stack, upstream, clock, Counters()), stack, clock  # type: ignore[arg-type]


def test_granted_registration_refreshes_at_half_and_release_unregisters_and_leaves_nothing() -> None:
    registrations, stack, clock = make()
    outcomes: list[Outcome] = []
    registrations.ensure("alice").addCallback(outcomes.append)
    stack.answer(200, Expires="120")
    assert outcomes == [Outcome(200, "OK")] and len(registrations) == 1
    clock.advance(60)
    assert len(stack.sent) == 2 and stack.sent[-1][0].headers.get("Expires") == "600"
    stack.answer(200, Expires="120")
    registrations.release("alice")
    assert stack.sent[-1][0].headers.get("Expires") == "0"
    assert registrations.timers == 0 and clock.getDelayedCalls() == []


def test_a_failure_released_at_once_leaves_no_retry_behind() -> None:
    """A browser whose REGISTER failed has no tab left: nothing may retry later."""
    registrations, stack, clock = make()
    registrations.ensure("alice").addCallback(lambda outcome: registrations.release("alice"))
    stack.answer(403)
    assert clock.getDelayedCalls() == [] and registrations.tracked() == 0
    assert len(stack.sent) == 1  # never bound: no un-REGISTER either


def test_a_silent_pbx_gives_503_after_the_timeout_and_late_answers_are_ignored() -> None:
    registrations, stack, clock = make()
    outcomes: list[Outcome] = []
    registrations.ensure("alice").addCallback(outcomes.append)
    clock.advance(5)
    assert [o.status for o in outcomes] == [503]
    stack.answer(200)  # too late
    assert len(registrations) == 0
    registrations.release("alice")
    assert clock.getDelayedCalls() == []
