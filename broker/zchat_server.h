//  zchat_server — the broker's protocol logic, without sockets.
//
//  The event loop (zchat_broker) hands each inbound body here together
//  with the peer's envelope; the server answers through two callbacks,
//  reply and publish. Because nothing here touches a socket, tests and the
//  fuzzer drive the whole protocol with plain buffers.
//
//  Room messages are stored in groups: zchat_server_handle only stages a
//  SAY; zchat_server_flush commits the group and only then emits its ACKs
//  and MESSAGEs, so nobody ever sees a message that a crash could take
//  back. The loop calls flush after each batch it drains. With
//  ack_before_commit (durability off) a SAY is still numbered and stored
//  in the group, but acknowledged and published at once.

#ifndef ZCHAT_SERVER_H_INCLUDED
#define ZCHAT_SERVER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "zchat_store.h"

//  Largest ACKS or MESSAGES body the server builds: big enough that a
//  group under load goes out in few frames (hundreds of short messages
//  each), small enough that the PUB's high-water mark, counted in frames,
//  still bounds what a stalled subscriber holds (zchat_broker.c). A
//  message too big to share one goes out alone.
#define ZCHAT_SERVER_BATCH_BYTES    (16 * 1024)

//  Version 6 sessions are bound to their connections (PROTOCOL.md 6.1):
//  an idle client sends nothing, and the loop tells the server when a
//  connection closes (zchat_server_closed). Its sessions are then checked
//  this long after: the loop hears of the close before its ROUTER has let
//  go of the peer, and the descriptor may already carry a new connection.
#define ZCHAT_SERVER_CHECK_MS       1000
//  A bound session silent this long is checked all the same, in case the
//  loop missed a close: at most one message an hour to an idle client.
#define ZCHAT_SERVER_VERIFY_MS      (3600 * 1000)

typedef struct _zchat_server_t zchat_server_t;

typedef struct {
    const char *pub_endpoint;       //  as bound, told to clients in WELCOME
    uint16_t pub_port;              //  the PUB port, told to clients
    uint32_t heartbeat_ms;          //  how often idle clients must ping
                                    //  (before version 6)
    uint32_t timeout_ms;            //  silence after which a session ends
                                    //  (from version 6: once its
                                    //  connection is gone)
    uint32_t max_text;              //  longest text accepted, <= ZCHAT_MAX_TEXT
    uint32_t max_rooms;             //  rooms per session, at most (and 0
                                    //  means) ZCHAT_MAX_ITEMS, the most
                                    //  rooms one PONG can list
    uint32_t max_sessions_per_address;  //  0 = unlimited
    uint32_t max_sessions;          //  in all, 0 = unlimited: the cap that
                                    //  holds for peers without an address
                                    //  (ipc) and for relayed envelopes
    uint32_t history_page;          //  most messages in one PAGE
    uint32_t rate_limit;            //  SAY and DM per second per session,
                                    //  and as many other commands that
                                    //  publish or write (JOIN, LEAVE, NICK,
                                    //  TOPIC set, PROBE); 0 = off
    uint32_t rate_burst;            //  bucket size for rate_limit
    uint32_t fair_share;            //  room messages per second a session
                                    //  may always send; past it, while
                                    //  others send too, at most twice their
                                    //  average (zchat_server_say.c); 0 = off
    uint32_t query_rate;            //  KiB per second of HISTORY, WHO and
                                    //  ROOMS replies per session, 0 = off
    uint32_t query_burst;           //  bucket size for query_rate, KiB
    uint64_t retain_messages;       //  per room, 0 = unlimited
    uint64_t retain_ms;             //  0 = unlimited
    bool     curve;                 //  peers are CURVE-authenticated: bind
                                    //  nicks to their keys
    uint32_t max_nicks_per_key;     //  nicks one key may bind, 0 = unlimited
    //  Under CURVE: is this key (Z85) still admitted? Asked at every
    //  greeting and by zchat_server_revoke, since the allow-list may have
    //  changed since the peer's handshake. NULL: every key is.
    bool (*admits) (void *arg, const char *key);
    void *admits_arg;
    bool     ack_before_commit;     //  durability off: ACK and publish each
                                    //  SAY at once, commit at the next flush
                                    //  (a crash can lose acknowledged
                                    //  messages). false, the default, is
                                    //  durable: zero-filled configs stay so
} zchat_server_config_t;

