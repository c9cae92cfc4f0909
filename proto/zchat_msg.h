//  zchat_msg — the zchat wire codec, shared by broker and client.
//
//  Every message body is one ZeroMQ frame: an 11-byte header (signature
//  'Z' 'C', type, 64-bit request id) and the fields of that type, laid out
//  as proto/PROTOCOL.md says. Decoding works on a plain (data, size) buffer
//  so tests and fuzzers need no sockets; it never trusts a length or count
//  from the wire and never allocates: strings are copied into fixed,
//  NUL-terminated arrays, while text and lists point into the caller's
//  buffer, which must outlive the decoded view.
//
//  Encoding writes into a zchat_buf_t over caller memory; a write past its
//  capacity sets `overflow` instead of writing, so callers check once at
//  the end.

#ifndef ZCHAT_MSG_H_INCLUDED
#define ZCHAT_MSG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZCHAT_SIGNATURE_0   0x5A        //  'Z'
#define ZCHAT_SIGNATURE_1   0x43        //  'C'
#define ZCHAT_VERSION       6           //  the newest version spoken
#define ZCHAT_VERSION_MIN   1           //  the oldest a broker still accepts
//  From this version a session lives as long as its client's connection
//  (PROTOCOL.md 6.1), so an idle client sends nothing at all. A broker
//  that cannot see a peer's connection (a relayed peer) answers the
//  version before it, whose sessions end after a silence.
#define ZCHAT_VERSION_BOUND 6
#define ZCHAT_HEADER_SIZE   11

//  Limits of the wire format itself. The broker may enforce smaller ones.
#define ZCHAT_MAX_NICK      32          //  bytes
#define ZCHAT_MAX_ROOM      32          //  bytes
#define ZCHAT_MAX_TOPIC     255         //  bytes
#define ZCHAT_MAX_TOKEN     64          //  bytes
#define ZCHAT_MAX_ENDPOINT  255         //  bytes
#define ZCHAT_MAX_REASON    255         //  bytes
#define ZCHAT_MAX_TEXT      65536       //  bytes in one message text
#define ZCHAT_MAX_ITEMS     4096        //  entries in one list reply
#define ZCHAT_MAX_FRAME     (1024 * 1024)   //  one whole body
//  A body a client sends is at most max_text (WELCOME) plus this, or from
//  version 3 ZCHAT_MAX_TEXT plus this (zchat_request_limit).
#define ZCHAT_REQUEST_OVERHEAD  4096
#define ZCHAT_MAX_REQUEST   (ZCHAT_MAX_TEXT + ZCHAT_REQUEST_OVERHEAD)
//  What a frame may grow by on the wire, which is what libzmq's size limit
//  measures: CURVE's MESSAGE command adds 33 bytes to the body.
#define ZCHAT_TRANSPORT_SLACK   64
//  A broker recognises a resent DM among the last this many its sender's
//  session had delivered (PROTOCOL.md 6.3); a client lets at most this
//  many DMs go out from the oldest one still unanswered on.
#define ZCHAT_DM_RECENT     256

//  PUB topic frames are the room name followed by this byte, which is not
//  allowed in room names, so no room's topic is a prefix of another's.
#define ZCHAT_TOPIC_END     ':'
#define ZCHAT_MAX_TOPIC_FRAME (ZCHAT_MAX_ROOM + 1)

//  A tagged PROBE (version 5, PROTOCOL.md 6.4) is published, to its prober
//  alone, on this byte followed by the tag: 1..ZCHAT_MAX_PROBE_TAG bytes of
//  UTF-8 that the prober chose and subscribed to. 0xFF never occurs in
//  UTF-8, so no room's topic is a prefix of a tag's topic nor the other way
//  round, and it sorts after every byte a room's topic can start with. In
//  a request the tag travels where the published PROBE has its nick, so
//  the decoder caps it as it caps a nick.
#define ZCHAT_PROBE_TOPIC   0xFF
#define ZCHAT_MAX_PROBE_TAG 32          //  bytes
#define ZCHAT_MAX_PROBE_TOPIC_FRAME (ZCHAT_MAX_PROBE_TAG + 1)

