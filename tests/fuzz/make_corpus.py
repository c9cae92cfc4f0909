#!/usr/bin/env python3
"""make_corpus.py - write the seed corpus of the codec fuzz target.

Writes tests/fuzz/corpus/codec/: one valid body of every message type
(PROTOCOL.md section 4), lists with several and with no items, boundary
values, and a few malformed bodies that stop just short of valid, so that
libFuzzer starts from every decoder path. The bodies are built here from the
protocol document alone (a second implementation, so a seed that the C
decoder rejects points at a disagreement between the two).

Plain python3, no zmq. Output is deterministic; rerun after a protocol
change and commit the files:

    python3 tests/fuzz/make_corpus.py [OUTPUT_DIR]
"""

import os
import struct
import sys

HELLO, WELCOME, BYE, PING, PONG, JOIN, JOINED, LEAVE, SAY, ACK, DM, \
    DELIVER, NICK, WHO, MEMBERS, ROOMS, ROOMLIST, TOPIC, TOPICIS, HISTORY, \
    PAGE, PROBE, OK, ERROR, MESSAGE, EVENT, ACKS, MESSAGES, SAYS, ACKRUNS = range(1, 31)


def header(msg_type, request_id):
    return b"ZC" + struct.pack(">BQ", msg_type, request_id)


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def s(text):
    """A str: u8 length, then UTF-8 bytes."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    assert len(raw) <= 255
    return u8(len(raw)) + raw


def t(text):
    """A text: u32 length, then UTF-8 bytes."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return u32(len(raw)) + raw


def items(entries):
    return u16(len(entries)) + b"".join(entries)


TS = 1764100000123
TEXT = "h\u00e9llo w\u00f6rld \u20ac \U0001d11e"
TOPIC_TEXT = "welcome to \u201clobby\u201d"


