"""Test whether a send-only member (zchat_client_join_send_only, driven
through tests/zchat_driver.c) is a member that only sends: its join takes no
probe, WHO lists it, its SAYs are acknowledged and reach a receiving member,
and no message or event of the room ever reaches it, also after a broker
restart (it rejoins send-only and resends what was not acknowledged); a
receiving join upgrades it and a send-only join does not undo that. And
whether `zchat --send` joins that way too (no probe of its own), and
whether a long run of sends leaves in parts while the caller is still busy."""

import time

from harness import (Broker, RawSub, check, driver, driver_request, json_client, listener,
                     send, wait_sub_live, PROBE, T)

COST = 16

#  Event types that only a receiving member gets from its room.
TRAFFIC = {"message", "join", "leave", "quit", "nick", "topic", "gap"}


def _driver(broker, nick, timeout_ms=20000):
    return driver(broker.router, nick, timeout_ms)


def _answer(p, rid, type_, timeout=None):
    ev = p.wait_for(lambda e: e.get("id") == rid and e.get("type") != "request",
                    timeout or T(10), desc="answer to %s" % rid)
    check(ev.get("type") == type_, "%s: expected %s, got %r" % (p.name, type_, ev))
    return ev


def _quiet(p, room):
    """After a round trip (what was on its way to p came before the answer),
    p must have had nothing of room's traffic."""
    _answer(p, driver_request(p, "who " + room), "members")
    time.sleep(0.3)
    got = [e for e in p.snapshot() if e.get("type") in TRAFFIC and e.get("room") == room]
    check(not got, "%s got the room's traffic: %r" % (p.name, got[:5]))


def _ear_says(ear, text):
    ear.write({"cmd": "say", "room": "ops", "text": text})
    ear.wait_text(text)


def test_send_only_member():
    b = Broker()
    sub = RawSub(b.pub, topics=[b"ops:"])
    wait_sub_live(sub, b, "ops", "prober")
    ear = json_client(b, "ear", ["ops"])
    poster = _driver(b, "poster")

    joined = _answer(poster, driver_request(poster, "join-send-only ops"), "joined")
    check(joined.get("room") == "ops", "joined: %r" % joined)
    ear.wait_for(lambda e: e.get("type") == "join" and e.get("nick") == "poster",
                 desc="poster's join event")
    members = _answer(poster, driver_request(poster, "who ops"), "members")
    check({"poster", "ear"} <= set(members.get("members", [])),
          "WHO should list the send-only member: %r" % members)

    #  Its messages are acknowledged in order and delivered to the ear
    ids = [driver_request(poster, "say ops line %03d" % i) for i in range(50)]
    seqs = [_answer(poster, rid, "ack").get("seq") for rid in ids]
    check(seqs == list(range(seqs[0], seqs[0] + 50)), "ack seqs: %r" % seqs)
    msgs = ear.wait_messages(50, room="ops")
    check([m.get("text") for m in msgs] == ["line %03d" % i for i in range(50)],
          "the ear got %r" % [m.get("text") for m in msgs][:5])
    check(all(m.get("from") == "poster" for m in msgs), "wrong sender: %r" % msgs[:2])

    #  Others' messages, a topic, a join and a quit: none reach the poster
    _ear_says(ear, "from ear")
    ear.write({"cmd": "topic", "room": "ops", "topic": "new topic"})
    ear.wait_for(lambda e: e.get("type") == "topic" and e.get("topic") == "new topic",
                 desc="topic event")
    send(b, "passer", "ops", "passing by")
    ear.wait_text("passing by")
    ear.wait_for(lambda e: e.get("type") == "quit" and e.get("nick") == "passer",
                 desc="passer's quit")
    _quiet(poster, "ops")

    #  No probe of the poster's, nor of zchat --send's, was ever published
    sub.drain(0.3)
    probes = {m.get("nick") for m in sub.decoded() if m["type"] == PROBE}
    check("prober" in probes, "the raw SUB saw no probe at all: %r" % probes)
    check("poster" not in probes and "passer" not in probes,
          "a send-only join probed: %r" % probes)

    #  Leaving: the room sees it go
    _answer(poster, driver_request(poster, "leave ops"), "left")
    ear.wait_for(lambda e: e.get("type") == "leave" and e.get("nick") == "poster",
                 desc="poster's leave event")
    poster.close_stdin()
    check(poster.wait(T(10)) == 0, "the driver did not exit 0: %s" % poster.stderr()[-500:])


