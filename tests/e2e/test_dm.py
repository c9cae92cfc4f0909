"""Test whether direct messages reach only their recipient, over the ROUTER
path: a raw SUB subscribed to every topic never sees one, nor does a third
member of the same room; a DM to an unknown nick is refused."""

from harness import (Broker, RawSub, check, json_client, listener, send,
                     wait_sub_live, zchat, one_stderr_line, T)

COST = 6


def test_dm_private():
    b = Broker()
    spy = RawSub(b.pub, topics=[b""])
    wait_sub_live(spy, b, "hall", "probe_dm")
    alice = json_client(b, "alice", ["hall"])
    bob = listener(b, "bob", ["hall"])
    carol = listener(b, "carol", ["hall"])

    secret1 = "secret-dm-7f3a one"
    alice.write({"cmd": "dm", "to": "bob", "text": secret1, "id": "d1"})
    ack = alice.wait_for(lambda e: e.get("type") in ("ack", "error") and e.get("id") == "d1",
                         desc="answer to the DM")
    check(ack["type"] == "ack", "DM was not acknowledged: %r" % ack)
    dm = bob.wait_text(secret1, type_="dm")
    check(dm.get("from") == "alice", "DM has wrong sender: %r" % dm)

    #  One-shot DM from the command line, no room needed.
    secret2 = "secret-dm-7f3a two"
    r = zchat(b, "dave", "--to", "bob", "--send", secret2)
    check(r.rc == 0, "zchat --to bob --send failed: %r" % r)
    dm2 = bob.wait_text(secret2, type_="dm")
    check(dm2.get("from") == "dave", "DM has wrong sender: %r" % dm2)

    #  Sentinel on PUB: everything published before it has reached the spy.
    send(b, "frank", "hall", "sentinel after dm")
    bob.wait_text("sentinel after dm")
    carol.wait_text("sentinel after dm")
    spy.wait_for(lambda f: b"sentinel after dm" in f[-1], T(5), "the sentinel")
    spy.drain(0.3)
    for frames in spy.got:
        blob = b"".join(frames)
        check(b"secret-dm-7f3a" not in blob, "a DM appeared on PUB: %r" % frames)
    check(not [e for e in carol.snapshot() if e.get("type") == "dm"],
          "a third member received a DM: %r" % carol.snapshot())
    check(not [e for e in alice.snapshot() if e.get("type") == "dm"],
          "the sender received its own DM")

    #  Unknown recipient: an error, in JSON mode and from the command line.
    alice.write({"cmd": "dm", "to": "nobody_here", "text": "hello?", "id": "d3"})
    err = alice.wait_for(lambda e: e.get("id") == "d3", desc="answer to DM to nobody")
    check(err.get("type") == "error" and err.get("code") == 405,
          "DM to an unknown nick should be error 405: %r" % err)
    r = zchat(b, "erin", "--to", "nobody_here", "--send", "hello?", "--timeout", str(T(5)))
    check(r.rc not in (0, 2, 3), "DM to an unknown nick should fail as a refusal: %r" % r)
    one_stderr_line(r)
