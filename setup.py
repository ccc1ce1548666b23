"""Packaging for telebridge, a WebRTC-to-SIP gateway on Twisted."""

from setuptools import find_packages, setup

setup(
    name="telebridge",
    version="0.1.0",
    description="WebRTC-to-SIP gateway: SIP over WebSocket, ICE, DTLS-SRTP, on Twisted",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["telebridge", "telebridge.*"]) + ["twisted.plugins"],
    package_data={"telebridge": ["web/static/*"]},
    install_requires=[
        "Twisted[tls]>=24.7",
        "autobahn>=24.4",
        "pyOpenSSL>=24.0",
        "service-identity>=24.1",
        "cryptography>=42",
        "PyJWT>=2.8",
        # telebridge.media.srtp calls libsrtp through pylibsrtp 1.x's binding
        # (pylibsrtp._binding, Session._srtp) per packet: the major version is pinned.
        "pylibsrtp>=1.0,<2",
        # Transcoding (issue 5): telebridge.media.opus calls Debian's
        # libopus0 through cffi; PCM frames are numpy arrays.
        "cffi>=1.15",
        "numpy>=1.26",
        # G.722 (telebridge.media.g722): libg722 in C, bit-exact with the ITU reference (bench/results/2026-11-25-g7xx-codecs.md).
        "g722>=1.2.8",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6.100",
            # Real WebRTC peers for the media tests (aiortc plays the browser;
            # Playwright drives Debian's chromium, never a downloaded one).
            "aiortc>=1.9",
            "numpy>=1.26",
            "playwright>=1.45",
            # The capacity report's charts (bench/capacity.py; its smoke test runs in CI).
            "matplotlib>=3.7",
        ],
        # The other Opus bindings bench/opus_bindings.py measures ours against.
        "bench": [
            "av>=12",
            "opuslib>=3.0",
            "matplotlib>=3.7",
            # bench/relay.py's profile of where the gateway's time goes (a sampling profiler).
            "py-spy>=0.3",
        ],
    },
    entry_points={"console_scripts": ["telebridge = telebridge.cli:main"]},
)
