//  zchat_event — the events libzchat hands its caller (zchat_client.h),
//  and where they are made: in blocks kept per thread, so that a busy
//  client does not go through malloc's bins once per message.

#include <czmq.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include "zchat_event.h"

//  --------------------------------------------------------------------------
//  Event blocks. A busy client makes and frees one event per message, in
//  bursts of hundreds (a drained batch, then the caller's loop): too many
//  for malloc's small per-thread cache, so each went through its bins at a
//  few hundred instructions a time. Instead, events with a text up to
//  about 1 KiB are made in blocks of one size (2 KiB: at most 8 MiB kept
//  per thread, and never more than were once in use: a sender with a few
//  thousand sends in flight gets their ACKs a group of thousands at a
//  time), and zchat_event_destroy keeps freed blocks on a bounded
//  free list of the calling thread (events may be destroyed in any
//  thread; each thread reuses only what it freed itself). A block is
//  reused only after the caller destroyed its event, so ownership is
//  unchanged. Each thread's list lives on the heap and is linked into a
//  global registry, so that leak checkers see its blocks as reachable; it
//  is freed when its thread ends. Under AddressSanitizer nothing is kept:
//  every destroyed event is really freed, so that a use after destroy is
//  still caught (poisoned blocks on the list would hide themselves from
//  its leak checker).

#define S_BLOCK_SIZE    2048                //  one event + a text up to ~1.3 KB
#define S_BLOCK_TEXT    (S_BLOCK_SIZE - sizeof (zchat_event_t))
#define S_POOL_MAX      4096                //  blocks kept per thread
#if defined (__SANITIZE_ADDRESS__)
#   define S_POOL_ON    false
#else
#   define S_POOL_ON    true
#endif

typedef struct _s_block_t {
    struct _s_block_t *next;
} s_block_t;

typedef struct _s_pool_t {
    s_block_t *head;
    size_t     count;
    struct _s_pool_t *prev, *next;  //  in the registry
} s_pool_t;

static _Thread_local s_pool_t *s_pool;      //  this thread's, or NULL
static s_pool_t *s_pools;                   //  the registry: every thread's
static pthread_mutex_t s_pools_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t s_pool_key;
static pthread_once_t s_pool_once = PTHREAD_ONCE_INIT;
static bool s_pool_key_ok;

//  A thread ends: free its list and what it holds.
static void
s_pool_thread_exit (void *arg)
{
    s_pool_t *pool = (s_pool_t *) arg;
    pthread_mutex_lock (&s_pools_lock);
    if (pool->prev)
        pool->prev->next = pool->next;
    else
        s_pools = pool->next;
    if (pool->next)
        pool->next->prev = pool->prev;
    pthread_mutex_unlock (&s_pools_lock);
    while (pool->head) {
        s_block_t *block = pool->head;
        pool->head = block->next;
        free (block);
    }
    free (pool);
    if (s_pool == pool)
        s_pool = NULL;
}

static void
s_pool_key_create (void)
{
    s_pool_key_ok = pthread_key_create (&s_pool_key, s_pool_thread_exit) == 0;
}

//  This thread's list, made and registered on first use; NULL if that
//  cannot be done (then blocks just go back to malloc).
static s_pool_t *
s_pool_get (void)
{
    if (s_pool)
        return s_pool;
    pthread_once (&s_pool_once, s_pool_key_create);
    if (!s_pool_key_ok)
        return NULL;
    s_pool_t *pool = (s_pool_t *) calloc (1, sizeof (s_pool_t));
    if (!pool)
        return NULL;
    if (pthread_setspecific (s_pool_key, pool)) {
        free (pool);
        return NULL;
    }
    pthread_mutex_lock (&s_pools_lock);
    pool->next = s_pools;
    if (s_pools)
        s_pools->prev = pool;
    s_pools = pool;
    pthread_mutex_unlock (&s_pools_lock);
    s_pool = pool;
    return pool;
}

//  A block of S_BLOCK_SIZE bytes, cached or new; NULL if out of memory.
static void *
s_block_alloc (void)
{
    s_pool_t *pool = s_pool;
    s_block_t *block = pool? pool->head: NULL;
    if (!block)
        return malloc (S_BLOCK_SIZE);
    pool->head = block->next;
    pool->count--;
    return block;
}

//  Free a block: cached if it can hold a block's worth and the list has
//  room, else back to malloc.
static void
s_block_free (void *memory)
{
    s_pool_t *pool = s_pool_get ();
    if (!S_POOL_ON || !pool || pool->count >= S_POOL_MAX
    ||  malloc_usable_size (memory) < S_BLOCK_SIZE) {
        free (memory);
        return;
    }
    s_block_t *block = (s_block_t *) memory;
    block->next = pool->head;
    pool->head = block;
    pool->count++;
}

