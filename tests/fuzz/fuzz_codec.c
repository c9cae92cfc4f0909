//  fuzz_codec — libFuzzer target for the wire codec (proto/zchat_msg.c).
//
//  For every input: decode it; if it decodes, walk its list, re-encode it
//  with the public encoders and require the very same bytes back (the
//  encoding is canonical: one valid body per message), then decode the
//  copy and require the same fields. Along the way the UTF-8 validator is
//  checked against a slow, obviously-correct one, and the name rules are
//  run on whatever the input holds. Any disagreement aborts, which
//  libFuzzer reports as a crash.
//
//  Built with clang -fsanitize=fuzzer,address,undefined by
//  tests/fuzz/Makefile, and without libFuzzer (plus tests/fuzz/replay.c)
//  to replay the corpus as an ordinary test.

#include "zchat_msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  Always on, whatever NDEBUG says: this is the oracle.
#define FUZZ_CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf (stderr, "fuzz_codec: %s:%d: check failed: %s\n", \
                     __FILE__, __LINE__, #cond); \
            abort (); \
        } \
    } while (0)

//  Room for the largest body the codec accepts
static uint8_t s_output [ZCHAT_MAX_FRAME];

//  --------------------------------------------------------------------------
//  Reference UTF-8 check, written for clarity rather than speed: decode
//  each code point in full, then judge it. Agrees with zchat_utf8_valid or
//  one of them is wrong.

