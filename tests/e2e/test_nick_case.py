"""Test whether a nickname's identity ignores ASCII case while its spelling
is kept for display: a live nick blocks every case of it (409), a DM to any
case reaches its holder, a session may rename itself to another case of its
own nick (announced with the new spelling); with CURVE a nick bound to a key
is bound in every case (403 for another key, online, offline and after a
restart; any case for the owner; --max-nicks-per-key counts the cases once;
--release-nick releases every case), and a store written before this rule,
holding one nick in two cases bound to two keys, opens with a warning naming
the conflict and gives the nick to the earlier claim."""

import os
import signal
import sqlite3

import zmq

from harness import (Broker, RawDealer, TMP, check, json_client, keygen, listener,
                     raw_session, read_cert, require_binary, run, wait_until, zchat, T,
                     ERROR, HELLO, NICK, OK, WELCOME)

COST = 12


def _hello(d, nick):
    return d.request(HELLO, version=1, nick=nick, token="")


def test_nick_case_sessions():
    b = Broker()
    watcher = listener(b, "watcher", ["hall"])
    alice = json_client(b, "alice", ["hall"])

    #  Every other case of a live nick is in use, by HELLO and by NICK.
    for other in ("ALICE", "Alice", "aLiCe"):
        m = _hello(RawDealer(b.router), other)
        check(m["type"] == ERROR and m["code"] == 409,
              "HELLO %r beside a live 'alice' should be 409: %r" % (other, m))
    r = zchat(b, "ALICE", "--send", "impostor", "--timeout", str(T(5)), rooms=["hall"])
    check(r.rc == 4, "zchat as 'ALICE' beside 'alice' should exit 4: %r" % r)
    bob = raw_session(b, "bob", ["hall"])
    m = bob.request(NICK, nick="Alice")
    check(m["type"] == ERROR and m["code"] == 409,
          "renaming onto 'Alice' beside a live 'alice' should be 409: %r" % m)

    #  A DM to any case reaches the holder; the sender is shown as spelled.
    carol = json_client(b, "Carol", ["hall"])
    carol.write({"cmd": "dm", "to": "ALICE", "text": "to alice, loudly", "id": "d1"})
    ack = carol.wait_for(lambda e: e.get("id") == "d1", desc="answer to the DM to ALICE")
    check(ack.get("type") == "ack", "a DM to 'ALICE' should reach 'alice': %r" % ack)
    dm = alice.wait_text("to alice, loudly", type_="dm")
    check(dm.get("from") == "Carol", "the DM's sender should read 'Carol': %r" % dm)

    #  A rename to another case of one's own nick is a rename, announced
    #  with the new spelling, which the messages then carry.
    alice.write({"cmd": "nick", "nick": "Alice", "id": "n1"})
    ev = watcher.wait_for(lambda e: e.get("type") == "nick", desc="nick event")
    check(ev.get("old") == "alice" and ev.get("new") == "Alice",
          "the rename should be announced as alice -> Alice: %r" % ev)
    alice.wait_for(lambda e: e.get("type") == "nick" and e.get("new") == "Alice",
                   desc="own case change confirmed")
    alice.write({"cmd": "say", "room": "hall", "text": "spelled anew", "id": "s1"})
    m = watcher.wait_text("spelled anew")
    check(m.get("from") == "Alice", "a message after the rename has from %r" % m.get("from"))
    alice.write({"cmd": "who", "room": "hall", "id": "w1"})
    who = alice.wait_for(lambda e: e.get("id") == "w1", desc="answer to who")
    check("Alice" in who.get("nicks", []) and "alice" not in who.get("nicks", []),
          "who should list the display spelling 'Alice': %r" % who)

    #  The old spelling is still the same nick: in use.
    m = _hello(RawDealer(b.router), "alice")
    check(m["type"] == ERROR and m["code"] == 409,
          "HELLO 'alice' beside a live 'Alice' should be 409: %r" % m)
    #  Once its holder is gone, the nick is free in every case.
    alice.signal(signal.SIGINT)
    check(alice.wait(T(10)) == 130, "alice did not exit 130 on SIGINT")
    greeted = []
    wait_until(lambda: greeted.append(_hello(RawDealer(b.router), "aLICE"))
               or greeted[-1]["type"] == WELCOME, T(5), "a greeting as 'aLICE'")
    check(greeted[-1]["nick"] == "aLICE",
          "a free nick greets with its own spelling: %r" % greeted[-1])


def _curve_keys():
    """A broker certificate and CURVE keypairs for alice and bob: the
    certificate's path, a function that opens a CURVE DEALER to a broker
    as one of them, and the keypairs by name."""
    d = os.path.join(TMP, "keys")
    os.makedirs(d, exist_ok=True)
    server = keygen(os.path.join(d, "server"), name="server")
    server_pub = read_cert(server)[0]
    keys = {who: zmq.curve_keypair() for who in ("alice", "bob")}

    def dealer(b, who):
        public, secret = keys[who]
        return RawDealer(b.router, curve=(public, secret, server_pub))
    return server, dealer, keys