typedef enum {
    ZCHAT_HELLO    = 1,     //  C->B  version, nick, token
    ZCHAT_WELCOME  = 2,     //  B->C  version, nick, token, pub_port, endpoint,
                            //        heartbeat_ms, timeout_ms, max_text, resumed
    ZCHAT_BYE      = 3,     //  C->B  -
    ZCHAT_PING     = 4,     //  C->B  -
    ZCHAT_PONG     = 5,     //  B->C  items{room, seq}
    ZCHAT_JOIN     = 6,     //  C->B  room
    ZCHAT_JOINED   = 7,     //  B->C  room, seq (newest), first_seq (oldest held),
                            //        members, topic
    ZCHAT_LEAVE    = 8,     //  C->B  room
    ZCHAT_SAY      = 9,     //  C->B  room, kind, text
    ZCHAT_ACK      = 10,    //  B->C  room, seq, ts
    ZCHAT_DM       = 11,    //  C->B  nick (recipient), kind, text
    ZCHAT_DELIVER  = 12,    //  B->C  nick (sender), kind, ts, text
    ZCHAT_NICK     = 13,    //  C->B  nick (new)
    ZCHAT_WHO      = 14,    //  C->B  room
    ZCHAT_MEMBERS  = 15,    //  B->C  room, items{nick}
    ZCHAT_ROOMS    = 16,    //  C->B  -
    ZCHAT_ROOMLIST = 17,    //  B->C  items{room, members, seq, topic}
    ZCHAT_TOPIC    = 18,    //  C->B  room, set, topic
    ZCHAT_TOPICIS  = 19,    //  B->C  room, topic, nick (set by), ts
    ZCHAT_HISTORY  = 20,    //  C->B  room, from_seq, to_seq, limit
    ZCHAT_PAGE     = 21,    //  B->C  room, first_seq, seq (newest), more,
                            //        items{seq, ts, nick, kind, text}
    ZCHAT_PROBE    = 22,    //  C->B  room [, tag (version 5)];  PUB: room, nick
    ZCHAT_OK       = 23,    //  B->C  -
    ZCHAT_ERROR    = 24,    //  B->C  code, retry_ms, reason
    ZCHAT_MESSAGE  = 25,    //  PUB   room, seq, ts, nick (sender), kind, text
    ZCHAT_EVENT    = 26,    //  PUB   room, ts, event, nick, detail
    ZCHAT_ACKS     = 27,    //  B->C  items{id, room, seq, ts}       (version 2)
    ZCHAT_MESSAGES = 28,    //  PUB   room, items{seq, ts, nick, kind, text} (v2)
    ZCHAT_SAYS     = 29,    //  C->B  items{id, room, kind, text}     (version 2)
    ZCHAT_ACKRUNS  = 30,    //  B->C  items{id, count, room, seq, ts} (version 4)
} zchat_type_t;

#define ZCHAT_TYPE_MAX      30

//  Message kinds (SAY, DM, DELIVER, MESSAGE, PAGE items)
#define ZCHAT_KIND_TEXT     0
#define ZCHAT_KIND_ACTION   1           //  "/me waves"

//  Presence events (EVENT.event)
#define ZCHAT_EVENT_JOIN    1
#define ZCHAT_EVENT_LEAVE   2
#define ZCHAT_EVENT_QUIT    3
#define ZCHAT_EVENT_NICK    4           //  detail = new nick
#define ZCHAT_EVENT_TOPIC   5           //  detail = new topic

//  Error codes (ERROR.code), HTTP-like so their class is obvious
#define ZCHAT_ERR_MALFORMED         400     //  cannot decode the body
#define ZCHAT_ERR_NOT_GREETED       401     //  command before HELLO
#define ZCHAT_ERR_FORBIDDEN         403     //  e.g. nick owned by another key
#define ZCHAT_ERR_NOT_MEMBER        404     //  SAY/WHO.. to a room not joined
#define ZCHAT_ERR_NO_SUCH_NICK      405     //  DM to nobody
#define ZCHAT_ERR_NICK_IN_USE       409     //  nick held by a live session
#define ZCHAT_ERR_TOO_LARGE         413     //  text or field over the limit
#define ZCHAT_ERR_INVALID           422     //  bad name, bad UTF-8, bad value
#define ZCHAT_ERR_VERSION           426     //  protocol version unsupported
#define ZCHAT_ERR_RATE_LIMITED      429     //  retry after retry_ms
#define ZCHAT_ERR_SESSION           440     //  unknown session: greet again
#define ZCHAT_ERR_LIMIT             452     //  a per-session limit reached
#define ZCHAT_ERR_INTERNAL          500     //  broker fault (e.g. storage)
#define ZCHAT_ERR_UNKNOWN_COMMAND   501     //  type not known to the broker

