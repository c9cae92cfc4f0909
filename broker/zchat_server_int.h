//  zchat_server_int — what the files of zchat_server share and nobody else
//  uses: the server's state and the helpers its command handlers call.
//
//  The server is split by concern: zchat_server.c (life cycle, dispatch,
//  replies, tick), zchat_server_session.c (HELLO BYE NICK PING, session
//  end), zchat_server_room.c (JOIN LEAVE WHO ROOMS TOPIC PROBE HISTORY),
//  zchat_server_say.c (SAY staging, group commit, DM, rate limit).

#ifndef ZCHAT_SERVER_INT_H_INCLUDED
#define ZCHAT_SERVER_INT_H_INCLUDED

#include <czmq.h>
#include "zchat_msg.h"
#include "zchat_store.h"
#include "zchat_server.h"
#include "zchat_session.h"
#include "zchat_room.h"
#include "zchat_log.h"
#include "zchat_arena.h"

//  Largest PAGE body the broker builds: well under ZCHAT_MAX_FRAME, so one
//  history reply cannot hog the ROUTER or a slow client's queue.
#define ZCHAT_PAGE_BYTES        (512 * 1024)

//  A group is committed early once it holds this much, so a sender that
//  never pauses cannot grow it without bound.
#define ZCHAT_GROUP_MESSAGES    8192
#define ZCHAT_GROUP_BYTES       (16 * 1024 * 1024)

//  Retention deletes or rewrites at most this many chunk rows (and
//  examines at most this many rooms) per tick. A chunk holds one room's
//  messages of one group, so under load one row is hundreds of messages.
#define ZCHAT_RETAIN_BATCH      256

//  Budget of info-level session lines per window; beyond it they drop to
//  debug and a summary line says how many were held back.
#define ZCHAT_LOG_WINDOW_MS     10000
#define ZCHAT_LOG_BUDGET        200

//  One staged SAY: what its acknowledgement needs. Its MESSAGE is an item
//  of a run (below), unless it was a duplicate, which publishes nothing.
typedef struct {
    zchat_room_t *room;         //  NULL for a duplicate
    uint64_t id;                //  request id
    uint64_t seq, ts;           //  handed out, or the original's
    size_t orig_at;             //  a duplicate's original room, in the arena
    size_t next;                //  the sender's next entry
} zchat_staged_t;

//  A session that sent SAYs in the open group: its envelope, copied once,
//  and its staged entries in order, a chain through zchat_staged_t.next.
typedef struct {
    size_t peer_at, peer_size;  //  in peers
    bool batch_ack;             //  version 2: one ACKS for them all
    bool run_ack;               //  version 4: ACKRUNS, a run per item,
                                //  instead of ACKS
    size_t head, tail;
} zchat_sender_t;

//  A run: consecutive messages of one room, encoded as they are staged
//  into one MESSAGES body in the arena (at most a batch), which goes out
//  as it is unless it is small and its room has more runs.
typedef struct {
    zchat_room_t *room;         //  pinned while the run exists
    size_t at;                  //  where its body starts in the arena
    zchat_buf_t buf;            //  its encoder; data is set before each use
                                //  (the arena moves when it grows)
    bool closed;                //  takes no more items (one over a batch)
    uint64_t last_seq;          //  its newest message
    size_t next;                //  its room's next run in the group
} zchat_run_t;

struct _zchat_server_t {
    zchat_server_config_t config;       //  normalised copy
    char *pub_endpoint;                 //  config.pub_endpoint points here
    zchat_store_t *store;               //  borrowed
    zchat_server_output_t output;
    zchat_sessions_t *sessions;
    zchat_rooms_t *rooms;

    uint8_t *buffer;                    //  scratch for one reply or event
    size_t buffer_size;                 //  ZCHAT_MAX_FRAME

    //  The open group (see zchat_server_say.c). Every array is kept from
    //  group to group, so a steady stream allocates nothing.
    bool group_open;
    uint64_t group_gen;                 //  marks the rooms and sessions of
                                        //  this group (counts groups from 1)
    zchat_staged_t *staged;
    size_t staged_count;
    size_t staged_limit;
    size_t stored_count;                //  staged, not duplicates
    zchat_arena_t *arena_block;         //  runs, duplicates' room names:
    uint8_t *arena;                     //  its bytes (NULL before the first
    size_t arena_size;                  //  SAY, and after it was lent)
    size_t arena_limit;
    zchat_run_t *runs;
    size_t run_count;
    size_t run_limit;
    zchat_sender_t *senders;
    size_t sender_count;
    size_t sender_limit;
    uint8_t *peers;                     //  the senders' envelopes
    size_t peers_size;
    size_t peers_limit;

