"""Test whether the client's exit codes are the documented ones: 2 for usage
errors (fast, without connecting), 3 for a broker that cannot be reached
within --timeout (dead port, or a silent peer), 5 for a send that is never
acknowledged (resent with the same id meanwhile), 7 for a listen that runs
out of time, each with exactly one line on stderr."""

import socket
import threading
import time

import zmq

from harness import (CTX, Broker, add_cleanup, check, decode, encode, one_stderr_line,
                     zchat, T, HELLO, WELCOME, JOIN, JOINED, PROBE, OK, PING, PONG, SAY, BYE,
                     HISTORY, PAGE, ERROR)

COST = 8


def _dead_endpoint():
    #  A port the kernel just handed out and nobody listens on.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "tcp://127.0.0.1:%d" % port


class FakeBroker:
    """A minimal broker in Python: greets, joins, echoes probes, never acks
    (silent=True: never answers anything)."""

    def __init__(self, silent=False):
        self.router = CTX.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.bind("tcp://127.0.0.1:*")
        self.pub = CTX.socket(zmq.PUB)
        self.pub.linger = 0
        self.pub.bind("tcp://127.0.0.1:*")
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.pub_endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.silent = silent
        self.says = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        add_cleanup(self.close)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.router.close(0)
        self.pub.close(0)

    def _reply(self, env, body):
        self.router.send_multipart(env + [b"", body])

    def _run(self):
        while not self.stop.is_set():
            if not self.router.poll(50):
                continue
            frames = self.router.recv_multipart()
            if self.silent:
                continue
            try:
                i = frames.index(b"")
                env, m = frames[:i], decode(frames[i + 1])
            except Exception:
                continue
            t, mid = m["type"], m["id"]
            if t == HELLO:
                self.nick = m["nick"]
                self._reply(env, encode(WELCOME, mid, version=1, nick=m["nick"], token="f" * 32,
                                        pub_port=int(self.pub_endpoint.rsplit(":", 1)[1]),
                                        endpoint=self.pub_endpoint, heartbeat_ms=500,
                                        timeout_ms=1500, max_text=4096, resumed=0))
            elif t == JOIN:
                self._reply(env, encode(JOINED, mid, room=m["room"], seq=0, first_seq=0,
                                        members=1, topic=""))
            elif t == PROBE:
                self._reply(env, encode(OK, mid))
                #  (it speaks version 1: a tag, if any, means nothing)
                self.pub.send_multipart([(m["room"] + ":").encode(),
                                         encode(PROBE, 0, room=m["room"], nick=self.nick)])
            elif t == PING:
                self._reply(env, encode(PONG, mid, items=[]))
            elif t == SAY:
                self.says.append(mid)       # and never acknowledge it
            elif t == BYE:
                self._reply(env, encode(OK, mid))
            elif t == HISTORY:
                self._reply(env, encode(PAGE, mid, room=m["room"], first_seq=0, seq=0, more=0,
                                        items=[]))
            else:
                self._reply(env, encode(ERROR, mid, code=501, retry_ms=0, reason="fake"))


def test_usage_errors_exit_2():
    dead = _dead_endpoint()
    cases = [
        ["--nick", "a", "--bogus"],
        ["--nick", "a", "--timeout", "abc", "--listen"],
        ["--nick", "a", "--timeout", "-1", "--listen"],
        ["--nick", "a", "--count", "many", "--listen"],
        ["--nick", "a", "--history", "-5", "--listen"],
        ["--nick", "a", "--room"],
        ["--room", "r", "--send", "no nick given"],
        ["--nick", "a", "--room", "r", "--send"],
        ["--nick", "a", "--room", "r", "--send", "x", "extra-positional"],
    ]
    for args in cases:
        t0 = time.monotonic()
        r = zchat(dead, None, *args, timeout=T(10))
        check(r.rc == 2, "zchat %s should exit 2: %r" % (" ".join(args), r))
        check(time.monotonic() - t0 < T(2), "a usage error should not wait: %r" % r)
        one_stderr_line(r)
        check(r.out == "", "usage error printed to stdout: %r" % r.out)
    r = zchat(dead, None, "--help", timeout=T(10))
    check(r.rc == 0, "zchat --help should exit 0: %r" % r)
    for opt in ["--server", "--nick", "--room", "--sub", "--send", "--to", "--listen",
                "--count", "--timeout", "--json", "--history", "--cert", "--server-key"]:
        check(opt in r.out, "--help does not document %s" % opt)
    check("exit" in r.out.lower(), "--help does not document the exit codes")


