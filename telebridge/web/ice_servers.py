"""What ``/api/ice-servers`` hands a browser for its RTCPeerConnection.

TURN credentials follow coturn's ``use-auth-secret`` scheme (the "TURN REST
API" of draft-uberti-behave-turn-rest-00 §2.2): the username is
``EXPIRY:USER`` with EXPIRY a Unix time, the credential is
base64(HMAC-SHA1(secret, username)). coturn recomputes the credential from
its ``static-auth-secret`` and refuses the username once EXPIRY has passed,
so telebridge and coturn share nothing but the secret and need no database.
Time is passed in, so tests can check the expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telebridge.config import Config, IceServer


def turn_credentials(secret: str, user: str, now: float, ttl: int) -> tuple[str, str]:
    """``(username, credential)`` for ``user``, valid for ``ttl`` seconds from ``now``."""
    username = f"{int(now) + ttl}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


class IceServerList:
    """The ``iceServers`` list: fresh TURN credentials first, then the static entries."""

    def __init__(
        self,
        turn_urls: tuple[str, ...] = (),
        turn_secret: str | None = None,
        turn_ttl: int = 86400,
        static: tuple[IceServer, ...] = (),
    ) -> None:
        self.turn_urls = turn_urls
        self.turn_secret = turn_secret
        self.turn_ttl = turn_ttl
        self.static = static

    @classmethod
    def from_config(cls, config: Config) -> IceServerList:
        """Built from ``[turn]`` and ``[web] ice_servers``."""
        turn = config.turn
        return cls(turn.urls, turn.secret, turn.ttl, config.web.ice_servers)

    def for_user(self, user: str, now: float) -> list[dict[str, object]]:
        """RTCIceServer dictionaries (W3C webrtc-pc §4.2.2) for ``user`` at ``now``."""
        servers: list[dict[str, object]] = []
        if self.turn_urls and self.turn_secret is not None:
            username, credential = turn_credentials(self.turn_secret, user, now, self.turn_ttl)
            servers.append({"urls": list(self.turn_urls), "username": username, "credential": credential})
        for entry in self.static:
            server: dict[str, object] = {"urls": list(entry.urls)}
            if entry.username is not None:
                server["username"] = entry.username
            if entry.credential is not None:
                server["credential"] = entry.credential
            servers.append(server)
        return servers
