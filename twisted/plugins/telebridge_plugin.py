"""twistd entry point: ``twistd -n telebridge [--config PATH]``."""

from twisted.application.service import ServiceMaker

# A ServiceMaker names its module as a string, so scanning plugins stays
# cheap: telebridge itself is imported only when this plugin is used.
telebridge = ServiceMaker(
    "telebridge",
    "telebridge.tap",
    "WebRTC-to-SIP gateway (SIP over WebSocket, ICE, DTLS-SRTP)",
    "telebridge",
)