//  Where the server's output goes. peer is the opaque envelope given to
//  zchat_server_handle; body and topic are valid only during the call.
typedef struct {
    void *arg;
    void (*reply)   (void *arg, const uint8_t *peer, size_t peer_size,
                     const uint8_t *body, size_t body_size);
    void (*publish) (void *arg, const uint8_t *topic, size_t topic_size,
                     const uint8_t *body, size_t body_size);
    //  Optional: publish body without a copy. It stays as it is until the
    //  output calls release (body, hint), once, from any thread; if it
    //  cannot take it, it publishes a copy and releases at once.
    void (*publish_lent) (void *arg, const uint8_t *topic, size_t topic_size,
                          const uint8_t *body, size_t body_size,
                          void (*release) (void *data, void *hint), void *hint);
    //  Send body to peer, as reply does, and tell whether peer's connection
    //  is still there: false only if the output knows that it is gone
    //  (libzmq's EHOSTUNREACH); a peer that takes nothing more for now is
    //  still there. The checks of bound sessions' connections.
    bool (*reaches) (void *arg, const uint8_t *peer, size_t peer_size,
                     const uint8_t *body, size_t body_size);
} zchat_server_output_t;

//  Create a server over store (borrowed: the caller keeps and destroys it,
//  after the server). config is copied (strings too).
zchat_server_t *
    zchat_server_new (const zchat_server_config_t *config,
                      zchat_store_t *store, zchat_server_output_t output);

//  Flush what is staged, then free everything; nulls *self_p. Safe on NULL.
void
    zchat_server_destroy (zchat_server_t **self_p);

//  Handle one inbound body from peer. peer identifies the sender's
//  envelope (routing ids, in the form the loop chooses; at most 1024
//  bytes). fd is the descriptor of the connection it came on, or -1 if
//  unknown: the peer came through a relay (the descriptor would be the
//  relay's), or its transport has none. Only HELLO reads it, so the loop
//  may pass -1 with anything else. user_id is the peer's CURVE public key
//  in Z85, or NULL without CURVE; address is the peer's IP address text,
//  or NULL. now_ms is the current epoch time. Never fails: bad input gets
//  an ERROR reply or a log line.
void
    zchat_server_handle (zchat_server_t *self,
                         const uint8_t *peer, size_t peer_size, int fd,
                         const char *user_id, const char *address,
                         const uint8_t *body, size_t body_size,
                         uint64_t now_ms);

//  A new connection announced itself with an empty message (a DEALER's
//  ZMQ_PROBE_ROUTER; libzchat from version 6): a peer without a session
//  is told ERROR 440 at once, so that a client whose broker restarted, or
//  whose connection was replaced, greets again without waiting to find
//  out; a peer whose session lives on (a DEALER with a routing id of its
//  own) has it bound to the new connection. Arguments as for handle.
void
    zchat_server_connected (zchat_server_t *self,
                            const uint8_t *peer, size_t peer_size, int fd,
                            const char *user_id, uint64_t now_ms);

//  The connection with descriptor fd closed (the loop's socket monitor
//  said so): its sessions are checked ZCHAT_SERVER_CHECK_MS from now
//  (output.reaches), and a session whose connection is gone then ends
//  after the session timeout unless its client greets again with its
//  token. now_ms as for tick.
void
    zchat_server_closed (zchat_server_t *self, int fd, uint64_t now_ms);

//  Commit the staged group, then emit its ACKs and MESSAGEs (or ERROR 500
//  to each sender if the store failed). Returns the number of messages
//  committed, or -1 on a storage error.
int
    zchat_server_flush (zchat_server_t *self);

//  Give the server the monotonic clock (milliseconds from any origin),
//  which measures session expiry and rate limits: a step of the wall
//  clock then neither expires every session nor stops expiry. The loop
//  calls it before each batch and each tick; until it is first called,
//  the server measures them with the now_ms of handle and tick.
void
    zchat_server_clock (zchat_server_t *self, uint64_t mono_ms);

//  Periodic work: check the connections that are due, expire silent
//  sessions (announced as quit; a session bound to its connection is not
//  ended by silence), enforce retention a bounded amount at a time. Call
//  at least every heartbeat_ms / 2.
void
    zchat_server_tick (zchat_server_t *self, uint64_t now_ms);

//  End every session whose CURVE key config.admits no longer admits
//  (announced as quit, like any end), after the allow-list was reloaded.
//  Returns the number ended.
size_t
    zchat_server_revoke (zchat_server_t *self, uint64_t now_ms);

//  Number of SAYs staged in the open group (0 without one).
size_t
    zchat_server_staged (zchat_server_t *self);

//  Number of live sessions (for logs and tests).
size_t
    zchat_server_sessions (zchat_server_t *self);

//  Self test; asserts on failure.
void
    zchat_server_test (bool verbose);

#endif
