"""Test whether zchat --json prints only valid JSON in UTF-8 with exact
numbers, whatever comes in: a command's "id" that is not UTF-8, or a number
a double cannot hold, is refused instead of echoed garbled; an error text
the library cut inside a character (a broker naming a long, non-ASCII PUB
endpoint) comes out as UTF-8; and 64-bit seqs and times from a broker are
printed as their exact digits."""

import json

from harness import (ACK, SAY, WELCOME, FakeBroker, T, check, zchat_argv)
from test_client_hardening import _run_bytes

COST = 6


def _events(out):
    """Every stdout line as UTF-8 JSON (fails the test if one is not)."""
    events = []
    for line in out.splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, ValueError) as e:
            check(False, "stdout line is not UTF-8 JSON (%s): %r" % (e, line))
    return events


def test_json_ids_that_cannot_be_echoed_are_refused():
    fake = FakeBroker()
    stdin = (b'{"cmd":"rooms","id":"a\xffb"}\n'
             b'{"cmd":"frob","id":"\xc3"}\n'
             b'{"cmd":"rooms","id":12345678901234567891}\n'
             b'{"cmd":"rooms","id":1e400}\n'
             b'{"cmd":"rooms","id":"ok\xc3\xa9"}\n'
             b'{"cmd":"rooms","id":-3.5}\n')
    rc, out, err = _run_bytes(zchat_argv(fake.endpoint, "jsonids", [],
                                         ["--json", "--timeout", str(T(5))]), stdin, T(20))
    events = _events(out)
    refused = [e for e in events if e.get("type") == "error" and e.get("code") == 422]
    check(len(refused) == 4 and all("id" not in e for e in refused),
          "four ids should be refused, without an id: %r" % events)
    echoed = [e.get("id") for e in events if "id" in e]
    check("ok\u00e9" in echoed and -3.5 in echoed,
          "valid ids should be echoed exactly: %r" % events)
    fake.check_ok()


def test_json_error_cut_inside_a_character_is_utf8():
    #  The library's error text is cut to its buffer; this endpoint puts
    #  the cut in the middle of an e-acute
    endpoint = "bogus://x" + "\u00e9" * 120
    fake = FakeBroker(hello_reply=((WELCOME,), dict(
        version=6, nick="jsoncut", token="t", pub_port=0, endpoint=endpoint,
        heartbeat_ms=1000, timeout_ms=10000, max_text=4096, resumed=0)))
    rc, out, err = _run_bytes(zchat_argv(fake.endpoint, "jsoncut", [],
                                         ["--json", "--timeout", str(T(3))]),
                              b'{"cmd":"join","room":"r","id":1}\n', T(20))
    events = _events(out)
    errs = [e for e in events if e.get("type") == "error" and e.get("id") == 1]
    check(len(errs) == 1 and "PUB endpoint bogus://x\u00e9" in errs[0].get("message", ""),
          "the join should fail with the endpoint named: %r" % events)
    fake.check_ok()


def test_json_64_bit_numbers_are_exact():
    seq = 2 ** 53 + 1
    ts = 2 ** 64 - 1

    def script(fake, msg):
        if msg["type"] == SAY:
            fake.reply(msg, ACK, room=msg["room"], seq=seq, ts=ts)
            return True
        return False

    fake = FakeBroker(on_request=script)
    rc, out, err = _run_bytes(zchat_argv(fake.endpoint, "jsonnum", ["ops"],
                                         ["--json", "--timeout", str(T(5))]),
                              b'{"cmd":"say","text":"hi","id":7}\n', T(20))
    events = _events(out)
    acks = [e for e in events if e.get("type") == "ack" and e.get("id") == 7]
    check(len(acks) == 1 and acks[0].get("seq") == seq and acks[0].get("ts") == ts,
          "the ack should carry seq %d and ts %d exactly: %r" % (seq, ts, out))
    check(rc == 0, "every send was acknowledged: exit 0, not %s (%r)" % (rc, err))
    fake.check_ok()
