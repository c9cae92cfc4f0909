"""Test whether zchat-bench runs end to end on a small load and accounts for
every message: zero lost, zero duplicated (speed is never asserted)."""

import json

from harness import check, require_binary, run, T

COST = 30
TIMEOUT = 240


def test_bench_smoke():
    exe = require_binary("zchat-bench", skip=True)
    r = run([exe, "--senders", "2", "--subscribers", "2", "--messages", "2000", "--size", "64",
             "--json"], timeout=T(180), name="bench")
    check(r.rc == 0, "zchat-bench failed: %r" % r)
    try:
        doc = json.loads(r.out)
    except ValueError:
        check(False, "zchat-bench --json did not print one JSON document: %r" % r.out[-2000:])
    z = doc.get("zchat")
    check(isinstance(z, dict), "no \"zchat\" section: %r" % doc)
    check(z.get("lost") == 0 and z.get("duplicated") == 0,
          "zchat lost %r and duplicated %r messages" % (z.get("lost"), z.get("duplicated")))
    #  Every message accounted for: accepted and delivered to every subscriber.
    if "accepted" in z and "messages" in z:
        check(z["accepted"] == z["messages"] == 2 * 2000,
              "accepted %r of %r messages (expected 4000)" % (z["accepted"], z["messages"]))
    if "deliveries" in z and "deliveries_expected" in z:
        check(z["deliveries"] == z["deliveries_expected"] == 2 * 2 * 2000,
              "delivered %r of %r (expected 8000)" % (z["deliveries"], z["deliveries_expected"]))
    for key in ("msgs_per_s", "deliveries_per_s", "latency_us"):
        check(key in z, "\"zchat\" lacks %s: %r" % (key, z))
    check(z["msgs_per_s"] > 0 and z["deliveries_per_s"] > 0, "no throughput measured: %r" % z)
    for p in ("p50", "p99", "p999", "max"):
        check(p in z["latency_us"], "latency_us lacks %s: %r" % (p, z["latency_us"]))
    c = doc.get("ceiling")
    check(isinstance(c, dict) and c.get("lost") == 0,
          "the raw ceiling run should account for every message too: %r" % c)
    check(isinstance(doc.get("ratio"), dict) and "throughput" in doc["ratio"]
          and "p99" in doc["ratio"], "no ratio section: %r" % doc.get("ratio"))


def test_bench_repair_is_late_not_lost():
    """Subscribers whose PUB dropped most of a stream of 4 KiB messages
    (--pub-hwm 10) repair it from history at the broker's query budget, a
    page at a time, and learn of a dropped tail only from their next PONG:
    progress comes in steps more than a second apart. They must be waited
    for, not "cut short" with thousands of messages counted lost (as every
    run of this shape was while the controller waited one second for more)."""
    exe = require_binary("zchat-bench", skip=True)
    r = run([exe, "--zchat-only", "--senders", "2", "--subscribers", "20", "--size", "4000",
             "--messages", "5000", "--timeout", "150", "--broker-args", "--pub-hwm 10",
             "--json"], timeout=T(220), name="bench-repair")
    check(r.rc == 0, "zchat-bench failed: %r" % r)
    z = json.loads(r.out).get("zchat") or {}
    check(z.get("lost") == 0 and z.get("duplicated") == 0,
          "zchat lost %r and duplicated %r messages: %r" % (z.get("lost"), z.get("duplicated"), z))


def test_bench_idle():
    """--idle-clients measures the broker with idle clients: in no room each
    holds only its DEALER connection (libzchat connects the SUB at the
    first receiving join), in rooms of 5 each holds a SUB too. The raw
    libzmq floor is measured beside it, with the same connections, its
    clients pinging as zchat's do (every 0.5 s with --session-timeout 1.5),
    and every ping answered."""
    exe = require_binary("zchat-bench", skip=True)
    fds = {}
    floor_fds = {}
    for size in (0, 5):
        r = run([exe, "--idle-clients", "20", "--idle-procs", "2", "--idle-room-size",
                 str(size), "--idle-hold", "1", "--broker-args", "--session-timeout 1.5",
                 "--json"], timeout=T(120), name="bench-idle")
        check(r.rc == 0, "zchat-bench --idle-clients failed: %r" % r)
        idle = json.loads(r.out).get("idle", {})
        check(idle.get("status") == "ok" and idle.get("clients") == 20
              and idle.get("room_size") == size and idle.get("per_client_kb", 0) > 0,
              "idle run with rooms of %d: %r" % (size, idle))
        fds[size] = idle.get("broker_fds", 0)
        floor = idle.get("floor", {})
        check(floor.get("status") == "ok" and floor.get("per_client_kb", 0) > 0
              and idle.get("ratio", 0) > 0,
              "the libzmq floor beside rooms of %d: %r" % (size, idle))
        #  Each of the 20 pinged at least once in the second held, none in vain
        check(floor.get("pings", 0) >= 20 and floor.get("pings_unanswered") == 0,
              "the floor's clients should ping through the hold: %r" % floor)
        floor_fds[size] = floor.get("server_fds", 0)
    check(fds[0] >= 20 and fds[5] - fds[0] == 20,
          "20 idle clients should hold 20 connections in no room, 40 in rooms: "
          "the broker had %d and %d descriptors" % (fds[0], fds[5]))
    check(floor_fds[0] >= 20 and floor_fds[5] - floor_fds[0] == 20,
          "the floor should hold the same connections as the broker: "
          "its server had %d and %d descriptors" % (floor_fds[0], floor_fds[5]))


def test_bench_usage_errors():
    """Bad command lines exit 2 with one line naming the problem, before
    anything is started; --help exits 0."""
    exe = require_binary("zchat-bench", skip=True)
    cases = [(["--bogus"], "unknown option '--bogus'"),
             (["--senders", "0"], "bad value '0' for --senders"),
             (["--senders=0"], "bad value '0' for --senders"),
             (["--durable", "maybe"], "bad value 'maybe' for --durable"),
             (["--rate", "fast"], "bad value 'fast' for --rate"),
             (["--size", "8"], "bad value '8' for --size"),
             (["--window"], "missing value for --window"),
             (["stray"], "unexpected argument 'stray'"),
             (["--zchat-only", "--ceiling-only"], "exclude each other")]
    for argv, says in cases:
        r = run([exe] + argv, timeout=T(10), name="bench-usage")
        check(r.rc == 2, "%r should exit 2: %r" % (argv, r))
        lines = r.err.strip().splitlines()
        check(len(lines) == 1 and says in lines[0], "%r should say %r: %r" % (argv, says, r.err))
    r = run([exe, "--help"], timeout=T(10), name="bench-help")
    check(r.rc == 0 and "--window W" in r.out, "--help: %r" % r)
