//  zchat_client — libzchat, the client side of the zchat protocol.
//
//  One zchat_client_t is one session with a broker: a DEALER for requests
//  and replies, a SUB for room traffic. The library runs in the caller's
//  thread and never prints or exits on the caller's behalf; every call
//  reports errors by return value.
//
//  The SUB connects to the broker's PUB only when a room is first joined
//  to receive (zchat_client_join): a client that only sends to rooms
//  (zchat_client_join_send_only), only sends and gets DMs, or idles holds
//  one connection to the broker, not two. Once connected the SUB stays
//  connected, also after the last room is left (it then receives nothing),
//  and after a reconnect follows a broker whose PUB moved.
//
//  Requests are asynchronous: each call sends a request and returns its
//  request id (> 0), or 0 if it could not be sent (see
//  zchat_client_error). The outcome arrives later as an event carrying the
//  same id (ACK, OK, ERROR, MEMBERS, ...). zchat_client_wait does both for
//  callers that want one answer at a time.
//
//  The library also keeps the session healthy by itself while the caller
//  calls zchat_client_next: it pings at the interval the broker asked for
//  (from protocol version 6 only while it waits for an answer or shortly
//  after traffic: the broker keeps an idle client's session as long as
//  its connection, so an idle client sends nothing), resends
//  unacknowledged messages with their original ids, puts each
//  room's messages in sequence order (fetching gaps from history), and on
//  a lost or restarted broker greets again, rejoins and recovers. A rejoin
//  that the broker's rate limit refuses is asked for again (sends to that
//  room wait for it); a room whose rejoin the broker refuses for good is
//  dropped, with a ZCHAT_EV_ERROR naming it under id 0.
//
//  To poll zchat beside other sockets, add both sockets from
//  zchat_client_dealer and zchat_client_sub to your poller (a SUB not
//  connected yet is simply never readable), wait at most
//  zchat_client_due_ms, then drain with zchat_client_next (client, 0)
//  until it returns NULL.

#ifndef ZCHAT_CLIENT_H_INCLUDED
#define ZCHAT_CLIENT_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include "zchat_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zchat_client_t zchat_client_t;

typedef enum {
    ZCHAT_EV_MESSAGE = 1,   //  room message: room, nick (sender), text, seq, ts,
                            //  action, history (replayed, not live)
    ZCHAT_EV_DM,            //  direct message: nick (sender), text, ts, action
    ZCHAT_EV_JOINED,        //  our join is confirmed and live: room, seq
                            //  (newest at join), topic; id of the join request
    ZCHAT_EV_LEFT,          //  our leave is confirmed: room, id
    ZCHAT_EV_JOIN,          //  presence: nick joined room
    ZCHAT_EV_LEAVE,         //  presence: nick left room
    ZCHAT_EV_QUIT,          //  presence: nick's session ended (room)
    ZCHAT_EV_NICK,          //  presence: nick is now new_nick (room); also
                            //  our own rename (then id is the request's)
    ZCHAT_EV_TOPIC,         //  topic of room: topic, nick (set by), ts
    ZCHAT_EV_ACK,           //  a say or dm is stored/delivered: id, room, seq, ts
    ZCHAT_EV_OK,            //  a request without other answer succeeded: id
    ZCHAT_EV_ERROR,         //  a request failed, or the session did: id (0 if
                            //  no request), code, reason, retry_ms
    ZCHAT_EV_MEMBERS,       //  reply to who: room, items[].nick
    ZCHAT_EV_ROOMS,         //  reply to rooms: items[].room/members/topic/seq
    ZCHAT_EV_HISTORY,       //  a history request is done: id, room, seq (last
                            //  seq delivered); its messages came before it
    ZCHAT_EV_GAP,           //  messages from_seq..to_seq of room are gone from
                            //  history (retention) and will never be shown
    ZCHAT_EV_CONNECTED,     //  (re)connected and greeted; resumed if the old
                            //  session was taken over
    ZCHAT_EV_DISCONNECTED   //  the broker stopped answering; reconnecting
} zchat_event_type_t;

typedef struct {
    char     room  [ZCHAT_MAX_ROOM + 1];
    char     nick  [ZCHAT_MAX_NICK + 1];
    char     topic [ZCHAT_MAX_TOPIC + 1];
    uint32_t members;
    uint64_t seq;
} zchat_list_item_t;

