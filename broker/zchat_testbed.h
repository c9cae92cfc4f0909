//  zchat_testbed — a zchat_server with no sockets, for self tests and fuzz
//  targets: a real store in a fresh temporary directory (removed again on
//  destroy), and an output that records every reply per peer and every
//  publication per topic in memory.
//
//  Every body the server emits is decoded as it is recorded, and the
//  testbed asserts that it decodes and is a broker-to-client or PUB type:
//  whatever a test or a fuzzer feeds in, the broker must never send
//  garbage. Peers are named by short strings (their bytes are the blob).

#ifndef ZCHAT_TESTBED_H_INCLUDED
#define ZCHAT_TESTBED_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "zchat_msg.h"
#include "zchat_store.h"
#include "zchat_server.h"

typedef struct _zchat_testbed_t zchat_testbed_t;

//  A configuration for tests: small, fast, with every limit off.
zchat_server_config_t
    zchat_testbed_config (void);

//  Create a server with config (NULL: zchat_testbed_config) over a new
//  store in a new directory under $TMPDIR or /tmp (under /dev/shm when
//  in_memory and it exists). The clock starts at a fixed epoch time.
//  Returns NULL on failure (logged).
zchat_testbed_t *
    zchat_testbed_new (const zchat_server_config_t *config, bool in_memory);

//  Destroy the server (which flushes, and is recorded), the store, the
//  directory and the records. Nulls *self_p. Safe on NULL.
void
    zchat_testbed_destroy (zchat_testbed_t **self_p);

//  Destroy the server and create it again over the same store and
//  config: a broker restart. Returns 0, or -1 if out of memory.
int
    zchat_testbed_restart (zchat_testbed_t *self);

//  The server and store under test. Borrowed.
zchat_server_t *
    zchat_testbed_server (zchat_testbed_t *self);
zchat_store_t *
    zchat_testbed_store (zchat_testbed_t *self);

//  The store's directory. Borrowed.
const char *
    zchat_testbed_dir (zchat_testbed_t *self);

//  The testbed's clocks: the wall clock (now) passed to handle and tick,
//  and the monotonic clock given to zchat_server_clock before each. Time
//  passing advances both; step_wall steps the wall clock alone (by ms,
//  forward or back), as an operator or NTP would.
uint64_t
    zchat_testbed_now (zchat_testbed_t *self);
void
    zchat_testbed_advance (zchat_testbed_t *self, uint64_t ms);
void
    zchat_testbed_step_wall (zchat_testbed_t *self, int64_t ms);

//  Hand body to the server from peer (NUL-terminated name), with CURVE
//  key user_id and address (both may be NULL). It comes on the peer's
//  connection: each peer name has a descriptor of its own, given when the
//  name is first used (set_fd changes it).
void
    zchat_testbed_send_from (zchat_testbed_t *self, const char *peer,
                             const char *user_id, const char *address,
                             const void *body, size_t size);

//  The descriptor of peer's connection, as the loop would read it from
//  its messages: -1 for a peer behind a relay (or whose transport has
//  none), another peer's to play a descriptor the kernel gave again.
void
    zchat_testbed_set_fd (zchat_testbed_t *self, const char *peer, int fd);
int
    zchat_testbed_fd (zchat_testbed_t *self, const char *peer);

//  peer's connection closes: the server hears of it (zchat_server_closed),
//  and from now on the output's reaches says peer is gone, until peer
//  connects again (a new connection, under the same name and descriptor).
//  What peer sends meanwhile is what its connection carried before it
//  closed, read late. A check that reaches a peer is recorded as a reply
//  to it. lose: the same, but the server does not hear of it (a close
//  the loop missed).
void
    zchat_testbed_close (zchat_testbed_t *self, const char *peer);
void
    zchat_testbed_lose (zchat_testbed_t *self, const char *peer);

//  peer's new connection announces itself (zchat_server_connected).
void
    zchat_testbed_connect (zchat_testbed_t *self, const char *peer,
                           const char *user_id);

//  Connection checks the server made through reaches, since the testbed
//  started, and of them those that found their peer gone.
size_t
    zchat_testbed_checks (zchat_testbed_t *self, size_t *unreached);

//  The same with no key and address "127.0.0.1".
void
    zchat_testbed_send (zchat_testbed_t *self, const char *peer,
                        const void *body, size_t size);

//  zchat_server_flush and zchat_server_tick at the testbed's clock.
int
    zchat_testbed_flush (zchat_testbed_t *self);
void
    zchat_testbed_tick (zchat_testbed_t *self);

//  Batches (ACKS, ACKRUNS, MESSAGES) are recorded as the ACKs and MESSAGEs they
//  carry, each item on its own, so tests read them one at a time
//  whatever the batching; batches () counts the batch bodies seen since
//  the testbed started.
size_t
    zchat_testbed_batches (zchat_testbed_t *self);
//  Publications the server lent instead of copying (the testbed holds the
//  last few, as libzmq would, and checks each unchanged when it gives it
//  back: now, if give_back).
size_t
    zchat_testbed_lent (zchat_testbed_t *self, bool give_back);
//  Of those, the ACKRUNS bodies, and the runs (items) they held.
size_t
    zchat_testbed_ackruns (zchat_testbed_t *self, size_t *runs);

//  Number of recorded replies to peer, and of publications on topic (the
//  whole topic frame, e.g. "lobby:"), not yet taken.
size_t
    zchat_testbed_replies (zchat_testbed_t *self, const char *peer);
size_t
    zchat_testbed_publications (zchat_testbed_t *self, const char *topic);

//  Total replies and publications recorded and not yet taken.
size_t
    zchat_testbed_pending (zchat_testbed_t *self);

//  Take the oldest reply to peer (or publication on topic) and decode it
//  into *msg. Returns false if there is none. msg's text and items stay
//  valid until the next take or clear.
bool
    zchat_testbed_take_reply (zchat_testbed_t *self, const char *peer,
                              zchat_msg_t *msg);
bool
    zchat_testbed_take_publication (zchat_testbed_t *self, const char *topic,
                                    zchat_msg_t *msg);

//  Forget every record.
void
    zchat_testbed_clear (zchat_testbed_t *self);

//  ---------------------------------------------------------------------
//  Fuzzing

//  Run one fuzz input against a server over a store kept for the whole
//  process (in /dev/shm when it exists; removed at exit). The input is a
//  sequence of records: a control byte (bits 0-1: which of 4 peers; bit
//  2: flush after; bit 3: advance the clock past the session timeout and
//  tick after; bit 4: send with a CURVE key; bit 5 of the first record:
//  run the server with curve on; bit 6: the peer's connection closes
//  after, and what it sends is read late until its next connection; bit
//  7: sent through a relay, no connection known; bits 6 and 7 together:
//  instead of the body, the peer's new connection announces itself), a
//  big-endian u16 length, then that many body bytes (fewer if
//  the input ends). The server is new
//  for each input and the clock starts at the same time, so an input
//  replays the same way. Asserts (crashes) if the server emits anything
//  that does not decode. Returns 0.
int
    zchat_testbed_fuzz (const uint8_t *data, size_t size);

//  Write a sample fuzz input (greetings, joins, says, a DM, history,
//  garbage) into buffer; returns its size, or 0 if capacity is too small.
//  Good seeds for a corpus.
size_t
    zchat_testbed_fuzz_sample (uint8_t *buffer, size_t capacity);

#endif
