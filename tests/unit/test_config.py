"""Configuration validation: every error names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from telebridge.config import ConfigError, ListenAddress, default_config, load_config
from telebridge.tls import ensure_self_signed

REPO = Path(__file__).resolve().parents[2]
BASE = 'state_dir = "state"\n[auth]\ntoken_secret = "0123456789abcdef0123"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_example_config_loads() -> None:
    """etc/telebridge.toml is complete and valid."""
    config = load_config(REPO / "etc/telebridge.toml")
    assert config.sip.listen[0] == ListenAddress("udp", "127.0.0.1", 5060)
    assert "100" in config.users
    assert config.web.dev_tokens is False


def test_embedded_default() -> None:
    """Issue 2 §3: UDP+TCP 5060, TLS 5061, HTTPS 8443 on loopback, dev tokens on."""
    config = default_config()
    assert [l.url for l in config.sip.listen] == [
        "sip:127.0.0.1:5060;transport=udp",
        "sip:127.0.0.1:5060;transport=tcp",
        "sips:127.0.0.1:5061;transport=tls",
    ]
    assert config.web.listen.url == "https://127.0.0.1:8443/"
    assert config.web.dev_tokens is True


def test_minimal_file_gets_defaults_and_dev_tokens_off(tmp_path: Path) -> None:
    """A configured deployment has dev tokens off unless it turns them on."""
    config = load_config(write(tmp_path, BASE))
    assert config.web.dev_tokens is False
    assert config.state_dir == tmp_path / "state"
    assert config.registrar.digest_algorithms == ("MD5",)


@pytest.mark.parametrize(
    "text,key",
    [
        (BASE + "bogus = 1\n", "bogus: unknown key"),
        (BASE + "[sip]\nlisten_on = []\n", "sip.listen_on: unknown key"),
        (BASE + "[sip]\nt1 = 'fast'\n", "sip.t1: expected"),
        (BASE + "[sip]\nt1 = true\n", "sip.t1: expected"),
        (BASE + "[sip]\nt1 = -1\n", "sip.t1: -1 is out of range"),
        (BASE + "[sip]\nlisten = ['udp:300.1.1.1:5060']\n", "sip.listen[0]: '300.1.1.1'"),
        (BASE + "[sip]\nlisten = ['udp:127.0.0.1:5060', 'tcp:127.0.0.1:70000']\n", "sip.listen[1]: port '70000'"),
        (BASE + "[sip]\nlisten = ['sctp:127.0.0.1:5060']\n", "sip.listen[0]:"),
        (BASE + "[sip]\nlisten = ['tcp:::1:5060']\n", "sip.listen[0]:"),
        (BASE + "[sip]\nlisten = ['tcp:example.com:5060']\n", "sip.listen[0]: 'example.com'"),
        (BASE + "[sip]\nlisten = [5060]\n", "sip.listen[0]: expected a string"),
        (BASE + "[sip]\npublic_address = 'nat.example'\n", "sip.public_address:"),
        (BASE + "[web]\nlisten = '127.0.0.1'\n", "web.listen:"),
        (BASE + "[tls]\ncertificate = 'missing.pem'\nprivate_key = 'missing.pem'\n", "tls.certificate: cannot read"),
        (BASE + "[registrar]\nmin_expires = 100\nmax_expires = 50\n", "registrar.min_expires:"),
        (BASE + "[registrar]\ndigest_algorithms = ['SHA-1']\n", "registrar.digest_algorithms[0]:"),
        (BASE + "[users.bob]\n", "users.bob.password: required"),
        (BASE + "[users.bob]\npassword = 'x'\nextra = 1\n", "users.bob.extra: unknown key"),
        (BASE + "[users.'bad name']\npassword = 'x'\n", "users.bad name:"),
        ('[auth]\ntoken_secret = "short"\n', "auth.token_secret: use at least 16"),
        ('[auth]\ntoken_algorithms = ["none"]\ntoken_secret = "0123456789abcdef0"\n', "auth.token_algorithms[0]:"),
        ("[web]\ndev_tokens = false\n", "auth.token_secret: set token_secret"),
        ("[sip\n", "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    """Issue 2 §3: one message naming the key (and the file)."""
    assert key in error_of(tmp_path, text)


def test_unreadable_or_mismatched_certificate(tmp_path: Path) -> None:
    """A certificate that is not PEM, or a key that does not match, stops start-up."""
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    message = error_of(tmp_path, BASE + "[tls]\ncertificate = 'cert.pem'\nprivate_key = 'key.pem'\n")
    assert "tls.certificate:" in message
    cert_a, _ = ensure_self_signed(tmp_path / "a")
    _, key_b = ensure_self_signed(tmp_path / "b")
    message = error_of(tmp_path, BASE + f"[tls]\ncertificate = '{cert_a}'\nprivate_key = '{key_b}'\n")
    assert "tls.private_key: does not match" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """An unreadable file is reported, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.toml")


