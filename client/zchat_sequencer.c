//  zchat_sequencer — puts one room's messages in sequence order.
//
//  The buffer is a sorted array of (seq, item) with a moving head: live
//  traffic arrives in order, so an insert is nearly always an append and a
//  delivery a pop from the head; only a message that overtakes another
//  (a fetched page racing live traffic) pays for a binary search and a
//  memmove.

#include <czmq.h>
#include "zchat_sequencer.h"

typedef struct {
    uint64_t seq;
    void *item;
} s_entry_t;

struct _zchat_sequencer_t {
    zchat_sequencer_output_t out;
    size_t   limit;             //  most entries buffered
    s_entry_t *entries;         //  sorted by seq in [head, head + count)
    size_t   capacity;
    size_t   head;
    size_t   count;
    bool     started;
    bool     held;
    uint64_t last;              //  last seq handed on or skipped
    uint64_t known;             //  newest seq known to exist
    bool     fetching;
    uint64_t fetch_from;
    uint64_t fetch_to;
    bool     paging;            //  between page_begin and page_end
    uint64_t page_top;          //  newest seq the current page offered
    uint64_t page_lost;         //  oldest seq let go meanwhile (full buffer), or 0
};

//  --------------------------------------------------------------------------
//  Create a sequencer; see the header.

zchat_sequencer_t *
zchat_sequencer_new (size_t limit, zchat_sequencer_output_t output)
{
    assert (limit > 0);
    assert (output.deliver && output.gap && output.destroy);
    zchat_sequencer_t *self = (zchat_sequencer_t *) zmalloc (sizeof (zchat_sequencer_t));
    if (!self)
        return NULL;
    self->out = output;
    self->limit = limit;
    self->held = true;
    return self;
}

//  --------------------------------------------------------------------------
//  Drop every buffered entry through the destroy callback.

static void
s_clear (zchat_sequencer_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        self->out.destroy (self->out.arg, self->entries [self->head + i].item);
    self->head = 0;
    self->count = 0;
}

//  --------------------------------------------------------------------------
//  Free the sequencer and what it buffers; nulls *self_p.

