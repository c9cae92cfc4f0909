"""Test whether a request may be as big as the protocol version of its
session allows (PROTOCOL.md 2 and 8): a libzchat client gathers its SAYs
into SAYS of up to 64 KiB when the broker speaks version 3, and keeps them
within max_text + 4 KiB when it speaks version 2; the broker names version 3
to a client that speaks it (and 2 to one that speaks 2), takes a SAYS of up
to 69,632 bytes whatever its --max-text, and cuts off a peer whose frame is
one byte bigger while others go on."""

import zmq
from zmq.utils.monitor import recv_monitor_message

from harness import (ACK, ACKS, SAY, SAYS, WELCOME, Broker, Proc, RawDealer, check, encode,
                     fail, require_binary, T)
from test_client_hardening import FakeBroker

COST = 8

MAX_REQUEST = 65536 + 4096          # ZCHAT_MAX_REQUEST
TEXT = 1000                         # bytes of each text in these runs


def _driver(endpoint, nick):
    exe = require_binary("zchat-driver")
    p = Proc([exe, "--server", endpoint, "--nick", nick, "--timeout", "20000"],
             "driver-" + nick)
    p.wait_for(lambda e: e.get("type") == "ready", T(15), desc="ready")
    return p


def _says_sizes(version, count):
    """Sizes of the SAYS a libzchat client sends for a burst of count
    1,000-byte texts, to a fake broker speaking version with max_text 4096
    that acknowledges every SAY and SAYS at once."""
    sizes = []
    seq = [0]

    def on_request(fake, msg):
        if msg["type"] == SAYS:
            sizes.append(len(encode(SAYS, msg["id"], items=msg["items"])))
            items = []
            for item in msg["items"]:
                seq[0] += 1
                items.append(dict(id=item["id"], room=item["room"], seq=seq[0], ts=1))
            fake.router.send_multipart([fake.peer, b"", encode(ACKS, 0, items=items)])
            return True
        if msg["type"] == SAY:
            seq[0] += 1
            fake.reply(msg, ACK, room=msg["room"], seq=seq[0], ts=1)
            return True
        return False

    fake = FakeBroker(on_request=on_request)
    fake.hello_reply = ((WELCOME,), dict(version=version, nick="poster", token="t0k3n",
                                         pub_port=fake.pub_port, endpoint="",
                                         heartbeat_ms=1000, timeout_ms=10000,
                                         max_text=4096, resumed=0))
    poster = _driver(fake.endpoint, "poster")
    poster.write("join-send-only big")
    poster.wait_for(lambda e: e.get("type") == "joined", T(10), desc="joined")
    poster.write("burst big %d %d" % (count, TEXT))
    poster.wait_count(lambda e: e.get("type") == "ack", count, T(20),
                      desc="the %d acknowledgements" % count)
    fake.check_ok()
    return sizes


def test_client_says_follow_the_version():
    big = _says_sizes(3, 300)
    check(big, "no SAYS reached the version 3 broker")
    check(max(big) > 4096 + 4096,
          "version 3: SAYS stayed within max_text + 4 KiB: %r" % big)
    check(max(big) <= 65536, "version 3: a SAYS over 64 KiB: %r" % big)
    small = _says_sizes(2, 300)
    check(small, "no SAYS reached the version 2 broker")
    check(max(small) <= 4096 + 4096,
          "version 2: a SAYS over max_text + 4 KiB: %r" % small)


def _says_body(room, first_id, count, text_size):
    items = [dict(id=first_id + i, room=room, kind=0, text="s" * text_size)
             for i in range(count)]
    return encode(SAYS, 0, items=items)


def test_broker_takes_requests_up_to_the_limit():
    b = Broker("--max-text", "1000")
    #  The newest version both speak
    for spoken, named in ((2, 2), (3, 3), (9, 3)):
        d = RawDealer(b.router)
        m = d.hello("v%d" % spoken, version=spoken)
        check(m["version"] == named, "HELLO version %d got WELCOME %r" % (spoken, m))
        d.close()

    d = RawDealer(b.router)
    d.hello("wide", version=3)
    d.join("wide")
    #  A SAYS of 67 texts of 1,000 bytes: far over --max-text + 4 KiB,
    #  within 69,632 bytes. Every item acknowledged, in order.
    body = _says_body("wide", 1000, 67, TEXT)
    check(4096 + 1000 < len(body) <= MAX_REQUEST, "SAYS of %d bytes" % len(body))
    d.send(body)
    seqs = []
    while len(seqs) < 67:
        m = d.recv(T(5))
        if m is None:
            fail("only %d of 67 acknowledged" % len(seqs))
        check(m["type"] == ACKS, "expected ACKS, got %r" % m)
        seqs += [item["seq"] for item in m["items"]]
    check(seqs == list(range(1, 68)), "seqs %r" % seqs)

    #  One byte over the limit: that peer is cut off, the other goes on.
    bad = RawDealer(b.router)
    bad.hello("over", version=3)
    bad.join("wide")
    mon = bad.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    over = _says_body("wide", 5000, 67, TEXT)
    over += b"x" * (MAX_REQUEST + 1 - len(over))
    check(len(over) == MAX_REQUEST + 1, "frame of %d bytes" % len(over))
    bad.send(over)
    if not mon.poll(int(T(5) * 1000)):
        fail("a peer sending %d bytes was not disconnected" % len(over))
    ev = recv_monitor_message(mon)
    check(ev["event"] == zmq.EVENT_DISCONNECTED, "monitor event %r" % ev)
    bad.sock.disable_monitor()
    mon.close(0)
    bad.close()
    m = d.say("wide", "still here")
    check(m["type"] == ACK and m["seq"] == 68, "the other session after the cut: %r" % m)
    b.check_alive()
