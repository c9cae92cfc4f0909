"""Test whether the broker speaks proto/PROTOCOL.md as written, checked with
an independent Python codec over raw sockets: the greeting's fields, version
negotiation, join/probe/message/event on PUB with exact topic frames, PONG
with each room's newest seq, DM as DELIVER, session takeover with the token,
re-greeting, and BYE."""

import time

from harness import (Broker, RawDealer, RawSub, TestFailure, check, decode, encode,
                     raw_session, T, ACK, ACKRUNS, ACKS, DELIVER, ERROR, EVENT, HELLO, MEMBERS,
                     MESSAGE, MESSAGES, OK, PING, PONG, PROBE, SAY, SAYS, TOPIC, TOPICIS,
                     WELCOME, WHO, DM)


def test_welcome_and_version():
    b = Broker("--session-timeout", "4.5", "--max-text", "2000")
    d = RawDealer(b.router)
    m = d.hello("greeter")
    check(m["version"] == 1 and m["nick"] == "greeter" and m["resumed"] == 0,
          "WELCOME fields: %r" % m)
    check(m["pub_port"] == b.pub_port, "WELCOME pub_port %d, broker PUB is %s"
          % (m["pub_port"], b.pub))
    check(m["endpoint"] == b.pub, "WELCOME endpoint %r, broker PUB is %r" % (m["endpoint"], b.pub))
    check(m["timeout_ms"] == 4500 and m["heartbeat_ms"] == 1500,
          "session timeout 4.5 s should give timeout_ms 4500, heartbeat_ms 1500: %r" % m)
    check(m["max_text"] == 2000, "WELCOME max_text: %r" % m)
    check(len(m["token"]) == 32 and all(c in "0123456789abcdef" for c in m["token"].lower()),
          "the token should be 32 hex digits: %r" % m["token"])
    #  Versions: 0 is below what the broker speaks (426 naming 1 to 6);
    #  a client announcing a newer version than 6 gets 6, the newest both speak
    e = RawDealer(b.router)
    m = e.request(HELLO, version=0, nick="future", token="")
    check(m["type"] == ERROR and m["code"] == 426
          and m["reason"] == "supported versions: 1 2 3 4 5 6",
          "HELLO version 0 should be 426 naming versions 1 to 6: %r" % m)
    m = e.request(HELLO, version=9, nick="future", token="")
    check(m["type"] == WELCOME and m["version"] == 6,
          "HELLO version 9 should be WELCOME version 6: %r" % m)
    #  A refused HELLO leaves the peer's existing session as it was.
    m = d.request(HELLO, version=0, nick="greeter", token="")
    check(m["type"] == ERROR and m["code"] == 426, "re-greeting with version 0: %r" % m)
    m = d.request(PING)
    check(m["type"] == PONG, "a re-greeting refused with 426 ended the session: %r" % m)
    m = d.request(HELLO, version=1, nick="future", token="")
    check(m["type"] == ERROR and m["code"] == 409, "re-greeting as a live nick: %r" % m)
    m = d.request(PING)
    check(m["type"] == PONG, "a re-greeting refused with 409 ended the session "
          "(PROTOCOL 6.1: it must leave it untouched): %r" % m)


