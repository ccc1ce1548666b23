"""The configuration: a TOML file validated into one tree of frozen dataclasses.

Rules of operation:

* Every key is optional and has the default documented in
  ``etc/telebridge.toml``; with no file at all, :func:`default_config` is the
  embedded default (registrar mode on loopback, dev tokens on).
* Validation stops at the first problem with a :class:`ConfigError` naming the
  file and the dotted key (``sip.listen[1]``), so start-up and
  ``telebridge check-config`` say the same thing.
* Relative paths in a file are relative to that file's directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from telebridge.sip.uri import format_host, is_token

TRANSPORTS = ("udp", "tcp", "tls")
TOKEN_ALGORITHMS = ("HS256", "RS256", "ES256")
DIGEST_ALGORITHMS = ("MD5", "SHA-256")


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where one listener binds."""

    transport: str  # udp, tcp, tls; "https" for the web listener
    host: str
    port: int

    @property
    def url(self) -> str:
        """A URL for logs: ``sip:127.0.0.1:5060;transport=udp`` or ``sips:...``."""
        if self.transport == "tls":
            return f"sips:{format_host(self.host)}:{self.port};transport=tls"
        if self.transport == "https":
            return f"https://{format_host(self.host)}:{self.port}/"
        return f"sip:{format_host(self.host)}:{self.port};transport={self.transport}"


@dataclass(frozen=True, slots=True)
class SipConfig:
    """``[sip]``: signalling listeners and protocol timers."""

    listen: tuple[ListenAddress, ...] = (
        ListenAddress("udp", "127.0.0.1", 5060),
        ListenAddress("tcp", "127.0.0.1", 5060),
        ListenAddress("tls", "127.0.0.1", 5061),
    )
    domain: tuple[str, ...] = ("127.0.0.1", "localhost")
    public_address: str | None = None
    max_message_size: int = 65536
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    user_agent: str = "telebridge"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``[tls]``: our certificate, and how we check others'."""

    certificate: Path | None = None
    private_key: Path | None = None
    verify_peer: bool = False
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class WebConfig:
    """``[web]``: the HTTPS + WSS listener."""

    listen: ListenAddress = ListenAddress("https", "127.0.0.1", 8443)
    dev_tokens: bool = False
    ice_servers: tuple[IceServer, ...] = ()


@dataclass(frozen=True, slots=True)
class IceServer:
    """One ``[[web.ice_servers]]`` entry, handed to browsers as written."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """``[turn]``: a TURN server that shares a secret with us (coturn ``use-auth-secret``)."""

    urls: tuple[str, ...] = ()
    secret: str | None = field(default=None, repr=False)
    ttl: int = 86400


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``[auth]``: how browser tokens are checked."""

    token_secret: str | None = None
    token_public_key: Path | None = None
    token_algorithms: tuple[str, ...] = ("HS256",)
    token_ttl: int = 300


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """``[registrar]``: the embedded registrar."""

    realm: str = "telebridge"
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 600
    nonce_lifetime: int = 300
    # Challenges go out in this order. MD5 alone by default: some phones
    # (baresip 1.0) refuse the whole 401 when one challenge names an
    # algorithm they lack; SHA-256 is an opt-in.
    digest_algorithms: tuple[str, ...] = ("MD5",)


@dataclass(frozen=True, slots=True)
class UserConfig:
    """``[users.NAME]``: a SIP phone allowed to register with digest."""

    password: str
    #: How digits from a browser reach this phone: "rfc4733" events, or "info" (SIP INFO).
    dtmf: str = "rfc4733"