//  Decode results (negative); 0 is success.
#define ZCHAT_DECODE_OK             0
#define ZCHAT_DECODE_TRUNCATED      -1      //  a field runs past the end
#define ZCHAT_DECODE_SIGNATURE      -2      //  not a zchat body
#define ZCHAT_DECODE_UNKNOWN_TYPE   -3
#define ZCHAT_DECODE_TOO_LONG       -4      //  a length over its limit
#define ZCHAT_DECODE_BAD_UTF8       -5      //  invalid UTF-8, or a NUL byte
#define ZCHAT_DECODE_TRAILING       -6      //  bytes after the last field
#define ZCHAT_DECODE_BAD_VALUE      -7      //  e.g. unknown kind or event

//  A decoded message: a view. Which fields a type uses is listed above and
//  in PROTOCOL.md; the others are zero. `text` and `items` point into the
//  decoded buffer and are not NUL-terminated.
typedef struct {
    uint8_t  type;
    uint64_t id;                        //  request id, echoed in replies
    uint8_t  version;
    uint8_t  kind;                      //  ZCHAT_KIND_*
    uint8_t  event;                     //  ZCHAT_EVENT_*
    uint8_t  flag;                      //  WELCOME.resumed, TOPIC.set, PAGE.more
    uint16_t pub_port;
    uint16_t code;                      //  ERROR
    uint32_t heartbeat_ms;
    uint32_t timeout_ms;
    uint32_t max_text;
    uint32_t retry_ms;
    uint32_t members;                   //  JOINED
    uint32_t limit;                     //  HISTORY (u16 on the wire)
    uint64_t seq;                       //  ACK, MESSAGE, JOINED/PAGE newest
    uint64_t first_seq;                 //  JOINED/PAGE oldest held
    uint64_t from_seq;                  //  HISTORY
    uint64_t to_seq;                    //  HISTORY
    uint64_t ts;                        //  epoch milliseconds
    char nick     [ZCHAT_MAX_NICK + 1];    //  in a request PROBE: its tag
    char room     [ZCHAT_MAX_ROOM + 1];
    char token    [ZCHAT_MAX_TOKEN + 1];
    char topic    [ZCHAT_MAX_TOPIC + 1];    //  TOPIC, TOPICIS, JOINED, EVENT.detail
    char endpoint [ZCHAT_MAX_ENDPOINT + 1];
    char reason   [ZCHAT_MAX_REASON + 1];
    const char *text;                   //  SAY, DM, DELIVER, MESSAGE
    size_t   text_size;
    uint16_t item_count;                //  PONG, MEMBERS, ROOMLIST, PAGE,
                                        //  ACKS, MESSAGES
    const uint8_t *items;               //  validated encoded items
    size_t   items_size;
} zchat_msg_t;

//  One entry of a list reply; fields used depend on the list's type.
typedef struct {
    uint64_t id;                        //  ACKS, SAYS, ACKRUNS (the first)
    uint32_t count;                     //  ACKRUNS: ids id.., seqs seq..
    char room  [ZCHAT_MAX_ROOM + 1];    //  PONG, ROOMLIST, ACKS, SAYS
    char nick  [ZCHAT_MAX_NICK + 1];    //  MEMBERS, PAGE, MESSAGES
    char topic [ZCHAT_MAX_TOPIC + 1];   //  ROOMLIST
    uint32_t members;                   //  ROOMLIST
    uint64_t seq;                       //  PONG, ROOMLIST, PAGE, ACKS, MESSAGES
    uint64_t ts;                        //  PAGE, ACKS, MESSAGES
    uint8_t  kind;                      //  PAGE, MESSAGES, SAYS
    const char *text;                   //  PAGE, MESSAGES, SAYS: into the buffer
    size_t   text_size;
} zchat_item_t;

//  Decode one body. Returns ZCHAT_DECODE_OK and fills *msg, or a negative
//  ZCHAT_DECODE_* value (then *msg is unspecified). Never reads outside
//  [data, data + size). All lists are fully validated here, so iterating
//  them later cannot fail.
int
    zchat_msg_decode (zchat_msg_t *msg, const void *data, size_t size);

//  Iterate the items of a decoded list message. *cursor starts at 0.
//  Returns true and fills *item while items remain.
bool
    zchat_msg_next_item (const zchat_msg_t *msg, size_t *cursor, zchat_item_t *item);

//  A SAYS item as a view into the decoded body: the room is not copied
//  nor NUL-terminated (the broker compares it with the item before's).
typedef struct {
    uint64_t id;
    const char *room;
    size_t room_size;
    uint8_t kind;
    const char *text;
    size_t text_size;
} zchat_say_t;

//  Iterate the items of a decoded SAYS like zchat_msg_next_item, as views.
//  Returns false at the end, or if msg is not a SAYS.
bool
    zchat_msg_next_say (const zchat_msg_t *msg, size_t *cursor, zchat_say_t *say);