def test_room_traffic_on_pub():
    b = Broker()
    sub = RawSub(b.pub, topics=[b"hall:"])
    alice = raw_session(b, "alice")
    joined = alice.join("hall")
    check(joined["seq"] == 0 and joined["first_seq"] == 0 and joined["members"] == 1
          and joined["topic"] == "", "JOINED of a new room: %r" % joined)
    #  Probe until our own probe comes back: the SUB is live.
    deadline = time.monotonic() + T(10)
    while True:
        check(alice.request(PROBE, room="hall")["type"] == OK, "PROBE should be answered OK")
        sub.drain(0.1)
        probes = [m for m in sub.decoded() if m["type"] == PROBE]
        if probes:
            check(probes[0]["room"] == "hall" and probes[0]["nick"] == "alice",
                  "PROBE on PUB: %r" % probes[0])
            break
        check(time.monotonic() < deadline, "our PROBE never came back on PUB")

    bob = raw_session(b, "bob")
    j = bob.join("hall")
    check(j["members"] == 2, "JOINED members after a second join: %r" % j)
    again = bob.join("hall")
    check(again["members"] == 2, "joining twice is JOINED again: %r" % again)
    a1 = alice.say("hall", "first")
    a2 = alice.say("hall", "/me waves", kind=1)
    check(a1["type"] == ACK and a1["seq"] == 1 and a2["seq"] == 2, "ACKs: %r %r" % (a1, a2))
    t = bob.request(TOPIC, room="hall", set=1, topic="the topic")
    check(t["type"] == TOPICIS and t["topic"] == "the topic" and t["nick"] == "bob",
          "TOPICIS: %r" % t)
    w = bob.request(WHO, room="hall")
    check(w["type"] == MEMBERS and sorted(i["nick"] for i in w["items"]) == ["alice", "bob"],
          "MEMBERS: %r" % w)
    #  PONG: the newest seq of each of our rooms.
    p = alice.request(PING)
    check(p["type"] == PONG and p["items"] == [{"room": "hall", "seq": 2}],
          "PONG should carry hall's newest seq 2: %r" % p)
    check(bob.bye()["type"] == OK, "BYE should be OK")
    sub.wait_for(lambda f: f[0] == b"hall:" and decode(f[1], pub=True)["type"] == EVENT
                 and decode(f[1], pub=True)["event"] == 3, T(5), "bob's quit event")

    msgs = [m for m in sub.decoded() if m["type"] == MESSAGE]
    check([(m["seq"], m["nick"], m["kind"], m["text"]) for m in msgs]
          == [(1, "alice", 0, "first"), (2, "alice", 1, "/me waves")],
          "MESSAGEs on PUB: %r" % msgs)
    check(msgs[0]["ts"] == a1["ts"], "MESSAGE ts should equal the ACK's: %r %r" % (msgs[0], a1))
    #  (alice's own join may have preceded the subscription: bob's only)
    events = [(m["event"], m["nick"], m["detail"]) for m in sub.decoded()
              if m["type"] == EVENT and m["nick"] == "bob"]
    check(events == [(1, "bob", ""), (5, "bob", "the topic"), (3, "bob", "")],
          "EVENTs on PUB (join, topic, quit): %r" % events)


def test_dm_and_takeover():
    b = Broker()
    alice = raw_session(b, "alice", ["hall"])
    bob = raw_session(b, "bob", ["hall"])
    m = alice.request(DM, nick="bob", kind=0, text="psst")
    check(m["type"] == ACK and m["room"] == "" and m["seq"] == 0, "DM ACK: %r" % m)
    f = bob.recv(T(5))
    check(f is not None and f["type"] == DELIVER and f["nick"] == "alice" and f["text"] == "psst"
          and f["id"] == 0, "DELIVER: %r" % f)
    m = alice.request(DM, nick="nobody", kind=0, text="x")
    check(m["type"] == ERROR and m["code"] == 405, "DM to nobody: %r" % m)

    #  bob's connection breaks; a new DEALER with his token takes over.
    token = bob.token
    bob.close()
    bob2 = RawDealer(b.router)
    m = bob2.request(HELLO, version=1, nick="bob", token="wrong" * 4)
    check(m["type"] == ERROR and m["code"] == 409, "a wrong token must not take over: %r" % m)
    m = bob2.request(HELLO, version=1, nick="bob", token=token)
    check(m["type"] == WELCOME and m["resumed"] == 1 and m["token"] == token,
          "takeover with the token (which it keeps): %r" % m)
    p = bob2.request(PING)
    check(p["type"] == PONG and [i["room"] for i in p["items"]] == ["hall"],
          "the resumed session keeps its rooms: %r" % p)
    a = alice.request(DM, nick="bob", kind=0, text="again")
    check(a["type"] == ACK, "DM to the resumed session: %r" % a)
    f = bob2.recv(T(5))
    check(f is not None and f["type"] == DELIVER and f["text"] == "again",
          "DELIVER goes to the new routing id: %r" % f)

    #  A re-greeting on the same routing id ends the old session first.
    m = bob2.request(HELLO, version=1, nick="robert", token="")
    check(m["type"] == WELCOME and m["nick"] == "robert" and m["resumed"] == 0,
          "re-greeting: %r" % m)
    w = alice.request(WHO, room="hall")
    check([i["nick"] for i in w["items"]] == ["alice"], "after re-greeting, hall: %r" % w)
    check(alice.bye()["type"] == OK, "BYE")
    m = alice.request(PING)
    check(m["type"] == ERROR and m["code"] == 440, "PING after BYE: %r" % m)
    d = RawDealer(b.router)
    check(d.hello("alice")["type"] == WELCOME, "after BYE the nick is free at once")


