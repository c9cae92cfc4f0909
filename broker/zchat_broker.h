//  zchat_broker — the broker process around the socket-free core: the
//  ROUTER and PUB sockets, CURVE set-up, and the event loop that feeds
//  zchat_server.
//
//  The loop is the hot path. It wakes on the ROUTER, then drains it with
//  non-blocking zmq_msg_t receives in bounded batches: no per-message poll
//  call and no per-message allocation. Each message's envelope (the
//  routing-id frames up to the empty delimiter, one per relay hop) is
//  packed into the opaque peer blob the server keys sessions by. After
//  each batch the server commits what it staged in one transaction and
//  only then sends the batch's acknowledgements and publications.

#ifndef ZCHAT_BROKER_H_INCLUDED
#define ZCHAT_BROKER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Defaults of the command line (CONTRACTS.md)
#define ZCHAT_BROKER_ROUTER         "tcp://*:5555"
#define ZCHAT_BROKER_PUB            "tcp://*:5556"
#define ZCHAT_BROKER_TIMEOUT_MS     10000
#define ZCHAT_BROKER_MAX_TEXT       4096
#define ZCHAT_BROKER_HISTORY_PAGE   500
//  PUB high-water mark per subscriber, in publications: at most this many,
//  and fewer as the largest publication (a batch of ZCHAT_SERVER_BATCH_BYTES,
//  or a message of max_text) requires, so that one subscriber that stops
//  reading holds at most about ZCHAT_BROKER_PUB_BYTES of the broker's
//  memory. One that falls behind recovers what it lost from history.
#define ZCHAT_BROKER_PUB_HWM        10000
#define ZCHAT_BROKER_PUB_BYTES      (48 * 1024 * 1024)
#define ZCHAT_BROKER_PUB_OVERHEAD   256     //  per message beyond its text
#define ZCHAT_BROKER_MAX_ROOMS      100
//  Sessions from one address, and in all. One TCP connection can carry
//  many sessions (relay hops in its envelopes), so these bound what one
//  peer can make the broker hold; 50 clients on one machine fit easily.
#define ZCHAT_BROKER_MAX_PER_ADDRESS 1000
#define ZCHAT_BROKER_MAX_SESSIONS   100000
//  Bytes of history pages, member and room lists and topics one session
//  may be sent: KiB a second, and bursts of KiB. A client catching up on
//  16 MiB of history gets it at once; a peer that asks and never reads
//  parks at most that, then 1 MiB a second, in the broker, and all the
//  sessions of one address four times that (ZCHAT_QUERY_SHARE).
#define ZCHAT_BROKER_QUERY_RATE     1024
//  libzmq's context option ZMQ_ZERO_COPY_RECV, which the broker sets to 0
//  (receiving by copy: zchat_broker.c) and so does the bench's floor. Its
//  number is in zmq.h's draft section, which Debian's libzmq 4.3.4 does
//  not declare but takes all the same.
#define ZCHAT_BROKER_ZERO_COPY_RECV 10
#define ZCHAT_BROKER_FAIR_SHARE     1000
#define ZCHAT_BROKER_GROUP_WAIT_US  200
#define ZCHAT_BROKER_QUERY_BURST    16384
//  Nicks one CURVE key may bind (bindings last until released).
#define ZCHAT_BROKER_MAX_NICKS_PER_KEY 10

//  Most routing-id frames an envelope may hold (one per relay hop).
#define ZCHAT_BROKER_MAX_HOPS       8
//  Largest peer blob (zchat_server.h's limit).
#define ZCHAT_BROKER_MAX_PEER       1024

typedef struct _zchat_broker_t zchat_broker_t;

typedef struct {
    const char *router_endpoint;    //  e.g. tcp://*:5555; port * = any free
    const char *pub_endpoint;
    const char *data_dir;           //  the store's directory
    bool     fsync;                 //  synchronous=FULL
    bool     durable;               //  ACK a SAY only once committed (default);
                                    //  false: ACK and publish at once
    bool     verbose;               //  debug logging
    uint32_t timeout_ms;            //  session timeout; heartbeat is 1/3
    uint64_t retain_messages;       //  per room, 0 = unlimited
    uint64_t retain_ms;             //  0 = unlimited
    int      pub_hwm;               //  PUB send high-water mark, 1 or more;
                                    //  0 = derived from max_text (default)
    uint32_t max_text;              //  1..ZCHAT_MAX_TEXT
    uint32_t max_rooms;             //  rooms per session, 1..ZCHAT_MAX_ITEMS
    uint32_t max_sessions_per_address;  //  0 = unlimited
    uint32_t max_sessions;          //  in all, 0 = unlimited
    uint32_t max_nicks_per_key;     //  CURVE nick bindings per key
    uint32_t history_page;
    uint32_t rate_limit;            //  SAY/DM per second (and as many other
                                    //  publishing commands), 0 = off
    uint32_t rate_burst;
    uint32_t fair_share;            //  see zchat_server_config_t; 0 = off
    uint32_t group_wait_us;         //  a small group in a steady stream waits
                                    //  this long for company; 0 = never
    uint32_t query_rate;            //  KiB/s of HISTORY/WHO/ROOMS replies,
    uint32_t query_burst;           //  and bursts of KiB (0 = off)
    const char *cert_path;          //  broker's secret certificate; NULL = no CURVE
    const char *allow_dir;          //  with cert_path: admitted keys; NULL = any
} zchat_broker_config_t;

//  Fill config with the defaults (endpoints, timeout, limits); data_dir
//  stays NULL.
void
    zchat_broker_config_defaults (zchat_broker_config_t *config);

//  Start a broker: raise the fd limit, open the store, set up CURVE, bind
//  both sockets and log the `ready router=... pub=...` line. config is
//  copied. On failure returns NULL and writes one line into error (e.g.
//  "cannot bind ROUTER to tcp://*:5555: Address already in use").
zchat_broker_t *
    zchat_broker_new (const zchat_broker_config_t *config,
                      char *error, size_t error_size);

//  Commit everything staged, then close the server, the store and the
//  sockets; nulls *self_p. Safe on NULL.
void
    zchat_broker_destroy (zchat_broker_t **self_p);

//  Serve until SIGINT or SIGTERM (czmq's handler sets zsys_interrupted).
//  SIGHUP reloads the CURVE allow-list. Returns 0, or -1 if the loop
//  failed (the context went away).
int
    zchat_broker_run (zchat_broker_t *self);

//  One turn of the loop: wait up to timeout_ms for requests, handle a
//  bounded batch, commit it, and run periodic work when due. Returns 0, or
//  -1 if interrupted. For tests that drive a broker in their own thread.
int
    zchat_broker_poll (zchat_broker_t *self, int timeout_ms);

//  The endpoints as bound (wildcard ports resolved); borrowed.
const char *
    zchat_broker_router_endpoint (zchat_broker_t *self);
const char *
    zchat_broker_pub_endpoint (zchat_broker_t *self);

//  The operator's --release-nick: open the store in data_dir (refused while
//  a broker runs on it: the directory lock) and unbind nick from the CURVE
//  key that owns it, so that another key may claim it. Returns 0 with one
//  line for the operator in message, or -1 with the reason (no store in
//  data_dir, store in use, nick not bound, storage error).
int
    zchat_broker_release_nick (const char *data_dir, const char *nick,
                               char *message, size_t message_size);

//  Self test; asserts on failure.
void
    zchat_broker_test (bool verbose);

#endif
