"""Test whether a client's join probes go to it alone (protocol version 5,
tagged probes): a raw SUB on a room's topic sees no PROBE while libzchat
clients (zchat --json, zchat --listen) join that room to receive, and each
still reports its join live; a raw version 4 session's PROBE, with a second
string or without, and a version 5 session's untagged one still come on
the room's topic; a version 5 session's tagged PROBE comes on 0xFF + tag
only; a tag over 32 bytes is malformed; and libzchat joins a version 5
broker that echoes its probes on the tag's topic (the Python stand-in)."""

import threading
import time

from harness import (Broker, DecodeError, FakeBroker, RawDealer, RawSub, check, decode,
                     encode, json_client, listener, run, wait_sub_live, zchat_argv, T,
                     ERROR, EVENT, MESSAGE, OK, PROBE, PROBE_TOPIC)

COST = 4


def _probes(sub):
    return [m for m in sub.decoded() if m["type"] == PROBE]


def _wait_probe(sub, nick, what):
    """Wait until sub has a PROBE of nick (PUB keeps each subscriber's
    order: all that was published to it before is in by then)."""
    def is_it(frames):
        try:
            m = decode(frames[1], pub=True)
        except DecodeError:
            return False
        return m["type"] == PROBE and m["nick"] == nick
    sub.wait_for(is_it, T(5), what)


def test_joins_probe_privately():
    b = Broker()
    room_sub = RawSub(b.pub, topics=[b"hall:"])
    #  Live once a version 1 session's probe, on the room's topic, is in
    wait_sub_live(room_sub, b, "hall", "old1")

    joiners = ["alice", "bob", "carol"]
    clients = [json_client(b, nick, ["hall"]) for nick in joiners]
    ear = listener(b, "dave", ["hall"])
    joiners.append("dave")

    #  A version 4 session probes last, with a second string that meant
    #  nothing before version 5 and still does not: on the room's topic
    old = RawDealer(b.router)
    check(old.hello("old4", version=4)["version"] == 4, "WELCOME version 4")
    old.join("hall")
    check(old.request(PROBE, room="hall", tag="notatag")["type"] == OK,
          "a version 4 PROBE with a second string should be answered OK")
    _wait_probe(room_sub, "old4", "the version 4 session's probe on the room's topic")

    nicks = {m["nick"] for m in _probes(room_sub)}
    check(nicks == {"old1", "old4"},
          "the room's topic carried probes of %r; libzchat joiners should probe on "
          "their own tag's topic" % sorted(nicks - {"old1", "old4"}))
    #  The SUB was listening all along: it has every joiner's join event
    joined = {m["nick"] for m in room_sub.decoded()
              if m["type"] == EVENT and m["event"] == 1}
    check(set(joiners) <= joined, "join events on the room's topic: %r" % sorted(joined))

    #  And the joins went live: messages reach every joiner
    clients[0].write({"cmd": "say", "room": "hall", "text": "all here?", "id": "s1"})
    for c in clients + [ear]:
        c.wait_text("all here?")


def test_tagged_probe_reaches_its_tag_only():
    b = Broker()
    room_sub = RawSub(b.pub, topics=[b"hall:"])
    old = wait_sub_live(room_sub, b, "hall", "old1")
    tag_sub = RawSub(b.pub, topics=[PROBE_TOPIC + b"t0k"])
    new = RawDealer(b.router)
    check(new.hello("new5", version=5)["version"] == 5, "WELCOME version 5")
    new.join("hall")

    #  Probe with the tag until it comes back on the tag's topic
    deadline = time.monotonic() + T(10)
    while not _probes(tag_sub):
        check(new.request(PROBE, room="hall", tag="t0k")["type"] == OK,
              "a tagged PROBE should be answered OK")
        tag_sub.drain(0.1)
        check(time.monotonic() < deadline, "the tagged PROBE never came back on its tag's topic")
    m = _probes(tag_sub)[0]
    check(m["room"] == "hall" and m["nick"] == "new5" and m["tag"] == "t0k" and m["id"] == 0,
          "tagged PROBE on PUB: %r" % m)
    #  A tag over 32 bytes is malformed; one of 32 is taken
    m = new.request(PROBE, room="hall", tag="t" * 33)
    check(m["type"] == ERROR and m["code"] == 400, "a 33-byte tag should be 400: %r" % m)
    check(new.request(PROBE, room="hall", tag="t" * 32)["type"] == OK, "a 32-byte tag")
    #  Not a member: 404, tag or not
    m = new.request(PROBE, room="elsewhere", tag="t0k")
    check(m["type"] == ERROR and m["code"] == 404, "a non-member's tagged PROBE: %r" % m)

    #  None of it reached the room: a later probe of old1 there is the proof
    check(old.request(PROBE, room="hall")["type"] == OK, "PROBE")
    room_sub.drain(0.2)
    _wait_probe(room_sub, "old1", "old1's probe")
    check("new5" not in {m["nick"] for m in _probes(room_sub)},
          "a tagged PROBE was published on the room's topic: %r" % _probes(room_sub))

    #  An untagged PROBE of a version 5 session goes to the room, as before
    check(new.request(PROBE, room="hall")["type"] == OK, "untagged PROBE")
    _wait_probe(room_sub, "new5", "the untagged probe on the room's topic")


def test_libzchat_probes_a_version_5_stand_in_with_a_tag():
    fake = FakeBroker(version=5)
    holder = {}

    def listen():
        holder["r"] = run(zchat_argv(fake.endpoint, "watcher", ["ops"],
                                     ["--listen", "--json", "--count", "1",
                                      "--timeout", str(T(15))]),
                          timeout=T(25), name="zchat-listen-v5")

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    check(fake.live.wait(T(10)), "the client's join never went live")
    fake.publish("ops", encode(MESSAGE, 0, room="ops", seq=1, ts=1, nick="bob", kind=0,
                               text="through"))
    t.join(T(25))
    fake.check_ok()
    check("r" in holder, "the listener did not finish")
    r = holder["r"]
    check(r.rc == 0, "zchat --listen against a version 5 stand-in: %r" % r)
    events = r.events()
    check([e.get("type") for e in events if e.get("type") in ("joined", "message")]
          == ["joined", "message"], "events: %r" % events)
    tags = {p.get("tag") for p in fake.probes}
    check(len(tags) == 1 and None not in tags and len(tags.pop()) == 16,
          "libzchat's probes of one join should all carry one 16-digit tag: %r" % fake.probes)
