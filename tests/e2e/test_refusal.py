"""Test whether a libzchat sender that the broker refuses with 429 (rate
limit, fair share) comes back gently: once the retry time has passed it
sends 64 SAYs, and one more for each acknowledgement of what it sends from
then on, instead of all it has waiting, so that what the broker refuses
again stays about a round's worth (a flooder with thousands in flight used
to have them all refused again every 100 ms). The acknowledgements of what
the broker took before it refused come after the refusals, as a durable
broker's do (after its commit), and do not count. Everything is still
acknowledged once, in order, with no error for the caller."""

import time

from harness import ACKS, ERROR, SAY, SAYS, FakeBroker, T, check, driver, encode

COST = 6

RESUME = 64                 # S_SEND_CAP_RESUME in client/zchat_client_int.h
COUNT = 2000
RETRY_MS = 100
REFUSE_S = 0.6              # the fake refuses every SAY this long after the first
TAKEN_FIRST = 100           # ... but takes the first this many, acknowledged late


def _driver(endpoint, nick):
    return driver(endpoint, nick, 30000)


def test_sender_comes_back_gently_after_429():
    state = {"first": None, "seq": 0, "burst": 0, "rounds": [], "last": 0.0, "accepted": [],
             "refused": set(), "back": False}

    def take(fake, items):
        acks = []
        for item in items:
            state["seq"] += 1
            state["accepted"].append(item["text"])
            acks.append(dict(id=item["id"], room=item["room"], seq=state["seq"], ts=1))
        for i in range(0, len(acks), 1000):
            fake.router.send_multipart([fake.peer, b"", encode(ACKS, 0, items=acks[i:i + 1000])])

    def on_request(fake, msg):
        if msg["type"] not in (SAY, SAYS):
            return False
        items = msg["items"] if msg["type"] == SAYS else [msg]
        now = time.monotonic()
        if state["first"] is None:
            state["first"] = now
        since = now - state["first"]
        if since >= REFUSE_S:
            take(fake, items)
            return True
        #  Until the first SAY that was refused before comes again, what
        #  comes is the caller's first burst (however slowly a loaded
        #  machine lets it arrive: libzchat sends in order, so nothing of
        #  it follows a resend); from then on, what is sent again, in
        #  rounds a retry time apart
        if any(item["text"] in state["refused"] for item in items):
            state["back"] = True
        if not state["back"]:
            state["burst"] += len(items)
        else:
            if now - state["last"] > RETRY_MS / 2000.0:
                state["rounds"].append(0)
            state["rounds"][-1] += len(items)
            state["last"] = now
        taken = items[:max(0, TAKEN_FIRST - len(state["accepted"]))]
        for item in items[len(taken):]:
            state["refused"].add(item["text"])
            fake.router.send_multipart([fake.peer, b"", encode(
                ERROR, item["id"], code=429, retry_ms=RETRY_MS, reason="slow down")])
        take(fake, taken)
        return True

    fake = FakeBroker(on_request=on_request, version=3)
    flood = _driver(fake.endpoint, "flood")
    flood.write("join-send-only busy")
    flood.wait_for(lambda e: e.get("type") == "joined", T(10), desc="joined")
    flood.write("burst busy %d" % COUNT)
    flood.wait_count(lambda e: e.get("type") == "ack", COUNT, T(30),
                     desc="the %d acknowledgements" % COUNT)
    fake.check_ok()
    #  Each round of sending again is at most RESUME: without the cap it was
    #  all that waited, and with ACKs of what was taken before the refusal
    #  counted, RESUME + TAKEN_FIRST
    check(state["burst"] > TAKEN_FIRST + RESUME,
          "the first burst should be refused in bulk: %d SAYs" % state["burst"])
    check(state["rounds"] and max(state["rounds"]) <= RESUME,
          "sent again in rounds of %r SAYs while refused (at most %d each)"
          % (state["rounds"], RESUME))
    check(state["accepted"] == ["burst %d" % i for i in range(1, COUNT + 1)],
          "accepted out of order or twice: %r" % state["accepted"][:5])
    errors = [e for e in flood.snapshot() if e.get("type") == "error"]
    check(not errors, "the caller saw errors: %r" % errors[:3])
