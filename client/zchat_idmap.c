//  zchat_idmap — a map from 64-bit request ids to pointers.
//
//  Linear probing over a power-of-two table kept at most half full; id 0
//  marks a free slot (ids are never 0). Deletion shifts later members of
//  the probe run back, so there are no tombstones and lookups stay short
//  however many ids come and go.

#include <czmq.h>
#include "zchat_idmap.h"

typedef struct {
    uint64_t id;
    void *value;
} s_slot_t;

struct _zchat_idmap_t {
    s_slot_t *slots;
    size_t   mask;              //  capacity - 1
    unsigned shift;             //  64 - log2 (capacity)
    size_t   size;
};

#define S_INITIAL_CAPACITY 64             //  2^6

//  Fibonacci hashing: request ids are consecutive, and the multiply
//  spreads them over the table.
static inline size_t
s_home (zchat_idmap_t *self, uint64_t id)
{
    return (size_t) ((id * 0x9E3779B97F4A7C15ull) >> self->shift);
}

//  --------------------------------------------------------------------------
//  Create an empty map.

zchat_idmap_t *
zchat_idmap_new (void)
{
    zchat_idmap_t *self = (zchat_idmap_t *) zmalloc (sizeof (zchat_idmap_t));
    if (!self)
        return NULL;
    self->slots = (s_slot_t *) calloc (S_INITIAL_CAPACITY, sizeof (s_slot_t));
    if (!self->slots) {
        free (self);
        return NULL;
    }
    self->mask = S_INITIAL_CAPACITY - 1;
    self->shift = 64 - 6;
    return self;
}

//  --------------------------------------------------------------------------
//  Free the map; nulls *self_p.