//  An event. Owned by the caller: free with zchat_event_destroy. Fields not
//  used by its type are zero / empty strings.
typedef struct {
    zchat_event_type_t type;
    uint64_t id;                        //  request id it answers, else 0
    char     room     [ZCHAT_MAX_ROOM + 1];
    char     nick     [ZCHAT_MAX_NICK + 1];
    char     new_nick [ZCHAT_MAX_NICK + 1];
    char     topic    [ZCHAT_MAX_TOPIC + 1];
    char    *text;                      //  NUL-terminated (text has no NULs)
    size_t   text_size;
    uint64_t seq;
    uint64_t ts;                        //  broker time, epoch ms
    uint64_t from_seq;                  //  GAP
    uint64_t to_seq;                    //  GAP
    bool     action;                    //  "/me" message
    bool     history;                   //  replayed from history
    bool     resumed;                   //  CONNECTED
    int      code;                      //  ERROR: a ZCHAT_ERR_* code, or a
                                        //  ZCHAT_CLIENT_* value for local errors
    uint32_t retry_ms;
    char     reason [ZCHAT_MAX_REASON + 1];
    zchat_list_item_t *items;           //  MEMBERS, ROOMS
    size_t   item_count;
} zchat_event_t;

void
    zchat_event_destroy (zchat_event_t **self_p);

//  Name of an event type for logs and JSON ("message", "dm", ...).
const char *
    zchat_event_type_name (zchat_event_type_t type);

//  Local failure codes (negative, beside the broker's positive codes).
#define ZCHAT_CLIENT_TIMEOUT        -1      //  no answer in time
#define ZCHAT_CLIENT_REFUSED        -2      //  the broker refused (see code)
#define ZCHAT_CLIENT_AUTH           -3      //  CURVE handshake refused
#define ZCHAT_CLIENT_INVALID        -4      //  bad argument
#define ZCHAT_CLIENT_INTERRUPTED    -5      //  SIGINT/SIGTERM
#define ZCHAT_CLIENT_FAILED         -6      //  socket or other local error

//  Create a client for server (e.g. "tcp://127.0.0.1:5555") and nick.
//  Nothing is sent until zchat_client_connect. Returns NULL if nick is not
//  a valid nickname or server is NULL.
zchat_client_t *
    zchat_client_new (const char *server, const char *nick);

//  Say goodbye if connected (waiting at most a short linger), close the
//  sockets and free everything; nulls *self_p. Safe on NULL.
void
    zchat_client_destroy (zchat_client_t **self_p);

//  Options; set before zchat_client_connect.
//  The PUB endpoint to subscribe to, instead of the one the broker tells.
//  Like the broker's, it is connected to at the first receiving join: one
//  that cannot be connected to fails that join, not zchat_client_connect.
void
    zchat_client_set_sub_endpoint (zchat_client_t *self, const char *endpoint);
//  How long to wait for each reply before resending or giving up (ms);
//  default 5000.
void
    zchat_client_set_timeout (zchat_client_t *self, int timeout_ms);
//  Replay the last n messages of each room on join (default 0).
void
    zchat_client_set_history (zchat_client_t *self, int n);
//  CURVE: our secret certificate file and the broker's public key (a
//  certificate file or a 40-character Z85 key). Returns 0, or -1 if either
//  cannot be loaded.
int
    zchat_client_set_curve (zchat_client_t *self, const char *cert_path,
                            const char *server_key);

//  Connect the DEALER and greet (the SUB waits for a receiving join);
//  waits at most timeout_ms for the broker's welcome.
//  Returns 0, or ZCHAT_CLIENT_TIMEOUT / _REFUSED (nick in use, version..)
//  / _AUTH / _INTERRUPTED / _FAILED; zchat_client_error says why.
int
    zchat_client_connect (zchat_client_t *self, int timeout_ms);

//  Last error as one line of text (never NULL).
const char *
    zchat_client_error (zchat_client_t *self);

//  Current nickname (changes after a confirmed rename).
const char *
    zchat_client_nick (zchat_client_t *self);

//  The longest text (bytes) the broker takes in one message, as its
//  WELCOME said; 0 before the first connect.
uint32_t
    zchat_client_max_text (zchat_client_t *self);

