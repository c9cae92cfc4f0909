"""Test whether a burst of DMs sent through libzchat as fast as it takes them
reaches its recipient exactly once each and in order, even when the sender
then resends what it has unanswered: the broker recognises a resent DM only
among the last 256 its session delivered (PROTOCOL.md 6.3), so libzchat
keeps at most 256 DMs out and unanswered at once and holds the rest back
until ACKs come. Here the sender is busy for longer than a heartbeat right
after its burst, with every ACK still unread, so the next pass resends all
it has out: had the whole burst gone out, most of it would be delivered a
second time."""

from harness import Broker, check, driver, driver_request, json_client, T

COST = 8

COUNT = 1000


def test_dm_burst_delivered_once_in_order():
    #  A session timeout of 3 s: clients are asked to ping, and libzchat
    #  resends what is unanswered, every second
    b = Broker("--session-timeout", "3")
    bob = json_client(b, "bob")
    bob.wait_for(lambda e: e.get("type") == "connected", T(10), desc="connected")
    poster = driver(b.router, "poster", 60000)
    #  One write: the driver reads both lines at once, so no pass of its
    #  loop reads an ACK between the burst and the hold. 1.5 s is past the
    #  heartbeat (1 s) and within the session timeout (3 s).
    poster.write("burst-dm bob %d\nhold 1500" % COUNT)
    poster.wait_count(lambda e: e.get("type") == "request", 2, T(10), desc="burst and hold")
    acks = poster.wait_count(lambda e: e.get("type") == "ack", COUNT, T(60), desc="acks")
    errors = [e for e in poster.snapshot() if e.get("type") == "error"]
    check(not errors, "the caller saw errors: %r" % errors[:3])
    check(len(set(e.get("id") for e in acks)) == COUNT and len(acks) == COUNT,
          "%d ACK events for %d DMs, %d distinct ids"
          % (len(acks), COUNT, len(set(e.get("id") for e in acks))))
    check(all(e.get("nick") == "bob" for e in acks), "DM acks: %r" % acks[:3])
    #  Everything is acknowledged, so nothing is sent again: once a last
    #  DM has come, every copy of the others has
    driver_request(poster, "dm bob sentinel")
    bob.wait_text("sentinel", T(20), type_="dm")
    texts = [e.get("text") for e in bob.snapshot() if e.get("type") == "dm"]
    want = ["burst %d" % i for i in range(1, COUNT + 1)] + ["sentinel"]
    if texts != want:
        twice = len(texts) - len(set(texts))
        first_bad = next((i for i, (got, exp) in enumerate(zip(texts, want)) if got != exp),
                         min(len(texts), len(want)))
        check(False, "bob got %d DMs for %d sent (%d more than once); first difference "
              "at %d: %r" % (len(texts), len(want), twice, first_bad,
                             texts[first_bad:first_bad + 3]))
    check(all(e.get("from") == "poster" for e in bob.snapshot() if e.get("type") == "dm"),
          "a DM from someone else")
    bob.check_clean()
