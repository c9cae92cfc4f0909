//  zchat_outbox — the client's unacknowledged sends (SAY and DM).
//
//  An entry is one allocation with its text inline; the id map finds it,
//  and intrusive links thread it through the send order, through either
//  the unsent queue or the resend list, and (a DM that went out) through
//  the DMs out, so every operation here is O(1) (the id map's usual single
//  probe aside).
//
//  A sender adds and removes one entry per message, thousands in flight:
//  entries with a text up to about 1 KiB are all made the same size, and
//  a removed one is kept on a bounded spare list for the next add,
//  instead of going through malloc's bins every time. The bound is a
//  window of a few thousand sends, acknowledged a group at a time: with a
//  bound of 512 and 2,048 in flight, three in four entries went back to
//  malloc, which handed them out again from fresh pages (page faults),
//  a fifth of a flat-out sender's CPU. The list only ever holds entries
//  that were once in use together, at most 6 MiB. Under AddressSanitizer
//  none are kept, so that a use after remove is still caught.

#include <czmq.h>
#include "zchat_outbox.h"
#include "zchat_idmap.h"

#define S_ENTRY_SIZE    1536    //  an entry with a text up to ~1.4 KB
#define S_ENTRY_TEXT    (S_ENTRY_SIZE - sizeof (zchat_outbox_entry_t))
#if defined (__SANITIZE_ADDRESS__)
#   define S_SPARE_MAX  0
#else
#   define S_SPARE_MAX  4096    //  spare entries kept
#endif

//  A list threads its entries through the links at offset links in them,
//  so that an entry can be on several lists at once.
typedef struct {
    zchat_outbox_entry_t *head, *tail;
    size_t links;
} s_list_t;

struct _zchat_outbox_t {
    zchat_idmap_t *ids;
    s_list_t order;             //  order links
    s_list_t unsent;            //  queue links, entries with unsent set
    s_list_t resend;            //  queue links, entries with unsent clear
    zchat_outbox_entry_t *spare;    //  removed short entries, order.next links
    size_t   spare_count;
    size_t   sent_count;        //  entries on the resend list
    size_t   dms_out;           //  DMs with went_out set
    s_list_t dms;               //  dms links, those DMs by dm_ordinal
    uint64_t dm_next;           //  dm_ordinal of the next DM out
};

//  --------------------------------------------------------------------------
//  The lists

static zchat_outbox_link_t *
s_link (s_list_t *list, zchat_outbox_entry_t *entry)
{
    return (zchat_outbox_link_t *) ((char *) entry + list->links);
}

static void
s_list_append (s_list_t *list, zchat_outbox_entry_t *entry)
{
    s_link (list, entry)->prev = list->tail;
    s_link (list, entry)->next = NULL;
    if (list->tail)
        s_link (list, list->tail)->next = entry;
    else
        list->head = entry;
    list->tail = entry;
}

//  Before at, or at the end if at is NULL
static void
s_list_insert (s_list_t *list, zchat_outbox_entry_t *at, zchat_outbox_entry_t *entry)
{
    if (!at) {
        s_list_append (list, entry);
        return;
    }
    zchat_outbox_entry_t *prev = s_link (list, at)->prev;
    s_link (list, entry)->prev = prev;
    s_link (list, entry)->next = at;
    s_link (list, at)->prev = entry;
    if (prev)
        s_link (list, prev)->next = entry;
    else
        list->head = entry;
}

static void
s_list_remove (s_list_t *list, zchat_outbox_entry_t *entry)
{
    zchat_outbox_link_t *link = s_link (list, entry);
    if (link->prev)
        s_link (list, link->prev)->next = link->next;
    else
        list->head = link->next;
    if (link->next)
        s_link (list, link->next)->prev = link->prev;
    else
        list->tail = link->prev;
    link->prev = link->next = NULL;
}

//  The queue an entry is on now
static s_list_t *
s_queue_of (zchat_outbox_t *self, zchat_outbox_entry_t *entry)
{
    return entry->unsent? &self->unsent: &self->resend;
}

//  An entry no longer in use: spare if it is of the short size and there
//  is room, else freed.
static void
s_entry_free (zchat_outbox_t *self, zchat_outbox_entry_t *entry)
{
    if (entry->text_size > S_ENTRY_TEXT || self->spare_count + 1 > S_SPARE_MAX) {
        free (entry);
        return;
    }
    entry->order.next = self->spare;
    self->spare = entry;
    self->spare_count++;
}