    //  Fair share (zchat_server_say.c): SAYs accepted in the current
    //  period, and from how many sessions
    uint64_t fair_period;
    uint64_t fair_total;
    uint32_t fair_senders;
    uint64_t fair_prev_total;           //  the same for the period before
    uint32_t fair_prev_senders;
    uint64_t fair_company_ms;           //  when this period's second sender
    uint64_t fair_company_total;        //  came, and fair_total before it

    //  By address, until it has refilled (zchat_server_say.c): what
    //  sessions that ended left of their rate limits and query budget, so
    //  that greeting again (or BYE, then HELLO) does not hand a client
    //  fresh buckets, and the query budget all its sessions share
    zhashx_t *spent;                    //  address -> zchat_spent_t
    uint64_t spent_due_ms;              //  when to forget the refilled

    //  Housekeeping
    uint64_t retain_due_ms;
    uint64_t report_due_ms;
    uint64_t malformed;                 //  bodies that did not decode
    uint64_t unknown_session;           //  requests answered 440
    uint64_t rate_limited;              //  requests answered 429
    uint64_t lent;                      //  publications lent from the arena
    uint64_t log_window_ms;
    size_t   log_lines;                 //  info lines in this window
    size_t   log_held;                  //  lines held back in this window

    bool clock_given;                   //  zchat_server_clock was called
    uint64_t mono_ms;                   //  its latest time

    bool fail_commit;                   //  self test: the next commit fails
};

//  One inbound request, as the handlers see it.
typedef struct {
    const uint8_t *peer;
    size_t peer_size;
    int fd;                             //  its connection, -1 if unknown
    const char *user_id;                //  CURVE key or NULL
    const char *address;                //  IP address text or NULL
    zchat_session_t *session;           //  NULL if the peer has none
    const zchat_msg_t *msg;
    uint64_t now_ms;                    //  wall clock: timestamps
    uint64_t mono_ms;                   //  monotonic: expiry, rate limits
} zchat_request_t;