def test_unreachable_exit_3():
    dead = _dead_endpoint()
    for mode in (["--send", "hello", "--room", "r"], ["--listen", "--room", "r"],
                 ["--json", "--room", "r"], ["--to", "bob", "--send", "x"]):
        r = zchat(dead, "lonely", *(mode + ["--timeout", "2"]), input="", timeout=T(20))
        check(r.rc == 3, "%s against a dead port should exit 3: %r" % (mode, r))
        check(1.5 <= r.elapsed <= 2 + T(2),
              "%s gave up after %.2fs with --timeout 2" % (mode, r.elapsed))
        one_stderr_line(r)
    #  A peer that takes the connection but never answers: same.
    fake = FakeBroker(silent=True)
    r = zchat(fake.endpoint, "lonely", "--send", "hello", "--room", "r", "--timeout", "1.5",
              timeout=T(20))
    check(r.rc == 3, "a silent broker should give exit 3: %r" % r)
    check(r.elapsed <= 1.5 + T(2), "gave up after %.2fs with --timeout 1.5" % r.elapsed)
    one_stderr_line(r)


class NotABroker:
    """A TCP service that is not ZeroMQ: it answers every connection with an
    HTTP error (garbage=True) or closes it at once."""

    def __init__(self, garbage):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.endpoint = "tcp://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.garbage = garbage
        add_cleanup(self.sock.close)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                if self.garbage:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            conn.close()


def test_not_a_broker_exit_6():
    """A TCP service that is not a zchat broker fails the handshake: exit 6,
    and the one stderr line says it may not be a zchat broker, not only that
    the broker requires CURVE."""
    for garbage in (True, False):
        peer = NotABroker(garbage)
        r = zchat(peer.endpoint, "lost", "--send", "hello", "--room", "r", "--timeout", "10",
                  timeout=T(20))
        check(r.rc == 6, "a peer that is not a broker (garbage=%s) should exit 6: %r"
              % (garbage, r))
        check(r.elapsed < 8, "took %.2fs to notice" % r.elapsed)
        check("not a zchat broker" in one_stderr_line(r), "unclear reason: %r" % r.err)


def test_unacknowledged_exit_5():
    fake = FakeBroker()
    r = zchat(fake.endpoint, "sender", "--send", "never acked", "--room", "r", "--timeout", "2",
              timeout=T(30))
    check(r.rc == 5, "a send never acknowledged should exit 5: %r" % r)
    check(r.elapsed <= 2 + T(3), "exit 5 took %.2fs with --timeout 2" % r.elapsed)
    one_stderr_line(r)
    check(len(fake.says) >= 1, "the fake broker never got the SAY")
    check(len(set(fake.says)) == 1, "resends must keep the id: %r" % fake.says)


def test_listen_timeout_exit_7():
    b = Broker()
    r = zchat(b, "waiter", "--listen", "--json", "--count", "1", "--timeout", "1.5",
              rooms=["quiet"], timeout=T(20))
    check(r.rc == 7, "--listen without enough messages should exit 7: %r" % r)
    check(1.4 <= r.elapsed <= 1.5 + T(2), "exit 7 after %.2fs with --timeout 1.5" % r.elapsed)
    one_stderr_line(r)
    types = [e.get("type") for e in r.events()]
    check("joined" in types and "message" not in types, "listen output: %r" % r.out)
    check("never went live" not in r.err, "a live, quiet room blamed on the SUB: %r" % r.err)
    #  A subscription that never goes live (a PUB endpoint nobody answers
    #  on) is the likely cause, and the one line says so
    r = zchat(b, "deaf", "--listen", "--sub", _dead_endpoint(), "--count", "1", "--timeout",
              "1.5", rooms=["quiet"], timeout=T(20))
    check(r.rc == 7, "--listen with a dead --sub should exit 7: %r" % r)
    line = one_stderr_line(r)
    check("#quiet never went live" in line and "--sub" in line,
          "the one line should blame the subscription: %r" % line)


def test_hangup_says_goodbye():
    #  A closed terminal window or a dropped ssh sends SIGHUP: the client
    #  must leave like on SIGTERM (goodbye said, nick free at once), not
    #  die and hold its nick for the session timeout.
    import signal
    from harness import listener
    b = Broker("--session-timeout", "30")
    ear = listener(b, "ear", ["ops"])
    hup = listener(b, "hup", ["ops"])
    hup.signal(signal.SIGHUP)
    rc = hup.wait(T(10))
    check(rc == 130, "zchat on SIGHUP should exit 130 (interrupted): %r" % rc)
    ear.wait_for(lambda e: e.get("type") == "quit" and e.get("nick") == "hup",
                 timeout=T(5), desc="hup's quit well before the session timeout")
    r = zchat(b, "hup", "--send", "back at once", "--timeout", "5", rooms=["ops"],
              timeout=T(20))
    check(r.rc == 0, "the nick should be free right after a hangup: %r" % r)