static bool
s_utf8_reference (const uint8_t *bytes, size_t size)
{
    size_t pos = 0;
    while (pos < size) {
        uint32_t lead = bytes [pos];
        size_t length;
        uint32_t point;
        if (lead < 0x80) {
            length = 1;
            point = lead;
        }
        else
        if ((lead & 0xE0) == 0xC0) {
            length = 2;
            point = lead & 0x1F;
        }
        else
        if ((lead & 0xF0) == 0xE0) {
            length = 3;
            point = lead & 0x0F;
        }
        else
        if ((lead & 0xF8) == 0xF0) {
            length = 4;
            point = lead & 0x07;
        }
        else
            return false;
        if (size - pos < length)
            return false;
        for (size_t i = 1; i < length; i++) {
            if ((bytes [pos + i] & 0xC0) != 0x80)
                return false;
            point = (point << 6) | (bytes [pos + i] & 0x3F);
        }
        static const uint32_t shortest [5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (length > 1 && point < shortest [length])
            return false;           //  overlong
        if (point == 0 || point > 0x10FFFF)
            return false;
        if (point >= 0xD800 && point <= 0xDFFF)
            return false;           //  surrogate
        pos += length;
    }
    return true;
}

//  Every string the decoder filled is NUL-terminated within its array and
//  valid UTF-8.
static void
s_check_str (const char *s, size_t max)
{
    size_t len = strnlen (s, max + 1);
    FUZZ_CHECK (len <= max);
    FUZZ_CHECK (zchat_utf8_valid (s, len));
}

static void
s_check_text (const char *text, size_t text_size)
{
    FUZZ_CHECK (text_size <= ZCHAT_MAX_TEXT);
    FUZZ_CHECK (text || text_size == 0);
    FUZZ_CHECK (zchat_utf8_valid (text, text_size));
}

//  --------------------------------------------------------------------------
//  Re-encodes a decoded message with the public encoders. original_size
//  tells the two PROBE forms apart (their nick is "" in both). Returns
//  the body size, 0 if an encoder refused.

static size_t
s_reencode (const zchat_msg_t *msg, zchat_buf_t *buf, size_t original_size)
{
    size_t size = 0;
    size_t cursor = 0;
    zchat_item_t item;
    switch (msg->type) {
        case ZCHAT_HELLO:
            return zchat_encode_hello (buf, msg->id, msg->version, msg->nick,
                                       msg->token);
        case ZCHAT_WELCOME:
            return zchat_encode_welcome (buf, msg->id, msg->version, msg->nick,
                                         msg->token, msg->pub_port,
                                         msg->endpoint, msg->heartbeat_ms,
                                         msg->timeout_ms, msg->max_text,
                                         msg->flag != 0);
        case ZCHAT_BYE:
            return zchat_encode_bye (buf, msg->id);
        case ZCHAT_PING:
            return zchat_encode_ping (buf, msg->id);
        case ZCHAT_PONG:
            size = zchat_encode_pong_begin (buf, msg->id);
            while (size && zchat_msg_next_item (msg, &cursor, &item))
                size = zchat_encode_pong_add (buf, item.room, item.seq);
            return size;
        case ZCHAT_JOIN:
            return zchat_encode_join (buf, msg->id, msg->room);
        case ZCHAT_JOINED:
            return zchat_encode_joined (buf, msg->id, msg->room, msg->seq,
                                        msg->first_seq, msg->members,
                                        msg->topic);
        case ZCHAT_LEAVE:
            return zchat_encode_leave (buf, msg->id, msg->room);
        case ZCHAT_SAY:
            return zchat_encode_say (buf, msg->id, msg->room, msg->kind,
                                     msg->text, msg->text_size);
        case ZCHAT_ACK:
            return zchat_encode_ack (buf, msg->id, msg->room, msg->seq, msg->ts);
        case ZCHAT_DM:
            return zchat_encode_dm (buf, msg->id, msg->nick, msg->kind,
                                    msg->text, msg->text_size);
        case ZCHAT_DELIVER:
            return zchat_encode_deliver (buf, msg->id, msg->nick, msg->kind,
                                         msg->ts, msg->text, msg->text_size);
        case ZCHAT_NICK:
            return zchat_encode_nick (buf, msg->id, msg->nick);
        case ZCHAT_WHO:
            return zchat_encode_who (buf, msg->id, msg->room);
        case ZCHAT_MEMBERS:
            size = zchat_encode_members_begin (buf, msg->id, msg->room);
            while (size && zchat_msg_next_item (msg, &cursor, &item))
                size = zchat_encode_members_add (buf, item.nick);
            return size;
        case ZCHAT_ROOMS:
            return zchat_encode_rooms (buf, msg->id);
        case ZCHAT_ROOMLIST:
            size = zchat_encode_roomlist_begin (buf, msg->id);
            while (size && zchat_msg_next_item (msg, &cursor, &item))
                size = zchat_encode_roomlist_add (buf, item.room, item.members,
                                                  item.seq, item.topic);
            return size;
        case ZCHAT_TOPIC:
            return zchat_encode_topic (buf, msg->id, msg->room, msg->flag != 0,
                                       msg->topic);
        case ZCHAT_TOPICIS:
            return zchat_encode_topicis (buf, msg->id, msg->room, msg->topic,
                                         msg->nick, msg->ts);
        case ZCHAT_HISTORY:
            FUZZ_CHECK (msg->limit <= UINT16_MAX);
            return zchat_encode_history (buf, msg->id, msg->room, msg->from_seq,
                                         msg->to_seq, (uint16_t) msg->limit);
        case ZCHAT_PAGE:
            //  Begun with the opposite flag and then set, as the broker
            //  does, so zchat_encode_page_set_more is exercised too
            size = zchat_encode_page_begin (buf, msg->id, msg->room,
                                            msg->first_seq, msg->seq,
                                            msg->flag == 0);
            while (size && zchat_msg_next_item (msg, &cursor, &item))
                size = zchat_encode_page_add (buf, item.seq, item.ts, item.nick,
                                              item.kind, item.text,
                                              item.text_size);
            zchat_encode_page_set_more (buf, msg->flag != 0);
            return size;
        case ZCHAT_PROBE:
            size = zchat_encode_probe (buf, msg->id, msg->room, NULL);
            if (size != original_size)
                size = zchat_encode_probe (buf, msg->id, msg->room, msg->nick);
            return size;
        case ZCHAT_OK:
            return zchat_encode_ok (buf, msg->id);
        case ZCHAT_ERROR:
            return zchat_encode_error (buf, msg->id, msg->code, msg->retry_ms,
                                       msg->reason);
        case ZCHAT_MESSAGE:
            return zchat_encode_message (buf, msg->id, msg->room, msg->seq,
                                         msg->ts, msg->nick, msg->kind,
                                         msg->text, msg->text_size);
        case ZCHAT_EVENT:
            return zchat_encode_event (buf, msg->id, msg->room, msg->ts,
                                       msg->event, msg->nick, msg->topic);
        case ZCHAT_ACKS: {
            //  Copied from ACK bodies, the broker's way
            size = zchat_encode_acks_begin (buf);
            uint8_t ack_data [ZCHAT_HEADER_SIZE + 1 + ZCHAT_MAX_ROOM + 16];
            while (size && zchat_msg_next_item (msg, &cursor, &item)) {
                zchat_buf_t ack;
                zchat_buf_init (&ack, ack_data, sizeof ack_data);
                size_t ack_size = zchat_encode_ack (&ack, item.id, item.room, item.seq,
                                                    item.ts);
                FUZZ_CHECK (ack_size > 0);
                size = zchat_encode_acks_append (buf, ack_data, ack_size);
            }
            return size;
        }
        case ZCHAT_ACKRUNS:
            size = zchat_encode_ackruns_begin (buf);
            while (size && zchat_msg_next_item (msg, &cursor, &item)) {
                FUZZ_CHECK (item.count >= 1);
                FUZZ_CHECK (item.id <= UINT64_MAX - (item.count - 1));
                FUZZ_CHECK (item.seq <= UINT64_MAX - (item.count - 1));
                size = zchat_encode_ackruns_add (buf, item.id, item.count, item.room,
                                                 item.seq, item.ts);
            }
            return size;
        case ZCHAT_SAYS: {
            //  From the views the broker reads, which agree with the items
            size = zchat_encode_says_begin (buf);
            size_t view_cursor = 0;
            zchat_say_t say;
            while (size && zchat_msg_next_say (msg, &view_cursor, &say)) {
                FUZZ_CHECK (zchat_msg_next_item (msg, &cursor, &item));
                FUZZ_CHECK (say.id == item.id && say.kind == item.kind);
                FUZZ_CHECK (say.room_size == strlen (item.room)
                            && memcmp (say.room, item.room, say.room_size) == 0);
                FUZZ_CHECK (say.text == item.text && say.text_size == item.text_size);
                char room [ZCHAT_MAX_ROOM + 1];
                memcpy (room, say.room, say.room_size);
                room [say.room_size] = 0;
                size = zchat_encode_says_add (buf, say.id, room, say.kind, say.text,
                                              say.text_size);
            }
            FUZZ_CHECK (view_cursor == cursor);
            return size;
        }
        case ZCHAT_MESSAGES: {
            //  The broker's way: each item a batch of its own (which is
            //  also its MESSAGE), merged into the batch
            size = zchat_encode_messages_begin (buf, msg->room);
            static uint8_t one_data [ZCHAT_MAX_FRAME], single_data [ZCHAT_MAX_FRAME];
            while (size && zchat_msg_next_item (msg, &cursor, &item)) {
                zchat_buf_t one;
                zchat_buf_init (&one, one_data, sizeof one_data);
                zchat_encode_messages_begin (&one, msg->room);
                size_t one_size = zchat_encode_messages_add (&one, item.seq, item.ts,
                                                             item.nick, item.kind,
                                                             item.text, item.text_size);
                FUZZ_CHECK (one_size > 0);
                size = zchat_encode_messages_extend (buf, one_data, one_size);
                zchat_buf_t single;
                zchat_buf_init (&single, single_data, sizeof single_data);
                size_t single_size = zchat_encode_message (&single, 0, msg->room,
                                                           item.seq, item.ts, item.nick,
                                                           item.kind, item.text,
                                                           item.text_size);
                FUZZ_CHECK (zchat_encode_messages_single (one_data, one_size)
                            == single_size);
                FUZZ_CHECK (memcmp (one_data + 2, single_data, single_size) == 0);
            }
            return size;
        }
        default:
            FUZZ_CHECK (!"decoder accepted an unknown type");
            return 0;
    }
}

//  The scalar and string fields of two decodes of the same message agree.
static void
s_check_same (const zchat_msg_t *a, const zchat_msg_t *b)
{
    FUZZ_CHECK (a->type == b->type);
    FUZZ_CHECK (a->id == b->id);
    FUZZ_CHECK (a->version == b->version);
    FUZZ_CHECK (a->kind == b->kind);
    FUZZ_CHECK (a->event == b->event);
    FUZZ_CHECK (a->flag == b->flag);
    FUZZ_CHECK (a->pub_port == b->pub_port);
    FUZZ_CHECK (a->code == b->code);
    FUZZ_CHECK (a->heartbeat_ms == b->heartbeat_ms);
    FUZZ_CHECK (a->timeout_ms == b->timeout_ms);
    FUZZ_CHECK (a->max_text == b->max_text);
    FUZZ_CHECK (a->retry_ms == b->retry_ms);
    FUZZ_CHECK (a->members == b->members);
    FUZZ_CHECK (a->limit == b->limit);
    FUZZ_CHECK (a->seq == b->seq);
    FUZZ_CHECK (a->first_seq == b->first_seq);
    FUZZ_CHECK (a->from_seq == b->from_seq);
    FUZZ_CHECK (a->to_seq == b->to_seq);
    FUZZ_CHECK (a->ts == b->ts);
    FUZZ_CHECK (strcmp (a->nick, b->nick) == 0);
    FUZZ_CHECK (strcmp (a->room, b->room) == 0);
    FUZZ_CHECK (strcmp (a->token, b->token) == 0);
    FUZZ_CHECK (strcmp (a->topic, b->topic) == 0);
    FUZZ_CHECK (strcmp (a->endpoint, b->endpoint) == 0);
    FUZZ_CHECK (strcmp (a->reason, b->reason) == 0);
    FUZZ_CHECK (a->text_size == b->text_size);
    FUZZ_CHECK (a->text_size == 0 || memcmp (a->text, b->text, a->text_size) == 0);
    FUZZ_CHECK (a->item_count == b->item_count);
    FUZZ_CHECK (a->items_size == b->items_size);
    FUZZ_CHECK (a->items_size == 0 || memcmp (a->items, b->items, a->items_size) == 0);
}

//  Name rules and topic frames on a NUL-terminated prefix of the input:
//  whatever the bytes, they answer without reading past the string.
static void
s_check_names (const uint8_t *data, size_t size)
{
    char name [ZCHAT_MAX_NICK + 8];
    size_t len = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy (name, data, len);
    name [len] = 0;
    bool nick_ok = zchat_nick_valid (name);
    bool room_ok = zchat_room_valid (name);
    if (nick_ok || room_ok) {
        FUZZ_CHECK (strlen (name) >= 1 && strlen (name) <= ZCHAT_MAX_NICK);
        FUZZ_CHECK (zchat_utf8_valid (name, strlen (name)));
        FUZZ_CHECK (!strchr (name, ZCHAT_TOPIC_END));
    }
    if (room_ok) {
        uint8_t frame [ZCHAT_MAX_TOPIC_FRAME];
        size_t frame_size = zchat_topic_frame (name, frame);
        FUZZ_CHECK (frame_size == strlen (name) + 1);
        FUZZ_CHECK (frame [frame_size - 1] == ZCHAT_TOPIC_END);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    FUZZ_CHECK (zchat_utf8_valid ((const char *) data, size)
                == s_utf8_reference (data, size));
    s_check_names (data, size);

    zchat_msg_t msg;
    int rc = zchat_msg_decode (&msg, data, size);
    FUZZ_CHECK (rc >= ZCHAT_DECODE_BAD_VALUE && rc <= ZCHAT_DECODE_OK);
    FUZZ_CHECK (zchat_decode_strerror (rc) != NULL);
    if (rc != ZCHAT_DECODE_OK)
        return 0;

    FUZZ_CHECK (msg.type >= ZCHAT_HELLO && msg.type <= ZCHAT_TYPE_MAX);
    FUZZ_CHECK (strcmp (zchat_msg_type_name (msg.type), "UNKNOWN") != 0);
    s_check_str (msg.nick, ZCHAT_MAX_NICK);
    s_check_str (msg.room, ZCHAT_MAX_ROOM);
    s_check_str (msg.token, ZCHAT_MAX_TOKEN);
    s_check_str (msg.topic, ZCHAT_MAX_TOPIC);
    s_check_str (msg.endpoint, ZCHAT_MAX_ENDPOINT);
    s_check_str (msg.reason, ZCHAT_MAX_REASON);
    s_check_text (msg.text, msg.text_size);
    FUZZ_CHECK (msg.kind <= ZCHAT_KIND_ACTION);
    FUZZ_CHECK (msg.flag <= 1);
    FUZZ_CHECK (msg.item_count <= ZCHAT_MAX_ITEMS);
    if (msg.text_size)
        FUZZ_CHECK ((const uint8_t *) msg.text >= data
                    && (const uint8_t *) msg.text + msg.text_size <= data + size);
    if (msg.items_size)
        FUZZ_CHECK (msg.items >= data && msg.items + msg.items_size <= data + size);

    //  The decoder validated the list, so walking it cannot fail
    size_t cursor = 0;
    size_t count = 0;
    zchat_item_t item;
    while (zchat_msg_next_item (&msg, &cursor, &item)) {
        s_check_str (item.nick, ZCHAT_MAX_NICK);
        s_check_str (item.room, ZCHAT_MAX_ROOM);
        s_check_str (item.topic, ZCHAT_MAX_TOPIC);
        s_check_text (item.text, item.text_size);
        FUZZ_CHECK (item.kind <= ZCHAT_KIND_ACTION);
        count++;
    }
    FUZZ_CHECK (count == msg.item_count);
    FUZZ_CHECK (cursor == msg.items_size);
    if (msg.type != ZCHAT_SAYS) {
        zchat_say_t say;
        cursor = 0;
        FUZZ_CHECK (!zchat_msg_next_say (&msg, &cursor, &say));
    }

    //  Canonical: encoding what was decoded gives back the input
    zchat_buf_t buf;
    zchat_buf_init (&buf, s_output, sizeof s_output);
    size_t out_size = s_reencode (&msg, &buf, size);
    FUZZ_CHECK (out_size == size);
    FUZZ_CHECK (!buf.overflow);
    FUZZ_CHECK (memcmp (s_output, data, size) == 0);

    zchat_msg_t again;
    rc = zchat_msg_decode (&again, s_output, out_size);
    FUZZ_CHECK (rc == ZCHAT_DECODE_OK);
    s_check_same (&msg, &again);
    return 0;
}
