"""Test whether zchat works with a broker on IPv6: a broker bound to
tcp://[::1]:* is reached by a client that names it so, over both sockets
(the DEALER to the ROUTER, and the SUB to the PUB endpoint the greeting
names). libzmq leaves IPv6 off on a socket unless told, and the client
used to fail with "cannot reach broker" here. Skipped where ::1 cannot be
bound (IPv6 disabled)."""

import socket

from harness import Broker, Skip, check, parse_json_lines, send, zchat

COST = 1


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as e:
        raise Skip("IPv6 loopback is not available: %s" % e)


def test_client_reaches_an_ipv6_broker():
    _ipv6_loopback()
    b = Broker(start=False)
    b.start(router="tcp://[::1]:*", pub="tcp://[::1]:*")
    check(b.router.startswith("tcp://[::1]:") and b.pub.startswith("tcp://[::1]:"),
          "broker not on ::1: %s %s" % (b.router, b.pub))
    send(b, "six", "lobby", "hello over six")
    r = zchat(b, "seven", "--listen", "--json", "--history", "1", "--count", "1",
              "--timeout", "10", rooms=["lobby"])
    check(r.rc == 0, "listening over IPv6 failed: %r" % r)
    texts = [e.get("text") for e in parse_json_lines(r.out) if e.get("type") == "message"]
    check(texts == ["hello over six"], "expected the message back, got %r" % texts)
    b.check_alive()
