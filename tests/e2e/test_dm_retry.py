"""Test whether a direct message is delivered once however often it has to
be sent: under the broker's rate limit libzchat does not hand a 429 for a
DM to its caller but sends the DM again once the retry time has passed, in
order with the SAYs around it, and it is acknowledged and delivered once;
and a DM resent with the same id on a resumed session (its client
reconnected and took the session over with its token, its ACK lost) gets
the original acknowledgement and is not delivered again."""

from harness import (Broker, RawDealer, check, driver, driver_request, json_client, new_id,
                     raw_session, ACK, DELIVER, DM, T)

COST = 8

COUNT = 40                  # alternately a SAY and a DM, 20 each


def test_refused_dms_are_sent_again_in_order():
    #  A burst of 10, then 10 a second: most of the 40 are refused at
    #  least once, the SAYs and the DMs alike (one bucket)
    b = Broker("--rate-limit", "10:10")
    bob = json_client(b, "bob", ["ops"])
    poster = driver(b.router, "poster", 30000)
    poster.write("join-send-only ops")
    poster.wait_for(lambda e: e.get("type") == "joined", T(10), desc="joined")
    texts = ["paced %03d" % i for i in range(COUNT)]
    ids = [driver_request(poster, ("say ops %s" if i % 2 == 0 else "dm bob %s") % text)
           for i, text in enumerate(texts)]
    acks = []
    for rid in ids:
        ev = poster.wait_for(lambda e, rid=rid: e.get("id") == rid and e.get("type") != "request",
                             T(30), desc="answer to %s" % rid)
        check(ev.get("type") == "ack", "a send was answered %r" % ev)
        acks.append(ev)
    errors = [e for e in poster.snapshot() if e.get("type") == "error"]
    check(not errors, "the caller saw errors: %r" % errors[:3])
    #  The broker took them in the order they were sent, DMs among SAYs:
    #  a DM sent again ahead of the SAY refused before it would be taken
    #  (and stamped) a round earlier
    stamps = [e.get("ts") for e in acks]
    check(all(stamps) and stamps == sorted(stamps),
          "taken out of send order (ack ts by send order): %r" % stamps)
    check(all(e.get("nick") == "bob" for e in acks[1::2]), "DM acks: %r" % acks[1:4])
    said = bob.wait_messages(COUNT // 2, room="ops", timeout=T(20))
    check([m.get("text") for m in said] == texts[0::2],
          "room messages: %r" % [m.get("text") for m in said][:8])
    #  Everything is acknowledged, so nothing is sent again: once a last
    #  DM has come, every copy of the others has
    driver_request(poster, "dm bob sentinel")
    bob.wait_text("sentinel", T(20), type_="dm")
    dms = [e for e in bob.snapshot() if e.get("type") == "dm"]
    check([e.get("text") for e in dms] == texts[1::2] + ["sentinel"]
          and all(e.get("from") == "poster" for e in dms),
          "DMs delivered out of order or more than once: %r" % [e.get("text") for e in dms])
    bob.check_clean()


def test_dm_resent_on_resumed_session_delivered_once():
    b = Broker()
    alice = raw_session(b, "alice")
    bob = raw_session(b, "bob")
    mid = new_id()
    first = alice.request(DM, id=mid, nick="bob", kind=0, text="only once")
    check(first["type"] == ACK and first["room"] == "" and first["seq"] == 0,
          "DM answered %r" % first)
    got = bob.recv(T(5))
    check(got is not None and got["type"] == DELIVER and got["text"] == "only once",
          "DELIVER: %r" % got)

    #  alice's connection breaks before the ACK arrives: a new DEALER takes
    #  the session over with its token and resends what was unanswered
    token = alice.token
    alice.close()
    alice2 = RawDealer(b.router)
    m = alice2.hello("alice", token=token)
    check(m["resumed"] == 1, "takeover: %r" % m)
    again = alice2.request(DM, id=mid, nick="bob", kind=0, text="only once")
    check(again["type"] == ACK and (again["room"], again["seq"], again["ts"])
          == (first["room"], first["seq"], first["ts"]),
          "a resent DM should get the original ACK: %r vs %r" % (again, first))
    #  A new id is a new DM, and the next thing bob gets
    after = alice2.request(DM, id=new_id(), nick="bob", kind=0, text="a new one")
    check(after["type"] == ACK, "a new DM answered %r" % after)
    got = bob.recv(T(5))
    check(got is not None and got["type"] == DELIVER and got["text"] == "a new one",
          "the resent DM was delivered again: %r" % got)
