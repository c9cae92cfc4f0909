//  zchat_broker — the broker's sockets and event loop (see zchat_broker.h).
//
//  Sockets are set up the czmq way (zsock_t), but the per-message path
//  talks to libzmq directly through zsock_resolve: a zpoller wake-up, then
//  zmq_msg_recv (ZMQ_DONTWAIT) into one reused zmq_msg_t until the ROUTER
//  is empty or a batch is full. The czmq per-message path (zmsg_recv, a
//  poll per message) costs about ten times as much on this kind of
//  machine, and the loop is what bounds the broker's throughput.
//
//  Nothing here blocks on a peer: replies go out with ZMQ_DONTWAIT on a
//  ROUTER_MANDATORY socket, so a reply to a peer that is gone or not
//  reading fails at once (EHOSTUNREACH, EAGAIN) and is dropped; the client
//  protocol recovers from lost replies by retrying.
//
//  A socket monitor on the ROUTER tells of every connection that closes,
//  by its descriptor; the server keeps a version 6 session as long as its
//  connection (PROTOCOL.md 6.1), so its client need not ping while idle.
//  Every application ping passes through the ROUTER's two queues for that
//  peer, which libzmq grows in blocks of 256 messages and keeps a spare
//  of: after a few hundred pings an idle client held about three times
//  what it held when it connected (bench/README.md, idle clients).

#include "zchat_broker.h"
#include "zchat_auth.h"
#include "zchat_log.h"
#include "zchat_msg.h"
#include "zchat_server.h"
#include "zchat_store.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

//  Most messages handled between two commits: large enough that a commit
//  is shared by many messages under load, small enough that replies and
//  periodic work are never held back long.
#define BATCH_MAX           1024
//  A group smaller than this, when the last one was flushed less than
//  GROUP_STEADY_US ago, waits config.group_wait_us for company (s_drain).
#define GROUP_SMALL         8
#define GROUP_STEADY_US     2000
//  Longest gap between two runs of periodic work (expiry, retention).
#define TICK_MS_MAX         100
#define TICK_MS_MIN         10
//  A ROUTER frame larger than ZCHAT_MAX_REQUEST cannot be a valid body
//  (PROTOCOL.md 2): one larger on the wire by more than CURVE adds makes
//  libzmq disconnect the sender before allocating it; one within that
//  slack is refused with 413.
#define ROUTER_MAXMSGSIZE   (ZCHAT_MAX_REQUEST + ZCHAT_TRANSPORT_SLACK)
//  Per-peer pipe limits on the ROUTER, in messages. Inbound: generous
//  enough that batches fill under load (a SAYS carries up to 1,024
//  messages), small enough that one peer cannot park more than
//  ROUTER_RCV_BYTES in the broker with requests: 1,203 of them (libzmq
//  bounds frames, not messages, so a peer sending many frames as one
//  message can park more before the loop drops it). Outbound: the answers
//  to one SAYS of the most items, twice over: each item is answered on its
//  own, and a sender refused by the rate limit or the fair share has every
//  SAY it had on the way answered with a 429 (a window of 2,048 filled the
//  old limit of 2,048, and the ACKs behind those were dropped, so the
//  sender waited for its heartbeat to send them again: 3.3 s). Replies are
//  mostly small (about 100 bytes: 800 KiB for a peer that never reads),
//  and the big ones (history pages, member and room lists) are held back
//  by the server's query budget. Direct messages delivered are not: a
//  peer that reads slowly can have up to this many parked, each up to
//  --max-text (README, "What the limits do not cover"), so with long texts
//  the count comes down to what ROUTER_SND_BYTES holds of them, but never
//  under ROUTER_SNDHWM_MIN (the old limit, which only a flooder with more
//  sends on the way than that ever filled). Past it a reply to that peer
//  is dropped (EAGAIN) and it must retry.
#define ROUTER_RCV_BYTES    (80 * 1024 * 1024)
#define ROUTER_RCVHWM       (ROUTER_RCV_BYTES / ROUTER_MAXMSGSIZE)
#define ROUTER_SNDHWM       (2 * ZCHAT_MAX_ITEMS)
#define ROUTER_SNDHWM_MIN   2048
#define ROUTER_SND_BYTES    (64 * 1024 * 1024)
//  Listen backlog of both sockets: thousands of clients reconnect at once
//  after a broker restart, each with a DEALER and a SUB; with libzmq's
//  default of 100 the overflow waits out SYN and ACK retransmits, which
//  back off to tens of seconds (the kernel caps it at somaxconn).
#define LISTEN_BACKLOG      4096
//  Dead peers on the ROUTER are found by the kernel: TCP keepalive probes
//  a connection silent for KEEPALIVE_IDLE_S, and TCP_MAXRT (Linux's
//  TCP_USER_TIMEOUT) closes one whose data or probes stay unacknowledged
//  for ROUTER_MAXRT_MS. A silently partitioned peer is cut off within
//  about 20 s (13 s measured), which frees what was queued for it. A
//  session of version 5 or below expires after the session timeout of
//  silence anyway; a version 6 session lives as long as its connection,
//  so this close, which the ROUTER's monitor reports, is what ends it
//  (a check and a session timeout later). So is a peer that keeps its
//  receive window shut (it sends but no longer reads) for
//  ROUTER_MAXRT_MS (16 s measured).
//
//  Not ZMTP heartbeats, which found partitioned peers too (5 s / 15 s:
//  18 s measured; a peer that sent but did not read kept them satisfied)
//  at a cost that grew with the square of the connections: libzmq 4.3.4
//  keeps an I/O thread's timers in one ordered list and cancels one by
//  walking the list from the start. Every heartbeat set a timeout timer
//  that the peer's next message cancelled, and the heartbeat timers
//  lengthened the walk that cancels each new connection's handshake
//  timer. With 4,000 idle clients the walk was 70% of the I/O thread's
//  samples (0.4 of a core busy, 0.1 without), and 9,000 idle clients
//  could not be held; without, they connect in 18 s. Clients still send
//  ZMTP pings of their own, to notice a dead broker; libzmq answers them
//  without a timer. The PUB has neither: its pipes may be full, and a
//  subscriber that reads slowly must not be cut off for it.
#define KEEPALIVE_IDLE_S    5
#define KEEPALIVE_INTVL_S   5
#define KEEPALIVE_CNT       3
#define ROUTER_MAXRT_MS     15000
//  On shutdown, give the last acknowledgements a moment to leave.
#define ROUTER_LINGER_MS    500
//  Subscriptions are a topic frame plus one byte; nothing bigger is valid.
#define PUB_MAXMSGSIZE      1024
//  A CURVE public key in Z85, as the store keeps it.
#define Z85_KEY_SIZE        40
//  Bad input is logged at debug level, at most this many lines a second.
#define LOGGED_PER_S        10

//  Set by SIGHUP, read by the loop.
static volatile sig_atomic_t s_hup_received = 0;

//  Counts a kind of event and logs it at a bounded rate.
typedef struct {
    uint64_t total;
    int64_t window;                 //  start of the current second
    unsigned logged;                //  lines in the current second
    uint64_t suppressed;            //  events not logged in it
} limiter_t;

struct _zchat_broker_t {
    int64_t last_flush_us;          //  when the last group was flushed
    uint32_t group_wait_us;         //  config.group_wait_us
    bool curve;
    uint32_t max_text;
    char *router_endpoint;          //  as bound
    char *pub_endpoint;             //  as bound
    zchat_auth_t *auth;             //  NULL without CURVE
    zchat_store_t *store;
    zchat_server_t *server;
    zsock_t *router;
    zsock_t *pub;
    zsock_t *monitor;               //  PAIR: the ROUTER's closed connections
    bool monitoring;                //  the ROUTER's monitor is on
    void *router_handle;            //  libzmq sockets, for the hot path
    void *pub_handle;
    zpoller_t *poller;
    zmq_msg_t frame;                //  reused for every inbound frame
    uint8_t peer [ZCHAT_BROKER_MAX_PEER];
    int tick_ms;
    int64_t next_tick;              //  zclock_mono time of the next tick
    uint64_t handled;               //  bodies given to the server
    limiter_t dropped;              //  malformed envelopes
    limiter_t undeliverable;        //  replies to gone or stuck peers
    limiter_t storage;              //  failed commits
    bool hup_installed;             //  our SIGHUP handler is in place
    struct sigaction previous_hup;  //  the one to put back
};

