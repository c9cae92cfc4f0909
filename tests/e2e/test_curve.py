"""Test whether CURVE protects the broker: an allowed key works (both key
forms, both sockets); an unknown key, a plaintext client and a wrong server
key each get a clear client error (exit 6) within about two seconds, whatever
--timeout says, and no message in either direction; a plaintext SUB or
DEALER gets nothing; --allow-any admits any key but still no plaintext."""

import os
import shutil
import signal

from harness import (TMP, Broker, RawDealer, RawSub, check, encode, keygen, listener,
                     one_stderr_line, read_cert, require_binary, run, wait_until, zchat, T, HELLO,
                     WELCOME)

COST = 12


def _keys():
    d = os.path.join(TMP, "keys")
    os.makedirs(d, exist_ok=True)
    allow = os.path.join(TMP, "allow")
    os.makedirs(allow, exist_ok=True)
    k = {}
    for name in ("server", "alice", "bob", "mallory", "stranger"):
        k[name] = keygen(os.path.join(d, name), name=name)
    for name in ("alice", "bob"):
        shutil.copy(k[name], os.path.join(allow, name + ".pub"))
    return k, allow


def _curve_args(k, who, server_key=None):
    return ["--cert", k[who] + "_secret", "--server-key", server_key or k["server"]]


def _refused_quickly(r, what):
    check(r.rc == 6, "%s should exit 6 (handshake refused): %r" % (what, r))
    check(r.elapsed <= T(3), "%s took %.2fs to fail, --timeout was 20" % (what, r.elapsed))
    line = one_stderr_line(r)
    return line


def test_curve_allow_list():
    k, allow = _keys()
    server_pub, _ = read_cert(k["server"])
    b = Broker("--cert", k["server"] + "_secret", "--allow", allow)
    check("unauthenticated" not in b.stderr().lower(),
          "a CURVE broker should not warn about plaintext:\n%s" % b.stderr())

    #  Allowed keys: the listener names the server key by file, the sender by Z85.
    bob = listener(b, "bob", ["sec"], args=_curve_args(k, "bob"))
    r = zchat(b, "alice", "--send", "over curve", *_curve_args(k, "alice", server_pub.decode()),
              rooms=["sec"])
    check(r.rc == 0, "allowed key with a Z85 server key failed: %r" % r)
    m = bob.wait_text("over curve")
    check(m.get("from") == "alice", "wrong sender over CURVE: %r" % m)

    spy = RawSub(b.pub, topics=[b""])                       # plaintext SUB
    dealer = RawDealer(b.router)                            # plaintext DEALER
    dealer.send(encode(HELLO, 1, version=1, nick="spy", token=""))

    #  Refused: unknown key, no CURVE, wrong server key. Each as a sender
    #  and as a listener; nothing gets through either way.
    stranger_pub, _ = read_cert(k["stranger"])
    refused = [("unknown key", _curve_args(k, "mallory")),
               ("no CURVE", []),
               ("wrong server key", _curve_args(k, "alice", stranger_pub.decode()))]
    for what, args in refused:
        r = zchat(b, "mallory", "--send", "from " + what, "--timeout", "20", *args,
                  rooms=["sec"], timeout=T(30))
        _refused_quickly(r, what + " (send)")
        r = zchat(b, "mallory", "--listen", "--json", "--timeout", "20", *args,
                  rooms=["sec"], timeout=T(30))
        _refused_quickly(r, what + " (listen)")
        check(not [e for e in r.events() if e.get("type") in ("message", "joined")],
              "%s: the refused listener got events: %r" % (what, r.out))

    #  Traffic meanwhile, then a sentinel: bob saw only the allowed sender.
    r = zchat(b, "alice", "--send", "sentinel", *_curve_args(k, "alice"), rooms=["sec"])
    check(r.rc == 0, "allowed sender failed: %r" % r)
    bob.wait_text("sentinel")
    check([m["text"] for m in bob.messages()] == ["over curve", "sentinel"],
          "bob got messages from refused clients: %r" % bob.messages())
    spy.drain(0.5)
    check(spy.got == [], "a plaintext SUB received %d messages" % len(spy.got))
    check(dealer.recv_frames(0.5) is None, "a plaintext DEALER got an answer")

    #  A raw CURVE peer with an allowed key speaks the protocol.
    alice_pub, alice_sec = read_cert(k["alice"] + "_secret")
    raw = RawDealer(b.router, curve=(alice_pub, alice_sec, server_pub))
    m = raw.hello("alice_raw")
    check(m["type"] == WELCOME, "raw CURVE HELLO: %r" % m)
    mallory_pub, mallory_sec = read_cert(k["mallory"] + "_secret")
    raw_bad = RawDealer(b.router, curve=(mallory_pub, mallory_sec, server_pub))
    raw_bad.send(encode(HELLO, 2, version=1, nick="bad", token=""))
    check(raw_bad.recv_frames(1.0) is None, "a refused CURVE key got an answer")
    b.stop()


