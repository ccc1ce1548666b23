"""The twistd plugin's options and service maker (kept tiny, like twisted.names.tap)."""

from __future__ import annotations

import sys

from twisted.application.service import IService
from twisted.python import usage

from telebridge.config import ConfigError, default_config, load_config


class Options(usage.Options):
    """``twistd telebridge`` options."""

    optParameters = [
        ["config", "c", None, "TOML configuration file (default: the embedded default)"],
    ]


def makeService(options: Options) -> IService:
    """Load the configuration and build the service tree."""
    from telebridge.service import make_service

    try:
        config = load_config(options["config"]) if options["config"] else default_config()
    except ConfigError as e:
        # One line naming the file and key, not a traceback (issue 2 §3).
        sys.stderr.write(f"telebridge: {e}\n")
        raise SystemExit(1) from None
    return make_service(config)
