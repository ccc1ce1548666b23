"""Load generator for the capacity report (issue 6): see bench/capacity.py.

Two generator processes play the two ends of every call, each on one
event loop with one media socket for all its calls:

* ``browser``: the WebRTC side. SIP over WSS with a token (REGISTER, INVITE,
  ACK, BYE) against telebridge, or the ng control protocol against
  rtpengine; per call an ICE check with USE-CANDIDATE toward the relay's
  candidate, a DTLS handshake and SRTP.
* ``phone``: the SIP side. A UAS registered over UDP with digest that
  answers the gateway's INVITEs with plain RTP (Opus for relayed calls,
  PCMU only for transcoded ones), or plain RTP toward rtpengine.

Both stream 20 ms packets for a fixed window. Each packet carries the
caller's call index and a packet number (in its payload, or, when a
transcoder rewrites the payload, derived from the RTP timestamp); the
sender records when it sent packet k of call i and the receiver when the
kernel received it (SO_TIMESTAMPNS), and the orchestrator joins the two:
loss, one-way added latency and jitter per packet.
"""