def test_self_signed_certificate_is_made_once_with_a_private_key_file(tmp_path: Path) -> None:
    """Issue 2 §3: created on first start in the state directory, reused after."""
    cert, key = ensure_self_signed(tmp_path)
    first = cert.read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600
    assert ensure_self_signed(tmp_path) == (cert, key)
    assert cert.read_bytes() == first


@pytest.mark.parametrize(
    "text,key",
    [
        (BASE + "[turn]\nurls = ['stun:127.0.0.1']\nsecret = 's'\n", "turn.urls[0]: 'stun:127.0.0.1' must start with turn: or turns:"),
        (BASE + "[turn]\nurls = ['turn:127.0.0.1:0']\nsecret = 's'\n", "turn.urls[0]: port '0'"),
        (BASE + "[turn]\nurls = ['turn:[1:2:3]:3478']\nsecret = 's'\n", "turn.urls[0]: '[1:2:3]' in 'turn:[1:2:3]:3478' is not an IPv6"),
        (BASE + "[turn]\nurls = ['turn:a b']\nsecret = 's'\n", "turn.urls[0]: 'turn:a b' is not"),
        (BASE + "[turn]\nurls = ['turn:h?transport=sctp']\nsecret = 's'\n", "turn.urls[0]:"),
        (BASE + "[turn]\nurls = ['turn:h']\n", "turn.secret: required with turn.urls"),
        (BASE + "[turn]\nsecret = 's'\n", "turn.urls: name at least one"),
        (BASE + "[turn]\nurls = ['turn:h']\nsecret = 's'\nttl = 10\n", "turn.ttl: 10 is out of range"),
        (BASE + "[turn]\nurls = ['turn:h']\nsecret_file = 'missing'\n", "turn.secret_file: cannot read"),
        (BASE + "[turn]\nurls = ['turn:h']\nsecret = 's'\nsecret_file = 't.toml'\n", "turn.secret_file: set secret or secret_file"),
        (BASE + "[turn]\nurls = 'turn:h'\nsecret = 's'\n", "turn.urls: expected a list"),
        (BASE + "[turn]\nurl = ['turn:h']\n", "turn.url: unknown key"),
        (BASE + "[web]\nice_servers = ['stun:h']\n", "web.ice_servers[0]: expected a table"),
        (BASE + "[web]\nice_servers = [{urls = []}]\n", "web.ice_servers[0].urls: name at least one"),
        (BASE + "[web]\nice_servers = [{urls = 'stun:h'}, {urls = ['stun:h', 'http://h']}]\n", "web.ice_servers[1].urls[1]:"),
        (BASE + "[web]\nice_servers = [{urls = 'turn:h'}]\n", "web.ice_servers[0].urls[0]: 'turn:h' needs username and credential"),
        (BASE + "[web]\nice_servers = [{urls = 'stun:h?transport=udp'}]\n", "web.ice_servers[0].urls[0]:"),
        (BASE + "[web]\nice_servers = [{urls = 'stun:h', password = 'x'}]\n", "web.ice_servers[0].password: unknown key"),
    ],
)
def test_turn_and_ice_server_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    """[turn] and [web] ice_servers: a bad URL or a missing secret is named down to the list index."""
    assert key in error_of(tmp_path, text)


def test_turn_secret_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    """secret_file keeps the coturn secret out of the config; surrounding whitespace is not part of it."""
    (tmp_path / "turn-secret").write_text("  shared-with-coturn\n")
    config = load_config(write(tmp_path, BASE + "[turn]\nurls = ['turns:[::1]:5349?transport=tcp']\nsecret_file = 'turn-secret'\n"))
    assert config.turn.secret == "shared-with-coturn"
    assert config.turn.urls == ("turns:[::1]:5349?transport=tcp",)
    assert config.turn.ttl == 86400
    assert "shared-with-coturn" not in repr(config)