//  --------------------------------------------------------------------------
//  Create an empty outbox.

zchat_outbox_t *
zchat_outbox_new (void)
{
    zchat_outbox_t *self = (zchat_outbox_t *) zmalloc (sizeof (zchat_outbox_t));
    if (!self)
        return NULL;
    self->ids = zchat_idmap_new ();
    if (!self->ids) {
        free (self);
        return NULL;
    }
    self->order.links = offsetof (zchat_outbox_entry_t, order);
    self->unsent.links = offsetof (zchat_outbox_entry_t, queue);
    self->resend.links = offsetof (zchat_outbox_entry_t, queue);
    self->dms.links = offsetof (zchat_outbox_entry_t, dms);
    return self;
}

//  --------------------------------------------------------------------------
//  Free the outbox and its entries.

void
zchat_outbox_destroy (zchat_outbox_t **self_p)
{
    assert (self_p);
    zchat_outbox_t *self = *self_p;
    if (self) {
        zchat_outbox_entry_t *entry = self->order.head;
        while (entry) {
            zchat_outbox_entry_t *next = entry->order.next;
            free (entry);
            entry = next;
        }
        while (self->spare) {
            entry = self->spare;
            self->spare = entry->order.next;
            free (entry);
        }
        zchat_idmap_destroy (&self->ids);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Add a send.

zchat_outbox_entry_t *
zchat_outbox_add (zchat_outbox_t *self, uint64_t id, uint8_t type, uint8_t kind,
                  const char *target, const char *text, size_t text_size, int64_t now)
{
    assert (self);
    assert (target);
    assert (text || text_size == 0);
    size_t target_size = strlen (target);
    assert (target_size <= ZCHAT_MAX_ROOM);
    zchat_outbox_entry_t *entry = NULL;
    if (text_size > S_ENTRY_TEXT)
        entry = (zchat_outbox_entry_t *) malloc (sizeof (zchat_outbox_entry_t) + text_size);
    else
    if (self->spare) {
        entry = self->spare;
        self->spare = entry->order.next;
        self->spare_count--;
    }
    else
        entry = (zchat_outbox_entry_t *) malloc (S_ENTRY_SIZE);
    if (!entry)
        return NULL;
    entry->id = id;
    entry->type = type;
    entry->kind = kind;
    entry->unsent = true;
    entry->went_out = false;
    memcpy (entry->target, target, target_size + 1);
    entry->first_ms = now;
    entry->last_ms = now;
    entry->text_size = text_size;
    if (text_size)
        memcpy (entry->text, text, text_size);
    if (zchat_idmap_insert (self->ids, id, entry)) {
        s_entry_free (self, entry);
        return NULL;
    }
    s_list_append (&self->order, entry);
    s_list_append (&self->unsent, entry);
    return entry;
}

zchat_outbox_entry_t *
zchat_outbox_lookup (zchat_outbox_t *self, uint64_t id)
{
    assert (self);
    return (zchat_outbox_entry_t *) zchat_idmap_lookup (self->ids, id);
}

//  --------------------------------------------------------------------------
//  Remove and free an entry.

void
zchat_outbox_remove (zchat_outbox_t *self, zchat_outbox_entry_t *entry)
{
    assert (self);
    assert (entry);
    zchat_idmap_delete (self->ids, entry->id);
    s_list_remove (&self->order, entry);
    s_list_remove (s_queue_of (self, entry), entry);
    if (!entry->unsent) {
        assert (self->sent_count > 0);
        self->sent_count--;
    }
    if (entry->went_out && entry->type == ZCHAT_DM) {
        assert (self->dms_out > 0);
        self->dms_out--;
        s_list_remove (&self->dms, entry);
    }
    s_entry_free (self, entry);
}

size_t
zchat_outbox_size (zchat_outbox_t *self)
{
    assert (self);
    return zchat_idmap_size (self->ids);
}

size_t
zchat_outbox_in_flight (zchat_outbox_t *self)
{
    assert (self);
    return self->sent_count;
}

size_t
zchat_outbox_dms_out (zchat_outbox_t *self)
{
    assert (self);
    return self->dms_out;
}

size_t
zchat_outbox_dm_span (zchat_outbox_t *self)
{
    assert (self);
    return self->dms.head? (size_t) (self->dm_next - self->dms.head->dm_ordinal): 0;
}

zchat_outbox_entry_t *
zchat_outbox_oldest (zchat_outbox_t *self)
{
    assert (self);
    return self->order.head;
}

zchat_outbox_entry_t *
zchat_outbox_next_unsent (zchat_outbox_t *self)
{
    assert (self);
    return self->unsent.head;
}

zchat_outbox_entry_t *
zchat_outbox_stalest (zchat_outbox_t *self)
{
    assert (self);
    return self->resend.head;
}

//  --------------------------------------------------------------------------
//  Move an entry between the unsent queue and the resend list.

void
zchat_outbox_sent (zchat_outbox_t *self, zchat_outbox_entry_t *entry, int64_t now)
{
    assert (self);
    assert (entry);
    s_list_remove (s_queue_of (self, entry), entry);
    if (entry->unsent)
        self->sent_count++;
    if (!entry->went_out && entry->type == ZCHAT_DM) {
        self->dms_out++;
        entry->dm_ordinal = self->dm_next++;
        s_list_append (&self->dms, entry);
    }
    entry->went_out = true;
    entry->unsent = false;
    entry->last_ms = now;
    s_list_append (&self->resend, entry);
}

void
zchat_outbox_unsend (zchat_outbox_t *self, zchat_outbox_entry_t *entry)
{
    assert (self);
    assert (entry);
    s_list_remove (s_queue_of (self, entry), entry);
    if (!entry->unsent) {
        assert (self->sent_count > 0);
        self->sent_count--;
    }
    entry->unsent = true;
    //  Back in send order (ids grow with it): a resend goes before what
    //  never went out, which the DM window or a 429 may hold back, while
    //  the resend, already in the window, may always go. (Only resends
    //  refused before are older, so the walk is short.)
    zchat_outbox_entry_t *at = self->unsent.head;
    while (at && at->id < entry->id)
        at = at->queue.next;
    s_list_insert (&self->unsent, at, entry);
}

void
zchat_outbox_unsend_all (zchat_outbox_t *self)
{
    assert (self);
    self->unsent.head = self->unsent.tail = NULL;
    self->resend.head = self->resend.tail = NULL;
    self->sent_count = 0;
    for (zchat_outbox_entry_t *entry = self->order.head; entry; entry = entry->order.next) {
        entry->unsent = true;
        s_list_append (&self->unsent, entry);
    }
}

size_t
zchat_outbox_unsend_from (zchat_outbox_t *self, zchat_outbox_entry_t *entry)
{
    assert (self);
    assert (entry);
    if (entry->unsent)
        return 0;
    //  Walk back from the newest, merging each into the unsent queue by
    //  id (send order), which the queue keeps: it may already hold resends
    //  the DEALER did not take (zchat_outbox_unsend), older than some of
    //  these and newer than others. Both walks go backwards only.
    size_t moved = 0;
    zchat_outbox_entry_t *after = self->unsent.tail;
    for (zchat_outbox_entry_t *at = self->order.tail; at; at = at->order.prev) {
        if (!at->unsent) {
            s_list_remove (&self->resend, at);
            at->unsent = true;
            while (after && after->id > at->id)
                after = after->queue.prev;
            s_list_insert (&self->unsent, after? after->queue.next: self->unsent.head, at);
            moved++;
        }
        if (at == entry)
            break;
    }
    assert (self->sent_count >= moved);
    self->sent_count -= moved;
    return moved;
}

//  --------------------------------------------------------------------------
//  Self test

void
zchat_outbox_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_outbox: ");
    zchat_outbox_t *outbox = zchat_outbox_new ();
    assert (outbox);
    assert (zchat_outbox_size (outbox) == 0);
    assert (!zchat_outbox_oldest (outbox));
    assert (!zchat_outbox_next_unsent (outbox));
    assert (!zchat_outbox_stalest (outbox));

    //  Added entries wait, in order, with their text copied
    char text [] = "hello";
    zchat_outbox_entry_t *a = zchat_outbox_add (outbox, 10, ZCHAT_SAY, ZCHAT_KIND_TEXT,
                                                "lobby", text, 5, 100);
    text [0] = 'j';
    zchat_outbox_entry_t *b = zchat_outbox_add (outbox, 11, ZCHAT_DM, ZCHAT_KIND_ACTION,
                                                "bob", "", 0, 110);
    zchat_outbox_entry_t *c = zchat_outbox_add (outbox, 12, ZCHAT_SAY, ZCHAT_KIND_TEXT,
                                                "lobby", "x", 1, 120);
    assert (a && b && c);
    assert (zchat_outbox_add (outbox, 10, ZCHAT_SAY, 0, "lobby", "", 0, 130) == NULL);
    assert (zchat_outbox_size (outbox) == 3);
    assert (memcmp (a->text, "hello", 5) == 0 && a->text_size == 5);
    assert (streq (b->target, "bob") && b->type == ZCHAT_DM && b->kind == ZCHAT_KIND_ACTION);
    assert (zchat_outbox_lookup (outbox, 11) == b);
    assert (zchat_outbox_lookup (outbox, 13) == NULL);
    assert (zchat_outbox_next_unsent (outbox) == a && a->unsent);
    assert (zchat_outbox_oldest (outbox) == a);

    //  Sending moves them to the resend list, least recently sent first
    assert (zchat_outbox_in_flight (outbox) == 0);
    zchat_outbox_sent (outbox, a, 200);
    zchat_outbox_sent (outbox, b, 201);
    assert (zchat_outbox_in_flight (outbox) == 2);
    assert (zchat_outbox_next_unsent (outbox) == c);
    assert (zchat_outbox_stalest (outbox) == a && !a->unsent && a->last_ms == 200);
    zchat_outbox_sent (outbox, a, 300);        //  a resend
    assert (zchat_outbox_stalest (outbox) == b);
    assert (zchat_outbox_in_flight (outbox) == 2);
    assert (zchat_outbox_oldest (outbox) == a);     //  send order stays

    //  A resend that cannot go out goes again before what never went out,
    //  in send order
    zchat_outbox_unsend (outbox, b);
    assert (zchat_outbox_in_flight (outbox) == 1);
    assert (zchat_outbox_stalest (outbox) == a);
    assert (zchat_outbox_next_unsent (outbox) == b);
    assert (b->queue.next == c && c->queue.next == NULL);
    zchat_outbox_unsend (outbox, a);
    assert (zchat_outbox_next_unsent (outbox) == a && a->queue.next == b);
    zchat_outbox_sent (outbox, a, 310);
    assert (zchat_outbox_next_unsent (outbox) == b);

    //  Removal from the middle of both orders
    zchat_outbox_remove (outbox, c);
    assert (zchat_outbox_size (outbox) == 2);
    assert (zchat_outbox_lookup (outbox, 12) == NULL);
    assert (zchat_outbox_next_unsent (outbox) == b && b->queue.next == NULL);
    assert (a->order.next == b && b->order.prev == a);

    //  A new session: everything again, in send order
    zchat_outbox_entry_t *d = zchat_outbox_add (outbox, 13, ZCHAT_SAY, 0, "lobby", "y", 1, 400);
    zchat_outbox_sent (outbox, d, 400);
    assert (zchat_outbox_in_flight (outbox) == 2);
    zchat_outbox_unsend_all (outbox);
    assert (zchat_outbox_in_flight (outbox) == 0);
    assert (!zchat_outbox_stalest (outbox));
    assert (zchat_outbox_next_unsent (outbox) == a);
    assert (a->queue.next == b && b->queue.next == d && d->queue.next == NULL);
    assert (a->unsent && b->unsent && d->unsent);

    //  A refused DM: it and everything that went out after it (a SAY as
    //  well) go out again first, in send order; what went out before it
    //  stays in flight, and what never went out keeps its place
    zchat_outbox_sent (outbox, a, 500);
    zchat_outbox_sent (outbox, b, 500);
    zchat_outbox_sent (outbox, d, 500);
    zchat_outbox_entry_t *e = zchat_outbox_add (outbox, 14, ZCHAT_SAY, 0, "lobby", "z", 1, 510);
    assert (zchat_outbox_next_unsent (outbox) == e);
    assert (zchat_outbox_in_flight (outbox) == 3);
    assert (b->type == ZCHAT_DM && d->type == ZCHAT_SAY);
    size_t moved = zchat_outbox_unsend_from (outbox, b);
    assert (moved == 2);
    assert (zchat_outbox_in_flight (outbox) == 1);
    assert (zchat_outbox_next_unsent (outbox) == b);
    assert (b->queue.next == d && d->queue.next == e && e->queue.next == NULL);
    assert (b->unsent && d->unsent && !a->unsent);
    assert (zchat_outbox_stalest (outbox) == a && a->queue.next == NULL);
    moved = zchat_outbox_unsend_from (outbox, b);
    assert (moved == 0);                //  already waiting
    moved = zchat_outbox_unsend_from (outbox, d);
    assert (moved == 0);                //  its own refusal finds it waiting
    //  A resend the DEALER did not take waits already (unsend), between
    //  sends still in flight: a refusal of an older one puts them all
    //  back in send order, not the refused run ahead of the waiting one
    {
        zchat_outbox_t *box = zchat_outbox_new ();
        assert (box);
        zchat_outbox_entry_t *s1 = zchat_outbox_add (box, 1, ZCHAT_SAY, 0, "r", "1", 1, 0);
        zchat_outbox_entry_t *s2 = zchat_outbox_add (box, 2, ZCHAT_SAY, 0, "r", "2", 1, 0);
        zchat_outbox_entry_t *s3 = zchat_outbox_add (box, 3, ZCHAT_SAY, 0, "r", "3", 1, 0);
        zchat_outbox_entry_t *s4 = zchat_outbox_add (box, 4, ZCHAT_SAY, 0, "r", "4", 1, 0);
        assert (s1 && s2 && s3 && s4);
        zchat_outbox_sent (box, s1, 1);
        zchat_outbox_sent (box, s2, 1);
        zchat_outbox_sent (box, s3, 1);
        zchat_outbox_unsend (box, s2);
        assert (zchat_outbox_next_unsent (box) == s2 && s2->queue.next == s4);
        assert (zchat_outbox_unsend_from (box, s3) == 1);
        assert (zchat_outbox_next_unsent (box) == s2);
        assert (s2->queue.next == s3 && s3->queue.next == s4 && s4->queue.next == NULL);
        assert (zchat_outbox_unsend_from (box, s1) == 1);
        assert (zchat_outbox_next_unsent (box) == s1 && s1->queue.next == s2);
        assert (s2->queue.next == s3 && s3->queue.next == s4 && s4->queue.next == NULL);
        assert (s4->queue.prev == s3 && s3->queue.prev == s2 && s2->queue.prev == s1);
        assert (zchat_outbox_in_flight (box) == 0 && !zchat_outbox_stalest (box));
        zchat_outbox_destroy (&box);
    }
    zchat_outbox_entry_t *f = zchat_outbox_add (outbox, 15, ZCHAT_SAY, 0, "lobby", "f", 1, 520);
    assert (f);
    zchat_outbox_sent (outbox, f, 520);
    assert (zchat_outbox_in_flight (outbox) == 2);
    zchat_outbox_remove (outbox, f);    //  answered while in flight
    assert (zchat_outbox_in_flight (outbox) == 1);
    zchat_outbox_remove (outbox, e);
    zchat_outbox_unsend_all (outbox);

    //  Many entries: ids found, order kept
    for (uint64_t id = 1000; id < 3000; id++)
        assert (zchat_outbox_add (outbox, id, ZCHAT_SAY, 0, "r", "t", 1, (int64_t) id));
    for (uint64_t id = 1000; id < 3000; id += 2)
        zchat_outbox_remove (outbox, zchat_outbox_lookup (outbox, id));
    assert (zchat_outbox_size (outbox) == 3 + 1000);
    zchat_outbox_entry_t *entry = zchat_outbox_oldest (outbox);
    size_t count = 0;
    uint64_t last_id = 0;
    for (; entry; entry = entry->order.next, count++) {
        assert (entry->id > last_id);
        last_id = entry->id;
    }
    assert (count == 1003);
    //  Spare entries are reused whole: text, target and links all new
    entry = zchat_outbox_add (outbox, 5000, ZCHAT_DM, ZCHAT_KIND_ACTION, "carol",
                              "longer text", 11, 500);
    assert (entry && entry->unsent && entry->order.next == NULL && entry->queue.next == NULL);
    assert (memcmp (entry->text, "longer text", 11) == 0 && streq (entry->target, "carol"));
    zchat_outbox_remove (outbox, entry);
    char *big = (char *) malloc (S_ENTRY_SIZE * 2);
    assert (big);
    memset (big, 'z', S_ENTRY_SIZE * 2);
    entry = zchat_outbox_add (outbox, 5001, ZCHAT_SAY, 0, "r", big, S_ENTRY_SIZE * 2, 501);
    assert (entry && entry->text_size == S_ENTRY_SIZE * 2);
    assert (entry->text [S_ENTRY_SIZE * 2 - 1] == 'z');
    zchat_outbox_remove (outbox, entry);
    free (big);
    for (uint64_t id = 1001; id < 3000; id += 2)
        zchat_outbox_remove (outbox, zchat_outbox_lookup (outbox, id));
    assert (zchat_outbox_size (outbox) == 3);
    zchat_outbox_destroy (&outbox);
    zchat_outbox_destroy (&outbox);

    //  A DM counts from the first time it goes out until it is removed,
    //  whichever queue it is on meanwhile; a SAY never counts
    outbox = zchat_outbox_new ();
    assert (outbox);
    zchat_outbox_entry_t *say = zchat_outbox_add (outbox, 1, ZCHAT_SAY, 0, "r", "s", 1, 0);
    zchat_outbox_entry_t *dm1 = zchat_outbox_add (outbox, 2, ZCHAT_DM, 0, "bob", "1", 1, 0);
    zchat_outbox_entry_t *dm2 = zchat_outbox_add (outbox, 3, ZCHAT_DM, 0, "bob", "2", 1, 0);
    zchat_outbox_entry_t *dm3 = zchat_outbox_add (outbox, 4, ZCHAT_DM, 0, "bob", "3", 1, 0);
    assert (say && dm1 && dm2 && dm3);
    assert (zchat_outbox_dms_out (outbox) == 0 && !dm1->went_out);
    zchat_outbox_sent (outbox, say, 10);
    zchat_outbox_sent (outbox, dm1, 10);
    assert (zchat_outbox_dms_out (outbox) == 1 && dm1->went_out && say->went_out);
    zchat_outbox_sent (outbox, dm1, 20);       //  a resend
    assert (zchat_outbox_dms_out (outbox) == 1);
    zchat_outbox_unsend (outbox, dm1);          //  to go again: still out
    assert (zchat_outbox_dms_out (outbox) == 1);
    zchat_outbox_unsend_all (outbox);
    assert (zchat_outbox_dms_out (outbox) == 1 && dm1->went_out && !dm2->went_out);
    zchat_outbox_sent (outbox, say, 30);
    zchat_outbox_sent (outbox, dm1, 30);
    zchat_outbox_sent (outbox, dm2, 30);
    assert (zchat_outbox_dms_out (outbox) == 2);
    assert (zchat_outbox_unsend_from (outbox, dm1) == 2);
    assert (zchat_outbox_dms_out (outbox) == 2);
    zchat_outbox_remove (outbox, dm2);
    zchat_outbox_remove (outbox, say);
    assert (zchat_outbox_dms_out (outbox) == 1);
    zchat_outbox_remove (outbox, dm3);          //  never went out
    assert (zchat_outbox_dms_out (outbox) == 1);
    zchat_outbox_remove (outbox, dm1);
    assert (zchat_outbox_dms_out (outbox) == 0 && zchat_outbox_size (outbox) == 0);
    assert (zchat_outbox_dm_span (outbox) == 0);
    zchat_outbox_destroy (&outbox);

    //  The span runs from the oldest DM still here: the ACKs of the
    //  newer ones do not shorten it, that of the oldest does, and a
    //  resend does not lengthen it
    outbox = zchat_outbox_new ();
    assert (outbox);
    zchat_outbox_entry_t *dms [5];
    for (int i = 0; i < 5; i++) {
        dms [i] = zchat_outbox_add (outbox, 10 + (uint64_t) i, ZCHAT_DM, 0, "bob", "d", 1, 0);
        assert (dms [i]);
    }
    assert (zchat_outbox_dm_span (outbox) == 0);
    for (int i = 0; i < 4; i++)
        zchat_outbox_sent (outbox, dms [i], 10);
    assert (zchat_outbox_dm_span (outbox) == 4 && zchat_outbox_dms_out (outbox) == 4);
    zchat_outbox_remove (outbox, dms [1]);
    zchat_outbox_remove (outbox, dms [3]);
    assert (zchat_outbox_dm_span (outbox) == 4 && zchat_outbox_dms_out (outbox) == 2);
    zchat_outbox_sent (outbox, dms [0], 20);    //  a resend
    zchat_outbox_sent (outbox, dms [4], 20);
    assert (zchat_outbox_dm_span (outbox) == 5 && zchat_outbox_dms_out (outbox) == 3);
    zchat_outbox_remove (outbox, dms [0]);
    assert (zchat_outbox_dm_span (outbox) == 3);
    zchat_outbox_remove (outbox, dms [2]);
    assert (zchat_outbox_dm_span (outbox) == 1);
    zchat_outbox_remove (outbox, dms [4]);
    assert (zchat_outbox_dm_span (outbox) == 0 && zchat_outbox_size (outbox) == 0);
    zchat_outbox_destroy (&outbox);
    if (verbose)
        printf ("OK\n");
}