//  ---------------------------------------------------------------------
//  Count an event; log it at debug level (or at error level if loud) at
//  most LOGGED_PER_S times a second, then say how many went unlogged.

static void
s_limited_log (limiter_t *self, bool loud, const char *what, const char *detail,
               const char *address)
{
    self->total++;
    if (!loud && !zchat_log_verbose ())
        return;
    int64_t now = zclock_mono ();
    if (now - self->window >= 1000) {
        if (self->suppressed)
            zsys_debug ("%s: %" PRIu64 " more not logged", what, self->suppressed);
        self->window = now;
        self->logged = 0;
        self->suppressed = 0;
    }
    if (self->logged < LOGGED_PER_S) {
        self->logged++;
        if (loud)
            zsys_error ("%s: %s", what, detail);
        else
            zsys_debug ("%s: %s (from %s)", what, detail, address? address: "?");
    }
    else
        self->suppressed++;
}

//  ---------------------------------------------------------------------
//  Fill config with the command line's defaults.

void
zchat_broker_config_defaults (zchat_broker_config_t *config)
{
    assert (config);
    memset (config, 0, sizeof (*config));
    config->router_endpoint = ZCHAT_BROKER_ROUTER;
    config->pub_endpoint = ZCHAT_BROKER_PUB;
    config->timeout_ms = ZCHAT_BROKER_TIMEOUT_MS;
    config->max_text = ZCHAT_BROKER_MAX_TEXT;
    config->history_page = ZCHAT_BROKER_HISTORY_PAGE;
    config->pub_hwm = 0;
    config->max_rooms = ZCHAT_BROKER_MAX_ROOMS;
    config->max_sessions_per_address = ZCHAT_BROKER_MAX_PER_ADDRESS;
    config->max_sessions = ZCHAT_BROKER_MAX_SESSIONS;
    config->max_nicks_per_key = ZCHAT_BROKER_MAX_NICKS_PER_KEY;
    config->query_rate = ZCHAT_BROKER_QUERY_RATE;
    config->fair_share = ZCHAT_BROKER_FAIR_SHARE;
    config->group_wait_us = ZCHAT_BROKER_GROUP_WAIT_US;
    config->query_burst = ZCHAT_BROKER_QUERY_BURST;
    config->durable = true;
}

//  ---------------------------------------------------------------------
//  Thousands of clients need thousands of descriptors: take the hard limit.

static void
s_raise_fd_limit (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) != 0) {
        zsys_warning ("cannot read the open file limit: %s", strerror (errno));
        return;
    }
    if (limit.rlim_cur == limit.rlim_max) {
        zsys_info ("open file limit: %llu", (unsigned long long) limit.rlim_cur);
        return;
    }
    rlim_t old = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit (RLIMIT_NOFILE, &limit) == 0)
        zsys_info ("open file limit raised from %llu to %llu",
                   (unsigned long long) old, (unsigned long long) limit.rlim_cur);
    else
        zsys_warning ("open file limit stays at %llu: %s",
                      (unsigned long long) old, strerror (errno));
}

//  ---------------------------------------------------------------------
//  Set an int socket option. Returns 0, or -1 with one line in error.

static int
s_set_option (zsock_t *sock, const char *socket_name, int option,
              const char *option_name, int value, char *error, size_t error_size)
{
    if (zmq_setsockopt (zsock_resolve (sock), option, &value, sizeof (value)) == 0)
        return 0;
    snprintf (error, error_size, "cannot set %s on the %s socket: %s",
              option_name, socket_name, zmq_strerror (zmq_errno ()));
    return -1;
}