//  Human-readable names, for logs and errors. Never NULL.
const char *
    zchat_msg_type_name (int type);
const char *
    zchat_decode_strerror (int rc);

//  True if [data, data+size) is valid UTF-8 with no NUL byte and no
//  overlong form or surrogate.
bool
    zchat_utf8_valid (const char *data, size_t size);

//  Name rules, enforced by the broker and checked early by the client.
//  Nick: 1..ZCHAT_MAX_NICK of [A-Za-z0-9_-[]{}|^`], not starting with a
//  digit or '-'. Room: 1..ZCHAT_MAX_ROOM of [A-Za-z0-9_.-].
bool
    zchat_nick_valid (const char *nick);
bool
    zchat_room_valid (const char *room);

//  The largest body a client may send in a session of this version to a
//  broker whose WELCOME said max_text (PROTOCOL.md 2): ZCHAT_MAX_REQUEST
//  from version 3; before, max_text + ZCHAT_REQUEST_OVERHEAD less
//  ZCHAT_TRANSPORT_SLACK, since such a broker cut off at exactly that
//  much on the wire, where CURVE makes a body longer.
size_t
    zchat_request_limit (uint8_t version, uint32_t max_text);

//  Write the PUB topic frame of a room into buffer (capacity at least
//  ZCHAT_MAX_TOPIC_FRAME). Returns its size in bytes (not NUL-terminated).
size_t
    zchat_topic_frame (const char *room, uint8_t *buffer);

//  Write the PUB topic frame of a probe tag (1..ZCHAT_MAX_PROBE_TAG bytes)
//  into buffer (capacity at least ZCHAT_MAX_PROBE_TOPIC_FRAME): the byte
//  ZCHAT_PROBE_TOPIC, then the tag. Returns its size in bytes.
size_t
    zchat_probe_topic_frame (const char *tag, uint8_t *buffer);

//  ---------------------------------------------------------------------
//  Encoding

typedef struct {
    uint8_t *data;
    size_t   size;                      //  bytes written so far
    size_t   capacity;
    bool     overflow;                  //  a write did not fit
    size_t   count_at;                  //  where a list's count lives
    uint16_t count;                     //  items appended to that list
} zchat_buf_t;

//  Start a buffer over caller memory.
void
    zchat_buf_init (zchat_buf_t *buf, void *data, size_t capacity);

//  Every encoder resets buf and writes one whole body; lists are built with
//  the *_begin function, then one *_add per item. Returns the body size,
//  or 0 if it overflowed or a string is over its limit. Text must be valid
//  UTF-8 (checked by decoders, not here: encoding the broker's own stored
//  text must stay cheap).
size_t zchat_encode_hello    (zchat_buf_t *buf, uint64_t id, uint8_t version,
                              const char *nick, const char *token);
size_t zchat_encode_welcome  (zchat_buf_t *buf, uint64_t id, uint8_t version,
                              const char *nick, const char *token,
                              uint16_t pub_port, const char *endpoint,
                              uint32_t heartbeat_ms, uint32_t timeout_ms,
                              uint32_t max_text, bool resumed);
size_t zchat_encode_bye      (zchat_buf_t *buf, uint64_t id);
size_t zchat_encode_ping     (zchat_buf_t *buf, uint64_t id);
size_t zchat_encode_pong_begin (zchat_buf_t *buf, uint64_t id);
size_t zchat_encode_pong_add (zchat_buf_t *buf, const char *room, uint64_t seq);
size_t zchat_encode_join     (zchat_buf_t *buf, uint64_t id, const char *room);
size_t zchat_encode_joined   (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint64_t seq, uint64_t first_seq,
                              uint32_t members, const char *topic);
size_t zchat_encode_leave    (zchat_buf_t *buf, uint64_t id, const char *room);
size_t zchat_encode_say      (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint8_t kind, const char *text, size_t text_size);
size_t zchat_encode_ack      (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint64_t seq, uint64_t ts);
size_t zchat_encode_dm       (zchat_buf_t *buf, uint64_t id, const char *to,
                              uint8_t kind, const char *text, size_t text_size);
size_t zchat_encode_deliver  (zchat_buf_t *buf, uint64_t id, const char *from,
                              uint8_t kind, uint64_t ts,
                              const char *text, size_t text_size);