DTMF_MODES = ("rfc4733", "info")


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """``[upstream]``: the PBX telebridge stands in front of (PBX mode)."""

    proxy: ListenAddress
    domain: str
    register_expires: int = 600
    timeout: float = 5.0
    session_expires: int = 1800
    accounts_url: str | None = None
    accounts_secret: str | None = field(default=None, repr=False)
    accounts_cache: float = 300.0
    dtmf: str = "rfc4733"


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """``[accounts.NAME]``: the PBX credentials of browser user NAME (never sent to a browser)."""

    username: str
    password: str = field(repr=False)
    #: Overrides ``[upstream] dtmf`` for this account's calls.
    dtmf: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    state_dir: Path
    sip: SipConfig = field(default_factory=SipConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    users: dict[str, UserConfig] = field(default_factory=dict)
    source: str = "<embedded default>"
    turn: TurnConfig = field(default_factory=TurnConfig)
    media: MediaConfig = field(default_factory=lambda: MediaConfig())
    calls: CallsConfig = field(default_factory=lambda: CallsConfig())
    upstream: UpstreamConfig | None = None
    accounts: dict[str, AccountConfig] = field(default_factory=dict)
    recording: RecordingConfig | None = None


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """``[media]``: the relay's ports and timeouts."""

    address: str = "127.0.0.1"
    port_min: int = 40000
    port_max: int = 49999
    media_timeout: float = 30.0
    latch_window: float = 2.0
    transcoding: bool = True
    inband_dtmf: bool = False
    #: RTP/SAVP with SDES keys toward the SIP side: "never", "tls" (only when the SIP leg is TLS), "always".
    sip_srtp: str = "never"


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """``[recording]``: which calls are recorded (stereo WAV + JSON sidecar) and where."""

    folder: Path
    users: tuple[str, ...] = ()
    header: str = "X-Record"


@dataclass(frozen=True, slots=True)
class CallsConfig:
    """``[calls]``: how long calls may ring and how long a dropped browser is waited for."""

    ring_timeout: float = 60.0
    grace: float = 30.0


def default_state_dir() -> Path:
    """``/var/lib/telebridge`` for root, else the XDG state directory."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/telebridge")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "telebridge"


def default_config() -> Config:
    """The embedded default: registrar on loopback, dev tokens on."""
    return Config(state_dir=default_state_dir(), web=WebConfig(dev_tokens=True))


class _Reader:
    """Reads one table, remembering which keys were used, for error messages."""

    def __init__(self, source: str, table: dict[str, Any], prefix: str, base: Path) -> None:
        self.source = source
        self.table = table
        self.prefix = prefix
        self.base = base
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key(name)}: {problem}")

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        # bool is an int in Python; a port of `true` is still wrong.
        if isinstance(value, bool) and kind is not bool:
            raise self.fail(name, f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(name, f"expected {_kind_name(kind)}, got {type(value).__name__} {value!r}")
        return value

    def number(self, name: str, default: float, minimum: float, maximum: float, integer: bool) -> Any:
        kind: type | tuple[type, ...] = int if integer else (int, float)
        value = self.get(name, kind, default)
        if not minimum <= value <= maximum:
            raise self.fail(name, f"{value!r} is out of range ({minimum} to {maximum})")
        return int(value) if integer else float(value)

    def string_list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(name, list, None)
        if value is None:
            return default
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self.source}: {self.key(name)}[{i}]: expected a string")
        return tuple(value)

    def path(self, name: str) -> Path | None:
        value = self.get(name, str, None)
        if value is None or value == "":
            return None
        path = Path(value)
        return path if path.is_absolute() else self.base / path

    def readable_file(self, name: str) -> Path | None:
        path = self.path(name)
        if path is not None:
            try:
                with path.open("rb"):
                    pass
            except OSError as e:
                raise self.fail(name, f"cannot read {str(path)!r}: {e.strerror}") from None
        return path

    def table_of(self, name: str) -> dict[str, Any]:
        value = self.get(name, dict, {})
        return value  # type: ignore[no-any-return]

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list", dict: "a table"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def parse_listen(text: str, allowed: tuple[str, ...], default_transport: str | None) -> ListenAddress:
    """Parse ``transport:host:port`` (``tcp:[::1]:5060``); raise ValueError."""
    transport = default_transport
    rest = text
    head, sep, tail = text.partition(":")
    if sep and head.lower() in allowed:
        transport, rest = head.lower(), tail
    if transport is None:
        raise ValueError(f"{text!r} needs a transport prefix ({', '.join(allowed)})")
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1 : close + 2] != ":":
            raise ValueError(f"{text!r} is not host:port")
        host, port_text = rest[1:close], rest[close + 2 :]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"{text!r} is not host:port (bracket IPv6 addresses)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} in {text!r} is not an IP address") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} in {text!r} is not 1-65535")
    return ListenAddress(transport, host, int(port_text))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError`."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{source}: cannot read the file: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not valid UTF-8") from None
    return parse_config(raw, source, Path(path).resolve().parent)


def parse_config(raw: dict[str, Any], source: str, base: Path) -> Config:
    """Validate an already-parsed TOML document."""
    top = _Reader(source, raw, "", base)
    state = top.path("state_dir") or default_state_dir()
    sip = _sip(_Reader(source, top.table_of("sip"), "sip.", base))
    tls = _tls(_Reader(source, top.table_of("tls"), "tls.", base))
    web = _web(_Reader(source, top.table_of("web"), "web.", base))
    auth = _auth(_Reader(source, top.table_of("auth"), "auth.", base), web)
    registrar = _registrar(_Reader(source, top.table_of("registrar"), "registrar.", base))
    users = _users(source, top.table_of("users"), base)
    turn = _turn(_Reader(source, top.table_of("turn"), "turn.", base))
    media = _media(_Reader(source, top.table_of("media"), "media.", base))
    calls = _calls(_Reader(source, top.table_of("calls"), "calls.", base))
    upstream = _upstream(_Reader(source, top.table_of("upstream"), "upstream.", base)) if "upstream" in raw else None
    accounts = _accounts(source, top.table_of("accounts"), base)
    recording = _recording(_Reader(source, top.table_of("recording"), "recording.", base), state) if "recording" in raw else None
    if accounts and upstream is None:
        raise ConfigError(f"{source}: accounts: PBX accounts need an [upstream] section")
    top.finish()
    return Config(
        state, sip, tls, web, auth, registrar, users, source,
        turn=turn, media=media, calls=calls, upstream=upstream, accounts=accounts, recording=recording,
    )


def _sip(r: _Reader) -> SipConfig:
    d = SipConfig()
    listen = []
    for i, text in enumerate(r.string_list("listen", ())):
        try:
            listen.append(parse_listen(text, TRANSPORTS, None))
        except ValueError as e:
            raise ConfigError(f"{r.source}: sip.listen[{i}]: {e}") from None
    raw_listen = r.table.get("listen")
    config = SipConfig(
        listen=tuple(listen) if raw_listen is not None else d.listen,
        domain=r.string_list("domain", d.domain),
        public_address=r.get("public_address", str, None),
        max_message_size=r.number("max_message_size", d.max_message_size, 1500, 1 << 20, True),
        t1=r.number("t1", d.t1, 0.01, 60, False),
        t2=r.number("t2", d.t2, 0.01, 600, False),
        t4=r.number("t4", d.t4, 0.01, 600, False),
        user_agent=r.get("user_agent", str, d.user_agent),
    )
    if config.public_address is not None:
        try:
            ipaddress.ip_address(config.public_address)
        except ValueError:
            raise r.fail("public_address", f"{config.public_address!r} is not an IP address") from None
    r.finish()
    return config


def _tls(r: _Reader) -> TlsConfig:
    from telebridge.tls import TlsFileError, check_certificate_files

    cert, key = r.readable_file("certificate"), r.readable_file("private_key")
    if (cert is None) != (key is None):
        raise r.fail("certificate" if cert is None else "private_key", "certificate and private_key go together")
    if cert is not None and key is not None:
        try:
            check_certificate_files(cert, key)
        except TlsFileError as e:
            raise r.fail(e.key, str(e)) from None
    config = TlsConfig(cert, key, r.get("verify_peer", bool, False), r.readable_file("ca_file"))
    r.finish()
    return config


def _web(r: _Reader) -> WebConfig:
    d = WebConfig()
    listen = d.listen
    text = r.get("listen", str, None)
    if text is not None:
        try:
            listen = parse_listen(text, ("https",), "https")
        except ValueError as e:
            raise r.fail("listen", str(e)) from None
    config = WebConfig(listen=listen, dev_tokens=r.get("dev_tokens", bool, False), ice_servers=_ice_servers(r))
    r.finish()
    return config


def ice_url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``url`` is not a STUN/TURN URL (RFC 7064, RFC 7065) of ``schemes``; ``None`` if it is.

    Browsers reject the whole RTCPeerConnection configuration over one bad
    URL, so a bad one must stop start-up rather than reach them.
    """
    match = _ICE_URL.fullmatch(url)
    if match is None:
        return f"{url!r} is not scheme:host[:port][?transport=udp|tcp]"
    scheme, host, port, transport = match.groups()
    if scheme not in schemes:
        return f"{url!r} must start with {' or '.join(s + ':' for s in schemes)}"
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host!r} in {url!r} is not an IPv6 address"
    if port is not None and not 0 < int(port) < 65536:
        return f"port {port!r} in {url!r} is not 1-65535"
    if transport is not None and scheme.startswith("stun"):
        return f"{url!r}: ?transport= belongs to turn: URLs only (RFC 7064)"
    return None


