//  zchat_arena — the bytes of the broker's open group (its MESSAGES runs,
//  duplicates' room names), which a publication may borrow instead of
//  copying.
//
//  zmq_send copies a publication into a message it allocates; at 1 KiB
//  texts flat out that copy was about 4 % of the broker's samples. A
//  MESSAGES run is already encoded in the arena, so the broker can hand
//  libzmq the bytes themselves (zmq_msg_init_data) and let its I/O thread
//  give them back, with zchat_arena_release, once they are on the wire.
//  An arena with loans out is never written again: the server gives it
//  up at the group's end (destroy drops the owner's part) and takes a new
//  one for the next group; the last loan to come back frees it, or keeps
//  it as the one spare that the next new arena reuses (its pages warm).
//
//  What loans may pin is bounded: an arena of more than ZCHAT_ARENA_LEND_MAX
//  bytes is never lent, and while ZCHAT_ARENA_OUT_MAX given-up arenas still
//  have loans out (a subscriber that does not read holds them), no other is
//  lent: the server copies as before.

#ifndef ZCHAT_ARENA_H_INCLUDED
#define ZCHAT_ARENA_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZCHAT_ARENA_LEND_MAX    (4 * 1024 * 1024)
#define ZCHAT_ARENA_OUT_MAX     4

typedef struct _zchat_arena_t zchat_arena_t;

//  A new arena of at least capacity bytes (the spare, if it is as big), or
//  NULL if out of memory.
zchat_arena_t *
    zchat_arena_new (size_t capacity);

//  Drop the owner's part; the arena goes when the last loan comes back.
//  Nulls *self_p; safe on NULL.
void
    zchat_arena_destroy (zchat_arena_t **self_p);

//  Its bytes (they move when it grows), and how many there are.
uint8_t *
    zchat_arena_data (zchat_arena_t *self);
size_t
    zchat_arena_capacity (zchat_arena_t *self);

//  Make it hold at least capacity bytes, keeping its contents. Only while
//  nothing is lent. Returns 0, or -1 if out of memory (unchanged).
int
    zchat_arena_grow (zchat_arena_t **self_p, size_t capacity);

//  Take a loan of bytes inside the arena, which the borrower gives back
//  with zchat_arena_release (data, self). Returns false, and lends
//  nothing, if the arena may not be lent now (see above).
bool
    zchat_arena_lend (zchat_arena_t *self);

//  Give a loan back; a zmq_free_fn (hint is the arena), safe from any
//  thread.
void
    zchat_arena_release (void *data, void *hint);

//  True if loans are out.
bool
    zchat_arena_lent (zchat_arena_t *self);

//  Given-up arenas with loans out, in this process (tests, statistics).
size_t
    zchat_arena_out (void);

//  Self test; asserts on failure.
void
    zchat_arena_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
