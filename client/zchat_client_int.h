//  zchat_client_int — what the files of libzchat's client share and nobody
//  else uses: the client's state, its event queue, its requests, and the
//  helpers the room code calls. Not installed: callers see zchat_client.h.
//
//  The client is split by concern: zchat_client.c (sockets, the session,
//  sends, requests, decoding what arrives, the public API),
//  zchat_client_room.c (one room we are in: join, probe, held events,
//  sequencing, gap fetches) and zchat_event.c (making events). Its self
//  test, zchat_client_test.c, drives the steps declared at the end.

#ifndef ZCHAT_CLIENT_INT_H_INCLUDED
#define ZCHAT_CLIENT_INT_H_INCLUDED

#include <czmq.h>
#include "zchat_client.h"
#include "zchat_event.h"
#include "zchat_idmap.h"
#include "zchat_msgpool.h"
#include "zchat_outbox.h"

//  Everything declared here is for the client's own files: hidden from
//  libzchat.so's exports, so that the library offers what zchat_client.h
//  says and no more, and so that calls from one of these files to another
//  stay direct calls (no PLT), as they were when all this was one file.
#pragma GCC visibility push(hidden)

//  The client's tuning, in one place (a room's own: zchat_client_room.c)
#define S_DEFAULT_TIMEOUT_MS    5000    //  per reply, and per send's ACK
#define S_DEFAULT_HEARTBEAT_MS  3333    //  until the broker says
#define S_DEFAULT_SESSION_MS    10000   //  until the broker says
#define S_GREET_RETRY_MS        1000    //  HELLO retry while the broker is down
#define S_HELLO_ANSWER_MS       2000    //  a sent HELLO unanswered this long is resent
#define S_RATE_RETRY_MS         100     //  a 429 without a retry time
//  After a SAY or DM refused with 429 at most this many sends go out
//  unanswered at once, one more for each ACK (twice as many each round
//  trip) until S_SEND_CAP_OPEN, when the cap comes off (zchat_client_send_room).
#define S_SEND_CAP_RESUME       64
#define S_SEND_CAP_OPEN         8192
//  At most this many DMs go out from the oldest unanswered one on, that
//  one counted (s_dm_held); the rest wait. The broker recognises a resent
//  DM only among the last ZCHAT_DM_RECENT its session delivered
//  (PROTOCOL.md 6.3) and delivers any older one again, so more would have
//  some delivered twice when we resend them (on a new session, or a
//  heartbeat after a lost or late ACK).
#define S_DM_WINDOW             ZCHAT_DM_RECENT
#define S_BYE_WAIT_MS           500     //  destroy waits this long for BYE's OK
#define S_MAX_IDLE_MS           1000    //  housekeeping runs at least this often
#define S_WRITE_RETRY_MS        10      //  retry a full DEALER, for external pollers
#define S_BATCH                 512     //  messages drained per socket per pass
//  Before anything goes again, housekeeping reads every reply waiting on
//  the DEALER, up to this many: what its queue holds and a little more,
//  a bound against a stream that never stops (others' DMs)
#define S_REPLIES_MAX           (2 * S_DEALER_RCVHWM + S_BATCH)
//  A new send reads the replies first if none were read for this long
#define S_REPLIES_STALE_MS      100
#define S_SNDHWM                10000
//  What a broker can make us hold is bounded by messages queued times
//  their largest size: each socket refuses a frame over its limit before
//  allocating it (libzmq then drops that connection and reconnects), and
//  queues a bounded number. Replies (PAGE) can fill a whole body; the PUB
//  path carries MESSAGE, EVENT and PROBE only, whose largest is one
//  ZCHAT_MAX_TEXT text plus its small header. The broker keeps up to its
//  own high-water marks queued for a reader that is behind, so a short
//  queue here costs an honest session nothing.
#define S_DEALER_RCVHWM         1000
#define S_DEALER_MAXMSGSIZE     (ZCHAT_MAX_FRAME + 1024)
#define S_SUB_RCVHWM            1000
#define S_SUB_MAXMSGSIZE        (ZCHAT_MAX_TEXT + 1024)
#define S_LINGER_MS             200
#define S_BUFFER_SIZE           (ZCHAT_MAX_TEXT + 1024)
#define S_SAYS_AFTER            8       //  unacknowledged sends before new SAYs batch
#define S_SAYS_BYTES            (64 * 1024)     //  largest SAYS built
#define S_SAYS_ITEMS            1024
#define S_SAYS_EARLY            128     //  gathered SAYs that go out without waiting for the pass
//  Bodies of S_POOLED_MIN bytes or more (SAYS batches, long texts) go out
//  in blocks of a pool kept warm (zchat_msgpool.h), at most S_POOL_KEEP
//  free ones: with the window full of 1 KiB texts some 32 SAYS are out
//  at once, fewer with shorter texts.
#define S_POOLED_MIN            (8 * 1024)
#define S_POOL_KEEP             16
//  zchat_client_wait and zchat_client_connect read on past events that
//  are not what they wait for, which stay queued for zchat_client_next;
//  past this many bytes of them they give up instead (a broker that
//  floods DMs, or a caller that never reads its events, would otherwise
//  make us hold without bound)
#define S_QUEUE_MAX_BYTES       (64 * 1024 * 1024)