_ICE_URL = re.compile(r"([a-z]+):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::([0-9]{1,5}))?(?:\?transport=(udp|tcp))?")


def _ice_servers(web: _Reader) -> tuple[IceServer, ...]:
    entries = web.get("ice_servers", list, [])
    servers = []
    for i, entry in enumerate(entries):
        prefix = f"web.ice_servers[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{web.source}: {prefix}: expected a table with urls")
        r = _Reader(web.source, entry, prefix + ".", web.base)
        raw_urls = r.get("urls", (str, list), None)
        urls = (raw_urls,) if isinstance(raw_urls, str) else r.string_list("urls", ())
        if not urls:
            raise r.fail("urls", "name at least one stun:, stuns:, turn: or turns: URL")
        username, credential = r.get("username", str, None), r.get("credential", str, None)
        for j, url in enumerate(urls):
            problem = ice_url_problem(url, ("stun", "stuns", "turn", "turns"))
            if problem is None and url.startswith("turn") and (username is None or credential is None):
                problem = f"{url!r} needs username and credential (or use [turn] for TURN REST credentials)"
            if problem is not None:
                raise ConfigError(f"{web.source}: {prefix}.urls[{j}]: {problem}")
        r.finish()
        servers.append(IceServer(urls, username, credential))
    return tuple(servers)