def test_send_only_after_broker_restart():
    b = Broker()
    ear = json_client(b, "ear", ["ops"])
    poster = _driver(b, "poster", timeout_ms=30000)
    _answer(poster, driver_request(poster, "join-send-only ops"), "joined")
    b.stop()
    rid = driver_request(poster, "say ops while down")
    time.sleep(0.5)
    b.restart()
    #  The new session rejoins send-only, then sends again what was pending
    _answer(poster, rid, "ack", timeout=T(20))
    poster.wait_for(lambda e: e.get("type") == "connected", T(5), desc="connected")
    ear.wait_text("while down", timeout=T(20))
    members = _answer(poster, driver_request(poster, "who ops"), "members")
    check("poster" in members.get("members", []), "not a member again: %r" % members)
    _ear_says(ear, "after restart")
    _quiet(poster, "ops")
    joins = [e for e in poster.snapshot() if e.get("type") == "joined"]
    check(len(joins) == 1, "a rejoin is not reported again: %r" % joins)


def test_upgrade_to_receiving():
    b = Broker()
    ear = json_client(b, "ear", ["ops"])
    poster = _driver(b, "poster")
    first = driver_request(poster, "join-send-only ops")
    _answer(poster, first, "joined")
    _ear_says(ear, "before")
    _quiet(poster, "ops")

    #  A receiving join upgrades the room: reported under its own id
    up = driver_request(poster, "join ops")
    check(up != first, "the upgrade should be a request of its own")
    _answer(poster, up, "joined")
    _ear_says(ear, "after")
    poster.wait_for(lambda e: e.get("type") == "message" and e.get("text") == "after",
                    desc="a message after the upgrade")

    #  A send-only join of a receiving room changes nothing
    _answer(poster, driver_request(poster, "join-send-only ops"), "joined")
    _ear_says(ear, "still")
    poster.wait_for(lambda e: e.get("type") == "message" and e.get("text") == "still",
                    desc="a message after a send-only join of a receiving room")
    texts = [e.get("text") for e in poster.snapshot() if e.get("type") == "message"]
    check(texts == ["after", "still"], "the poster got %r" % texts)


def test_refused_says_are_sent_again_in_order():
    """Under the broker's rate limit libzchat does not hand a 429 for a SAY
    to its caller: it sends the refused SAY and every SAY after it again,
    in order, once the broker's retry time has passed. 60 SAYs at once
    against 20 a second: all acknowledged, no error, delivered in order."""
    b = Broker("--rate-limit", "20:20")
    ear = json_client(b, "ear", ["ops"])
    poster = _driver(b, "poster")
    _answer(poster, driver_request(poster, "join-send-only ops"), "joined")
    ids = [driver_request(poster, "say ops paced %03d" % i) for i in range(60)]
    seqs = [_answer(poster, rid, "ack", timeout=T(20)).get("seq") for rid in ids]
    check(seqs == list(range(seqs[0], seqs[0] + 60)), "ack seqs out of order: %r" % seqs)
    errors = [e for e in poster.snapshot() if e.get("type") == "error"]
    check(not errors, "the caller saw errors: %r" % errors[:3])
    msgs = ear.wait_messages(60, room="ops", timeout=T(20))
    check([m.get("text") for m in msgs] == ["paced %03d" % i for i in range(60)],
          "the ear got them out of order: %r" % [m.get("text") for m in msgs][:8])


def test_long_run_goes_out_while_caller_is_busy():
    """A caller that makes many sends in a row without a pass of its loop
    (then stays busy) has them go out every 128, not all at its next pass:
    the broker stores and publishes the first part meanwhile."""
    b = Broker()
    ear = listener(b, "ear", ["run"])
    poster = _driver(b, "poster")
    _answer(poster, driver_request(poster, "join-send-only run"), "joined")
    #  300 sends, then 4 s without a pass: the first 8 go out alone, and
    #  two SAYS of 128 while the caller is still sending; the last 36 wait
    #  for the next pass
    poster.write("burst run 300\nhold %d" % int(T(4) * 1000))
    ear.wait_count(lambda e: e.get("type") == "message", 8 + 256, T(3),
                   desc="the first 264 of the run during the hold")
    ear.wait_count(lambda e: e.get("type") == "message", 300, T(10),
                   desc="the whole run after the hold")
    texts = [m["text"] for m in ear.messages("run")]
    check(texts == ["burst %d" % i for i in range(1, 301)],
          "the run arrived out of order or incomplete: %r" % texts[:5])
    ear.check_clean()
