//  zchat_msg — the zchat wire codec: decoding from plain buffers, encoding
//  into caller memory, the name rules, and the codec's self test.
//
//  The decoder is the broker's first line of defence: every byte it sees
//  comes from the network. It keeps a cursor over (data, size) and compares
//  the bytes remaining with the bytes wanted, as integers, before every
//  read, so no length from the wire ever takes part in pointer arithmetic
//  before it has been checked. Every length is capped by its named limit,
//  every string is checked for UTF-8 and NUL, and lists are validated
//  whole, so that code iterating them later has nothing left to check.
//
//  This file needs only the C library: the fuzzer builds it alone.

#include "zchat_msg.h"

#include <assert.h>
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  ---------------------------------------------------------------------
//  Decoding

//  A read cursor. Invariant: pos <= size, so size - pos never wraps.
typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos;
} reader_t;

//  Propagates a failed read to the decoder's single exit.
#define READ(expr) \
    do { if ((rc = (expr)) != ZCHAT_DECODE_OK) goto malformed; } while (0)

static int
s_get_u8 (reader_t *r, uint8_t *value)
{
    if (r->size - r->pos < 1)
        return ZCHAT_DECODE_TRUNCATED;
    *value = r->data [r->pos++];
    return ZCHAT_DECODE_OK;
}

//  The fixed sizes load whole big-endian words, n bytes copied out after
//  one bounds check: the decoder runs on every message the broker and a
//  client handle.
static int
s_get_word (reader_t *r, void *word, size_t n)
{
    if (r->size - r->pos < n)
        return ZCHAT_DECODE_TRUNCATED;
    memcpy (word, r->data + r->pos, n);
    r->pos += n;
    return ZCHAT_DECODE_OK;
}

static int
s_get_u16 (reader_t *r, uint16_t *value)
{
    uint16_t v = 0;
    int rc = s_get_word (r, &v, 2);
    *value = be16toh (v);
    return rc;
}

static int
s_get_u32 (reader_t *r, uint32_t *value)
{
    uint32_t v = 0;
    int rc = s_get_word (r, &v, 4);
    *value = be32toh (v);
    return rc;
}

static int
s_get_u64 (reader_t *r, uint64_t *value)
{
    uint64_t v = 0;
    int rc = s_get_word (r, &v, 8);
    *value = be64toh (v);
    return rc;
}

//  A u8 that holds one of the booleans (resumed, set, more): anything but
//  0 and 1 is malformed, so every valid body has exactly one encoding.
static int
s_get_flag (reader_t *r, uint8_t *value)
{
    int rc = s_get_u8 (r, value);
    if (rc == ZCHAT_DECODE_OK && *value > 1)
        rc = ZCHAT_DECODE_BAD_VALUE;
    return rc;
}

static int
s_get_kind (reader_t *r, uint8_t *value)
{
    int rc = s_get_u8 (r, value);
    if (rc == ZCHAT_DECODE_OK
    &&  *value != ZCHAT_KIND_TEXT && *value != ZCHAT_KIND_ACTION)
        rc = ZCHAT_DECODE_BAD_VALUE;
    return rc;
}

//  --------------------------------------------------------------------------
//  Reads a str into dest, which has room for max bytes plus the NUL. The
//  length is checked against max before the bytes are looked at, so an
//  over-long field is reported as such even when it is also truncated.
//  With validate false only the bounds are checked (for lists that the
//  decoder has already validated); with dest NULL nothing is copied (the
//  decoder validating a list).

static int
s_get_str (reader_t *r, char *dest, size_t max, bool validate)
{
    if (r->size - r->pos < 1)
        return ZCHAT_DECODE_TRUNCATED;
    size_t len = r->data [r->pos];
    if (len > max)
        return ZCHAT_DECODE_TOO_LONG;
    if (r->size - r->pos - 1 < len)
        return ZCHAT_DECODE_TRUNCATED;
    const uint8_t *bytes = r->data + r->pos + 1;
    if (validate && !zchat_utf8_valid ((const char *) bytes, len))
        return ZCHAT_DECODE_BAD_UTF8;
    if (dest) {
        memcpy (dest, bytes, len);
        dest [len] = 0;
    }
    r->pos += 1 + len;
    return ZCHAT_DECODE_OK;
}

//  --------------------------------------------------------------------------
//  Reads a text: a view into the buffer, not copied and not NUL-terminated.

static int
s_get_text (reader_t *r, const char **text, size_t *text_size, bool validate)
{
    uint32_t len = 0;
    int rc = s_get_u32 (r, &len);
    if (rc != ZCHAT_DECODE_OK)
        return rc;
    if (len > ZCHAT_MAX_TEXT)
        return ZCHAT_DECODE_TOO_LONG;
    if (r->size - r->pos < len)
        return ZCHAT_DECODE_TRUNCATED;
    const char *bytes = (const char *) r->data + r->pos;
    if (validate && !zchat_utf8_valid (bytes, len))
        return ZCHAT_DECODE_BAD_UTF8;
    *text = bytes;
    *text_size = len;
    r->pos += len;
    return ZCHAT_DECODE_OK;
}

//  --------------------------------------------------------------------------
//  Reads one list entry of a message of the given type. Used twice: by the
//  decoder to validate the whole list (item NULL: nothing kept), and by
//  zchat_msg_next_item, which skips the UTF-8 check the decoder already
//  did but still checks bounds, so even a hand-made zchat_msg_t cannot
//  make it read out of its items.

static int
s_get_item (reader_t *r, uint8_t type, zchat_item_t *item, bool validate)
{
    int rc = ZCHAT_DECODE_OK;
    //  The decoder validating a list keeps no item: numbers go to scratch,
    //  strings nowhere
    zchat_item_t scratch;
    char *room = item? item->room: NULL;
    char *nick = item? item->nick: NULL;
    char *topic = item? item->topic: NULL;
    if (!item)
        item = &scratch;
    switch (type) {
        case ZCHAT_PONG:
            READ (s_get_str (r, room, ZCHAT_MAX_ROOM, validate));
            READ (s_get_u64 (r, &item->seq));
            break;
        case ZCHAT_MEMBERS:
            READ (s_get_str (r, nick, ZCHAT_MAX_NICK, validate));
            break;
        case ZCHAT_ROOMLIST:
            READ (s_get_str (r, room, ZCHAT_MAX_ROOM, validate));
            READ (s_get_u32 (r, &item->members));
            READ (s_get_u64 (r, &item->seq));
            READ (s_get_str (r, topic, ZCHAT_MAX_TOPIC, validate));
            break;
        case ZCHAT_ACKS:
            READ (s_get_u64 (r, &item->id));
            READ (s_get_str (r, room, ZCHAT_MAX_ROOM, validate));
            READ (s_get_u64 (r, &item->seq));
            READ (s_get_u64 (r, &item->ts));
            break;
        case ZCHAT_ACKRUNS:
            READ (s_get_u64 (r, &item->id));
            READ (s_get_u32 (r, &item->count));
            READ (s_get_str (r, room, ZCHAT_MAX_ROOM, validate));
            READ (s_get_u64 (r, &item->seq));
            READ (s_get_u64 (r, &item->ts));
            //  A run names count ids and seqs from its first: none may wrap
            if (item->count == 0 || item->id > UINT64_MAX - (item->count - 1)
            ||  item->seq > UINT64_MAX - (item->count - 1)) {
                rc = ZCHAT_DECODE_BAD_VALUE;
                goto malformed;
            }
            break;
        case ZCHAT_SAYS:
            READ (s_get_u64 (r, &item->id));
            READ (s_get_str (r, room, ZCHAT_MAX_ROOM, validate));
            READ (s_get_kind (r, &item->kind));
            READ (s_get_text (r, &item->text, &item->text_size, validate));
            break;
        case ZCHAT_PAGE:
        case ZCHAT_MESSAGES:
            READ (s_get_u64 (r, &item->seq));
            READ (s_get_u64 (r, &item->ts));
            READ (s_get_str (r, nick, ZCHAT_MAX_NICK, validate));
            READ (s_get_kind (r, &item->kind));
            READ (s_get_text (r, &item->text, &item->text_size, validate));
            break;
        default:
            //  Not a list type: nothing can be iterated
            rc = ZCHAT_DECODE_UNKNOWN_TYPE;
            break;
    }
malformed:
    return rc;
}

//  --------------------------------------------------------------------------
//  Reads a u16 count and validates that many entries; the message keeps a
//  view of the validated bytes.

static int
s_get_items (reader_t *r, zchat_msg_t *msg)
{
    int rc = ZCHAT_DECODE_OK;
    uint16_t count = 0;
    size_t start = 0;
    READ (s_get_u16 (r, &count));
    if (count > ZCHAT_MAX_ITEMS) {
        rc = ZCHAT_DECODE_TOO_LONG;
        goto malformed;
    }
    start = r->pos;
    for (uint16_t i = 0; i < count; i++)
        READ (s_get_item (r, msg->type, NULL, true));
    msg->item_count = count;
    msg->items = r->data + start;
    msg->items_size = r->pos - start;
malformed:
    return rc;
}

//  --------------------------------------------------------------------------
//  Decode one body into *msg. Returns ZCHAT_DECODE_OK or a negative
//  ZCHAT_DECODE_* code. Fields the type does not use are zero; text and
//  items point into data, which must outlive msg.

int
zchat_msg_decode (zchat_msg_t *msg, const void *data, size_t size)
{
    assert (msg);
    memset (msg, 0, sizeof *msg);
    int rc = ZCHAT_DECODE_OK;
    if (!data)
        size = 0;               //  nothing to read: reported as truncated
    reader_t reader = { (const uint8_t *) data, size, 0 };
    reader_t *r = &reader;
    uint8_t signature = 0;
    uint16_t limit = 0;
    if (size > ZCHAT_MAX_FRAME) {
        rc = ZCHAT_DECODE_TOO_LONG;
        goto malformed;
    }
    READ (s_get_u8 (r, &signature));
    if (signature != ZCHAT_SIGNATURE_0) {
        rc = ZCHAT_DECODE_SIGNATURE;
        goto malformed;
    }
    READ (s_get_u8 (r, &signature));
    if (signature != ZCHAT_SIGNATURE_1) {
        rc = ZCHAT_DECODE_SIGNATURE;
        goto malformed;
    }
    READ (s_get_u8 (r, &msg->type));
    if (msg->type < ZCHAT_HELLO || msg->type > ZCHAT_TYPE_MAX) {
        rc = ZCHAT_DECODE_UNKNOWN_TYPE;
        goto malformed;
    }
    READ (s_get_u64 (r, &msg->id));

    switch (msg->type) {
        case ZCHAT_HELLO:
            READ (s_get_u8 (r, &msg->version));
            READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            READ (s_get_str (r, msg->token, ZCHAT_MAX_TOKEN, true));
            break;
        case ZCHAT_WELCOME:
            READ (s_get_u8 (r, &msg->version));
            READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            READ (s_get_str (r, msg->token, ZCHAT_MAX_TOKEN, true));
            READ (s_get_u16 (r, &msg->pub_port));
            READ (s_get_str (r, msg->endpoint, ZCHAT_MAX_ENDPOINT, true));
            READ (s_get_u32 (r, &msg->heartbeat_ms));
            READ (s_get_u32 (r, &msg->timeout_ms));
            READ (s_get_u32 (r, &msg->max_text));
            READ (s_get_flag (r, &msg->flag));
            break;
        case ZCHAT_BYE:
        case ZCHAT_PING:
        case ZCHAT_ROOMS:
        case ZCHAT_OK:
            break;
        case ZCHAT_PONG:
        case ZCHAT_ROOMLIST:
            READ (s_get_items (r, msg));
            break;
        case ZCHAT_ACKS:
        case ZCHAT_ACKRUNS:
        case ZCHAT_SAYS:
            //  Batches answer nothing themselves: id 0, so that each has
            //  exactly one encoding
            if (msg->id != 0) {
                rc = ZCHAT_DECODE_BAD_VALUE;
                goto malformed;
            }
            READ (s_get_items (r, msg));
            break;
        case ZCHAT_JOIN:
        case ZCHAT_LEAVE:
        case ZCHAT_WHO:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            break;
        case ZCHAT_JOINED:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_u64 (r, &msg->seq));
            READ (s_get_u64 (r, &msg->first_seq));
            READ (s_get_u32 (r, &msg->members));
            READ (s_get_str (r, msg->topic, ZCHAT_MAX_TOPIC, true));
            break;
        case ZCHAT_SAY:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_kind (r, &msg->kind));
            READ (s_get_text (r, &msg->text, &msg->text_size, true));
            break;
        case ZCHAT_ACK:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_u64 (r, &msg->seq));
            READ (s_get_u64 (r, &msg->ts));
            break;
        case ZCHAT_DM:
            READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            READ (s_get_kind (r, &msg->kind));
            READ (s_get_text (r, &msg->text, &msg->text_size, true));
            break;
        case ZCHAT_DELIVER:
            READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            READ (s_get_kind (r, &msg->kind));
            READ (s_get_u64 (r, &msg->ts));
            READ (s_get_text (r, &msg->text, &msg->text_size, true));
            break;
        case ZCHAT_NICK:
            READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            break;
        case ZCHAT_MESSAGES:
            if (msg->id != 0) {
                rc = ZCHAT_DECODE_BAD_VALUE;
                goto malformed;
            }
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_items (r, msg));
            break;
        case ZCHAT_MEMBERS:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_items (r, msg));
            break;
        case ZCHAT_TOPIC:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_flag (r, &msg->flag));
            READ (s_get_str (r, msg->topic, ZCHAT_MAX_TOPIC, true));
            break;
        case ZCHAT_TOPICIS:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_str (r, msg->topic, ZCHAT_MAX_TOPIC, true));
            READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            READ (s_get_u64 (r, &msg->ts));
            break;
        case ZCHAT_HISTORY:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_u64 (r, &msg->from_seq));
            READ (s_get_u64 (r, &msg->to_seq));
            READ (s_get_u16 (r, &limit));
            msg->limit = limit;
            break;
        case ZCHAT_PAGE:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_u64 (r, &msg->first_seq));
            READ (s_get_u64 (r, &msg->seq));
            READ (s_get_flag (r, &msg->flag));
            READ (s_get_items (r, msg));
            break;
        case ZCHAT_PROBE:
            //  The request carries the room, and from version 5 maybe a
            //  tag; the published copy adds the nick of the prober. One
            //  layout, so every form decodes, the second string into nick
            //  (ZCHAT_MAX_PROBE_TAG is ZCHAT_MAX_NICK: its cap here).
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            if (r->pos < r->size)
                READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            break;
        case ZCHAT_ERROR:
            READ (s_get_u16 (r, &msg->code));
            READ (s_get_u32 (r, &msg->retry_ms));
            READ (s_get_str (r, msg->reason, ZCHAT_MAX_REASON, true));
            break;
        case ZCHAT_MESSAGE:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_u64 (r, &msg->seq));
            READ (s_get_u64 (r, &msg->ts));
            READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            READ (s_get_kind (r, &msg->kind));
            READ (s_get_text (r, &msg->text, &msg->text_size, true));
            break;
        case ZCHAT_EVENT:
            READ (s_get_str (r, msg->room, ZCHAT_MAX_ROOM, true));
            READ (s_get_u64 (r, &msg->ts));
            READ (s_get_u8 (r, &msg->event));
            if (msg->event < ZCHAT_EVENT_JOIN || msg->event > ZCHAT_EVENT_TOPIC) {
                rc = ZCHAT_DECODE_BAD_VALUE;
                goto malformed;
            }
            READ (s_get_str (r, msg->nick, ZCHAT_MAX_NICK, true));
            READ (s_get_str (r, msg->topic, ZCHAT_MAX_TOPIC, true));
            break;
        default:
            //  Unreachable: the type was range-checked above
            assert (false);
            rc = ZCHAT_DECODE_UNKNOWN_TYPE;
            goto malformed;
    }
    if (r->pos != r->size)
        rc = ZCHAT_DECODE_TRAILING;
