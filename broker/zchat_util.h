//  zchat_util — small broker helpers: secure random bytes and a keyed hash
//  for the broker's tables.
//
//  Every key the broker hashes (routing ids, nicks, room names, addresses)
//  is chosen by its peers: a client may set its own routing id. An
//  unkeyed hash would let them pile keys into one bucket, so the tables
//  use SipHash-1-3 keyed with a random per-process key.

#ifndef ZCHAT_UTIL_H_INCLUDED
#define ZCHAT_UTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Fill buffer with size bytes from the kernel's CSPRNG. Returns 0, or -1
//  if none could be had (then buffer is unspecified).
int
    zchat_random_bytes (void *buffer, size_t size);

//  Keyed hash of [data, data + size).
uint64_t
    zchat_hash_bytes (const void *data, size_t size);

//  Keyed hash of a NUL-terminated string; has the zhashx_hash_fn shape.
size_t
    zchat_hash_string (const void *key);

//  Compare two strings in time that does not depend on where they differ
//  (for secrets such as session tokens). True if equal.
bool
    zchat_secret_equal (const char *a, const char *b);

//  Self test; asserts on failure.
void
    zchat_util_test (bool verbose);

#endif