def _probe_until_live(dealer, sub, room):
    """PROBE room from dealer until a probe comes back on sub: from then on
    sub receives everything published in room."""
    deadline = time.monotonic() + T(10)
    while not [m for m in sub.decoded() if m["type"] == PROBE]:
        check(dealer.request(PROBE, room=room)["type"] == OK, "PROBE should be answered OK")
        sub.drain(0.1)
        check(time.monotonic() < deadline, "our PROBE never came back on PUB")


def test_batches():
    """Version 2: SAYs that reach the broker together are acknowledged with
    one ACKS per sender and published as MESSAGES; a version 1 sender in
    the same burst still gets one ACK per SAY; a version 4 sender gets
    ACKRUNS, runs of consecutive ids with consecutive seqs. Every id and
    every seq is accounted for exactly once, in order."""
    #  Without the fair share: the version 4 sender's SAYS of 50 may be
    #  read ahead of the others' single SAYs (a busy machine), which is
    #  more than twice theirs past the floor, and its SAYs refused with 429
    b = Broker("--fair-share", "0")
    sub = RawSub(b.pub, topics=[b"hall:"])
    v2 = RawDealer(b.router)
    check(v2.hello("newer", version=2)["version"] == 2, "WELCOME version 2")
    v1 = RawDealer(b.router)
    check(v1.hello("older", version=1)["version"] == 1, "WELCOME version 1")
    v4 = RawDealer(b.router)
    check(v4.hello("newest", version=4)["version"] == 4, "WELCOME version 4")
    v2.join("hall")
    v1.join("hall")
    v4.join("hall")
    _probe_until_live(v2, sub, "hall")

    #  Bursts without waiting, so that they share groups; the version 4
    #  sender's in SAYS of 50, so that its runs are long
    count = 300
    for i in range(count):
        v2.send(encode(SAY, 1000 + i, room="hall", kind=0, text="n%d" % i))
        v1.send(encode(SAY, 5000 + i, room="hall", kind=0, text="o%d" % i))
        if i % 50 == 49:
            v4.send(encode(SAYS, 0, items=[{"id": 9000 + j, "room": "hall", "kind": 0,
                                            "text": "r%d" % j}
                                           for j in range(i - 49, i + 1)]))

    def collect(dealer, want):
        got, frames = [], []
        deadline = time.monotonic() + T(10)
        while len(got) < want:
            check(time.monotonic() < deadline, "only %d of %d acknowledged" % (len(got), want))
            m = dealer.recv(timeout=T(5))
            frames.append(m["type"])
            if m["type"] == ACK:
                got.append((m["id"], m["seq"]))
            elif m["type"] == ACKS:
                check(len(m["items"]) >= 2, "an ACKS of fewer than two: %r" % m)
                got += [(i["id"], i["seq"]) for i in m["items"]]
            elif m["type"] == ACKRUNS:
                runs = m["items"]
                check(sum(r["count"] for r in runs) >= 2, "an ACKRUNS of one ACK: %r" % m)
                for r in runs:
                    check(r["count"] >= 1 and r["room"] == "hall", "a run: %r" % r)
                    got += [(r["id"] + k, r["seq"] + k) for k in range(r["count"])]
            else:
                raise TestFailure("expected ACK, ACKS or ACKRUNS, got %r" % m)
        return got, frames

    new_acks, new_frames = collect(v2, count)
    old_acks, old_frames = collect(v1, count)
    run_acks, run_frames = collect(v4, count)
    check([i for i, _ in run_acks] == list(range(9000, 9000 + count)),
          "version 4 acknowledgements out of order or missing")
    check(ACKRUNS in run_frames and ACKS not in run_frames and len(run_frames) < count,
          "a version 4 sender's SAYS were acknowledged in frames %r" % run_frames)
    check(ACKRUNS not in new_frames + old_frames, "an older sender got ACKRUNS")
    check([i for i, _ in new_acks] == list(range(1000, 1000 + count)),
          "version 2 acknowledgements out of order or missing")
    check([i for i, _ in old_acks] == list(range(5000, 5000 + count)),
          "version 1 acknowledgements out of order or missing")
    check(set(old_frames) == {ACK}, "a version 1 sender got a batch: %r" % set(old_frames))
    check(ACKS in new_frames and len(new_frames) < count,
          "%d SAYs sent together were acknowledged in %d frames, never batched"
          % (count, len(new_frames)))
    seqs = sorted(s for _, s in new_acks + old_acks + run_acks)
    check(seqs == list(range(1, 3 * count + 1)), "seqs are not 1..%d" % (3 * count))

    #  PUB: every seq once, in order, text matching its sender's ACK
    by_seq = {s: "n%d" % (i - 1000) for i, s in new_acks}
    by_seq.update({s: "o%d" % (i - 5000) for i, s in old_acks})
    by_seq.update({s: "r%d" % (i - 9000) for i, s in run_acks})
    seen, batches = [], 0
    deadline = time.monotonic() + T(10)
    while len(seen) < 3 * count:
        check(time.monotonic() < deadline, "only %d of %d published" % (len(seen), 3 * count))
        sub.drain(0.2)
        seen, batches = [], 0
        for m in sub.decoded():
            if m["type"] == MESSAGE:
                seen.append((m["seq"], m["text"]))
            elif m["type"] == MESSAGES:
                batches += 1
                check(m["room"] == "hall" and len(m["items"]) >= 2, "MESSAGES: %r" % m)
                seen += [(i["seq"], i["text"]) for i in m["items"]]
    check([s for s, _ in seen] == list(range(1, 3 * count + 1)),
          "PUB seqs out of order, missing or repeated")
    check(all(by_seq[s] == t for s, t in seen), "a published text does not match its ACK")
    check(batches > 0, "%d messages in bursts were never published as MESSAGES" % (3 * count))