def _turn(r: _Reader) -> TurnConfig:
    d = TurnConfig()
    urls = r.string_list("urls", d.urls)
    for i, url in enumerate(urls):
        problem = ice_url_problem(url, ("turn", "turns"))
        if problem is not None:
            raise ConfigError(f"{r.source}: turn.urls[{i}]: {problem}")
    secret = r.get("secret", str, None) or None
    secret_file = r.readable_file("secret_file")
    if secret_file is not None:
        if secret is not None:
            raise r.fail("secret_file", "set secret or secret_file, not both")
        try:
            secret = secret_file.read_text().strip() or None
        except UnicodeDecodeError:
            raise r.fail("secret_file", f"{str(secret_file)!r} is not UTF-8 text") from None
        if secret is None:
            raise r.fail("secret_file", f"{str(secret_file)!r} is empty")
    if urls and secret is None:
        raise r.fail("secret", "required with turn.urls (coturn's static-auth-secret), or set secret_file")
    if secret is not None and not urls:
        raise r.fail("urls", "name at least one turn: or turns: URL for the secret")
    config = TurnConfig(urls, secret, r.number("ttl", d.ttl, 60, 86400 * 30, True))
    r.finish()
    return config


def _auth(r: _Reader, web: WebConfig) -> AuthConfig:
    secret = r.get("token_secret", str, None) or None
    public_key = r.readable_file("token_public_key")
    default_algorithms = ("HS256",) if secret or public_key is None else ("RS256", "ES256")
    algorithms = r.string_list("token_algorithms", default_algorithms)
    for i, name in enumerate(algorithms):
        if name not in TOKEN_ALGORITHMS:
            raise ConfigError(f"{r.source}: auth.token_algorithms[{i}]: {name!r} is not one of {', '.join(TOKEN_ALGORITHMS)}")
    if secret is not None and len(secret) < 16:
        raise r.fail("token_secret", "use at least 16 characters")
    if public_key is not None:
        from telebridge.web.tokens import TokenError, load_public_key

        try:
            load_public_key(public_key)
        except TokenError as e:
            raise r.fail("token_public_key", str(e)) from None
    if secret is None and public_key is None and not web.dev_tokens:
        raise r.fail("token_secret", "set token_secret or token_public_key (or turn on web.dev_tokens)")
    config = AuthConfig(secret, public_key, algorithms, r.number("token_ttl", 300, 10, 86400 * 30, True))
    r.finish()
    return config


def _registrar(r: _Reader) -> RegistrarConfig:
    d = RegistrarConfig()
    config = RegistrarConfig(
        realm=r.get("realm", str, d.realm),
        min_expires=r.number("min_expires", d.min_expires, 1, 86400, True),
        max_expires=r.number("max_expires", d.max_expires, 1, 86400 * 7, True),
        default_expires=r.number("default_expires", d.default_expires, 1, 86400 * 7, True),
        nonce_lifetime=r.number("nonce_lifetime", d.nonce_lifetime, 5, 86400, True),
        digest_algorithms=r.string_list("digest_algorithms", d.digest_algorithms),
    )
    for i, name in enumerate(config.digest_algorithms):
        if name not in DIGEST_ALGORITHMS:
            raise ConfigError(f"{r.source}: registrar.digest_algorithms[{i}]: {name!r} is not one of {', '.join(DIGEST_ALGORITHMS)}")
    if not config.digest_algorithms:
        raise r.fail("digest_algorithms", "name at least one algorithm")
    if config.min_expires > config.max_expires:
        raise r.fail("min_expires", "is larger than max_expires")
    r.finish()
    return config


