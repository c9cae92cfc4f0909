"""Test whether the broker holds the limits an independent review asked for
(broker hardening), against the real binary with its default options: a
session's rooms are capped and its goodbye is quick, one connection cannot
make unlimited sessions with made-up relay hops, expensive queries are
budgeted and a peer that never reads cannot park unbounded memory, the
PUB high-water mark cannot be unlimited, nicks per key are capped and an
operator can release one, a removed key loses its session on SIGHUP, and
a SIGHUP right after start does no harm."""

import time

from harness import (Broker, RawDealer, check, encode, raw_session, T,
                     ERROR, JOIN, JOINED, OK, WELCOME, HELLO, BYE, PING, PONG)

COST = 20


def test_rooms_per_session_default():
    """By default a session may join 100 rooms; the 101st is 452, and a
    goodbye from a full session is answered at once."""
    b = Broker()
    d = raw_session(b, "roamer")
    for i in range(100):
        d.send(encode(JOIN, 1000 + i, room="r%d" % i))
    joined = 0
    while joined < 100:
        m = d.recv(T(5))
        check(m is not None, "only %d of 100 JOINs answered" % joined)
        check(m["type"] == JOINED, "JOIN %d of 100 refused: %r" % (joined + 1, m))
        joined += 1
    m = d.request(JOIN, room="one-too-many")
    check(m["type"] == ERROR and m["code"] == 452,
          "the 101st room should be refused with 452 by default: %r" % m)
    t0 = time.monotonic()
    m = d.request(BYE)
    check(m["type"] == OK, "BYE from a session in 100 rooms: %r" % m)
    check(time.monotonic() - t0 < T(2), "BYE took %.2fs" % (time.monotonic() - t0))