def valid_bodies():
    """(name, body) for every message type and the accepted edge cases."""
    yield "hello", header(HELLO, 1) + u8(1) + s("alice") + s("")
    yield "hello_token", header(HELLO, 2) + u8(1) + s("alice") + s("0123456789abcdef" * 2)
    yield "welcome", (header(WELCOME, 1) + u8(1) + s("alice") + s("ab" * 16) + u16(5556)
                      + s("tcp://0.0.0.0:5556") + u32(3333) + u32(10000) + u32(4096) + u8(0))
    yield "welcome_resumed", (header(WELCOME, 2) + u8(1) + s("alice") + s("cd" * 16)
                              + u16(40124) + s("ipc:///tmp/zchat.pub") + u32(500)
                              + u32(1500) + u32(65536) + u8(1))
    yield "bye", header(BYE, 3)
    yield "ping", header(PING, 4)
    yield "pong", header(PONG, 4) + items([s("lobby") + u64(42), s("ops") + u64(2**64 - 1)])
    yield "pong_empty", header(PONG, 5) + items([])
    yield "join", header(JOIN, 6) + s("lobby")
    yield "joined", (header(JOINED, 6) + s("lobby") + u64(1000) + u64(17) + u32(3)
                     + s(TOPIC_TEXT))
    yield "leave", header(LEAVE, 7) + s("lobby")
    yield "say", header(SAY, 8) + s("lobby") + u8(0) + t("hello, world")
    yield "say_action_utf8", header(SAY, 9) + s("lobby") + u8(1) + t(TEXT)
    yield "say_empty", header(SAY, 10) + s("lobby") + u8(0) + t("")
    yield "ack", header(ACK, 8) + s("lobby") + u64(1001) + u64(TS)
    yield "ack_dm", header(ACK, 11) + s("") + u64(0) + u64(TS)
    yield "dm", header(DM, 11) + s("bob") + u8(0) + t("psst")
    yield "deliver", header(DELIVER, 0) + s("alice") + u8(1) + u64(TS) + t(TEXT)
    yield "nick", header(NICK, 12) + s("{alice}|^`_-")
    yield "who", header(WHO, 13) + s("ops")
    yield "members", header(MEMBERS, 13) + s("ops") + items([s("alice"), s("bob"), s("[c]")])
    yield "members_empty", header(MEMBERS, 14) + s("ops") + items([])
    yield "rooms", header(ROOMS, 15)
    yield "roomlist", header(ROOMLIST, 15) + items([
        s("lobby") + u32(3) + u64(1001) + s(TOPIC_TEXT),
        s("ops") + u32(1) + u64(0) + s(""),
    ])
    yield "roomlist_empty", header(ROOMLIST, 16) + items([])
    yield "topic_get", header(TOPIC, 17) + s("lobby") + u8(0) + s("")
    yield "topic_set", header(TOPIC, 18) + s("lobby") + u8(1) + s(TOPIC_TEXT)
    yield "topicis", header(TOPICIS, 18) + s("lobby") + s(TOPIC_TEXT) + s("alice") + u64(TS)
    yield "history", header(HISTORY, 19) + s("lobby") + u64(5) + u64(0) + u16(500)
    yield "history_last", header(HISTORY, 20) + s("lobby") + u64(0) + u64(0) + u16(65535)
    yield "page", header(PAGE, 19) + s("lobby") + u64(1) + u64(1001) + u8(1) + items([
        u64(5) + u64(TS) + s("alice") + u8(0) + t("first"),
        u64(6) + u64(TS + 1) + s("bob") + u8(1) + t("waves"),
        u64(7) + u64(TS + 2) + s("carol") + u8(0) + t(TEXT),
    ])
    yield "page_empty", header(PAGE, 20) + s("lobby") + u64(0) + u64(0) + u8(0) + items([])
    yield "probe_request", header(PROBE, 21) + s("lobby")
    yield "probe_published", header(PROBE, 0) + s("lobby") + s("alice")
    # Version 5: a request with a tag, in the layout of the published form
    yield "probe_tagged", header(PROBE, 21) + s("lobby") + s("0123456789abcdef")
    yield "ok", header(OK, 22)
    yield "error", header(ERROR, 23) + u16(429) + u32(250) + s("rate limited: slow down")
    yield "error_unsolicited", header(ERROR, 0) + u16(400) + u32(0) + s("malformed body")
    yield "message", (header(MESSAGE, 0) + s("lobby") + u64(1002) + u64(TS) + s("alice")
                      + u8(0) + t("hello, world"))
    # Version 2 batches
    yield "acks", header(ACKS, 0) + items([
        u64(5) + s("lobby") + u64(1) + u64(TS),
        u64(6) + s("ops") + u64(2**64 - 1) + u64(TS + 1),
        u64(7) + s("") + u64(0) + u64(TS + 2),
    ])
    yield "messages", header(MESSAGES, 0) + s("lobby") + items([
        u64(1003) + u64(TS) + s("alice") + u8(0) + t("one"),
        u64(1004) + u64(TS) + s("bob") + u8(1) + t("waves"),
        u64(1005) + u64(TS + 1) + s("carol") + u8(0) + t(TEXT),
    ])
    yield "says", header(SAYS, 0) + items([
        u64(40) + s("lobby") + u8(0) + t("one"),
        u64(41) + s("ops") + u8(1) + t("waves"),
        u64(42) + s("lobby") + u8(0) + t(TEXT),
    ])
    # Version 4
    yield "ackruns", header(ACKRUNS, 0) + items([
        u64(5) + u32(300) + s("lobby") + u64(1) + u64(TS),
        u64(2**64 - 2) + u32(2) + s("ops") + u64(2**64 - 2) + u64(TS + 1),
    ])
    for event, detail in ((1, ""), (2, ""), (3, ""), (4, "alice2"), (5, TOPIC_TEXT)):
        yield "event_%d" % event, (header(EVENT, 0) + s("lobby") + u64(TS) + u8(event)
                                   + s("alice") + s(detail))
    # Boundary values: each at its limit, still valid
    yield "edge_nick_32", header(NICK, 30) + s("n" * 32)
    yield "edge_room_32", header(JOIN, 31) + s("r" * 32)
    yield "edge_token_64", header(HELLO, 32) + u8(1) + s("alice") + s("t" * 64)
    yield "edge_topic_255", header(TOPIC, 33) + s("lobby") + u8(1) + s("p" * 255)
    yield "edge_utf8_max", header(SAY, 34) + s("lobby") + u8(0) + t("\U0010ffff\uffff\u0800\u0080")
    yield "edge_ids_max", header(ACK, 2**64 - 1) + s("lobby") + u64(2**64 - 1) + u64(2**64 - 1)


