"""Test whether an idle client costs the broker no traffic (protocol version
6): a libzchat client that has nothing to say sends no PING and stays a
member for as long as its connection is up; a client killed with kill -9 is
announced as quit once its closed connection has been checked and the
session timeout has passed; an older client that goes silent is still
expired after the session timeout; an idle client notices a broker restart
by itself and is a member again at once; a raw version 6 session is kept
while its socket is open and expired once it is closed.

What the client sends is seen on a ZmtpTap: a TCP relay between it and the
broker that reads the ZMTP frames going to the broker. No ping can hide
there, and the client's own ZMTP heartbeats (commands, which touch no
queue of the broker's) show that the relay sees its connection alive."""

import socket
import struct
import threading
import time

from harness import (Broker, RawDealer, RawSub, T, add_cleanup, check, decode, encode,
                     json_client, wait_until, ERROR, EVENT, HELLO, MEMBERS, PING, WELCOME,
                     WHO)

COST = 40

SESSION_S = 2.0                 # --session-timeout of most tests here
QUIT = 3                        # EVENT's event: quit
CHECK_S = 1.0                   # ZCHAT_SERVER_CHECK_MS: a close is checked this late
HEARTBEAT = SESSION_S / 3


class ZmtpTap:
    """A TCP relay to upstream (tcp://HOST:PORT) for clients connecting to
    self.endpoint. Reads the ZMTP 3 stream each client sends (NULL
    mechanism: a 64-byte greeting, then frames) and records every message
    as (monotonic time, its last frame) and every command as (time, name).
    Each client connection is one connection to the broker, closed when the
    client's closes."""

    def __init__(self, upstream):
        host, port = upstream[len("tcp://"):].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.endpoint = "tcp://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.messages = []
        self.commands = []
        self.sockets = []
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        add_cleanup(self.close)

    def close(self):
        self.closed = True
        self.thread.join(timeout=5)
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                broker = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            broker.settimeout(None)
            with self.lock:
                self.sockets += [client, broker]
            threading.Thread(target=self._pump, args=(client, broker, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(broker, client, False), daemon=True).start()

    def _pump(self, src, dst, parse):
        buf = b""
        greeting = 64
        frames = []
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if not parse:
                    continue
                buf += data
                if greeting:
                    taken = min(greeting, len(buf))
                    greeting -= taken
                    buf = buf[taken:]
                while len(buf) >= 2:
                    flags = buf[0]
                    if flags & 0x02:
                        if len(buf) < 9:
                            break
                        size, head = struct.unpack(">Q", buf[1:9])[0], 9
                    else:
                        size, head = buf[1], 2
                    if len(buf) < head + size:
                        break
                    body = buf[head:head + size]
                    buf = buf[head + size:]
                    now = time.monotonic()
                    with self.lock:
                        if flags & 0x04:
                            self.commands.append((now, body[1:1 + body[0]].decode("ascii", "replace")))
                        else:
                            frames.append(body)
                            if not flags & 0x01:
                                self.messages.append((now, frames[-1]))
                                frames = []
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def since(self, t0):
        """Messages and commands recorded from monotonic time t0 on."""
        with self.lock:
            return ([m for m in self.messages if m[0] >= t0],
                    [c for c in self.commands if c[0] >= t0])


def members(broker, room, nick):
    """The nicks in room, asked by a raw session (nick) that joins it."""
    d = RawDealer(broker.router)
    d.hello(nick)
    d.join(room)
    m = d.request(WHO, room=room)
    check(m["type"] == MEMBERS, "WHO answered %r" % m)
    d.close()
    return sorted(i["nick"] for i in m["items"])


def quits(sub, nick):
    """The QUIT events of nick a raw SUB has seen so far."""
    sub.drain(0)
    return [m for m in sub.decoded() if m["type"] == EVENT and m["event"] == QUIT
            and m["nick"] == nick]


def wait_quit(sub, room, nick, timeout):
    """Wait for nick's QUIT in room on a raw SUB; the time it took."""
    t0 = time.monotonic()
    topic = (room + ":").encode()

    def is_quit(frames):
        if frames[0] != topic:
            return False
        m = decode(frames[1], pub=True)
        return m["type"] == EVENT and m["event"] == QUIT and m["nick"] == nick
    sub.wait_for(is_quit, timeout, "quit of %s" % nick)
    return time.monotonic() - t0


def test_idle_client_sends_nothing_and_stays():
    """(a) An idle libzchat client sends no PING for several session
    timeouts (before version 6 it pinged every heartbeat), and is still a
    member."""
    b = Broker("--session-timeout", str(SESSION_S))
    sub = RawSub(b.pub, topics=[b"hall:"])
    tap = ZmtpTap(b.router)
    idler = json_client(tap.endpoint, "idler", ["hall"])
    #  The join's traffic, then pings for three heartbeats after the last of
    #  it (a PONG tells a lost tail); past that, nothing at all
    time.sleep(3 * HEARTBEAT + 1.0)
    t0 = time.monotonic()
    time.sleep(3 * SESSION_S)
    sent, commands = tap.since(t0)
    kinds = [body[2] if len(body) > 2 and body[:2] == b"ZC" else body for _, body in sent]
    check(not sent, "an idle client sent %d messages in %.0fs (types %r; %d of them PING)"
          % (len(sent), 3 * SESSION_S, kinds, kinds.count(PING)))
    #  Its connection was alive all along: ZMTP heartbeats, once a second
    check(sum(1 for _, name in commands if name == "PING") >= 3 * SESSION_S - 2,
          "the relay saw too few ZMTP heartbeats from the idle client: %r" % commands)
    check(not quits(sub, "idler"), "the idle client was announced as quit")
    check(members(b, "hall", "asker") == ["asker", "idler"], "idler is no longer in hall")
    check(idler.alive() and not idler.count(lambda e: e.get("type") == "disconnected"),
          "the idle client lost its session: %r" % idler.snapshot()[-5:])


def test_killed_idle_client_quits():
    """(b) kill -9 of an idle client: its session ends a check (1 s) and a
    session timeout after its connection closed, announced as quit."""
    b = Broker("--session-timeout", str(SESSION_S))
    sub = RawSub(b.pub, topics=[b"hall:"])
    victim = json_client(b, "victim", ["hall"])
    #  Idle: past its pings after the join, and past several timeouts
    time.sleep(3 * HEARTBEAT + 2 * SESSION_S)
    check(not quits(sub, "victim"), "the idle client was expired while alive")
    victim.kill9()
    took = wait_quit(sub, "hall", "victim", T(SESSION_S + CHECK_S + 3))
    print("kill -9 to quit: %.2fs (session timeout %.1fs, check %.1fs)" % (took, SESSION_S, CHECK_S))
    check(took >= SESSION_S, "quit %.2fs after kill -9, before the session timeout" % took)
    check(took <= SESSION_S + CHECK_S + T(1.5),
          "quit %.2fs after kill -9; timeout %.1fs + check %.1fs" % (took, SESSION_S, CHECK_S))


def test_silent_old_client_expires():
    """(c) A raw version 5 session that greets and goes silent is expired
    after the session timeout, as before version 6."""
    b = Broker("--session-timeout", str(SESSION_S))
    sub = RawSub(b.pub, topics=[b"hall:"])
    d = RawDealer(b.router)
    check(d.hello("old5", version=5)["version"] == 5, "WELCOME version 5")
    d.join("hall")
    took = wait_quit(sub, "hall", "old5", T(SESSION_S + 3))
    check(SESSION_S - 0.2 <= took <= SESSION_S + T(1),
          "silent version 5 session quit after %.2fs, session timeout %.1fs" % (took, SESSION_S))
    #  Its socket is still open: it was silence, not the connection
    check(not d.sock.closed, "the dealer was closed")


def test_idle_client_notices_broker_restart():
    """(d) The broker restarts (same ports and data) while a client is idle:
    the client greets again by itself at once and is a member again,
    without the test sending it anything. The session timeout is long
    (a 20 s heartbeat): before version 6 the client found out only at its
    next ping."""
    b = Broker("--session-timeout", "60")
    idler = json_client(b, "idler", ["hall"])
    time.sleep(1.0)
    check(members(b, "hall", "asker") == ["asker", "idler"], "idler not in hall")
    seen = len(idler.snapshot())
    b.kill9()
    b.restart()
    t0 = time.monotonic()
    #  A rejoin is not reported (the caller never left): the new session is.
    #  Its presence event may go out before the client's SUB is back on the
    #  new PUB, so membership is asked, by a new asker each time.
    idler.wait_for(lambda e: e.get("type") == "connected", T(5),
                   desc="a new session after the restart", start=seen)
    askers = iter(range(100))
    wait_until(lambda: "idler" in members(b, "hall", "asker%d" % next(askers)), T(5),
               "idler in hall again after the restart")
    took = time.monotonic() - t0
    print("broker restart to a member again: %.2fs" % took)
    check(idler.count(lambda e: e.get("type") == "disconnected") == 1,
          "the client should tell of the lost session once: %r" % idler.snapshot()[-6:])


def test_raw_v6_session_kept_while_connected():
    """(e) A raw version 6 session that greets, joins and goes silent
    without closing is kept; once its socket closes it is expired (a
    check and a session timeout later). A relayed version 6 greeting is
    answered version 5: the broker cannot see that client's connection."""
    b = Broker("--session-timeout", str(SESSION_S))
    sub = RawSub(b.pub, topics=[b"hall:"])
    d = RawDealer(b.router)
    check(d.hello("new6", version=6)["version"] == 6, "WELCOME version 6")
    d.join("hall")
    time.sleep(3 * SESSION_S)
    check(not quits(sub, "new6"), "a silent version 6 session with its socket open was expired")
    check(members(b, "hall", "asker") == ["asker", "new6"], "new6 is no longer in hall")
    #  Nothing was sent to it meanwhile (the broker checks a connection only
    #  after it closed, or after an hour)
    check(d.recv(0.1) is None, "the broker sent a silent session something")
    d.close()
    took = wait_quit(sub, "hall", "new6", T(SESSION_S + CHECK_S + 3))
    check(SESSION_S <= took <= SESSION_S + CHECK_S + T(1.5),
          "closed version 6 session quit after %.2fs; timeout %.1fs + check %.1fs"
          % (took, SESSION_S, CHECK_S))

    #  Through a relay (a routing-id frame of its own): its client's new
    #  connection announced (440, the client has no session) and its version
    #  6 greeting answered 5
    relayed = RawDealer(b.router)
    relayed.send_frames([b"hop", b""])
    relayed.send_frames([b"hop", b"", encode(HELLO, 7, version=6, nick="behind", token="")])
    answers = []
    for _ in range(2):
        frames = relayed.recv_frames(T(5))
        check(frames is not None and len(frames) == 3 and frames[:2] == [b"hop", b""],
              "relayed answer: %r" % frames)
        answers.append(decode(frames[2]))
    check(answers[0]["type"] == ERROR and answers[0]["code"] == 440 and answers[0]["id"] == 0,
          "a relayed new connection's probe should be answered 440: %r" % answers[0])
    check(answers[1]["type"] == WELCOME and answers[1]["version"] == 5,
          "a relayed version 6 greeting should be answered version 5: %r" % answers[1])