//  Messages asked per history fetch (ours, and the caller's "last N")
#define ZCHAT_CLIENT_PAGE_LIMIT 500

//  The DEALER's ZMTP heartbeats (ms): libzmq's own PING and PONG, which
//  notice a dead broker without passing through any queue
#define ZCHAT_CLIENT_ZMTP_HEARTBEAT_IVL     1000
#define ZCHAT_CLIENT_ZMTP_HEARTBEAT_TIMEOUT 3000
//  Version 6: pings go on this many heartbeats after the last activity
//  (a send, anything that came but a PONG), so that a tail lost at the
//  end of a burst is told by a PONG, as before version 6; then none. The
//  bench's libzmq floor (bench/bench_floor.c) keeps the same rhythm.
#define ZCHAT_CLIENT_ACTIVE_HEARTBEATS      3

//  A room message whose sender's nick breaks the name rules (a broken or
//  hostile broker: such a name could carry terminal escapes to whoever
//  prints it). It still takes its place in the room's sequence, so that
//  nothing waits for it, but it is never handed to the caller.
#define ZCHAT_CLIENT_EV_DROPPED ((zchat_event_type_t) 0)

typedef enum {
    S_IDLE,                     //  not connected (never, or connect failed)
    S_GREETING,                 //  HELLO sent or due, waiting for WELCOME
    S_READY                     //  in session
} zchat_client_state_t;

typedef enum {
    RQ_JOIN = 1,
    RQ_LEAVE,
    RQ_NICK,
    RQ_WHO,
    RQ_ROOMS,
    RQ_TOPIC,
    RQ_HISTORY,                 //  the caller's history request
    RQ_FETCH,                   //  our own gap or tail fetch
    RQ_PROBE,
    RQ_BYE
} zchat_client_req_kind_t;

//  A request waiting for its answer. The caller's requests (user) are
//  kept in full so that they can be sent again on a new session.
typedef struct {
    zchat_client_req_kind_t kind;
    bool     user;              //  the caller's, not the library's own
    bool     sent;              //  went out on the current session
    uint64_t user_id;           //  id the caller knows (history pages)
    char     room [ZCHAT_MAX_ROOM + 1];
    char     arg [ZCHAT_MAX_TOPIC + 1];     //  NICK: new nick; TOPIC: text;
                                            //  PROBE: its tag, or ""
    bool     set;               //  TOPIC: set, not read
    uint64_t from_seq;          //  HISTORY, FETCH
    uint64_t to_seq;
    uint32_t limit;             //  HISTORY: per page
    uint32_t remaining;         //  HISTORY: messages still wanted, 0 = all
    uint64_t last_seq;          //  HISTORY: last seq handed on
} zchat_client_request_t;

