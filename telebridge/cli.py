"""The ``telebridge`` command: ``token`` and ``check-config``."""

from __future__ import annotations

import argparse
import sys
import time

from telebridge.config import Config, ConfigError, default_config, load_config
from telebridge.sip.uri import is_token
from telebridge.web.tokens import mint_token, resolve_token_secret


def _config(path: str | None) -> Config:
    return load_config(path) if path else default_config()


def _token(args: argparse.Namespace) -> int:
    if not is_token(args.user):
        print(f"telebridge: {args.user!r} is not a SIP user name", file=sys.stderr)
        return 1
    config = _config(args.config)
    secret = resolve_token_secret(config)
    if secret is None:
        print(
            f"telebridge: {config.source} has no auth.token_secret; tokens for a public key"
            " are minted by the app server that holds the private key",
            file=sys.stderr,
        )
        return 1
    ttl = args.ttl if args.ttl is not None else config.auth.token_ttl
    print(mint_token(args.user, ttl, secret, "HS256", time.time()))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    load_config(args.path)
    print(f"{args.path}: OK")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(prog="telebridge", description="telebridge WebRTC-to-SIP gateway tools")
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print a token letting a browser register as USER")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (default: auth.token_ttl)")
    token.add_argument("--config", help="configuration file (default: the embedded default)")
    token.set_defaults(run=_token)
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path")
    check.set_defaults(run=_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors go to stderr as one line, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as e:
        print(f"telebridge: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"telebridge: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
