"""Test whether the broker holds the limits an independent review asked for
(broker hardening), against the real binary with its default options: a
session's rooms are capped and its goodbye is quick, one connection cannot
make unlimited sessions with made-up relay hops, expensive queries are
budgeted and a peer that never reads cannot park unbounded memory, the
PUB high-water mark cannot be unlimited, nicks per key are capped and an
operator can release one, a removed key loses its session on SIGHUP, and
a SIGHUP right after start does no harm."""

import os
import signal
import sqlite3
import time

import zmq

from harness import (CTX, SANITIZE, TMP, Broker, RawDealer, add_cleanup, check, decode, encode,
                     keygen, proc_rss_kb, raw_session, read_cert, require_binary, run, T,
                     ACK, ERROR, HISTORY, JOIN, JOINED, NICK, OK, PAGE, SAY, WELCOME, HELLO, BYE,
                     PING, PONG, PROBE, TOPIC)

COST = 20


def test_rooms_per_session_default():
    """By default a session may join 100 rooms; the 101st is 452, and a
    goodbye from a full session is answered at once."""
    b = Broker()
    d = raw_session(b, "roamer")
    for i in range(100):
        d.send(encode(JOIN, 1000 + i, room="r%d" % i))
    joined = 0
    while joined < 100:
        m = d.recv(T(5))
        check(m is not None, "only %d of 100 JOINs answered" % joined)
        check(m["type"] == JOINED, "JOIN %d of 100 refused: %r" % (joined + 1, m))
        joined += 1
    m = d.request(JOIN, room="one-too-many")
    check(m["type"] == ERROR and m["code"] == 452,
          "the 101st room should be refused with 452 by default: %r" % m)
    t0 = time.monotonic()
    m = d.request(BYE)
    check(m["type"] == OK, "BYE from a session in 100 rooms: %r" % m)
    check(time.monotonic() - t0 < T(2), "BYE took %.2fs" % (time.monotonic() - t0))


def _hello_via_hops(d, count, prefix):
    """Greet count sessions over one connection, each behind a made-up relay
    hop; returns the decoded answers in order."""
    for i in range(count):
        d.send_frames([b"hop%d" % i, b"", encode(HELLO, 1 + i, version=1, nick="%s%d" % (prefix, i),
                                                  token="")])
    answers = []
    while len(answers) < count:
        frames = d.recv_frames(T(5))
        check(frames is not None, "only %d of %d relayed HELLOs answered" % (len(answers), count))
        check(len(frames) == 3 and frames[1] == b"", "relayed reply envelope: %r" % frames[:2])
        answers.append(decode(frames[2]))
    return answers


def test_sessions_per_connection_capped():
    """Made-up relay hops let one connection greet many sessions: by default
    at most 1000 come from one address, and --max-sessions caps them all."""
    b = Broker()
    d = RawDealer(b.router)
    answers = _hello_via_hops(d, 1001, "h")
    welcomed = [m for m in answers if m["type"] == WELCOME]
    refused = [m for m in answers if m["type"] == ERROR]
    check(len(welcomed) == 1000 and len(refused) == 1 and refused[0]["code"] == 452,
          "1001 sessions from one address: %d welcomed, refusals %r"
          % (len(welcomed), refused[:3]))
    b.check_alive()

    b2 = Broker("--max-sessions", "5")
    d2 = RawDealer(b2.router)
    answers = _hello_via_hops(d2, 6, "g")
    check([m["type"] for m in answers[:5]] == [WELCOME] * 5, "5 sessions fit: %r" % answers)
    check(answers[5]["type"] == ERROR and answers[5]["code"] == 452
          and "full" in answers[5]["reason"], "the 6th of --max-sessions 5: %r" % answers[5])


def _server_cert(name):
    d = os.path.join(TMP, "keys-" + name)
    os.makedirs(d, exist_ok=True)
    path = keygen(os.path.join(d, "server"), name="server")
    return path, read_cert(path)[0]


def _curve_dealer(b, server_pub):
    public, secret = zmq.curve_keypair()
    return RawDealer(b.router, curve=(public, secret, server_pub))


