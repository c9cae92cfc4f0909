//  zchat_idmap — a map from 64-bit request ids to pointers.
//
//  The client looks up every ACK's id among its unacknowledged sends, at
//  hundreds of thousands a second: an open-addressing table keyed by the
//  integer itself costs one multiply and usually one probe, with no key
//  strings to format, copy or free. Values are borrowed: the map never
//  frees them.

#ifndef ZCHAT_IDMAP_H_INCLUDED
#define ZCHAT_IDMAP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _zchat_idmap_t zchat_idmap_t;

//  Create an empty map. Returns NULL if out of memory.
zchat_idmap_t *
    zchat_idmap_new (void);

//  Free the map (not its values); nulls *self_p. Safe on NULL.
void
    zchat_idmap_destroy (zchat_idmap_t **self_p);

//  Add id (never 0) with value (never NULL). Returns 0, or -1 if id is
//  already present or memory ran out.
int
    zchat_idmap_insert (zchat_idmap_t *self, uint64_t id, void *value);

//  The value for id, or NULL.
void *
    zchat_idmap_lookup (zchat_idmap_t *self, uint64_t id);

//  Remove id; returns its value, or NULL if it was absent.
void *
    zchat_idmap_delete (zchat_idmap_t *self, uint64_t id);

//  Number of entries.
size_t
    zchat_idmap_size (zchat_idmap_t *self);

//  Iterate: *cursor starts at 0; returns the next value (and its id in
//  *id) or NULL at the end. The map must not change during a walk.
void *
    zchat_idmap_next (zchat_idmap_t *self, size_t *cursor, uint64_t *id);

//  Self test; asserts on failure.
void
    zchat_idmap_test (bool verbose);

#endif
