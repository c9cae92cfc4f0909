"""Test whether room management works: who lists a room's members, rooms
lists every room with member counts and topics, topics can be set (by
members only, announced to the room) and read, leave works."""

from harness import Broker, check, json_client, listener, raw_session, ERROR, LEAVE, OK

COST = 5


def test_who_and_rooms():
    b = Broker()
    alice = json_client(b, "alice", ["r1"])
    bob = json_client(b, "bob", ["r1", "r2"])
    carol = listener(b, "carol", ["r3"])

    alice.write({"cmd": "who", "room": "r1", "id": "w1"})
    ev = alice.wait_for(lambda e: e.get("type") in ("members", "error") and e.get("id") == "w1",
                        desc="members of r1")
    check(ev["type"] == "members" and ev.get("room") == "r1"
          and sorted(ev.get("nicks", [])) == ["alice", "bob"],
          "who r1 should list alice and bob: %r" % ev)

    #  Not a member: 404.
    alice.write({"cmd": "who", "room": "r3", "id": "w2"})
    ev = alice.wait_for(lambda e: e.get("id") == "w2", desc="answer to who r3")
    check(ev.get("type") == "error" and ev.get("code") == 404,
          "who of a room one is not in should be error 404: %r" % ev)

    alice.write({"cmd": "rooms", "id": "l1"})
    ev = alice.wait_for(lambda e: e.get("type") in ("rooms", "error") and e.get("id") == "l1",
                        desc="room list")
    check(ev["type"] == "rooms", "rooms answered %r" % ev)
    rooms = {r.get("room"): r for r in ev.get("rooms", [])}
    check(set(rooms) >= {"r1", "r2", "r3"}, "rooms should list r1 r2 r3: %r" % ev)
    check(rooms["r1"].get("members") == 2 and rooms["r2"].get("members") == 1
          and rooms["r3"].get("members") == 1, "wrong member counts: %r" % ev)

    #  Leaving updates both lists and is announced.
    bob.write({"cmd": "leave", "room": "r2", "id": "x1"})
    bob.wait_for(lambda e: e.get("id") == "x1" or e.get("type") == "left", desc="leave confirmed")
    alice.write({"cmd": "rooms", "id": "l2"})
    ev = alice.wait_for(lambda e: e.get("type") == "rooms" and e.get("id") == "l2",
                        desc="room list after leave")
    rooms = {r.get("room"): r for r in ev.get("rooms", [])}
    check("r2" not in rooms or rooms["r2"].get("members") == 0,
          "an empty room with no history is still listed with members: %r" % ev)
    bob.write({"cmd": "leave", "room": "r1", "id": "x2"})
    alice.wait_for(lambda e: e.get("type") == "leave" and e.get("nick") == "bob"
                   and e.get("room") == "r1", desc="bob's leave event")
    alice.write({"cmd": "who", "room": "r1", "id": "w3"})
    ev = alice.wait_for(lambda e: e.get("type") == "members" and e.get("id") == "w3",
                        desc="members of r1 after leave")
    check(ev.get("nicks") == ["alice"], "after bob left, r1 should hold only alice: %r" % ev)
    #  Leaving a room one is not in: the broker says 404. (libzchat treats
    #  that as "left", since a resent LEAVE ends there too: either is fine
    #  for the client, as long as it answers.)
    bob.write({"cmd": "leave", "room": "r1", "id": "x3"})
    ev = bob.wait_for(lambda e: e.get("id") == "x3", desc="answer to second leave")
    check(ev.get("type") == "left" or (ev.get("type") == "error" and ev.get("code") == 404),
          "leaving a room twice should be answered left or error 404: %r" % ev)
    raw = raw_session(b, "rawleaver", ["r9"])
    m = raw.request(LEAVE, room="r9")
    check(m["type"] == OK, "LEAVE of a joined room should be OK: %r" % m)
    m = raw.request(LEAVE, room="r9")
    check(m["type"] == ERROR and m["code"] == 404, "LEAVE twice should be ERROR 404: %r" % m)
    carol.check_clean()


def test_topic():
    b = Broker()
    alice = json_client(b, "alice", ["r1"])
    watcher = listener(b, "watcher", ["r1"])
    outsider = json_client(b, "outsider", ["r2"])
    topic = "Release \"v1\" \u00fcber alles \u2014 \U0001f680"

    alice.write({"cmd": "topic", "room": "r1", "topic": topic, "id": "t1"})
    ev = watcher.wait_for(lambda e: e.get("type") == "topic", desc="topic event")
    check(ev.get("room") == "r1" and ev.get("topic") == topic and ev.get("nick") == "alice",
          "topic event should carry room, topic and setter: %r" % ev)
    alice.wait_for(lambda e: e.get("id") == "t1" and e.get("type") == "topic",
                   desc="topic set confirmed")

    #  Anyone may read it (set=0); a non-member may not set it.
    outsider.write({"cmd": "topic", "room": "r1", "id": "t2"})
    ev = outsider.wait_for(lambda e: e.get("id") == "t2", desc="topic read")
    check(ev.get("type") == "topic" and ev.get("topic") == topic,
          "reading the topic should give it back intact: %r" % ev)
    outsider.write({"cmd": "topic", "room": "r1", "topic": "hijack", "id": "t3"})
    ev = outsider.wait_for(lambda e: e.get("id") == "t3", desc="answer to outsider's topic")
    check(ev.get("type") == "error" and ev.get("code") == 404,
          "a non-member setting a topic should be error 404: %r" % ev)
    #  Too long (256 bytes): 422, and the topic is unchanged.
    alice.write({"cmd": "topic", "room": "r1", "topic": "x" * 256, "id": "t4"})
    ev = alice.wait_for(lambda e: e.get("id") == "t4", desc="answer to long topic")
    check(ev.get("type") == "error" and ev.get("code") in (413, 422),
          "a 256-byte topic should be refused (422): %r" % ev)

    alice.write({"cmd": "rooms", "id": "l1"})
    ev = alice.wait_for(lambda e: e.get("type") == "rooms" and e.get("id") == "l1",
                        desc="room list")
    rooms = {r.get("room"): r for r in ev.get("rooms", [])}
    check(rooms.get("r1", {}).get("topic") == topic,
          "room list should show r1's topic: %r" % ev)
    check(watcher.count(lambda e: e.get("type") == "topic") == 1,
          "exactly one topic change was announced: %r" % watcher.snapshot())