#define SET_OPTION(sock, name, option, value) \
    s_set_option (sock, name, option, #option, value, error, error_size)

//  ---------------------------------------------------------------------
//  The ROUTER's send high-water mark for texts of up to max_text bytes.

static int
s_router_sndhwm (uint32_t max_text)
{
    int hwm = ROUTER_SND_BYTES / ((int) max_text + ZCHAT_BROKER_PUB_OVERHEAD);
    return hwm > ROUTER_SNDHWM? ROUTER_SNDHWM: hwm < ROUTER_SNDHWM_MIN? ROUTER_SNDHWM_MIN: hwm;
}

//  ---------------------------------------------------------------------
//  Options both sockets share; IPv6 only where the endpoint asks for it,
//  so that tcp://*:port keeps meaning IPv4 as libzmq's default has it.

static int
s_set_common (zsock_t *sock, const char *name, const char *endpoint,
              char *error, size_t error_size)
{
    if (strchr (endpoint, '[') && SET_OPTION (sock, name, ZMQ_IPV6, 1))
        return -1;
    return 0;
}

//  ---------------------------------------------------------------------
//  Bind sock to endpoint (port * picks a free one). Returns the endpoint
//  as bound (the caller's), or NULL with one line in error.

static char *
s_bind (zsock_t *sock, const char *name, const char *endpoint,
        char *error, size_t error_size)
{
    if (zmq_bind (zsock_resolve (sock), endpoint) != 0) {
        snprintf (error, error_size, "cannot bind %s to %s: %s", name, endpoint,
                  zmq_strerror (zmq_errno ()));
        return NULL;
    }
    char *bound = zsock_last_endpoint (sock);
    if (!bound || !*bound) {
        zstr_free (&bound);
        snprintf (error, error_size, "cannot read the endpoint %s is bound to", name);
        return NULL;
    }
    return bound;
}

//  ---------------------------------------------------------------------
//  The TCP port of an endpoint as bound, or 0 for other transports.

static uint16_t
s_endpoint_port (const char *endpoint)
{
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return 0;
    const char *colon = strrchr (endpoint, ':');
    if (!colon)
        return 0;
    char *end = NULL;
    unsigned long port = strtoul (colon + 1, &end, 10);
    if (end == colon + 1 || *end || port > 65535)
        return 0;
    return (uint16_t) port;
}

//  ---------------------------------------------------------------------
//  Send body to the peer whose envelope is in the blob, [u8 size,
//  routing id]... as packed by s_handle_message. Returns 0, or the errno
//  of the send that failed (EINVAL for a blob the server damaged).

static int
s_send_to (zchat_broker_t *self, const uint8_t *peer, size_t peer_size,
           const uint8_t *body, size_t body_size)
{
    if (peer_size == 0)
        return EINVAL;
    size_t pos = 0;
    while (pos < peer_size) {
        size_t size = peer [pos++];
        if (size == 0 || size > peer_size - pos)
            return EINVAL;
        //  Only the first frame can fail: ROUTER_MANDATORY refuses it at
        //  once when the peer is gone (EHOSTUNREACH) or its pipe is full
        //  (EAGAIN). Once it is accepted the rest of the message is too.
        if (zmq_send (self->router_handle, peer + pos, size,
                      ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
            return zmq_errno ();
        pos += size;
    }
    if (zmq_send (self->router_handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1
    ||  zmq_send (self->router_handle, body, body_size, ZMQ_DONTWAIT) == -1)
        return zmq_errno ();
    return 0;
}

//  ---------------------------------------------------------------------
//  Server output: send body to a peer; a failure is logged and dropped.

static void
s_reply (void *arg, const uint8_t *peer, size_t peer_size,
         const uint8_t *body, size_t body_size)
{
    zchat_broker_t *self = (zchat_broker_t *) arg;
    int error = s_send_to (self, peer, peer_size, body, body_size);
    if (error == EINVAL)
        s_limited_log (&self->undeliverable, true, "reply not sent",
                       peer_size? "the server handed back a damaged envelope":
                                  "empty envelope", NULL);
    else
    if (error)
        s_limited_log (&self->undeliverable, false, "reply dropped",
                       zmq_strerror (error), NULL);
}

//  ---------------------------------------------------------------------
//  Server output: send body to a peer and tell whether its connection is
//  still there. The ROUTER hears that a peer's pipe is gone through a
//  command it handles when it is next used, and a send may put its
//  commands off for a moment (libzmq throttles them on the send path);
//  asking for its events handles them now, so that a gone peer is
//  EHOSTUNREACH. A full pipe (EAGAIN) is a peer that is there.

static bool
s_reaches (void *arg, const uint8_t *peer, size_t peer_size,
           const uint8_t *body, size_t body_size)
{
    zchat_broker_t *self = (zchat_broker_t *) arg;
    zsock_events (self->router);
    int error = s_send_to (self, peer, peer_size, body, body_size);
    if (error && error != EHOSTUNREACH)
        s_limited_log (&self->undeliverable, false, "check not sent",
                       zmq_strerror (error), NULL);
    return error != EHOSTUNREACH;
}

//  ---------------------------------------------------------------------
//  Server output: publish body under topic. A PUB never blocks: a
//  subscriber past its high-water mark loses the message and recovers it
//  from history.

static void
s_publish (void *arg, const uint8_t *topic, size_t topic_size,
           const uint8_t *body, size_t body_size)
{
    zchat_broker_t *self = (zchat_broker_t *) arg;
    if (zmq_send (self->pub_handle, topic, topic_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1
    ||  zmq_send (self->pub_handle, body, body_size, ZMQ_DONTWAIT) == -1)
        s_limited_log (&self->undeliverable, true, "publish failed",
                       zmq_strerror (zmq_errno ()), NULL);
}

//  Server output: publish body under topic without a copy. libzmq frees
//  the message, calling release, once it has gone to every subscriber (or
//  at once, if it goes to none).
static void
s_publish_lent (void *arg, const uint8_t *topic, size_t topic_size,
                const uint8_t *body, size_t body_size,
                void (*release) (void *data, void *hint), void *hint)
{
    zchat_broker_t *self = (zchat_broker_t *) arg;
    zmq_msg_t msg;
    if (zmq_msg_init_data (&msg, (void *) body, body_size, release, hint) == -1) {
        s_publish (arg, topic, topic_size, body, body_size);
        release ((void *) body, hint);
        return;
    }
    if (zmq_send (self->pub_handle, topic, topic_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1
    ||  zmq_msg_send (&msg, self->pub_handle, ZMQ_DONTWAIT) == -1) {
        s_limited_log (&self->undeliverable, true, "publish failed",
                       zmq_strerror (zmq_errno ()), NULL);
        zmq_msg_close (&msg);   //  releases it
    }
}

//  ---------------------------------------------------------------------
//  Read the next part of the current multipart message into self->frame.
//  The parts of a message arrive together, so this does not wait.

static int
s_recv_part (zchat_broker_t *self)
{
    return zmq_msg_recv (&self->frame, self->router_handle, 0) == -1? -1: 0;
}

//  Skip the rest of the current multipart message.
static void
s_skip_rest (zchat_broker_t *self)
{
    while (zmq_msg_more (&self->frame))
        if (s_recv_part (self) != 0)
            break;
}

//  ---------------------------------------------------------------------
//  The descriptor of the connection a frame came on, or -1. ZMQ_SRCFD is
//  in zmq.h's "deprecated" section of libzmq 4.3 (no compiler warning
//  comes with it) but in the stable API, and gives the accepted socket's
//  descriptor, the one the ROUTER's monitor names when it closes. Read
//  only for greetings and new connections' probes: the hot path pays a
//  byte compare for it, no call.

static int
s_source_fd (zmq_msg_t *frame)
{
    int fd = zmq_msg_get (frame, ZMQ_SRCFD);
    return fd >= 0? fd: -1;
}

//  ---------------------------------------------------------------------
//  Answer ERROR directly, for a message whose envelope is intact but whose
//  frames are not one body (the server only ever sees single bodies).

static void
s_reply_error (zchat_broker_t *self, size_t peer_size, uint16_t code,
               const char *reason)
{
    uint8_t data [ZCHAT_HEADER_SIZE + 16 + ZCHAT_MAX_REASON];
    zchat_buf_t buf;
    zchat_buf_init (&buf, data, sizeof (data));
    size_t size = zchat_encode_error (&buf, 0, code, 0, reason);
    if (size > 0)
        s_reply (self, self->peer, peer_size, data, size);
}

//  ---------------------------------------------------------------------
//  Handle one inbound message whose first frame is in self->frame: pack
//  the envelope into self->peer, check the frame layout, and hand the
//  body to the server. Anything else is drained and dropped.

static void
s_handle_message (zchat_broker_t *self)
{
    zmq_msg_t *frame = &self->frame;
    const char *problem = NULL;
    size_t peer_size = 0;
    size_t hops = 0;

    //  Routing-id frames up to the empty delimiter: the ROUTER's own id of
    //  the peer first, then one more per relay the message came through.
    while (zmq_msg_size (frame) > 0) {
        size_t size = zmq_msg_size (frame);
        if (hops == ZCHAT_BROKER_MAX_HOPS)
            problem = "too many envelope frames";
        else
        if (size > UINT8_MAX || size + 1 > sizeof (self->peer) - peer_size)
            problem = "envelope too large";
        else
        if (!zmq_msg_more (frame))
            problem = "no empty delimiter frame";
        if (problem)
            goto drop;
        self->peer [peer_size++] = (uint8_t) size;
        memcpy (self->peer + peer_size, zmq_msg_data (frame), size);
        peer_size += size;
        hops++;
        if (s_recv_part (self) != 0) {
            problem = "truncated message";
            goto drop;
        }
    }
    if (hops == 0)
        problem = "no routing id";
    else
    if (!zmq_msg_more (frame)) {
        //  The envelope and an empty frame, nothing else: a DEALER's
        //  ZMQ_PROBE_ROUTER, the first message of each of its connections
        //  (libzchat's from version 6). A relay's descriptor says nothing
        //  of the client behind it.
        const char *user_id = self->curve? zmq_msg_gets (frame, "User-Id"): NULL;
        if (self->curve && (!user_id || !*user_id))
            problem = "no CURVE identity";
        else {
            zchat_server_connected (self->server, self->peer, peer_size,
                                    hops == 1? s_source_fd (frame): -1, user_id,
                                    (uint64_t) zclock_time ());
            return;
        }
    }
    else
    if (s_recv_part (self) != 0)
        problem = "truncated message";
    if (problem)
        goto drop;

    const char *address = zmq_msg_gets (frame, "Peer-Address");
    if (zmq_msg_more (frame)) {
        //  The envelope is intact, so the sender can be told. Log first:
        //  address belongs to the frame that skipping overwrites.
        s_limited_log (&self->dropped, false, "dropped a message",
                       "more than one body frame", address);
        s_skip_rest (self);
        s_reply_error (self, peer_size, ZCHAT_ERR_MALFORMED,
                       "expected exactly one body frame after the delimiter");
        return;
    }
    const char *user_id = NULL;
    if (self->curve) {
        //  Set by our ZAP handler for every admitted peer; without it the
        //  broker would have no trustworthy identity for the sender.
        user_id = zmq_msg_gets (frame, "User-Id");
        if (!user_id || !*user_id) {
            s_limited_log (&self->dropped, false, "dropped a message",
                           "no CURVE identity", address);
            return;
        }
    }
    if (zmq_msg_size (frame) > ZCHAT_MAX_REQUEST) {
        //  Within the transport's slack (ROUTER_MAXMSGSIZE), over the
        //  protocol's limit
        s_limited_log (&self->dropped, false, "refused a message",
                       "body over the request limit", address);
        char reason [64];
        snprintf (reason, sizeof (reason), "request over the limit of %d bytes",
                  ZCHAT_MAX_REQUEST);
        s_reply_error (self, peer_size, ZCHAT_ERR_TOO_LARGE, reason);
        return;
    }
    //  A greeting binds a version 6 session to its connection, which only
    //  a peer with a routing id of the ROUTER's making has: a relay's
    //  descriptor is the relay's
    const uint8_t *body = (const uint8_t *) zmq_msg_data (frame);
    size_t body_size = zmq_msg_size (frame);
    int fd = hops == 1 && body_size > 2 && body [2] == ZCHAT_HELLO? s_source_fd (frame): -1;
    zchat_server_handle (self->server, self->peer, peer_size, fd, user_id, address,
                         body, body_size, (uint64_t) zclock_time ());
    self->handled++;
    return;

drop:
    s_skip_rest (self);
    s_limited_log (&self->dropped, false, "dropped a message", problem,
                   zmq_msg_gets (frame, "Peer-Address"));
}

//  ---------------------------------------------------------------------
//  Drain up to BATCH_MAX messages from the ROUTER, then commit what the
//  server staged: one transaction for the whole batch, and the batch's
//  acknowledgements and publications go out only after it.

static void
s_drain (zchat_broker_t *self)
{
    zchat_server_clock (self->server, (uint64_t) zclock_mono ());
    for (int count = 0; count < BATCH_MAX; count++) {
        if (zmq_msg_recv (&self->frame, self->router_handle, ZMQ_DONTWAIT) == -1) {
            int error = zmq_errno ();
            if (error != EAGAIN && error != EINTR)
                zsys_error ("ROUTER receive failed: %s", zmq_strerror (error));
            break;
        }
        s_handle_message (self);
    }
    //  A steady trickle (a small group, the last commit moments ago): wait
    //  a moment for company, so that one commit carries several messages
    //  rather than each its own four pages of WAL. At 10k msgs/s one-message
    //  commits kept the WAL checkpointer busy and made the loop's writes
    //  wait on the disk now and then for 5-25 ms (bench/README.md); with
    //  the wait they are rare and the broker uses a third less CPU, for
    //  about group_wait_us more latency while a stream is steady. A single
    //  message after a pause goes out at once.
    size_t staged = zchat_server_staged (self->server);
    int64_t now = zclock_usecs ();
    if (self->group_wait_us > 0 && staged > 0 && staged < GROUP_SMALL
    &&  now - self->last_flush_us < GROUP_STEADY_US) {
        struct timespec pause = { 0, (long) self->group_wait_us * 1000L };
        nanosleep (&pause, NULL);
        for (int count = 0; count < BATCH_MAX; count++) {
            if (zmq_msg_recv (&self->frame, self->router_handle, ZMQ_DONTWAIT) == -1)
                break;
            s_handle_message (self);
        }
    }
    if (zchat_server_flush (self->server) < 0)
        s_limited_log (&self->storage, true, "commit failed",
                       "storage refused a batch; its senders got ERROR 500", NULL);
    self->last_flush_us = zclock_usecs ();
}

//  ---------------------------------------------------------------------
//  Tell the server of every connection the ROUTER's monitor saw close.
//  Read at each tick, not from the poller: the poller names one socket
//  per wake-up, the ROUTER first, so under load the monitor would wait;
//  the tick comes every TICK_MS_MAX at most, and a closed connection's
//  sessions are checked ZCHAT_SERVER_CHECK_MS later anyway. Event frames:
//  [u16 event, u32 value (the descriptor)] [endpoint].

static void
s_monitor_drain (zchat_broker_t *self, uint64_t now_ms)
{
    if (!self->monitor)
        return;
    void *handle = zsock_resolve (self->monitor);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    while (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) != -1) {
        uint16_t event = 0;
        uint32_t value = 0;
        bool whole = zmq_msg_size (&frame) >= 6;
        if (whole) {
            memcpy (&event, zmq_msg_data (&frame), 2);
            memcpy (&value, (uint8_t *) zmq_msg_data (&frame) + 2, 4);
        }
        while (zmq_msg_more (&frame))
            if (zmq_msg_recv (&frame, handle, 0) == -1)
                break;
        if (whole && event == ZMQ_EVENT_DISCONNECTED && value <= INT32_MAX)
            zchat_server_closed (self->server, (int) value, now_ms);
    }
    zmq_msg_close (&frame);
}

//  Watch the ROUTER's connections close, before it binds, so that none
//  is missed. The PAIR takes every event: an inproc pipe's limit is the
//  sum of both ends' high-water marks, none if either is 0. It must be
//  none: libzmq 4.3.4 sends a monitor event blocking, from the I/O
//  thread, so a full pipe would stall every connection on that thread
//  (measured: with the default marks, a ROUTER whose monitor was not read
//  stopped taking messages at its 2,000th event; with 0, 3,000 events
//  came through). Returns 0, or -1 with one line in error.
static int
s_monitor_start (zchat_broker_t *self, char *error, size_t error_size)
{
    //  A name of its own each time: a monitor stopped is unbound from its
    //  endpoint only once libzmq's reaper has closed it, after which a new
    //  broker may well be at the same address
    static unsigned monitors = 0;
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://zchat-broker-monitor-%u",
              __atomic_add_fetch (&monitors, 1, __ATOMIC_RELAXED));
    if (zmq_socket_monitor (self->router_handle, endpoint, ZMQ_EVENT_DISCONNECTED)) {
        snprintf (error, error_size, "cannot monitor the ROUTER socket: %s",
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    self->monitoring = true;
    self->monitor = zsock_new (ZMQ_PAIR);
    if (!self->monitor) {
        snprintf (error, error_size, "cannot create the ROUTER's monitor socket");
        return -1;
    }
    zsock_set_rcvhwm (self->monitor, 0);
    if (zsock_connect (self->monitor, "%s", endpoint)) {
        snprintf (error, error_size, "cannot connect the ROUTER's monitor: %s",
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  SIGHUP only sets a flag: the loop reloads at a safe point.

static void
s_hup_handler (int signal_number)
{
    (void) signal_number;
    s_hup_received = 1;
}

//  Reload the allow-list, then end the sessions of keys it no longer
//  holds: ZAP only ever judged their handshakes.
static void
s_reload (zchat_broker_t *self)
{
    if (!self->auth) {
        zsys_info ("SIGHUP: nothing to reload (no allow-list)");
        return;
    }
    int count = zchat_auth_reload (self->auth);
    if (count < 0)
        return;
    zchat_server_clock (self->server, (uint64_t) zclock_mono ());
    size_t ended = zchat_server_revoke (self->server, (uint64_t) zclock_time ());
    zsys_info ("SIGHUP: allow-list reloaded: %d keys; %zu sessions of keys no longer"
               " admitted ended", count, ended);
}

//  The server's question: is this key admitted now?
static bool
s_admits (void *arg, const char *key)
{
    zchat_broker_t *self = (zchat_broker_t *) arg;
    return zchat_auth_admits (self->auth, key);
}

//  libzmq's decoder normally hands out messages that point into its
//  receive buffer, keeping their reference counts in room for about 250
//  of them after the buffer's 8 KiB of data. The room is allocated
//  either way; receiving by copy never writes to it, so it never
//  becomes resident: about 4 kB less per connection (28.6 -> 24.6 kB per
//  idle client, 2,000 clients), and no difference measured on the hot
//  path (1->1 1 KiB durable, 64 B durability off, 4->4 1 KiB; 8
//  interleaved runs each). libzmq reads the context option when a
//  socket is created, so it is set before the broker's sockets; being
//  on czmq's shared context, it holds for every socket the process
//  creates after, clients of an in-process broker's tests included.
//  A libzmq that refuses it (ZCHAT_BROKER_ZERO_COPY_RECV) only costs
//  the memory.
static void
s_receive_by_copy (void *context)
{
    if (zmq_ctx_set (context, ZCHAT_BROKER_ZERO_COPY_RECV, 0) != 0)
        ZCHAT_DEBUG ("libzmq refused ZMQ_ZERO_COPY_RECV: %s",
                     zmq_strerror (zmq_errno ()));
}

//  ---------------------------------------------------------------------
//  Start a broker.

zchat_broker_t *
zchat_broker_new (const zchat_broker_config_t *config,
                  char *error, size_t error_size)
{
    assert (config);
    assert (error && error_size > 0);
    zchat_broker_t *self = (zchat_broker_t *) zmalloc (sizeof (zchat_broker_t));
    assert (self);
    zmq_msg_init (&self->frame);
    zchat_log_set_verbose (config->verbose);

    //  SIGHUP reloads the allow-list; its default action would end the
    //  process. So the handler is in place before anything can make an
    //  operator or a script send one (the ready line, a bound port), not
    //  only once the loop runs. czmq catches SIGINT and SIGTERM, not
    //  SIGHUP. No SA_RESTART: the signal should cut the poll short so the
    //  reload happens at once.
    struct sigaction action;
    memset (&action, 0, sizeof (action));
    action.sa_handler = s_hup_handler;
    sigemptyset (&action.sa_mask);
    if (sigaction (SIGHUP, &action, &self->previous_hup) == 0)
        self->hup_installed = true;

    if (!config->router_endpoint || !config->pub_endpoint || !config->data_dir) {
        snprintf (error, error_size, "endpoints and data directory are required");
        goto failed;
    }
    if (config->max_text == 0 || config->max_text > ZCHAT_MAX_TEXT) {
        snprintf (error, error_size, "max text must be 1..%d bytes", ZCHAT_MAX_TEXT);
        goto failed;
    }
    if (config->timeout_ms < 3 || config->pub_hwm < 0 || config->history_page == 0) {
        snprintf (error, error_size, "invalid session timeout, PUB HWM or page size");
        goto failed;
    }
    self->group_wait_us = config->group_wait_us;
    self->max_text = config->max_text;
    //  libzmq reads a high-water mark of 0 as "no limit": never that.
    int pub_hwm = config->pub_hwm;
    if (pub_hwm == 0) {
        int largest = (int) config->max_text > ZCHAT_SERVER_BATCH_BYTES?
                      (int) config->max_text: ZCHAT_SERVER_BATCH_BYTES;
        pub_hwm = ZCHAT_BROKER_PUB_BYTES / (largest + ZCHAT_BROKER_PUB_OVERHEAD);
        if (pub_hwm > ZCHAT_BROKER_PUB_HWM)
            pub_hwm = ZCHAT_BROKER_PUB_HWM;
    }

    //  The ZAP handler must be up before a CURVE socket binds: a handshake
    //  arriving first would find nobody to ask.
    if (config->cert_path) {
        self->curve = true;
        self->auth = zchat_auth_new (config->cert_path, config->allow_dir,
                                     error, error_size);
        if (!self->auth)
            goto failed;
    }

    self->store = zchat_store_new (config->data_dir, config->fsync, error, error_size);
    if (!self->store)
        goto failed;

    //  With two I/O threads or more, the ROUTER's connections live on the
    //  first and the PUB's on the second: an ACK or a reply is then never
    //  queued behind the writes of one publication to a thousand
    //  subscribers (at 1,000 subscribers ACKs took 0.3-1.4 s with one
    //  thread, 10-50 ms with two). With one thread, both share it.
    bool split_io = zmq_ctx_get (zsys_init (), ZMQ_IO_THREADS) >= 2;
    s_receive_by_copy (zsys_init ());

    //  The ROUTER: every request and reply
    self->router = zsock_new (ZMQ_ROUTER);
    if (!self->router) {
        snprintf (error, error_size, "cannot create the ROUTER socket");
        goto failed;
    }
    self->router_handle = zsock_resolve (self->router);
    if (split_io)
        zsock_set_affinity (self->router, 1);
    //  Version 3's limit for every peer: older clients stay within theirs
    int64_t max_size = ROUTER_MAXMSGSIZE;
    if (zmq_setsockopt (self->router_handle, ZMQ_MAXMSGSIZE,
                        &max_size, sizeof (max_size)) != 0) {
        snprintf (error, error_size, "cannot set ZMQ_MAXMSGSIZE: %s",
                  zmq_strerror (zmq_errno ()));
        goto failed;
    }
    if (SET_OPTION (self->router, "ROUTER", ZMQ_ROUTER_MANDATORY, 1)
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_SNDHWM, s_router_sndhwm (config->max_text))
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_RCVHWM, ROUTER_RCVHWM)
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_BACKLOG, LISTEN_BACKLOG)
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_TCP_KEEPALIVE, 1)
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE_S)
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_TCP_KEEPALIVE_INTVL, KEEPALIVE_INTVL_S)
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_TCP_KEEPALIVE_CNT, KEEPALIVE_CNT)
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_TCP_MAXRT, ROUTER_MAXRT_MS)
    ||  SET_OPTION (self->router, "ROUTER", ZMQ_LINGER, ROUTER_LINGER_MS)
    ||  s_set_common (self->router, "ROUTER", config->router_endpoint, error, error_size)
    ||  s_monitor_start (self, error, error_size))
        goto failed;

    //  The PUB: room traffic
    self->pub = zsock_new (ZMQ_PUB);
    if (!self->pub) {
        snprintf (error, error_size, "cannot create the PUB socket");
        goto failed;
    }
    self->pub_handle = zsock_resolve (self->pub);
    if (split_io)
        zsock_set_affinity (self->pub, 2);
    int64_t pub_max_size = PUB_MAXMSGSIZE;
    if (zmq_setsockopt (self->pub_handle, ZMQ_MAXMSGSIZE,
                        &pub_max_size, sizeof (pub_max_size)) != 0) {
        snprintf (error, error_size, "cannot set ZMQ_MAXMSGSIZE: %s",
                  zmq_strerror (zmq_errno ()));
        goto failed;
    }
    if (SET_OPTION (self->pub, "PUB", ZMQ_SNDHWM, pub_hwm)
    ||  SET_OPTION (self->pub, "PUB", ZMQ_BACKLOG, LISTEN_BACKLOG)
    ||  SET_OPTION (self->pub, "PUB", ZMQ_LINGER, 0)
    ||  s_set_common (self->pub, "PUB", config->pub_endpoint, error, error_size))
        goto failed;

    if (self->auth
    &&  (zchat_auth_secure (self->auth, self->router) != 0
    ||   zchat_auth_secure (self->auth, self->pub) != 0)) {
        snprintf (error, error_size, "cannot turn CURVE on: %s",
                  zmq_strerror (zmq_errno ()));
        goto failed;
    }
    self->router_endpoint = s_bind (self->router, "ROUTER", config->router_endpoint,
                                    error, error_size);
    if (!self->router_endpoint)
        goto failed;
    self->pub_endpoint = s_bind (self->pub, "PUB", config->pub_endpoint,
                                 error, error_size);
    if (!self->pub_endpoint)
        goto failed;

    zchat_server_config_t server_config = {
        .pub_endpoint = self->pub_endpoint,
        .pub_port = s_endpoint_port (self->pub_endpoint),
        .heartbeat_ms = config->timeout_ms / 3,
        .timeout_ms = config->timeout_ms,
        .max_text = config->max_text,
        .max_rooms = config->max_rooms,
        .max_sessions_per_address = config->max_sessions_per_address,
        .max_sessions = config->max_sessions,
        .history_page = config->history_page,
        .rate_limit = config->rate_limit,
        .rate_burst = config->rate_burst,
        .fair_share = config->fair_share,
        .query_rate = config->query_rate,
        .query_burst = config->query_burst,
        .retain_messages = config->retain_messages,
        .retain_ms = config->retain_ms,
        .curve = self->curve,
        .max_nicks_per_key = config->max_nicks_per_key,
        .admits = self->auth? s_admits: NULL,
        .admits_arg = self,
        .ack_before_commit = !config->durable,
    };
    zchat_server_output_t output = { self, s_reply, s_publish, s_publish_lent, s_reaches };
    self->server = zchat_server_new (&server_config, self->store, output);
    if (!self->server) {
        snprintf (error, error_size, "cannot start the protocol core");
        goto failed;
    }
    self->poller = zpoller_new (self->router, NULL);
    assert (self->poller);

    //  Periodic work runs at least every heartbeat/2, as the core needs.
    self->tick_ms = (int) (server_config.heartbeat_ms / 2);
    if (self->tick_ms > TICK_MS_MAX)
        self->tick_ms = TICK_MS_MAX;
    if (self->tick_ms < TICK_MS_MIN)
        self->tick_ms = TICK_MS_MIN;
    self->next_tick = zclock_mono () + self->tick_ms;

    //  Logged only once start-up has succeeded, so that a failure to start
    //  is the one line after the command.
    s_raise_fd_limit ();
    if (self->auth)
        zsys_info ("CURVE on: broker public key %s (%s)",
                   zchat_auth_public_key (self->auth),
                   config->allow_dir? "allow-list": "any key admitted");
    else
        zsys_warning ("no --cert: traffic is unauthenticated and unencrypted; "
                      "anyone who can reach the ports can read every room");
    //  Which store a broker serves is worth a line: the default depends on
    //  the environment it was started in ($XDG_DATA_HOME, $HOME)
    zsys_info ("store %s/%s (durable %s%s)", config->data_dir, ZCHAT_STORE_FILE,
               config->durable? "on": "off", config->fsync? ", fsync": "");
    zsys_info ("ready router=%s pub=%s", self->router_endpoint, self->pub_endpoint);
    return self;

failed:
    zchat_broker_destroy (&self);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Commit everything staged, then close down in dependency order: the
//  server sends its last replies through the sockets, so it goes first;
//  the ZAP handler serves the sockets, so it goes last.

void
zchat_broker_destroy (zchat_broker_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        zchat_broker_t *self = *self_p;
        if (self->server) {
            if (zchat_server_flush (self->server) < 0)
                zsys_error ("the last batch could not be stored");
            zchat_server_destroy (&self->server);
            zsys_info ("served %" PRIu64 " requests; dropped %" PRIu64
                       " malformed; %" PRIu64 " replies undeliverable",
                       self->handled, self->dropped.total,
                       self->undeliverable.total);
        }
        zchat_store_destroy (&self->store);
        zpoller_destroy (&self->poller);
        zmq_msg_close (&self->frame);
        if (self->monitoring)
            zmq_socket_monitor (self->router_handle, NULL, 0);
        zsock_destroy (&self->monitor);
        zsock_destroy (&self->router);
        zsock_destroy (&self->pub);
        zchat_auth_destroy (&self->auth);
        zstr_free (&self->router_endpoint);
        zstr_free (&self->pub_endpoint);
        if (self->hup_installed)
            sigaction (SIGHUP, &self->previous_hup, NULL);
        free (self);
        *self_p = NULL;
    }
}

//  ---------------------------------------------------------------------
//  One turn of the loop.

int
zchat_broker_poll (zchat_broker_t *self, int timeout_ms)
{
    assert (self);
    if (s_hup_received) {
        s_hup_received = 0;
        s_reload (self);
    }
    //  Sleep no longer than until the next tick is due.
    int64_t now = zclock_mono ();
    int64_t until_tick = self->next_tick > now? self->next_tick - now: 0;
    int wait = timeout_ms;
    if (wait < 0 || wait > until_tick)
        wait = (int) until_tick;

    int rc = 0;
    void *which = zpoller_wait (self->poller, wait);
    if (which == self->router)
        s_drain (self);
    else
    if (zpoller_terminated (self->poller) && zmq_errno () != EINTR)
        rc = -1;                    //  the context is gone

    now = zclock_mono ();
    if (now >= self->next_tick) {
        zchat_server_clock (self->server, (uint64_t) now);
        s_monitor_drain (self, (uint64_t) zclock_time ());
        zchat_server_tick (self->server, (uint64_t) zclock_time ());
        self->next_tick = now + self->tick_ms;
    }
    //  czmq's handler sets this on SIGINT and SIGTERM. Other signals
    //  (SIGHUP) also end the poll early, with EINTR, and are not a reason
    //  to stop.
    if (zsys_interrupted)
        rc = -1;
    return rc;
}

//  ---------------------------------------------------------------------
//  Serve until SIGINT or SIGTERM.

int
zchat_broker_run (zchat_broker_t *self)
{
    assert (self);
    int rc = 0;
    while (!zsys_interrupted) {
        if (zchat_broker_poll (self, -1) != 0) {
            if (!zsys_interrupted) {
                zsys_error ("event loop failed: %s", zmq_strerror (zmq_errno ()));
                rc = -1;
            }
            break;
        }
    }
    return rc;
}

//  ---------------------------------------------------------------------
//  Release a nick's key binding (operator command).

int
zchat_broker_release_nick (const char *data_dir, const char *nick,
                           char *message, size_t message_size)
{
    assert (data_dir && nick && message && message_size > 0);
    //  Opening would create an empty store: a mistyped directory must not
    //  turn into one.
    char *path = zsys_sprintf ("%s/%s", data_dir, ZCHAT_STORE_FILE);
    assert (path);
    bool exists = access (path, F_OK) == 0;
    zstr_free (&path);
    if (!exists) {
        snprintf (message, message_size, "no message store in %s", data_dir);
        return -1;
    }
    char error [512];
    zchat_store_t *store = zchat_store_new (data_dir, false, error, sizeof (error));
    if (!store) {
        snprintf (message, message_size, "%s", error);
        return -1;
    }
    int rc = -1;
    char key [Z85_KEY_SIZE + 1];
    int owned = zchat_store_nick_owner (store, nick, key);
    if (owned < 0)
        snprintf (message, message_size,
                  "could not read the owner of nick %s in %s (storage error)",
                  nick, data_dir);
    else
    if (owned == 0)
        snprintf (message, message_size, "nick %s is not bound to any key in %s",
                  nick, data_dir);
    else
    if (zchat_store_nick_release (store, nick) != 0)
        snprintf (message, message_size, "could not release nick %s (storage error)", nick);
    else {
        snprintf (message, message_size, "released nick %s (it was bound to key %s)",
                  nick, key);
        rc = 0;
    }
    zchat_store_destroy (&store);
    return rc;
}


//  ---------------------------------------------------------------------
//  The endpoints as bound.

const char *
zchat_broker_router_endpoint (zchat_broker_t *self)
{
    assert (self);
    return self->router_endpoint;
}

const char *
zchat_broker_pub_endpoint (zchat_broker_t *self)
{
    assert (self);
    return self->pub_endpoint;
}

//  ---------------------------------------------------------------------
//  Self test helpers

//  Turn the broker until dealer has a message, at most ~2 s. Returns the
//  body (the caller's), or NULL. Frames before the body are checked to be
//  expected_prefix frames and an empty delimiter.
static zframe_t *
s_test_reply (zchat_broker_t *broker, zsock_t *dealer, size_t prefix_frames)
{
    zpoller_t *poller = zpoller_new (dealer, NULL);
    assert (poller);
    zframe_t *body = NULL;
    for (int turn = 0; turn < 200 && !body; turn++) {
        zchat_broker_poll (broker, 10);
        if (zpoller_wait (poller, 0) == dealer) {
            zmsg_t *msg = zmsg_recv (dealer);
            assert (msg);
            assert (zmsg_size (msg) == prefix_frames + 2);
            for (size_t i = 0; i < prefix_frames; i++) {
                zframe_t *frame = zmsg_pop (msg);
                zframe_destroy (&frame);
            }
            zframe_t *delimiter = zmsg_pop (msg);
            assert (zframe_size (delimiter) == 0);
            zframe_destroy (&delimiter);
            body = zmsg_pop (msg);
            zmsg_destroy (&msg);
        }
    }
    zpoller_destroy (&poller);
    return body;
}

//  Send [frames...] then body; frames are strings, "" is a delimiter.
static void
s_test_send (zsock_t *dealer, const char *first, const char *second,
             const uint8_t *body, size_t body_size)
{
    if (first)
        zstr_sendm (dealer, first);
    if (second)
        zstr_sendm (dealer, second);
    int rc = zmq_send (zsock_resolve (dealer), body, body_size, 0);
    assert (rc == (int) body_size);
}

//  Decode a reply of the given type and let its frame go: msg's copied
//  fields stay good, its items and texts, which point into the frame, not
//  (the broker receives by copy, and so does every socket of this process
//  made after it: the frame's bytes are freed with it).
static void
s_test_expect (zframe_t **frame_p, zchat_msg_t *msg, int type)
{
    assert (*frame_p);
    int rc = zchat_msg_decode (msg, zframe_data (*frame_p), zframe_size (*frame_p));
    assert (rc == ZCHAT_DECODE_OK);
    assert (msg->type == type);
    zframe_destroy (frame_p);
}

static void
s_test_remove_dir (const char *dir)
{
    zdir_t *tree = zdir_new (dir, NULL);
    if (tree) {
        zdir_remove (tree, true);
        zdir_destroy (&tree);
    }
}

//  Turn the broker for up to ms, or until it holds sessions sessions;
//  returns the time that took.
static int64_t
s_test_until_sessions (zchat_broker_t *broker, size_t sessions, int64_t ms)
{
    int64_t start = zclock_mono ();
    while (zchat_server_sessions (broker->server) != sessions
    &&     zclock_mono () - start < ms)
        zchat_broker_poll (broker, 10);
    return zclock_mono () - start;
}

//  A DEALER connected to the broker that greeted as nick with version.
static zsock_t *
s_test_greeted (zchat_broker_t *broker, const char *nick, uint8_t version,
                uint8_t expect_version)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    int rc = zsock_connect (dealer, "%s", zchat_broker_router_endpoint (broker));
    assert (rc == 0);
    uint8_t data [256];
    zchat_buf_t buf;
    zchat_buf_init (&buf, data, sizeof (data));
    size_t size = zchat_encode_hello (&buf, 1, version, nick, "");
    s_test_send (dealer, "", NULL, data, size);
    zframe_t *body = s_test_reply (broker, dealer, 0);
    zchat_msg_t msg;
    s_test_expect (&body, &msg, ZCHAT_WELCOME);
    assert (msg.version == expect_version);
    return dealer;
}

