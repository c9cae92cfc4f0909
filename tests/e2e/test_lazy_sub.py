"""Test whether libzchat connects its SUB to the broker's PUB only once it
follows a room (PROTOCOL.md §1): a client that only greets, a send-only
member, DMs and a `zchat --send` one-shot leave no connection on the
broker's PUB port; the first receiving join makes exactly one, after
which the room's messages arrive from the first one on; leaving the room
keeps it. And whether a PUB endpoint the SUB cannot connect to fails only
what needs it: `zchat --listen` says so at once, `zchat --send` does not
care.

Connections are counted on the broker's side: its sockets (from
/proc/PID/fd) that /proc/net/tcp and /proc/net/tcp6 list as established
with the PUB port as their local port."""

import os
import socket
import time

from harness import (Broker, Proc, T, check, driver, driver_request, fail, one_stderr_line,
                     zchat, zchat_argv)

COST = 8

TCP_ESTABLISHED = "01"


def _socket_inodes(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for name in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue            # closed meanwhile
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def pub_connections(broker):
    """Established TCP connections the broker holds on its PUB port."""
    inodes = _socket_inodes(broker.pid)
    port = "%04X" % broker.pub_port
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10:
                continue
            local_port = fields[1].rsplit(":", 1)[1]
            if local_port == port and fields[3] == TCP_ESTABLISHED and fields[9] in inodes:
                count += 1
    return count


def _stays(broker, want, seconds, what):
    """The PUB port holds want connections throughout, checked every 20 ms."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = pub_connections(broker)
        check(got == want, "%s: %d connections on the PUB port, expected %d"
              % (what, got, want))
        time.sleep(0.02)


def _reaches(broker, want, timeout, what):
    deadline = time.monotonic() + timeout
    got = pub_connections(broker)
    while got != want:
        if time.monotonic() > deadline:
            fail("%s: %d connections on the PUB port after %.1f s, expected %d"
                 % (what, got, timeout, want))
        time.sleep(0.02)
        got = pub_connections(broker)


def _answer(p, rid, type_):
    ev = p.wait_for(lambda e: e.get("id") == rid and e.get("type") != "request",
                    T(10), desc="answer to %s" % rid)
    check(ev.get("type") == type_, "%s: expected %s, got %r" % (p.name, type_, ev))
    return ev


def test_sub_connects_at_first_receiving_join():
    b = Broker()
    #  The counting itself works: a raw TCP connection to the PUB port
    #  counts as one
    probe = socket.create_connection(("127.0.0.1", b.pub_port), timeout=T(5))
    _reaches(b, 1, T(5), "a raw TCP connection")
    probe.close()
    _reaches(b, 0, T(5), "the raw connection closed")

    idle = driver(b.router, "idle")
    poster = driver(b.router, "poster")
    _answer(poster, driver_request(poster, "join-send-only ops"), "joined")
    _answer(poster, driver_request(poster, "say ops from a send-only member"), "ack")
    #  A one-shot, kept running by its open stdin until every check is done
    shot = Proc(zchat_argv(b, "shot", ["ops"], ["--json", "--send", "-"]), "send-shot")
    shot.write("from a one-shot")
    shot.wait_for(lambda e: e.get("type") == "ack" and e.get("id") == 1, T(10),
                  desc="the one-shot's ack")
    #  A DM
    _answer(idle, driver_request(idle, "dm poster psst"), "ack")
    poster.wait_for(lambda e: e.get("type") == "dm" and e.get("text") == "psst",
                    desc="the DM")
    _stays(b, 0, 0.5, "greeted, send-only, DM and --send clients")
    shot.close_stdin()
    check(shot.wait(T(10)) == 0, "zchat --send - failed: %s" % shot.stderr()[-500:])

    #  The first receiving join: one connection, and every message from the
    #  first one after the join on
    _answer(idle, driver_request(idle, "join ops"), "joined")
    _reaches(b, 1, T(5), "after the first receiving join")
    ids = [driver_request(poster, "say ops live %d" % i) for i in range(20)]
    for rid in ids:
        _answer(poster, rid, "ack")
    got = idle.wait_count(lambda e: e.get("type") == "message", 20, T(10),
                          desc="the room's messages")
    check([e.get("text") for e in got] == ["live %d" % i for i in range(20)],
          "the receiving member got %r" % [e.get("text") for e in got][:5])
    #  A second room: no second connection
    _answer(idle, driver_request(idle, "join dev"), "joined")
    _stays(b, 1, 0.3, "after a second receiving join")

    #  Leaving every room keeps the connection
    _answer(idle, driver_request(idle, "leave ops"), "left")
    _answer(idle, driver_request(idle, "leave dev"), "left")
    _stays(b, 1, 0.5, "after leaving every room")

    for p in (idle, poster):
        p.close_stdin()
        check(p.wait(T(10)) == 0, "%s did not exit 0: %s" % (p.name, p.stderr()[-500:]))
    _reaches(b, 0, T(5), "every client gone")


#  Well-formed for zchat's option check, refused by zmq_connect (no such
#  transport)
BAD_SUB = "bogus://nowhere"


def test_unusable_pub_endpoint():
    b = Broker()
    #  --send needs no SUB: a PUB endpoint libzmq refuses changes nothing
    r = zchat(b, "shot", "--send", "hello", "--sub", BAD_SUB, rooms=["ops"],
              timeout=T(15))
    check(r.rc == 0, "zchat --send with an unusable --sub failed: %r" % r)
    #  --listen needs it: its join fails at once, with one clear line
    r = zchat(b, "ear", "--listen", "--sub", BAD_SUB, "--timeout", "10",
              rooms=["ops"], timeout=T(15))
    check(r.rc == 1, "zchat --listen with an unusable --sub: expected exit 1: %r" % r)
    check(r.elapsed < T(5), "the failed join took %.1f s" % r.elapsed)
    line = one_stderr_line(r)
    check("cannot join #ops" in line and BAD_SUB in line,
          "the failure does not name the join and the endpoint: %r" % line)
    check(pub_connections(b) == 0, "a connection was left on the PUB port")