//  Requests. Each returns its request id, or 0 if it could not be sent.
//  Join a room to receive it: ZCHAT_EV_JOINED once our subscription is
//  live (PROTOCOL.md §6.4). The first such join connects the SUB; if it
//  cannot (an endpoint libzmq refuses), the join is answered at once with
//  ZCHAT_EV_ERROR, code ZCHAT_CLIENT_FAILED, under the id returned, and
//  the room is not joined (a send-only room stays send-only).
uint64_t zchat_client_join    (zchat_client_t *self, const char *room);
//  Join a room to send to it only: the broker counts us as a member
//  (SAY is allowed, WHO lists us), but we do not subscribe to its
//  messages or events and never sequence or fetch them. ZCHAT_EV_JOINED
//  comes as soon as the broker's JOINED does (no probe round trips).
//  Returns the request id as zchat_client_join does.
//  After a reconnect the room is joined again, send-only still. A
//  zchat_client_join of a send-only room makes it receiving (JOINED again
//  once live, under the id that call returns; if that join is refused,
//  the room stays send-only); a send-only join of a receiving room changes
//  nothing: it is answered as a join of a room already joined. Leave as
//  any room. Needs no SUB: it never connects it.
uint64_t zchat_client_join_send_only (zchat_client_t *self, const char *room);
//  Leave a room: its traffic stops at once. Leaving the last room does
//  not disconnect the SUB. A join of the room not yet answered is
//  answered first, with an ERROR (ZCHAT_CLIENT_FAILED) under its id.
uint64_t zchat_client_leave   (zchat_client_t *self, const char *room);
//  text of text_size bytes; valid UTF-8, within the broker's max_text.
//  Resent with the same id (every heartbeat interval, and at once after a
//  reconnect) until ACK, or until the client's timeout has passed since
//  the first send: then an ERROR event with code ZCHAT_CLIENT_TIMEOUT.
//  One refused with 429 (rate limit, fair share) is no ERROR event: it
//  and every send after it go again, in order, after the broker's retry
//  time. The broker recognises a resend (a SAY is stored once, a DM
//  delivered once within its session: PROTOCOL.md 6.3).
//  A SAY goes out at once while at most 8 sends are unacknowledged; past
//  that (a busy sender) it waits for the next call into the client
//  (zchat_client_next, _wait, or a pass after the DEALER stirs, which the
//  ACKs of those in flight make it do), and everything gathered by then
//  goes out as one SAYS (protocol version 2). An application that polls
//  the DEALER itself must therefore call into the client when it is
//  readable, as it must anyway to get its ACKs.
uint64_t zchat_client_say     (zchat_client_t *self, const char *room,
                               const char *text, size_t text_size, bool action);
//  A direct message to nick, sent, resent and refused as a say above.
//  At most 256 DMs go out from the oldest one still unacknowledged on,
//  counting it (a span, not a count: one lost ACK holds the window even
//  when the later ones are answered): the broker recognises a resent DM
//  only among the last 256 its session delivered (PROTOCOL.md 6.3), and
//  would deliver an older one twice. A DM past that waits in the library,
//  with every send after it (SAY or DM: sends go out in the order they
//  were made), until the oldest one out is answered or times out; then it
//  goes out as a held-back SAY does, on the next call into the client.
//  The call still returns the id at once, and the timeout counts from the
//  call.
uint64_t zchat_client_dm      (zchat_client_t *self, const char *nick,
                               const char *text, size_t text_size, bool action);
uint64_t zchat_client_set_nick (zchat_client_t *self, const char *nick);
uint64_t zchat_client_who     (zchat_client_t *self, const char *room);
uint64_t zchat_client_rooms   (zchat_client_t *self);
//  topic NULL asks for the topic; otherwise sets it.
uint64_t zchat_client_topic   (zchat_client_t *self, const char *room,
                               const char *topic);
//  Fetch messages from_seq..to_seq (to_seq 0 = newest), or with from_seq
//  0 the last limit messages. They arrive as MESSAGE events with history
//  set, then one HISTORY event.
uint64_t zchat_client_history (zchat_client_t *self, const char *room,
                               uint64_t from_seq, uint64_t to_seq, int limit);

//  Next event, waiting at most timeout_ms (0 = do not wait, -1 = forever).
//  Returns NULL on timeout or interrupt. Does the session's housekeeping.
zchat_event_t *
    zchat_client_next (zchat_client_t *self, int timeout_ms);

//  Wait for the answer to request id (ACK, OK, ERROR, JOINED, NICK for our
//  own rename, ...), at most
//  timeout_ms; other events meanwhile are kept for zchat_client_next.
//  Returns NULL on timeout or interrupt. Once the events kept hold more
//  than 64 MiB (a flood of DMs, or a caller that never reads its events),
//  it returns an ERROR event for id with code ZCHAT_CLIENT_FAILED instead
//  of reading on; zchat_client_connect fails the same way.
zchat_event_t *
    zchat_client_wait (zchat_client_t *self, uint64_t id, int timeout_ms);

//  Sends not yet acknowledged.
size_t
    zchat_client_pending (zchat_client_t *self);

//  Pollable handles (stable for the client's life) and the longest a
//  caller may poll before calling zchat_client_next again. The SUB is
//  connected from the first receiving join on; before, it is never
//  readable, and polling it is harmless.
zsock_t *
    zchat_client_dealer (zchat_client_t *self);
zsock_t *
    zchat_client_sub (zchat_client_t *self);
int
    zchat_client_due_ms (zchat_client_t *self);

#ifdef __cplusplus
}
#endif
#endif