//  --------------------------------------------------------------------------
//  Zero an event, except for the bytes behind the first of its two long
//  strings (topic, reason): the header promises empty strings in unused
//  fields, not zero bytes behind them, and skipping those 500 bytes halves
//  the cache lines a new event touches (a flat-out subscriber makes one
//  per message, in pool blocks that have gone cold).

_Static_assert (offsetof (zchat_event_t, topic) < offsetof (zchat_event_t, reason),
                "s_event_clear expects topic before reason");

static void
s_event_clear (zchat_event_t *event)
{
    char *base = (char *) event;
    size_t topic_at = offsetof (zchat_event_t, topic);
    size_t topic_end = topic_at + sizeof (event->topic);
    size_t reason_at = offsetof (zchat_event_t, reason);
    size_t reason_end = reason_at + sizeof (event->reason);
    memset (base, 0, topic_at + 1);
    memset (base + topic_end, 0, reason_at + 1 - topic_end);
    memset (base + reason_end, 0, sizeof (zchat_event_t) - reason_end);
}

//  --------------------------------------------------------------------------
//  A new, cleared event of type with a NUL-terminated copy of text (text
//  NULL: no text). The text lives in the same allocation, right behind the
//  event. Returns NULL only if out of memory.

zchat_event_t *
zchat_event_new_text (zchat_event_type_t type, const char *text, size_t text_size)
{
    zchat_event_t *event = (zchat_event_t *)
        (!text || text_size < S_BLOCK_TEXT? s_block_alloc ():
                                            malloc (sizeof (zchat_event_t) + text_size + 1));
    if (!event)
        return NULL;
    s_event_clear (event);
    event->type = type;
    if (text) {
        event->text = (char *) (event + 1);
        if (text_size)
            memcpy (event->text, text, text_size);
        event->text [text_size] = 0;
        event->text_size = text_size;
    }
    return event;
}

//  --------------------------------------------------------------------------
//  A new, zeroed event of type. Returns NULL only if out of memory.

zchat_event_t *
zchat_event_new (zchat_event_type_t type)
{
    return zchat_event_new_text (type, NULL, 0);
}

//  --------------------------------------------------------------------------
//  Free an event and all it owns; nulls *self_p. A text that is not the
//  one inside the event's own allocation (a caller may have put its own
//  there) is freed on its own, as before.