//  Connections (version 6), with real sockets: a session bound to its
//  connection outlives its silence where a version 5 one does not; a new
//  connection's probe is answered 440; a closed connection's session
//  ends a check and a timeout later; a connection given a closed one's
//  descriptor keeps its session.
static void
s_test_connections (zchat_broker_config_t *config, bool verbose)
{
    if (verbose)
        printf ("   connections\n");
    config->max_text = ZCHAT_BROKER_MAX_TEXT;
    config->timeout_ms = 300;
    char error [256];
    zchat_broker_t *broker = zchat_broker_new (config, error, sizeof (error));
    assert (broker);
    zsock_t *kept = s_test_greeted (broker, "kept", ZCHAT_VERSION, 6);
    zsock_t *old = s_test_greeted (broker, "old", 5, 5);
    assert (zchat_server_sessions (broker->server) == 2);
    //  Four timeouts of silence: the old one expired, the bound one not
    s_test_until_sessions (broker, 0, 4 * 300);
    assert (zchat_server_sessions (broker->server) == 1);

    //  A DEALER that announces its connections, as libzchat's does
    zsock_t *prober = zsock_new (ZMQ_DEALER);
    assert (prober);
    zsock_set_probe_router (prober, 1);
    int rc = zsock_connect (prober, "%s", zchat_broker_router_endpoint (broker));
    assert (rc == 0);
    zsock_events (prober);          //  takes its connection in, sending the probe
    zframe_t *body = s_test_reply (broker, prober, 0);
    zchat_msg_t msg;
    s_test_expect (&body, &msg, ZCHAT_ERROR);
    assert (msg.code == ZCHAT_ERR_SESSION && msg.id == 0);
    zsock_destroy (&prober);

    //  The bound one's connection closes: it goes a check and a timeout
    //  later, not sooner
    zsock_destroy (&kept);
    int64_t took = s_test_until_sessions (broker, 0, ZCHAT_SERVER_CHECK_MS + 3000);
    assert (zchat_server_sessions (broker->server) == 0);
    assert (took >= ZCHAT_SERVER_CHECK_MS + 300 - TICK_MS_MAX);
    if (verbose)
        printf ("   a closed connection's session ended after %" PRId64 " ms\n", took);

    //  One closes and the next connection very likely gets its descriptor
    //  (the kernel's lowest free one), greeting before the close is
    //  heard: the first goes, the second stays, reached by the check
    zsock_t *first = s_test_greeted (broker, "first", ZCHAT_VERSION, 6);
    zsock_destroy (&first);
    zsock_t *second = s_test_greeted (broker, "second", ZCHAT_VERSION, 6);
    s_test_until_sessions (broker, 1, ZCHAT_SERVER_CHECK_MS + 3000);
    assert (zchat_server_sessions (broker->server) == 1);
    s_test_until_sessions (broker, 0, 1000);
    assert (zchat_server_sessions (broker->server) == 1);
    uint8_t data [64];
    zchat_buf_t buf;
    zchat_buf_init (&buf, data, sizeof (data));
    size_t size = zchat_encode_ping (&buf, 7);
    s_test_send (second, "", NULL, data, size);
    //  The check may have reached it first: a PONG of id 0
    do {
        body = s_test_reply (broker, second, 0);
        s_test_expect (&body, &msg, ZCHAT_PONG);
    } while (msg.id == 0);
    assert (msg.id == 7);

    zsock_destroy (&second);
    zsock_destroy (&old);
    zchat_broker_destroy (&broker);
}