def test_nicks_per_key_and_release():
    """A key binds at most --max-nicks-per-key nicks (default 10); the
    operator releases a binding with --release-nick, refused while the
    broker runs on the store and, as a storage error, for a binding the
    store cannot read; another key may then claim the nick."""
    cert, server_pub = _server_cert("nicks")
    b = Broker("--cert", cert + "_secret", "--allow-any")
    hog = _curve_dealer(b, server_pub)
    hog.hello("hog0")
    for i in range(1, 10):
        m = hog.request(NICK, nick="hog%d" % i)
        check(m["type"] == OK, "nick %d of 10 for one key: %r" % (i + 1, m))
    m = hog.request(NICK, nick="hog10")
    check(m["type"] == ERROR and m["code"] == 452 and "limit 10" in m["reason"],
          "an 11th nick for one key should be 452 by default: %r" % m)
    other = _curve_dealer(b, server_pub)
    m = other.request(HELLO, version=1, nick="hog3", token="")
    check(m["type"] == ERROR and m["code"] == 403, "another key taking hog3: %r" % m)

    exe = require_binary("zchat-broker")
    r = run([exe, "--data", b.data, "--release-nick", "hog3"], timeout=T(10), name="release")
    check(r.rc == 1 and "in use" in r.err, "--release-nick while the broker runs: %r" % r)
    b.stop()
    r = run([exe, "--data", b.data, "--release-nick", "hog3"], timeout=T(10), name="release")
    check(r.rc == 0 and "released nick hog3" in r.out and len(r.out.splitlines()) == 1,
          "--release-nick of a bound nick: %r" % r)
    r = run([exe, "--data", b.data, "--release-nick", "hog3"], timeout=T(10), name="release")
    check(r.rc == 1 and "not bound" in r.err, "--release-nick of a free nick: %r" % r)
    #  A binding the store cannot read (a key longer than any it writes)
    #  is a storage error, not "not bound", and stays as it was.
    db = sqlite3.connect(os.path.join(b.data, "zchat.db"))
    (hog4_key,) = db.execute("SELECT key FROM nick_keys WHERE nick = 'hog4'").fetchone()
    db.execute("UPDATE nick_keys SET key = ? WHERE nick = 'hog4'", ("k" * 60,))
    db.commit()
    r = run([exe, "--data", b.data, "--release-nick", "hog4"], timeout=T(10), name="release")
    check(r.rc == 1 and "storage error" in r.err and "not bound" not in r.err
          and r.out == "", "--release-nick of a binding the store cannot read: %r" % r)
    check(db.execute("SELECT count(*) FROM nick_keys WHERE nick = 'hog4'").fetchone()[0] == 1,
          "a binding the store could not read was released")
    db.execute("UPDATE nick_keys SET key = ? WHERE nick = 'hog4'", (hog4_key,))
    db.commit()
    db.close()
    r = run([exe, "--data", os.path.join(b.data, "nothing"), "--release-nick", "hog3"],
            timeout=T(10), name="release")
    check(r.rc == 1 and not os.path.exists(os.path.join(b.data, "nothing")),
          "--release-nick on a directory without a store: %r" % r)
    b.restart()
    other = _curve_dealer(b, server_pub)
    m = other.hello("hog3")
    check(m["type"] == WELCOME, "after the release another key may take hog3: %r" % m)


def test_pub_hwm_never_unlimited():
    """--pub-hwm 0 (libzmq's "no limit") is a usage error."""
    exe = require_binary("zchat-broker")
    r = run([exe, "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*",
             "--data", os.path.join(TMP, "hwm0"), "--pub-hwm", "0"], timeout=T(10), name="hwm0")
    check(r.rc == 2 and "--pub-hwm" in r.err, "--pub-hwm 0 should be refused: %r" % r)