def test_nick_case_curve():
    server, dealer, keys = _curve_keys()

    b = Broker("--cert", server + "_secret", "--allow-any", "--max-nicks-per-key", "2")
    owner = dealer(b, "alice")
    owner.hello("alice")
    #  Owner online: another key may not have any case of it.
    for other in ("Alice", "ALICE"):
        m = _hello(dealer(b, "bob"), other)
        check(m["type"] == ERROR and m["code"] == 403,
              "bob's key claiming %r while 'alice' is online: %r" % (other, m))
    bob = dealer(b, "bob")
    bob.hello("bob")
    m = bob.request(NICK, nick="aLiCe")
    check(m["type"] == ERROR and m["code"] == 409,
          "bob's key renaming onto 'aLiCe' while 'alice' is online: %r" % m)
    #  The owner key may use any case, and it counts as one nick of two.
    m = owner.request(NICK, nick="Alice")
    check(m["type"] == OK, "the owner renaming to 'Alice': %r" % m)
    m = owner.request(NICK, nick="ALICE")
    check(m["type"] == OK, "the owner renaming to 'ALICE': %r" % m)
    m = owner.request(NICK, nick="alice2")
    check(m["type"] == OK, "a second nick for the owner's key (limit 2): %r" % m)
    m = owner.request(NICK, nick="alice3")
    check(m["type"] == ERROR and m["code"] == 452,
          "a third nick for the owner's key should be 452: %r" % m)
    owner.bye()

    #  Owner offline: still refused; the owner comes back in another case.
    m = _hello(dealer(b, "bob"), "Alice")
    check(m["type"] == ERROR and m["code"] == 403,
          "bob's key claiming 'Alice' while the owner is offline: %r" % m)
    m = bob.request(NICK, nick="aLiCe")
    check(m["type"] == ERROR and m["code"] == 403,
          "bob's key renaming onto 'aLiCe' while the owner is offline: %r" % m)
    back = dealer(b, "alice")
    m = back.hello("aLICE")
    check(m["nick"] == "aLICE", "the owner back as 'aLICE': %r" % m)
    back.bye()

    #  Across a restart.
    b.stop()
    b.restart()
    m = _hello(dealer(b, "bob"), "ALICE")
    check(m["type"] == ERROR and m["code"] == 403,
          "after a restart bob's key claiming 'ALICE': %r" % m)
    dealer(b, "alice").hello("Alice")

    #  --release-nick releases every case; then another key may claim it.
    b.stop()
    exe = require_binary("zchat-broker")
    r = run([exe, "--data", b.data, "--release-nick", "ALICE"], timeout=T(10), name="release")
    check(r.rc == 0 and "released nick ALICE" in r.out,
          "--release-nick ALICE of the nick bound as 'alice': %r" % r)
    b.restart()
    m = dealer(b, "bob").hello("alice")
    check(m["type"] == WELCOME, "after the release bob's key may take 'alice': %r" % m)


def test_nick_case_old_store():
    server, dealer, keys = _curve_keys()

    b = Broker("--cert", server + "_secret", "--allow-any")
    dealer(b, "alice").hello("alice")
    dealer(b, "bob").hello("bob")
    b.stop()

    #  As a broker before the rule could have left it: 'Alice' bound to
    #  bob's key after alice's 'alice'; 'Dave' bound to bob's key before
    #  'dave' to alice's.
    db = sqlite3.connect(os.path.join(b.data, "zchat.db"))
    (ts,) = db.execute("SELECT ts FROM nick_keys WHERE nick = 'alice'").fetchone()
    alice_key, bob_key = keys["alice"][0].decode(), keys["bob"][0].decode()
    db.executemany("INSERT INTO nick_keys (nick, key, ts) VALUES (?, ?, ?)",
                   [("Alice", bob_key, ts + 1000), ("Dave", bob_key, ts - 2000),
                    ("dave", alice_key, ts - 1000)])
    db.commit()
    db.close()

    b.restart()
    log = b.stderr()
    check("Alice" in log and "alice" in log and "Dave" in log and "dave" in log
          and "earlier" in log,
          "opening the store should name both conflicts:\n%s" % log[-2000:])
    #  The earlier claim holds in every case; the later key is refused.
    for who, nick in (("bob", "Alice"), ("bob", "alice"), ("alice", "dave"), ("alice", "DAVE")):
        m = _hello(dealer(b, who), nick)
        check(m["type"] == ERROR and m["code"] == 403,
              "%s's key claiming %r after the conflict: %r" % (who, nick, m))
    m = dealer(b, "alice").hello("ALICE")
    check(m["type"] == WELCOME, "the earlier key of 'alice' as 'ALICE': %r" % m)
    m = dealer(b, "bob").hello("dAVE")
    check(m["type"] == WELCOME, "the earlier key of 'Dave' as 'dAVE': %r" % m)

    #  Releasing the nick releases both rows: the conflict is gone.
    b.stop()
    exe = require_binary("zchat-broker")
    r = run([exe, "--data", b.data, "--release-nick", "dave"], timeout=T(10), name="release")
    check(r.rc == 0 and "released nick dave" in r.out, "--release-nick dave: %r" % r)
    db = sqlite3.connect(os.path.join(b.data, "zchat.db"))
    left = db.execute("SELECT nick FROM nick_keys WHERE lower(nick) = 'dave'").fetchall()
    db.close()
    check(left == [], "--release-nick dave left %r" % left)
    b.restart()
    m = dealer(b, "alice").hello("Dave")
    check(m["type"] == WELCOME, "after the release alice's key may take 'Dave': %r" % m)