void
zchat_broker_test (bool verbose)
{
    printf (" * zchat_broker: ");
    if (verbose)
        printf ("\n");
    char *data_dir = zsys_sprintf ("/tmp/zchat_broker_test.%d", (int) getpid ());
    s_test_remove_dir (data_dir);

    zchat_broker_config_t config;
    zchat_broker_config_defaults (&config);
    config.router_endpoint = "tcp://127.0.0.1:*";
    config.pub_endpoint = "tcp://127.0.0.1:*";
    config.data_dir = data_dir;
    config.verbose = verbose;
    char error [256];
    struct sigaction hup_before;
    sigaction (SIGHUP, NULL, &hup_before);

    //  A port in use is refused with a reason
    zsock_t *squatter = zsock_new (ZMQ_PUB);
    assert (squatter);
    int port = zsock_bind (squatter, "tcp://127.0.0.1:*");
    assert (port > 0);
    char *taken = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    config.pub_endpoint = taken;
    zchat_broker_t *broker = zchat_broker_new (&config, error, sizeof (error));
    assert (broker == NULL);
    assert (strstr (error, "cannot bind PUB"));
    zsock_destroy (&squatter);
    zstr_free (&taken);
    config.pub_endpoint = "tcp://127.0.0.1:*";

    broker = zchat_broker_new (&config, error, sizeof (error));
    assert (broker);
    const char *router_endpoint = zchat_broker_router_endpoint (broker);
    const char *pub_endpoint = zchat_broker_pub_endpoint (broker);
    assert (strncmp (router_endpoint, "tcp://127.0.0.1:", 16) == 0);
    assert (s_endpoint_port (router_endpoint) > 0);
    assert (s_endpoint_port (pub_endpoint) > 0);
    assert (zsock_sndhwm (broker->pub) == ZCHAT_BROKER_PUB_BYTES
            / (ZCHAT_SERVER_BATCH_BYTES + ZCHAT_BROKER_PUB_OVERHEAD));
    //  Room for the answers to a SAYS of the most items, twice
    assert (zsock_sndhwm (broker->router) == 2 * ZCHAT_MAX_ITEMS);

    //  A SIGHUP as soon as the broker exists, before its loop ever ran,
    //  is caught (its default action would end this process) and handled
    //  by the next turn of the loop
    int raised = raise (SIGHUP);
    assert (raised == 0);
    assert (s_hup_received == 1);
    zchat_broker_poll (broker, 0);
    assert (s_hup_received == 0);

    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    int rc = zsock_connect (dealer, "%s", router_endpoint);
    assert (rc == 0);
    zsock_t *sub = zsock_new (ZMQ_SUB);
    assert (sub);
    rc = zsock_connect (sub, "%s", pub_endpoint);
    assert (rc == 0);
    zsock_set_subscribe (sub, "test:");

    uint8_t data [512];
    zchat_buf_t buf;
    zchat_buf_init (&buf, data, sizeof (data));
    zchat_msg_t msg;

    //  HELLO: WELCOME tells the real PUB port
    size_t size = zchat_encode_hello (&buf, 1, ZCHAT_VERSION, "alice", "");
    s_test_send (dealer, "", NULL, data, size);
    zframe_t *body = s_test_reply (broker, dealer, 0);
    s_test_expect (&body, &msg, ZCHAT_WELCOME);
    assert (msg.id == 1);
    assert (msg.pub_port == s_endpoint_port (pub_endpoint));
    assert (streq (msg.endpoint, pub_endpoint));
    assert (msg.max_text == ZCHAT_BROKER_MAX_TEXT);

    //  Bad envelopes: no delimiter and no body are dropped unanswered;
    //  two bodies get ERROR 400; the session survives all of them
    size = zchat_encode_ping (&buf, 2);
    s_test_send (dealer, NULL, NULL, data, size);
    s_test_send (dealer, NULL, NULL, (const uint8_t *) "", 0);
    s_test_send (dealer, "", "two", data, size);
    body = s_test_reply (broker, dealer, 0);
    s_test_expect (&body, &msg, ZCHAT_ERROR);
    assert (msg.code == ZCHAT_ERR_MALFORMED);
    assert (msg.id == 0);

    //  JOIN, SAY: ACK after the commit, MESSAGE on the room's topic
    size = zchat_encode_join (&buf, 3, "test");
    s_test_send (dealer, "", NULL, data, size);
    body = s_test_reply (broker, dealer, 0);
    s_test_expect (&body, &msg, ZCHAT_JOINED);
    zclock_sleep (100);             //  let the subscription arrive
    size = zchat_encode_say (&buf, 4, "test", ZCHAT_KIND_TEXT, "hi", 2);
    s_test_send (dealer, "", NULL, data, size);
    body = s_test_reply (broker, dealer, 0);
    s_test_expect (&body, &msg, ZCHAT_ACK);
    assert (msg.id == 4);
    assert (msg.seq >= 1);
    uint64_t seq = msg.seq;
    zpoller_t *poller = zpoller_new (sub, NULL);
    assert (poller);
    body = NULL;
    while (!body && zpoller_wait (poller, 1000) == sub) {
        zmsg_t *published = zmsg_recv (sub);
        assert (published && zmsg_size (published) == 2);
        char *topic = zmsg_popstr (published);
        assert (topic && streq (topic, "test:"));
        zstr_free (&topic);
        zframe_t *frame = zmsg_pop (published);
        zmsg_destroy (&published);
        if (zchat_msg_decode (&msg, zframe_data (frame), zframe_size (frame)) == 0
        &&  msg.type == ZCHAT_MESSAGE)
            body = frame;
        else
            zframe_destroy (&frame);
    }
    zpoller_destroy (&poller);
    s_test_expect (&body, &msg, ZCHAT_MESSAGE);
    assert (msg.seq == seq);
    assert (streq (msg.nick, "alice"));

    //  A relayed message (one more routing-id frame before the delimiter)
    //  is answered through the same envelope
    size = zchat_encode_hello (&buf, 5, ZCHAT_VERSION, "bob", "");
    s_test_send (dealer, "relay-hop", "", data, size);
    body = s_test_reply (broker, dealer, 1);
    s_test_expect (&body, &msg, ZCHAT_WELCOME);
    assert (msg.id == 5);
    assert (streq (msg.nick, "bob"));

    //  A SAYS up to the version 3 request limit is taken whole, far over
    //  max_text + 4 KiB: 62 texts of 1,000 bytes, acknowledged in one
    //  ACKRUNS of one run (it goes as alice's, who greeted with version 4 or
    //  later)
    uint8_t *says_data = (uint8_t *) zmalloc (ZCHAT_MAX_REQUEST);
    char *text = (char *) zmalloc (1000);
    assert (says_data && text);
    memset (text, 't', 1000);
    zchat_buf_t says;
    zchat_buf_init (&says, says_data, ZCHAT_MAX_REQUEST);
    size_t says_size = zchat_encode_says_begin (&says);
    for (uint64_t item = 0; item < 62; item++)
        says_size = zchat_encode_says_add (&says, 100 + item, "test", ZCHAT_KIND_TEXT,
                                           text, 1000);
    assert (says_size > 62 * 1000 && says_size <= ZCHAT_MAX_REQUEST);
    assert (says_size > ZCHAT_BROKER_MAX_TEXT + ZCHAT_REQUEST_OVERHEAD);
    s_test_send (dealer, "", NULL, says_data, says_size);
    body = s_test_reply (broker, dealer, 0);
    //  Its items are read from the frame: decoded here, the frame kept
    //  until then (s_test_expect lets it go)
    assert (body && zchat_msg_decode (&msg, zframe_data (body), zframe_size (body))
                    == ZCHAT_DECODE_OK);
    assert (msg.type == ZCHAT_ACKRUNS);
    size_t cursor = 0;
    zchat_item_t run;
    assert (msg.item_count == 1 && zchat_msg_next_item (&msg, &cursor, &run));
    assert (run.id == 100 && run.count == 62);
    zframe_destroy (&body);
    //  A frame of exactly the limit is read (and refused as malformed); one
    //  over it, within what the transport may add, is refused as too large
    free (says_data);
    says_data = (uint8_t *) zmalloc (ROUTER_MAXMSGSIZE);
    assert (says_data);
    s_test_send (dealer, "", NULL, says_data, ZCHAT_MAX_REQUEST);
    body = s_test_reply (broker, dealer, 0);
    s_test_expect (&body, &msg, ZCHAT_ERROR);
    assert (msg.code == ZCHAT_ERR_MALFORMED);
    s_test_send (dealer, "", NULL, says_data, ROUTER_MAXMSGSIZE);
    body = s_test_reply (broker, dealer, 0);
    s_test_expect (&body, &msg, ZCHAT_ERROR);
    assert (msg.code == ZCHAT_ERR_TOO_LARGE);
    free (text);
    free (says_data);

    //  An oversize frame disconnects only its sender
    zsock_t *big = zsock_new (ZMQ_DEALER);
    assert (big);
    rc = zsock_connect (big, "%s", router_endpoint);
    assert (rc == 0);
    size_t big_size = ROUTER_MAXMSGSIZE + 1;
    uint8_t *big_data = (uint8_t *) zmalloc (big_size);
    assert (big_data);
    s_test_send (big, "", NULL, big_data, big_size);
    free (big_data);
    for (int turn = 0; turn < 20; turn++)
        zchat_broker_poll (broker, 10);
    size = zchat_encode_ping (&buf, 6);
    s_test_send (dealer, "", NULL, data, size);
    body = s_test_reply (broker, dealer, 0);
    s_test_expect (&body, &msg, ZCHAT_PONG);
    assert (msg.id == 6);
    zsock_destroy (&big);

    zsock_destroy (&sub);
    zsock_destroy (&dealer);
    zchat_broker_destroy (&broker);
    assert (broker == NULL);
    zchat_broker_destroy (&broker);
    struct sigaction current;
    sigaction (SIGHUP, NULL, &current);
    assert (current.sa_handler == hup_before.sa_handler);       //  put back

    //  Long texts: a smaller PUB high-water mark, from the byte budget
    config.max_text = ZCHAT_MAX_TEXT;
    broker = zchat_broker_new (&config, error, sizeof (error));
    assert (broker);
    assert (zsock_sndhwm (broker->pub)
            == ZCHAT_BROKER_PUB_BYTES / (ZCHAT_MAX_TEXT + ZCHAT_BROKER_PUB_OVERHEAD));
    //  and a smaller ROUTER one, so that a peer that reads its direct
    //  messages slowly holds about 128 MiB at most (not 540), never fewer
    //  than ROUTER_SNDHWM_MIN replies
    assert (zsock_sndhwm (broker->router) == ROUTER_SNDHWM_MIN);
    assert ((int64_t) zsock_sndhwm (broker->router) * (ZCHAT_MAX_TEXT + ZCHAT_BROKER_PUB_OVERHEAD)
            <= 2 * ROUTER_SND_BYTES + 2 * 1024 * 1024);
    zchat_broker_destroy (&broker);
    config.max_text = 16384;
    broker = zchat_broker_new (&config, error, sizeof (error));
    assert (broker);
    assert (zsock_sndhwm (broker->router) == ROUTER_SND_BYTES / (16384 + ZCHAT_BROKER_PUB_OVERHEAD));
    zchat_broker_destroy (&broker);
    config.max_text = ZCHAT_MAX_TEXT;

    s_test_connections (&config, verbose);
    s_test_remove_dir (data_dir);
    zstr_free (&data_dir);
    printf ("OK\n");
}