def malformed_bodies():
    """(name, body) that a decoder must reject, one step from valid."""
    yield "bad_empty", b""
    yield "bad_signature", b"ZX" + header(PING, 1)[2:]
    yield "bad_type_31", b"ZC" + u8(31) + u64(1)
    yield "bad_ackruns_empty_run", header(ACKRUNS, 0) + items([
        u64(5) + u32(0) + s("lobby") + u64(1) + u64(TS)])
    yield "bad_ackruns_wrap", header(ACKRUNS, 0) + items([
        u64(2**64 - 1) + u32(2) + s("lobby") + u64(1) + u64(TS)])
    yield "bad_says_id", header(SAYS, 9) + items([u64(1) + s("lobby") + u8(0) + t("x")])
    yield "bad_acks_item_short", header(ACKS, 0) + u16(2) + u64(5) + s("lobby") + u64(1) \
        + u64(TS) + u64(6) + s("lobby") + u64(2)
    yield "bad_messages_kind", header(MESSAGES, 0) + s("lobby") + items([
        u64(1) + u64(TS) + s("alice") + u8(2) + t("x")])
    yield "bad_truncated_text", header(SAY, 1) + s("lobby") + u8(0) + u32(100) + b"short"
    yield "bad_trailing", header(PING, 1) + b"\x00"
    # One byte short: a length checked with an off-by-one reads past the end
    yield "bad_text_one_short", header(SAY, 1) + s("lobby") + u8(0) + u32(6) + b"hello"
    yield "bad_room_one_short", header(JOIN, 1) + u8(6) + b"lobby"
    yield "bad_nick_33", header(NICK, 1) + s("n" * 33)
    yield "bad_kind_2", header(SAY, 1) + s("lobby") + u8(2) + t("hi")
    yield "bad_event_6", header(EVENT, 0) + s("lobby") + u64(TS) + u8(6) + s("alice") + s("")
    yield "bad_utf8_surrogate", header(JOIN, 1) + s(b"\xed\xa0\x80")
    yield "bad_utf8_overlong", header(SAY, 1) + s("lobby") + u8(0) + t(b"\xc0\xaf")
    yield "bad_nul", header(SAY, 1) + s("lobby") + u8(0) + t(b"a\x00b")
    yield "bad_items_4097", header(MEMBERS, 1) + s("ops") + u16(4097) + s("a")


def record(peer, body, flush=False, expire=False, curve=False, curve_server=False,
           closed=False, relayed=False, probe=False):
    """One record of a broker fuzz input (broker/zchat_testbed.h): a control
    byte (peer in bits 0-1, flush after, expire after, CURVE key, on the
    first record a CURVE server, the peer's connection closes after, sent
    through a relay; the last two together: a new connection's probe
    instead of the body), a u16 length, the body."""
    control = peer | (4 if flush else 0) | (8 if expire else 0) \
        | (16 if curve else 0) | (32 if curve_server else 0) \
        | (64 if closed or probe else 0) | (128 if relayed or probe else 0)
    return u8(control) + u16(len(body)) + body


