"""Test whether a request may be as big as the protocol version of its
session allows (PROTOCOL.md 2 and 8): a libzchat client gathers its SAYs
into SAYS of up to 64 KiB when the broker speaks version 3, and keeps them
64 bytes within max_text + 4 KiB when it speaks version 2; the broker names
version 3 to a client that speaks it (and 2 to one that speaks 2), takes a
SAYS of 69,632 bytes whatever its --max-text, also over CURVE (33 bytes more
on the wire), answers 413 to a body over that but within 64 bytes, and cuts
off a peer whose frame is bigger still while others go on."""

import zmq
from zmq.utils.monitor import recv_monitor_message

import os

from harness import (ACK, ACKS, ERROR, SAY, SAYS, TMP, Broker, FakeBroker,
                     RawDealer, check, driver, encode, fail, keygen, read_cert, T)

COST = 8

MAX_REQUEST = 65536 + 4096          # ZCHAT_MAX_REQUEST
SLACK = 64                          # ZCHAT_TRANSPORT_SLACK
TEXT = 1000                         # bytes of each text in these runs


def _driver(endpoint, nick):
    return driver(endpoint, nick)


def _says_sizes(version, count):
    """Sizes of the SAYS a libzchat client sends for a burst of count
    1,000-byte texts, to a fake broker speaking version with max_text 4096
    that acknowledges every SAY and SAYS at once."""
    sizes = []
    seq = [0]

    def on_request(fake, msg):
        if msg["type"] == SAYS:
            sizes.append(fake.last_size)
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

    fake = FakeBroker(on_request=on_request, version=version)
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
    check(max(small) <= 4096 + 4096 - SLACK,
          "version 2: a SAYS over max_text + 4 KiB - 64: %r" % small)


def _says_body(room, first_id, total, text_size=900):
    """(body, count): a SAYS of exactly total bytes, texts of text_size
    bytes but the last, which is shorter (all within --max-text 1000)."""
    head = len(encode(SAYS, 0, items=[]))
    item = len(encode(SAYS, 0, items=[dict(id=1, room=room, kind=0, text="")])) - head
    count = (total - head) // (item + text_size)
    rest = total - head - count * (item + text_size)       # for the last item
    if rest < item + 1:
        count -= 1
        rest += item + text_size
    items = [dict(id=first_id + i, room=room, kind=0, text="s" * text_size)
             for i in range(count)]
    items.append(dict(id=first_id + count, room=room, kind=0, text="s" * (rest - item)))
    body = encode(SAYS, 0, items=items)
    check(len(body) == total, "SAYS of %d bytes, wanted %d" % (len(body), total))
    return body, count + 1


def _acked_seqs(d, count):
    seqs = []
    while len(seqs) < count:
        m = d.recv(T(5))
        if m is None:
            fail("only %d of %d acknowledged" % (len(seqs), count))
        check(m["type"] == ACKS, "expected ACKS, got %r" % m)
        seqs += [item["seq"] for item in m["items"]]
    return seqs


def test_broker_takes_requests_up_to_the_limit():
    b = Broker("--max-text", "1000")
    #  The newest version both speak
    for spoken, named in ((2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (9, 6)):
        d = RawDealer(b.router)
        m = d.hello("v%d" % spoken, version=spoken)
        check(m["version"] == named, "HELLO version %d got WELCOME %r" % (spoken, m))
        d.close()

    d = RawDealer(b.router)
    d.hello("wide", version=3)
    d.join("wide")
    #  A SAYS of exactly 69,632 bytes (texts of 900 bytes): far over
    #  --max-text + 4 KiB. Every item acknowledged, in order.
    body, count = _says_body("wide", 1000, MAX_REQUEST)
    d.send(body)
    check(_acked_seqs(d, count) == list(range(1, count + 1)), "seqs of the widest SAYS")

    #  One byte over the limit, within what the transport may add: 413.
    d.send(_says_body("wide", 2000, MAX_REQUEST + 1)[0])
    m = d.recv(T(5))
    check(m is not None and m["type"] == ERROR and m["code"] == 413,
          "a body 1 byte over the limit: %r" % m)

    #  Over the limit and the slack: that peer is cut off, the other goes on.
    bad = RawDealer(b.router)
    bad.hello("over", version=3)
    bad.join("wide")
    mon = bad.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    bad.send(_says_body("wide", 5000, MAX_REQUEST + SLACK + 1)[0])
    if not mon.poll(int(T(5) * 1000)):
        fail("a peer sending %d bytes was not disconnected" % (MAX_REQUEST + SLACK + 1))
    ev = recv_monitor_message(mon)
    check(ev["event"] == zmq.EVENT_DISCONNECTED, "monitor event %r" % ev)
    bad.sock.disable_monitor()
    mon.close(0)
    bad.close()
    m = d.say("wide", "still here")
    check(m["type"] == ACK and m["seq"] == count + 1,
          "the other session after the cut: %r" % m)
    b.check_alive()


def test_widest_request_over_curve():
    """CURVE makes a frame 33 bytes longer than its body: the widest body
    still gets through."""
    d = os.path.join(TMP, "keys-limit")
    os.makedirs(d, exist_ok=True)
    server = keygen(os.path.join(d, "server"), name="server")
    server_pub = read_cert(server)[0]
    b = Broker("--cert", server + "_secret", "--allow-any")
    public, secret = zmq.curve_keypair()
    dealer = RawDealer(b.router, curve=(public, secret, server_pub))
    dealer.hello("sealed", version=3)
    dealer.join("sealed")
    body, count = _says_body("sealed", 1, MAX_REQUEST)
    dealer.send(body)
    check(_acked_seqs(dealer, count) == list(range(1, count + 1)),
          "seqs of the widest SAYS over CURVE")
    b.check_alive()
