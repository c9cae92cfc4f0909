//  zchat_sequencer — puts one room's messages in sequence order.
//
//  Pure logic, no sockets: the client feeds it every message of a room
//  (live from SUB, or fetched from history) and it hands them on exactly
//  once, in sequence order, through the deliver callback. Messages that
//  arrive ahead of a hole are buffered (up to a bound) while the client
//  fetches the hole from history; zchat_sequencer_want says which range to
//  fetch, and the PAGE answering it is fed back in with page_begin, offer
//  and page_end. A range that history no longer holds is reported through
//  the gap callback and skipped, never waited for.
//
//  Items are opaque to the sequencer: the client passes its own event
//  objects. An item handed to zchat_sequencer_offer belongs to the
//  sequencer until it is delivered (ownership passes to the deliver
//  callback) or dropped (the destroy callback frees it).

#ifndef ZCHAT_SEQUENCER_H_INCLUDED
#define ZCHAT_SEQUENCER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _zchat_sequencer_t zchat_sequencer_t;

typedef struct {
    void *arg;
    //  The next message in order; the callee takes item.
    void (*deliver) (void *arg, uint64_t seq, void *item);
    //  Messages from_seq..to_seq are gone from history and are skipped.
    void (*gap)     (void *arg, uint64_t from_seq, uint64_t to_seq);
    //  An item dropped (duplicate, or the buffer overflowed); free it.
    void (*destroy) (void *arg, void *item);
} zchat_sequencer_output_t;

//  Create a sequencer that buffers at most limit out-of-order messages
//  (limit > 0). It starts unstarted (the last seen seq is not yet known)
//  and held (nothing is delivered): see start and hold.
zchat_sequencer_t *
    zchat_sequencer_new (size_t limit, zchat_sequencer_output_t output);

//  Free the sequencer and every buffered item (through destroy); nulls
//  *self_p. Safe on NULL.
void
    zchat_sequencer_destroy (zchat_sequencer_t **self_p);

//  Set the last seq already seen (or skipped on purpose), once known:
//  the room's newest at join, less the messages to replay. Buffered items
//  at or below it are dropped. Only the first call has an effect.
void
    zchat_sequencer_start (zchat_sequencer_t *self, uint64_t last);

//  True once start was called.
bool
    zchat_sequencer_started (zchat_sequencer_t *self);

//  The last seq handed on (or skipped as a gap); 0 before start.
uint64_t
    zchat_sequencer_last (zchat_sequencer_t *self);

//  While held, everything offered is buffered and nothing is delivered
//  or fetched. Releasing delivers whatever is now in order.
void
    zchat_sequencer_hold (zchat_sequencer_t *self, bool hold);

//  Offer one message; takes item. Delivered at once if it is next in
//  order (then any buffered successors follow), dropped if at or below
//  the last seen, otherwise buffered. A full buffer keeps its oldest
//  messages: a newer one is dropped, an older one takes the newest's
//  place (what is dropped is fetched later, as known covers it).
void
    zchat_sequencer_offer (zchat_sequencer_t *self, uint64_t seq, void *item);

//  Whether an offer of seq now would keep it (deliver or buffer it). One
//  that would not need not be made: call newest with it instead.
bool
    zchat_sequencer_accepts (zchat_sequencer_t *self, uint64_t seq);

//  The broker says messages up to seq exist (JOINED, PONG): if that is
//  past what was seen, want will ask for them.
void
    zchat_sequencer_newest (zchat_sequencer_t *self, uint64_t seq);

//  The newest seq known to exist (seen, buffered or told).
uint64_t
    zchat_sequencer_known (zchat_sequencer_t *self);

//  Whether a history fetch is due: true with the range to ask for when
//  the sequencer is started, not held, has no fetch outstanding, and
//  messages above the last seen are known to exist but are not buffered.
//  The range stops before the first buffered message.
bool
    zchat_sequencer_want (zchat_sequencer_t *self, uint64_t *from_seq,
                          uint64_t *to_seq);

//  The client has asked for from_seq..to_seq: it is outstanding until
//  page_end or fetch_failed.
void
    zchat_sequencer_fetch_sent (zchat_sequencer_t *self, uint64_t from_seq,
                                uint64_t to_seq);

//  True while a fetch is outstanding.
bool
    zchat_sequencer_fetching (zchat_sequencer_t *self);

//  A PAGE answering the outstanding fetch begins: first_seq is the
//  oldest message history still holds (0 if none). If that is above the
//  first missing seq, the messages in between are reported as a gap and
//  skipped, up to the first one buffered (we hold those: they are
//  delivered). Then offer the page's items, then call page_end.
void
    zchat_sequencer_page_begin (zchat_sequencer_t *self, uint64_t first_seq);

//  The PAGE is done (more: PAGE.more, it stopped before the end of the
//  range); the fetch is no longer outstanding. The page answered for the
//  range asked, up to its newest message when more is set: every message
//  in there that is still missing is not in history, and is reported as a
//  gap so that the sequencer never waits forever. Nothing is concluded of
//  what lies above a page that stopped early, even when everything in it
//  was already seen, nor from a message of the page that a full buffer
//  could not keep on. Delivers what is now in order.
void
    zchat_sequencer_page_end (zchat_sequencer_t *self, bool more);

//  The outstanding fetch failed or was lost (ERROR reply, reconnect): it
//  may be asked again.
void
    zchat_sequencer_fetch_failed (zchat_sequencer_t *self);

//  Number of buffered messages.
size_t
    zchat_sequencer_buffered (zchat_sequencer_t *self);

//  Self test; asserts on failure.
void
    zchat_sequencer_test (bool verbose);

#endif