def test_says():
    """Version 2: one SAYS of many items is handled as that many SAYs: each
    acknowledged under its own id (a refused one with its own ERROR), all
    published in order."""
    b = Broker()
    sub = RawSub(b.pub, topics=[b"hall:"])
    d = RawDealer(b.router)
    d.hello("batcher", version=2)
    d.join("hall")
    _probe_until_live(d, sub, "hall")
    items = [{"id": 100 + i, "room": "hall" if i != 7 else "nowhere", "kind": 0,
              "text": "item %d" % i} for i in range(40)]
    d.send(encode(SAYS, 0, items=items))
    acks, errors = {}, {}
    deadline = time.monotonic() + T(10)
    while len(acks) + len(errors) < len(items):
        check(time.monotonic() < deadline, "SAYS: %d of %d items answered"
              % (len(acks) + len(errors), len(items)))
        m = d.recv(timeout=T(5))
        check(m is not None, "no answer to SAYS")
        if m["type"] == ACK:
            acks[m["id"]] = m["seq"]
        elif m["type"] == ACKS:
            acks.update({i["id"]: i["seq"] for i in m["items"]})
        elif m["type"] == ERROR:
            errors[m["id"]] = m["code"]
        else:
            raise TestFailure("unexpected answer to SAYS: %r" % m)
    check(errors == {107: 404}, "the item to a room not joined: %r" % errors)
    ids = [i["id"] for i in items if i["id"] != 107]
    check([acks[i] for i in ids] == list(range(1, len(ids) + 1)),
          "SAYS items not numbered in order: %r" % acks)
    want = [i["text"] for i in items if i["id"] != 107]
    deadline = time.monotonic() + T(10)
    while True:
        sub.drain(0.2)
        texts = []
        for m in sub.decoded():
            if m["type"] == MESSAGE:
                texts.append(m["text"])
            elif m["type"] == MESSAGES:
                texts += [i["text"] for i in m["items"]]
        if len(texts) >= len(want) or time.monotonic() > deadline:
            break
    check(texts == want, "published texts differ from the SAYS items: %r" % texts[:5])
