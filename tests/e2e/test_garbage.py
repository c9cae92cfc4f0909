"""Test whether a flood of garbage frames on the ROUTER is answered with
ERROR or dropped, never with anything else, and the broker then serves
everyone normally."""

import random
import struct
import time

from harness import (Broker, RawDealer, check, decode, encode, listener, send, T,
                     ACK, ERROR, HELLO, WELCOME, JOIN, SAY, PING, BYE, OK)

COST = 8


def _bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def _garbage(rng):
    """One malformed request as a list of frames (random bytes that happen
    to make a valid request, e.g. "ZC" + a BYE header, are drawn again: the
    broker rightly answers those with OK or PONG)."""
    while True:
        frames = _draw(rng)
        try:
            if len(frames) == 2 and frames[0] == b"" and frames[1][:2] == b"ZC":
                decode(frames[1])
            else:
                return frames
        except Exception:
            return frames


def _draw(rng):
    kind = rng.randrange(12)
    if kind == 0:
        return [b"", b""]                                   # empty body
    if kind == 1:
        return [b"", _bytes(rng, 1)]                        # 1 byte
    if kind == 2:
        return [b"", _bytes(rng, rng.randrange(2, 200))]    # random
    if kind == 3:
        return [b"", b"ZC" + _bytes(rng, rng.randrange(0, 60))]  # right signature
    if kind == 4:
        return [_bytes(rng, rng.randrange(1, 50))]          # one frame, no delimiter
    if kind == 5:
        body = encode(JOIN, 1, room="x")
        return [b"", body, body]                            # two bodies
    if kind == 6:
        return [b"", b"", b"", encode(PING, 2)]             # extra delimiters
    if kind == 7:
        t = rng.choice([0, 27, 99, 255, WELCOME, OK, ERROR])
        return [b"", b"ZC" + struct.pack(">BQ", t, 3)]      # unknown or wrong-way type
    if kind == 8:
        body = encode(SAY, 4, room="g", kind=0, text=b"\xc0\xaf\xed\xa0\x80\xff")
        return [b"", body]                                  # invalid UTF-8
    if kind == 9:
        return [b"", encode(SAY, 5, room="g", kind=0, text="before hello")]  # no HELLO
    if kind == 10:
        body = encode(SAY, 6, room="g", kind=0, text="truncated")
        return [b"", body[:-3]]                             # truncated
    return [b"", encode(PING, 7) + b"trailing"]             # trailing bytes


def test_garbage_flood_then_service():
    b = Broker()
    rng = random.Random(0x2A)
    watcher = listener(b, "watcher", ["g"])
    dealers = [RawDealer(b.router) for _ in range(4)]
    #  One of them greets twice, the second greeting on the same routing id
    #  is a re-greeting, not an error.
    d0 = dealers[0]
    d0.hello("greeter")
    m = d0.request(HELLO, version=1, nick="greeter", token="")
    check(m["type"] in (WELCOME, ERROR), "second HELLO answered with %r" % m)
    m = d0.request(HELLO, version=7, nick="greeter2", token="")
    check(m["type"] in (WELCOME, ERROR), "HELLO version 7 answered with %r" % m)
    if m["type"] == ERROR:
        check(m["code"] == 426, "HELLO version 7 should be 426: %r" % m)

    sent = 0
    for i in range(2000):
        d = dealers[i % len(dealers)]
        d.send_frames(_garbage(rng))
        sent += 1
    #  Every answer must be an ERROR (ids 0 or the request's), nothing else.
    replies = 0
    deadline = time.monotonic() + T(5)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.5:
        got = False
        for d in dealers:
            frames = d.recv_frames(0.01)
            if frames is None:
                continue
            got = True
            replies += 1
            check(len(frames) == 2 and frames[0] == b"", "reply with a bad envelope: %r" % frames)
            msg = decode(frames[1])
            check(msg["type"] == ERROR, "garbage was answered with %r" % msg)
            check(msg["code"] in (400, 404, 413, 422, 440, 501),
                  "garbage answered with an unexpected error code: %r" % msg)
        if got:
            quiet_since = time.monotonic()
    check(replies > 0, "no garbage got an ERROR reply (all %d were dropped)" % sent)
    b.check_alive()

    #  Normal service afterwards, for new and existing clients; the raw
    #  dealers themselves can still greet properly.
    send(b, "after", "g", "service after the flood")
    watcher.wait_text("service after the flood")
    d1 = dealers[1]
    d1.hello("rawuser")
    d1.join("g")
    ack = d1.say("g", "raw after flood")
    check(ack["type"] == ACK and ack["seq"] == 2, "raw SAY after the flood: %r" % ack)
    watcher.wait_text("raw after flood")
    check(d1.request(BYE)["type"] == OK, "BYE should be answered OK")
    check([m["text"] for m in watcher.messages()] == ["service after the flood", "raw after flood"],
          "garbage produced room messages: %r" % watcher.messages())
    b.stop()
