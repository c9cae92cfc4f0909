"""Test whether `zchat --listen` in more rooms than the broker's rate limit
lets it join at once gets into all of them: a join refused with 429 is
asked again when the broker says, is not shown as an error, and the listen
then receives from every room (before, the first 429 ended it)."""

from harness import Broker, check, listener, send, T

COST = 4


def test_listen_joins_every_room_under_rate_limit():
    #  A burst of 1 and 4 a second: the second and third JOIN (and probes,
    #  which share their bucket) are refused at first
    b = Broker("--rate-limit", "4:1")
    ear = listener(b, "ear", ["a", "b", "c"], count=1, wait_joined=False)
    ear.joined(["a", "b", "c"], timeout=T(15))
    send(b, "user", "c", "hello c")
    msg = ear.wait_for(lambda e: e.get("type") == "message", T(10), desc="the message in c")
    check(msg.get("room") == "c" and msg.get("text") == "hello c", "got %r" % msg)
    check(ear.wait(T(10)) == 0, "the listen did not end with exit 0 after --count 1")
    errors = [e for e in ear.snapshot() if e.get("type") == "error"]
    check(not errors, "a join asked again was shown as an error: %r" % errors)