//  A FIFO of events, growable ring, and what its events hold in all
typedef struct {
    zchat_event_t **items;
    size_t capacity, head, count;
    size_t bytes;
} zchat_client_queue_t;

//  One room we are in (zchat_client_room.h)
typedef struct _zchat_client_room_t zchat_client_room_t;

struct _zchat_client_t {
    char    *server;
    char     nick [ZCHAT_MAX_NICK + 1];
    char    *sub_option;        //  set_sub_endpoint
    char    *pub_endpoint;      //  where the broker's PUB is (the last
                                //  WELCOME, or sub_option); NULL before
    char    *sub_endpoint;      //  what the SUB is connected to: NULL
                                //  until a receiving join first needs it
    int      timeout_ms;
    int      history_n;
    zcert_t *cert;
    char     server_key [41];
    zsock_t *dealer;
    zsock_t *sub;
    zsock_t *monitor;           //  PAIR receiving DEALER handshake failures
                                //  (while connecting; always with CURVE)
    void    *dealer_h, *sub_h, *monitor_h;
    zchat_client_state_t state;
    bool     welcomed;          //  a WELCOME was ever received
    bool     in_connect;        //  inside zchat_client_connect
    uint64_t next_id;
    uint64_t hello_id;
    bool     hello_sent;
    int64_t  greet_next_ms;
    bool     greet_error_told;  //  one ERROR event per re-greeting episode
    int      refused;           //  connect: the broker's ERROR code, or 0
    bool     auth_failed;       //  a handshake-failed event came
    int      handshake_drops;   //  handshakes closed without detail
    bool     auth_told;
    bool     bye_answered;
    uint64_t bye_id;
    char     token [ZCHAT_MAX_TOKEN + 1];
    uint32_t heartbeat_ms;
    uint32_t session_ms;
    uint32_t max_text;
    int64_t  last_send_ms;
    int64_t  last_recv_ms;
    int64_t  active_ms;         //  the caller sent, or anything but a PONG came
    int64_t  quiet_ms;          //  version 6: last found idle and connected,
                                //  when silence counts for nothing
    int64_t  dealer_read_ms;    //  the DEALER was last read (to empty, or
                                //  a batch's worth)
    int64_t  due_ms;            //  next housekeeping
    size_t   unsent_requests;
    zchat_client_queue_t queue;
    zhashx_t *rooms;            //  name -> zchat_client_room_t
    zchat_client_room_t *last_room;     //  the room last looked up by name, or NULL
    char     nick_ok [ZCHAT_MAX_NICK + 1];  //  a sender's nick known valid
    zchat_idmap_t *requests;    //  id -> zchat_client_request_t
    zchat_outbox_t *outbox;     //  unacknowledged sends
    uint8_t *buffer;
    zchat_buf_t buf;
    zchat_msgpool_t *sendpool;  //  blocks for large bodies sent
    uint8_t version;            //  protocol version of the session (WELCOME)
    int64_t send_pause_until;   //  a send was refused with 429: none before
    size_t send_cap;            //  sends in flight at most since a 429, 0 = no cap
    uint64_t cap_from_id;       //  the refused send: only its ACK and later ones grow the cap
    size_t gathered;            //  SAYs gathered for a SAYS since the last flush
    size_t   queue_max_bytes;   //  S_QUEUE_MAX_BYTES (a self test lowers it)
    char     error [256];
};

//  --------------------------------------------------------------------------
//  Where to cut text that is to end at len bytes so that it does not end
//  inside a UTF-8 character: len, or the start of the character len
//  splits. A text cut to fit a buffer (an error that quotes what a broker
//  sent, say) stays valid UTF-8 if it was.