def test_history_flood_without_reading():
    """A peer that asks for history pages as fast as it can and never reads
    the answers gets a bounded amount built and queued for it (a budget of
    reply bytes per session, default 16 MiB then 1 MiB/s): the rest is
    refused with 429 and a retry time, and the broker's memory stays put."""
    env = None
    if SANITIZE:
        #  ASan's quarantine of freed memory would count as growth.
        env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"}
    b = Broker(env=env)
    writer = raw_session(b, "writer", ["big"])
    text = "x" * 4000
    for i in range(200):
        writer.send(encode(SAY, 100 + i, room="big", kind=0, text=text))
    acked = 0
    while acked < 200:
        m = writer.recv(T(10))
        check(m is not None and m["type"] == ACK, "SAY %d not acknowledged: %r" % (acked, m))
        acked += 1

    sock = CTX.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvhwm = 1
    sock.setsockopt(zmq.RCVBUF, 4096)
    add_cleanup(lambda: sock.close(linger=0))
    sock.connect(b.router)

    def ask(mtype, rid, **fields):
        sock.send_multipart([b"", encode(mtype, rid, **fields)])
        check(sock.poll(int(T(5) * 1000)), "no answer to %d" % mtype)
        return decode(sock.recv_multipart()[1])

    check(ask(HELLO, 1, version=1, nick="hoarder", token="")["type"] == WELCOME, "greeting")
    check(ask(JOIN, 2, room="big")["type"] == JOINED, "joining")
    page = ask(HISTORY, 3, room="big", from_seq=1, to_seq=0, limit=0)
    check(page["type"] == PAGE and len(page["items"]) > 100, "one full page: %d items"
          % len(page.get("items", [])))
    time.sleep(0.5)
    base = proc_rss_kb(b.pid)
    requests = 300                      # ~150 MB of pages if all were built
    for i in range(requests):
        sock.send_multipart([b"", encode(HISTORY, 1000 + i, room="big", from_seq=1,
                                         to_seq=0, limit=0)])
    #  Sent; the broker answers at once. Let it, without reading, but
    #  sending now and then as an attacker would, and not for long: a peer
    #  whose unread replies stay unacknowledged for the ROUTER's TCP user
    #  timeout (15 s) is cut off, which frees what it had queued (and
    #  loses the answers this test counts).
    deadline = time.monotonic() + 1.5
    pings = 0
    while time.monotonic() < deadline:
        time.sleep(0.2)
        sock.send_multipart([b"", encode(PING, 5000 + pings)])
        pings += 1
        b.check_alive()
    grown = proc_rss_kb(b.pid) - base
    print("broker RSS %d kB -> %d kB while %d history requests went unread"
          % (base, base + grown, requests))
    check(grown < 48 * 1024, "broker RSS grew %d kB for one peer that never reads" % grown)

    #  Now read: most were refused with a retry time, none went unanswered.
    answers = {}
    deadline = time.monotonic() + T(30)
    while len(answers) < requests and time.monotonic() < deadline:
        if sock.poll(1000):
            m = decode(sock.recv_multipart()[1])
            if m["type"] != PONG:
                answers[m["id"]] = m
    pages = [m for m in answers.values() if m["type"] == PAGE]
    refused = [m for m in answers.values() if m["type"] == ERROR]
    check(len(answers) == requests, "only %d of %d history requests answered"
          % (len(answers), requests))
    check(all(m["code"] == 429 and m["retry_ms"] > 0 for m in refused),
          "refusals should be 429 with retry_ms: %r" % refused[:3])
    check(len(pages) < 80 and len(refused) > requests - 80,
          "%d pages built, %d refused: the budget did not hold" % (len(pages), len(refused)))
    #  Others are unaffected.
    check(writer.say("big", "still here")["type"] == ACK, "another session was held up")


def test_sighup_right_after_start():
    """A SIGHUP as soon as the ready line is out does not end the broker."""
    for _ in range(3):
        b = Broker()
        b.proc.send_signal(signal.SIGHUP)
        d = raw_session(b, "awake")
        check(d.request(PING)["type"] == PONG, "the broker stopped answering after SIGHUP")
        b.check_alive()
        b.stop()