void
zchat_event_destroy (zchat_event_t **self_p)
{
    assert (self_p);
    zchat_event_t *self = *self_p;
    if (self) {
        if (self->text != (char *) (self + 1))
            free (self->text);
        free (self->items);
        s_block_free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Name of an event type.

const char *
zchat_event_type_name (zchat_event_type_t type)
{
    switch (type) {
        case ZCHAT_EV_MESSAGE:      return "message";
        case ZCHAT_EV_DM:           return "dm";
        case ZCHAT_EV_JOINED:       return "joined";
        case ZCHAT_EV_LEFT:         return "left";
        case ZCHAT_EV_JOIN:         return "join";
        case ZCHAT_EV_LEAVE:        return "leave";
        case ZCHAT_EV_QUIT:         return "quit";
        case ZCHAT_EV_NICK:         return "nick";
        case ZCHAT_EV_TOPIC:        return "topic";
        case ZCHAT_EV_ACK:          return "ack";
        case ZCHAT_EV_OK:           return "ok";
        case ZCHAT_EV_ERROR:        return "error";
        case ZCHAT_EV_MEMBERS:      return "members";
        case ZCHAT_EV_ROOMS:        return "rooms";
        case ZCHAT_EV_HISTORY:      return "history";
        case ZCHAT_EV_GAP:          return "gap";
        case ZCHAT_EV_CONNECTED:    return "connected";
        case ZCHAT_EV_DISCONNECTED: return "disconnected";
    }
    return "unknown";
}

//  --------------------------------------------------------------------------
//  Self test

//  Events made and destroyed in a thread of their own: its list of blocks
//  goes when the thread ends, while the main thread's stays.
static void *
s_test_event_thread (void *arg)
{
    (void) arg;
    zchat_event_t *events [16];
    for (int i = 0; i < 16; i++) {
        events [i] = zchat_event_new_text (ZCHAT_EV_MESSAGE, "t", 1);
        assert (events [i]);
    }
    for (int i = 0; i < 16; i++)
        zchat_event_destroy (&events [i]);
    assert (s_pool && s_pool != (s_pool_t *) arg);
    return NULL;
}

//  Lists in the registry, the main thread's among them.
static size_t
s_test_pools (void)
{
    size_t count = 0;
    bool main_found = false;
    pthread_mutex_lock (&s_pools_lock);
    for (s_pool_t *pool = s_pools; pool; pool = pool->next, count++)
        if (pool == s_pool)
            main_found = true;
    pthread_mutex_unlock (&s_pools_lock);
    assert (main_found);
    return count;
}

void
zchat_event_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_event: ");

    //  Event names
    assert (streq (zchat_event_type_name (ZCHAT_EV_MESSAGE), "message"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_DM), "dm"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_JOINED), "joined"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_LEFT), "left"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_JOIN), "join"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_LEAVE), "leave"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_QUIT), "quit"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_NICK), "nick"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_TOPIC), "topic"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_ACK), "ack"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_OK), "ok"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_ERROR), "error"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_MEMBERS), "members"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_ROOMS), "rooms"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_HISTORY), "history"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_GAP), "gap"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_CONNECTED), "connected"));
    assert (streq (zchat_event_type_name (ZCHAT_EV_DISCONNECTED), "disconnected"));

    //  Events free what they own
    zchat_event_t *event = zchat_event_new_text (ZCHAT_EV_MEMBERS, "hi", 2);
    assert (event);
    assert (streq (event->text, "hi") && event->text_size == 2);
    assert (event->id == 0 && event->seq == 0 && *event->room == 0 && !event->items);
    event->items = (zchat_list_item_t *) calloc (3, sizeof (zchat_list_item_t));
    event->item_count = 3;
    zchat_event_destroy (&event);
    assert (event == NULL);
    zchat_event_destroy (&event);
    //  A text the caller put in place of ours is its own allocation
    event = zchat_event_new_text (ZCHAT_EV_DM, "", 0);
    assert (event && event->text && *event->text == 0 && event->text_size == 0);
    event->text = strdup ("replaced");
    zchat_event_destroy (&event);
    event = zchat_event_new (ZCHAT_EV_OK);
    assert (event && event->text == NULL);
    event->text = strdup ("set");
    zchat_event_destroy (&event);
    //  Blocks come back from the thread's cache zeroed; long texts get an
    //  allocation of their own; an event the caller made is freed
    assert (sizeof (zchat_event_t) + 64 < S_BLOCK_SIZE);
    zchat_event_t *events [8];
    for (int i = 0; i < 8; i++) {
        events [i] = zchat_event_new_text (ZCHAT_EV_MESSAGE, "abc", 3);
        assert (events [i]);
        events [i]->seq = 99;
        events [i]->code = 7;
        events [i]->item_count = 3;
        snprintf (events [i]->room, sizeof (events [i]->room), "lobby");
        memset (events [i]->topic, 't', sizeof (events [i]->topic) - 1);
        memset (events [i]->reason, 'r', sizeof (events [i]->reason) - 1);
    }
    for (int i = 0; i < 8; i++)
        zchat_event_destroy (&events [i]);
    //  Recycled blocks come back cleared: every field zero, every string
    //  empty (a pool block must not show the last event's topic or reason)
    for (int i = 0; i < 8; i++) {
        events [i] = i % 2? zchat_event_new (ZCHAT_EV_ACK):
                             zchat_event_new_text (ZCHAT_EV_DM, "d", 1);
        assert (events [i] && events [i]->seq == 0 && *events [i]->room == 0);
        assert (events [i]->code == 0 && events [i]->item_count == 0);
        assert (events [i]->items == NULL && !events [i]->action);
        assert (strlen (events [i]->topic) == 0 && strlen (events [i]->reason) == 0);
        assert (i % 2? events [i]->text == NULL: streq (events [i]->text, "d"));
    }
    for (int i = 0; i < 8; i++)
        zchat_event_destroy (&events [i]);
    char *long_text = (char *) malloc (S_BLOCK_SIZE * 2);
    assert (long_text);
    memset (long_text, 'y', S_BLOCK_SIZE * 2);
    event = zchat_event_new_text (ZCHAT_EV_MESSAGE, long_text, S_BLOCK_SIZE * 2);
    assert (event && event->text_size == S_BLOCK_SIZE * 2);
    assert (event->text [S_BLOCK_SIZE * 2 - 1] == 'y' && event->text [S_BLOCK_SIZE * 2] == 0);
    zchat_event_destroy (&event);
    free (long_text);
    event = (zchat_event_t *) calloc (1, sizeof (zchat_event_t));
    assert (event);
    zchat_event_destroy (&event);
    assert (event == NULL);
    s_pool_t *main_pool = s_pool;
    assert (main_pool);
    assert (S_POOL_ON? main_pool->count > 0: main_pool->count == 0);
    size_t pools_before = s_test_pools ();
    pthread_t thread;
    int rc = pthread_create (&thread, NULL, s_test_event_thread, main_pool);
    assert (rc == 0);
    rc = pthread_join (thread, NULL);
    assert (rc == 0);
    assert (s_test_pools () == pools_before);
    assert (s_pool == main_pool);

    if (verbose)
        printf ("OK\n");
}