malformed:
    return rc;
}


//  --------------------------------------------------------------------------
//  Iterate the items of a decoded list message; *cursor starts at 0 and is
//  a byte offset into msg->items. Returns false at the end of the list.

bool
zchat_msg_next_item (const zchat_msg_t *msg, size_t *cursor, zchat_item_t *item)
{
    assert (msg);
    assert (cursor);
    assert (item);
    if (!msg->items || *cursor >= msg->items_size)
        return false;
    reader_t reader = { msg->items, msg->items_size, *cursor };
    //  Every field empty or zero, as a memset would leave them, without
    //  clearing the whole item (its topic alone is 256 bytes) for each of
    //  the hundreds of items in a batch
    item->id = 0;
    item->count = 0;
    item->room [0] = 0;
    item->nick [0] = 0;
    item->topic [0] = 0;
    item->members = 0;
    item->seq = 0;
    item->ts = 0;
    item->kind = 0;
    item->text = NULL;
    item->text_size = 0;
    if (s_get_item (&reader, msg->type, item, false) != ZCHAT_DECODE_OK)
        return false;           //  only for a message this codec did not decode
    *cursor = reader.pos;
    return true;
}


//  --------------------------------------------------------------------------
//  Iterate the items of a decoded SAYS as views: what the broker does for
//  each of its thousands of SAYs a second, without copying the room or
//  clearing an item. Checks bounds like zchat_msg_next_item.

bool
zchat_msg_next_say (const zchat_msg_t *msg, size_t *cursor, zchat_say_t *say)
{
    assert (msg);
    assert (cursor);
    assert (say);
    if (msg->type != ZCHAT_SAYS || !msg->items || *cursor >= msg->items_size)
        return false;
    reader_t reader = { msg->items, msg->items_size, *cursor };
    reader_t *r = &reader;
    if (s_get_u64 (r, &say->id) != ZCHAT_DECODE_OK || r->size - r->pos < 1)
        return false;
    size_t room_size = r->data [r->pos];
    if (room_size > ZCHAT_MAX_ROOM || r->size - r->pos - 1 < room_size)
        return false;
    say->room = (const char *) r->data + r->pos + 1;
    say->room_size = room_size;
    r->pos += 1 + room_size;
    if (s_get_kind (r, &say->kind) != ZCHAT_DECODE_OK
    ||  s_get_text (r, &say->text, &say->text_size, false) != ZCHAT_DECODE_OK)
        return false;
    *cursor = r->pos;
    return true;
}


//  --------------------------------------------------------------------------
//  Names for logs and error replies; never NULL.

static const char *s_type_names [ZCHAT_TYPE_MAX + 1] = {
    NULL, "HELLO", "WELCOME", "BYE", "PING", "PONG", "JOIN", "JOINED",
    "LEAVE", "SAY", "ACK", "DM", "DELIVER", "NICK", "WHO", "MEMBERS",
    "ROOMS", "ROOMLIST", "TOPIC", "TOPICIS", "HISTORY", "PAGE", "PROBE",
    "OK", "ERROR", "MESSAGE", "EVENT", "ACKS", "MESSAGES", "SAYS",
    "ACKRUNS"
};

const char *
zchat_msg_type_name (int type)
{
    if (type >= ZCHAT_HELLO && type <= ZCHAT_TYPE_MAX)
        return s_type_names [type];
    return "UNKNOWN";
}

const char *
zchat_decode_strerror (int rc)
{
    switch (rc) {
        case ZCHAT_DECODE_OK:
            return "no error";
        case ZCHAT_DECODE_TRUNCATED:
            return "truncated: a field runs past the end of the body";
        case ZCHAT_DECODE_SIGNATURE:
            return "bad signature: not a zchat body";
        case ZCHAT_DECODE_UNKNOWN_TYPE:
            return "unknown message type";
        case ZCHAT_DECODE_TOO_LONG:
            return "too long: a length or count is over its limit";
        case ZCHAT_DECODE_BAD_UTF8:
            return "invalid UTF-8 or a NUL byte in a string";
        case ZCHAT_DECODE_TRAILING:
            return "trailing bytes after the last field";
        case ZCHAT_DECODE_BAD_VALUE:
            return "bad value: unknown kind, event or flag";
        default:
            return "unknown decode error";
    }
}


//  --------------------------------------------------------------------------
//  True if [data, data + size) is valid UTF-8 without NUL: no overlong
//  forms, no surrogates, nothing above U+10FFFF, no cut-off sequence.
//  Chat text is mostly ASCII, and every text the broker receives is
//  checked here, so runs of 32 bytes are let through at once when none
//  has its top bit set and none is zero.

//  Non-zero unless all eight bytes of word are in 1..127: the top bit of
//  word itself catches 128..255; with those clear, subtracting one from
//  each byte borrows, and so sets a top bit, exactly where a byte is zero.
#define S_ASCII_HIGH    0x8080808080808080ULL
#define S_ASCII_ONES    0x0101010101010101ULL
#define S_NOT_ASCII(w)  (((w) | ((w) - S_ASCII_ONES)) & S_ASCII_HIGH)

//  True if the 32 bytes at are all in 1..127. With SSE2 (every x86-64):
//  bytes whose signed value is above zero.
#if defined (__SSE2__)
#include <emmintrin.h>

static bool
s_ascii_32 (const uint8_t *at)
{
    const __m128i zero = _mm_setzero_si128 ();
    __m128i low = _mm_cmpgt_epi8 (_mm_loadu_si128 ((const __m128i *) at), zero);
    __m128i high = _mm_cmpgt_epi8 (_mm_loadu_si128 ((const __m128i *) at + 1), zero);
    return _mm_movemask_epi8 (_mm_and_si128 (low, high)) == 0xFFFF;
}
#else
static bool
s_ascii_32 (const uint8_t *at)
{
    uint64_t w0, w1, w2, w3;
    memcpy (&w0, at, 8);
    memcpy (&w1, at + 8, 8);
    memcpy (&w2, at + 16, 8);
    memcpy (&w3, at + 24, 8);
    return !(S_NOT_ASCII (w0) | S_NOT_ASCII (w1) | S_NOT_ASCII (w2) | S_NOT_ASCII (w3));
}
#endif

bool
zchat_utf8_valid (const char *data, size_t size)
{
    const uint8_t *bytes = (const uint8_t *) data;
    size_t pos = 0;
    while (pos < size) {
        if (size - pos >= 32 && s_ascii_32 (bytes + pos)) {
            pos += 32;
            continue;
        }
        if (size - pos >= 8) {
            uint64_t word;
            memcpy (&word, bytes + pos, 8);
            if (!S_NOT_ASCII (word)) {
                pos += 8;
                continue;
            }
        }
        else {
            //  The last few bytes (all of a room name or a nick), padded
            //  with bytes of 1, which pass
            uint64_t word = S_ASCII_ONES;
            memcpy (&word, bytes + pos, size - pos);
            if (!S_NOT_ASCII (word))
                return true;
        }
        uint8_t lead = bytes [pos];
        if (lead < 0x80) {
            if (lead == 0)
                return false;
            pos++;
            continue;
        }
        //  The second byte's range is what rules out overlong forms (E0,
        //  F0), surrogates (ED) and code points above U+10FFFF (F4).
        size_t tail;
        uint8_t low = 0x80, top = 0xBF;
        if (lead >= 0xC2 && lead <= 0xDF)
            tail = 1;
        else
        if (lead == 0xE0) {
            tail = 2;
            low = 0xA0;
        }
        else
        if (lead == 0xED) {
            tail = 2;
            top = 0x9F;
        }
        else
        if (lead >= 0xE1 && lead <= 0xEF)
            tail = 2;
        else
        if (lead == 0xF0) {
            tail = 3;
            low = 0x90;
        }
        else
        if (lead >= 0xF1 && lead <= 0xF3)
            tail = 3;
        else
        if (lead == 0xF4) {
            tail = 3;
            top = 0x8F;
        }
        else
            return false;       //  80..C1 (continuation, overlong), F5..FF
        if (size - pos - 1 < tail)
            return false;
        if (bytes [pos + 1] < low || bytes [pos + 1] > top)
            return false;
        for (size_t i = 2; i <= tail; i++)
            if ((bytes [pos + i] & 0xC0) != 0x80)
                return false;
        pos += 1 + tail;
    }
    return true;
}


//  --------------------------------------------------------------------------
//  Name rules (PROTOCOL.md §3). Plain byte ranges, not <ctype.h>, whose
//  answers depend on the locale.

static bool
s_is_alnum (char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c >= '0' && c <= '9');
}

//  Length of s, or max + 1 if it is longer than max (s need not end there).
//  The C library's strnlen reads a word or a vector at a time: every room
//  and nick the broker encodes into an ACK or a MESSAGE is measured here.
static size_t
s_bounded_len (const char *s, size_t max)
{
    return strnlen (s, max + 1);
}

size_t
zchat_request_limit (uint8_t version, uint32_t max_text)
{
    if (version >= 3 || max_text > ZCHAT_MAX_TEXT)
        return ZCHAT_MAX_REQUEST;
    return (size_t) max_text + ZCHAT_REQUEST_OVERHEAD - ZCHAT_TRANSPORT_SLACK;
}

bool
zchat_nick_valid (const char *nick)
{
    if (!nick)
        return false;
    size_t len = s_bounded_len (nick, ZCHAT_MAX_NICK);
    if (len == 0 || len > ZCHAT_MAX_NICK)
        return false;
    if ((nick [0] >= '0' && nick [0] <= '9') || nick [0] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!s_is_alnum (nick [i]) && !strchr ("_-[]{}|^`", nick [i]))
            return false;
    return true;
}

bool
zchat_room_valid (const char *room)
{
    if (!room)
        return false;
    size_t len = s_bounded_len (room, ZCHAT_MAX_ROOM);
    if (len == 0 || len > ZCHAT_MAX_ROOM)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!s_is_alnum (room [i]) && !strchr ("_.-", room [i]))
            return false;
    return true;
}


//  --------------------------------------------------------------------------
//  Write the PUB topic frame "room:" into buffer (at least
//  ZCHAT_MAX_TOPIC_FRAME bytes). The room must be at most ZCHAT_MAX_ROOM
//  bytes, as every decoded room is: a longer one is a programming error.

size_t
zchat_topic_frame (const char *room, uint8_t *buffer)
{
    assert (room);
    assert (buffer);
    size_t len = s_bounded_len (room, ZCHAT_MAX_ROOM);
    assert (len <= ZCHAT_MAX_ROOM);
    memcpy (buffer, room, len);
    buffer [len] = ZCHAT_TOPIC_END;
    return len + 1;
}


//  --------------------------------------------------------------------------
//  Write the PUB topic frame of a probe tag into buffer (at least
//  ZCHAT_MAX_PROBE_TOPIC_FRAME bytes). The tag must be 1..
//  ZCHAT_MAX_PROBE_TAG bytes, as every decoded non-empty tag is.

_Static_assert (ZCHAT_MAX_PROBE_TAG == ZCHAT_MAX_NICK,
                "the decoder caps a PROBE's tag as the nick it shares a field with");

size_t
zchat_probe_topic_frame (const char *tag, uint8_t *buffer)
{
    assert (tag);
    assert (buffer);
    size_t len = s_bounded_len (tag, ZCHAT_MAX_PROBE_TAG);
    assert (len >= 1 && len <= ZCHAT_MAX_PROBE_TAG);
    buffer [0] = ZCHAT_PROBE_TOPIC;
    memcpy (buffer + 1, tag, len);
    return len + 1;
}


//  ---------------------------------------------------------------------
//  Encoding
//
//  Every write checks the space left first and sets `overflow` instead of
//  writing. A value that cannot be encoded at all (a string over its
//  limit, a kind or event the protocol does not define) sets it too, so a
//  caller has one thing to check and no invalid body is ever produced.
//  A body never grows beyond ZCHAT_MAX_FRAME, whatever the capacity.

void
zchat_buf_init (zchat_buf_t *buf, void *data, size_t capacity)
{
    assert (buf);
    assert (data || capacity == 0);
    memset (buf, 0, sizeof *buf);
    buf->data = (uint8_t *) data;
    buf->capacity = capacity;
}

//  Returns true if n more bytes fit; else marks the buffer overflowed.
static bool
s_fits (zchat_buf_t *buf, size_t n)
{
    if (buf->overflow)
        return false;
    if (buf->capacity - buf->size < n || ZCHAT_MAX_FRAME - buf->size < n) {
        buf->overflow = true;
        return false;
    }
    return true;
}

//  Whole big-endian words, as the decoder reads them: every reply and
//  publication the broker builds goes through these.
static void
s_put_u8 (zchat_buf_t *buf, uint8_t value)
{
    if (s_fits (buf, 1))
        buf->data [buf->size++] = value;
}

static void
s_put_bytes (zchat_buf_t *buf, const void *bytes, size_t size)
{
    if (size && s_fits (buf, size)) {
        memcpy (buf->data + buf->size, bytes, size);
        buf->size += size;
    }
}

static void
s_put_u16 (zchat_buf_t *buf, uint16_t value)
{
    value = htobe16 (value);
    s_put_bytes (buf, &value, 2);
}

static void
s_put_u32 (zchat_buf_t *buf, uint32_t value)
{
    value = htobe32 (value);
    s_put_bytes (buf, &value, 4);
}

static void
s_put_u64 (zchat_buf_t *buf, uint64_t value)
{
    value = htobe64 (value);
    s_put_bytes (buf, &value, 8);
}


//  A str; NULL is written as the empty string.
static void
s_put_str (zchat_buf_t *buf, const char *s, size_t max)
{
    if (!s)
        s = "";
    size_t len = s_bounded_len (s, max);
    if (len > max) {
        buf->overflow = true;
        return;
    }
    if (s_fits (buf, 1 + len)) {
        s_put_u8 (buf, (uint8_t) len);
        s_put_bytes (buf, s, len);
    }
}

static void
s_put_text (zchat_buf_t *buf, const char *text, size_t text_size)
{
    assert (text || text_size == 0);
    if (text_size > ZCHAT_MAX_TEXT) {
        buf->overflow = true;
        return;
    }
    if (s_fits (buf, 4 + text_size)) {
        s_put_u32 (buf, (uint32_t) text_size);
        s_put_bytes (buf, text, text_size);
    }
}

static bool
s_kind_valid (uint8_t kind)
{
    return kind == ZCHAT_KIND_TEXT || kind == ZCHAT_KIND_ACTION;
}

static void
s_put_kind (zchat_buf_t *buf, uint8_t kind)
{
    if (!s_kind_valid (kind))
        buf->overflow = true;
    else
        s_put_u8 (buf, kind);
}

//  The hot encoders (each ACK and MESSAGE item the broker sends, each SAY
//  a client sends) measure their body or item first, reserve it with one
//  check, and write it with these, which check nothing: a check per field
//  was most of what encoding cost.

//  Bytes a str of s takes after its length byte: 0, with the buffer
//  marked overflowed, if it is over max. NULL is the empty string.
static size_t
s_str_len (zchat_buf_t *buf, const char *s, size_t max)
{
    size_t len = s? s_bounded_len (s, max): 0;
    if (len > max) {
        buf->overflow = true;
        return 0;
    }
    return len;
}

//  The next n bytes of buf, now counted as written, or NULL (overflow set)
//  if they do not fit or the buffer overflowed already.
static uint8_t *
s_reserve (zchat_buf_t *buf, size_t n)
{
    if (!s_fits (buf, n))
        return NULL;
    uint8_t *at = buf->data + buf->size;
    buf->size += n;
    return at;
}

