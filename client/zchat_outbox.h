//  zchat_outbox — the client's unacknowledged sends (SAY and DM).
//
//  Each entry holds a copy of its text until its ACK, so that it can be
//  sent again with the same id. Entries are found by id (ACK, ERROR) and
//  kept on two orders at once, so that the client's timers only ever
//  touch entries that are due, never the whole table:
//  - send order (oldest first): for the timeout since the first send, and
//    for resending everything, in order, on a new session;
//  - an unsent queue (waiting for the DEALER, in order) and a resend list
//    (sent, least recently sent first).
//  It also counts the DMs that ever went out, for the client's DM window.
//  Pure bookkeeping: no sockets, no clock of its own.

#ifndef ZCHAT_OUTBOX_H_INCLUDED
#define ZCHAT_OUTBOX_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "zchat_msg.h"

typedef struct _zchat_outbox_t zchat_outbox_t;
typedef struct _zchat_outbox_entry_t zchat_outbox_entry_t;

//  An entry's place in one of the outbox's lists.
typedef struct {
    zchat_outbox_entry_t *prev, *next;
} zchat_outbox_link_t;

//  One send. Read-only for callers; the links belong to the outbox.
struct _zchat_outbox_entry_t {
    uint64_t id;
    uint8_t  type;                  //  ZCHAT_SAY or ZCHAT_DM
    uint8_t  kind;                  //  ZCHAT_KIND_*
    bool     unsent;                //  on the unsent queue
    bool     went_out;              //  went out at least once
    char     target [ZCHAT_MAX_ROOM + 1];  //  room (SAY) or nick (DM)
    int64_t  first_ms;              //  when it was added
    int64_t  last_ms;               //  when it last went out
    zchat_outbox_link_t order;      //  send order
    zchat_outbox_link_t queue;      //  unsent queue or resend list
    zchat_outbox_link_t dms;        //  DMs out, first-out order
    uint64_t dm_ordinal;            //  a DM: how many went out before it
    size_t   text_size;
    char     text [];
};

//  Create an empty outbox. NULL if out of memory.
zchat_outbox_t *
    zchat_outbox_new (void);

//  Free the outbox and every entry; nulls *self_p. Safe on NULL.
void
    zchat_outbox_destroy (zchat_outbox_t **self_p);

//  Add a send (id never 0 and not present; target at most
//  ZCHAT_MAX_ROOM bytes), copying text, at the end of the send order and
//  of the unsent queue. Returns the entry, or NULL if out of memory.
zchat_outbox_entry_t *
    zchat_outbox_add (zchat_outbox_t *self, uint64_t id, uint8_t type,
                      uint8_t kind, const char *target, const char *text,
                      size_t text_size, int64_t now);

//  The entry with this id, or NULL.
zchat_outbox_entry_t *
    zchat_outbox_lookup (zchat_outbox_t *self, uint64_t id);

//  Remove an entry and free it.
void
    zchat_outbox_remove (zchat_outbox_t *self, zchat_outbox_entry_t *entry);

//  Number of entries.
size_t
    zchat_outbox_size (zchat_outbox_t *self);

//  Number of entries that went out and wait for their answer.
size_t
    zchat_outbox_in_flight (zchat_outbox_t *self);

//  Number of DMs that went out at least once and are still here: those
//  the broker may have delivered and we may send again, whether they wait
//  for their answer or to go out again (after a 429, or on a new session).
size_t
    zchat_outbox_dms_out (zchat_outbox_t *self);

//  How many DMs went out for the first time since the oldest DM still
//  here did, counting it: 0 if none is here. The broker recognises a
//  resent DM only among the last DMs it delivered, and every DM that
//  went out since the oldest unanswered one may have been delivered, so
//  this, not the number still here, is what must stay within its memory:
//  one lost ACK with later ones answered keeps the count low.
size_t
    zchat_outbox_dm_span (zchat_outbox_t *self);

//  The oldest entry in send order, or NULL.
zchat_outbox_entry_t *
    zchat_outbox_oldest (zchat_outbox_t *self);

//  The first entry waiting for the DEALER, or NULL.
zchat_outbox_entry_t *
    zchat_outbox_next_unsent (zchat_outbox_t *self);

//  The sent entry that went out longest ago, or NULL.
zchat_outbox_entry_t *
    zchat_outbox_stalest (zchat_outbox_t *self);

//  The entry went out at now: it moves to the end of the resend list.
//  A DM counts in zchat_outbox_dms_out and zchat_outbox_dm_span from its
//  first time on.
void
    zchat_outbox_sent (zchat_outbox_t *self, zchat_outbox_entry_t *entry,
                       int64_t now);

//  The entry could not go out: it goes back on the unsent queue in send
//  order, so a resend goes again before sends that never went out.
void
    zchat_outbox_unsend (zchat_outbox_t *self, zchat_outbox_entry_t *entry);

//  Every entry is to go out again (a new session): the unsent queue
//  becomes the whole outbox in send order, the resend list empty.
void
    zchat_outbox_unsend_all (zchat_outbox_t *self);

//  Entry (which went out) and every entry after it in send order that
//  went out too, SAY or DM, are to go out again, before anything that
//  never went out, in send order: the broker refused entry and, refusing
//  the rest of that sender's stream for a while, everything after it.
//  (What it took after all is acknowledged meanwhile, or recognised when
//  it comes again: the broker stores a SAY once and delivers a DM once.)
//  Returns how many moved; 0 if entry was waiting already.
size_t
    zchat_outbox_unsend_from (zchat_outbox_t *self, zchat_outbox_entry_t *entry);

//  Self test; asserts on failure.
void
    zchat_outbox_test (bool verbose);

#endif