void
zchat_sequencer_destroy (zchat_sequencer_t **self_p)
{
    assert (self_p);
    zchat_sequencer_t *self = *self_p;
    if (self) {
        s_clear (self);
        free (self->entries);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Drop buffered entries at or below last, then deliver entries while the
//  head is next in order. Does nothing until started and released.

static void
s_drain (zchat_sequencer_t *self)
{
    if (!self->started)
        return;
    while (self->count > 0) {
        s_entry_t *entry = &self->entries [self->head];
        if (entry->seq <= self->last)
            self->out.destroy (self->out.arg, entry->item);
        else
        if (entry->seq == self->last + 1 && !self->held) {
            self->last = entry->seq;
            self->out.deliver (self->out.arg, entry->seq, entry->item);
        }
        else
            break;
        self->head++;
        self->count--;
    }
    if (self->count == 0)
        self->head = 0;
}

//  --------------------------------------------------------------------------
//  Whether a message above the last seen would be kept: not when the
//  buffer is full and it is newer than everything buffered. A full buffer
//  keeps its oldest messages, the next to be delivered once the hole below
//  them is fetched, and lets the newest go: known covers them, so they are
//  fetched in their turn. (Emptying the buffer instead threw away what was
//  nearest to delivery and made a subscriber that fell behind fetch nearly
//  everything from history, never catching up with live traffic.)

static bool
s_keeps (zchat_sequencer_t *self, uint64_t seq)
{
    return self->count < self->limit
        || seq < self->entries [self->head + self->count - 1].seq;
}

//  --------------------------------------------------------------------------
//  A message that exists was let go (full buffer, out of memory): while a
//  page is read, remember the oldest such, so that page_end does not take
//  it for one that history lacks.

static void
s_let_go (zchat_sequencer_t *self, uint64_t seq)
{
    if (self->paging && (self->page_lost == 0 || seq < self->page_lost))
        self->page_lost = seq;
}

//  --------------------------------------------------------------------------
//  Insert (seq, item) in order; a duplicate of a buffered seq is dropped.
//  When the buffer is full, the newest message goes (see s_keeps): the
//  incoming one, or the newest buffered to make room for an older one.

static void
s_buffer (zchat_sequencer_t *self, uint64_t seq, void *item)
{
    if (!s_keeps (self, seq)) {
        s_let_go (self, seq);
        self->out.destroy (self->out.arg, item);
        return;
    }
    //  Find where seq goes: nearly always after the tail
    size_t pos = self->count;
    if (self->count > 0 && self->entries [self->head + self->count - 1].seq >= seq) {
        size_t low = 0, high = self->count;
        while (low < high) {
            size_t mid = low + (high - low) / 2;
            if (self->entries [self->head + mid].seq < seq)
                low = mid + 1;
            else
                high = mid;
        }
        if (self->entries [self->head + low].seq == seq) {
            self->out.destroy (self->out.arg, item);
            return;
        }
        pos = low;
    }
    if (self->count >= self->limit) {
        //  Full, and seq is older than the newest: that one makes room
        self->count--;
        s_let_go (self, self->entries [self->head + self->count].seq);
        self->out.destroy (self->out.arg, self->entries [self->head + self->count].item);
    }
    //  Make room at the end: slide back to the start, else grow
    if (self->head + self->count == self->capacity) {
        if (self->head > 0) {
            memmove (self->entries, self->entries + self->head,
                     self->count * sizeof (s_entry_t));
            self->head = 0;
        }
        else {
            size_t capacity = self->capacity? self->capacity * 2: 64;
            if (capacity > self->limit)
                capacity = self->limit;
            s_entry_t *entries = (s_entry_t *) realloc (self->entries,
                                                        capacity * sizeof (s_entry_t));
            if (!entries) {
                //  Out of memory: as if the bound was hit, this one goes
                s_let_go (self, seq);
                self->out.destroy (self->out.arg, item);
                return;
            }
            self->entries = entries;
            self->capacity = capacity;
        }
    }
    s_entry_t *base = self->entries + self->head;
    if (pos < self->count)
        memmove (base + pos + 1, base + pos, (self->count - pos) * sizeof (s_entry_t));
    base [pos].seq = seq;
    base [pos].item = item;
    self->count++;
}

//  --------------------------------------------------------------------------
//  Set the last seen seq, once.

void
zchat_sequencer_start (zchat_sequencer_t *self, uint64_t last)
{
    assert (self);
    if (self->started)
        return;
    self->started = true;
    self->last = last;
    if (self->known < last)
        self->known = last;
    s_drain (self);
}

bool
zchat_sequencer_started (zchat_sequencer_t *self)
{
    assert (self);
    return self->started;
}

uint64_t
zchat_sequencer_last (zchat_sequencer_t *self)
{
    assert (self);
    return self->last;
}

//  --------------------------------------------------------------------------
//  Hold or release delivery.

void
zchat_sequencer_hold (zchat_sequencer_t *self, bool hold)
{
    assert (self);
    self->held = hold;
    if (!hold)
        s_drain (self);
}

//  --------------------------------------------------------------------------
//  Offer one message.

void
zchat_sequencer_offer (zchat_sequencer_t *self, uint64_t seq, void *item)
{
    assert (self);
    if (self->known < seq)
        self->known = seq;
    if (self->paging && self->page_top < seq)
        self->page_top = seq;
    if (self->started && seq <= self->last)
        self->out.destroy (self->out.arg, item);
    else
    if (self->started && !self->held && seq == self->last + 1) {
        self->last = seq;
        self->out.deliver (self->out.arg, seq, item);
        if (self->count > 0)
            s_drain (self);
    }
    else
        s_buffer (self, seq, item);
}

//  --------------------------------------------------------------------------
//  Whether an offer of seq would be kept.

bool
zchat_sequencer_accepts (zchat_sequencer_t *self, uint64_t seq)
{
    assert (self);
    if (self->started && seq <= self->last)
        return false;
    if (self->started && !self->held && seq == self->last + 1)
        return true;
    return s_keeps (self, seq);
}

//  --------------------------------------------------------------------------
//  Learn the newest seq that exists.

void
zchat_sequencer_newest (zchat_sequencer_t *self, uint64_t seq)
{
    assert (self);
    if (self->known < seq)
        self->known = seq;
}

uint64_t
zchat_sequencer_known (zchat_sequencer_t *self)
{
    assert (self);
    return self->known;
}

//  --------------------------------------------------------------------------
//  Say whether and what to fetch.

bool
zchat_sequencer_want (zchat_sequencer_t *self, uint64_t *from_seq, uint64_t *to_seq)
{
    assert (self);
    assert (from_seq && to_seq);
    if (!self->started || self->held || self->fetching)
        return false;
    uint64_t to = self->known;
    if (self->count > 0) {
        uint64_t first = self->entries [self->head].seq;
        //  s_drain leaves no deliverable head behind
        assert (first > self->last + 1);
        to = first - 1;
    }
    if (to <= self->last)
        return false;
    *from_seq = self->last + 1;
    *to_seq = to;
    return true;
}

void
zchat_sequencer_fetch_sent (zchat_sequencer_t *self, uint64_t from_seq, uint64_t to_seq)
{
    assert (self);
    self->fetching = true;
    self->fetch_from = from_seq;
    self->fetch_to = to_seq;
}

bool
zchat_sequencer_fetching (zchat_sequencer_t *self)
{
    assert (self);
    return self->fetching;
}

//  --------------------------------------------------------------------------
//  Skip from last + 1 to `to` as a gap, then deliver what follows.

static void
s_skip (zchat_sequencer_t *self, uint64_t to)
{
    if (to <= self->last)
        return;
    uint64_t from = self->last + 1;
    self->last = to;
    self->out.gap (self->out.arg, from, to);
    s_drain (self);
}

//  --------------------------------------------------------------------------
//  A page begins: report what retention removed.

void
zchat_sequencer_page_begin (zchat_sequencer_t *self, uint64_t first_seq)
{
    assert (self);
    self->paging = true;
    self->page_top = 0;
    self->page_lost = 0;
    if (!self->fetching)
        return;
    //  Nothing held at all: the whole range asked for is gone. Else what
    //  lies below the oldest held message is. Only up to what we buffered
    //  while the fetch was out, though: those we have (the PUB dropped
    //  the messages before them, not these), and skipping past them would
    //  throw them away as gone. Any hole between them that retention took
    //  is settled by page_end, which answers for the whole span.
    uint64_t gone_to = first_seq == 0? self->fetch_to: first_seq - 1;
    if (gone_to > self->fetch_to)
        gone_to = self->fetch_to;
    if (self->count > 0 && self->entries [self->head].seq - 1 < gone_to)
        gone_to = self->entries [self->head].seq - 1;
    if (gone_to >= self->last + 1)
        s_skip (self, gone_to);
}

//  --------------------------------------------------------------------------
//  A page is done.

void
zchat_sequencer_page_end (zchat_sequencer_t *self, bool more)
{
    assert (self);
    self->paging = false;
    if (!self->fetching)
        return;
    self->fetching = false;
    //  The page answered for the range asked, up to its newest message if
    //  it stopped early. What we still lack in there, history does not
    //  hold: skipped as a gap, so that it is never waited for (and never
    //  asked again in a loop). Above that the page says nothing. A page
    //  can come back after live traffic has moved past everything in it
    //  (a subscriber behind on its SUB fetches the tail a PONG told of):
    //  that is no sign that what follows is gone, only that the next
    //  fetch starts higher. An empty page that claims more is taken as
    //  the whole range, or asking again would loop.
    uint64_t covered = more && self->page_top? self->page_top: self->fetch_to;
    if (covered > self->fetch_to)
        covered = self->fetch_to;
    //  A message that a full buffer let go while the page was read exists:
    //  from it on nothing is concluded, it is fetched again in its turn.
    if (self->page_lost && covered >= self->page_lost)
        covered = self->page_lost - 1;
    //  Every hole in the span, not only the first: each one left would
    //  cost a round trip to learn again what this page already said.
    while (self->last < covered) {
        uint64_t to = covered;
        if (self->count > 0 && self->entries [self->head].seq - 1 < to)
            to = self->entries [self->head].seq - 1;
        if (to <= self->last)
            break;              //  held: the head waits, and so do we
        s_skip (self, to);
    }
    s_drain (self);
}

void
zchat_sequencer_fetch_failed (zchat_sequencer_t *self)
{
    assert (self);
    self->fetching = false;
}

size_t
zchat_sequencer_buffered (zchat_sequencer_t *self)
{
    assert (self);
    return self->count;
}

//  --------------------------------------------------------------------------
//  Self test: items are heap-allocated seq numbers, so that ASan catches
//  any item that is lost or freed twice.

typedef struct {
    uint64_t delivered [64];
    size_t   delivered_count;
    uint64_t gap_from, gap_to;
    size_t   gaps;
    size_t   destroyed;
} s_test_log_t;

static void
s_test_deliver (void *arg, uint64_t seq, void *item)
{
    s_test_log_t *log = (s_test_log_t *) arg;
    assert (*(uint64_t *) item == seq);
    assert (log->delivered_count < 64);
    log->delivered [log->delivered_count++] = seq;
    free (item);
}

static void
s_test_gap (void *arg, uint64_t from_seq, uint64_t to_seq)
{
    s_test_log_t *log = (s_test_log_t *) arg;
    log->gap_from = from_seq;
    log->gap_to = to_seq;
    log->gaps++;
}

static void
s_test_destroy (void *arg, void *item)
{
    s_test_log_t *log = (s_test_log_t *) arg;
    log->destroyed++;
    free (item);
}

static void *
s_test_item (uint64_t seq)
{
    uint64_t *item = (uint64_t *) malloc (sizeof (uint64_t));
    assert (item);
    *item = seq;
    return item;
}

static void
s_test_offer (zchat_sequencer_t *self, uint64_t seq)
{
    zchat_sequencer_offer (self, seq, s_test_item (seq));
}

void
zchat_sequencer_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_sequencer: ");
    s_test_log_t log;
    memset (&log, 0, sizeof (log));
    zchat_sequencer_output_t out = { &log, s_test_deliver, s_test_gap, s_test_destroy };
    uint64_t from, to;

    //  Held and unstarted: everything waits; start drops what is old
    zchat_sequencer_t *seq = zchat_sequencer_new (8, out);
    assert (seq);
    assert (!zchat_sequencer_started (seq));
    s_test_offer (seq, 10);
    s_test_offer (seq, 11);
    s_test_offer (seq, 12);
    assert (log.delivered_count == 0);
    assert (!zchat_sequencer_want (seq, &from, &to));
    zchat_sequencer_start (seq, 10);
    assert (log.destroyed == 1);                //  10 was already seen
    assert (log.delivered_count == 0);          //  still held
    zchat_sequencer_newest (seq, 10);
    zchat_sequencer_hold (seq, false);
    assert (log.delivered_count == 2);
    assert (log.delivered [0] == 11 && log.delivered [1] == 12);
    assert (zchat_sequencer_last (seq) == 12);
    assert (!zchat_sequencer_want (seq, &from, &to));

    //  In order, then duplicates
    s_test_offer (seq, 13);
    assert (log.delivered_count == 3 && zchat_sequencer_last (seq) == 13);
    s_test_offer (seq, 13);
    s_test_offer (seq, 5);
    assert (log.destroyed == 3);
    assert (log.delivered_count == 3);

    //  A jump is buffered and asks for the hole, once
    s_test_offer (seq, 16);
    s_test_offer (seq, 17);
    s_test_offer (seq, 17);                     //  duplicate inside the buffer
    assert (log.destroyed == 4);
    assert (zchat_sequencer_buffered (seq) == 2);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 14 && to == 15);
    zchat_sequencer_fetch_sent (seq, from, to);
    assert (zchat_sequencer_fetching (seq));
    assert (!zchat_sequencer_want (seq, &from, &to));

    //  The page fills the hole; the buffer drains behind it
    zchat_sequencer_page_begin (seq, 1);
    assert (log.gaps == 0);
    s_test_offer (seq, 14);
    s_test_offer (seq, 15);
    zchat_sequencer_page_end (seq, false);
    assert (!zchat_sequencer_fetching (seq));
    assert (log.delivered_count == 7);
    for (size_t i = 0; i < 7; i++)
        assert (log.delivered [i] == 11 + i);
    assert (zchat_sequencer_buffered (seq) == 0);
    assert (!zchat_sequencer_want (seq, &from, &to));

    //  A lost tail, told by PONG, is fetched up to the newest
    zchat_sequencer_newest (seq, 20);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 18 && to == 20);
    zchat_sequencer_fetch_sent (seq, from, to);

    //  Retention removed 18..19: the page starts above the asked range
    zchat_sequencer_page_begin (seq, 20);
    assert (log.gaps == 1 && log.gap_from == 18 && log.gap_to == 19);
    assert (zchat_sequencer_last (seq) == 19);
    s_test_offer (seq, 20);
    zchat_sequencer_page_end (seq, false);
    assert (zchat_sequencer_last (seq) == 20);
    assert (log.delivered [log.delivered_count - 1] == 20);

    //  A page that brings nothing while the range is still missing is a
    //  gap too, so that it is not asked for forever
    s_test_offer (seq, 25);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 21 && to == 24);
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    zchat_sequencer_page_end (seq, false);
    assert (log.gaps == 2 && log.gap_from == 21 && log.gap_to == 24);
    assert (zchat_sequencer_last (seq) == 25);

    //  A failed fetch may be asked again
    s_test_offer (seq, 27);
    assert (zchat_sequencer_want (seq, &from, &to));
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_fetch_failed (seq);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 26 && to == 26);

    //  Nothing held in history at all: the whole range is gone
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 0);
    zchat_sequencer_page_end (seq, false);
    assert (log.gaps == 3 && log.gap_from == 26 && log.gap_to == 26);
    assert (zchat_sequencer_last (seq) == 27);

    //  The buffer bound: a full buffer keeps its oldest and lets the newest
    //  go; history covers them
    size_t destroyed = log.destroyed;
    for (uint64_t s = 30; s < 30 + 8; s++) {
        assert (zchat_sequencer_accepts (seq, s));
        s_test_offer (seq, s);
    }
    assert (zchat_sequencer_buffered (seq) == 8);
    assert (!zchat_sequencer_accepts (seq, 38));
    assert (!zchat_sequencer_accepts (seq, 27));
    assert (zchat_sequencer_accepts (seq, 29) && zchat_sequencer_accepts (seq, 28));
    s_test_offer (seq, 38);
    assert (zchat_sequencer_buffered (seq) == 8);
    assert (log.destroyed == destroyed + 1);
    assert (zchat_sequencer_known (seq) == 38);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 28 && to == 29);
    //  An older one takes the newest one's place
    s_test_offer (seq, 29);
    assert (zchat_sequencer_buffered (seq) == 8);
    assert (log.destroyed == destroyed + 2);    //  37 went
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 28 && to == 28);
    s_test_offer (seq, 28);
    assert (zchat_sequencer_last (seq) == 36);
    assert (zchat_sequencer_buffered (seq) == 0);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 37 && to == 38);
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    s_test_offer (seq, 37);
    s_test_offer (seq, 38);
    zchat_sequencer_page_end (seq, false);
    assert (zchat_sequencer_last (seq) == 38);

    //  Out-of-order inserts keep the buffer sorted
    s_test_offer (seq, 43);
    s_test_offer (seq, 41);
    s_test_offer (seq, 42);
    s_test_offer (seq, 40);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 39 && to == 39);
    s_test_offer (seq, 39);
    assert (zchat_sequencer_last (seq) == 43);
    assert (zchat_sequencer_buffered (seq) == 0);

    //  A page that stopped early (more) answers only up to its newest
    //  message. Live traffic moved past all of it while the fetch was out,
    //  as for a subscriber behind on its SUB that fetched the tail a PONG
    //  told of: that is no gap, and the next fetch starts higher
    size_t gaps = log.gaps;
    zchat_sequencer_newest (seq, 60);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 44 && to == 60);
    zchat_sequencer_fetch_sent (seq, from, to);
    for (uint64_t s = 44; s <= 50; s++)
        s_test_offer (seq, s);                  //  live, in order
    assert (zchat_sequencer_last (seq) == 50);
    zchat_sequencer_page_begin (seq, 1);
    for (uint64_t s = 44; s <= 47; s++)
        s_test_offer (seq, s);
    zchat_sequencer_page_end (seq, true);
    assert (log.gaps == gaps && zchat_sequencer_last (seq) == 50);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 51 && to == 60);
    //  A hole inside a page that stopped early is a gap; above it, not
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    s_test_offer (seq, 51);
    s_test_offer (seq, 52);
    s_test_offer (seq, 55);
    s_test_offer (seq, 56);
    zchat_sequencer_page_end (seq, true);
    assert (log.gaps == gaps + 1 && log.gap_from == 53 && log.gap_to == 54);
    assert (zchat_sequencer_last (seq) == 56);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 57 && to == 60);
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    for (uint64_t s = 57; s <= 60; s++)
        s_test_offer (seq, s);
    zchat_sequencer_page_end (seq, false);
    assert (zchat_sequencer_last (seq) == 60 && log.gaps == gaps + 1);
    //  An empty page that claims more answers for the whole range, or
    //  asking again would loop
    zchat_sequencer_newest (seq, 62);
    assert (zchat_sequencer_want (seq, &from, &to));
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    zchat_sequencer_page_end (seq, true);
    assert (log.gaps == gaps + 2 && log.gap_from == 61 && log.gap_to == 62);
    assert (!zchat_sequencer_want (seq, &from, &to));

    zchat_sequencer_destroy (&seq);
    assert (seq == NULL);

    //  Retention removed the start of a range whose later part we already
    //  hold, live (the PUB dropped only its first messages): what we hold
    //  is delivered, not reported gone with the rest
    memset (&log, 0, sizeof (log));
    seq = zchat_sequencer_new (8, out);
    zchat_sequencer_start (seq, 0);
    zchat_sequencer_hold (seq, false);
    zchat_sequencer_newest (seq, 10);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 1 && to == 10);
    zchat_sequencer_fetch_sent (seq, from, to);
    s_test_offer (seq, 4);                      //  live, while the fetch is out
    s_test_offer (seq, 5);
    s_test_offer (seq, 6);
    zchat_sequencer_page_begin (seq, 8);
    assert (log.gaps == 1 && log.gap_from == 1 && log.gap_to == 3);
    assert (log.delivered_count == 3 && log.delivered [0] == 4 && log.delivered [2] == 6);
    s_test_offer (seq, 8);
    s_test_offer (seq, 9);
    s_test_offer (seq, 10);
    zchat_sequencer_page_end (seq, false);
    assert (log.gaps == 2 && log.gap_from == 7 && log.gap_to == 7);
    assert (log.delivered_count == 6 && zchat_sequencer_last (seq) == 10);
    assert (!zchat_sequencer_want (seq, &from, &to));

    //  A page with several holes: each is gone, all settled by this page
    //  rather than one more round trip each
    zchat_sequencer_newest (seq, 20);
    assert (zchat_sequencer_want (seq, &from, &to));
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    s_test_offer (seq, 12);
    s_test_offer (seq, 15);
    s_test_offer (seq, 18);
    zchat_sequencer_page_end (seq, false);
    assert (log.gaps == 6 && log.gap_from == 19 && log.gap_to == 20);
    assert (zchat_sequencer_last (seq) == 20 && zchat_sequencer_buffered (seq) == 0);
    assert (!zchat_sequencer_want (seq, &from, &to));
    //  The same in a page that stopped early, up to its newest message
    zchat_sequencer_newest (seq, 40);
    assert (zchat_sequencer_want (seq, &from, &to));
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    s_test_offer (seq, 23);
    s_test_offer (seq, 25);
    zchat_sequencer_page_end (seq, true);
    assert (log.gaps == 8 && log.gap_from == 24 && log.gap_to == 24);
    assert (zchat_sequencer_last (seq) == 25);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 26 && to == 40);
    zchat_sequencer_destroy (&seq);

    //  A page's message that a full buffer could not keep is no gap:
    //  nothing at or above it is concluded, it is asked for again
    memset (&log, 0, sizeof (log));
    seq = zchat_sequencer_new (4, out);
    zchat_sequencer_start (seq, 0);
    zchat_sequencer_hold (seq, false);
    zchat_sequencer_newest (seq, 20);
    assert (zchat_sequencer_want (seq, &from, &to));
    zchat_sequencer_fetch_sent (seq, from, to);
    for (uint64_t s = 3; s <= 6; s++)
        s_test_offer (seq, s);                  //  live: the buffer is full
    zchat_sequencer_page_begin (seq, 1);
    s_test_offer (seq, 1);
    s_test_offer (seq, 7);                      //  newer than all four: dropped
    s_test_offer (seq, 8);
    zchat_sequencer_page_end (seq, false);
    assert (log.gaps == 1 && log.gap_from == 2 && log.gap_to == 2);
    assert (zchat_sequencer_last (seq) == 6);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 7 && to == 20);
    //  So is one it carried that a full buffer let go for an older one
    //  (a page out of order)
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    for (uint64_t s = 10; s <= 13; s++)
        s_test_offer (seq, s);
    s_test_offer (seq, 8);                      //  13 makes room
    zchat_sequencer_page_end (seq, false);
    assert (log.gaps == 3 && log.gap_from == 9 && log.gap_to == 9);
    assert (zchat_sequencer_last (seq) == 12);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 13 && to == 20);
    zchat_sequencer_destroy (&seq);

    //  Replaying history on join: start below the newest, fetch the rest
    assert (seq == NULL);
    memset (&log, 0, sizeof (log));
    seq = zchat_sequencer_new (8, out);
    zchat_sequencer_start (seq, 7);
    zchat_sequencer_newest (seq, 10);
    s_test_offer (seq, 11);                     //  live, while held
    zchat_sequencer_hold (seq, false);
    assert (log.delivered_count == 0);
    assert (zchat_sequencer_want (seq, &from, &to));
    assert (from == 8 && to == 10);
    zchat_sequencer_fetch_sent (seq, from, to);
    zchat_sequencer_page_begin (seq, 1);
    s_test_offer (seq, 8);
    s_test_offer (seq, 9);
    s_test_offer (seq, 10);
    zchat_sequencer_page_end (seq, false);
    assert (log.delivered_count == 4);
    assert (log.delivered [3] == 11);
    //  Destroy frees what is still buffered
    s_test_offer (seq, 14);
    s_test_offer (seq, 15);
    destroyed = log.destroyed;
    zchat_sequencer_destroy (&seq);
    assert (log.destroyed == destroyed + 2);
    zchat_sequencer_destroy (&seq);             //  idempotent

    if (verbose)
        printf ("OK\n");
}