def test_removed_key_loses_its_session_on_sighup():
    """Removing a key from the allow-list and sending SIGHUP ends that key's
    sessions (ZAP only judged the handshake): its requests get 440 and a new
    greeting 403, while other keys go on."""
    d = os.path.join(TMP, "keys-revoke")
    allow = os.path.join(d, "allow")
    os.makedirs(allow, exist_ok=True)
    cert = keygen(os.path.join(d, "server"), name="server")
    server_pub = read_cert(cert)[0]
    keys = {}
    for name in ("alice", "bob"):
        path = keygen(os.path.join(allow, name), name=name)
        os.rename(path + "_secret", os.path.join(d, name + "_secret"))
        keys[name] = read_cert(os.path.join(d, name + "_secret"))
    b = Broker("--cert", cert + "_secret", "--allow", allow)
    peers = {}
    for name in ("alice", "bob"):
        public, secret = keys[name]
        peers[name] = RawDealer(b.router, curve=(public, secret, server_pub))
        peers[name].hello(name)
        peers[name].join("hall")
    os.unlink(os.path.join(allow, "bob"))
    b.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + T(5)
    while "sessions of keys no longer admitted" not in b.stderr():
        check(time.monotonic() < deadline, "no reload logged:\n%s" % b.stderr()[-2000:])
        time.sleep(0.05)
    check("1 sessions of keys no longer admitted ended" in b.stderr(),
          "bob's session should have ended:\n%s" % b.stderr()[-2000:])
    m = peers["bob"].request(PING)
    check(m["type"] == ERROR and m["code"] == 440, "bob after his key went: %r" % m)
    m = peers["bob"].request(HELLO, version=1, nick="bob", token="")
    check(m["type"] == ERROR and m["code"] == 403, "bob greeting again: %r" % m)
    m = peers["alice"].request(PING)
    check(m["type"] == PONG and [i["room"] for i in m["items"]] == ["hall"],
          "alice goes on: %r" % m)


def test_session_bound_to_its_key():
    """Under CURVE a session answers only to the key that opened it: a new
    connection with another key that takes over the routing id (chosen by
    the client) cannot speak as the session's nick."""
    cert, server_pub = _server_cert("rid")
    b = Broker("--cert", cert + "_secret", "--allow-any")
    listener = _curve_dealer(b, server_pub)
    listener.hello("hearer")
    listener.join("hall")
    public, secret = zmq.curve_keypair()
    alice = RawDealer(b.router, curve=(public, secret, server_pub), identity=b"fixed-id")
    alice.hello("alice")
    alice.join("hall")
    alice.close()
    public, secret = zmq.curve_keypair()
    #  The ROUTER refuses a routing id still in use: retry until alice's
    #  connection is gone and the id is free for the impostor.
    deadline = time.monotonic() + T(10)
    while True:
        impostor = RawDealer(b.router, curve=(public, secret, server_pub), identity=b"fixed-id")
        impostor.send(encode(SAY, 77, room="hall", kind=0, text="I am alice"))
        m = impostor.recv(0.5)
        if m is not None:
            break
        impostor.close()
        check(time.monotonic() < deadline, "the routing id never came free")
    check(m["type"] == ERROR and m["code"] == 403 and m["id"] == 77,
          "a SAY from another key on alice's routing id: %r" % m)
    m = impostor.request(HELLO, version=1, nick="mallory", token="")
    check(m["type"] == ERROR and m["code"] == 403, "HELLO from the impostor: %r" % m)
    info, items = listener.history("hall")
    check(items == [], "the impostor's text was stored: %r" % items)


def test_rate_limit_covers_every_publishing_command():
    """--rate-limit charges topic changes and probes too, not only messages."""
    b = Broker("--rate-limit", "1:1")
    d = raw_session(b, "noisy", ["r"])
    for i in range(50):
        d.send(encode(TOPIC, 100 + i, room="r", set=1, topic="t%d" % i))
        d.send(encode(PROBE, 200 + i, room="r"))
    answers = {}
    deadline = time.monotonic() + T(10)
    while len(answers) < 100 and time.monotonic() < deadline:
        m = d.recv(0.5)
        if m is not None:
            answers[m["id"]] = m
    check(len(answers) == 100, "only %d of 100 answered" % len(answers))
    refused = [m for m in answers.values() if m["type"] == ERROR and m["code"] == 429]
    check(len(refused) >= 95 and all(m["retry_ms"] > 0 for m in refused),
          "with --rate-limit 1:1, %d of 100 topic sets and probes were refused" % len(refused))
    #  Messages have their own bucket: a SAY still passes.
    check(d.say("r", "hello")["type"] == ACK, "a message after the refused commands")
