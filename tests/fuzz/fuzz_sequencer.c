//  fuzz_sequencer — libFuzzer target for the client's sequencer
//  (client/zchat_sequencer.c), driven as zchat_client_room drives it, by a
//  broker that may say anything: the input is a list of operations (start,
//  hold, release, offer a seq, the newest seq told, a fetch asked, a page's
//  begin and end, a fetch lost) with seqs near the last one handed on or
//  anywhere in the 64-bit range.
//
//  Whatever the broker says, the sequencer must hand on seqs once each and
//  in order: every delivery and every gap starts right after the last one
//  (or after the start), deliveries and gaps never overlap, and nothing is
//  handed on while held or before start. Every item offered is delivered
//  or destroyed exactly once (counted, and leaks are ASan's), the buffer
//  stays within its bound, and want asks for a range that starts right
//  after the last seq handed on. Any breach aborts.
//
//  Built with clang -fsanitize=fuzzer,address,undefined by
//  tests/fuzz/Makefile, and without libFuzzer (plus tests/fuzz/replay.c)
//  to replay the corpus as an ordinary test.

#include "zchat_sequencer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf (stderr, "fuzz_sequencer: %s:%d: check failed: %s\n", \
                     __FILE__, __LINE__, #cond); \
            abort (); \
        } \
    } while (0)

#define S_LIMIT     8           //  small, so that the full buffer is reached

typedef struct {
    uint64_t seq;               //  the seq it was offered under
    bool     done;              //  delivered or destroyed
} s_item_t;

typedef struct {
    zchat_sequencer_t *sequencer;
    bool     started;
    bool     held;
    uint64_t last;              //  the last seq handed on or skipped
    size_t   live;              //  items offered, not yet handed back
} s_state_t;

static void
s_deliver (void *arg, uint64_t seq, void *item)
{
    s_state_t *state = (s_state_t *) arg;
    s_item_t *it = (s_item_t *) item;
    FUZZ_CHECK (state->started && !state->held);
    FUZZ_CHECK (!it->done && it->seq == seq);
    FUZZ_CHECK (seq == state->last + 1 && seq != 0);
    state->last = seq;
    it->done = true;
    state->live--;
    free (it);
}

static void
s_gap (void *arg, uint64_t from_seq, uint64_t to_seq)
{
    s_state_t *state = (s_state_t *) arg;
    FUZZ_CHECK (state->started);
    FUZZ_CHECK (from_seq == state->last + 1 && from_seq != 0 && to_seq >= from_seq);
    state->last = to_seq;
}

static void
s_destroy (void *arg, void *item)
{
    s_state_t *state = (s_state_t *) arg;
    s_item_t *it = (s_item_t *) item;
    FUZZ_CHECK (!it->done);
    it->done = true;
    state->live--;
    free (it);
}

//  A reader over the input; reads past its end give zeros.
typedef struct {
    const uint8_t *data;
    size_t size, pos;
} s_input_t;

static uint8_t
s_byte (s_input_t *in)
{
    return in->pos < in->size? in->data [in->pos++]: 0;
}

//  A seq: mostly near the last one handed on, sometimes anywhere
static uint64_t
s_seq (s_input_t *in, uint64_t last)
{
    uint8_t mode = s_byte (in);
    if (mode < 200)
        return last + (uint64_t) mode % 40 - 4;     //  last - 4 .. last + 35
    if (mode < 220)
        return UINT64_MAX - (mode - 200);
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
        seq = (seq << 8) | s_byte (in);
    return seq;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_state_t state;
    memset (&state, 0, sizeof state);
    state.held = true;
    zchat_sequencer_output_t output = { &state, s_deliver, s_gap, s_destroy };
    state.sequencer = zchat_sequencer_new (S_LIMIT, output);
    FUZZ_CHECK (state.sequencer);
    zchat_sequencer_t *sequencer = state.sequencer;
    s_input_t in = { data, size, 0 };
    while (in.pos < in.size) {
        uint8_t op = s_byte (&in) % 9;
        switch (op) {
            case 0: {
                uint64_t last = s_seq (&in, 0);
                if (!state.started) {
                    state.started = true;
                    state.last = last;
                }
                zchat_sequencer_start (sequencer, last);
                break;
            }
            case 1:
                state.held = true;
                zchat_sequencer_hold (sequencer, true);
                break;
            case 2:
                state.held = false;
                zchat_sequencer_hold (sequencer, false);
                break;
            case 3:
            case 4: {
                uint64_t seq = s_seq (&in, state.last);
                s_item_t *it = (s_item_t *) calloc (1, sizeof (s_item_t));
                FUZZ_CHECK (it);
                it->seq = seq;
                state.live++;
                zchat_sequencer_offer (sequencer, seq, it);
                break;
            }
            case 5:
                zchat_sequencer_newest (sequencer, s_seq (&in, state.last));
                break;
            case 6: {
                uint64_t from, to;
                if (zchat_sequencer_want (sequencer, &from, &to)) {
                    FUZZ_CHECK (state.started && !state.held);
                    FUZZ_CHECK (from == state.last + 1 && to >= from);
                    FUZZ_CHECK (!zchat_sequencer_fetching (sequencer));
                    zchat_sequencer_fetch_sent (sequencer, from, to);
                    FUZZ_CHECK (zchat_sequencer_fetching (sequencer));
                }
                break;
            }
            case 7:
                zchat_sequencer_page_begin (sequencer, s_seq (&in, state.last));
                break;
            case 8: {
                uint8_t how = s_byte (&in);
                if (how & 1)
                    zchat_sequencer_page_end (sequencer, (how & 2) != 0);
                else
                    zchat_sequencer_fetch_failed (sequencer);
                break;
            }
        }
        FUZZ_CHECK (zchat_sequencer_buffered (sequencer) <= S_LIMIT);
        FUZZ_CHECK (zchat_sequencer_buffered (sequencer) == state.live);
        FUZZ_CHECK (zchat_sequencer_started (sequencer) == state.started);
        if (state.started)
            FUZZ_CHECK (zchat_sequencer_last (sequencer) == state.last);
    }
    zchat_sequencer_destroy (&sequencer);
    FUZZ_CHECK (state.live == 0);
    return 0;
}
