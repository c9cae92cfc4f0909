"""Test whether the README's "across two machines" tour works as written: a
broker on its default endpoints (tcp://*:5555 and :5556) on one host, and
clients on another host that name only the broker's ROUTER address, learn
the PUB port from the greeting, and chat, room messages and a DM alike.

The two hosts are network namespaces joined by a veth pair, made by this
test and deleted at the end (needs root and iproute2; skipped otherwise).
Traffic stays between the namespaces' own addresses."""

import os
import random
import shutil
import subprocess
import tempfile

from harness import (Proc, Skip, add_cleanup, check, require_binary, spawn,
                     read_file, wait_until, TMP, T, run)

COST = 8


def _ip(*args):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(args), r.stderr.strip()))


def _make_hosts():
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise Skip("needs root and iproute2 for network namespaces")
    tag = "%d%d" % (os.getpid() % 10000, random.randint(0, 99))
    ns_a, ns_b = "zcA" + tag, "zcB" + tag
    net = "10.%d.%d" % (200 + random.randint(0, 50), random.randint(0, 250))
    try:
        _ip("netns", "add", ns_a)
    except AssertionError as e:
        raise Skip("cannot create a network namespace here: %s" % e)
    add_cleanup(lambda: subprocess.run(["ip", "netns", "del", ns_a], timeout=10))
    _ip("netns", "add", ns_b)
    add_cleanup(lambda: subprocess.run(["ip", "netns", "del", ns_b], timeout=10))
    va, vb = "zva" + tag, "zvb" + tag
    _ip("link", "add", va, "type", "veth", "peer", "name", vb)
    _ip("link", "set", va, "netns", ns_a)
    _ip("link", "set", vb, "netns", ns_b)
    for ns, dev, host in ((ns_a, va, 1), (ns_b, vb, 2)):
        _ip("-n", ns, "addr", "add", "%s.%d/24" % (net, host), "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    return ns_a, ns_b, "%s.1" % net


def test_chat_across_two_hosts():
    broker_exe = require_binary("zchat-broker")
    zchat_exe = require_binary("zchat")
    ns_a, ns_b, broker_addr = _make_hosts()
    data = tempfile.mkdtemp(prefix="data-", dir=TMP)

    #  The broker exactly as `make run` starts it: default endpoints.
    broker = spawn(["ip", "netns", "exec", ns_a, broker_exe, "--data", data],
                   "broker-host-a", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wait_until(lambda: "ready router=" in read_file(broker.stderr_path)
               or broker.poll() is not None, T(10), "the broker's ready line")
    check(broker.poll() is None, "broker died: %s" % read_file(broker.stderr_path))
    server = "tcp://%s:5555" % broker_addr

    def on_b(*args):
        return ["ip", "netns", "exec", ns_b, zchat_exe, "--server", server] + list(args)

    bob = Proc(on_b("--nick", "bob", "--room", "lobby", "--listen", "--json",
                    "--count", "2", "--timeout", str(T(30))), "bob-host-b", stdin=False)
    bob.joined(["lobby"])
    r = run(on_b("--nick", "alice", "--room", "lobby", "--send", "hello from host b"),
            name="alice-host-b")
    check(r.rc == 0, "alice's send failed: %r" % r)
    r = run(on_b("--nick", "carol", "--to", "bob", "--send", "psst, bob"), name="carol-host-b")
    check(r.rc == 0, "carol's DM failed: %r" % r)

    msg = bob.wait_text("hello from host b")
    check(msg.get("from") == "alice" and msg.get("seq") == 1, "wrong message: %r" % msg)
    dm = bob.wait_text("psst, bob", type_="dm")
    check(dm.get("from") == "carol", "wrong DM: %r" % dm)
    check(bob.wait(T(10)) == 0, "bob's listen did not end with 0 after 2 messages")

    #  The broker saw the clients from the other host's address.
    log = read_file(broker.stderr_path)
    check("%s.2" % broker_addr.rsplit(".", 1)[0] in log,
          "broker log does not show a session from host b:\n%s" % log[-2000:])
    broker.terminate()
    check(broker.wait(timeout=T(10)) == 0, "broker did not exit 0 on SIGTERM")