def _media(r: _Reader) -> MediaConfig:
    d = MediaConfig()
    address = r.get("address", str, d.address)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise r.fail("address", f"{address!r} is not an IP address") from None
    config = MediaConfig(
        address=address,
        port_min=r.number("port_min", d.port_min, 1024, 65534, True),
        port_max=r.number("port_max", d.port_max, 1025, 65535, True),
        media_timeout=r.number("media_timeout", d.media_timeout, 1, 3600, False),
        latch_window=r.number("latch_window", d.latch_window, 0, 60, False),
        transcoding=r.get("transcoding", bool, d.transcoding),
        inband_dtmf=r.get("inband_dtmf", bool, d.inband_dtmf),
        sip_srtp=r.get("sip_srtp", str, d.sip_srtp),
    )
    if config.sip_srtp not in ("never", "tls", "always"):
        raise r.fail("sip_srtp", f"{config.sip_srtp!r} is not one of never, tls, always")
    if config.port_max - config.port_min < 3:
        raise r.fail("port_max", "leaves fewer than two port pairs above port_min")
    r.finish()
    return config


def _recording(r: _Reader, state_dir: Path) -> RecordingConfig:
    header = r.get("header", str, "X-Record")
    if not header or not all(c.isalnum() or c in "-_." for c in header):
        raise r.fail("header", f"{header!r} is not a SIP header name")
    config = RecordingConfig(
        folder=r.path("folder") or state_dir / "recordings",
        users=tuple(r.string_list("users", ())),
        header=header,
    )
    r.finish()
    return config


def _calls(r: _Reader) -> CallsConfig:
    d = CallsConfig()
    config = CallsConfig(
        ring_timeout=r.number("ring_timeout", d.ring_timeout, 1, 600, False),
        grace=r.number("grace", d.grace, 0, 3600, False),
    )
    r.finish()
    return config


def _user_tables(source: str, table: dict[str, Any], section: str, base: Path) -> Iterator[tuple[str, _Reader]]:
    """Each ``[section.NAME]`` table, NAME checked to be a SIP user name."""
    for name, entry in table.items():
        if not is_token(name):
            raise ConfigError(f"{source}: {section}.{name}: not a valid SIP user name")
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {section}.{name}: expected a table")
        yield name, _Reader(source, entry, f"{section}.{name}.", base)


def _users(source: str, table: dict[str, Any], base: Path) -> dict[str, UserConfig]:
    users = {}
    for name, r in _user_tables(source, table, "users", base):
        password = r.get("password", str, None)
        if not password:
            raise r.fail("password", "required")
        dtmf = _dtmf_mode(r, "rfc4733")
        r.finish()
        users[name] = UserConfig(password, dtmf or "rfc4733")
    return users


def _dtmf_mode(r: _Reader, default: str | None) -> str | None:
    mode = r.get("dtmf", str, default)
    if mode is not None and mode not in DTMF_MODES:
        raise r.fail("dtmf", f"{mode!r} is not one of {', '.join(DTMF_MODES)}")
    return mode


def _upstream(r: _Reader) -> UpstreamConfig:
    text = r.get("proxy", str, None)
    if text is None:
        raise r.fail("proxy", "required: the PBX as transport:address:port (udp:192.0.2.10:5060)")
    try:
        proxy = parse_listen(text, TRANSPORTS, "udp")
    except ValueError as e:
        raise r.fail("proxy", str(e)) from None
    domain = r.get("domain", str, None) or proxy.host
    d = UpstreamConfig(proxy, domain)
    config = UpstreamConfig(
        proxy=proxy,
        domain=domain,
        register_expires=r.number("register_expires", d.register_expires, 60, 86400, True),
        timeout=r.number("timeout", d.timeout, 0.5, 120, False),
        session_expires=r.number("session_expires", d.session_expires, 90, 86400, True),
        accounts_url=r.get("accounts_url", str, None) or None,
        accounts_secret=r.get("accounts_secret", str, None) or None,
        accounts_cache=r.number("accounts_cache", d.accounts_cache, 0, 86400, False),
        dtmf=_dtmf_mode(r, d.dtmf) or d.dtmf,
    )
    if config.accounts_url is not None and not config.accounts_url.startswith(("http://", "https://")):
        raise r.fail("accounts_url", f"{config.accounts_url!r} is not an http:// or https:// URL")
    r.finish()
    return config


def _accounts(source: str, table: dict[str, Any], base: Path) -> dict[str, AccountConfig]:
    accounts = {}
    for name, r in _user_tables(source, table, "accounts", base):
        password = r.get("password", str, None)
        if not password:
            raise r.fail("password", "required (the user's password at the PBX)")
        username = r.get("username", str, name)
        dtmf = _dtmf_mode(r, None)
        r.finish()
        accounts[name] = AccountConfig(username, password, dtmf)
    return accounts