static uint8_t *
s_write_u32 (uint8_t *at, uint32_t value)
{
    value = htobe32 (value);
    memcpy (at, &value, 4);
    return at + 4;
}

static uint8_t *
s_write_u64 (uint8_t *at, uint64_t value)
{
    value = htobe64 (value);
    memcpy (at, &value, 8);
    return at + 8;
}

static uint8_t *
s_write_str (uint8_t *at, const char *s, size_t len)
{
    *at++ = (uint8_t) len;
    if (len)
        memcpy (at, s, len);
    return at + len;
}

static uint8_t *
s_write_text (uint8_t *at, const char *text, size_t text_size)
{
    uint32_t size = htobe32 ((uint32_t) text_size);
    memcpy (at, &size, 4);
    if (text_size)
        memcpy (at + 4, text, text_size);
    return at + 4 + text_size;
}

//  Empties the buffer for a new body.
static void
s_reset (zchat_buf_t *buf)
{
    assert (buf);
    buf->size = 0;
    buf->overflow = false;
    buf->count_at = 0;
    buf->count = 0;
}

static uint8_t *
s_write_header (uint8_t *at, uint8_t type, uint64_t id)
{
    at [0] = ZCHAT_SIGNATURE_0;
    at [1] = ZCHAT_SIGNATURE_1;
    at [2] = type;
    return s_write_u64 (at + 3, id);
}

//  Resets the buffer and writes the header.
static void
s_put_header (zchat_buf_t *buf, uint8_t type, uint64_t id)
{
    assert (buf);
    buf->size = 0;
    buf->overflow = false;
    buf->count_at = 0;
    buf->count = 0;
    s_put_u8 (buf, ZCHAT_SIGNATURE_0);
    s_put_u8 (buf, ZCHAT_SIGNATURE_1);
    s_put_u8 (buf, type);
    s_put_u64 (buf, id);
}

static size_t
s_done (zchat_buf_t *buf)
{
    return buf->overflow ? 0 : buf->size;
}

//  Writes the count placeholder that each *_add patches.
static size_t
s_list_begin (zchat_buf_t *buf)
{
    buf->count_at = buf->size;
    buf->count = 0;
    s_put_u16 (buf, 0);
    return s_done (buf);
}

//  Starts one item of a list of the given type; returns false if the list
//  cannot take another item. *mark remembers where the item starts.
static bool
s_add_start (zchat_buf_t *buf, uint8_t type, size_t *mark)
{
    assert (buf);
    if (buf->overflow || buf->count >= ZCHAT_MAX_ITEMS)
        return false;
    //  Adding to a list that was never begun is a programming error
    assert (buf->size >= ZCHAT_HEADER_SIZE && buf->data [2] == type);
    assert (buf->count_at >= ZCHAT_HEADER_SIZE && buf->count_at + 2 <= buf->size);
    *mark = buf->size;
    return true;
}

//  Ends an item: counts it, or, if it did not fit, takes it back so the
//  list so far stays a valid body (a page is filled until an add fails).
static size_t
s_add_finish (zchat_buf_t *buf, size_t mark)
{
    if (buf->overflow) {
        buf->size = mark;
        buf->overflow = false;
        return 0;
    }
    buf->count++;
    buf->data [buf->count_at] = (uint8_t) (buf->count >> 8);
    buf->data [buf->count_at + 1] = (uint8_t) buf->count;
    return buf->size;
}

size_t
zchat_encode_hello (zchat_buf_t *buf, uint64_t id, uint8_t version,
                    const char *nick, const char *token)
{
    s_put_header (buf, ZCHAT_HELLO, id);
    s_put_u8 (buf, version);
    s_put_str (buf, nick, ZCHAT_MAX_NICK);
    s_put_str (buf, token, ZCHAT_MAX_TOKEN);
    return s_done (buf);
}

size_t
zchat_encode_welcome (zchat_buf_t *buf, uint64_t id, uint8_t version,
                      const char *nick, const char *token,
                      uint16_t pub_port, const char *endpoint,
                      uint32_t heartbeat_ms, uint32_t timeout_ms,
                      uint32_t max_text, bool resumed)
{
    s_put_header (buf, ZCHAT_WELCOME, id);
    s_put_u8 (buf, version);
    s_put_str (buf, nick, ZCHAT_MAX_NICK);
    s_put_str (buf, token, ZCHAT_MAX_TOKEN);
    s_put_u16 (buf, pub_port);
    s_put_str (buf, endpoint, ZCHAT_MAX_ENDPOINT);
    s_put_u32 (buf, heartbeat_ms);
    s_put_u32 (buf, timeout_ms);
    s_put_u32 (buf, max_text);
    s_put_u8 (buf, resumed ? 1 : 0);
    return s_done (buf);
}

size_t
zchat_encode_bye (zchat_buf_t *buf, uint64_t id)
{
    s_put_header (buf, ZCHAT_BYE, id);
    return s_done (buf);
}

size_t
zchat_encode_ping (zchat_buf_t *buf, uint64_t id)
{
    s_put_header (buf, ZCHAT_PING, id);
    return s_done (buf);
}

size_t
zchat_encode_pong_begin (zchat_buf_t *buf, uint64_t id)
{
    s_put_header (buf, ZCHAT_PONG, id);
    return s_list_begin (buf);
}

size_t
zchat_encode_pong_add (zchat_buf_t *buf, const char *room, uint64_t seq)
{
    size_t mark;
    if (!s_add_start (buf, ZCHAT_PONG, &mark))
        return 0;
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_u64 (buf, seq);
    return s_add_finish (buf, mark);
}