def test_curve_allow_any():
    k, allow = _keys()
    b = Broker("--cert", k["server"] + "_secret", "--allow-any")
    ear = listener(b, "ear", ["open"], args=_curve_args(k, "stranger"))
    r = zchat(b, "mallory", "--send", "any key works", *_curve_args(k, "mallory"), rooms=["open"])
    check(r.rc == 0, "--allow-any refused a key: %r" % r)
    ear.wait_text("any key works")
    r = zchat(b, "plain", "--send", "no key", "--timeout", "20", rooms=["open"], timeout=T(30))
    _refused_quickly(r, "plaintext client against --allow-any")
    spy = RawSub(b.pub, topics=[b""])
    send_args = _curve_args(k, "mallory")
    r = zchat(b, "mallory", "--send", "second", *send_args, rooms=["open"])
    check(r.rc == 0, "second send failed: %r" % r)
    ear.wait_text("second")
    spy.drain(0.5)
    check(spy.got == [], "a plaintext SUB received messages under --allow-any")
    b.stop()


def test_curve_usage():
    k, allow = _keys()
    exe = require_binary("zchat-broker")
    base = [exe, "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*",
            "--data", os.path.join(TMP, "d")]
    r = run(base + ["--cert", k["server"] + "_secret"], timeout=T(10))
    check(r.rc == 2, "--cert without --allow or --allow-any should exit 2: %r" % r)
    r = run(base + ["--cert", os.path.join(TMP, "missing_secret"), "--allow-any"], timeout=T(10))
    check(r.rc == 1, "a missing certificate should exit 1: %r" % r)
    r = zchat("tcp://127.0.0.1:1", "x", "--cert", os.path.join(TMP, "missing_secret"),
              "--server-key", k["server"], "--send", "x", rooms=["r"], timeout=T(10))
    check(r.rc in (1, 2), "a client with a missing certificate should fail at once: %r" % r)


def test_curve_allow_list_reload():
    k, allow = _keys()
    b = Broker("--cert", k["server"] + "_secret", "--allow", allow)
    r = zchat(b, "mallory", "--send", "not yet", "--timeout", "20", *_curve_args(k, "mallory"),
              rooms=["sec"], timeout=T(30))
    _refused_quickly(r, "a key not yet in the allow-list")
    #  Add mallory, take bob away, SIGHUP: the list is read again.
    shutil.copy(k["mallory"], os.path.join(allow, "mallory.pub"))
    os.unlink(os.path.join(allow, "bob.pub"))
    b.proc.send_signal(signal.SIGHUP)

    def mallory_admitted():
        r = zchat(b, "mallory", "--send", "now allowed", "--timeout", "5",
                  *_curve_args(k, "mallory"), rooms=["sec"], timeout=T(30))
        return r.rc == 0
    wait_until(mallory_admitted, T(10), "the reloaded allow-list to admit mallory", 0.3)
    r = zchat(b, "bob", "--send", "bob removed", "--timeout", "20", *_curve_args(k, "bob"),
              rooms=["sec"], timeout=T(30))
    _refused_quickly(r, "a key removed from the allow-list")
    b.check_alive()
    b.stop()
