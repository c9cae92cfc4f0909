//  zchat_arena — the open group's bytes, lent to publications instead of
//  copied. See zchat_arena.h for why.

#include "zchat_arena.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _zchat_arena_t {
    atomic_size_t refs;         //  the owner's 1 until destroyed, 1 per loan
    atomic_bool counted;        //  given up with loans out: in s_out
    size_t capacity;
    uint8_t data [];
};

//  Given-up arenas with loans out, and the one spare: process-wide, since
//  loans come back on libzmq's threads after their server may be gone.
//  Under ASan there is no spare, so that a use after the last release is
//  a use after free.
static atomic_size_t s_out;
static _Atomic (zchat_arena_t *) s_spare;
#if defined (__SANITIZE_ADDRESS__)
#   define S_KEEP_SPARE false
#else
#   define S_KEEP_SPARE true
#endif

//  The last reference went: keep it as the spare if there is none, else
//  free it.
static void
s_arena_gone (zchat_arena_t *self)
{
    if (atomic_load (&self->counted))
        atomic_fetch_sub (&s_out, 1);
    atomic_store (&self->counted, false);
    zchat_arena_t *none = NULL;
    if (!S_KEEP_SPARE || !atomic_compare_exchange_strong (&s_spare, &none, self))
        free (self);
}

//  --------------------------------------------------------------------------

zchat_arena_t *
zchat_arena_new (size_t capacity)
{
    zchat_arena_t *self = atomic_exchange (&s_spare, NULL);
    if (self && self->capacity < capacity) {
        free (self);
        self = NULL;
    }
    if (!self) {
        self = (zchat_arena_t *) malloc (sizeof (zchat_arena_t) + capacity);
        if (!self)
            return NULL;
        self->capacity = capacity;
    }
    atomic_init (&self->refs, 1);
    atomic_init (&self->counted, false);
    return self;
}

void
zchat_arena_destroy (zchat_arena_t **self_p)
{
    assert (self_p);
    zchat_arena_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    //  Counted before the owner's part goes, so that the last loan, which
    //  may come back at any moment from now, finds it counted
    if (atomic_load (&self->refs) > 1) {
        atomic_fetch_add (&s_out, 1);
        atomic_store (&self->counted, true);
    }
    zchat_arena_release (NULL, self);
}

uint8_t *
zchat_arena_data (zchat_arena_t *self)
{
    assert (self);
    return self->data;
}

size_t
zchat_arena_capacity (zchat_arena_t *self)
{
    assert (self);
    return self->capacity;
}

int
zchat_arena_grow (zchat_arena_t **self_p, size_t capacity)
{
    assert (self_p && *self_p);
    zchat_arena_t *self = *self_p;
    assert (atomic_load (&self->refs) == 1);     //  nothing lent
    if (capacity <= self->capacity)
        return 0;
    zchat_arena_t *bigger = (zchat_arena_t *) realloc (self, sizeof (zchat_arena_t) + capacity);
    if (!bigger)
        return -1;
    bigger->capacity = capacity;
    *self_p = bigger;
    return 0;
}

bool
zchat_arena_lend (zchat_arena_t *self)
{
    assert (self);
    if (self->capacity > ZCHAT_ARENA_LEND_MAX
    ||  atomic_load (&s_out) >= ZCHAT_ARENA_OUT_MAX)
        return false;
    atomic_fetch_add (&self->refs, 1);
    return true;
}

void
zchat_arena_release (void *data, void *hint)
{
    (void) data;
    zchat_arena_t *self = (zchat_arena_t *) hint;
    assert (self);
    if (atomic_fetch_sub (&self->refs, 1) == 1)
        s_arena_gone (self);
}

bool
zchat_arena_lent (zchat_arena_t *self)
{
    assert (self);
    return atomic_load (&self->refs) > 1;
}

size_t
zchat_arena_out (void)
{
    return atomic_load (&s_out);
}


//  --------------------------------------------------------------------------
//  Self test

void
zchat_arena_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_arena: ");
    size_t out = zchat_arena_out ();

    //  Grows keeping its bytes; destroyed with nothing lent, it is the
    //  spare the next arena reuses, if big enough
    zchat_arena_t *arena = zchat_arena_new (16);
    assert (arena && zchat_arena_capacity (arena) >= 16);
    memcpy (zchat_arena_data (arena), "0123456789abcdef", 16);
    int rc = zchat_arena_grow (&arena, 1 << 20);
    assert (rc == 0 && zchat_arena_capacity (arena) >= 1 << 20);
    assert (memcmp (zchat_arena_data (arena), "0123456789abcdef", 16) == 0);
    assert (!zchat_arena_lent (arena));
    zchat_arena_t *was = arena;
    zchat_arena_destroy (&arena);
    assert (arena == NULL && zchat_arena_out () == out);
    arena = zchat_arena_new (1000);
    assert (arena && (arena == was || !S_KEEP_SPARE));
    zchat_arena_t *other = zchat_arena_new (1000);      //  no spare: a new one
    assert (other && other != arena);

    //  Lent: still the owner's until destroyed, then counted out until the
    //  last loan comes back
    uint8_t *data = zchat_arena_data (arena);
    assert (zchat_arena_lend (arena) && zchat_arena_lend (arena));
    assert (zchat_arena_lent (arena));
    zchat_arena_release (data, arena);
    assert (zchat_arena_lent (arena));
    zchat_arena_t *lent = arena;
    zchat_arena_destroy (&arena);
    assert (zchat_arena_out () == out + 1);
    zchat_arena_release (data, lent);                   //  the last loan
    assert (zchat_arena_out () == out);

    //  Too big to lend
    rc = zchat_arena_grow (&other, ZCHAT_ARENA_LEND_MAX + 1);
    assert (rc == 0 && !zchat_arena_lend (other));
    zchat_arena_destroy (&other);

    //  At most ZCHAT_ARENA_OUT_MAX given-up arenas with loans out: then
    //  none is lent until one comes back
    zchat_arena_t *held [ZCHAT_ARENA_OUT_MAX + 1];
    size_t taken = 0;
    for (; taken < ZCHAT_ARENA_OUT_MAX + 1; taken++) {
        zchat_arena_t *one = zchat_arena_new (64);
        assert (one);
        if (!zchat_arena_lend (one)) {
            zchat_arena_destroy (&one);
            break;
        }
        held [taken] = one;
        zchat_arena_destroy (&one);
    }
    assert (taken == ZCHAT_ARENA_OUT_MAX - out);
    assert (zchat_arena_out () == ZCHAT_ARENA_OUT_MAX);
    zchat_arena_release (NULL, held [0]);
    arena = zchat_arena_new (64);
    assert (arena && zchat_arena_lend (arena));
    zchat_arena_release (NULL, arena);
    zchat_arena_destroy (&arena);
    for (size_t i = 1; i < taken; i++)
        zchat_arena_release (NULL, held [i]);
    assert (zchat_arena_out () == out);
    //  The spare goes with the process; nothing else is left
    if (verbose)
        printf ("OK\n");
}