size_t
zchat_encode_join (zchat_buf_t *buf, uint64_t id, const char *room)
{
    s_put_header (buf, ZCHAT_JOIN, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    return s_done (buf);
}

size_t
zchat_encode_joined (zchat_buf_t *buf, uint64_t id, const char *room,
                     uint64_t seq, uint64_t first_seq,
                     uint32_t members, const char *topic)
{
    s_put_header (buf, ZCHAT_JOINED, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_u64 (buf, seq);
    s_put_u64 (buf, first_seq);
    s_put_u32 (buf, members);
    s_put_str (buf, topic, ZCHAT_MAX_TOPIC);
    return s_done (buf);
}

size_t
zchat_encode_leave (zchat_buf_t *buf, uint64_t id, const char *room)
{
    s_put_header (buf, ZCHAT_LEAVE, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    return s_done (buf);
}

size_t
zchat_encode_say (zchat_buf_t *buf, uint64_t id, const char *room,
                  uint8_t kind, const char *text, size_t text_size)
{
    s_put_header (buf, ZCHAT_SAY, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_kind (buf, kind);
    s_put_text (buf, text, text_size);
    return s_done (buf);
}

size_t
zchat_encode_ack (zchat_buf_t *buf, uint64_t id, const char *room,
                  uint64_t seq, uint64_t ts)
{
    s_reset (buf);
    size_t room_len = s_str_len (buf, room, ZCHAT_MAX_ROOM);
    uint8_t *at = s_reserve (buf, ZCHAT_HEADER_SIZE + 1 + room_len + 16);
    if (at) {
        at = s_write_header (at, ZCHAT_ACK, id);
        at = s_write_str (at, room, room_len);
        at = s_write_u64 (at, seq);
        s_write_u64 (at, ts);
    }
    return s_done (buf);
}

size_t
zchat_encode_dm (zchat_buf_t *buf, uint64_t id, const char *to,
                 uint8_t kind, const char *text, size_t text_size)
{
    s_put_header (buf, ZCHAT_DM, id);
    s_put_str (buf, to, ZCHAT_MAX_NICK);
    s_put_kind (buf, kind);
    s_put_text (buf, text, text_size);
    return s_done (buf);
}

size_t
zchat_encode_deliver (zchat_buf_t *buf, uint64_t id, const char *from,
                      uint8_t kind, uint64_t ts,
                      const char *text, size_t text_size)
{
    s_put_header (buf, ZCHAT_DELIVER, id);
    s_put_str (buf, from, ZCHAT_MAX_NICK);
    s_put_kind (buf, kind);
    s_put_u64 (buf, ts);
    s_put_text (buf, text, text_size);
    return s_done (buf);
}

size_t
zchat_encode_nick (zchat_buf_t *buf, uint64_t id, const char *nick)
{
    s_put_header (buf, ZCHAT_NICK, id);
    s_put_str (buf, nick, ZCHAT_MAX_NICK);
    return s_done (buf);
}

size_t
zchat_encode_who (zchat_buf_t *buf, uint64_t id, const char *room)
{
    s_put_header (buf, ZCHAT_WHO, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    return s_done (buf);
}

size_t
zchat_encode_members_begin (zchat_buf_t *buf, uint64_t id, const char *room)
{
    s_put_header (buf, ZCHAT_MEMBERS, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    return s_list_begin (buf);
}

size_t
zchat_encode_members_add (zchat_buf_t *buf, const char *nick)
{
    size_t mark;
    if (!s_add_start (buf, ZCHAT_MEMBERS, &mark))
        return 0;
    s_put_str (buf, nick, ZCHAT_MAX_NICK);
    return s_add_finish (buf, mark);
}

size_t
zchat_encode_rooms (zchat_buf_t *buf, uint64_t id)
{
    s_put_header (buf, ZCHAT_ROOMS, id);
    return s_done (buf);
}

size_t
zchat_encode_roomlist_begin (zchat_buf_t *buf, uint64_t id)
{
    s_put_header (buf, ZCHAT_ROOMLIST, id);
    return s_list_begin (buf);
}

size_t
zchat_encode_roomlist_add (zchat_buf_t *buf, const char *room,
                           uint32_t members, uint64_t seq, const char *topic)
{
    size_t mark;
    if (!s_add_start (buf, ZCHAT_ROOMLIST, &mark))
        return 0;
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_u32 (buf, members);
    s_put_u64 (buf, seq);
    s_put_str (buf, topic, ZCHAT_MAX_TOPIC);
    return s_add_finish (buf, mark);
}

size_t
zchat_encode_topic (zchat_buf_t *buf, uint64_t id, const char *room,
                    bool set, const char *topic)
{
    s_put_header (buf, ZCHAT_TOPIC, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_u8 (buf, set ? 1 : 0);
    s_put_str (buf, topic, ZCHAT_MAX_TOPIC);
    return s_done (buf);
}

size_t
zchat_encode_topicis (zchat_buf_t *buf, uint64_t id, const char *room,
                      const char *topic, const char *nick, uint64_t ts)
{
    s_put_header (buf, ZCHAT_TOPICIS, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_str (buf, topic, ZCHAT_MAX_TOPIC);
    s_put_str (buf, nick, ZCHAT_MAX_NICK);
    s_put_u64 (buf, ts);
    return s_done (buf);
}

size_t
zchat_encode_history (zchat_buf_t *buf, uint64_t id, const char *room,
                      uint64_t from_seq, uint64_t to_seq, uint16_t limit)
{
    s_put_header (buf, ZCHAT_HISTORY, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_u64 (buf, from_seq);
    s_put_u64 (buf, to_seq);
    s_put_u16 (buf, limit);
    return s_done (buf);
}

size_t
zchat_encode_page_begin (zchat_buf_t *buf, uint64_t id, const char *room,
                         uint64_t first_seq, uint64_t seq, bool more)
{
    s_put_header (buf, ZCHAT_PAGE, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_u64 (buf, first_seq);
    s_put_u64 (buf, seq);
    s_put_u8 (buf, more ? 1 : 0);
    return s_list_begin (buf);
}

//  One stored message as a list item: PAGE and MESSAGES share the layout.
static size_t
s_message_item (zchat_buf_t *buf, uint8_t type, uint64_t seq, uint64_t ts,
                const char *nick, uint8_t kind, const char *text, size_t text_size)
{
    size_t mark;
    if (!s_add_start (buf, type, &mark))
        return 0;
    assert (text || text_size == 0);
    size_t nick_len = s_str_len (buf, nick, ZCHAT_MAX_NICK);
    if (!s_kind_valid (kind) || text_size > ZCHAT_MAX_TEXT)
        buf->overflow = true;
    uint8_t *at = s_reserve (buf, 16 + 1 + nick_len + 1 + 4 + text_size);
    if (at) {
        at = s_write_u64 (at, seq);
        at = s_write_u64 (at, ts);
        at = s_write_str (at, nick, nick_len);
        *at++ = kind;
        s_write_text (at, text, text_size);
    }
    return s_add_finish (buf, mark);
}

size_t
zchat_encode_page_add (zchat_buf_t *buf, uint64_t seq, uint64_t ts,
                       const char *nick, uint8_t kind,
                       const char *text, size_t text_size)
{
    return s_message_item (buf, ZCHAT_PAGE, seq, ts, nick, kind, text, text_size);
}

//  --------------------------------------------------------------------------
//  Set PAGE.more after the items are in. The flag sits just before the
//  item count. Does nothing if the page did not fit to begin with.

void
zchat_encode_page_set_more (zchat_buf_t *buf, bool more)
{
    assert (buf);
    if (buf->overflow)
        return;
    assert (buf->size >= ZCHAT_HEADER_SIZE && buf->data [2] == ZCHAT_PAGE);
    assert (buf->count_at > ZCHAT_HEADER_SIZE && buf->count_at + 2 <= buf->size);
    buf->data [buf->count_at - 1] = more ? 1 : 0;
}

//  --------------------------------------------------------------------------
//  PROBE: with nick NULL the request form (room only), else the published
//  form (room, nick of the prober) or a tagged request (room, tag): the
//  same layout.

size_t
zchat_encode_probe (zchat_buf_t *buf, uint64_t id, const char *room,
                    const char *nick)
{
    s_put_header (buf, ZCHAT_PROBE, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    if (nick)
        s_put_str (buf, nick, ZCHAT_MAX_NICK);
    return s_done (buf);
}

size_t
zchat_encode_ok (zchat_buf_t *buf, uint64_t id)
{
    s_put_header (buf, ZCHAT_OK, id);
    return s_done (buf);
}

size_t
zchat_encode_error (zchat_buf_t *buf, uint64_t id, uint16_t code,
                    uint32_t retry_ms, const char *reason)
{
    s_put_header (buf, ZCHAT_ERROR, id);
    s_put_u16 (buf, code);
    s_put_u32 (buf, retry_ms);
    s_put_str (buf, reason, ZCHAT_MAX_REASON);
    return s_done (buf);
}

size_t
zchat_encode_message (zchat_buf_t *buf, uint64_t id, const char *room,
                      uint64_t seq, uint64_t ts, const char *nick,
                      uint8_t kind, const char *text, size_t text_size)
{
    s_reset (buf);
    assert (text || text_size == 0);
    size_t room_len = s_str_len (buf, room, ZCHAT_MAX_ROOM);
    size_t nick_len = s_str_len (buf, nick, ZCHAT_MAX_NICK);
    if (!s_kind_valid (kind) || text_size > ZCHAT_MAX_TEXT)
        buf->overflow = true;
    uint8_t *at = s_reserve (buf, ZCHAT_HEADER_SIZE + 1 + room_len + 16 + 1 + nick_len
                                  + 1 + 4 + text_size);
    if (at) {
        at = s_write_header (at, ZCHAT_MESSAGE, id);
        at = s_write_str (at, room, room_len);
        at = s_write_u64 (at, seq);
        at = s_write_u64 (at, ts);
        at = s_write_str (at, nick, nick_len);
        *at++ = kind;
        s_write_text (at, text, text_size);
    }
    return s_done (buf);
}

//  --------------------------------------------------------------------------
//  ACKS and MESSAGES: batches. The _append forms copy an item out of a body
//  this codec encoded (the broker's staged ACK or MESSAGE), so a batch costs
//  a memcpy per item rather than a second encode.

size_t
zchat_encode_acks_begin (zchat_buf_t *buf)
{
    s_put_header (buf, ZCHAT_ACKS, 0);
    return s_list_begin (buf);
}

size_t
zchat_encode_acks_add (zchat_buf_t *buf, uint64_t id, const char *room,
                       uint64_t seq, uint64_t ts)
{
    size_t mark;
    if (!s_add_start (buf, ZCHAT_ACKS, &mark))
        return 0;
    size_t room_len = s_str_len (buf, room, ZCHAT_MAX_ROOM);
    uint8_t *at = s_reserve (buf, 8 + 1 + room_len + 16);
    if (at) {
        at = s_write_u64 (at, id);
        at = s_write_str (at, room, room_len);
        at = s_write_u64 (at, seq);
        s_write_u64 (at, ts);
    }
    return s_add_finish (buf, mark);
}

//  An ACK body is header (type at 2, id at 3..10), room, seq, ts: the item
//  is the body from its id on.
size_t
zchat_encode_acks_append (zchat_buf_t *buf, const void *ack, size_t ack_size)
{
    assert (ack);
    const uint8_t *body = (const uint8_t *) ack;
    if (ack_size < ZCHAT_HEADER_SIZE + 1 + 16 || body [2] != ZCHAT_ACK
    ||  ack_size != (size_t) ZCHAT_HEADER_SIZE + 1 + body [ZCHAT_HEADER_SIZE] + 16)
        return 0;
    size_t mark;
    if (!s_add_start (buf, ZCHAT_ACKS, &mark))
        return 0;
    s_put_bytes (buf, body + 3, ack_size - 3);
    return s_add_finish (buf, mark);
}

size_t
zchat_encode_ackruns_begin (zchat_buf_t *buf)
{
    s_put_header (buf, ZCHAT_ACKRUNS, 0);
    return s_list_begin (buf);
}

size_t
zchat_encode_ackruns_add (zchat_buf_t *buf, uint64_t id, uint32_t count,
                          const char *room, uint64_t seq, uint64_t ts)
{
    size_t mark;
    if (!s_add_start (buf, ZCHAT_ACKRUNS, &mark))
        return 0;
    if (count == 0 || id > UINT64_MAX - (count - 1) || seq > UINT64_MAX - (count - 1))
        buf->overflow = true;
    size_t room_len = s_str_len (buf, room, ZCHAT_MAX_ROOM);
    uint8_t *at = s_reserve (buf, 8 + 4 + 1 + room_len + 16);
    if (at) {
        at = s_write_u64 (at, id);
        at = s_write_u32 (at, count);
        at = s_write_str (at, room, room_len);
        at = s_write_u64 (at, seq);
        s_write_u64 (at, ts);
    }
    return s_add_finish (buf, mark);
}

size_t
zchat_encode_says_begin (zchat_buf_t *buf)
{
    s_put_header (buf, ZCHAT_SAYS, 0);
    return s_list_begin (buf);
}

size_t
zchat_encode_says_add (zchat_buf_t *buf, uint64_t id, const char *room,
                       uint8_t kind, const char *text, size_t text_size)
{
    size_t mark;
    if (!s_add_start (buf, ZCHAT_SAYS, &mark))
        return 0;
    assert (text || text_size == 0);
    size_t room_len = s_str_len (buf, room, ZCHAT_MAX_ROOM);
    if (!s_kind_valid (kind) || text_size > ZCHAT_MAX_TEXT)
        buf->overflow = true;
    uint8_t *at = s_reserve (buf, 8 + 1 + room_len + 1 + 4 + text_size);
    if (at) {
        at = s_write_u64 (at, id);
        at = s_write_str (at, room, room_len);
        *at++ = kind;
        s_write_text (at, text, text_size);
    }
    return s_add_finish (buf, mark);
}

size_t
zchat_encode_messages_begin (zchat_buf_t *buf, const char *room)
{
    s_put_header (buf, ZCHAT_MESSAGES, 0);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    return s_list_begin (buf);
}

size_t
zchat_encode_messages_add (zchat_buf_t *buf, uint64_t seq, uint64_t ts,
                           const char *nick, uint8_t kind,
                           const char *text, size_t text_size)
{
    return s_message_item (buf, ZCHAT_MESSAGES, seq, ts, nick, kind, text, text_size);
}

//  A MESSAGE body is header, room, then exactly a MESSAGES item. The room
//  must be the batch's: the same length-prefixed bytes right after both
//  headers.
size_t
zchat_encode_messages_append (zchat_buf_t *buf, const void *message,
                              size_t message_size)
{
    assert (message);
    const uint8_t *body = (const uint8_t *) message;
    if (message_size < ZCHAT_HEADER_SIZE + 1 || body [2] != ZCHAT_MESSAGE)
        return 0;
    size_t room_size = 1 + (size_t) body [ZCHAT_HEADER_SIZE];
    if (message_size < ZCHAT_HEADER_SIZE + room_size
    ||  buf->size < ZCHAT_HEADER_SIZE + room_size
    ||  memcmp (buf->data + ZCHAT_HEADER_SIZE, body + ZCHAT_HEADER_SIZE, room_size) != 0)
        return 0;
    size_t mark;
    if (!s_add_start (buf, ZCHAT_MESSAGES, &mark))
        return 0;
    s_put_bytes (buf, body + ZCHAT_HEADER_SIZE + room_size,
                 message_size - ZCHAT_HEADER_SIZE - room_size);
    return s_add_finish (buf, mark);
}

//  --------------------------------------------------------------------------
//  Append every item of a MESSAGES body this codec encoded, for the same
//  room, to the batch in buf: one copy of the items as they are. Returns
//  the batch size, or 0 and changes nothing if batch is not a MESSAGES
//  body of buf's room or its items do not fit.

size_t
zchat_encode_messages_extend (zchat_buf_t *buf, const void *batch, size_t batch_size)
{
    assert (buf);
    assert (batch);
    const uint8_t *body = (const uint8_t *) batch;
    if (batch_size < ZCHAT_HEADER_SIZE + 1 || body [2] != ZCHAT_MESSAGES)
        return 0;
    size_t head_size = ZCHAT_HEADER_SIZE + 1 + (size_t) body [ZCHAT_HEADER_SIZE] + 2;
    if (batch_size < head_size
    ||  buf->overflow || buf->size < head_size || buf->data [2] != ZCHAT_MESSAGES
    ||  memcmp (buf->data + ZCHAT_HEADER_SIZE, body + ZCHAT_HEADER_SIZE,
                head_size - ZCHAT_HEADER_SIZE - 2) != 0)
        return 0;
    size_t count = (size_t) body [head_size - 2] << 8 | body [head_size - 1];
    size_t mark;
    if (count > (size_t) (ZCHAT_MAX_ITEMS - buf->count)
    ||  !s_add_start (buf, ZCHAT_MESSAGES, &mark))
        return 0;
    s_put_bytes (buf, body + head_size, batch_size - head_size);
    if (s_add_finish (buf, mark) == 0)
        return 0;
    //  s_add_finish counted one item
    buf->count = (uint16_t) (buf->count - 1 + count);
    buf->data [buf->count_at] = (uint8_t) (buf->count >> 8);
    buf->data [buf->count_at + 1] = (uint8_t) buf->count;
    return buf->size;
}

//  --------------------------------------------------------------------------
//  Rewrite in place a MESSAGES body of exactly one item as the MESSAGE body
//  with the same content, which version 1 clients read too: the same bytes
//  without the count, so the header and room move up by two. Returns the
//  MESSAGE's size, from body + 2, or 0 (nothing changed) if body is not
//  such a MESSAGES.

size_t
zchat_encode_messages_single (uint8_t *body, size_t size)
{
    assert (body);
    if (size < ZCHAT_HEADER_SIZE + 1 || body [2] != ZCHAT_MESSAGES)
        return 0;
    size_t room_end = ZCHAT_HEADER_SIZE + 1 + (size_t) body [ZCHAT_HEADER_SIZE];
    if (size < room_end + 2 || body [room_end] != 0 || body [room_end + 1] != 1)
        return 0;
    memmove (body + 2, body, room_end);
    body [2 + 2] = ZCHAT_MESSAGE;
    return size - 2;
}

size_t
zchat_encode_event (zchat_buf_t *buf, uint64_t id, const char *room,
                    uint64_t ts, uint8_t event, const char *nick,
                    const char *detail)
{
    s_put_header (buf, ZCHAT_EVENT, id);
    s_put_str (buf, room, ZCHAT_MAX_ROOM);
    s_put_u64 (buf, ts);
    if (event < ZCHAT_EVENT_JOIN || event > ZCHAT_EVENT_TOPIC)
        buf->overflow = true;
    else
        s_put_u8 (buf, event);
    s_put_str (buf, nick, ZCHAT_MAX_NICK);
    s_put_str (buf, detail, ZCHAT_MAX_TOPIC);
    return s_done (buf);
}

//  ---------------------------------------------------------------------
//  Self test
//
//  Round trips of every message, then the hostile list, then a few
//  hundred thousand random and mutated bodies. Every body is decoded from
//  a heap copy of exactly its size, so under ASan a read one byte too far
//  is caught rather than landing in the encoder's larger buffer.

//  Like assert, but never compiled out: checks here call the code under
//  test, and a test that vanished under NDEBUG would pass by doing nothing.
#define CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf (stderr, "%s:%d: zchat_msg_test: check failed: %s\n", \
                     __FILE__, __LINE__, #cond); \
            abort (); \
        } \
    } while (0)

//  A small deterministic PRNG (xorshift64*), so failures reproduce.
static uint64_t
s_rand (uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint8_t *
s_copy (const void *data, size_t size)
{
    uint8_t *copy = (uint8_t *) malloc (size ? size : 1);
    CHECK (copy);
    if (size)
        memcpy (copy, data, size);
    return copy;
}

//  Decodes an exact-size copy of the body; returns the decode result.
static int
s_decode_exact (const void *data, size_t size)
{
    uint8_t *copy = s_copy (data, size);
    zchat_msg_t msg;
    int rc = zchat_msg_decode (&msg, size ? copy : NULL, size);
    CHECK (rc <= ZCHAT_DECODE_OK && rc >= ZCHAT_DECODE_BAD_VALUE);
    if (rc == ZCHAT_DECODE_OK) {
        //  A list that decoded must iterate to exactly its count
        size_t cursor = 0;
        zchat_item_t item;
        size_t count = 0;
        while (zchat_msg_next_item (&msg, &cursor, &item))
            count++;
        CHECK (count == msg.item_count);
        CHECK (cursor == msg.items_size);
        //  And so must a SAYS as views; anything else gives none
        size_t views = 0;
        cursor = 0;
        zchat_say_t say;
        while (zchat_msg_next_say (&msg, &cursor, &say))
            views++;
        CHECK (views == (msg.type == ZCHAT_SAYS? msg.item_count: 0));
    }
    free (copy);
    return rc;
}

static void
s_expect (const char *what, const void *data, size_t size, int expected)
{
    int rc = s_decode_exact (data, size);
    if (rc != expected) {
        fprintf (stderr, "zchat_msg_test: %s: got %d (%s), expected %d (%s)\n",
                 what, rc, zchat_decode_strerror (rc),
                 expected, zchat_decode_strerror (expected));
        CHECK (rc == expected);
    }
}

//  Every valid body the round trips made, kept for prefix and mutation
//  tests.
#define SAMPLES_MAX 64
typedef struct {
    uint8_t *data [SAMPLES_MAX];
    size_t size [SAMPLES_MAX];
    bool probe_request [SAMPLES_MAX];   //  a PROBE without nick
    size_t count;
} samples_t;

static void
s_msg_equal (const zchat_msg_t *a, const zchat_msg_t *b)
{
    CHECK (a->type == b->type);
    CHECK (a->id == b->id);
    CHECK (a->version == b->version);
    CHECK (a->kind == b->kind);
    CHECK (a->event == b->event);
    CHECK (a->flag == b->flag);
    CHECK (a->pub_port == b->pub_port);
    CHECK (a->code == b->code);
    CHECK (a->heartbeat_ms == b->heartbeat_ms);
    CHECK (a->timeout_ms == b->timeout_ms);
    CHECK (a->max_text == b->max_text);
    CHECK (a->retry_ms == b->retry_ms);
    CHECK (a->members == b->members);
    CHECK (a->limit == b->limit);
    CHECK (a->seq == b->seq);
    CHECK (a->first_seq == b->first_seq);
    CHECK (a->from_seq == b->from_seq);
    CHECK (a->to_seq == b->to_seq);
    CHECK (a->ts == b->ts);
    CHECK (strcmp (a->nick, b->nick) == 0);
    CHECK (strcmp (a->room, b->room) == 0);
    CHECK (strcmp (a->token, b->token) == 0);
    CHECK (strcmp (a->topic, b->topic) == 0);
    CHECK (strcmp (a->endpoint, b->endpoint) == 0);
    CHECK (strcmp (a->reason, b->reason) == 0);
    CHECK ((a->text == NULL) == (b->text == NULL));
    CHECK (a->text_size == b->text_size);
    CHECK (a->text_size == 0 || memcmp (a->text, b->text, a->text_size) == 0);
    CHECK (a->item_count == b->item_count);
}

static void
s_item_equal (const zchat_item_t *a, const zchat_item_t *b)
{
    CHECK (a->id == b->id);
    CHECK (a->count == b->count);
    CHECK (strcmp (a->room, b->room) == 0);
    CHECK (strcmp (a->nick, b->nick) == 0);
    CHECK (strcmp (a->topic, b->topic) == 0);
    CHECK (a->members == b->members);
    CHECK (a->seq == b->seq);
    CHECK (a->ts == b->ts);
    CHECK (a->kind == b->kind);
    CHECK ((a->text == NULL) == (b->text == NULL));
    CHECK (a->text_size == b->text_size);
    CHECK (a->text_size == 0 || memcmp (a->text, b->text, a->text_size) == 0);
}

//  --------------------------------------------------------------------------
//  Decodes the body just encoded in buf (size is what the encoder
//  returned) and compares it with expect, every field, and its items with
//  items [0 .. expect->item_count). Keeps the body as a sample.

static void
s_check_round_trip (zchat_buf_t *buf, size_t size, const zchat_msg_t *expect,
                    const zchat_item_t *items, samples_t *samples)
{
    CHECK (size > 0);
    CHECK (size == buf->size);
    CHECK (!buf->overflow);
    uint8_t *copy = s_copy (buf->data, size);
    zchat_msg_t msg;
    int rc = zchat_msg_decode (&msg, copy, size);
    if (rc != ZCHAT_DECODE_OK)
        fprintf (stderr, "zchat_msg_test: %s round trip: %s\n",
                 zchat_msg_type_name (expect->type), zchat_decode_strerror (rc));
    CHECK (rc == ZCHAT_DECODE_OK);
    s_msg_equal (&msg, expect);

    size_t cursor = 0;
    zchat_item_t item;
    uint16_t index = 0;
    while (zchat_msg_next_item (&msg, &cursor, &item)) {
        CHECK (index < expect->item_count);
        s_item_equal (&item, &items [index]);
        index++;
    }
    CHECK (index == expect->item_count);
    CHECK (cursor == msg.items_size);
    if (msg.type == ZCHAT_SAYS) {
        zchat_say_t say;
        cursor = 0;
        for (index = 0; zchat_msg_next_say (&msg, &cursor, &say); index++) {
            CHECK (index < expect->item_count);
            CHECK (say.id == items [index].id && say.kind == items [index].kind);
            CHECK (say.room_size == strlen (items [index].room)
                && memcmp (say.room, items [index].room, say.room_size) == 0);
            CHECK (say.text_size == items [index].text_size
                && memcmp (say.text, items [index].text, say.text_size) == 0);
        }
        CHECK (index == expect->item_count);
        CHECK (cursor == msg.items_size);
    }

    CHECK (samples->count < SAMPLES_MAX);
    samples->data [samples->count] = copy;
    samples->size [samples->count] = size;
    samples->probe_request [samples->count] =
        expect->type == ZCHAT_PROBE && expect->nick [0] == 0;
    samples->count++;
}

//  Fills a zeroed expectation with a type and id.
static void
s_expect_init (zchat_msg_t *expect, uint8_t type, uint64_t id)
{
    memset (expect, 0, sizeof *expect);
    expect->type = type;
    expect->id = id;
}

static void
s_test_round_trips (zchat_buf_t *buf, samples_t *samples, bool verbose)
{
    zchat_msg_t e;
    size_t size;
    const char *text = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x82\xAC \xF0\x9D\x84\x9E";
    const char *topic = "Topic: \xE2\x80\x9Cquoted\xE2\x80\x9D";

    s_expect_init (&e, ZCHAT_HELLO, 1);
    e.version = ZCHAT_VERSION;
    strcpy (e.nick, "alice");
    size = zchat_encode_hello (buf, e.id, e.version, e.nick, "");
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_HELLO, UINT64_MAX);
    e.version = 255;
    strcpy (e.nick, "[bob]");
    strcpy (e.token, "0123456789abcdef0123456789abcdef");
    size = zchat_encode_hello (buf, e.id, e.version, e.nick, e.token);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_WELCOME, 0x0102030405060708ULL);
    e.version = 1;
    strcpy (e.nick, "alice");
    strcpy (e.token, "fedcba9876543210fedcba9876543210");
    e.pub_port = 5556;
    strcpy (e.endpoint, "tcp://0.0.0.0:5556");
    e.heartbeat_ms = 3333;
    e.timeout_ms = 10000;
    e.max_text = 4096;
    e.flag = 1;
    size = zchat_encode_welcome (buf, e.id, e.version, e.nick, e.token,
                                 e.pub_port, e.endpoint, e.heartbeat_ms,
                                 e.timeout_ms, e.max_text, true);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_BYE, 7);
    size = zchat_encode_bye (buf, e.id);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_PING, 8);
    size = zchat_encode_ping (buf, e.id);
    s_check_round_trip (buf, size, &e, NULL, samples);

    //  Lists: one with several items and one empty of each list type
    zchat_item_t items [4];
    memset (items, 0, sizeof items);
    strcpy (items [0].room, "lobby");
    items [0].seq = 42;
    strcpy (items [1].room, "ops");
    items [1].seq = UINT64_MAX;
    strcpy (items [2].room, "x");
    items [2].seq = 0;
    s_expect_init (&e, ZCHAT_PONG, 9);
    e.item_count = 3;
    size = zchat_encode_pong_begin (buf, e.id);
    CHECK (size == ZCHAT_HEADER_SIZE + 2);
    for (int i = 0; i < 3; i++)
        size = zchat_encode_pong_add (buf, items [i].room, items [i].seq);
    s_check_round_trip (buf, size, &e, items, samples);

    s_expect_init (&e, ZCHAT_PONG, 10);
    size = zchat_encode_pong_begin (buf, e.id);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_JOIN, 11);
    strcpy (e.room, "lobby");
    size = zchat_encode_join (buf, e.id, e.room);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_JOINED, 12);
    strcpy (e.room, "lobby");
    e.seq = 1000;
    e.first_seq = 17;
    e.members = 3;
    strcpy (e.topic, topic);
    size = zchat_encode_joined (buf, e.id, e.room, e.seq, e.first_seq,
                                e.members, e.topic);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_LEAVE, 13);
    strcpy (e.room, "a.b-c_d");
    size = zchat_encode_leave (buf, e.id, e.room);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_SAY, 14);
    strcpy (e.room, "lobby");
    e.kind = ZCHAT_KIND_ACTION;
    e.text = text;
    e.text_size = strlen (text);
    size = zchat_encode_say (buf, e.id, e.room, e.kind, e.text, e.text_size);
    s_check_round_trip (buf, size, &e, NULL, samples);

    //  An empty text still points somewhere: it is present
    s_expect_init (&e, ZCHAT_SAY, 15);
    strcpy (e.room, "lobby");
    e.text = "";
    size = zchat_encode_say (buf, e.id, e.room, ZCHAT_KIND_TEXT, "", 0);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_ACK, 16);
    strcpy (e.room, "lobby");
    e.seq = 1001;
    e.ts = 1764100000123ULL;
    size = zchat_encode_ack (buf, e.id, e.room, e.seq, e.ts);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_DM, 17);
    strcpy (e.nick, "bob");
    e.kind = ZCHAT_KIND_TEXT;
    e.text = "psst";
    e.text_size = 4;
    size = zchat_encode_dm (buf, e.id, e.nick, e.kind, e.text, e.text_size);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_DELIVER, 0);
    strcpy (e.nick, "alice");
    e.kind = ZCHAT_KIND_ACTION;
    e.ts = 1764100000999ULL;
    e.text = text;
    e.text_size = strlen (text);
    size = zchat_encode_deliver (buf, e.id, e.nick, e.kind, e.ts,
                                 e.text, e.text_size);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_NICK, 18);
    strcpy (e.nick, "{carol}|^`_-");
    size = zchat_encode_nick (buf, e.id, e.nick);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_WHO, 19);
    strcpy (e.room, "ops");
    size = zchat_encode_who (buf, e.id, e.room);
    s_check_round_trip (buf, size, &e, NULL, samples);

    memset (items, 0, sizeof items);
    strcpy (items [0].nick, "alice");
    strcpy (items [1].nick, "bob");
    s_expect_init (&e, ZCHAT_MEMBERS, 20);
    strcpy (e.room, "ops");
    e.item_count = 2;
    size = zchat_encode_members_begin (buf, e.id, e.room);
    for (int i = 0; i < 2; i++)
        size = zchat_encode_members_add (buf, items [i].nick);
    s_check_round_trip (buf, size, &e, items, samples);

    s_expect_init (&e, ZCHAT_MEMBERS, 21);
    strcpy (e.room, "empty");
    size = zchat_encode_members_begin (buf, e.id, e.room);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_ROOMS, 22);
    size = zchat_encode_rooms (buf, e.id);
    s_check_round_trip (buf, size, &e, NULL, samples);

    memset (items, 0, sizeof items);
    strcpy (items [0].room, "lobby");
    items [0].members = 3;
    items [0].seq = 1001;
    strcpy (items [0].topic, topic);
    strcpy (items [1].room, "ops");
    items [1].members = UINT32_MAX;
    items [1].seq = 0;
    s_expect_init (&e, ZCHAT_ROOMLIST, 23);
    e.item_count = 2;
    size = zchat_encode_roomlist_begin (buf, e.id);
    for (int i = 0; i < 2; i++)
        size = zchat_encode_roomlist_add (buf, items [i].room, items [i].members,
                                          items [i].seq, items [i].topic);
    s_check_round_trip (buf, size, &e, items, samples);

    s_expect_init (&e, ZCHAT_ROOMLIST, 24);
    size = zchat_encode_roomlist_begin (buf, e.id);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_TOPIC, 25);
    strcpy (e.room, "lobby");
    e.flag = 1;
    strcpy (e.topic, topic);
    size = zchat_encode_topic (buf, e.id, e.room, true, e.topic);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_TOPIC, 26);
    strcpy (e.room, "lobby");
    size = zchat_encode_topic (buf, e.id, e.room, false, NULL);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_TOPICIS, 27);
    strcpy (e.room, "lobby");
    strcpy (e.topic, topic);
    strcpy (e.nick, "alice");
    e.ts = 1764100000000ULL;
    size = zchat_encode_topicis (buf, e.id, e.room, e.topic, e.nick, e.ts);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_HISTORY, 28);
    strcpy (e.room, "lobby");
    e.from_seq = 5;
    e.to_seq = 0;
    e.limit = 65535;
    size = zchat_encode_history (buf, e.id, e.room, e.from_seq, e.to_seq,
                                 (uint16_t) e.limit);
    s_check_round_trip (buf, size, &e, NULL, samples);

    memset (items, 0, sizeof items);
    items [0].seq = 5;
    items [0].ts = 1764100000001ULL;
    strcpy (items [0].nick, "alice");
    items [0].kind = ZCHAT_KIND_TEXT;
    items [0].text = text;
    items [0].text_size = strlen (text);
    items [1].seq = 6;
    items [1].ts = 1764100000002ULL;
    strcpy (items [1].nick, "bob");
    items [1].kind = ZCHAT_KIND_ACTION;
    items [1].text = "waves";
    items [1].text_size = 5;
    items [2].seq = 7;
    items [2].ts = 1764100000003ULL;
    strcpy (items [2].nick, "carol");
    items [2].text = "";
    s_expect_init (&e, ZCHAT_PAGE, 29);
    strcpy (e.room, "lobby");
    e.first_seq = 1;
    e.seq = 1001;
    e.flag = 1;
    e.item_count = 3;
    //  Begun with more = false, then set: the way the broker fills a page
    size = zchat_encode_page_begin (buf, e.id, e.room, e.first_seq, e.seq, false);
    for (int i = 0; i < 3; i++)
        size = zchat_encode_page_add (buf, items [i].seq, items [i].ts,
                                      items [i].nick, items [i].kind,
                                      items [i].text, items [i].text_size);
    zchat_encode_page_set_more (buf, true);
    s_check_round_trip (buf, size, &e, items, samples);

    s_expect_init (&e, ZCHAT_PAGE, 30);
    strcpy (e.room, "lobby");
    size = zchat_encode_page_begin (buf, e.id, e.room, 0, 0, true);
    zchat_encode_page_set_more (buf, false);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_PROBE, 31);
    strcpy (e.room, "lobby");
    size = zchat_encode_probe (buf, e.id, e.room, NULL);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_PROBE, 0);
    strcpy (e.room, "lobby");
    strcpy (e.nick, "alice");
    size = zchat_encode_probe (buf, e.id, e.room, e.nick);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_OK, 32);
    size = zchat_encode_ok (buf, e.id);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_ERROR, 33);
    e.code = ZCHAT_ERR_RATE_LIMITED;
    e.retry_ms = 250;
    strcpy (e.reason, "rate limited: slow down");
    size = zchat_encode_error (buf, e.id, e.code, e.retry_ms, e.reason);
    s_check_round_trip (buf, size, &e, NULL, samples);

    s_expect_init (&e, ZCHAT_MESSAGE, 0);
    strcpy (e.room, "lobby");
    e.seq = 1002;
    e.ts = 1764100000555ULL;
    strcpy (e.nick, "alice");
    e.kind = ZCHAT_KIND_TEXT;
    e.text = text;
    e.text_size = strlen (text);
    size = zchat_encode_message (buf, e.id, e.room, e.seq, e.ts, e.nick,
                                 e.kind, e.text, e.text_size);
    s_check_round_trip (buf, size, &e, NULL, samples);

    for (uint8_t event = ZCHAT_EVENT_JOIN; event <= ZCHAT_EVENT_TOPIC; event++) {
        s_expect_init (&e, ZCHAT_EVENT, 0);
        strcpy (e.room, "lobby");
        e.ts = 1764100000777ULL;
        e.event = event;
        strcpy (e.nick, "alice");
        if (event == ZCHAT_EVENT_NICK)
            strcpy (e.topic, "alice2");
        else
        if (event == ZCHAT_EVENT_TOPIC)
            strcpy (e.topic, topic);
        size = zchat_encode_event (buf, e.id, e.room, e.ts, e.event, e.nick,
                                   e.topic);
        s_check_round_trip (buf, size, &e, NULL, samples);
    }

    //  ACKS, field by field and copied from ACK bodies: the same bytes
    memset (items, 0, sizeof items);
    items [0].id = 77;
    strcpy (items [0].room, "lobby");
    items [0].seq = 1;
    items [0].ts = 1764100000001ULL;
    items [1].id = UINT64_MAX;
    strcpy (items [1].room, "ops");
    items [1].seq = UINT64_MAX;
    items [1].ts = 2;
    items [2].id = 79;              //  a DM's ACK: no room, seq 0
    s_expect_init (&e, ZCHAT_ACKS, 0);
    e.item_count = 3;
    size = zchat_encode_acks_begin (buf);
    for (int i = 0; i < 3; i++)
        size = zchat_encode_acks_add (buf, items [i].id, items [i].room,
                                      items [i].seq, items [i].ts);
    uint8_t by_field [256];
    CHECK (size > 0 && size <= sizeof by_field);
    size_t by_field_size = size;
    memcpy (by_field, buf->data, size);
    s_check_round_trip (buf, size, &e, items, samples);
    {
        uint8_t acks_data [256], ack_data [64];
        zchat_buf_t acks, ack;
        zchat_buf_init (&acks, acks_data, sizeof acks_data);
        size = zchat_encode_acks_begin (&acks);
        for (int i = 0; i < 3; i++) {
            zchat_buf_init (&ack, ack_data, sizeof ack_data);
            size_t ack_size = zchat_encode_ack (&ack, items [i].id, items [i].room,
                                                items [i].seq, items [i].ts);
            size = zchat_encode_acks_append (&acks, ack_data, ack_size);
            CHECK (size > 0);
        }
        CHECK (size == by_field_size && memcmp (acks_data, by_field, size) == 0);
        //  Only an ACK, whole, is taken
        zchat_buf_init (&ack, ack_data, sizeof ack_data);
        size_t ok_size = zchat_encode_ok (&ack, 5);
        CHECK (zchat_encode_acks_append (&acks, ack_data, ok_size) == 0);
        zchat_buf_init (&ack, ack_data, sizeof ack_data);
        size_t ack_size = zchat_encode_ack (&ack, 1, "lobby", 1, 1);
        CHECK (zchat_encode_acks_append (&acks, ack_data, ack_size - 1) == 0);
        CHECK (acks.size == by_field_size && acks.count == 3);
    }

    //  ACKRUNS: runs up to the last id and seq that do not wrap
    memset (items, 0, sizeof items);
    items [0].id = 77;
    items [0].count = 300;
    strcpy (items [0].room, "lobby");
    items [0].seq = 1;
    items [0].ts = 1764100000001ULL;
    items [1].id = UINT64_MAX;
    items [1].count = 1;
    strcpy (items [1].room, "ops");
    items [1].seq = UINT64_MAX;
    items [1].ts = 2;
    items [2].id = 1;
    items [2].count = UINT32_MAX;
    strcpy (items [2].room, "ops");
    items [2].seq = UINT64_MAX - UINT32_MAX + 1;
    s_expect_init (&e, ZCHAT_ACKRUNS, 0);
    e.item_count = 3;
    size = zchat_encode_ackruns_begin (buf);
    for (int i = 0; i < 3; i++)
        size = zchat_encode_ackruns_add (buf, items [i].id, items [i].count, items [i].room,
                                         items [i].seq, items [i].ts);
    s_check_round_trip (buf, size, &e, items, samples);
    //  The encoder refuses an empty run, and one that would wrap, and
    //  keeps what it had
    CHECK (zchat_encode_ackruns_add (buf, 5, 0, "ops", 1, 1) == 0);
    CHECK (zchat_encode_ackruns_add (buf, UINT64_MAX, 2, "ops", 1, 1) == 0);
    CHECK (zchat_encode_ackruns_add (buf, 5, 2, "ops", UINT64_MAX, 1) == 0);
    CHECK (buf->size == size && buf->count == 3 && !buf->overflow);

    //  MESSAGES, field by field and copied from MESSAGE bodies
    memset (items, 0, sizeof items);
    items [0].seq = 41;
    items [0].ts = 1764100000001ULL;
    strcpy (items [0].nick, "alice");
    items [0].text = text;
    items [0].text_size = strlen (text);
    items [1].seq = 42;
    items [1].ts = 1764100000002ULL;
    strcpy (items [1].nick, "bob");
    items [1].kind = ZCHAT_KIND_ACTION;
    items [1].text = "waves";
    items [1].text_size = 5;
    s_expect_init (&e, ZCHAT_MESSAGES, 0);
    strcpy (e.room, "lobby");
    e.item_count = 2;
    size = zchat_encode_messages_begin (buf, e.room);
    for (int i = 0; i < 2; i++)
        size = zchat_encode_messages_add (buf, items [i].seq, items [i].ts,
                                          items [i].nick, items [i].kind,
                                          items [i].text, items [i].text_size);
    CHECK (size > 0 && size <= sizeof by_field);
    by_field_size = size;
    memcpy (by_field, buf->data, size);
    s_check_round_trip (buf, size, &e, items, samples);
    {
        uint8_t batch_data [256], one_data [128];
        zchat_buf_t batch, one;
        zchat_buf_init (&batch, batch_data, sizeof batch_data);
        size = zchat_encode_messages_begin (&batch, "lobby");
        for (int i = 0; i < 2; i++) {
            zchat_buf_init (&one, one_data, sizeof one_data);
            size_t one_size = zchat_encode_message (&one, 0, "lobby", items [i].seq,
                                                    items [i].ts, items [i].nick,
                                                    items [i].kind, items [i].text,
                                                    items [i].text_size);
            size = zchat_encode_messages_append (&batch, one_data, one_size);
            CHECK (size > 0);
        }
        CHECK (size == by_field_size && memcmp (batch_data, by_field, size) == 0);
        //  Another room's message, or a prefix of ours, is not taken
        zchat_buf_init (&one, one_data, sizeof one_data);
        size_t one_size = zchat_encode_message (&one, 0, "lobby2", 43, 1, "bob", 0, "x", 1);
        CHECK (zchat_encode_messages_append (&batch, one_data, one_size) == 0);
        zchat_buf_init (&one, one_data, sizeof one_data);
        one_size = zchat_encode_message (&one, 0, "lobb", 43, 1, "bob", 0, "x", 1);
        CHECK (zchat_encode_messages_append (&batch, one_data, one_size) == 0);
        CHECK (batch.size == by_field_size && batch.count == 2);
        //  A batch that does not fit keeps the items that did
        uint8_t small_data [60];
        zchat_buf_t small;
        zchat_buf_init (&small, small_data, sizeof small_data);
        zchat_encode_messages_begin (&small, "lobby");
        zchat_buf_init (&one, one_data, sizeof one_data);
        one_size = zchat_encode_message (&one, 0, "lobby", 1, 1, "bob", 0, "hi", 2);
        CHECK (zchat_encode_messages_append (&small, one_data, one_size) > 0);
        CHECK (zchat_encode_messages_append (&small, one_data, one_size) == 0);
        zchat_msg_t decoded;
        CHECK (zchat_msg_decode (&decoded, small_data, small.size) == ZCHAT_DECODE_OK);
        CHECK (decoded.type == ZCHAT_MESSAGES && decoded.item_count == 1);

        //  Batches extended by batches: [item 0] + [item 1] is the batch of
        //  both, byte for byte; another room's batch, a MESSAGE, or items
        //  that do not fit change nothing
        uint8_t first_data [128], second_data [128];
        zchat_buf_t first, second;
        zchat_buf_init (&first, first_data, sizeof first_data);
        zchat_buf_init (&second, second_data, sizeof second_data);
        zchat_encode_messages_begin (&first, "lobby");
        zchat_encode_messages_begin (&second, "lobby");
        zchat_encode_messages_add (&first, items [0].seq, items [0].ts, items [0].nick,
                                   items [0].kind, items [0].text, items [0].text_size);
        zchat_encode_messages_add (&second, items [1].seq, items [1].ts, items [1].nick,
                                   items [1].kind, items [1].text, items [1].text_size);
        zchat_buf_init (&batch, batch_data, sizeof batch_data);
        zchat_encode_messages_begin (&batch, "lobby");
        CHECK (zchat_encode_messages_extend (&batch, first_data, first.size) > 0);
        size = zchat_encode_messages_extend (&batch, second_data, second.size);
        CHECK (size == by_field_size && memcmp (batch_data, by_field, size) == 0);
        CHECK (batch.count == 2);
        //  An empty batch adds nothing
        zchat_buf_init (&one, one_data, sizeof one_data);
        one_size = zchat_encode_messages_begin (&one, "lobby");
        CHECK (zchat_encode_messages_extend (&batch, one_data, one_size) == size);
        CHECK (batch.count == 2);
        zchat_buf_init (&one, one_data, sizeof one_data);
        zchat_encode_messages_begin (&one, "lobby2");
        one_size = zchat_encode_messages_add (&one, 5, 1, "bob", 0, "x", 1);
        CHECK (zchat_encode_messages_extend (&batch, one_data, one_size) == 0);
        zchat_buf_init (&one, one_data, sizeof one_data);
        one_size = zchat_encode_message (&one, 0, "lobby", 43, 1, "bob", 0, "x", 1);
        CHECK (zchat_encode_messages_extend (&batch, one_data, one_size) == 0);
        CHECK (zchat_encode_messages_extend (&batch, first_data, 12) == 0);
        CHECK (batch.size == by_field_size && batch.count == 2);
        zchat_buf_init (&small, small_data, sizeof small_data);
        zchat_encode_messages_begin (&small, "lobby");
        CHECK (zchat_encode_messages_extend (&small, second_data, second.size) > 0);
        CHECK (zchat_encode_messages_extend (&small, first_data, first.size) == 0);
        CHECK (small.count == 1 && !small.overflow);
        CHECK (zchat_msg_decode (&decoded, small_data, small.size) == ZCHAT_DECODE_OK);
        CHECK (decoded.item_count == 1);
        //  No more than ZCHAT_MAX_ITEMS, whatever the bytes
        first_data [ZCHAT_HEADER_SIZE + 6] = (uint8_t) (ZCHAT_MAX_ITEMS >> 8);
        first_data [ZCHAT_HEADER_SIZE + 7] = (uint8_t) ZCHAT_MAX_ITEMS;
        CHECK (zchat_encode_messages_extend (&batch, first_data, first.size) == 0);
        CHECK (batch.size == by_field_size && batch.count == 2);
        first_data [ZCHAT_HEADER_SIZE + 6] = 0;
        first_data [ZCHAT_HEADER_SIZE + 7] = 1;

        //  A batch of one is the MESSAGE of its item; of two, it is no MESSAGE
        zchat_buf_init (&one, one_data, sizeof one_data);
        one_size = zchat_encode_message (&one, 0, "lobby", items [1].seq, items [1].ts,
                                         items [1].nick, items [1].kind, items [1].text,
                                         items [1].text_size);
        size = zchat_encode_messages_single (second_data, second.size);
        CHECK (size == one_size && memcmp (second_data + 2, one_data, size) == 0);
        CHECK (zchat_encode_messages_single (one_data, one_size) == 0);
        memcpy (batch_data + 200, batch_data, 50);
        CHECK (zchat_encode_messages_single (batch_data, batch.size) == 0);
        CHECK (memcmp (batch_data + 200, batch_data, 50) == 0);
        CHECK (zchat_encode_messages_single (first_data, 14) == 0);
    }

    //  SAYS
    memset (items, 0, sizeof items);
    items [0].id = 501;
    strcpy (items [0].room, "lobby");
    items [0].text = text;
    items [0].text_size = strlen (text);
    items [1].id = 502;
    strcpy (items [1].room, "ops");
    items [1].kind = ZCHAT_KIND_ACTION;
    items [1].text = "waves";
    items [1].text_size = 5;
    s_expect_init (&e, ZCHAT_SAYS, 0);
    e.item_count = 2;
    size = zchat_encode_says_begin (buf);
    for (int i = 0; i < 2; i++)
        size = zchat_encode_says_add (buf, items [i].id, items [i].room, items [i].kind,
                                      items [i].text, items [i].text_size);
    s_check_round_trip (buf, size, &e, items, samples);

    //  Every type has been through at least once
    bool seen [ZCHAT_TYPE_MAX + 1] = { false };
    for (size_t i = 0; i < samples->count; i++)
        seen [samples->data [i][2]] = true;
    for (int type = ZCHAT_HELLO; type <= ZCHAT_TYPE_MAX; type++)
        CHECK (seen [type]);
    if (verbose)
        printf (" * round trips: %zu bodies, all %d types\n",
                samples->count, ZCHAT_TYPE_MAX);
}