size_t zchat_encode_nick     (zchat_buf_t *buf, uint64_t id, const char *nick);
size_t zchat_encode_who      (zchat_buf_t *buf, uint64_t id, const char *room);
size_t zchat_encode_members_begin (zchat_buf_t *buf, uint64_t id, const char *room);
size_t zchat_encode_members_add (zchat_buf_t *buf, const char *nick);
size_t zchat_encode_rooms    (zchat_buf_t *buf, uint64_t id);
size_t zchat_encode_roomlist_begin (zchat_buf_t *buf, uint64_t id);
size_t zchat_encode_roomlist_add (zchat_buf_t *buf, const char *room,
                              uint32_t members, uint64_t seq, const char *topic);
size_t zchat_encode_topic    (zchat_buf_t *buf, uint64_t id, const char *room,
                              bool set, const char *topic);
size_t zchat_encode_topicis  (zchat_buf_t *buf, uint64_t id, const char *room,
                              const char *topic, const char *nick, uint64_t ts);
size_t zchat_encode_history  (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint64_t from_seq, uint64_t to_seq, uint16_t limit);
size_t zchat_encode_page_begin (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint64_t first_seq, uint64_t seq, bool more);
size_t zchat_encode_page_add (zchat_buf_t *buf, uint64_t seq, uint64_t ts,
                              const char *nick, uint8_t kind,
                              const char *text, size_t text_size);
//  Set PAGE.more after the items are added (a page fills up as it is built).
void   zchat_encode_page_set_more (zchat_buf_t *buf, bool more);
//  PROBE: nick NULL, a request; else the published form, or (a client of
//  version 5, nick being the tag) a tagged request: one layout.
size_t zchat_encode_probe    (zchat_buf_t *buf, uint64_t id, const char *room,
                              const char *nick);
size_t zchat_encode_ok       (zchat_buf_t *buf, uint64_t id);
size_t zchat_encode_error    (zchat_buf_t *buf, uint64_t id, uint16_t code,
                              uint32_t retry_ms, const char *reason);
size_t zchat_encode_message  (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint64_t seq, uint64_t ts, const char *nick,
                              uint8_t kind, const char *text, size_t text_size);
//  ACKS (version 2): one reply acknowledging several SAYs. Items can be
//  added field by field, or copied from an ACK body already encoded
//  (the broker stages one per SAY); _append returns 0 and adds nothing if
//  the body is not an ACK or the item does not fit.
size_t zchat_encode_acks_begin (zchat_buf_t *buf);
size_t zchat_encode_acks_add (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint64_t seq, uint64_t ts);
size_t zchat_encode_acks_append (zchat_buf_t *buf, const void *ack, size_t ack_size);
//  ACKRUNS (version 4): runs of acknowledgements, each count SAYs with
//  consecutive ids from id, stored in room with consecutive seqs from seq,
//  at ts. count is 1 or more, and neither ids nor seqs wrap.
size_t zchat_encode_ackruns_begin (zchat_buf_t *buf);
size_t zchat_encode_ackruns_add (zchat_buf_t *buf, uint64_t id, uint32_t count,
                              const char *room, uint64_t seq, uint64_t ts);
//  MESSAGES (version 2): several messages of one room in one publication,
//  ascending seq. Items as above; _append copies the item part of an
//  encoded MESSAGE body, which must be of the same room.
size_t zchat_encode_messages_begin (zchat_buf_t *buf, const char *room);
size_t zchat_encode_messages_add (zchat_buf_t *buf, uint64_t seq, uint64_t ts,
                              const char *nick, uint8_t kind,
                              const char *text, size_t text_size);
size_t zchat_encode_messages_append (zchat_buf_t *buf, const void *message,
                              size_t message_size);
//  _extend copies all items of another MESSAGES body of the same room
//  (the broker merges small batches), 0 if it is none or they do not fit;
//  _single rewrites a MESSAGES body of one item, in place, as the MESSAGE
//  it stands for: returns its size, starting 2 bytes into body, or 0.
size_t zchat_encode_messages_extend (zchat_buf_t *buf, const void *batch,
                              size_t batch_size);
size_t zchat_encode_messages_single (uint8_t *body, size_t size);
//  SAYS (version 2): several SAYs in one request; each item is answered as
//  its own SAY would be (ACK/ACKS or ERROR with the item's id).
size_t zchat_encode_says_begin (zchat_buf_t *buf);
size_t zchat_encode_says_add (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint8_t kind, const char *text, size_t text_size);
size_t zchat_encode_event    (zchat_buf_t *buf, uint64_t id, const char *room,
                              uint64_t ts, uint8_t event, const char *nick,
                              const char *detail);

//  Self test; asserts on failure.
void
    zchat_msg_test (bool verbose);

#endif