void
zchat_idmap_destroy (zchat_idmap_t **self_p)
{
    assert (self_p);
    zchat_idmap_t *self = *self_p;
    if (self) {
        free (self->slots);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Double the table and re-place every entry. Returns 0 or -1.

static int
s_grow (zchat_idmap_t *self)
{
    size_t old_capacity = self->mask + 1;
    s_slot_t *old_slots = self->slots;
    s_slot_t *slots = (s_slot_t *) calloc (old_capacity * 2, sizeof (s_slot_t));
    if (!slots)
        return -1;
    self->slots = slots;
    self->mask = old_capacity * 2 - 1;
    self->shift--;
    for (size_t i = 0; i < old_capacity; i++)
        if (old_slots [i].id) {
            size_t pos = s_home (self, old_slots [i].id);
            while (self->slots [pos].id)
                pos = (pos + 1) & self->mask;
            self->slots [pos] = old_slots [i];
        }
    free (old_slots);
    return 0;
}

//  --------------------------------------------------------------------------
//  Add an entry.

int
zchat_idmap_insert (zchat_idmap_t *self, uint64_t id, void *value)
{
    assert (self);
    assert (id != 0 && value);
    if ((self->size + 1) * 2 > self->mask + 1 && s_grow (self))
        return -1;
    size_t pos = s_home (self, id);
    while (self->slots [pos].id) {
        if (self->slots [pos].id == id)
            return -1;
        pos = (pos + 1) & self->mask;
    }
    self->slots [pos].id = id;
    self->slots [pos].value = value;
    self->size++;
    return 0;
}

//  --------------------------------------------------------------------------
//  Find an entry's slot, or NULL.

static s_slot_t *
s_find (zchat_idmap_t *self, uint64_t id)
{
    if (id == 0)
        return NULL;
    size_t pos = s_home (self, id);
    while (self->slots [pos].id) {
        if (self->slots [pos].id == id)
            return &self->slots [pos];
        pos = (pos + 1) & self->mask;
    }
    return NULL;
}

void *
zchat_idmap_lookup (zchat_idmap_t *self, uint64_t id)
{
    assert (self);
    s_slot_t *slot = s_find (self, id);
    return slot? slot->value: NULL;
}

//  --------------------------------------------------------------------------
//  Remove an entry, then pull back every later entry of the same probe run
//  that may now sit before its home: lookups stop at the first free slot.

void *
zchat_idmap_delete (zchat_idmap_t *self, uint64_t id)
{
    assert (self);
    s_slot_t *slot = s_find (self, id);
    if (!slot)
        return NULL;
    void *value = slot->value;
    size_t hole = (size_t) (slot - self->slots);
    size_t pos = hole;
    while (true) {
        pos = (pos + 1) & self->mask;
        if (self->slots [pos].id == 0)
            break;
        size_t home = s_home (self, self->slots [pos].id);
        //  The entry at pos may move to the hole only if its home is not
        //  within (hole, pos], cyclically
        bool stays = hole <= pos? (home > hole && home <= pos)
                                : (home > hole || home <= pos);
        if (!stays) {
            self->slots [hole] = self->slots [pos];
            hole = pos;
        }
    }
    self->slots [hole].id = 0;
    self->slots [hole].value = NULL;
    self->size--;
    return value;
}

size_t
zchat_idmap_size (zchat_idmap_t *self)
{
    assert (self);
    return self->size;
}

//  --------------------------------------------------------------------------
//  Walk the entries.

void *
zchat_idmap_next (zchat_idmap_t *self, size_t *cursor, uint64_t *id)
{
    assert (self && cursor);
    while (*cursor <= self->mask) {
        s_slot_t *slot = &self->slots [(*cursor)++];
        if (slot->id) {
            if (id)
                *id = slot->id;
            return slot->value;
        }
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Self test: a random mix of inserts and deletes checked against a plain
//  array, including ids that collide around the table's end.

void
zchat_idmap_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_idmap: ");
    zchat_idmap_t *map = zchat_idmap_new ();
    assert (map);
    assert (zchat_idmap_lookup (map, 1) == NULL);
    assert (zchat_idmap_delete (map, 1) == NULL);
    assert (zchat_idmap_lookup (map, 0) == NULL);

    #define S_TEST_IDS 5000
    static uint64_t ids [S_TEST_IDS];
    static bool present [S_TEST_IDS];
    uint64_t base = 0xFFFFFFFFFFFFF000ull;     //  wraps past 2^64
    for (size_t i = 0; i < S_TEST_IDS; i++) {
        ids [i] = base + i * 7;
        if (ids [i] == 0)
            ids [i] = 1;
        present [i] = false;
    }
    unsigned int state = 12345;
    size_t expected = 0;
    for (int round = 0; round < 200000; round++) {
        state = state * 1103515245u + 12345u;
        size_t i = (state >> 8) % S_TEST_IDS;
        if (present [i]) {
            assert (zchat_idmap_lookup (map, ids [i]) == &ids [i]);
            assert (zchat_idmap_insert (map, ids [i], &ids [i]) == -1);
            assert (zchat_idmap_delete (map, ids [i]) == &ids [i]);
            assert (zchat_idmap_lookup (map, ids [i]) == NULL);
            present [i] = false;
            expected--;
        }
        else {
            assert (zchat_idmap_lookup (map, ids [i]) == NULL);
            assert (zchat_idmap_insert (map, ids [i], &ids [i]) == 0);
            present [i] = true;
            expected++;
        }
        assert (zchat_idmap_size (map) == expected);
    }
    //  Every entry is still reachable, and the walk sees each once
    size_t walked = 0, cursor = 0;
    uint64_t id;
    void *value;
    while ((value = zchat_idmap_next (map, &cursor, &id))) {
        assert (*(uint64_t *) value == id);
        walked++;
    }
    assert (walked == expected);
    for (size_t i = 0; i < S_TEST_IDS; i++)
        assert ((zchat_idmap_lookup (map, ids [i]) != NULL) == present [i]);
    zchat_idmap_destroy (&map);
    zchat_idmap_destroy (&map);
    if (verbose)
        printf ("OK\n");
}