def broker_conversations():
    """(name, input) for the broker target: whole conversations."""
    alice = [
        record(0, header(HELLO, 1) + u8(1) + s("alice") + s("")),
        record(1, header(HELLO, 2) + u8(1) + s("bob") + s("")),
        record(0, header(JOIN, 3) + s("lobby")),
        record(1, header(JOIN, 4) + s("lobby")),
        record(0, header(SAY, 5) + s("lobby") + u8(0) + t("hello")),
        record(0, header(SAY, 5) + s("lobby") + u8(0) + t("hello"), flush=True),
        record(1, header(DM, 6) + s("alice") + u8(1) + t(TEXT)),
        record(1, header(HISTORY, 7) + s("lobby") + u64(0) + u64(0) + u16(10)),
        record(0, header(TOPIC, 8) + s("lobby") + u8(1) + s(TOPIC_TEXT)),
        record(0, header(WHO, 9) + s("lobby")),
        record(1, header(ROOMS, 10)),
        record(1, header(PROBE, 11) + s("lobby")),
        record(0, header(NICK, 12) + s("alice2")),
        record(0, header(PING, 13), expire=True),
        record(1, header(BYE, 14)),
    ]
    yield "conversation", b"".join(alice)
    takeover = [
        record(0, header(HELLO, 1) + u8(1) + s("carol") + s("")),
        record(2, header(HELLO, 2) + u8(1) + s("carol") + s("00" * 16)),
        record(3, header(JOIN, 3) + s("lobby")),
        record(2, header(LEAVE, 4) + s("lobby")),
    ]
    yield "takeover_and_strangers", b"".join(takeover)
    curve = [
        record(0, header(HELLO, 1) + u8(1) + s("dave") + s(""), curve=True, curve_server=True),
        record(1, header(HELLO, 2) + u8(1) + s("dave") + s("")),
        record(1, header(HELLO, 3) + u8(1) + s("erin") + s(""), curve=True),
    ]
    yield "curve_nicks", b"".join(curve)
    # Batches: a burst from a version 2 sender, a version 4 one and a version
    # 1 one (ACKS, ACKRUNS and single ACKs), one flush
    batch = [
        record(0, header(HELLO, 1) + u8(2) + s("frank") + s("")),
        record(1, header(HELLO, 2) + u8(4) + s("grace") + s("")),
        record(2, header(HELLO, 5) + u8(1) + s("hank") + s("")),
        record(0, header(JOIN, 3) + s("lobby")),
        record(1, header(JOIN, 4) + s("lobby")),
        record(2, header(JOIN, 6) + s("lobby")),
    ] + [record(i % 3, header(SAY, 10 + i) + s("lobby") + u8(i % 2) + t("m%d" % i))
         for i in range(9)] + [
        record(0, header(SAYS, 0) + items([
            u64(40 + i) + s("lobby" if i != 2 else "elsewhere") + u8(0) + t("s%d" % i)
            for i in range(4)])),
        record(0, header(PING, 30), flush=True)]
    yield "batches", b"".join(batch)
    # Probes (version 5): a tagged one, published on 0xFF + tag; untagged
    # ones and a version 4 session's second string, on the room's topic
    probes = [
        record(0, header(HELLO, 1) + u8(5) + s("ivy") + s("")),
        record(1, header(HELLO, 2) + u8(4) + s("jack") + s("")),
        record(0, header(JOIN, 3) + s("lobby")),
        record(1, header(JOIN, 4) + s("lobby")),
        record(0, header(PROBE, 5) + s("lobby") + s("0123456789abcdef")),
        record(0, header(PROBE, 6) + s("lobby") + s("")),
        record(0, header(PROBE, 7) + s("lobby")),
        record(1, header(PROBE, 8) + s("lobby") + s("0123456789abcdef")),
        record(2, header(PROBE, 9) + s("lobby") + s("0123456789abcdef")),
    ]
    yield "probes", b"".join(probes)
    # Connections (version 6): sessions bound to their connections; one
    # closes, a greeting read after its close, the checks past an expiry
    # tick, a new connection's probe, a relayed greeting answered 5
    connections = [
        record(0, header(HELLO, 1) + u8(6) + s("kim") + s("")),
        record(1, header(HELLO, 2) + u8(6) + s("lee") + s("")),
        record(0, header(JOIN, 3) + s("lobby")),
        record(1, header(JOIN, 4) + s("lobby")),
        record(0, header(PING, 5), closed=True),
        record(0, header(HELLO, 6) + u8(6) + s("kim") + s("")),
        record(1, header(PING, 7), expire=True),
        record(0, header(PING, 8), probe=True),
        record(2, header(HELLO, 9) + u8(6) + s("mo") + s(""), relayed=True),
        record(2, header(PING, 10), probe=True),
        record(1, header(PING, 11), expire=True),
    ]
    yield "connections", b"".join(connections)
    yield "garbage", b"".join(record(i % 4, body) for i, (_, body) in enumerate(malformed_bodies()))


def write(out, pairs):
    os.makedirs(out, exist_ok=True)
    written = 0
    for name, body in pairs:
        with open(os.path.join(out, name), "wb") as f:
            f.write(body)
        written += 1
    print("make_corpus: %d seeds in %s" % (written, out))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    write(os.path.join(here, "corpus", "codec"),
          list(valid_bodies()) + list(malformed_bodies()))
    write(os.path.join(here, "corpus", "broker"), broker_conversations())


if __name__ == "__main__":
    main()