static inline size_t
zchat_client_utf8_cut (const char *text, size_t len)
{
    size_t lead = len;
    //  Back over continuation bytes (10xxxxxx) to the character's first
    while (lead > 0 && len - lead < 4 && ((uint8_t) text [lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead == 0 || len - lead == 4)
        return len;             //  not UTF-8 that we could mend
    uint8_t first = (uint8_t) text [lead - 1];
    size_t need = first < 0x80? 1: first >= 0xF0? 4: first >= 0xE0? 3: first >= 0xC0? 2: 1;
    return len - (lead - 1) < need? lead - 1: len;
}

//  --------------------------------------------------------------------------
//  Copy the string src into dest of dest_size bytes (> 0), cut to fit and
//  always terminated, and never inside a UTF-8 character: what snprintf
//  "%s" does, without parsing a format on paths that run for every message.

static inline void
zchat_client_copy (char *dest, size_t dest_size, const char *src)
{
    size_t len = strnlen (src, dest_size - 1);
    if (src [len])
        len = zchat_client_utf8_cut (src, len);
    memcpy (dest, src, len);
    dest [len] = 0;
}

//  --------------------------------------------------------------------------
//  Event queue: push at the tail, pop at the head, remove from anywhere
//  (for zchat_client_wait). Push returns 0, or -1 if out of memory. The
//  capacity is a power of two, so that wrapping is a mask, not a division.
//  Inline: every message a room delivers is pushed.

//  What an event holds, near enough: itself, its text and its list.
static inline size_t
zchat_client_event_bytes (const zchat_event_t *event)
{
    return sizeof (zchat_event_t) + event->text_size
         + event->item_count * sizeof (zchat_list_item_t);
}

static inline int
zchat_client_queue_push (zchat_client_queue_t *queue, zchat_event_t *event)
{
    if (queue->count == queue->capacity) {
        size_t capacity = queue->capacity? queue->capacity * 2: 64;
        zchat_event_t **items = (zchat_event_t **) malloc (capacity * sizeof (zchat_event_t *));
        if (!items)
            return -1;
        for (size_t i = 0; i < queue->count; i++)
            items [i] = queue->items [(queue->head + i) & (queue->capacity - 1)];
        free (queue->items);
        queue->items = items;
        queue->capacity = capacity;
        queue->head = 0;
    }
    queue->items [(queue->head + queue->count) & (queue->capacity - 1)] = event;
    queue->count++;
    queue->bytes += zchat_client_event_bytes (event);
    return 0;
}

static inline zchat_event_t *
zchat_client_queue_at (zchat_client_queue_t *queue, size_t index)
{
    assert (index < queue->count);
    return queue->items [(queue->head + index) & (queue->capacity - 1)];
}

static inline zchat_event_t *
zchat_client_queue_remove (zchat_client_queue_t *queue, size_t index)
{
    assert (index < queue->count);
    zchat_event_t *event = zchat_client_queue_at (queue, index);
    for (size_t i = index; i + 1 < queue->count; i++)
        queue->items [(queue->head + i) & (queue->capacity - 1)] =
            queue->items [(queue->head + i + 1) & (queue->capacity - 1)];
    queue->count--;
    queue->bytes -= zchat_client_event_bytes (event);
    return event;
}

static inline zchat_event_t *
zchat_client_queue_pop (zchat_client_queue_t *queue)
{
    if (queue->count == 0)
        return NULL;
    zchat_event_t *event = queue->items [queue->head];
    queue->head = (queue->head + 1) & (queue->capacity - 1);
    queue->count--;
    queue->bytes -= zchat_client_event_bytes (event);
    if (queue->count == 0)
        queue->head = 0;
    return event;
}

static inline void
zchat_client_queue_purge (zchat_client_queue_t *queue)
{
    zchat_event_t *event;
    while ((event = zchat_client_queue_pop (queue)))
        zchat_event_destroy (&event);
    free (queue->items);
    memset (queue, 0, sizeof (*queue));
}

//  --------------------------------------------------------------------------
//  Hand an event to the caller's queue (takes it). Out of memory loses the
//  event; there is nobody to tell but the caller, and it cannot be told.

static inline void
zchat_client_emit (zchat_client_t *self, zchat_event_t *event)
{
    if (event && zchat_client_queue_push (&self->queue, event))
        zchat_event_destroy (&event);
}

//  --------------------------------------------------------------------------
//  Come back for housekeeping at when, if that is sooner than planned.

static inline void
zchat_client_schedule (zchat_client_t *self, int64_t when)
{
    if (when < self->due_ms)
        self->due_ms = when;
}

//  64 random bits (from the kernel; failing that, as random as can be had).
uint64_t
    zchat_client_random64 (void);

//  Build a room MESSAGE event from a MESSAGE or a PAGE item; of type
//  ZCHAT_CLIENT_EV_DROPPED if the sender's nick is not a valid nick.
//  Returns NULL only if out of memory.
zchat_event_t *
    zchat_client_message_event (zchat_client_t *self, const char *room,
                                uint64_t seq, uint64_t ts, const char *nick,
                                uint8_t kind, const char *text, size_t text_size);

//  Emit an ERROR event answering id (0 if none); room, nick may be NULL.
void
    zchat_client_emit_error (zchat_client_t *self, uint64_t id, int code,
                             uint32_t retry_ms, const char *room,
                             const char *nick, const char *reason);

//  A new request of kind, ours (user false) or the caller's, about room
//  (NULL: none). Returns NULL if out of memory.
zchat_client_request_t *
    zchat_client_request_new (zchat_client_req_kind_t kind, bool user,
                              const char *room);

//  Register a request and send it (if it cannot go out now, it goes when
//  it can). Takes req. Returns its id, or 0 if out of memory (req freed).
uint64_t
    zchat_client_request (zchat_client_t *self, zchat_client_request_t *req,
                          int64_t now);

//  Forget a request; returns it (the caller frees it) or NULL.
zchat_client_request_t *
    zchat_client_request_take (zchat_client_t *self, uint64_t id);

//  --------------------------------------------------------------------------
//  The clock everything here runs on (ms, monotonic).

static inline int64_t
zchat_client_now (void)
{
    return zclock_mono ();
}

//  --------------------------------------------------------------------------
//  The same clock at the kernel tick's resolution (a few ms behind zchat_client_now
//  at most), for a few ns instead of a few tens: enough to see whether
//  housekeeping is due while handing out queued events one by one.

static inline int64_t
zchat_client_now_coarse (void)
{
    struct timespec ts;
    if (clock_gettime (CLOCK_MONOTONIC_COARSE, &ts))
        return zchat_client_now ();
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  --------------------------------------------------------------------------
//  The client's own steps, shared with its self test (zchat_client_test.c),
//  which drives them with chosen clocks and bodies.

//  One body from the DEALER.
void
    zchat_client_on_dealer (zchat_client_t *self, const void *data, size_t size,
                            int64_t now);

//  One body from the SUB, which came under topic (its topic frame: only a
//  PROBE needs it, to tell its probing episode's tag).
void
    zchat_client_on_sub (zchat_client_t *self, const void *topic, size_t topic_size,
                         const void *data, size_t size, int64_t now);

//  Drain the DEALER, the SUB and the monitor, each at most a batch,
//  without waiting. Returns the number of messages read.
int
    zchat_client_drain (zchat_client_t *self, int64_t now);

//  Housekeeping: whatever is due at now, then when to come back (due_ms).
void
    zchat_client_housekeep (zchat_client_t *self, int64_t now);

//  How many more sends may go out now: SIZE_MAX but after a 429.
size_t
    zchat_client_send_room (zchat_client_t *self);

//  Whether we wait for the DEALER to take something.
bool
    zchat_client_want_write (zchat_client_t *self);

//  Self test (zchat_client_test.c; linked into zchat-selftest, not into
//  the library): what needs no broker. Asserts on failure.
void
    zchat_client_test (bool verbose);

#pragma GCC visibility pop

#endif