def test_static_ice_servers_accept_one_url_or_a_list(tmp_path: Path) -> None:
    """An RTCIceServer's urls is a string or a list; both become a tuple."""
    config = load_config(
        write(
            tmp_path,
            BASE + "[web]\nice_servers = [{urls = 'stun:stun.example.org:3478'},"
            " {urls = ['turn:192.0.2.1?transport=tcp'], username = 'u', credential = 'c'}]\n",
        )
    )
    first, second = config.web.ice_servers
    assert first.urls == ("stun:stun.example.org:3478",) and first.username is None
    assert second.urls == ("turn:192.0.2.1?transport=tcp",) and (second.username, second.credential) == ("u", "c")
    assert default_config().turn.urls == () and default_config().web.ice_servers == ()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE + "[upstream]\ndomain = 'pbx'\n", "upstream.proxy: required"),
        (BASE + "[upstream]\nproxy = 'sctp:1.2.3.4:5060'\n", "upstream.proxy:"),
        (BASE + "[upstream]\nproxy = 'pbx.example.com:5060'\n", "upstream.proxy: 'pbx.example.com' in"),
        (BASE + "[upstream]\nproxy = 'udp:1.2.3.4:5060'\ntimeout = 0\n", "upstream.timeout: 0 is out of range"),
        (BASE + "[upstream]\nproxy = 'udp:1.2.3.4:5060'\nregister_expires = 10\n", "upstream.register_expires: 10 is out"),
        (BASE + "[upstream]\nproxy = 'udp:1.2.3.4:5060'\nregistrar = 'x'\n", "upstream.registrar: unknown key"),
        (BASE + "[accounts.alice]\npassword = 'p'\n", "accounts: PBX accounts need an [upstream] section"),
        (BASE + "[upstream]\nproxy = 'udp:1.2.3.4:5060'\n[accounts.alice]\nusername = '1001'\n", "accounts.alice.password: required"),
        (BASE + "[upstream]\nproxy = 'udp:1.2.3.4:5060'\n[accounts.'a b']\npassword = 'p'\n", "accounts.a b: not a valid SIP user"),
    ],
)
def test_pbx_mode_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    assert key in error_of(tmp_path, text)


def test_pbx_mode_defaults_and_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    """[upstream] defaults (domain from the proxy, UDP when no transport) and [accounts] usernames."""
    config = load_config(write(tmp_path, BASE + "[upstream]\nproxy = '192.0.2.10:5080'\n[accounts.alice]\npassword = 'pbx-pw'\n"))
    assert config.upstream is not None
    assert config.upstream.proxy == ListenAddress("udp", "192.0.2.10", 5080)
    assert (config.upstream.domain, config.upstream.register_expires, config.upstream.timeout) == ("192.0.2.10", 600, 5.0)
    assert config.accounts["alice"].username == "alice"
    assert "pbx-pw" not in repr(config)
    assert load_config(write(tmp_path, BASE)).upstream is None


def test_recording_is_off_unless_configured_and_defaults_under_the_state_dir(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, BASE)).recording is None
    config = load_config(write(tmp_path, BASE + '[recording]\nusers = ["alice", "*"]\n'))
    assert config.recording is not None
    assert config.recording.folder == tmp_path / "state" / "recordings"
    assert config.recording.users == ("alice", "*") and config.recording.header == "X-Record"


def test_transcoding_can_be_switched_off(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, BASE)).media.transcoding is True
    assert load_config(write(tmp_path, BASE + "[media]\ntranscoding = false\n")).media.transcoding is False
    assert "media.transcoding" in error_of(tmp_path, BASE + '[media]\ntranscoding = "yes"\n')


@pytest.mark.parametrize("text", ['header = "X Record"', 'users = [1]', 'header = ""', 'colour = "red"'])
def test_bad_recording_settings_are_named(tmp_path: Path, text: str) -> None:
    assert "recording." in error_of(tmp_path, BASE + f"[recording]\n{text}\n")


def test_dtmf_modes_for_phones_the_pbx_and_accounts(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE + '[users.100]\npassword = "p"\ndtmf = "info"\n[users.101]\npassword = "q"\n'))
    assert config.users["100"].dtmf == "info" and config.users["101"].dtmf == "rfc4733"
    pbx = BASE + '[upstream]\nproxy = "udp:127.0.0.1:5080"\ndtmf = "info"\n[accounts.alice]\npassword = "x"\ndtmf = "rfc4733"\n[accounts.bob]\npassword = "y"\n'
    config = load_config(write(tmp_path, pbx))
    assert config.upstream is not None and config.upstream.dtmf == "info"
    assert config.accounts["alice"].dtmf == "rfc4733" and config.accounts["bob"].dtmf is None
    assert "users.100.dtmf" in error_of(tmp_path, BASE + '[users.100]\npassword = "p"\ndtmf = "inband"\n')


def test_sip_srtp_modes(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, BASE)).media.sip_srtp == "never"
    assert load_config(write(tmp_path, BASE + '[media]\nsip_srtp = "tls"\n')).media.sip_srtp == "tls"
    assert "media.sip_srtp" in error_of(tmp_path, BASE + '[media]\nsip_srtp = "dtls"\n')