//  --------------------------------------------------------------------------
//  A body built by hand, for the hostile list.

typedef struct {
    uint8_t data [1024];
    size_t size;
} raw_t;

static void
s_raw_bytes (raw_t *raw, const void *bytes, size_t size)
{
    CHECK (raw->size + size <= sizeof raw->data);
    memcpy (raw->data + raw->size, bytes, size);
    raw->size += size;
}

static void
s_raw_uint (raw_t *raw, size_t n, uint64_t value)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = (uint8_t) (value >> (8 * (n - 1 - i)));
        s_raw_bytes (raw, &byte, 1);
    }
}

//  A str with its real length
static void
s_raw_str (raw_t *raw, const char *s)
{
    s_raw_uint (raw, 1, strlen (s));
    s_raw_bytes (raw, s, strlen (s));
}

//  A str of size bytes (may contain NUL)
static void
s_raw_strn (raw_t *raw, const char *s, size_t size)
{
    s_raw_uint (raw, 1, size);
    s_raw_bytes (raw, s, size);
}

static void
s_raw_text (raw_t *raw, const char *s, size_t size)
{
    s_raw_uint (raw, 4, size);
    s_raw_bytes (raw, s, size);
}

static void
s_raw_header (raw_t *raw, uint8_t type)
{
    raw->size = 0;
    s_raw_bytes (raw, "ZC", 2);
    s_raw_uint (raw, 1, type);
    s_raw_uint (raw, 8, 99);
}

