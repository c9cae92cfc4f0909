//  zchat_util — secure random bytes and a keyed hash for the broker's
//  tables (see zchat_util.h).

#include <czmq.h>
#include <sys/random.h>
#include "zchat_util.h"

//  The hash key is drawn once per process, on first use. The broker is
//  single-threaded; a lost race would only mean two draws, each valid.
static uint64_t s_key [2];
static bool s_keyed = false;

static void
s_key_init (void)
{
    if (s_keyed)
        return;
    if (zchat_random_bytes (s_key, sizeof (s_key))) {
        //  No CSPRNG: still usable, only less resistant to collisions.
        s_key [0] = (uint64_t) zclock_usecs () * 0x9E3779B97F4A7C15ULL;
        s_key [1] = (uint64_t) getpid () ^ (uint64_t) (uintptr_t) &s_key;
    }
    s_keyed = true;
}


//  ---------------------------------------------------------------------
//  Fill buffer from the kernel's CSPRNG. Returns 0 or -1.

int
zchat_random_bytes (void *buffer, size_t size)
{
    uint8_t *cursor = (uint8_t *) buffer;
    while (size > 0) {
        ssize_t got = getrandom (cursor, size, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        cursor += got;
        size -= (size_t) got;
    }
    return 0;
}


#define ROTL(x, b) (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND \
    do { \
        v0 += v1; v1 = ROTL (v1, 13); v1 ^= v0; v0 = ROTL (v0, 32); \
        v2 += v3; v3 = ROTL (v3, 16); v3 ^= v2; \
        v0 += v3; v3 = ROTL (v3, 21); v3 ^= v0; \
        v2 += v1; v1 = ROTL (v1, 17); v1 ^= v2; v2 = ROTL (v2, 32); \
    } while (0)

//  ---------------------------------------------------------------------
//  Keyed hash (SipHash-1-3) of [data, data + size).

uint64_t
zchat_hash_bytes (const void *data, size_t size)
{
    s_key_init ();
    const uint8_t *bytes = (const uint8_t *) data;
    uint64_t v0 = s_key [0] ^ 0x736f6d6570736575ULL;
    uint64_t v1 = s_key [1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = s_key [0] ^ 0x6c7967656e657261ULL;
    uint64_t v3 = s_key [1] ^ 0x7465646279746573ULL;

    size_t whole = size - size % 8;
    for (size_t at = 0; at < whole; at += 8) {
        uint64_t word = 0;
        for (int i = 7; i >= 0; i--)
            word = (word << 8) | bytes [at + (size_t) i];
        v3 ^= word;
        SIPROUND;
        v0 ^= word;
    }
    //  The last word carries the length in its top byte.
    uint64_t last = (uint64_t) size << 56;
    for (size_t i = 0; i < size % 8; i++)
        last |= (uint64_t) bytes [whole + i] << (8 * i);
    v3 ^= last;
    SIPROUND;
    v0 ^= last;

    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}


//  ASCII upper case to lower case; every other byte as it is.
static uint8_t
s_fold (uint8_t byte)
{
    return byte >= 'A' && byte <= 'Z'? (uint8_t) (byte + ('a' - 'A')): byte;
}


//  ---------------------------------------------------------------------
//  Keyed hash of a NUL-terminated string, for zhashx_set_key_hasher.

size_t
zchat_hash_string (const void *key)
{
    const char *string = (const char *) key;
    return (size_t) zchat_hash_bytes (string, strlen (string));
}


//  ---------------------------------------------------------------------
//  Keyed hash of a nick as zchat_nick_compare sees it: ASCII case folded.

size_t
zchat_hash_nick (const void *key)
{
    //  Folded into a buffer and hashed as bytes, so that the hash of every
    //  other key (a routing id on each request) stays as it was. A nick
    //  is at most ZCHAT_MAX_NICK (32) bytes; a longer key, which is no
    //  nick and so in no table, hashes by its folded head and its length:
    //  keys that compare equal still hash equal.
    const char *nick = (const char *) key;
    uint8_t folded [64];
    size_t size = strlen (nick);
    size_t head = size < sizeof (folded)? size: sizeof (folded);
    for (size_t i = 0; i < head; i++)
        folded [i] = s_fold ((uint8_t) nick [i]);
    uint64_t hash = zchat_hash_bytes (folded, head);
    if (size > head)
        hash ^= zchat_hash_bytes (&size, sizeof (size));
    return (size_t) hash;
}


//  ---------------------------------------------------------------------
//  Compare two nicks with ASCII case folded, in strcmp's sense.

int
zchat_nick_compare (const void *key1, const void *key2)
{
    const uint8_t *a = (const uint8_t *) key1;
    const uint8_t *b = (const uint8_t *) key2;
    while (*a && s_fold (*a) == s_fold (*b)) {
        a++;
        b++;
    }
    return (int) s_fold (*a) - (int) s_fold (*b);
}


//  ---------------------------------------------------------------------
//  Constant-time string comparison. True if equal.

bool
zchat_secret_equal (const char *a, const char *b)
{
    size_t a_size = strlen (a);
    size_t b_size = strlen (b);
    //  Compare over the longer length so that a prefix does not return
    //  early; the lengths themselves are not secret (tokens are fixed size).
    size_t size = a_size > b_size ? a_size : b_size;
    unsigned diff = (unsigned) (a_size ^ b_size);
    for (size_t i = 0; i < size; i++) {
        unsigned char ca = i < a_size ? (unsigned char) a [i] : 0;
        unsigned char cb = i < b_size ? (unsigned char) b [i] : 0;
        diff |= (unsigned) (ca ^ cb);
    }
    return diff == 0;
}


//  ---------------------------------------------------------------------
//  Token bucket. Limits are at most a few billion units (bytes of 16 MiB
//  bursts, messages in millions), so thousandths stay far below 2^63.

void
zchat_bucket_fill (zchat_bucket_t *self, uint64_t burst, uint64_t now_ms)
{
    assert (self);
    assert (burst <= (uint64_t) INT64_MAX / 1000);
    self->level = (int64_t) (burst * 1000);
    self->at_ms = now_ms;
}

uint32_t
zchat_bucket_wait (zchat_bucket_t *self, uint64_t per_second, uint64_t burst,
                   uint64_t units, uint64_t now_ms)
{
    assert (self);
    assert (per_second > 0);
    assert (burst <= (uint64_t) INT64_MAX / 1000);
    assert (units <= (uint64_t) INT64_MAX / 1000);
    int64_t capacity = (int64_t) (burst * 1000);
    if (now_ms > self->at_ms && self->level < capacity) {
        //  per_second units a second are per_second thousandths a ms.
        //  Past a full refill the exact time no longer matters; capping
        //  it keeps the product in range.
        uint64_t elapsed = now_ms - self->at_ms;
        uint64_t room = (uint64_t) (capacity - self->level);
        if (elapsed > room / per_second + 1)
            elapsed = room / per_second + 1;
        self->level += (int64_t) (elapsed * per_second);
        if (self->level > capacity)
            self->level = capacity;
    }
    self->at_ms = now_ms;
    int64_t need = (int64_t) (units * 1000);
    if (self->level >= need)
        return 0;
    uint64_t wait = ((uint64_t) (need - self->level) + per_second - 1) / per_second;
    return wait > UINT32_MAX ? UINT32_MAX : wait ? (uint32_t) wait : 1;
}

void
zchat_bucket_charge (zchat_bucket_t *self, uint64_t units)
{
    assert (self);
    assert (units <= (uint64_t) INT64_MAX / 1000);
    self->level -= (int64_t) (units * 1000);
}


//  ---------------------------------------------------------------------
//  Self test

void
zchat_util_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_util: ");

    uint8_t a [32], b [32];
    assert (zchat_random_bytes (a, sizeof (a)) == 0);
    assert (zchat_random_bytes (b, sizeof (b)) == 0);
    assert (memcmp (a, b, sizeof (a)) != 0);

    //  Equal input, equal hash; every length through two words hashes
    //  differently from its neighbours (the length is mixed in).
    const char *text = "the quick brown fox jumps";
    for (size_t size = 0; size < strlen (text); size++) {
        assert (zchat_hash_bytes (text, size) == zchat_hash_bytes (text, size));
        assert (zchat_hash_bytes (text, size) != zchat_hash_bytes (text, size + 1));
    }
    assert (zchat_hash_string ("lobby") == (size_t) zchat_hash_bytes ("lobby", 5));
    assert (zchat_hash_string ("lobby") != zchat_hash_string ("lobbz"));
    assert (zchat_hash_string ("Lobby") != zchat_hash_string ("lobby"));

    //  Nicks: ASCII case folded in both the hash and the comparison, at
    //  every length up to four words and more; nothing else folded; a
    //  key longer than the buffer the hash folds into
    const char *upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ[]{}|^`_-";
    const char *lower = "abcdefghijklmnopqrstuvwxyz[]{}|^`_-";
    for (size_t size = 0; size <= strlen (upper); size++) {
        char up [64], low [64];
        memcpy (up, upper, size);
        memcpy (low, lower, size);
        up [size] = low [size] = 0;
        assert (zchat_nick_compare (up, low) == 0);
        assert (zchat_hash_nick (up) == zchat_hash_nick (low));
        assert (zchat_hash_nick (low) == zchat_hash_string (low));
    }
    assert (zchat_nick_compare ("alice", "Alice") == 0);
    assert (zchat_nick_compare ("alice", "alicE") == 0);
    assert (zchat_nick_compare ("alice", "alic") > 0);
    assert (zchat_nick_compare ("alic", "ALICE") < 0);
    assert (zchat_nick_compare ("bob", "ALICE") > 0);
    assert (zchat_nick_compare ("[", "{") != 0);     //  not IRC's rfc1459 folding
    assert (zchat_nick_compare ("a@", "A`") != 0);   //  only A-Z fold
    assert (zchat_hash_nick ("alice") != zchat_hash_nick ("alicf"));
    char long_up [101], long_low [101];
    memset (long_up, 'Q', 100);
    memset (long_low, 'q', 100);
    long_up [100] = long_low [100] = 0;
    assert (zchat_hash_nick (long_up) == zchat_hash_nick (long_low));
    long_low [99] = 0;
    assert (zchat_hash_nick (long_up) != zchat_hash_nick (long_low));
    assert (zchat_hash_nick ("[x]") != zchat_hash_nick ("{x}"));

    assert (zchat_secret_equal ("", ""));
    assert (zchat_secret_equal ("abc", "abc"));
    assert (!zchat_secret_equal ("abc", "abd"));
    assert (!zchat_secret_equal ("abc", "ab"));
    assert (!zchat_secret_equal ("", "a"));

    //  Bucket: 2 a second, burst 2
    zchat_bucket_t bucket;
    zchat_bucket_fill (&bucket, 2, 1000);
    assert (zchat_bucket_wait (&bucket, 2, 2, 1, 1000) == 0);
    zchat_bucket_charge (&bucket, 1);
    assert (zchat_bucket_wait (&bucket, 2, 2, 1, 1000) == 0);
    zchat_bucket_charge (&bucket, 1);
    assert (zchat_bucket_wait (&bucket, 2, 2, 1, 1000) == 500);
    assert (zchat_bucket_wait (&bucket, 2, 2, 1, 1200) == 300);
    assert (zchat_bucket_wait (&bucket, 2, 2, 1, 1500) == 0);
    //  A clock stepping back neither refills nor stalls
    assert (zchat_bucket_wait (&bucket, 2, 2, 2, 100) == 500);
    assert (zchat_bucket_wait (&bucket, 2, 2, 2, 600) == 0);
    //  Never past the burst, however long the pause
    assert (zchat_bucket_wait (&bucket, 2, 2, 3, UINT64_MAX / 2) > 0);
    //  Debt: a cost known afterwards; nothing until it is paid off
    zchat_bucket_fill (&bucket, 1000, 0);
    zchat_bucket_charge (&bucket, 3000);
    assert (zchat_bucket_wait (&bucket, 1000, 1000, 1, 0) == 2001);
    assert (zchat_bucket_wait (&bucket, 1000, 1000, 1, 2001) == 0);
    //  Large byte budgets stay in range
    zchat_bucket_fill (&bucket, 1ULL << 34, 0);
    zchat_bucket_charge (&bucket, 1ULL << 35);
    assert (zchat_bucket_wait (&bucket, 1ULL << 20, 1ULL << 34, 1, 0) > 16000000);

    if (verbose)
        printf ("OK\n");
}