//  Command handlers, one per client request type.
void zchat_server_do_hello   (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_bye     (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_ping    (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_nick    (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_join    (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_leave   (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_who     (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_rooms   (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_topic   (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_probe   (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_history (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_say     (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_says    (zchat_server_t *self, zchat_request_t *req);
void zchat_server_do_dm      (zchat_server_t *self, zchat_request_t *req);

//  Send body (size from an encoder) to the request's peer. A size of 0
//  means the encoder refused: logged, nothing sent.
void
    zchat_server_reply (zchat_server_t *self, const zchat_request_t *req,
                        size_t size);

//  Send body [self->buffer, size) to any peer blob.
void
    zchat_server_send (zchat_server_t *self, const uint8_t *peer,
                       size_t peer_size, size_t size);

//  Answer the request with ERROR; reason is printf-style, kept to
//  ZCHAT_MAX_REASON bytes.
void
    zchat_server_error (zchat_server_t *self, const zchat_request_t *req,
                        uint16_t code, uint32_t retry_ms,
                        const char *format, ...) __attribute__ ((format (printf, 5, 6)));

//  Encode ERROR into self->buffer with any id; returns its size.
size_t
    zchat_server_encode_error (zchat_server_t *self, uint64_t id, uint16_t code,
                               uint32_t retry_ms, const char *format, ...)
                               __attribute__ ((format (printf, 5, 6)));

//  Publish [self->buffer, size) on room's topic.
void
    zchat_server_publish (zchat_server_t *self, const zchat_room_t *room,
                          size_t size);

//  Publish [self->buffer, size) on any topic frame (a tagged probe's).
void
    zchat_server_publish_on (zchat_server_t *self, const uint8_t *topic,
                             size_t topic_size, size_t size);

//  Publish a presence EVENT on room's topic.
void
    zchat_server_event (zchat_server_t *self, const zchat_room_t *room,
                        uint8_t event, const char *nick, const char *detail,
                        uint64_t now_ms);

//  A name safe to echo in a reason or a log line: name itself if it is a
//  valid nick or room name, else a placeholder.
const char *
    zchat_server_printable (const char *name);

//  Log a session-level line at info, within the budget (else at debug).
void
    zchat_server_log (zchat_server_t *self, uint64_t now_ms,
                      const char *format, ...) __attribute__ ((format (printf, 3, 4)));

//  Find or create the room called name (valid). New rooms take their seq
//  and topic from the store. Returns NULL if out of memory or if the
//  store cannot tell the room's newest seq or its topic.
zchat_room_t *
    zchat_server_room_open (zchat_server_t *self, const char *name);

//  Free room if nothing holds it any more (no members, no staged message).
void
    zchat_server_room_release (zchat_server_t *self, zchat_room_t **room_p);

//  Bind a session that greeted with version 6 or later to the request's
//  connection, or unbind it. Returns true if it is bound: it then lives as
//  long as its connection. A connection that closed lately may be the one
//  the request came on, its close heard before the request was read: that
//  session's connection is checked as if it had closed now.
bool
    zchat_server_bind (zchat_server_t *self, zchat_session_t *session,
                       const zchat_request_t *req);

//  Check a bound session's connection now (output.reaches, with an
//  unsolicited PONG of no items, which every client ignores): there, the
//  session lives on; gone, it is unbound and its silence counts from now,
//  so that it ends after the session timeout unless its client greets
//  again with its token.
void
    zchat_server_check (zchat_server_t *self, zchat_session_t *session,
                        uint64_t mono_ms, uint64_t now_ms);

//  End a session: quit in each of its rooms, nick freed, record freed;
//  nulls *session_p. why is for the log.
void
    zchat_server_end_session (zchat_server_t *self, zchat_session_t **session_p,
                              const char *why, uint64_t now_ms);

//  Commit the open group, if any, before something that must come after
//  it (a goodbye, a rename, a store write outside the group).
void
    zchat_server_settle (zchat_server_t *self);

//  Charge the request to its session's rate limit (--rate-limit): every
//  command that publishes to a room or writes to the store is, so that
//  none of them can flood a room or the disk. Returns false if allowed,
//  or answers 429 with a retry time and returns true.
bool
    zchat_server_rate_limited (zchat_server_t *self, zchat_request_t *req);

//  Expensive replies (HISTORY, WHO, ROOMS, and TOPIC reads, a store
//  lookup for a room not loaded) are charged to a per-session budget of
//  reply bytes (query_rate KiB/s, bursts of query_burst KiB), so that one
//  session cannot make the broker build and queue replies, or look them
//  up, faster than an honest reader takes them: a peer that asks and
//  never reads otherwise parks them in the broker's memory. They are
//  charged to a budget of the session's address too, which all its
//  sessions share, ZCHAT_QUERY_SHARE times a session's in rate and burst:
//  one connection can carry many sessions behind relay hops, and one
//  address hold max_sessions_per_address of them (by default 1000
//  sessions of 16 MiB, 16 GiB, with budgets per session only; 64 MiB for
//  the address). Sessions without an address (ipc) have only their own.
//  query_refused answers 429 (retry_ms: when both are out of debt) and
//  returns true if either is spent; query_charge then charges both a
//  reply of size bytes, plus ZCHAT_QUERY_OVERHEAD for the lookup itself.
#define ZCHAT_QUERY_OVERHEAD    256

//  An address's share is a multiple of a session's, not the sum of its
//  sessions' budgets: that sum is what an attacker with one address gets.
//  Four sessions' worth lets an honest team behind one NAT address catch
//  up at once after a broker restart, which asks for far less than a
//  session's burst each (a page is at most 512 KiB, and a reconnecting
//  client fetches only the gaps in its rooms): 64 MiB is 128 pages at
//  that cap, or about a thousand pages of 500 chat messages of 100 bytes.
//  Past it, fetches wait for the retry time (libzchat waits as told) and
//  go on at four times a session's rate.
#define ZCHAT_QUERY_SHARE       4

bool
    zchat_server_query_refused (zchat_server_t *self, zchat_request_t *req);
void
    zchat_server_query_charge (zchat_server_t *self, zchat_request_t *req,
                               size_t size);

//  Fill a fresh session's buckets, or give it what a session of its
//  address that ended lately left of them.
void
    zchat_server_rate_init (zchat_server_t *self, zchat_session_t *session,
                            uint64_t now_ms);

//  Remember what an ending session left of its buckets, by its address.
void
    zchat_server_rate_keep (zchat_server_t *self, const zchat_session_t *session,
                            uint64_t mono_ms);

//  Forget the remembered buckets that have refilled (now and then).
void
    zchat_server_rate_prune (zchat_server_t *self, uint64_t mono_ms);

#endif