static void
s_test_hostile (samples_t *samples, bool verbose)
{
    raw_t raw;
    size_t prefixes = 0;

    //  Every proper prefix of every valid body is rejected. The one
    //  exception: a published PROBE cut after its room is a whole request
    //  PROBE, which is what the protocol says it is.
    for (size_t i = 0; i < samples->count; i++)
        for (size_t size = 0; size < samples->size [i]; size++) {
            int rc = s_decode_exact (samples->data [i], size);
            bool probe_request = samples->data [i][2] == ZCHAT_PROBE
                && !samples->probe_request [i]
                && size == (size_t) ZCHAT_HEADER_SIZE + 1 + samples->data [i][ZCHAT_HEADER_SIZE];
            if (probe_request)
                CHECK (rc == ZCHAT_DECODE_OK);
            else
            if (rc != ZCHAT_DECODE_TRUNCATED) {
                fprintf (stderr, "zchat_msg_test: prefix %zu of %s: %s\n", size,
                         zchat_msg_type_name (samples->data [i][2]),
                         zchat_decode_strerror (rc));
                CHECK (rc == ZCHAT_DECODE_TRUNCATED);
            }
            prefixes++;
        }

    s_expect ("empty body", NULL, 0, ZCHAT_DECODE_TRUNCATED);
    s_expect ("empty body", "", 0, ZCHAT_DECODE_TRUNCATED);
    s_expect ("one byte Z", "Z", 1, ZCHAT_DECODE_TRUNCATED);
    s_expect ("one byte x", "x", 1, ZCHAT_DECODE_SIGNATURE);
    s_expect ("one NUL byte", "\0", 1, ZCHAT_DECODE_SIGNATURE);
    s_expect ("ZX", "ZXabcdefghijk", 13, ZCHAT_DECODE_SIGNATURE);
    s_expect ("CZ", "CZ\x04\0\0\0\0\0\0\0\0", 11, ZCHAT_DECODE_SIGNATURE);
    s_expect ("header only", "ZC\x04\0\0\0\0\0\0\0\0", 11, ZCHAT_DECODE_OK);
    s_expect ("short id", "ZC\x04\0\0\0\0\0\0\0", 10, ZCHAT_DECODE_TRUNCATED);
    s_expect ("type 0", "ZC\x00\0\0\0\0\0\0\0\0", 11, ZCHAT_DECODE_UNKNOWN_TYPE);
    s_expect ("type 31", "ZC\x1F\0\0\0\0\0\0\0\0", 11, ZCHAT_DECODE_UNKNOWN_TYPE);
    s_expect ("type 255", "ZC\xFF\0\0\0\0\0\0\0\0", 11, ZCHAT_DECODE_UNKNOWN_TYPE);
    s_expect ("type 31, no id", "ZC\x1F", 3, ZCHAT_DECODE_UNKNOWN_TYPE);

    //  Lengths past the end
    s_raw_header (&raw, ZCHAT_JOIN);
    s_raw_bytes (&raw, "\x0A" "abc", 4);
    s_expect ("room length past the end", raw.data, raw.size, ZCHAT_DECODE_TRUNCATED);
    s_raw_header (&raw, ZCHAT_SAY);
    s_raw_str (&raw, "lobby");
    s_raw_uint (&raw, 1, 0);
    s_raw_uint (&raw, 4, 100);
    s_raw_bytes (&raw, "hello", 5);
    s_expect ("text length past the end", raw.data, raw.size, ZCHAT_DECODE_TRUNCATED);
    s_raw_header (&raw, ZCHAT_SAY);
    s_raw_str (&raw, "lobby");
    s_raw_uint (&raw, 1, 0);
    s_raw_uint (&raw, 4, UINT32_MAX);
    s_raw_bytes (&raw, "hello", 5);
    s_expect ("text length 2^32-1", raw.data, raw.size, ZCHAT_DECODE_TOO_LONG);
    s_raw_header (&raw, ZCHAT_MEMBERS);
    s_raw_str (&raw, "ops");
    s_raw_uint (&raw, 2, 3);
    s_raw_str (&raw, "alice");
    s_raw_str (&raw, "bob");
    s_expect ("item count past the end", raw.data, raw.size, ZCHAT_DECODE_TRUNCATED);

    //  Lengths over their limits, and exactly at them
    char big [300];
    memset (big, 'a', sizeof big);
    s_raw_header (&raw, ZCHAT_HELLO);
    s_raw_uint (&raw, 1, 1);
    s_raw_strn (&raw, big, ZCHAT_MAX_NICK + 1);
    s_raw_str (&raw, "");
    s_expect ("nick of 33 bytes", raw.data, raw.size, ZCHAT_DECODE_TOO_LONG);
    raw.size = ZCHAT_HEADER_SIZE + 2;
    s_expect ("nick of 33 bytes, cut", raw.data, raw.size, ZCHAT_DECODE_TOO_LONG);
    s_raw_header (&raw, ZCHAT_HELLO);
    s_raw_uint (&raw, 1, 1);
    s_raw_strn (&raw, big, ZCHAT_MAX_NICK);
    s_raw_strn (&raw, big, ZCHAT_MAX_TOKEN);
    s_expect ("nick of 32, token of 64", raw.data, raw.size, ZCHAT_DECODE_OK);
    s_raw_header (&raw, ZCHAT_HELLO);
    s_raw_uint (&raw, 1, 1);
    s_raw_str (&raw, "alice");
    s_raw_strn (&raw, big, ZCHAT_MAX_TOKEN + 1);
    s_expect ("token of 65", raw.data, raw.size, ZCHAT_DECODE_TOO_LONG);
    s_raw_header (&raw, ZCHAT_JOIN);
    s_raw_strn (&raw, big, ZCHAT_MAX_ROOM + 1);
    s_expect ("room of 33 bytes", raw.data, raw.size, ZCHAT_DECODE_TOO_LONG);
    s_raw_header (&raw, ZCHAT_JOIN);
    s_raw_strn (&raw, big, ZCHAT_MAX_ROOM);
    s_expect ("room of 32 bytes", raw.data, raw.size, ZCHAT_DECODE_OK);
    s_raw_header (&raw, ZCHAT_PROBE);
    s_raw_str (&raw, "lobby");
    s_raw_strn (&raw, big, ZCHAT_MAX_PROBE_TAG + 1);
    s_expect ("probe tag of 33 bytes", raw.data, raw.size, ZCHAT_DECODE_TOO_LONG);
    s_raw_header (&raw, ZCHAT_PROBE);
    s_raw_str (&raw, "lobby");
    s_raw_strn (&raw, big, ZCHAT_MAX_PROBE_TAG);
    s_expect ("probe tag of 32 bytes", raw.data, raw.size, ZCHAT_DECODE_OK);
    s_raw_header (&raw, ZCHAT_TOPIC);
    s_raw_str (&raw, "lobby");
    s_raw_uint (&raw, 1, 1);
    s_raw_strn (&raw, big, ZCHAT_MAX_TOPIC);
    s_expect ("topic of 255 bytes", raw.data, raw.size, ZCHAT_DECODE_OK);
    s_raw_header (&raw, ZCHAT_MEMBERS);
    s_raw_str (&raw, "ops");
    s_raw_uint (&raw, 2, 1);
    s_raw_strn (&raw, big, ZCHAT_MAX_NICK + 1);
    s_expect ("member nick of 33 bytes", raw.data, raw.size, ZCHAT_DECODE_TOO_LONG);

    //  Text of ZCHAT_MAX_TEXT is accepted, one byte more is not
    size_t text_body = ZCHAT_HEADER_SIZE + 1 + 5 + 1 + 4 + ZCHAT_MAX_TEXT + 1;
    uint8_t *body = (uint8_t *) malloc (text_body);
    char *text = (char *) malloc (ZCHAT_MAX_TEXT + 1);
    CHECK (body && text);
    memset (text, 'x', ZCHAT_MAX_TEXT + 1);
    zchat_buf_t buf;
    zchat_buf_init (&buf, body, text_body);
    size_t size = zchat_encode_say (&buf, 1, "lobby", 0, text, ZCHAT_MAX_TEXT);
    CHECK (size == text_body - 1);
    s_expect ("text of ZCHAT_MAX_TEXT", body, size, ZCHAT_DECODE_OK);
    CHECK (zchat_encode_say (&buf, 1, "lobby", 0, text, ZCHAT_MAX_TEXT + 1) == 0);
    CHECK (buf.overflow);
    //  Patch the length and append the byte by hand: the encoder refuses
    size = zchat_encode_say (&buf, 1, "lobby", 0, text, ZCHAT_MAX_TEXT);
    uint32_t over = ZCHAT_MAX_TEXT + 1;
    size_t at = ZCHAT_HEADER_SIZE + 1 + 5 + 1;
    body [at] = (uint8_t) (over >> 24);
    body [at + 1] = (uint8_t) (over >> 16);
    body [at + 2] = (uint8_t) (over >> 8);
    body [at + 3] = (uint8_t) over;
    body [text_body - 1] = 'x';
    s_expect ("text of ZCHAT_MAX_TEXT + 1", body, text_body, ZCHAT_DECODE_TOO_LONG);
    free (body);
    free (text);

    //  Item counts: ZCHAT_MAX_ITEMS accepted, one more rejected even when
    //  the items are all there
    size_t list_capacity = ZCHAT_HEADER_SIZE + 4 + 2 + 2 * (ZCHAT_MAX_ITEMS + 1);
    body = (uint8_t *) malloc (list_capacity);
    CHECK (body);
    zchat_buf_init (&buf, body, list_capacity);
    size = zchat_encode_members_begin (&buf, 5, "ops");
    for (int i = 0; i < ZCHAT_MAX_ITEMS; i++) {
        size = zchat_encode_members_add (&buf, "a");
        CHECK (size > 0);
    }
    CHECK (zchat_encode_members_add (&buf, "a") == 0);
    CHECK (buf.size == size && !buf.overflow);
    s_expect ("ZCHAT_MAX_ITEMS items", body, size, ZCHAT_DECODE_OK);
    body [size] = 1;
    body [size + 1] = 'a';
    size += 2;
    uint16_t count = ZCHAT_MAX_ITEMS + 1;
    body [buf.count_at] = (uint8_t) (count >> 8);
    body [buf.count_at + 1] = (uint8_t) count;
    s_expect ("ZCHAT_MAX_ITEMS + 1 items", body, size, ZCHAT_DECODE_TOO_LONG);
    body [buf.count_at] = 0xFF;
    body [buf.count_at + 1] = 0xFF;
    s_expect ("65535 items", body, size, ZCHAT_DECODE_TOO_LONG);
    free (body);

    //  Trailing garbage, after a fixed body and after a list
    s_expect ("PING + 1 byte", "ZC\x04\0\0\0\0\0\0\0\0\0", 12, ZCHAT_DECODE_TRAILING);
    s_raw_header (&raw, ZCHAT_MEMBERS);
    s_raw_str (&raw, "ops");
    s_raw_uint (&raw, 2, 1);
    s_raw_str (&raw, "alice");
    s_expect ("MEMBERS", raw.data, raw.size, ZCHAT_DECODE_OK);
    s_raw_str (&raw, "bob");
    s_expect ("MEMBERS + an uncounted item", raw.data, raw.size, ZCHAT_DECODE_TRAILING);
    s_raw_header (&raw, ZCHAT_PROBE);
    s_raw_str (&raw, "lobby");
    s_raw_str (&raw, "alice");
    s_raw_bytes (&raw, "!", 1);
    s_expect ("PROBE + 1 byte", raw.data, raw.size, ZCHAT_DECODE_TRAILING);

    //  Invalid UTF-8 and NUL, in a str, in a text and in a list item
    struct {
        const char *what;
        const char *bytes;
        size_t size;
    } bad [] = {
        { "overlong C0 AF", "a\xC0\xAF", 3 },
        { "overlong C1 BF", "\xC1\xBF", 2 },
        { "overlong E0 80 AF", "\xE0\x80\xAF", 3 },
        { "overlong F0 80 80 AF", "\xF0\x80\x80\xAF", 4 },
        { "surrogate ED A0 80", "\xED\xA0\x80", 3 },
        { "surrogate ED BF BF", "x\xED\xBF\xBFy", 5 },
        { "byte FF", "\xFF", 1 },
        { "byte FE", "ok\xFE", 3 },
        { "lone continuation", "\x80", 1 },
        { "truncated E2 82", "\xE2\x82", 2 },
        { "truncated F0 9F 98", "\xF0\x9F\x98", 3 },
        { "truncated C3 at end", "abc\xC3", 4 },
        { "bad continuation", "\xC3\x28", 2 },
        { "above U+10FFFF", "\xF4\x90\x80\x80", 4 },
        { "F5 lead", "\xF5\x80\x80\x80", 4 },
        { "embedded NUL", "ab\0cd", 5 },
        { "leading NUL", "\0", 1 },
        { "NUL after 8 ASCII", "abcdefgh\0", 9 },
        { "FF after 16 ASCII", "abcdefghijklmnop\xFF", 17 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        CHECK (!zchat_utf8_valid (bad [i].bytes, bad [i].size));
        s_raw_header (&raw, ZCHAT_JOIN);
        s_raw_strn (&raw, bad [i].bytes, bad [i].size);
        s_expect (bad [i].what, raw.data, raw.size, ZCHAT_DECODE_BAD_UTF8);
        s_raw_header (&raw, ZCHAT_SAY);
        s_raw_str (&raw, "lobby");
        s_raw_uint (&raw, 1, 0);
        s_raw_text (&raw, bad [i].bytes, bad [i].size);
        s_expect (bad [i].what, raw.data, raw.size, ZCHAT_DECODE_BAD_UTF8);
        s_raw_header (&raw, ZCHAT_PAGE);
        s_raw_str (&raw, "lobby");
        s_raw_uint (&raw, 8, 1);
        s_raw_uint (&raw, 8, 2);
        s_raw_uint (&raw, 1, 0);
        s_raw_uint (&raw, 2, 1);
        s_raw_uint (&raw, 8, 1);
        s_raw_uint (&raw, 8, 1);
        s_raw_str (&raw, "alice");
        s_raw_uint (&raw, 1, 0);
        s_raw_text (&raw, bad [i].bytes, bad [i].size);
        s_expect (bad [i].what, raw.data, raw.size, ZCHAT_DECODE_BAD_UTF8);
    }
    const char *good [] = {
        "", "a", "abcdefghijklmnopqrstuvwxyz", "\xC2\x80", "\xDF\xBF",
        "\xE0\xA0\x80", "\xE2\x82\xAC", "\xED\x9F\xBF", "\xEE\x80\x80",
        "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF0\x9F\x98\x80",
        "\xF4\x8F\xBF\xBF", ("12345678\xC3\xA9" "12345678"), "\x7F"
    };
    for (size_t i = 0; i < sizeof good / sizeof good [0]; i++) {
        CHECK (zchat_utf8_valid (good [i], strlen (good [i])));
        s_raw_header (&raw, ZCHAT_SAY);
        s_raw_str (&raw, "lobby");
        s_raw_uint (&raw, 1, 0);
        s_raw_text (&raw, good [i], strlen (good [i]));
        s_expect ("valid UTF-8", raw.data, raw.size, ZCHAT_DECODE_OK);
    }
    CHECK (zchat_utf8_valid (NULL, 0));
    //  A NUL, a lone lead byte, a continuation byte or DEL at every
    //  position of an ASCII run, and a valid two-byte sequence at every
    //  alignment, to cover the 32-byte and 8-byte paths and their seams
    for (size_t pos = 0; pos < 80; pos++) {
        char run [80];
        memset (run, 'q', sizeof run);
        CHECK (zchat_utf8_valid (run, sizeof run));
        run [pos] = 0;
        CHECK (!zchat_utf8_valid (run, sizeof run));
        run [pos] = (char) 0xC3;
        CHECK (!zchat_utf8_valid (run, sizeof run));
        run [pos] = (char) 0x80;
        CHECK (!zchat_utf8_valid (run, sizeof run));
        run [pos] = 0x7F;
        CHECK (zchat_utf8_valid (run, sizeof run));
        run [pos] = 0x01;
        CHECK (zchat_utf8_valid (run, sizeof run));
        if (pos + 1 < sizeof run) {
            run [pos] = (char) 0xC3;
            run [pos + 1] = (char) 0xA9;
            CHECK (zchat_utf8_valid (run, sizeof run));
            CHECK (!zchat_utf8_valid (run, pos + 1));
        }
    }

    //  Values outside their sets
    s_raw_header (&raw, ZCHAT_SAY);
    s_raw_str (&raw, "lobby");
    s_raw_uint (&raw, 1, 2);
    s_raw_text (&raw, "hi", 2);
    s_expect ("kind 2", raw.data, raw.size, ZCHAT_DECODE_BAD_VALUE);
    raw.data [ZCHAT_HEADER_SIZE + 6] = 0xFF;
    s_expect ("kind 255", raw.data, raw.size, ZCHAT_DECODE_BAD_VALUE);
    raw.data [ZCHAT_HEADER_SIZE + 6] = 1;
    s_expect ("kind 1", raw.data, raw.size, ZCHAT_DECODE_OK);
    for (int event = 0; event < 8; event++) {
        s_raw_header (&raw, ZCHAT_EVENT);
        s_raw_str (&raw, "lobby");
        s_raw_uint (&raw, 8, 1);
        s_raw_uint (&raw, 1, (uint64_t) event);
        s_raw_str (&raw, "alice");
        s_raw_str (&raw, "");
        bool known = event >= ZCHAT_EVENT_JOIN && event <= ZCHAT_EVENT_TOPIC;
        s_expect ("event", raw.data, raw.size,
                  known ? ZCHAT_DECODE_OK : ZCHAT_DECODE_BAD_VALUE);
    }
    s_raw_header (&raw, ZCHAT_TOPIC);
    s_raw_str (&raw, "lobby");
    s_raw_uint (&raw, 1, 2);
    s_raw_str (&raw, "x");
    s_expect ("TOPIC set 2", raw.data, raw.size, ZCHAT_DECODE_BAD_VALUE);
    s_raw_header (&raw, ZCHAT_PAGE);
    s_raw_str (&raw, "lobby");
    s_raw_uint (&raw, 8, 1);
    s_raw_uint (&raw, 8, 2);
    s_raw_uint (&raw, 1, 0);
    s_raw_uint (&raw, 2, 1);
    s_raw_uint (&raw, 8, 1);
    s_raw_uint (&raw, 8, 1);
    s_raw_str (&raw, "alice");
    s_raw_uint (&raw, 1, 7);
    s_raw_text (&raw, "hi", 2);
    s_expect ("PAGE item kind 7", raw.data, raw.size, ZCHAT_DECODE_BAD_VALUE);
    s_expect ("ACKS with an id", "ZC\x1B\0\0\0\0\0\0\0\x01\0\0", 13,
              ZCHAT_DECODE_BAD_VALUE);
    s_expect ("ACKS, none", "ZC\x1B\0\0\0\0\0\0\0\0\0\0", 13, ZCHAT_DECODE_OK);
    s_expect ("MESSAGES with an id", "ZC\x1C\0\0\0\0\0\0\0\x01\x01r\0\0", 15,
              ZCHAT_DECODE_BAD_VALUE);
    s_expect ("ACKRUNS with an id", "ZC\x1E\0\0\0\0\0\0\0\x01\0\0", 13,
              ZCHAT_DECODE_BAD_VALUE);
    //  A run of no SAYs, or one whose ids or seqs would wrap
    struct { const char *what; uint64_t id; uint32_t count; uint64_t seq; int rc; } runs [] = {
        { "ACKRUNS run of 0", 1, 0, 1, ZCHAT_DECODE_BAD_VALUE },
        { "ACKRUNS ids wrap", UINT64_MAX, 2, 1, ZCHAT_DECODE_BAD_VALUE },
        { "ACKRUNS seqs wrap", 1, 2, UINT64_MAX, ZCHAT_DECODE_BAD_VALUE },
        { "ACKRUNS to the last id and seq", UINT64_MAX - 1, 2, UINT64_MAX - 1,
          ZCHAT_DECODE_OK },
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs [0]; i++) {
        s_raw_header (&raw, ZCHAT_ACKRUNS);
        raw.data [ZCHAT_HEADER_SIZE - 1] = 0;       //  batches carry id 0
        s_raw_uint (&raw, 2, 1);
        s_raw_uint (&raw, 8, runs [i].id);
        s_raw_uint (&raw, 4, runs [i].count);
        s_raw_str (&raw, "ops");
        s_raw_uint (&raw, 8, runs [i].seq);
        s_raw_uint (&raw, 8, 5);
        s_expect (runs [i].what, raw.data, raw.size, runs [i].rc);
    }

    //  A frame over ZCHAT_MAX_FRAME is refused before anything is read
    body = (uint8_t *) calloc (1, ZCHAT_MAX_FRAME + 1);
    CHECK (body);
    memcpy (body, "ZC\x04", 3);
    s_expect ("frame over 1 MiB", body, ZCHAT_MAX_FRAME + 1, ZCHAT_DECODE_TOO_LONG);
    free (body);

    if (verbose)
        printf (" * hostile list: %zu prefixes and the hand-made cases rejected\n",
                prefixes);
}

//  --------------------------------------------------------------------------
//  Encoders never write past their capacity, fail cleanly on values they
//  cannot encode, and lists give back an item that does not fit.

static void
s_test_encoder_limits (bool verbose)
{
    uint8_t memory [512];
    zchat_buf_t buf;

    //  A JOINED body of n bytes: every capacity below n fails and leaves
    //  the bytes past the capacity alone
    zchat_buf_init (&buf, memory, sizeof memory);
    size_t full = zchat_encode_joined (&buf, 1, "lobby", 2, 3, 4, "topic");
    CHECK (full > 0);
    for (size_t capacity = 0; capacity <= full; capacity++) {
        memset (memory, 0xA5, sizeof memory);
        zchat_buf_init (&buf, memory, capacity);
        size_t size = zchat_encode_joined (&buf, 1, "lobby", 2, 3, 4, "topic");
        if (capacity < full) {
            CHECK (size == 0);
            CHECK (buf.overflow);
        }
        else
            CHECK (size == full && !buf.overflow);
        CHECK (buf.size <= capacity);
        for (size_t i = capacity; i < sizeof memory; i++)
            CHECK (memory [i] == 0xA5);
    }
    zchat_buf_init (&buf, NULL, 0);
    CHECK (zchat_encode_ping (&buf, 1) == 0);
    CHECK (buf.overflow);

    //  An encoder resets the buffer: a failure does not stick
    zchat_buf_init (&buf, memory, sizeof memory);
    char long_name [40];
    memset (long_name, 'n', sizeof long_name);
    long_name [ZCHAT_MAX_NICK + 1] = 0;
    CHECK (zchat_encode_nick (&buf, 1, long_name) == 0);
    CHECK (buf.overflow);
    long_name [ZCHAT_MAX_NICK] = 0;
    CHECK (zchat_encode_nick (&buf, 1, long_name) > 0);
    CHECK (!buf.overflow);

    //  Over-limit strings and undefined values are refused
    char long_topic [300];
    memset (long_topic, 't', sizeof long_topic);
    long_topic [ZCHAT_MAX_TOPIC + 1] = 0;
    long_name [ZCHAT_MAX_ROOM] = 'r';
    long_name [ZCHAT_MAX_ROOM + 1] = 0;
    CHECK (zchat_encode_join (&buf, 1, long_name) == 0);
    CHECK (zchat_encode_hello (&buf, 1, 1, long_name, "") == 0);
    CHECK (zchat_encode_topic (&buf, 1, "lobby", true, long_topic) == 0);
    CHECK (zchat_encode_say (&buf, 1, "lobby", 2, "hi", 2) == 0);
    CHECK (zchat_encode_event (&buf, 1, "lobby", 1, 0, "alice", "") == 0);
    CHECK (zchat_encode_event (&buf, 1, "lobby", 1, 6, "alice", "") == 0);
    long_topic [ZCHAT_MAX_TOPIC] = 0;
    CHECK (zchat_encode_topic (&buf, 1, "lobby", true, long_topic) > 0);

    //  A page is filled until an add does not fit; that add is taken back,
    //  the page is still valid and can be marked as having more
    uint8_t small [160];
    memset (small, 0xA5, sizeof small);
    //  36 bytes of page header, 37 per item: two items fit in 130
    zchat_buf_init (&buf, small, 130);
    size_t size = zchat_encode_page_begin (&buf, 3, "lobby", 1, 9, false);
    CHECK (size > 0);
    int added = 0;
    while (true) {
        size_t before = buf.size;
        size_t now = zchat_encode_page_add (&buf, (uint64_t) added + 1, 1000,
                                            "alice", 0, "0123456789", 10);
        if (now == 0) {
            CHECK (buf.size == before);
            CHECK (!buf.overflow);
            break;
        }
        size = now;
        added++;
    }
    CHECK (added == 2);
    for (size_t i = 130; i < sizeof small; i++)
        CHECK (small [i] == 0xA5);
    //  An item with a bad kind is refused the same way, the list intact
    zchat_buf_init (&buf, small, sizeof small);
    size = zchat_encode_page_begin (&buf, 3, "lobby", 1, 9, false);
    size = zchat_encode_page_add (&buf, 1, 1000, "alice", 0, "hi", 2);
    CHECK (zchat_encode_page_add (&buf, 2, 1000, "alice", 9, "hi", 2) == 0);
    CHECK (zchat_encode_page_add (&buf, 2, 1000, long_name, 0, "hi", 2) == 0);
    CHECK (buf.size == size && buf.count == 1);
    zchat_encode_page_set_more (&buf, true);
    zchat_msg_t msg;
    int rc = zchat_msg_decode (&msg, small, size);
    CHECK (rc == ZCHAT_DECODE_OK);
    CHECK (msg.item_count == 1 && msg.flag == 1 && msg.seq == 9);

    //  A list whose start did not fit takes no items
    zchat_buf_init (&buf, small, ZCHAT_HEADER_SIZE + 1);
    CHECK (zchat_encode_pong_begin (&buf, 1) == 0);
    CHECK (zchat_encode_pong_add (&buf, "lobby", 1) == 0);
    CHECK (buf.overflow);
    zchat_encode_page_set_more (&buf, true);    //  harmless after a failure

    if (verbose)
        printf (" * encoder limits\n");
}

//  --------------------------------------------------------------------------
//  Random bodies, and random mutations of valid ones: whatever the result,
//  the decoder must not crash or read out of bounds (ASan watches), and a
//  body it accepts must iterate cleanly.

//  The UTF-8 rules again, one code point at a time and by value, as a
//  reference for the word-at-a-time validator.
static bool
s_utf8_reference (const uint8_t *bytes, size_t size)
{
    size_t pos = 0;
    while (pos < size) {
        uint8_t lead = bytes [pos];
        size_t tail = lead < 0x80? 0: lead >= 0xF8? 4: lead >= 0xF0? 3: lead >= 0xE0? 2
                    : lead >= 0xC0? 1: 4;
        if (tail == 4 || size - pos - 1 < tail)
            return false;
        uint32_t point = tail == 0? lead: lead & (0x3F >> tail);
        for (size_t i = 1; i <= tail; i++) {
            if ((bytes [pos + i] & 0xC0) != 0x80)
                return false;
            point = point << 6 | (bytes [pos + i] & 0x3F);
        }
        static const uint32_t least [] = { 1, 0x80, 0x800, 0x10000 };
        if (point < least [tail] || point > 0x10FFFF
        ||  (point >= 0xD800 && point <= 0xDFFF))
            return false;
        pos += 1 + tail;
    }
    return true;
}

//  Mostly ASCII strings with a few bytes that matter sprinkled in, at
//  every length and alignment: the validator agrees with the reference.
static void
s_test_utf8 (bool verbose)
{
    uint64_t state = 0x0CA7F00D2026ULL;
    static const uint8_t sprinkle [] = {
        0x00, 0x01, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
        0xC2, 0xC3, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF3, 0xF4, 0xF5, 0xFF
    };
    uint8_t text [160];
    size_t valid = 0;
    for (int round = 0; round < 100000; round++) {
        size_t size = (size_t) (s_rand (&state) % sizeof text);
        for (size_t i = 0; i < size; i++)
            text [i] = (uint8_t) (' ' + s_rand (&state) % 95);
        int extra = (int) (s_rand (&state) % 4);
        for (int k = 0; k < extra && size; k++)
            text [s_rand (&state) % size] = sprinkle [s_rand (&state) % sizeof sprinkle];
        //  Sometimes a valid multi-byte character, so that valid non-ASCII
        //  text is common too
        if (size >= 4 && s_rand (&state) % 2) {
            size_t at = (size_t) (s_rand (&state) % (size - 3));
            memcpy (text + at, "\xF0\x9F\x98\x80", 4);
        }
        bool expect = s_utf8_reference (text, size);
        //  An exact-size copy, so that the sanitizer build catches a read
        //  past the end
        uint8_t *exact = s_copy (text, size);
        CHECK (zchat_utf8_valid ((const char *) exact, size) == expect);
        free (exact);
        if (expect)
            valid++;
    }
    if (verbose)
        printf (" * 100000 UTF-8 strings against the reference, %zu valid\n", valid);
}

static void
s_test_random (samples_t *samples, bool verbose)
{
    uint64_t state = 0x5EED2026C0DECULL;
    uint8_t body [600];
    size_t accepted = 0;

    for (int round = 0; round < 200000; round++) {
        size_t size = (size_t) (s_rand (&state) % 80);
        for (size_t i = 0; i < size; i++)
            body [i] = (uint8_t) s_rand (&state);
        //  Most random bytes fail at the signature; give half a real header
        //  so the field decoders see random input too
        if ((round & 1) && size >= 3) {
            body [0] = ZCHAT_SIGNATURE_0;
            body [1] = ZCHAT_SIGNATURE_1;
            body [2] = (uint8_t) (1 + s_rand (&state) % ZCHAT_TYPE_MAX);
        }
        if (s_decode_exact (body, size) == ZCHAT_DECODE_OK)
            accepted++;
    }
    if (verbose)
        printf (" * 200000 random bodies, %zu accepted\n", accepted);

    static const uint8_t interesting [] = {
        0x00, 0x01, 0x02, 0x05, 0x06, 0x1F, 0x20, 0x21, 0x3A, 0x7F, 0x80,
        0xBF, 0xC0, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xFF
    };
    accepted = 0;
    for (int round = 0; round < 200000; round++) {
        size_t which = (size_t) (s_rand (&state) % samples->count);
        size_t size = samples->size [which];
        CHECK (size <= sizeof body);
        memcpy (body, samples->data [which], size);
        int mutations = 1 + (int) (s_rand (&state) % 4);
        for (int m = 0; m < mutations; m++) {
            size_t at = size ? (size_t) (s_rand (&state) % size) : 0;
            switch (s_rand (&state) % 7) {
                case 0:         //  flip one bit
                    if (size)
                        body [at] ^= (uint8_t) (1u << (s_rand (&state) % 8));
                    break;
                case 1:         //  a random byte
                    if (size)
                        body [at] = (uint8_t) s_rand (&state);
                    break;
                case 2:         //  a byte that means something somewhere
                    if (size)
                        body [at] = interesting [s_rand (&state) % sizeof interesting];
                    break;
                case 3:         //  cut
                    size = at;
                    break;
                case 4:         //  insert a byte
                    if (size < sizeof body) {
                        memmove (body + at + 1, body + at, size - at);
                        body [at] = (uint8_t) s_rand (&state);
                        size++;
                    }
                    break;
                case 5:         //  delete a byte
                    if (size) {
                        memmove (body + at, body + at + 1, size - at - 1);
                        size--;
                    }
                    break;
                default:        //  append a few bytes
                    for (int k = (int) (s_rand (&state) % 4); k >= 0; k--)
                        if (size < sizeof body)
                            body [size++] = (uint8_t) s_rand (&state);
                    break;
            }
        }
        if (s_decode_exact (body, size) == ZCHAT_DECODE_OK)
            accepted++;
    }
    if (verbose)
        printf (" * 200000 mutated bodies, %zu accepted\n", accepted);
}

static void
s_test_names (bool verbose)
{
    const char *good_nicks [] = {
        "alice", "Bob_1", "[x]", "{a}|^`", "_", "a-b", "Z", "`", "^^",
        "abcdefghijklmnopqrstuvwxyz012345"     //  32 bytes
    };
    const char *bad_nicks [] = {
        "", "1abc", "-x", "a b", "a:b", "a.b", "a#", "\xC3\xA9t\xC3\xA9",
        "al\tice", "abcdefghijklmnopqrstuvwxyz0123456", "ab/", "@op", "a\\b"
    };
    for (size_t i = 0; i < sizeof good_nicks / sizeof good_nicks [0]; i++)
        CHECK (zchat_nick_valid (good_nicks [i]));
    for (size_t i = 0; i < sizeof bad_nicks / sizeof bad_nicks [0]; i++)
        CHECK (!zchat_nick_valid (bad_nicks [i]));
    CHECK (!zchat_nick_valid (NULL));

    const char *good_rooms [] = {
        "lobby", "ops", "a.b-c_d", "1", "-", ".", "ROOM42",
        "abcdefghijklmnopqrstuvwxyz012345"
    };
    const char *bad_rooms [] = {
        "", "a:b", "#x", "a b", "caf\xC3\xA9", "a/b", "[x]", "a\nb",
        "abcdefghijklmnopqrstuvwxyz0123456"
    };
    for (size_t i = 0; i < sizeof good_rooms / sizeof good_rooms [0]; i++)
        CHECK (zchat_room_valid (good_rooms [i]));
    for (size_t i = 0; i < sizeof bad_rooms / sizeof bad_rooms [0]; i++)
        CHECK (!zchat_room_valid (bad_rooms [i]));
    CHECK (!zchat_room_valid (NULL));

    uint8_t frame [ZCHAT_MAX_TOPIC_FRAME];
    CHECK (zchat_topic_frame ("ops", frame) == 4);
    CHECK (memcmp (frame, "ops:", 4) == 0);
    CHECK (zchat_topic_frame (good_rooms [7], frame) == ZCHAT_MAX_TOPIC_FRAME);
    CHECK (frame [ZCHAT_MAX_ROOM] == ':');
    uint8_t tag_frame [ZCHAT_MAX_PROBE_TOPIC_FRAME];
    CHECK (zchat_probe_topic_frame ("0123456789abcdef", tag_frame) == 17);
    CHECK (tag_frame [0] == 0xFF && memcmp (tag_frame + 1, "0123456789abcdef", 16) == 0);
    CHECK (zchat_probe_topic_frame ("abcdefghijklmnopqrstuvwxyz012345", tag_frame)
           == ZCHAT_MAX_PROBE_TOPIC_FRAME);

    CHECK (zchat_request_limit (1, 4096) == 8192 - ZCHAT_TRANSPORT_SLACK);
    CHECK (zchat_request_limit (2, 1000) == 5096 - ZCHAT_TRANSPORT_SLACK);
    CHECK (zchat_request_limit (3, 1000) == ZCHAT_MAX_REQUEST);
    CHECK (zchat_request_limit (ZCHAT_VERSION, ZCHAT_MAX_TEXT) == ZCHAT_MAX_REQUEST);
    CHECK (zchat_request_limit (2, UINT32_MAX) == ZCHAT_MAX_REQUEST);
    CHECK (ZCHAT_MAX_REQUEST == 69632);

    CHECK (strcmp (zchat_msg_type_name (ZCHAT_HELLO), "HELLO") == 0);
    CHECK (strcmp (zchat_msg_type_name (ZCHAT_EVENT), "EVENT") == 0);
    CHECK (strcmp (zchat_msg_type_name (0), "UNKNOWN") == 0);
    CHECK (strcmp (zchat_msg_type_name (ZCHAT_ACKRUNS), "ACKRUNS") == 0);
    CHECK (strcmp (zchat_msg_type_name (31), "UNKNOWN") == 0);
    CHECK (strcmp (zchat_msg_type_name (-1), "UNKNOWN") == 0);
    for (int type = ZCHAT_HELLO; type <= ZCHAT_TYPE_MAX; type++)
        CHECK (zchat_msg_type_name (type) && *zchat_msg_type_name (type));
    for (int rc = ZCHAT_DECODE_BAD_VALUE; rc <= ZCHAT_DECODE_OK; rc++)
        CHECK (strcmp (zchat_decode_strerror (rc), "unknown decode error") != 0);
    CHECK (strcmp (zchat_decode_strerror (-100), "unknown decode error") == 0);

    if (verbose)
        printf (" * names, topic frames, type names, request limits\n");
}

void
zchat_msg_test (bool verbose)
{
    if (verbose)
        printf ("\n");
    uint8_t *memory = (uint8_t *) malloc (ZCHAT_MAX_FRAME);
    CHECK (memory);
    zchat_buf_t buf;
    zchat_buf_init (&buf, memory, ZCHAT_MAX_FRAME);
    samples_t samples;
    memset (&samples, 0, sizeof samples);

    clock_t start = clock ();
    s_test_round_trips (&buf, &samples, verbose);
    s_test_hostile (&samples, verbose);
    s_test_encoder_limits (verbose);
    s_test_names (verbose);
    s_test_random (&samples, verbose);
    s_test_utf8 (verbose);

    for (size_t i = 0; i < samples.count; i++)
        free (samples.data [i]);
    free (memory);
    if (verbose)
        printf (" * zchat_msg: %.2f s of CPU\n",
                (double) (clock () - start) / CLOCKS_PER_SEC);
}
