//  zchat_util — small broker helpers: secure random bytes, a keyed hash
//  for the broker's tables (and its case-blind form for nicks), and the
//  token bucket behind every per-session limit.
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

//  Nicks are one nick in any ASCII case (PROTOCOL.md 3): a keyed hash of
//  a NUL-terminated nick with A-Z folded to a-z (zhashx_hash_fn's shape),
//  and a comparison in strcmp's sense that folds the same way
//  (zhashx_comparator_fn's shape). Only A-Z fold: not IRC's rfc1459
//  mapping, which also takes [ ] for { }; nothing outside ASCII.
size_t
    zchat_hash_nick (const void *key);
int
    zchat_nick_compare (const void *key1, const void *key2);

//  Compare two strings in time that does not depend on where they differ
//  (for secrets such as session tokens). True if equal.
bool
    zchat_secret_equal (const char *a, const char *b);

//  A token bucket: it holds up to burst units and refills at per_second
//  units a second. Counted in thousandths of a unit, so that refills need
//  no floating point. A charge may take it below zero, for a cost known
//  only once the work is done (the size of a reply): nothing more is
//  allowed until that debt is paid off by time.
typedef struct {
    int64_t level;                  //  thousandths of a unit
    uint64_t at_ms;                 //  when it was last refilled
} zchat_bucket_t;

//  Fill the bucket to burst units as of now_ms.
void
    zchat_bucket_fill (zchat_bucket_t *self, uint64_t burst, uint64_t now_ms);

//  Refill for the time since the last call (a clock that steps back
//  refills nothing, and stalls nothing either), then: 0 if at least units
//  are there, else the milliseconds (at least 1) until they will be.
uint32_t
    zchat_bucket_wait (zchat_bucket_t *self, uint64_t per_second, uint64_t burst,
                       uint64_t units, uint64_t now_ms);

//  Take units out of the bucket, into debt if need be.
void
    zchat_bucket_charge (zchat_bucket_t *self, uint64_t units);

//  Self test; asserts on failure.
void
    zchat_util_test (bool verbose);

#endif
