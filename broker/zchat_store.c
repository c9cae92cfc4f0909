//  zchat_store — the broker's durable state in SQLite (WAL mode).
//
//  One connection, used only from the broker's event loop. Room messages
//  are stored in chunks: one row per room and group commit, holding that
//  group's messages of the room in a compact encoding. An append only
//  encodes the message into its room's chunk buffer in memory and notes
//  its (nick, msg_id) in an in-memory index; commit writes one row per
//  room touched. So a group of N messages in R rooms costs R inserts, not
//  N inserts into three indexes. Buffers, the index and every statement
//  are reused from group to group: a steady stream allocates nothing.
//  See broker/STORAGE.md for the design: schema, chunk encoding, group
//  commit, durability, idempotency window, retention floor and locking.

#include <czmq.h>
#include <sqlite3.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>

#include "zchat_log.h"
#include "zchat_store_int.h"
#include "zchat_walvfs.h"

//  Every statement the store runs, prepared once in zchat_store_new.
const char *zchat_store_sql [ST_COUNT] = {
    //  IMMEDIATE takes the write lock at once, so a busy database fails
    //  the begin, not the commit of a whole group.
    [ST_BEGIN]      = "BEGIN IMMEDIATE",
    [ST_COMMIT]     = "COMMIT",
    [ST_ROLLBACK]   = "ROLLBACK",
    //  Ids are ours (the flock makes us the only writer): the idempotency
    //  index can point at a chunk before it is written.
    [ST_CHUNK_INSERT] = "INSERT INTO chunks"
                      " (id, room, first_seq, last_seq, count, min_ts, max_ts, data)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_CHUNK_GET]  = "SELECT room, first_seq, last_seq, count, data FROM chunks"
                      " WHERE id = ?1",
    //  The chunk holding seq ?2, or the first one after it.
    [ST_CHUNK_AT]   = "SELECT id, first_seq, last_seq, count, min_ts, max_ts"
                      " FROM chunks WHERE room = ?1 AND last_seq >= ?2"
                      " ORDER BY last_seq LIMIT 1",
    //  Chunks ending at or below ?2, newest first (the tail of a room).
    [ST_CHUNK_DOWN] = "SELECT id, first_seq, last_seq, count, min_ts, max_ts"
                      " FROM chunks WHERE room = ?1 AND last_seq <= ?2"
                      " ORDER BY last_seq DESC",
    //  History: chunks from the one holding ?2 on; the caller stops.
    [ST_CHUNK_FROM] = "SELECT id, first_seq, last_seq, count, data FROM chunks"
                      " WHERE room = ?1 AND last_seq >= ?2 ORDER BY last_seq",
    [ST_CHUNK_DELETE] = "DELETE FROM chunks WHERE id = ?1",
    [ST_CHUNK_MIN_TS] = "UPDATE chunks SET min_ts = ?2 WHERE id = ?1",
    //  The age rule's walk: the next chunk written after chunk ?1 (by
    //  rowid, so no index to keep up to date at every commit).
    [ST_CHUNK_NEXT] = "SELECT id, room, first_seq, last_seq, count, min_ts, max_ts"
                      " FROM chunks WHERE id > ?1 ORDER BY id LIMIT 1",
    //  Start-up: chunks from the newest back (?1 = the largest id) ...
    [ST_CHUNK_NEWEST] = "SELECT id, count FROM chunks WHERE id <= ?1"
                      " ORDER BY id DESC",
    //  ... and forward again from the oldest one the window needs.
    [ST_CHUNK_SINCE] = "SELECT id FROM chunks WHERE id >= ?1 ORDER BY id",
    [ST_ROOM_GET]   = "SELECT last_seq, floor_seq FROM rooms WHERE name = ?1",
    //  A room's newest seq, which no commit writes down: its newest
    //  chunk's, or, once retention has removed every message of the room,
    //  one below its floor (retention deletes chunks only below the floor,
    //  and moves the floor in the same transaction). rooms.last_seq counts
    //  too: schema 2 kept the newest seq there at every commit.
    [ST_ROOM_NEWEST] = "SELECT max (coalesce ((SELECT max (last_seq) FROM chunks"
                      " WHERE room = ?1), 0), coalesce ((SELECT max (last_seq,"
                      " floor_seq - 1) FROM rooms WHERE name = ?1), 0))",
    //  A room may have no row yet: commits write none.
    [ST_ROOM_FLOOR] = "INSERT INTO rooms (name, floor_seq) VALUES (?1, ?2)"
                      " ON CONFLICT (name) DO UPDATE SET floor_seq = excluded.floor_seq",
    //  Numbering past seqs published before their commit and never
    //  stored (zchat_store_publishing): ST_ROOM_NEWEST counts last_seq.
    [ST_ROOM_LAST]  = "INSERT INTO rooms (name, last_seq) VALUES (?1, ?2)"
                      " ON CONFLICT (name) DO UPDATE SET"
                      " last_seq = max (last_seq, excluded.last_seq)",
    //  The count rule's round robin: the next room that holds chunks.
    [ST_ROOM_NEXT]  = "SELECT room FROM chunks WHERE room > ?1 ORDER BY room LIMIT 1",
    [ST_TOPIC_GET]  = "SELECT topic, topic_by, topic_ts FROM rooms"
                      " WHERE name = ?1 AND topic IS NOT NULL",
    [ST_TOPIC_SET]  = "INSERT INTO rooms (name, last_seq, topic, topic_by, topic_ts)"
                      " VALUES (?1, 0, ?2, ?3, ?4)"
                      " ON CONFLICT (name) DO UPDATE SET topic = excluded.topic,"
                      " topic_by = excluded.topic_by, topic_ts = excluded.topic_ts",
    //  A nick is one nick in any ASCII case (SQLite's NOCASE folds A-Z
    //  only, as the sessions do): every statement compares nicks so. A
    //  store written before that may hold one nick in two cases (rows
    //  differing only by case, s_nick_conflicts): the earliest claim owns
    //  it, by ts, then the spelling that sorts first byte by byte (ties).
    [ST_NICK_OWNER] = "SELECT key FROM nick_keys WHERE nick = ?1 COLLATE NOCASE"
                      " ORDER BY ts, nick LIMIT 1",
    //  Claims nothing if the nick is bound in any case, to this key too:
    //  the owner's other spellings are the nick it has.
    [ST_NICK_CLAIM] = "INSERT INTO nick_keys (nick, key, ts) SELECT ?1, ?2, ?3"
                      " WHERE NOT EXISTS (SELECT 1 FROM nick_keys"
                      " WHERE nick = ?1 COLLATE NOCASE)",
    [ST_NICK_RELEASE] = "DELETE FROM nick_keys WHERE nick = ?1 COLLATE NOCASE",
    //  The nicks the key owns: its rows that are their nick's earliest,
    //  so that a nick counts once, and a row an earlier claim by another
    //  key overrides counts not at all.
    [ST_NICK_COUNT] = "SELECT count(*) FROM nick_keys AS mine WHERE mine.key = ?1"
                      " AND NOT EXISTS (SELECT 1 FROM nick_keys AS other"
                      " WHERE other.nick = mine.nick COLLATE NOCASE"
                      " AND (other.ts < mine.ts"
                      " OR (other.ts = mine.ts AND other.nick < mine.nick)))",
};

//  Counting a key's nicks (the nicks-per-key limit) needs an index by key.
//  It came after schema 2 without a bump, so upgrading a version 2 file
//  creates it if missing (s_schema_upgrade).
#define S_NICK_KEYS_INDEX \
    "CREATE INDEX IF NOT EXISTS nick_keys_key ON nick_keys (key);"

//  Finding a nick in any case needs an index in that collation: without
//  it every lookup would read the whole table. It came after schema 3
//  without a bump (a broker of schema 3 still opens the file, and keeps
//  the index up to date as it writes), so opening a file of schema 2 or
//  3 creates it if missing (s_schema).
#define S_NICK_KEYS_NOCASE \
    "CREATE INDEX IF NOT EXISTS nick_keys_nocase ON nick_keys (nick COLLATE NOCASE);"

//  chunks is a rowid table: rows carry blobs of up to ~64 KiB, which a
//  WITHOUT ROWID table would keep in its interior pages. data comes last,
//  so reading the other columns never touches the blob's overflow pages.
//  Its one index is the one history needs: every index is one more page
//  that every group commit writes. rooms.floor_seq is the retention
//  floor: history shows no seq below it.
static const char *s_schema_sql =
    "CREATE TABLE IF NOT EXISTS chunks ("
    "  id INTEGER PRIMARY KEY,"
    "  room TEXT NOT NULL,"
    "  first_seq INTEGER NOT NULL,"
    "  last_seq INTEGER NOT NULL,"
    "  count INTEGER NOT NULL,"
    "  min_ts INTEGER NOT NULL,"
    "  max_ts INTEGER NOT NULL,"
    "  data BLOB NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS chunks_room_seq ON chunks (room, last_seq);"
    "CREATE TABLE IF NOT EXISTS rooms ("
    "  name TEXT PRIMARY KEY,"
    "  last_seq INTEGER NOT NULL DEFAULT 0,"
    "  floor_seq INTEGER NOT NULL DEFAULT 0,"
    "  topic TEXT,"
    "  topic_by TEXT,"
    "  topic_ts INTEGER) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS nick_keys ("
    "  nick TEXT PRIMARY KEY,"
    "  key TEXT NOT NULL,"
    "  ts INTEGER NOT NULL) WITHOUT ROWID;"
    S_NICK_KEYS_INDEX
    S_NICK_KEYS_NOCASE;



//  --------------------------------------------------------------------------
//  Log a failed SQLite call with the connection's own message.

static void
s_log_error (zchat_store_t *self, const char *what)
{
    zsys_error ("zchat_store: %s: %s", what, sqlite3_errmsg (self->db));
}


//  --------------------------------------------------------------------------
//  Length of name if it is 1..max bytes, else 0. Never reads past max + 1.

static size_t
s_name_len (const char *name, size_t max)
{
    if (!name)
        return 0;
    size_t len = strnlen (name, max + 1);
    return len <= max? len: 0;
}


//  --------------------------------------------------------------------------
//  Copy a text column into dest (capacity max + 1). Returns 0, or -1 if the
//  column is longer: the file is data from disk, never trusted blindly.

static int
s_column_copy (sqlite3_stmt *stmt, int column, char *dest, size_t max)
{
    const unsigned char *value = sqlite3_column_text (stmt, column);
    int bytes = sqlite3_column_bytes (stmt, column);
    if (bytes < 0 || (size_t) bytes > max) {
        zsys_error ("zchat_store: stored value of %d bytes exceeds %zu", bytes, max);
        return -1;
    }
    if (bytes > 0)
        memcpy (dest, value, (size_t) bytes);
    dest [bytes] = '\0';
    return 0;
}


//  --------------------------------------------------------------------------
//  A non-negative integer column; negative values (a damaged file) read
//  as 0, which the callers' checks then refuse.

static uint64_t
s_column_u64 (sqlite3_stmt *stmt, int column)
{
    int64_t value = sqlite3_column_int64 (stmt, column);
    return value > 0? (uint64_t) value: 0;
}


//  --------------------------------------------------------------------------
//  Step a statement that returns no rows (or whose rows we ignore), then
//  reset it. Returns 0 or -1 (logged).

static int
s_run (zchat_store_t *self, store_stmt_t which)
{
    sqlite3_stmt *stmt = self->stmt [which];
    int rc = sqlite3_step (stmt);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step (stmt);
    if (rc != SQLITE_DONE)
        s_log_error (self, zchat_store_sql [which]);
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE? 0: -1;
}


//  --------------------------------------------------------------------------
//  Bind a room name as parameter 1 of a statement. Returns 0 or -1.

static int
s_bind_room (zchat_store_t *self, store_stmt_t which, const char *room, size_t room_len)
{
    if (sqlite3_bind_text (self->stmt [which], 1, room, (int) room_len,
                           SQLITE_STATIC) != SQLITE_OK) {
        s_log_error (self, "bind room");
        return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  A room's committed newest seq and retention floor (0 and 0 if the room
//  has no row). Returns 0 or -1.

static int
s_room_get (zchat_store_t *self, const char *room, size_t room_len,
            uint64_t *last_seq, uint64_t *floor_seq)
{
    if (s_bind_room (self, ST_ROOM_GET, room, room_len))
        return -1;
    sqlite3_stmt *stmt = self->stmt [ST_ROOM_GET];
    int rc = sqlite3_step (stmt);
    uint64_t last = 0, floor = 0;
    if (rc == SQLITE_ROW) {
        last = s_column_u64 (stmt, 0);
        floor = s_column_u64 (stmt, 1);
    }
    else
    if (rc != SQLITE_DONE)
        s_log_error (self, "room");
    sqlite3_reset (stmt);
    if (last_seq)
        *last_seq = last;
    if (floor_seq)
        *floor_seq = floor;
    return rc == SQLITE_ROW || rc == SQLITE_DONE? 0: -1;
}


//  --------------------------------------------------------------------------
//  A room's newest committed seq (ST_ROOM_NEWEST; 0 if it never had a
//  message). Returns 0 or -1.

static int
s_room_newest (zchat_store_t *self, const char *room, size_t room_len, uint64_t *newest)
{
    *newest = 0;
    if (s_bind_room (self, ST_ROOM_NEWEST, room, room_len))
        return -1;
    sqlite3_stmt *stmt = self->stmt [ST_ROOM_NEWEST];
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *newest = s_column_u64 (stmt, 0);
    else
        s_log_error (self, "room's newest seq");
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW? 0: -1;
}


//  --------------------------------------------------------------------------
//  Varints: 7 bits a byte, least significant first, high bit = more.
//  put writes at most STORE_VARINT_MAX bytes and returns how many. get
//  reads from [data + *pos, data + size), returns 0 or -1 (truncated, too
//  long, or over 64 bits).

static size_t
s_varint_put (uint8_t *out, uint64_t value)
{
    size_t size = 0;
    while (value >= 0x80) {
        out [size++] = (uint8_t) (value | 0x80);
        value >>= 7;
    }
    out [size++] = (uint8_t) value;
    return size;
}

static int
s_varint_get (const uint8_t *data, size_t size, size_t *pos, uint64_t *value)
{
    uint64_t result = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= size)
            return -1;
        uint8_t byte = data [(*pos)++];
        if (shift == 63 && byte > 1)
            return -1;              //  bits past the 64th
        result |= (uint64_t) (byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *value = result;
            return 0;
        }
    }
    return -1;
}

static uint32_t
s_get_u32 (const uint8_t *data)
{
    return (uint32_t) data [0] << 24 | (uint32_t) data [1] << 16
         | (uint32_t) data [2] << 8 | (uint32_t) data [3];
}

static void
s_put_u32 (uint8_t *data, uint32_t value)
{
    data [0] = (uint8_t) (value >> 24);
    data [1] = (uint8_t) (value >> 16);
    data [2] = (uint8_t) (value >> 8);
    data [3] = (uint8_t) value;
}


//  --------------------------------------------------------------------------
//  Start a cursor on a chunk blob (texts, head, trailer). text NULL means
//  only the head is at hand (head points at it, text_size is the size of
//  the texts that precede it). Returns 0, or -1 if the trailer is wrong.

static int
s_cursor_trailer (store_cursor_t *cursor, const uint8_t *trailer, size_t blob_size)
{
    memset (cursor, 0, sizeof (*cursor));
    if (blob_size < STORE_TRAILER_SIZE || trailer [8] != STORE_CHUNK_FORMAT)
        return -1;
    uint32_t count = s_get_u32 (trailer);
    uint32_t head_size = s_get_u32 (trailer + 4);
    if (count == 0 || head_size > blob_size - STORE_TRAILER_SIZE)
        return -1;
    cursor->left = count;
    cursor->head_size = head_size;
    cursor->text_size = blob_size - STORE_TRAILER_SIZE - head_size;
    return 0;
}

static int
s_cursor_blob (store_cursor_t *cursor, const uint8_t *blob, size_t size)
{
    if (!blob || size < STORE_TRAILER_SIZE
    ||  s_cursor_trailer (cursor, blob + size - STORE_TRAILER_SIZE, size))
        return -1;
    cursor->text = blob;
    cursor->head = blob + cursor->text_size;
    return 0;
}

//  A cursor over the chunk a room is filling in the open group.
static void
s_cursor_pending (store_cursor_t *cursor, const store_pending_t *pending)
{
    memset (cursor, 0, sizeof (*cursor));
    cursor->head = pending->head;
    cursor->head_size = pending->head_size;
    cursor->text = pending->data;
    cursor->text_size = pending->data_size;
    cursor->left = pending->count;
}


//  --------------------------------------------------------------------------
//  Step the cursor to the next message. Returns 1 with the message in the
//  cursor, 0 at the end, -1 if the encoding is broken (everything read
//  from a blob is checked: the file is data from disk).

static int
s_cursor_next (store_cursor_t *cursor)
{
    if (cursor->left == 0)
        return cursor->head_pos == cursor->head_size
            && cursor->text_pos == cursor->text_size? 0: -1;
    const uint8_t *head = cursor->head;
    size_t size = cursor->head_size;
    uint64_t delta, ts_delta, text_len;
    if (s_varint_get (head, size, &cursor->head_pos, &delta)
    ||  delta == 0 || delta > (uint64_t) INT64_MAX - cursor->seq
    ||  s_varint_get (head, size, &cursor->head_pos, &ts_delta)
    ||  size - cursor->head_pos < 2)
        return -1;
    cursor->seq += delta;
    //  Zigzag: a clock that stepped back gives a small negative delta.
    cursor->ts += (ts_delta >> 1) ^ (0 - (ts_delta & 1));
    cursor->kind = head [cursor->head_pos++];
    size_t nick_len = head [cursor->head_pos++];
    if (nick_len == 0 || nick_len > ZCHAT_MAX_NICK || size - cursor->head_pos < nick_len)
        return -1;
    memcpy (cursor->nick, head + cursor->head_pos, nick_len);
    cursor->nick [nick_len] = '\0';
    cursor->nick_len = nick_len;
    cursor->head_pos += nick_len;
    if (s_varint_get (head, size, &cursor->head_pos, &cursor->msg_id)
    ||  s_varint_get (head, size, &cursor->head_pos, &text_len)
    ||  text_len > ZCHAT_MAX_TEXT || text_len > cursor->text_size - cursor->text_pos)
        return -1;
    cursor->text_at = cursor->text? (const char *) cursor->text + cursor->text_pos: NULL;
    cursor->text_len = (size_t) text_len;
    cursor->text_pos += (size_t) text_len;
    cursor->left--;
    return 1;
}


//  --------------------------------------------------------------------------
//  The idempotency index
//
//  A keyed hash of (nick, msg_id). The key is random per process, so
//  clients cannot pick ids that collide on purpose and make every lookup
//  walk a long probe chain. Collisions are harmless anyway: a match is
//  confirmed against the chunk.

static uint64_t
s_mix (uint64_t value)
{
    value ^= value >> 30;
    value *= 0xBF58476D1CE4E5B9ull;
    value ^= value >> 27;
    value *= 0x94D049BB133111EBull;
    value ^= value >> 31;
    return value;
}

//  A keyed hash of a name (a nick or a room), a mix per 8 bytes.
static uint64_t
s_name_keyed (uint64_t seed, const char *name, size_t len)
{
    uint64_t hash = s_mix (seed ^ len);
    for (size_t at = 0; at < len; at += 8) {
        uint64_t word = 0;
        for (size_t i = at; i < len && i < at + 8; i++)
            word = word << 8 | (uint8_t) name [i];
        hash = s_mix (hash ^ word);
    }
    return hash;
}

//  The part of a key's hash that depends on the nick only. A sender's
//  SAYs come in runs (a SAYS batch, a group), so the last nick hashed is
//  kept and compared first: a compare of a few bytes instead of a mix per
//  word of the nick.
static uint64_t
s_nick_hash (zchat_store_t *self, const char *nick, size_t nick_len)
{
    if (nick_len == self->nick_len && memcmp (nick, self->nick, nick_len) == 0)
        return self->nick_hash;
    uint64_t hash = s_name_keyed (self->hash_seed, nick, nick_len);
    if (nick_len <= ZCHAT_MAX_NICK) {
        memcpy (self->nick, nick, nick_len);
        self->nick_len = nick_len;
        self->nick_hash = hash;
    }
    return hash;
}

static uint64_t
s_key_hash (zchat_store_t *self, const char *nick, size_t nick_len, uint64_t msg_id)
{
    //  Ids from one client count up (PROTOCOL.md 2.1), so ids are hashed
    //  in runs of STORE_KEY_RUN: the keys of a run differ only in the
    //  bits of the tag (STORE_TAG), not in those that choose the bucket
    //  (STORE_BUCKET), so a run shares one bucket, one cache line, for
    //  its lookups, inserts and evictions, and within it each key still
    //  has a tag of its own. The run's bucket is keyed by the seed.
    uint64_t hash = s_mix (s_nick_hash (self, nick, nick_len) ^ (msg_id / STORE_KEY_RUN));
    return hash ^ (uint64_t) (msg_id % STORE_KEY_RUN) << STORE_TAG_SHIFT;
}

//  Bit i set for each slot i of the bucket whose entry has this tag (and
//  perhaps for free slots, when the tag is 0: callers skip those), or
//  that holds exactly value (0: the free slots). Every lookup, insert and
//  eviction scans a bucket or two, so with SSE2 (every x86-64) four
//  slots are compared at once.
#if defined (__SSE2__)
#include <emmintrin.h>
_Static_assert (STORE_BUCKET_SLOTS == 16, "a bucket is four SSE2 vectors");

static uint32_t
s_bucket_match (const uint32_t *bucket, uint32_t mask, uint32_t value)
{
    const __m128i want = _mm_set1_epi32 ((int) value);
    const __m128i keep = _mm_set1_epi32 ((int) mask);
    const __m128i *slots = (const __m128i *) bucket;
    __m128i equal0 = _mm_cmpeq_epi32 (_mm_and_si128 (_mm_load_si128 (slots), keep), want);
    __m128i equal1 = _mm_cmpeq_epi32 (_mm_and_si128 (_mm_load_si128 (slots + 1), keep), want);
    __m128i equal2 = _mm_cmpeq_epi32 (_mm_and_si128 (_mm_load_si128 (slots + 2), keep), want);
    __m128i equal3 = _mm_cmpeq_epi32 (_mm_and_si128 (_mm_load_si128 (slots + 3), keep), want);
    //  0 or -1 per slot, narrowed to a byte each, slot order kept
    __m128i bytes = _mm_packs_epi16 (_mm_packs_epi32 (equal0, equal1),
                                     _mm_packs_epi32 (equal2, equal3));
    return (uint32_t) _mm_movemask_epi8 (bytes);
}
#else
static uint32_t
s_bucket_match (const uint32_t *bucket, uint32_t mask, uint32_t value)
{
    uint32_t found = 0;
    for (uint32_t i = 0; i < STORE_BUCKET_SLOTS; i++)
        found |= (uint32_t) ((bucket [i] & mask) == value) << i;
    return found;
}
#endif

static uint32_t
s_bucket_tagged (const uint32_t *bucket, uint32_t tag)
{
    return s_bucket_match (bucket, ~STORE_POS_MASK, tag);
}

static uint32_t
s_bucket_holding (const uint32_t *bucket, uint32_t value)
{
    return s_bucket_match (bucket, UINT32_MAX, value);
}

//  Put ring position pos into the index: into the first slot free from
//  its home bucket on, counting a spill in each full bucket passed.
static void
s_index_put (zchat_store_t *self, size_t pos)
{
    size_t mask = self->buckets - 1;
    uint64_t hash = self->keys [pos].hash;
    size_t bucket = STORE_BUCKET (hash, mask);
    while (true) {
        uint32_t *slots = self->index + bucket * STORE_BUCKET_SLOTS;
        uint32_t free_slots = s_bucket_holding (slots, 0);
        if (free_slots) {
            slots [__builtin_ctz (free_slots)] = STORE_TAG (hash) | ((uint32_t) pos + 1);
            return;
        }
        if (self->spill [bucket] < STORE_SPILL_STUCK)
            self->spill [bucket]++;
        bucket = (bucket + 1) & mask;
    }
}

//  Take ring position pos out of the index. Nothing moves: the slot is
//  freed, and the spill counts of the buckets it had passed go down (a
//  count stuck at its top stays, which only makes lookups look further).
static void
s_index_drop (zchat_store_t *self, size_t pos)
{
    size_t mask = self->buckets - 1;
    size_t bucket = STORE_BUCKET (self->keys [pos].hash, mask);
    uint32_t value = STORE_TAG (self->keys [pos].hash) | ((uint32_t) pos + 1);
    for (size_t passed = 0; passed < self->buckets; passed++) {
        uint32_t *slots = self->index + bucket * STORE_BUCKET_SLOTS;
        uint32_t found = s_bucket_holding (slots, value);
        if (found) {
            slots [__builtin_ctz (found)] = 0;
            return;
        }
        assert (self->spill [bucket] > 0);
        if (self->spill [bucket] < STORE_SPILL_STUCK)
            self->spill [bucket]--;
        bucket = (bucket + 1) & mask;
    }
    assert (false);             //  every position in the ring is indexed
}

//  Walks the keys with one hash: the home bucket, then the buckets after
//  it for as long as something spilled past the one before.
typedef struct {
    uint64_t hash;
    uint32_t tag;
    size_t bucket;
    size_t passed;                  //  buckets left behind
    uint32_t found;                 //  slots of this bucket still to look at
} store_probe_t;

static void
s_probe_start (zchat_store_t *self, store_probe_t *probe, uint64_t hash)
{
    probe->hash = hash;
    probe->tag = STORE_TAG (hash);
    probe->bucket = STORE_BUCKET (hash, self->buckets - 1);
    probe->passed = 0;
    probe->found = s_bucket_tagged (self->index + probe->bucket * STORE_BUCKET_SLOTS,
                                    probe->tag);
}

//  The next key with the probe's hash, or NULL. The tag only narrows the
//  search; the whole hash is compared in the ring.
static const store_key_t *
s_probe_next (zchat_store_t *self, store_probe_t *probe)
{
    while (true) {
        while (probe->found) {
            uint32_t slot = self->index [probe->bucket * STORE_BUCKET_SLOTS
                                         + (size_t) __builtin_ctz (probe->found)];
            probe->found &= probe->found - 1;
            if (!slot)
                continue;           //  a free slot, when the tag is 0
            const store_key_t *key = &self->keys [(slot & STORE_POS_MASK) - 1];
            if (key->hash == probe->hash)
                return key;
        }
        if (self->spill [probe->bucket] == 0 || ++probe->passed == self->buckets)
            return NULL;
        probe->bucket = (probe->bucket + 1) & (self->buckets - 1);
        probe->found = s_bucket_tagged (self->index + probe->bucket * STORE_BUCKET_SLOTS,
                                        probe->tag);
    }
}

//  Resize the ring to limit entries (a power of two, at least what it
//  holds) and rebuild the index. Returns 0, or -1 if out of memory (the
//  old ring is kept).
static int
s_keys_resize (zchat_store_t *self, size_t limit)
{
    //  Load at most one half: two slots per key
    size_t buckets = limit * 2 / STORE_BUCKET_SLOTS;
    store_key_t *keys = (store_key_t *) malloc (limit * sizeof (store_key_t));
    uint32_t *index = NULL;
    uint8_t *spill = (uint8_t *) calloc (buckets, 1);
    //  A bucket is one cache line
    if (posix_memalign ((void **) &index, 64,
                        buckets * STORE_BUCKET_SLOTS * sizeof (uint32_t)))
        index = NULL;
    if (!keys || !index || !spill || limit > STORE_POS_MASK) {
        free (keys);
        free (index);
        free (spill);
        return -1;
    }
    memset (index, 0, buckets * STORE_BUCKET_SLOTS * sizeof (uint32_t));
    for (uint64_t at = self->keys_tail; at < self->keys_head; at++)
        keys [at & (limit - 1)] = self->keys [at & (self->keys_limit - 1)];
    free (self->keys);
    free (self->index);
    free (self->spill);
    self->keys = keys;
    self->keys_limit = limit;
    self->index = index;
    self->spill = spill;
    self->buckets = buckets;
    for (uint64_t at = self->keys_tail; at < self->keys_head; at++)
        s_index_put (self, (size_t) (at & (limit - 1)));
    return 0;
}

//  Forget the oldest key.
static void
s_keys_evict (zchat_store_t *self)
{
    assert (self->keys_head > self->keys_tail);
    s_index_drop (self, (size_t) (self->keys_tail & (self->keys_limit - 1)));
    self->keys_tail++;
}

//  Remember that chunk holds the message with this key hash. Grows the
//  ring up to keys_max, then forgets the oldest key. Never fails: out of
//  memory, the window just stays smaller.
static void
s_keys_add (zchat_store_t *self, uint64_t hash, int64_t chunk)
{
    while (self->keys_head - self->keys_tail >= self->keys_max)
        s_keys_evict (self);
    if (self->keys_head - self->keys_tail == self->keys_limit
    &&  s_keys_resize (self, self->keys_limit * 2))
        s_keys_evict (self);
    size_t pos = (size_t) (self->keys_head & (self->keys_limit - 1));
    self->keys [pos].hash = hash;
    self->keys [pos].chunk = chunk;
    s_index_put (self, pos);
    self->keys_head++;
}

//  Forget the keys added since the group began (it was rolled back).
static void
s_keys_unwind (zchat_store_t *self)
{
    while (self->keys_head > self->keys_group && self->keys_head > self->keys_tail) {
        self->keys_head--;
        s_index_drop (self, (size_t) (self->keys_head & (self->keys_limit - 1)));
    }
}


//  --------------------------------------------------------------------------
//  The newest committed seq of rooms, remembered between groups. Room
//  names come from clients, so the hash is keyed (the seed of the
//  idempotency index, a different mix): nobody can line names up in one
//  probe chain.

static size_t
s_newest_slot (zchat_store_t *self, const char *room, size_t room_len)
{
    uint64_t hash = s_name_keyed (~self->hash_seed, room, room_len);
    size_t mask = self->newest_size - 1;
    size_t slot = (size_t) hash & mask;
    while (self->newest [slot].room_len
    &&  (self->newest [slot].room_len != room_len
         || memcmp (self->newest [slot].room, room, room_len) != 0))
        slot = (slot + 1) & mask;
    return slot;
}

//  The room's entry, or NULL if it is not remembered.
static store_newest_t *
s_newest_find (zchat_store_t *self, const char *room, size_t room_len)
{
    if (!self->newest)
        return NULL;
    store_newest_t *entry = &self->newest [s_newest_slot (self, room, room_len)];
    return entry->room_len? entry: NULL;
}

//  Remember the room's newest committed seq. A table that would be more
//  than half full doubles, or past newest_max is emptied (the rooms
//  in use come back as they are touched). Out of memory, it forgets all:
//  a room not remembered is only asked of SQLite again.
static void
s_newest_set (zchat_store_t *self, const char *room, size_t room_len, uint64_t last_seq)
{
    store_newest_t *entry = s_newest_find (self, room, room_len);
    if (entry) {
        entry->last_seq = last_seq;
        return;
    }
    if (!self->newest || (self->newest_count + 1) * 2 > self->newest_size) {
        store_newest_t *old = self->newest;
        size_t old_size = self->newest_size;
        size_t size = !old? STORE_NEWEST_MIN
                    : old_size < self->newest_max? old_size * 2: old_size;
        self->newest = (store_newest_t *) calloc (size, sizeof (store_newest_t));
        self->newest_size = self->newest? size: 0;
        self->newest_count = 0;
        if (!self->newest) {
            free (old);
            return;
        }
        if (size > old_size)
            for (size_t i = 0; i < old_size; i++)
                if (old [i].room_len) {
                    self->newest [s_newest_slot (self, old [i].room, old [i].room_len)]
                        = old [i];
                    self->newest_count++;
                }
        free (old);
    }
    entry = &self->newest [s_newest_slot (self, room, room_len)];
    memcpy (entry->room, room, room_len);
    entry->room_len = (uint8_t) room_len;
    entry->last_seq = last_seq;
    self->newest_count++;
}


//  --------------------------------------------------------------------------
//  The rooms touched by the open group

//  FNV-1a: short names, cheap and good enough for a small table.
static uint32_t
s_name_hash (const char *name, size_t len)
{
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        hash ^= (uint8_t) name [i];
        hash *= 16777619u;
    }
    return hash;
}

//  The open group's entry for room, or NULL if the group has not touched it.
static store_pending_t *
s_pending_find (zchat_store_t *self, const char *room, size_t room_len)
{
    if (!self->in_group || self->pending_count == 0)
        return NULL;
    //  Appends come in runs for one room (a SAYS batch, a busy room): the
    //  room found last is compared first, before any hashing
    if (self->pending_last < self->pending_count) {
        store_pending_t *pending = &self->pending [self->pending_last];
        if (pending->room_len == room_len && memcmp (pending->room, room, room_len) == 0)
            return pending;
    }
    size_t mask = self->touched_size - 1;
    size_t slot = s_name_hash (room, room_len) & mask;
    while (self->touched [slot]) {
        store_pending_t *pending = &self->pending [self->touched [slot] - 1];
        if (pending->room_len == room_len && memcmp (pending->room, room, room_len) == 0) {
            self->pending_last = self->touched [slot] - 1;
            return pending;
        }
        slot = (slot + 1) & mask;
    }
    return NULL;
}

//  Size the touched table (a power of two) and rehash the rooms in use.
//  Returns 0, or -1 if out of memory (the old table is kept).
static int
s_touched_resize (zchat_store_t *self, size_t size)
{
    uint32_t *table = (uint32_t *) calloc (size, sizeof (uint32_t));
    if (!table || size > UINT32_MAX) {
        free (table);
        return -1;
    }
    for (size_t i = 0; i < self->pending_count; i++) {
        store_pending_t *pending = &self->pending [i];
        size_t slot = s_name_hash (pending->room, pending->room_len) & (size - 1);
        while (table [slot])
            slot = (slot + 1) & (size - 1);
        table [slot] = (uint32_t) i + 1;
        pending->slot = slot;
    }
    free (self->touched);
    self->touched = table;
    self->touched_size = size;
    return 0;
}

//  The open group's entry for room, created (with the room's committed
//  newest seq: remembered, or asked of SQLite) if needed. Returns NULL if
//  out of memory or on a storage error. The pointer is valid until the
//  next call (the array may move).
static store_pending_t *
s_pending_open (zchat_store_t *self, const char *room, size_t room_len)
{
    store_pending_t *pending = s_pending_find (self, room, room_len);
    if (pending)
        return pending;
    //  Keep the load at most one half so probes stay short.
    if ((self->pending_count + 1) * 2 > self->touched_size
    &&  s_touched_resize (self, self->touched_size * 2))
        return NULL;
    if (self->pending_count == self->pending_limit) {
        size_t limit = self->pending_limit? self->pending_limit * 2: 16;
        store_pending_t *array = (store_pending_t *) realloc (self->pending,
                                                    limit * sizeof (store_pending_t));
        if (!array)
            return NULL;
        memset (array + self->pending_limit, 0,
                (limit - self->pending_limit) * sizeof (store_pending_t));
        self->pending = array;
        self->pending_limit = limit;
    }
    uint64_t last_seq = 0;
    store_newest_t *known = s_newest_find (self, room, room_len);
    if (known)
        last_seq = known->last_seq;
    else
    if (s_room_newest (self, room, room_len, &last_seq))
        return NULL;
    //  The entry's buffers, if any, are kept from an earlier group.
    pending = &self->pending [self->pending_count];
    memcpy (pending->room, room, room_len);
    pending->room [room_len] = '\0';
    pending->room_len = room_len;
    pending->last_seq = last_seq;
    pending->count = 0;
    pending->head_size = 0;
    pending->data_size = 0;
    size_t mask = self->touched_size - 1;
    size_t slot = s_name_hash (room, room_len) & mask;
    while (self->touched [slot])
        slot = (slot + 1) & mask;
    self->touched [slot] = (uint32_t) ++self->pending_count;
    pending->slot = slot;
    self->pending_last = self->pending_count - 1;
    return pending;
}

//  Forget the rooms touched by the group; keep buffers for the next one,
//  up to STORE_KEEP_BYTES in all (the last entries, the least used, are
//  freed first).
static void
s_pending_clear (zchat_store_t *self)
{
    for (size_t i = 0; i < self->pending_count; i++) {
        store_pending_t *pending = &self->pending [i];
        self->touched [pending->slot] = 0;
        pending->count = 0;
        pending->head_size = 0;
        pending->data_size = 0;
    }
    self->pending_count = 0;
    for (size_t i = self->pending_limit; i > 0 && self->pending_bytes > self->pending_keep; i--) {
        store_pending_t *pending = &self->pending [i - 1];
        self->pending_bytes -= pending->head_limit + pending->data_limit;
        free (pending->head);
        free (pending->data);
        pending->head = pending->data = NULL;
        pending->head_limit = pending->data_limit = 0;
    }
}

//  Make *buffer hold at least need bytes, doubling from minimum; the
//  growth is added to *total if given. Returns 0, or -1 if out of memory
//  (the buffer is unchanged).
static int
s_reserve (uint8_t **buffer, size_t *limit, size_t need, size_t minimum, size_t *total)
{
    if (*limit >= need)
        return 0;
    size_t size = *limit? *limit: minimum;
    while (size < need)
        size *= 2;
    uint8_t *grown = (uint8_t *) realloc (*buffer, size);
    if (!grown)
        return -1;
    if (total)
        *total += size - *limit;
    *buffer = grown;
    *limit = size;
    return 0;
}

//  Encode one message into the room's chunk, starting the chunk (and
//  taking its id) if it is empty. Returns 0, or -1 if out of memory
//  (nothing changed).
static int
s_pending_add (zchat_store_t *self, store_pending_t *pending, uint64_t seq,
               uint64_t ts, const char *nick, size_t nick_len, uint8_t kind,
               uint64_t msg_id, const char *text, size_t text_size)
{
    if (s_reserve (&pending->head, &pending->head_limit,
                   pending->head_size + STORE_ENTRY_MAX, STORE_HEAD_MIN,
                   &self->pending_bytes)
    ||  s_reserve (&pending->data, &pending->data_limit,
                   pending->data_size + text_size, STORE_DATA_MIN,
                   &self->pending_bytes))
        return -1;
    if (pending->count == 0) {
        pending->id = self->next_id++;
        pending->first_seq = seq;
        pending->chunk_seq = 0;
        pending->prev_ts = 0;
        pending->min_ts = pending->max_ts = ts;
    }
    uint8_t *entry = pending->head + pending->head_size;
    size_t size = s_varint_put (entry, seq - pending->chunk_seq);
    uint64_t delta = ts - pending->prev_ts;
    size += s_varint_put (entry + size, delta << 1 ^ (0 - (delta >> 63)));
    entry [size++] = kind;
    entry [size++] = (uint8_t) nick_len;
    memcpy (entry + size, nick, nick_len);
    size += nick_len;
    size += s_varint_put (entry + size, msg_id);
    size += s_varint_put (entry + size, text_size);
    pending->head_size += size;
    if (text_size)
        memcpy (pending->data + pending->data_size, text, text_size);
    pending->data_size += text_size;
    pending->chunk_seq = seq;
    pending->prev_ts = ts;
    if (ts < pending->min_ts)
        pending->min_ts = ts;
    if (ts > pending->max_ts)
        pending->max_ts = ts;
    pending->count++;
    return 0;
}

//  Write the room's chunk (if it holds anything) as a row, inside the
//  open transaction, and empty it. Returns 0 or -1.
static int
s_pending_write (zchat_store_t *self, store_pending_t *pending)
{
    if (pending->count == 0)
        return 0;
    size_t size = pending->data_size + pending->head_size + STORE_TRAILER_SIZE;
    if (s_reserve (&pending->data, &pending->data_limit, size, STORE_DATA_MIN,
                   &self->pending_bytes)) {
        zsys_error ("zchat_store: out of memory writing a chunk");
        return -1;
    }
    uint8_t *blob = pending->data;
    memcpy (blob + pending->data_size, pending->head, pending->head_size);
    uint8_t *trailer = blob + size - STORE_TRAILER_SIZE;
    s_put_u32 (trailer, (uint32_t) pending->count);
    s_put_u32 (trailer + 4, (uint32_t) pending->head_size);
    trailer [8] = STORE_CHUNK_FORMAT;

    sqlite3_stmt *stmt = self->stmt [ST_CHUNK_INSERT];
    int rc = sqlite3_bind_int64 (stmt, 1, pending->id);
    rc |= sqlite3_bind_text (stmt, 2, pending->room, (int) pending->room_len, SQLITE_STATIC);
    rc |= sqlite3_bind_int64 (stmt, 3, (int64_t) pending->first_seq);
    rc |= sqlite3_bind_int64 (stmt, 4, (int64_t) pending->chunk_seq);
    rc |= sqlite3_bind_int64 (stmt, 5, (int64_t) pending->count);
    rc |= sqlite3_bind_int64 (stmt, 6, (int64_t) pending->min_ts);
    rc |= sqlite3_bind_int64 (stmt, 7, (int64_t) pending->max_ts);
    rc |= sqlite3_bind_blob (stmt, 8, blob, (int) size, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        s_log_error (self, "chunk: bind");
        return -1;
    }
    if (s_run (self, ST_CHUNK_INSERT))
        return -1;
    pending->count = 0;
    pending->head_size = 0;
    pending->data_size = 0;
    return 0;
}


//  --------------------------------------------------------------------------
//  Reading chunks

//  Fill chunk from a row whose columns from `at` on are id, first_seq,
//  last_seq, count, min_ts, max_ts.
static void
s_chunk_row (sqlite3_stmt *stmt, int at, store_chunk_t *chunk)
{
    chunk->id = sqlite3_column_int64 (stmt, at);
    chunk->first_seq = s_column_u64 (stmt, at + 1);
    chunk->last_seq = s_column_u64 (stmt, at + 2);
    chunk->count = s_column_u64 (stmt, at + 3);
    chunk->min_ts = s_column_u64 (stmt, at + 4);
    chunk->max_ts = s_column_u64 (stmt, at + 5);
    chunk->pending = NULL;
}

//  The chunk of room holding seq, or the first one after it. Returns 1
//  with chunk filled, 0 if there is none, -1 on error.
static int
s_chunk_at (zchat_store_t *self, const char *room, size_t room_len, uint64_t seq,
            store_chunk_t *chunk)
{
    sqlite3_stmt *stmt = self->stmt [ST_CHUNK_AT];
    if (s_bind_room (self, ST_CHUNK_AT, room, room_len)
    ||  sqlite3_bind_int64 (stmt, 2, (int64_t) seq)) {
        s_log_error (self, "chunk at: bind");
        return -1;
    }
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        s_chunk_row (stmt, 0, chunk);
    else
    if (rc != SQLITE_DONE)
        s_log_error (self, "chunk at");
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW? 1: rc == SQLITE_DONE? 0: -1;
}

//  Open a cursor on the chunk's messages: the pending chunk in memory, or
//  the row, read with ST_CHUNK_GET. Returns 0 or -1 (the row is gone, or
//  its blob is damaged). After 0, call s_chunk_close when done.
static int
s_chunk_open (zchat_store_t *self, const store_chunk_t *chunk, store_cursor_t *cursor)
{
    if (chunk->pending) {
        s_cursor_pending (cursor, chunk->pending);
        return 0;
    }
    sqlite3_stmt *stmt = self->stmt [ST_CHUNK_GET];
    if (sqlite3_bind_int64 (stmt, 1, chunk->id)) {
        s_log_error (self, "chunk: bind");
        return -1;
    }
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW) {
        const uint8_t *blob = (const uint8_t *) sqlite3_column_blob (stmt, 4);
        int size = sqlite3_column_bytes (stmt, 4);
        if (size >= 0 && s_cursor_blob (cursor, blob, (size_t) size) == 0
        &&  cursor->left == s_column_u64 (stmt, 3))
            return 0;
        zsys_error ("zchat_store: chunk %" PRId64 " is damaged", chunk->id);
    }
    else
    if (rc == SQLITE_DONE)
        zsys_error ("zchat_store: chunk %" PRId64 " vanished", chunk->id);
    else
        s_log_error (self, "chunk");
    sqlite3_reset (stmt);
    return -1;
}

static void
s_chunk_close (zchat_store_t *self)
{
    sqlite3_reset (self->stmt [ST_CHUNK_GET]);
}

//  Log a chunk whose messages do not decode.
static void
s_chunk_damaged (const store_chunk_t *chunk)
{
    zsys_error ("zchat_store: chunk %" PRId64 " (seq %" PRIu64 "..%" PRIu64
                ") does not decode", chunk->id, chunk->first_seq, chunk->last_seq);
}

//  Number of the chunk's messages with lo <= seq <= hi, or -1 on error.
//  Arithmetic when the chunk's seqs have no holes (the broker's never do),
//  else by decoding it.
static int64_t
s_chunk_count (zchat_store_t *self, const store_chunk_t *chunk, uint64_t lo, uint64_t hi)
{
    if (hi < lo || lo > chunk->last_seq || hi < chunk->first_seq)
        return 0;
    if (lo <= chunk->first_seq && hi >= chunk->last_seq)
        return (int64_t) chunk->count;
    if (chunk->last_seq - chunk->first_seq + 1 == chunk->count) {
        uint64_t from = lo > chunk->first_seq? lo: chunk->first_seq;
        uint64_t to = hi < chunk->last_seq? hi: chunk->last_seq;
        return (int64_t) (to - from + 1);
    }
    store_cursor_t cursor;
    if (s_chunk_open (self, chunk, &cursor))
        return -1;
    int64_t count = 0;
    int rc;
    while ((rc = s_cursor_next (&cursor)) == 1)
        if (cursor.seq >= lo && cursor.seq <= hi)
            count++;
    s_chunk_close (self);
    if (rc < 0) {
        s_chunk_damaged (chunk);
        return -1;
    }
    return count;
}

//  The seq of the nth newest (n >= 1) of the chunk's messages with
//  lo <= seq <= hi, which must hold at least n of them. 0 on error.
static uint64_t
s_chunk_nth_newest (zchat_store_t *self, const store_chunk_t *chunk,
                    uint64_t lo, uint64_t hi, uint64_t n)
{
    if (chunk->last_seq - chunk->first_seq + 1 == chunk->count) {
        uint64_t to = hi < chunk->last_seq? hi: chunk->last_seq;
        return to - n + 1;
    }
    int64_t total = s_chunk_count (self, chunk, lo, hi);
    if (total < (int64_t) n)
        return 0;
    store_cursor_t cursor;
    if (s_chunk_open (self, chunk, &cursor))
        return 0;
    //  The (total - n)th in range, counting from 0, ascending.
    uint64_t skip = (uint64_t) total - n;
    uint64_t seq = 0;
    while (s_cursor_next (&cursor) == 1) {
        if (cursor.seq < lo || cursor.seq > hi)
            continue;
        if (skip-- == 0) {
            seq = cursor.seq;
            break;
        }
    }
    s_chunk_close (self);
    return seq;
}

//  --------------------------------------------------------------------------
//  mkdir -p with mode 0700 for what it creates; existing directories are
//  left as they are. Returns 0 or -1 with errno set.

static int
s_mkdir_p (const char *dir)
{
    char *path = strdup (dir);
    if (!path)
        return -1;
    int rc = 0;
    for (char *cursor = path + 1; ; cursor++) {
        if (*cursor == '/' || *cursor == '\0') {
            char saved = *cursor;
            *cursor = '\0';
            if (mkdir (path, 0700) && errno != EEXIST) {
                rc = -1;
                break;
            }
            *cursor = saved;
            if (saved == '\0')
                break;
        }
    }
    int saved_errno = errno;
    free (path);
    if (rc == 0) {
        struct stat st;
        if (stat (dir, &st))
            return -1;
        if (!S_ISDIR (st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
    }
    errno = saved_errno;
    return rc;
}


//  --------------------------------------------------------------------------
//  Take the data directory: an exclusive flock on DIR/zchat.lock, holding
//  our pid for the error message of whoever comes second. flock locks
//  belong to the open file description, so even a second open in this
//  same process conflicts (fcntl locks would not). Returns the fd, or -1
//  with error filled in.

static int
s_lock (const char *dir, char *error, size_t error_size)
{
    char *path = zsys_sprintf ("%s/%s", dir, STORE_LOCK_NAME);
    if (!path) {
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf (error, error_size, "cannot open %s: %s", path, strerror (errno));
        goto cleanup;
    }
    if (flock (fd, LOCK_EX | LOCK_NB)) {
        if (errno == EWOULDBLOCK) {
            //  The holder writes its pid just after locking; a reader that
            //  comes in between sees no number.
            char pid_text [32] = "";
            ssize_t got = pread (fd, pid_text, sizeof (pid_text) - 1, 0);
            char *end = NULL;
            long pid = got > 0? strtol (pid_text, &end, 10): 0;
            if (pid > 0 && end != pid_text)
                snprintf (error, error_size,
                          "data directory %s is in use by another zchat-broker (pid %ld)",
                          dir, pid);
            else
                snprintf (error, error_size,
                          "data directory %s is in use by another zchat-broker (pid unknown)",
                          dir);
        }
        else
            snprintf (error, error_size, "cannot lock %s: %s", path, strerror (errno));
        close (fd);
        fd = -1;
        goto cleanup;
    }
    char pid_text [32];
    int len = snprintf (pid_text, sizeof (pid_text), "%ld\n", (long) getpid ());
    if (ftruncate (fd, 0)
    ||  pwrite (fd, pid_text, (size_t) len, 0) != (ssize_t) len) {
        snprintf (error, error_size, "cannot write %s: %s", path, strerror (errno));
        close (fd);
        fd = -1;
    }
cleanup:
    zstr_free (&path);
    return fd;
}


//  --------------------------------------------------------------------------
//  Run one pragma; if expect is given, its single-row answer must equal it
//  (case-insensitive). Returns 0 or -1 with error filled in.

static int
s_pragma (sqlite3 *db, const char *sql, const char *expect, char *error, size_t error_size)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step (stmt);
        if (rc == SQLITE_ROW && expect) {
            const char *answer = (const char *) sqlite3_column_text (stmt, 0);
            if (!answer || strcasecmp (answer, expect)) {
                snprintf (error, error_size, "%s answered %s, not %s",
                          sql, answer? answer: "nothing", expect);
                sqlite3_finalize (stmt);
                return -1;
            }
        }
        while (rc == SQLITE_ROW)
            rc = sqlite3_step (stmt);
    }
    sqlite3_finalize (stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_OK) {
        snprintf (error, error_size, "%s: %s", sql, sqlite3_errmsg (db));
        return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  Run a schema script (one transaction: BEGIN ... COMMIT) and free it; a
//  NULL script means it could not be made. On failure the transaction is
//  rolled back and error says what could not be done (what) to path.
//  Returns 0 or -1.

static int
s_schema_exec (sqlite3 *db, char **sql_p, const char *what, const char *path,
               char *error, size_t error_size)
{
    if (!*sql_p) {
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    char *message = NULL;
    int rc = sqlite3_exec (db, *sql_p, NULL, NULL, &message);
    zstr_free (sql_p);
    if (rc != SQLITE_OK) {
        snprintf (error, error_size, "cannot %s of %s: %s", what, path,
                  message? message: sqlite3_errmsg (db));
        sqlite3_free (message);
        if (!sqlite3_get_autocommit (db))
            sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Upgrade a version 2 database to version 3, in place and in one
//  transaction (a crash leaves version 2 as it was, and the next start
//  upgrades it again). Version 2 had an index on chunks (min_ts) for the
//  age rule, which now walks the chunks by rowid instead: dropping it
//  saves a page at every commit. The index on nick_keys (key) came
//  after version 2 without a bump, so a version 2 file may lack it. Rows
//  are left as they are: chunks did not change, and what version 2 kept
//  in rooms still holds. A broker of version 2 refuses the file after
//  this (its version is higher). Returns 0 or -1 with error filled in.

static int
s_schema_upgrade (sqlite3 *db, const char *path, char *error, size_t error_size)
{
    char *sql = zsys_sprintf ("BEGIN IMMEDIATE;"
                              " DROP INDEX IF EXISTS chunks_min_ts; %s %s"
                              " PRAGMA user_version = %d; COMMIT;",
                              S_NICK_KEYS_INDEX, S_NICK_KEYS_NOCASE,
                              STORE_SCHEMA_VERSION);
    if (s_schema_exec (db, &sql, "upgrade from schema version 2", path,
                       error, error_size))
        return -1;
    zsys_info ("zchat_store: %s upgraded from schema version 2 to %d", path,
               STORE_SCHEMA_VERSION);
    return 0;
}


//  --------------------------------------------------------------------------
//  Create the schema in a fresh database, accept the current one, upgrade
//  version 2, refuse any other. Returns 0 or -1 with error filled in.

static int
s_schema (sqlite3 *db, const char *path, char *error, size_t error_size)
{
    sqlite3_stmt *stmt = NULL;
    int version = -1;
    if (sqlite3_prepare_v2 (db, "PRAGMA user_version", -1, &stmt, NULL) == SQLITE_OK
    &&  sqlite3_step (stmt) == SQLITE_ROW)
        version = sqlite3_column_int (stmt, 0);
    sqlite3_finalize (stmt);
    if (version < 0) {
        snprintf (error, error_size, "cannot read the schema version: %s",
                  sqlite3_errmsg (db));
        return -1;
    }
    if (version == STORE_SCHEMA_VERSION) {
        //  A file of this schema from before nicks were one in any case
        //  lacks the index that finds them so. Nothing is written if it
        //  has it.
        char *sql = zsys_sprintf ("BEGIN IMMEDIATE; %s COMMIT;", S_NICK_KEYS_NOCASE);
        return s_schema_exec (db, &sql, "index the nicks in any case", path,
                              error, error_size);
    }
    if (version == 2)
        return s_schema_upgrade (db, path, error, error_size);
    if (version == 1) {
        snprintf (error, error_size,
                  "%s has schema version 1 (one row per message), which this "
                  "zchat-broker no longer reads; it needs version %d: move the "
                  "file away to start with an empty store", path, STORE_SCHEMA_VERSION);
        return -1;
    }
    if (version > STORE_SCHEMA_VERSION) {
        snprintf (error, error_size,
                  "%s has schema version %d; this zchat-broker knows only %d",
                  path, version, STORE_SCHEMA_VERSION);
        return -1;
    }
    //  Version 0: a new file. Tables and version in one transaction, so a
    //  crash here leaves either nothing or a complete schema.
    char *sql = zsys_sprintf ("BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;",
                              s_schema_sql, STORE_SCHEMA_VERSION);
    return s_schema_exec (db, &sql, "create the schema", path, error, error_size);
}


//  --------------------------------------------------------------------------
//  A nick is one nick in any ASCII case, and belongs to the key that
//  claimed it first. A store written before that rule may bind one nick
//  in two cases to two keys ("alice" to one, "Alice" later to another).
//  Nothing is changed: the earliest claim owns the nick in every case
//  (ST_NICK_OWNER), a later one is ignored and not counted against its
//  key, and --release-nick in any case removes them all. Each such later
//  binding is logged here, at every open, until it is gone. Returns 0, or
//  -1 if the table could not be read (logged; the store still opens: the
//  statements do not depend on this).

#define S_NICK_CONFLICTS_LOGGED 20

static int
s_nick_conflicts (zchat_store_t *self, const char *path)
{
    //  Each row against the earliest row of its nick in any case.
    const char *sql =
        "SELECT nick, key, first_nick, first_key FROM ("
        "  SELECT nick, key, first_value (nick) OVER same AS first_nick,"
        "         first_value (key) OVER same AS first_key FROM nick_keys"
        "  WINDOW same AS (PARTITION BY nick COLLATE NOCASE ORDER BY ts, nick))"
        " WHERE key <> first_key ORDER BY first_nick, nick";
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (self->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        s_log_error (self, "nick conflicts");
        return -1;
    }
    int rc;
    size_t count = 0;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (++count > S_NICK_CONFLICTS_LOGGED)
            continue;
        //  Values from disk, printed with their length bounded
        zsys_warning ("zchat_store: %s: nick %.32s is bound to key %.40s, but %.32s,"
                      " the same nick in another case, was bound earlier to key"
                      " %.40s: that binding holds in every case and this one is"
                      " ignored (--release-nick %.32s removes every binding of the nick)", path,
                      (const char *) sqlite3_column_text (stmt, 0),
                      (const char *) sqlite3_column_text (stmt, 1),
                      (const char *) sqlite3_column_text (stmt, 2),
                      (const char *) sqlite3_column_text (stmt, 3),
                      (const char *) sqlite3_column_text (stmt, 2));
    }
    if (count > S_NICK_CONFLICTS_LOGGED)
        zsys_warning ("zchat_store: %s: %zu more nicks bound in another case to"
                      " another key after an earlier binding, ignored likewise",
                      path, count - S_NICK_CONFLICTS_LOGGED);
    if (rc != SQLITE_DONE)
        s_log_error (self, "nick conflicts");
    sqlite3_finalize (stmt);
    return rc == SQLITE_DONE? 0: -1;
}


//  --------------------------------------------------------------------------
//  Read the message ids of one chunk into the index, from its head only
//  (the texts are never read). blob is positioned on the chunk's row;
//  buffer is scratch space that grows as needed. Returns the number of
//  ids added, or -1 if the chunk is damaged (skipped).

static int64_t
s_keys_load_chunk (zchat_store_t *self, sqlite3_blob *blob, int64_t id,
                   uint8_t **buffer, size_t *limit)
{
    int size = sqlite3_blob_bytes (blob);
    uint8_t trailer [STORE_TRAILER_SIZE];
    store_cursor_t cursor;
    if (size < STORE_TRAILER_SIZE
    ||  sqlite3_blob_read (blob, trailer, STORE_TRAILER_SIZE,
                           size - STORE_TRAILER_SIZE) != SQLITE_OK
    ||  s_cursor_trailer (&cursor, trailer, (size_t) size))
        return -1;
    if (s_reserve (buffer, limit, cursor.head_size + 1, 4096, NULL)
    ||  sqlite3_blob_read (blob, *buffer, (int) cursor.head_size,
                           (int) cursor.text_size) != SQLITE_OK)
        return -1;
    cursor.head = *buffer;
    int64_t added = 0;
    int rc;
    while ((rc = s_cursor_next (&cursor)) == 1)
        if (cursor.msg_id) {
            s_keys_add (self, s_key_hash (self, cursor.nick, cursor.nick_len,
                                          cursor.msg_id), id);
            added++;
        }
    return rc == 0? added: -1;
}


//  --------------------------------------------------------------------------
//  Take the next chunk id from the newest chunk, and rebuild the
//  idempotency index from the newest chunks: walk back from the newest
//  until they hold keys_max messages, then read their ids oldest first.
//  Bounded: at most keys_max messages, and only the heads of their chunks.
//  Returns 0 or -1 with error filled in.

static int
s_keys_rebuild (zchat_store_t *self, char *error, size_t error_size)
{
    sqlite3_stmt *stmt = self->stmt [ST_CHUNK_NEWEST];
    int64_t start = 0;
    uint64_t messages = 0;
    int rc = SQLITE_DONE;
    if (sqlite3_bind_int64 (stmt, 1, INT64_MAX)) {
        snprintf (error, error_size, "bind: %s", sqlite3_errmsg (self->db));
        return -1;
    }
    self->next_id = 1;
    while (messages < self->keys_max && (rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        start = sqlite3_column_int64 (stmt, 0);
        if (start >= self->next_id)
            self->next_id = start + 1;
        messages += s_column_u64 (stmt, 1);
    }
    if (messages < self->keys_max && rc != SQLITE_DONE) {
        snprintf (error, error_size, "cannot read the chunks: %s", sqlite3_errmsg (self->db));
        sqlite3_reset (stmt);
        return -1;
    }
    sqlite3_reset (stmt);
    if (start == 0)
        return 0;                   //  no chunks yet

    int64_t started = zclock_usecs ();
    stmt = self->stmt [ST_CHUNK_SINCE];
    sqlite3_blob *blob = NULL;
    uint8_t *buffer = NULL;
    size_t limit = 0;
    int64_t chunks = 0, keys = 0, damaged = 0;
    if (sqlite3_bind_int64 (stmt, 1, start)) {
        snprintf (error, error_size, "bind: %s", sqlite3_errmsg (self->db));
        return -1;
    }
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64 (stmt, 0);
        int blob_rc = blob? sqlite3_blob_reopen (blob, id)
                          : sqlite3_blob_open (self->db, "main", "chunks", "data",
                                               id, 0, &blob);
        int64_t added = blob_rc == SQLITE_OK
                      ? s_keys_load_chunk (self, blob, id, &buffer, &limit): -1;
        if (added < 0) {
            damaged++;
            if (blob_rc != SQLITE_OK) {
                //  A failed (re)open leaves the handle unusable.
                sqlite3_blob_close (blob);
                blob = NULL;
            }
        }
        else
            keys += added;
        chunks++;
    }
    sqlite3_blob_close (blob);
    sqlite3_reset (stmt);
    free (buffer);
    if (rc != SQLITE_DONE) {
        snprintf (error, error_size, "cannot read the chunks: %s", sqlite3_errmsg (self->db));
        return -1;
    }
    if (damaged)
        zsys_warning ("zchat_store: %" PRId64 " damaged chunks skipped while reading"
                      " message ids", damaged);
    ZCHAT_DEBUG ("zchat_store: %" PRId64 " message ids from %" PRId64
                 " chunks read in %" PRId64 " ms", keys, chunks,
                 (zclock_usecs () - started) / 1000);
    return 0;
}


//  --------------------------------------------------------------------------
//  Whether a round whose PASSIVE checkpoint saw a WAL of frames frames and
//  copied done of them ends with a RESTART, the event loop's last commit
//  having left the WAL at now_pages and the last successful RESTART having
//  seen restarted_at frames. Yes if the WAL is long, the round copied all
//  it saw, at most STORE_CKPT_TAIL_PAGES came since (the lock is held while
//  they are copied and synced) or the WAL is STORE_CKPT_FORCE_PAGES long
//  whatever came since, and the WAL is not one that a RESTART already
//  caught up with and no commit has touched since (that one starts over at
//  its next commit anyway).

bool
zchat_store_ckpt_restart_due (int frames, int done, int now_pages, int restarted_at)
{
    return frames >= STORE_CKPT_RESTART_PAGES && done == frames
        && now_pages >= done
        && (now_pages - done <= STORE_CKPT_TAIL_PAGES || frames >= STORE_CKPT_FORCE_PAGES)
        && !(frames == restarted_at && now_pages == frames);
}


//  --------------------------------------------------------------------------
//  Busy handler of the checkpointer's connection: waits up to ckpt.busy_ms
//  for the write lock or for readers, looking every STORE_BUSY_POLL_US.
//  Giving up opens the gate at once: SQLite then goes on copying the WAL
//  as a PASSIVE pass would, syncs included, without the lock, and the
//  event loop must not wait for that (s_ckpt_locked).

static int
s_ckpt_busy (void *arg, int count)
{
    store_ckpt_t *ckpt = (store_ckpt_t *) arg;
    int64_t now = zclock_usecs ();
    if (count == 0)
        ckpt->busy_started = now;
    if (now - ckpt->busy_started >= (int64_t) ckpt->busy_ms * 1000) {
        atomic_store_explicit (&ckpt->locking, false, memory_order_seq_cst);
        return 0;
    }
    const struct timespec pause = { 0, STORE_BUSY_POLL_US * 1000L };
    nanosleep (&pause, NULL);
    return 1;
}

//  --------------------------------------------------------------------------
//  A checkpoint that takes the write lock, with the gate closed while it
//  runs (store_ckpt_t.locking): the event loop finishes the transaction it
//  is in, if any, and begins no other until the gate opens again, so the
//  checkpoint gets the lock within busy_ms even while commits come back to
//  back. Returns SQLite's code.

static int
s_ckpt_locked (zchat_store_t *self, int mode, int busy_ms, int *frames, int *done)
{
    store_ckpt_t *ckpt = &self->ckpt;
    ckpt->busy_ms = busy_ms;
    atomic_store_explicit (&ckpt->locking, true, memory_order_seq_cst);
    int rc = sqlite3_wal_checkpoint_v2 (ckpt->db, NULL, mode, frames, done);
    atomic_store_explicit (&ckpt->locking, false, memory_order_seq_cst);
    ckpt->busy_ms = STORE_CKPT_BUSY_MS;
    return rc;
}

//  The round's RESTART (STORE_CKPT_RESTART_PAGES). It holds the write lock
//  while it copies the tail and syncs the WAL and zchat.db, so the event
//  loop's next commit waits that long. A write lock or reader still busy
//  after busy_ms makes SQLite finish it as a PASSIVE pass instead
//  (SQLITE_BUSY): the WAL then goes on growing until a later round.
//  Returns whether the WAL starts over at the next commit.
//
//  A RESTART that made commits wait STORE_CKPT_SLOW_MS or more is logged,
//  once per STORE_CKPT_LOG_MS at most: while a stream outruns the disk
//  that is every few hundred milliseconds.
static bool
s_ckpt_restart (zchat_store_t *self, int expected_frames, int busy_ms)
{
    store_ckpt_t *ckpt = &self->ckpt;
    int frames = 0, done = 0;
    int64_t started = zclock_usecs ();
    int rc = s_ckpt_locked (self, SQLITE_CHECKPOINT_RESTART, busy_ms, &frames, &done);
    int64_t took_ms = (zclock_usecs () - started) / 1000;
    //  Only a RESTART that got the lock made commits wait: one that did not
    //  opened the gate as it gave up (s_ckpt_busy)
    if (rc == SQLITE_OK && took_ms >= STORE_CKPT_SLOW_MS) {
        ckpt->slow_count++;
        if (took_ms > ckpt->slow_worst_ms) {
            ckpt->slow_worst_ms = took_ms;
            ckpt->slow_worst_tail = frames - expected_frames;
        }
        int64_t now_ms = started / 1000 + took_ms;
        if (now_ms - ckpt->slow_logged_ms >= STORE_CKPT_LOG_MS) {
            zsys_warning ("zchat_store: %d RESTART checkpoint%s took %d ms or more"
                          " (longest %" PRId64 " ms, a %d-frame tail): commits"
                          " waited meanwhile (slow disk, or a stream faster than it)",
                          ckpt->slow_count, ckpt->slow_count > 1? "s": "",
                          STORE_CKPT_SLOW_MS, ckpt->slow_worst_ms, ckpt->slow_worst_tail);
            ckpt->slow_logged_ms = now_ms;
            ckpt->slow_count = 0;
            ckpt->slow_worst_ms = 0;
        }
    }
    if (rc == SQLITE_OK) {
        ckpt->restarted_at = frames;
        pthread_mutex_lock (&ckpt->mutex);
        ckpt->restarts++;
        pthread_mutex_unlock (&ckpt->mutex);
        return true;
    }
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
        zsys_warning ("zchat_store: RESTART checkpoint: %s", sqlite3_errmsg (ckpt->db));
    return false;
}

//  --------------------------------------------------------------------------
//  One checkpoint round on the checkpointer's own connection. PASSIVE
//  copies what it can without taking the write lock or waiting for
//  anyone, so commits on the event loop go on meanwhile; then perhaps a
//  RESTART (zchat_store_ckpt_restart_due). Only a WAL file grown past the
//  cap that no RESTART caught (a reader held an old snapshot for long)
//  gets a TRUNCATE, which holds the write lock while it waits for
//  readers, at most STORE_CKPT_BUSY_MS (the connection's busy timeout).

static void
s_ckpt_run (zchat_store_t *self, int64_t cap_bytes, void (*between) (void *), void *arg)
{
    store_ckpt_t *ckpt = &self->ckpt;
    int frames = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2 (ckpt->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                        &frames, &done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
        zsys_warning ("zchat_store: checkpoint: %s", sqlite3_errmsg (ckpt->db));
    if (between)
        between (arg);          //  self test: commits land here
    int now_pages = atomic_load_explicit (&ckpt->wal_pages, memory_order_relaxed);
    //  A long tail (STORE_CKPT_FORCE_PAGES) may find the event loop in a
    //  transaction slowed by the disk: it gets longer to end it. A WAL
    //  file over the cap that starts over at the next commit needs no
    //  TRUNCATE: that commit cuts the file to the cap (journal_size_limit).
    if (rc == SQLITE_OK
    &&  zchat_store_ckpt_restart_due (frames, done, now_pages, ckpt->restarted_at)
    &&  s_ckpt_restart (self, frames, now_pages - done <= STORE_CKPT_TAIL_PAGES
                                      ? STORE_CKPT_RESTART_BUSY_MS: STORE_CKPT_BUSY_MS))
        return;
    struct stat st;
    if (stat (ckpt->wal_path, &st) || st.st_size <= cap_bytes)
        return;
    pthread_mutex_lock (&ckpt->mutex);
    ckpt->truncates++;
    pthread_mutex_unlock (&ckpt->mutex);
    rc = s_ckpt_locked (self, SQLITE_CHECKPOINT_TRUNCATE, STORE_CKPT_BUSY_MS, &frames, &done);
    if (rc != SQLITE_OK)
        zsys_warning ("zchat_store: WAL of %lld bytes over the cap, TRUNCATE checkpoint: %s",
                      (long long) st.st_size, sqlite3_errmsg (ckpt->db));
}


//  --------------------------------------------------------------------------
//  The checkpointer thread: wait until the event loop asks (the WAL hook)
//  or the period passes, checkpoint, until told to stop.

static void *
s_ckpt_thread (void *arg)
{
    zchat_store_t *self = (zchat_store_t *) arg;
    store_ckpt_t *ckpt = &self->ckpt;
    pthread_mutex_lock (&ckpt->mutex);
    while (!ckpt->stop) {
        if (!ckpt->wanted) {
            struct timespec deadline;
            clock_gettime (CLOCK_MONOTONIC, &deadline);
            deadline.tv_sec += STORE_CKPT_PERIOD_MS / 1000;
            deadline.tv_nsec += (long) (STORE_CKPT_PERIOD_MS % 1000) * 1000000L;
            if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
            }
            //  A spurious wake-up only costs a checkpoint round early.
            pthread_cond_timedwait (&ckpt->cond, &ckpt->mutex, &deadline);
            if (ckpt->stop)
                break;
        }
        ckpt->wanted = false;
        bool hold = ckpt->hold;
        int64_t cap_bytes = ckpt->cap_bytes;
        void (*between) (void *) = ckpt->between;
        void *between_arg = ckpt->between_arg;
        pthread_mutex_unlock (&ckpt->mutex);
        if (!hold)
            s_ckpt_run (self, cap_bytes, between, between_arg);
        pthread_mutex_lock (&ckpt->mutex);
        if (!hold)
            ckpt->runs++;
    }
    pthread_mutex_unlock (&ckpt->mutex);
    return NULL;
}


//  --------------------------------------------------------------------------
//  SQLite calls this on the event loop after every commit with the WAL's
//  size in pages. It replaces the automatic checkpoint (which would run
//  the checkpoint, fsyncs included, right here): it only wakes the
//  checkpointer, once per STORE_CKPT_PAGES of new WAL. Waking it after
//  every commit past the threshold, as SQLite's own rule does, kept it
//  checkpointing back to back (two fsyncs a round) whenever the WAL could
//  not start over: at 10,000 msgs/s, 360 rounds a second.

static int
s_wal_hook (void *arg, sqlite3 *db, const char *name, int pages)
{
    (void) db;
    (void) name;
    zchat_store_t *self = (zchat_store_t *) arg;
    store_ckpt_t *ckpt = &self->ckpt;
    if (pages < atomic_load_explicit (&ckpt->wal_pages, memory_order_relaxed)
    ||  ckpt->wake_at == 0)
        ckpt->wake_at = STORE_CKPT_PAGES;      //  the WAL started over
    atomic_store_explicit (&ckpt->wal_pages, pages, memory_order_relaxed);
    if (pages >= ckpt->wake_at) {
        ckpt->wake_at = pages + STORE_CKPT_PAGES;
        ckpt->wakes++;
        zchat_store_ckpt_wake (self);
    }
    return SQLITE_OK;
}


//  --------------------------------------------------------------------------
//  Start the checkpointer: its own connection to db_path, then the
//  thread, then the WAL hook on the event loop's connection. Returns 0 or
//  -1 with error filled in (destroy cleans up what was made).

static int
s_ckpt_start (zchat_store_t *self, const char *db_path, bool fsync,
              char *error, size_t error_size)
{
    store_ckpt_t *ckpt = &self->ckpt;
    ckpt->cap_bytes = STORE_WAL_CAP_BYTES;
    //  Two connections on two threads: SQLite must be built thread-safe
    //  (Debian's is; each connection is still used by one thread only).
    if (!sqlite3_threadsafe ()) {
        snprintf (error, error_size, "SQLite is built without thread support");
        return -1;
    }
    ckpt->wal_path = zsys_sprintf ("%s-wal", db_path);
    if (!ckpt->wal_path) {
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    //  Its own connection, used by that thread only (so NOMUTEX), with the
    //  same synchronous setting: a checkpoint fsyncs the WAL before it
    //  copies pages into the database, and the database after.
    int rc = sqlite3_open_v2 (db_path, &ckpt->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                              ZCHAT_WALVFS_NAME);
    if (rc != SQLITE_OK) {
        snprintf (error, error_size, "cannot open %s for checkpoints: %s", db_path,
                  ckpt->db? sqlite3_errmsg (ckpt->db): sqlite3_errstr (rc));
        return -1;
    }
    ckpt->busy_ms = STORE_CKPT_BUSY_MS;
    if (sqlite3_busy_handler (ckpt->db, s_ckpt_busy, ckpt) != SQLITE_OK
    ||  s_pragma (ckpt->db, fsync? "PRAGMA synchronous = FULL"
                                 : "PRAGMA synchronous = NORMAL", NULL, error, error_size)
    ||  s_pragma (ckpt->db, "PRAGMA journal_size_limit = 67108864", NULL, error, error_size)) {
        if (!error [0])
            snprintf (error, error_size, "busy_timeout: %s", sqlite3_errmsg (ckpt->db));
        return -1;
    }
    pthread_condattr_t attr;
    if (pthread_condattr_init (&attr)) {
        snprintf (error, error_size, "cannot start the checkpointer");
        return -1;
    }
    bool ready = pthread_condattr_setclock (&attr, CLOCK_MONOTONIC) == 0
              && pthread_cond_init (&ckpt->cond, &attr) == 0;
    pthread_condattr_destroy (&attr);
    if (ready && pthread_mutex_init (&ckpt->mutex, NULL)) {
        pthread_cond_destroy (&ckpt->cond);
        ready = false;
    }
    if (!ready) {
        snprintf (error, error_size, "cannot start the checkpointer");
        return -1;
    }
    ckpt->mutex_ready = true;
    rc = pthread_create (&ckpt->thread, NULL, s_ckpt_thread, self);
    if (rc) {
        snprintf (error, error_size, "cannot start the checkpointer: %s", strerror (rc));
        return -1;
    }
    ckpt->started = true;
    //  The hook replaces wal_autocheckpoint (set to 0 anyway): from now
    //  on no commit checkpoints.
    sqlite3_wal_hook (self->db, s_wal_hook, self);
    return 0;
}


//  --------------------------------------------------------------------------
//  Stop the checkpointer (join its thread) and close its connection.
//  Safe on a checkpointer that never started.

static void
s_ckpt_stop (zchat_store_t *self)
{
    store_ckpt_t *ckpt = &self->ckpt;
    if (self->db)
        sqlite3_wal_hook (self->db, NULL, NULL);
    if (ckpt->started) {
        pthread_mutex_lock (&ckpt->mutex);
        ckpt->stop = true;
        pthread_cond_signal (&ckpt->cond);
        pthread_mutex_unlock (&ckpt->mutex);
        int rc = pthread_join (ckpt->thread, NULL);
        assert (rc == 0);
        ckpt->started = false;
        if (ckpt->slow_count)
            zsys_warning ("zchat_store: %d more RESTART checkpoint%s took %d ms or more"
                          " (longest %" PRId64 " ms)", ckpt->slow_count,
                          ckpt->slow_count > 1? "s": "", STORE_CKPT_SLOW_MS,
                          ckpt->slow_worst_ms);
    }
    if (ckpt->mutex_ready) {
        pthread_cond_destroy (&ckpt->cond);
        pthread_mutex_destroy (&ckpt->mutex);
        ckpt->mutex_ready = false;
    }
    //  Closed before the event loop's connection, so that the last one to
    //  close (that one) checkpoints and removes the WAL.
    if (ckpt->db && sqlite3_close (ckpt->db) != SQLITE_OK)
        zsys_error ("zchat_store: close checkpointer: %s", sqlite3_errmsg (ckpt->db));
    ckpt->db = NULL;
    zstr_free (&ckpt->wal_path);
}


//  --------------------------------------------------------------------------
//  Self test access to the checkpointer (zchat_store_int.h).

void
zchat_store_ckpt_hold (zchat_store_t *self, bool hold)
{
    assert (self && self->ckpt.mutex_ready);
    pthread_mutex_lock (&self->ckpt.mutex);
    self->ckpt.hold = hold;
    pthread_mutex_unlock (&self->ckpt.mutex);
}

void
zchat_store_ckpt_wake (zchat_store_t *self)
{
    assert (self && self->ckpt.mutex_ready);
    pthread_mutex_lock (&self->ckpt.mutex);
    self->ckpt.wanted = true;
    pthread_cond_signal (&self->ckpt.cond);
    pthread_mutex_unlock (&self->ckpt.mutex);
}

void
zchat_store_ckpt_stats (zchat_store_t *self, uint64_t *runs, uint64_t *truncates,
                        uint64_t *restarts)
{
    assert (self && self->ckpt.mutex_ready);
    pthread_mutex_lock (&self->ckpt.mutex);
    if (runs)
        *runs = self->ckpt.runs;
    if (truncates)
        *truncates = self->ckpt.truncates;
    if (restarts)
        *restarts = self->ckpt.restarts;
    pthread_mutex_unlock (&self->ckpt.mutex);
}

void
zchat_store_ckpt_cap (zchat_store_t *self, int64_t cap_bytes)
{
    assert (self && self->ckpt.mutex_ready);
    pthread_mutex_lock (&self->ckpt.mutex);
    self->ckpt.cap_bytes = cap_bytes;
    pthread_mutex_unlock (&self->ckpt.mutex);
}

void
zchat_store_ckpt_gate (zchat_store_t *self, bool locking)
{
    assert (self);
    atomic_store_explicit (&self->ckpt.locking, locking, memory_order_seq_cst);
}

void
zchat_store_ckpt_between (zchat_store_t *self, void (*between) (void *), void *arg)
{
    assert (self && self->ckpt.mutex_ready);
    pthread_mutex_lock (&self->ckpt.mutex);
    self->ckpt.between = between;
    self->ckpt.between_arg = arg;
    pthread_mutex_unlock (&self->ckpt.mutex);
}


//  --------------------------------------------------------------------------
//  Self test access to the idempotency index (zchat_store_int.h).

void
zchat_store_keys_add (zchat_store_t *self, uint64_t hash, int64_t chunk)
{
    assert (self);
    s_keys_add (self, hash, chunk);
}

size_t
zchat_store_keys_count (zchat_store_t *self, uint64_t hash)
{
    assert (self);
    store_probe_t probe;
    s_probe_start (self, &probe, hash);
    size_t count = 0;
    while (s_probe_next (self, &probe))
        count++;
    return count;
}

int
zchat_store_keys_check (zchat_store_t *self)
{
    assert (self);
    size_t mask = self->buckets - 1;
    size_t live = (size_t) (self->keys_head - self->keys_tail);
    uint8_t *seen = (uint8_t *) calloc (self->keys_limit, 1);
    size_t *spilled = (size_t *) calloc (self->buckets, sizeof (size_t));
    const char *broken = NULL;
    size_t slots = 0;
    if (!seen || !spilled) {
        broken = "out of memory";
        goto done;
    }
    if (live > self->keys_limit || live > self->keys_max
    ||  self->buckets * STORE_BUCKET_SLOTS != self->keys_limit * 2) {
        broken = "sizes";
        goto done;
    }
    for (size_t bucket = 0; bucket < self->buckets; bucket++)
        for (size_t i = 0; i < STORE_BUCKET_SLOTS; i++) {
            uint32_t slot = self->index [bucket * STORE_BUCKET_SLOTS + i];
            if (!slot)
                continue;
            slots++;
            size_t pos = (slot & STORE_POS_MASK) - 1;
            //  The ring position must hold a live key, with this tag,
            //  indexed once, and every bucket from its home to here must
            //  count it as spilled
            if (pos >= self->keys_limit
            ||  ((pos - (size_t) self->keys_tail) & (self->keys_limit - 1)) >= live) {
                broken = "a slot points outside the window";
                goto done;
            }
            if (STORE_TAG (self->keys [pos].hash) != (slot & ~STORE_POS_MASK)) {
                broken = "a slot's tag is not its key's";
                goto done;
            }
            if (seen [pos]++) {
                broken = "a key is indexed twice";
                goto done;
            }
            for (size_t at = STORE_BUCKET (self->keys [pos].hash, mask); at != bucket;
                 at = (at + 1) & mask)
                spilled [at]++;
        }
    if (slots != live) {
        broken = "a live key is not indexed";
        goto done;
    }
    //  A count stuck at its top may be anything above what is there
    for (size_t bucket = 0; bucket < self->buckets; bucket++)
        if (self->spill [bucket] < STORE_SPILL_STUCK
        &&  self->spill [bucket] != spilled [bucket]) {
            broken = "a spill count is wrong";
            goto done;
        }
    //  And a lookup finds every live key
    for (uint64_t at = self->keys_tail; at < self->keys_head; at++) {
        const store_key_t *want = &self->keys [at & (self->keys_limit - 1)];
        store_probe_t probe;
        s_probe_start (self, &probe, want->hash);
        const store_key_t *key;
        while ((key = s_probe_next (self, &probe)) && key != want)
            ;
        if (!key) {
            broken = "a live key cannot be found";
            goto done;
        }
    }
done:
    if (broken)
        zsys_error ("zchat_store: idempotency index: %s", broken);
    free (seen);
    free (spilled);
    return broken? -1: 0;
}


//  --------------------------------------------------------------------------
//  Self test access to the remembered newest seqs (zchat_store_int.h).

int
zchat_store_newest_known (zchat_store_t *self, const char *room, uint64_t *last_seq)
{
    assert (self && room && last_seq);
    store_newest_t *entry = s_newest_find (self, room, strlen (room));
    if (entry)
        *last_seq = entry->last_seq;
    return entry? 1: 0;
}


//  --------------------------------------------------------------------------
//  Busy handler of the event loop's connection: SQLite calls it while the
//  write lock is held elsewhere (the checkpointer's RESTART or TRUNCATE,
//  or an operator's shell). SQLite's own busy_timeout sleeps 1, 2,
//  5, 10, 15, 20 ms in turn, so a lock held for 9 ms kept the loop asleep
//  for 18; polling every STORE_BUSY_POLL_US keeps the stall at the time the
//  lock is really held. Gives up after STORE_BUSY_TIMEOUT_MS as before,
//  unless the holder is the checkpointer (the gate is closed): it holds
//  the lock as long as the disk takes to catch up, and a transaction
//  failed for that was a message refused (ERROR 500) that waiting a
//  little longer would have stored. count is 0 on the first call of each
//  wait.

int
zchat_store_busy_wait (void *arg, int count)
{
    zchat_store_t *self = (zchat_store_t *) arg;
    int64_t now = zclock_usecs ();
    if (count == 0) {
        //  A BEGIN that waited at the gate already counts that wait
        self->busy_started = self->gate_started? self->gate_started: now;
        self->busy_gated = self->gate_started != 0;
        self->gate_started = 0;
    }
    //  Once the gate was seen closed the holder is the checkpointer, also
    //  if it has let go of the lock but not yet opened the gate
    if (atomic_load_explicit (&self->ckpt.locking, memory_order_seq_cst))
        self->busy_gated = true;
    int64_t limit_ms = self->busy_gated? STORE_CKPT_GATE_MAX_MS: STORE_BUSY_TIMEOUT_MS;
    if (now - self->busy_started >= limit_ms * 1000)
        return 0;
    struct timespec pause = { 0, STORE_BUSY_POLL_US * 1000L };
    nanosleep (&pause, NULL);
    return 1;
}


//  --------------------------------------------------------------------------
//  BEGIN IMMEDIATE, after waiting (at most STORE_CKPT_GATE_MAX_MS) for a
//  checkpoint that takes the write lock to finish. Returns 0 or -1.

static int
s_begin (zchat_store_t *self)
{
    self->gate_started = 0;
    if (atomic_load_explicit (&self->ckpt.locking, memory_order_seq_cst)) {
        int64_t started = zclock_usecs ();
        const struct timespec pause = { 0, STORE_BUSY_POLL_US * 1000L };
        while (atomic_load_explicit (&self->ckpt.locking, memory_order_seq_cst)
        &&     zclock_usecs () - started < STORE_CKPT_GATE_MAX_MS * 1000)
            nanosleep (&pause, NULL);
        //  The busy handler's limit runs from here, not from BEGIN
        self->gate_started = started;
    }
    int rc = s_run (self, ST_BEGIN);
    self->gate_started = 0;
    return rc;
}


//  --------------------------------------------------------------------------
//  Seqs published before their commit (durability off): zchat_published.h,
//  and STORAGE.md "Durability off".

//  Number room past seq: rooms.last_seq, which ST_ROOM_NEWEST counts.
static int
s_room_last (zchat_store_t *self, const char *room, size_t room_len, uint64_t seq)
{
    sqlite3_stmt *stmt = self->stmt [ST_ROOM_LAST];
    if (s_bind_room (self, ST_ROOM_LAST, room, room_len)
    ||  sqlite3_bind_int64 (stmt, 2, (int64_t) seq)
    ||  s_run (self, ST_ROOM_LAST))
        return -1;
    return 0;
}

//  Rooms named in the log line when an open moves numbering
#define S_FOLD_LOGGED   8

typedef struct {
    zchat_store_t *store;
    bool begun;                     //  the transaction is open
    bool failed;
    int64_t moved;                  //  rooms numbered past unstored seqs
} s_fold_t;

static void
s_fold_one (void *arg, const char *room, size_t room_len, uint64_t seq)
{
    s_fold_t *fold = (s_fold_t *) arg;
    zchat_store_t *self = fold->store;
    if (fold->failed)
        return;
    if (!fold->begun) {
        if (s_run (self, ST_BEGIN)) {
            fold->failed = true;
            return;
        }
        fold->begun = true;
    }
    //  Records overlap, and most of what they name was stored: only seqs
    //  above a room's newest were lost
    uint64_t newest = 0;
    if (s_room_newest (self, room, room_len, &newest)) {
        fold->failed = true;
        return;
    }
    if (seq <= newest)
        return;
    if (s_room_last (self, room, room_len, seq)) {
        fold->failed = true;
        return;
    }
    if (fold->moved++ < S_FOLD_LOGGED)
        zsys_warning ("zchat_store: room %.*s: seqs %" PRIu64 "..%" PRIu64 " were"
                      " published (durability off) but never stored; numbering"
                      " goes on after them", (int) room_len, room, newest + 1, seq);
}

//  At open: number every room past the seqs that the last run published
//  and did not store, then drop the record. Returns 0, or -1 with error
//  filled in (the store must not open: it would hand those seqs out).
static int
s_published_fold (zchat_store_t *self, char *error, size_t error_size)
{
    s_fold_t fold = { self, false, false, 0 };
    int64_t count = zchat_published_read (self->published, s_fold_one, &fold);
    if (count < 0) {
        snprintf (error, error_size, "cannot read %s: %s", ZCHAT_PUBLISHED_FILE,
                  strerror (errno));
        if (fold.begun)
            s_run (self, ST_ROLLBACK);
        return -1;
    }
    if (fold.failed || (fold.begun && s_run (self, ST_COMMIT))) {
        snprintf (error, error_size, "cannot number rooms past the seqs in %s: %s",
                  ZCHAT_PUBLISHED_FILE, sqlite3_errmsg (self->db));
        if (!sqlite3_get_autocommit (self->db))
            s_run (self, ST_ROLLBACK);
        return -1;
    }
    if (fold.moved > S_FOLD_LOGGED)
        zsys_warning ("zchat_store: %" PRId64 " rooms in all had seqs published but"
                      " never stored", fold.moved);
    if (zchat_published_remove (self->published)) {
        snprintf (error, error_size, "cannot remove %s: %s", ZCHAT_PUBLISHED_FILE,
                  strerror (errno));
        return -1;
    }
    return 0;
}

static void
s_seq_free (void **item)
{
    free (*item);
    *item = NULL;
}

//  The open group went out and will not be stored: keep its rooms' newest
//  seqs until a commit writes them down (zchat_store_commit).
static void
s_unsafe_keep (zchat_store_t *self)
{
    for (size_t i = 0; i < self->pending_count; i++) {
        const store_pending_t *pending = &self->pending [i];
        uint64_t *seq = (uint64_t *) zhashx_lookup (self->unsafe, pending->room);
        if (seq) {
            if (*seq < pending->last_seq)
                *seq = pending->last_seq;
            continue;
        }
        seq = (uint64_t *) malloc (sizeof (uint64_t));
        if (!seq || zhashx_insert (self->unsafe, pending->room, seq)) {
            free (seq);
            zsys_error ("zchat_store: out of memory: a crash before the next commit"
                        " may give seqs of room %s out again", pending->room);
            continue;
        }
        *seq = pending->last_seq;
    }
}

int
zchat_store_publishing (zchat_store_t *self)
{
    if (!self || !self->in_group)
        return -1;
    zchat_published_start (self->published);
    int rc = 0;
    for (size_t i = 0; i < self->pending_count && rc == 0; i++)
        rc = zchat_published_add (self->published, self->pending [i].room,
                                  self->pending [i].room_len, self->pending [i].last_seq);
    for (uint64_t *seq = (uint64_t *) zhashx_first (self->unsafe); seq && rc == 0;
         seq = (uint64_t *) zhashx_next (self->unsafe)) {
        const char *room = (const char *) zhashx_cursor (self->unsafe);
        rc = zchat_published_add (self->published, room, strlen (room), *seq);
    }
    //  While some published seqs are not stored, an earlier record is the
    //  only word on them: add to it rather than write over it
    if (rc == 0)
        rc = zchat_published_write (self->published, zhashx_size (self->unsafe) > 0);
    if (rc) {
        int64_t now = zclock_mono ();
        if (now - self->published_logged_ms >= STORE_PUBLISHED_LOG_MS) {
            self->published_logged_ms = now;
            zsys_error ("zchat_store: cannot write %s (%s): groups wait for their"
                        " commit, as with durability on", ZCHAT_PUBLISHED_FILE,
                        strerror (errno));
        }
        return -1;
    }
    self->group_published = true;
    return 0;
}


//  --------------------------------------------------------------------------
//  Open (creating if missing) the store in directory dir, itself created
//  if missing. On failure returns NULL and writes one line of explanation
//  into error.

zchat_store_t *
zchat_store_new (const char *dir, bool fsync, char *error, size_t error_size)
{
    char scratch [256];
    if (!error || error_size == 0) {
        error = scratch;
        error_size = sizeof (scratch);
    }
    error [0] = '\0';
    if (!dir || !*dir) {
        snprintf (error, error_size, "no data directory given");
        return NULL;
    }
    char *db_path = NULL;
    zchat_store_t *self = (zchat_store_t *) calloc (1, sizeof (zchat_store_t));
    if (!self) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    self->lock_fd = -1;
    self->keys_max = STORE_KEYS_MAX;
    self->nick_len = SIZE_MAX;
    self->pending_keep = STORE_KEEP_BYTES;
    self->newest_max = STORE_NEWEST_MAX;
    if (getrandom (&self->hash_seed, sizeof (self->hash_seed), 0)
        != (ssize_t) sizeof (self->hash_seed))
        self->hash_seed = s_mix ((uint64_t) zclock_usecs () ^ (uint64_t) getpid () << 32);
    if (s_mkdir_p (dir)) {
        snprintf (error, error_size, "cannot create data directory %s: %s",
                  dir, strerror (errno));
        goto failed;
    }
    self->lock_fd = s_lock (dir, error, error_size);
    if (self->lock_fd < 0)
        goto failed;
    self->published = zchat_published_new (dir);
    self->unsafe = zhashx_new ();
    if (self->unsafe)
        zhashx_set_destructor (self->unsafe, s_seq_free);
    if (!self->published || !self->unsafe
    ||  s_touched_resize (self, 64) || s_keys_resize (self, STORE_KEYS_MIN)) {
        snprintf (error, error_size, "out of memory");
        goto failed;
    }
    db_path = zsys_sprintf ("%s/%s", dir, STORE_DB_NAME);
    if (!db_path) {
        snprintf (error, error_size, "out of memory");
        goto failed;
    }
    //  NOMUTEX: one thread uses this connection, no need to pay for locks.
    //  The VFS writes a commit's WAL frames in one go (zchat_walvfs.h).
    int rc = zchat_walvfs_register ();
    if (rc != SQLITE_OK) {
        snprintf (error, error_size, "cannot register the WAL VFS: %s", sqlite3_errstr (rc));
        goto failed;
    }
    rc = sqlite3_open_v2 (db_path, &self->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                          ZCHAT_WALVFS_NAME);
    if (rc != SQLITE_OK) {
        snprintf (error, error_size, "cannot open %s: %s", db_path,
                  self->db? sqlite3_errmsg (self->db): sqlite3_errstr (rc));
        goto failed;
    }
    if (sqlite3_busy_handler (self->db, zchat_store_busy_wait, self) != SQLITE_OK) {
        snprintf (error, error_size, "busy handler: %s", sqlite3_errmsg (self->db));
        goto failed;
    }
    //  WAL: a commit appends its pages to one file and, with
    //  synchronous=NORMAL, does not wait for the disk: the write() reaches
    //  the kernel before COMMIT returns, so a kill -9 of the broker loses
    //  nothing acknowledged. FULL adds an fsync of the WAL per commit, the
    //  price of surviving power loss; with groups it is paid once per
    //  group, not per message.
    //  cache_size -16384 = 16 MiB: keeps the right edges of the chunk
    //  table and its two indexes hot.
    //  wal_autocheckpoint 0: no commit runs a checkpoint (its fsyncs
    //  took 4-17 ms of the event loop every ~4 MiB of WAL); the
    //  checkpointer thread does them (s_ckpt_start).
    //  journal_size_limit 64 MiB: a WAL that grew while a reader held an
    //  old snapshot is truncated again afterwards.
    //  secure_delete FAST: Debian compiles secure_delete ON, which costs
    //  extra writes on every retention delete; FAST still zeroes deleted
    //  chunks in the pages being written anyway.
    //  temp_store MEMORY: no temp files for the rare sort.
    if (s_pragma (self->db, "PRAGMA journal_mode = WAL", "wal", error, error_size)
    ||  s_pragma (self->db, fsync? "PRAGMA synchronous = FULL"
                                 : "PRAGMA synchronous = NORMAL", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA cache_size = -16384", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA wal_autocheckpoint = 0", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA journal_size_limit = 67108864", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA secure_delete = FAST", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA temp_store = MEMORY", NULL, error, error_size)) {
        //  The first statement to read the file: a damaged one, or not
        //  zchat's, fails here. Name it for the operator.
        char reason [256];
        snprintf (reason, sizeof reason, "%s", error);
        snprintf (error, error_size, "cannot open %s: %s", db_path, reason);
        goto failed;
    }
    if (s_schema (self->db, db_path, error, error_size))
        goto failed;

    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3 (self->db, zchat_store_sql [i], -1, SQLITE_PREPARE_PERSISTENT,
                                &self->stmt [i], NULL) != SQLITE_OK) {
            snprintf (error, error_size, "cannot prepare \"%s\": %s",
                      zchat_store_sql [i], sqlite3_errmsg (self->db));
            goto failed;
        }
    //  A report only: the store opens whatever it finds
    s_nick_conflicts (self, db_path);
    if (s_published_fold (self, error, error_size))
        goto failed;
    self->published_folded = true;
    if (s_keys_rebuild (self, error, error_size)
    ||  s_ckpt_start (self, db_path, fsync, error, error_size))
        goto failed;
    zstr_free (&db_path);
    return self;

failed:
    zstr_free (&db_path);
    zchat_store_destroy (&self);
    return NULL;
}


//  --------------------------------------------------------------------------
//  End the open group without storing it. Safe when SQLite has already
//  rolled the transaction back by itself (after an I/O error or disk full).

static void
s_abort_group (zchat_store_t *self)
{
    if (!sqlite3_get_autocommit (self->db))
        s_run (self, ST_ROLLBACK);
    if (self->group_published)
        s_unsafe_keep (self);
    self->group_published = false;
    s_keys_unwind (self);
    self->next_id = self->group_id;
    s_pending_clear (self);
    self->in_group = false;
    self->group_failed = false;
}


//  --------------------------------------------------------------------------
//  Close the store; nulls *self_p. Safe on NULL. Rolls back an open group.

void
zchat_store_destroy (zchat_store_t **self_p)
{
    assert (self_p);
    zchat_store_t *self = *self_p;
    if (!self)
        return;
    if (self->db) {
        if (self->in_group) {
            zsys_warning ("zchat_store: closing with an open group: rolled back");
            s_abort_group (self);
        }
        for (int i = 0; i < ST_COUNT; i++)
            sqlite3_finalize (self->stmt [i]);
    }
    //  Every seq published before its commit is stored (or written down
    //  as skipped): the record has nothing more to say
    if (self->published_folded && zhashx_size (self->unsafe) == 0
    &&  zchat_published_remove (self->published))
        zsys_error ("zchat_store: cannot remove %s: %s", ZCHAT_PUBLISHED_FILE,
                    strerror (errno));
    zchat_published_destroy (&self->published);
    zhashx_destroy (&self->unsafe);
    s_ckpt_stop (self);
    if (self->db) {
        //  The last connection to close checkpoints and removes the WAL.
        if (sqlite3_close (self->db) != SQLITE_OK)
            zsys_error ("zchat_store: close: %s", sqlite3_errmsg (self->db));
    }
    //  Only now that the database is closed may another broker have it.
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    for (size_t i = 0; i < self->pending_limit; i++) {
        free (self->pending [i].head);
        free (self->pending [i].data);
    }
    free (self->pending);
    free (self->newest);
    free (self->touched);
    free (self->keys);
    free (self->index);
    free (self->spill);
    free (self);
    *self_p = NULL;
}


//  --------------------------------------------------------------------------
//  Newest sequence number of a room, 0 if it has no messages yet (or on a
//  storage error, which is logged: an append at a taken seq then fails).
//  Counts the open group's appends.

uint64_t
zchat_store_last_seq (zchat_store_t *self, const char *room)
{
    uint64_t last_seq = 0;
    if (zchat_store_room_seq (self, room, &last_seq))
        return 0;
    return last_seq;
}


//  --------------------------------------------------------------------------
//  The same, telling a storage error from a room without messages.

int
zchat_store_room_seq (zchat_store_t *self, const char *room, uint64_t *last_seq)
{
    assert (last_seq);
    *last_seq = 0;
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    if (!self || !room_len)
        return -1;
    store_pending_t *pending = s_pending_find (self, room, room_len);
    if (pending) {
        *last_seq = pending->last_seq;
        return 0;
    }
    if (s_room_newest (self, room, room_len, last_seq))
        return -1;
    //  Seqs of a group published before a commit that failed are used,
    //  though no commit has written them down yet: a room freed from
    //  memory meanwhile and opened again numbers on past them
    const uint64_t *unsafe = (const uint64_t *) zhashx_lookup (self->unsafe, room);
    if (unsafe && *unsafe > *last_seq)
        *last_seq = *unsafe;
    return 0;
}


//  --------------------------------------------------------------------------
//  Oldest sequence number still held for a room: the first message at or
//  above the room's retention floor, the open group's included. 0 with
//  *first_seq set (0 if none is held), or -1 on a storage error (logged)
//  or a chunk that does not decode: "none" would tell clients that the
//  room's history is gone.

int
zchat_store_first_seq (zchat_store_t *self, const char *room, uint64_t *first_seq)
{
    assert (first_seq);
    *first_seq = 0;
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    if (!self || !room_len)
        return -1;
    uint64_t floor = 0;
    if (s_room_get (self, room, room_len, NULL, &floor))
        return -1;
    if (floor == 0)
        floor = 1;
    store_chunk_t chunk;
    int rc = s_chunk_at (self, room, room_len, floor, &chunk);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        store_pending_t *pending = s_pending_find (self, room, room_len);
        *first_seq = pending && pending->count? pending->first_seq: 0;
        return 0;
    }
    if (chunk.first_seq >= floor) {
        *first_seq = chunk.first_seq;
        return 0;
    }
    if (chunk.last_seq - chunk.first_seq + 1 == chunk.count) {
        *first_seq = floor;
        return 0;
    }
    //  The floor is inside a chunk with holes: find the first above. The
    //  chunk ends at or above the floor, so a chunk without one is damaged.
    store_cursor_t cursor;
    if (s_chunk_open (self, &chunk, &cursor))
        return -1;
    while (s_cursor_next (&cursor) == 1)
        if (cursor.seq >= floor) {
            *first_seq = cursor.seq;
            break;
        }
    s_chunk_close (self);
    if (*first_seq == 0) {
        s_chunk_damaged (&chunk);
        return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  Start a group: one transaction for many appends. Returns 0 or -1.

int
zchat_store_begin (zchat_store_t *self)
{
    if (!self)
        return -1;
    if (self->in_group) {
        zsys_error ("zchat_store: begin: a group is already open");
        return -1;
    }
    if (s_begin (self))
        return -1;
    self->in_group = true;
    self->group_failed = false;
    self->group_published = false;
    self->group_id = self->next_id;
    self->keys_group = self->keys_head;
    return 0;
}


//  --------------------------------------------------------------------------
//  Make every append since begin durable: write each touched room's chunk,
//  then COMMIT. Nothing else: a room's newest seq is its newest chunk's
//  (ST_ROOM_NEWEST), so no row of rooms is written, and a one-message
//  group writes two pages, the chunk's leaf and its index entry's.
//  Returns 0, or -1 after rolling the whole group back.

int
zchat_store_commit (zchat_store_t *self)
{
    if (!self)
        return -1;
    if (!self->in_group) {
        zsys_error ("zchat_store: commit: no group is open");
        return -1;
    }
    if (self->group_failed || sqlite3_get_autocommit (self->db)) {
        zsys_error ("zchat_store: commit: the group failed earlier; rolled back");
        goto failed;
    }
    for (size_t i = 0; i < self->pending_count; i++)
        if (s_pending_write (self, &self->pending [i]))
            goto failed;
    //  Seqs of published groups that failed to commit are written down
    //  with the first group that does
    for (uint64_t *seq = (uint64_t *) zhashx_first (self->unsafe); seq;
         seq = (uint64_t *) zhashx_next (self->unsafe)) {
        const char *room = (const char *) zhashx_cursor (self->unsafe);
        if (s_room_last (self, room, strlen (room), *seq))
            goto failed;
    }
    if (s_run (self, ST_COMMIT))
        goto failed;
    //  Only once committed: a rolled back group changes no room's newest.
    for (size_t i = 0; i < self->pending_count; i++)
        s_newest_set (self, self->pending [i].room, self->pending [i].room_len,
                      self->pending [i].last_seq);
    for (uint64_t *seq = (uint64_t *) zhashx_first (self->unsafe); seq;
         seq = (uint64_t *) zhashx_next (self->unsafe)) {
        const char *room = (const char *) zhashx_cursor (self->unsafe);
        store_newest_t *entry = s_newest_find (self, room, strlen (room));
        if (entry && entry->last_seq < *seq)
            entry->last_seq = *seq;
    }
    zhashx_purge (self->unsafe);
    self->group_published = false;
    self->in_group = false;
    s_pending_clear (self);
    return 0;

failed:
    s_abort_group (self);
    return -1;
}


//  --------------------------------------------------------------------------
//  Discard the open group. Safe without one.

void
zchat_store_rollback (zchat_store_t *self)
{
    if (self && self->in_group)
        s_abort_group (self);
}


//  --------------------------------------------------------------------------
//  Look for a stored message of nick with msg_id in the chunk with this
//  id: the open group's chunk in memory, or the row (which must still be
//  above its room's floor). Returns 1 with *room, *seq and *ts filled, 0
//  if it is not there, -1 on error.

static int
s_key_check (zchat_store_t *self, int64_t id, const char *nick, size_t nick_len,
             uint64_t msg_id, char *room, uint64_t *seq, uint64_t *ts)
{
    store_chunk_t chunk = { .id = id };
    if (id >= self->group_id)
        for (size_t i = 0; i < self->pending_count; i++)
            if (self->pending [i].count && self->pending [i].id == id)
                chunk.pending = &self->pending [i];
    if (chunk.pending)
        memcpy (room, chunk.pending->room, chunk.pending->room_len + 1);
    else {
        //  Written earlier, or by this group when its chunk filled up.
        sqlite3_stmt *stmt = self->stmt [ST_CHUNK_GET];
        if (sqlite3_bind_int64 (stmt, 1, id)) {
            s_log_error (self, "key: bind");
            return -1;
        }
        int rc = sqlite3_step (stmt);
        if (rc == SQLITE_DONE) {
            sqlite3_reset (stmt);
            return 0;               //  retention deleted it
        }
        if (rc != SQLITE_ROW) {
            s_log_error (self, "key");
            sqlite3_reset (stmt);
            return -1;
        }
        int copied = s_column_copy (stmt, 0, room, ZCHAT_MAX_ROOM);
        sqlite3_reset (stmt);
        if (copied)
            return -1;
    }
    store_cursor_t cursor;
    if (s_chunk_open (self, &chunk, &cursor))
        return -1;
    //  The newest match: one chunk can hold a message and, after the
    //  window forgot it, its resend.
    bool found = false;
    int rc;
    while ((rc = s_cursor_next (&cursor)) == 1)
        if (cursor.msg_id == msg_id && cursor.nick_len == nick_len
        &&  memcmp (cursor.nick, nick, nick_len) == 0) {
            *seq = cursor.seq;
            *ts = cursor.ts;
            found = true;
        }
    s_chunk_close (self);
    if (rc < 0) {
        s_chunk_damaged (&chunk);
        return -1;
    }
    if (!found || chunk.pending)
        return found;
    uint64_t floor = 0;
    if (s_room_get (self, room, strlen (room), NULL, &floor))
        return -1;
    return *seq >= floor? 1: 0;
}


//  --------------------------------------------------------------------------
//  Append one room message inside a group. msg_id 0 means "no id": such a
//  message is never taken for a retry (id 0 is reserved by the protocol).
//  Returns 0 when stored, 1 for a retry of a stored (nick, msg_id) with the
//  original room, seq and ts, -1 on error (including a seq that is not
//  after the room's newest: the broker's numbering is wrong, nothing was
//  written).

int
zchat_store_append (zchat_store_t *self, const char *room, uint64_t seq,
                    uint64_t ts, const char *nick, uint8_t kind,
                    const char *text, size_t text_size, uint64_t msg_id,
                    char *orig_room, uint64_t *orig_seq, uint64_t *orig_ts)
{
    if (!self)
        return -1;
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    size_t nick_len = s_name_len (nick, ZCHAT_MAX_NICK);
    if (!room_len || !nick_len
    ||  (!text && text_size) || text_size > ZCHAT_MAX_TEXT
    ||  seq == 0 || seq > (uint64_t) INT64_MAX || ts > (uint64_t) INT64_MAX) {
        zsys_error ("zchat_store: append: invalid arguments");
        return -1;
    }
    if (!self->in_group || self->group_failed) {
        zsys_error ("zchat_store: append: no usable group is open");
        return -1;
    }
    //  After an I/O error SQLite may have rolled the transaction back by
    //  itself; writing now would autocommit outside the group.
    if (sqlite3_get_autocommit (self->db)) {
        zsys_error ("zchat_store: append: the group's transaction was lost");
        self->group_failed = true;
        return -1;
    }
    //  A retry first: a resent message is answered from the original even
    //  if the broker numbered the resend differently. Several stored
    //  messages can match (a resend that came after its original left the
    //  window was stored again): the newest chunk's answers.
    uint64_t hash = 0;
    if (msg_id) {
        hash = s_key_hash (self, nick, nick_len, msg_id);
        int64_t best = 0;
        char found_room [ZCHAT_MAX_ROOM + 1];
        uint64_t found_seq = 0, found_ts = 0;
        store_probe_t probe;
        s_probe_start (self, &probe, hash);
        const store_key_t *key;
        while ((key = s_probe_next (self, &probe))) {
            if (key->chunk <= best)
                continue;
            int rc = s_key_check (self, key->chunk, nick, nick_len, msg_id,
                                  found_room, &found_seq, &found_ts);
            if (rc < 0)
                return -1;
            if (rc == 1) {
                best = key->chunk;
                if (orig_room)
                    memcpy (orig_room, found_room, strlen (found_room) + 1);
                if (orig_seq)
                    *orig_seq = found_seq;
                if (orig_ts)
                    *orig_ts = found_ts;
            }
        }
        if (best)
            return 1;
    }
    store_pending_t *pending = s_pending_open (self, room, room_len);
    if (!pending) {
        zsys_error ("zchat_store: append: out of memory or storage error");
        return -1;
    }
    if (seq <= pending->last_seq) {
        zsys_error ("zchat_store: append: room %s already has seq %" PRIu64
                    " (seq %" PRIu64 " not stored)", room, pending->last_seq, seq);
        return -1;
    }
    //  A full chunk is written now, inside the group: chunks stay small.
    if (pending->count
    &&  pending->data_size + pending->head_size + text_size > STORE_CHUNK_BYTES
    &&  s_pending_write (self, pending)) {
        self->group_failed = true;
        return -1;
    }
    if (s_pending_add (self, pending, seq, ts, nick, nick_len, kind, msg_id,
                       text? text: "", text_size)) {
        zsys_error ("zchat_store: append: out of memory");
        return -1;
    }
    pending->last_seq = seq;
    if (msg_id)
        s_keys_add (self, hash, pending->id);
    return 0;
}


//  --------------------------------------------------------------------------
//  The open group's chunk of room as a store_chunk_t, if it holds any.

static bool
s_chunk_pending (zchat_store_t *self, const char *room, size_t room_len,
                 store_chunk_t *chunk)
{
    store_pending_t *pending = s_pending_find (self, room, room_len);
    if (!pending || pending->count == 0)
        return false;
    chunk->id = pending->id;
    chunk->first_seq = pending->first_seq;
    chunk->last_seq = pending->chunk_seq;
    chunk->count = pending->count;
    chunk->min_ts = pending->min_ts;
    chunk->max_ts = pending->max_ts;
    chunk->pending = pending;
    return true;
}


//  --------------------------------------------------------------------------
//  Where "the last limit messages of room up to to" start: the seq of the
//  limit-th newest message in [lo, to], or lo if there are fewer. Walks
//  chunks from the newest back, counting by arithmetic, and decodes at
//  most the chunks at the edges. Returns 0 with *start set, or -1.

static int
s_tail_start (zchat_store_t *self, const char *room, size_t room_len,
              uint64_t lo, uint64_t to, uint64_t limit, uint64_t *start)
{
    *start = lo;
    uint64_t need = limit;
    //  The open group's chunk holds the newest seqs.
    store_chunk_t chunk;
    if (s_chunk_pending (self, room, room_len, &chunk)) {
        int64_t count = s_chunk_count (self, &chunk, lo, to);
        if (count < 0)
            return -1;
        if ((uint64_t) count >= need) {
            *start = s_chunk_nth_newest (self, &chunk, lo, to, need);
            return *start? 0: -1;
        }
        need -= (uint64_t) count;
    }
    //  Chunks that end at or below to, plus the one holding to if any.
    int rc = s_chunk_at (self, room, room_len, to, &chunk);
    if (rc < 0)
        return -1;
    uint64_t bound = rc == 1 && chunk.first_seq <= to? chunk.last_seq: to;
    sqlite3_stmt *stmt = self->stmt [ST_CHUNK_DOWN];
    if (s_bind_room (self, ST_CHUNK_DOWN, room, room_len)
    ||  sqlite3_bind_int64 (stmt, 2, (int64_t) bound)) {
        s_log_error (self, "history: bind");
        return -1;
    }
    int result = 0;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        s_chunk_row (stmt, 0, &chunk);
        if (chunk.last_seq < lo)
            break;
        int64_t count = s_chunk_count (self, &chunk, lo, to);
        if (count < 0) {
            result = -1;
            break;
        }
        if ((uint64_t) count >= need) {
            *start = s_chunk_nth_newest (self, &chunk, lo, to, need);
            if (*start == 0)
                result = -1;
            break;
        }
        need -= (uint64_t) count;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        s_log_error (self, "history: tail");
        result = -1;
    }
    sqlite3_reset (stmt);
    return result;
}


//  --------------------------------------------------------------------------
//  Hand the messages of one chunk with lo <= seq <= to to fn, counting in
//  *count up to limit. Returns 1 when the stream is over (past to, limit
//  reached, fn said stop), 0 to go on with the next chunk, -1 if the
//  chunk does not decode.

static int
s_history_chunk (store_cursor_t *cursor, uint64_t lo, uint64_t to, size_t limit,
                 int *count, zchat_store_fn *fn, void *arg)
{
    int rc;
    while ((rc = s_cursor_next (cursor)) == 1) {
        if (cursor->seq < lo)
            continue;
        if (cursor->seq > to)
            return 1;
        (*count)++;
        if (fn (arg, cursor->seq, cursor->ts, cursor->nick, cursor->kind,
                cursor->text_at, cursor->text_len)
        ||  (size_t) *count >= limit)
            return 1;
    }
    return rc;
}


//  --------------------------------------------------------------------------
//  Messages of room with from_seq <= seq <= to_seq (to_seq 0 = newest),
//  ascending, at most limit of them, streamed to fn chunk by chunk; those
//  below the room's retention floor are gone. from_seq 0 asks for the
//  last limit messages up to to_seq (PROTOCOL.md §6.4). The open group's
//  appends count. Returns the number passed to fn, or -1 on error. fn
//  must not call the store.

int
zchat_store_history (zchat_store_t *self, const char *room,
                     uint64_t from_seq, uint64_t to_seq, size_t limit,
                     zchat_store_fn *fn, void *arg)
{
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    if (!self || !room_len || !fn)
        return -1;
    if (limit == 0)
        return 0;
    if (limit > INT_MAX)
        limit = INT_MAX;            //  the count is returned as an int
    uint64_t to = to_seq == 0 || to_seq > (uint64_t) INT64_MAX? INT64_MAX: to_seq;
    if (from_seq > (uint64_t) INT64_MAX)
        return 0;
    uint64_t floor = 0;
    if (s_room_get (self, room, room_len, NULL, &floor))
        return -1;
    uint64_t lo = from_seq > floor? from_seq: floor;
    if (lo == 0)
        lo = 1;
    if (from_seq == 0 && s_tail_start (self, room, room_len, lo, to, limit, &lo))
        return -1;
    if (lo > to)
        return 0;

    sqlite3_stmt *stmt = self->stmt [ST_CHUNK_FROM];
    if (s_bind_room (self, ST_CHUNK_FROM, room, room_len)
    ||  sqlite3_bind_int64 (stmt, 2, (int64_t) lo)) {
        s_log_error (self, "history: bind");
        return -1;
    }
    int count = 0;
    int over = 0;
    int rc;
    while (over == 0 && (rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        store_chunk_t chunk = { .id = sqlite3_column_int64 (stmt, 0),
                                .first_seq = s_column_u64 (stmt, 1),
                                .last_seq = s_column_u64 (stmt, 2) };
        if (chunk.first_seq > to)
            break;
        store_cursor_t cursor;
        const uint8_t *blob = (const uint8_t *) sqlite3_column_blob (stmt, 4);
        int size = sqlite3_column_bytes (stmt, 4);
        if (size < 0 || s_cursor_blob (&cursor, blob, (size_t) size)
        ||  cursor.left != s_column_u64 (stmt, 3))
            over = -1;
        else
            over = s_history_chunk (&cursor, lo, to, limit, &count, fn, arg);
        if (over < 0)
            s_chunk_damaged (&chunk);
    }
    if (over == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        s_log_error (self, "history");
        over = -1;
    }
    sqlite3_reset (stmt);
    //  The open group's chunk comes after every written one.
    store_chunk_t chunk;
    if (over == 0 && s_chunk_pending (self, room, room_len, &chunk)) {
        store_cursor_t cursor;
        s_cursor_pending (&cursor, chunk.pending);
        over = s_history_chunk (&cursor, lo, to, limit, &count, fn, arg);
    }
    return over < 0? -1: count;
}


//  --------------------------------------------------------------------------
//  Retention
//
//  Every room has a floor (rooms.floor_seq): history shows no seq below
//  it. Retention moves floors up and deletes the chunks that fall wholly
//  below; a chunk the floor cuts through stays, and only its min_ts (the
//  oldest ts above the floor, which the age rule looks for) is updated.
//  So the floor moves exactly, whatever the chunk boundaries. The budget
//  counts chunk rows deleted or rewritten and rooms examined.

//  Set the chunk's min_ts to the oldest ts at or above floor. Returns 1 if
//  it holds messages there, 0 if none (the caller deletes it), -1 on error.
static int
s_chunk_refresh (zchat_store_t *self, const store_chunk_t *chunk, uint64_t floor)
{
    store_cursor_t cursor;
    if (s_chunk_open (self, chunk, &cursor))
        return -1;
    bool any = false;
    uint64_t min_ts = 0;
    int rc;
    while ((rc = s_cursor_next (&cursor)) == 1)
        if (cursor.seq >= floor && (!any || cursor.ts < min_ts)) {
            min_ts = cursor.ts;
            any = true;
        }
    s_chunk_close (self);
    if (rc < 0) {
        s_chunk_damaged (chunk);
        return -1;
    }
    if (!any || min_ts == chunk->min_ts)
        return any;
    sqlite3_stmt *stmt = self->stmt [ST_CHUNK_MIN_TS];
    if (sqlite3_bind_int64 (stmt, 1, chunk->id)
    ||  sqlite3_bind_int64 (stmt, 2, (int64_t) min_ts)) {
        s_log_error (self, "retain: bind");
        return -1;
    }
    return s_run (self, ST_CHUNK_MIN_TS) == 0? 1: -1;
}

static int
s_chunk_delete (zchat_store_t *self, int64_t id)
{
    if (sqlite3_bind_int64 (self->stmt [ST_CHUNK_DELETE], 1, id)) {
        s_log_error (self, "retain: bind");
        return -1;
    }
    return s_run (self, ST_CHUNK_DELETE);
}

//  Move room's floor from floor up to target (every seq below target
//  goes), spending at most *budget chunk rows; where the budget runs out
//  the floor stops at a chunk boundary. Sets *reached to the new floor.
//  Returns the number of messages taken out of history, or -1.
static int64_t
s_move_floor (zchat_store_t *self, const char *room, uint64_t floor, uint64_t target,
              int *budget, uint64_t *reached)
{
    size_t room_len = strlen (room);
    int64_t removed = 0;
    uint64_t at = floor;
    while (at < target) {
        store_chunk_t chunk;
        int rc = s_chunk_at (self, room, room_len, at? at: 1, &chunk);
        if (rc < 0)
            return -1;
        if (rc == 0 || chunk.first_seq >= target) {
            at = target;            //  nothing stored in between
            break;
        }
        if (*budget <= 0)
            break;
        (*budget)--;
        bool whole = chunk.last_seq < target;
        int64_t count = s_chunk_count (self, &chunk, at, whole? chunk.last_seq: target - 1);
        if (count < 0)
            return -1;
        if (whole) {
            if (s_chunk_delete (self, chunk.id))
                return -1;
            at = chunk.last_seq + 1;
        }
        else {
            at = target;
            if (s_chunk_refresh (self, &chunk, target) < 0)
                return -1;
        }
        removed += count;
    }
    if (at != floor) {
        sqlite3_stmt *stmt = self->stmt [ST_ROOM_FLOOR];
        if (s_bind_room (self, ST_ROOM_FLOOR, room, room_len)
        ||  sqlite3_bind_int64 (stmt, 2, (int64_t) at)
        ||  s_run (self, ST_ROOM_FLOOR))
            return -1;
    }
    *reached = at;
    return removed;
}


//  --------------------------------------------------------------------------
//  Age rule: walk the chunks in the order they were written (rowid order)
//  and move each room's floor past its messages older than cutoff. A
//  chunk's id is taken at its first message, ids only grow, and the broker
//  stamps each message with its clock as it arrives: so rowid order is
//  time order, and the walk stops at the first chunk that is whole (its
//  room's floor does not cut through it) and not expired, because every
//  chunk written after it is younger still. On the way it passes chunks
//  that a floor cuts through (a room's oldest: at most one per room)
//  whose visible rest has not expired, and chunks stamped after now (a
//  clock that was ahead must not stop the walk for as long as it was
//  ahead). Every chunk looked at costs one from the budget. Where the
//  budget runs out the next call goes on from there (age_cursor); a walk
//  that stopped or reached the end starts again from the oldest chunk.
//
//  A clock that went back delays expiry instead: what was written after a
//  chunk that has not expired waits for it, so a message counts as no
//  older than any written before it. Moving floors keeps every room's
//  history without holes: a message sent before an expired one goes with
//  it even if the clock said otherwise. Returns messages removed, or -1.

static int64_t
s_retain_age (zchat_store_t *self, uint64_t cutoff, uint64_t now, int *budget)
{
    int64_t removed = 0;
    sqlite3_stmt *stmt = self->stmt [ST_CHUNK_NEXT];
    while (*budget > 0) {
        if (sqlite3_bind_int64 (stmt, 1, self->age_cursor)) {
            s_log_error (self, "retain: bind");
            return -1;
        }
        store_chunk_t chunk = { 0 };
        char room [ZCHAT_MAX_ROOM + 1];
        int rc = sqlite3_step (stmt);
        if (rc == SQLITE_ROW) {
            chunk.id = sqlite3_column_int64 (stmt, 0);
            chunk.first_seq = s_column_u64 (stmt, 2);
            chunk.last_seq = s_column_u64 (stmt, 3);
            chunk.count = s_column_u64 (stmt, 4);
            chunk.min_ts = s_column_u64 (stmt, 5);
            chunk.max_ts = s_column_u64 (stmt, 6);
            if (s_column_copy (stmt, 1, room, ZCHAT_MAX_ROOM))
                rc = SQLITE_CORRUPT;
        }
        else
        if (rc != SQLITE_DONE)
            s_log_error (self, "retain: next chunk");
        sqlite3_reset (stmt);
        if (rc == SQLITE_DONE) {
            self->age_cursor = 0;       //  walked them all
            break;
        }
        if (rc != SQLITE_ROW)
            return -1;
        uint64_t floor = 0;
        if (s_room_get (self, room, strlen (room), NULL, &floor))
            return -1;
        if (chunk.min_ts >= cutoff) {
            if (chunk.first_seq >= floor && chunk.min_ts <= now) {
                self->age_cursor = 0;   //  everything after it is younger
                break;
            }
            (*budget)--;                //  cut through, or from the future
            self->age_cursor = chunk.id;
            continue;
        }
        //  The newest expired message of the chunk.
        uint64_t cut = 0;
        if (chunk.max_ts < cutoff)
            cut = chunk.last_seq;
        else {
            store_cursor_t cursor;
            if (s_chunk_open (self, &chunk, &cursor))
                return -1;
            while ((rc = s_cursor_next (&cursor)) == 1)
                if (cursor.ts < cutoff)
                    cut = cursor.seq;
            s_chunk_close (self);
            if (rc < 0) {
                s_chunk_damaged (&chunk);
                return -1;
            }
        }
        if (cut == 0 || cut < floor) {
            //  min_ts is out of step with the floor (it never should be):
            //  set it right, or drop a chunk with nothing visible.
            (*budget)--;
            rc = s_chunk_refresh (self, &chunk, floor);
            if (rc < 0 || (rc == 0 && s_chunk_delete (self, chunk.id)))
                return -1;
            self->age_cursor = chunk.id;
            continue;
        }
        uint64_t reached = 0;
        int64_t count = s_move_floor (self, room, floor, cut + 1, budget, &reached);
        if (count < 0)
            return -1;
        removed += count;
        if (reached <= cut)
            break;                      //  out of budget: come back to this chunk
        self->age_cursor = chunk.id;
    }
    return removed;
}


//  --------------------------------------------------------------------------
//  Count rule: visit the rooms that hold chunks (rooms without have
//  nothing to remove) round robin from where the last call stopped, at
//  most `rooms` of them, and move each floor to its newest max_messages
//  seqs. Returns messages removed, or -1.

static int64_t
s_retain_count (zchat_store_t *self, uint64_t max_messages, int *budget, int rooms)
{
    int64_t removed = 0;
    int visited = 0;
    bool wrapped = false;
    sqlite3_stmt *stmt = self->stmt [ST_ROOM_NEXT];
    while (*budget > 0 && visited < rooms) {
        if (sqlite3_bind_text (stmt, 1, self->retain_cursor, -1, SQLITE_STATIC)) {
            s_log_error (self, "retain: bind");
            return -1;
        }
        int rc = sqlite3_step (stmt);
        char room [ZCHAT_MAX_ROOM + 1];
        if (rc == SQLITE_ROW) {
            if (s_column_copy (stmt, 0, room, ZCHAT_MAX_ROOM))
                rc = SQLITE_CORRUPT;
        }
        else
        if (rc != SQLITE_DONE)
            s_log_error (self, "retain: next room");
        sqlite3_reset (stmt);
        if (rc == SQLITE_DONE) {
            if (wrapped || self->retain_cursor [0] == '\0')
                break;              //  every room seen in this call
            self->retain_cursor [0] = '\0';
            wrapped = true;
            continue;
        }
        if (rc != SQLITE_ROW)
            return -1;
        visited++;
        size_t room_len = strlen (room);
        uint64_t last = 0, floor = 0;
        if (s_room_newest (self, room, room_len, &last)
        ||  s_room_get (self, room, room_len, NULL, &floor))
            return -1;
        if (last > max_messages && last - max_messages + 1 > floor) {
            uint64_t target = last - max_messages + 1;
            uint64_t reached = 0;
            int64_t count = s_move_floor (self, room, floor, target, budget, &reached);
            if (count < 0)
                return -1;
            removed += count;
            if (reached < target)
                break;              //  not done: come back to this room
        }
        memcpy (self->retain_cursor, room, strlen (room) + 1);
    }
    return removed;
}


//  --------------------------------------------------------------------------
//  Remove from history what is over the retention limits, at most batch
//  chunk rows deleted, rewritten or passed over (and rooms examined) per
//  call, in one transaction. Does nothing (returns 0) while a group is open: the broker
//  calls it between groups. Returns messages removed, or -1.

int
zchat_store_retain (zchat_store_t *self, uint64_t max_messages,
                    uint64_t max_age_ms, uint64_t now_ms, size_t batch)
{
    if (!self)
        return -1;
    if (self->in_group || batch == 0 || (max_messages == 0 && max_age_ms == 0))
        return 0;
    int budget = batch > INT_MAX? INT_MAX: (int) batch;
    int rooms = budget;
    //  Taken back if the transaction fails: what it passed is still there.
    int64_t age_cursor = self->age_cursor;
    if (s_begin (self))
        return -1;
    int64_t removed = 0;
    if (max_age_ms && now_ms > max_age_ms) {
        uint64_t cutoff = now_ms - max_age_ms;
        if (cutoff > (uint64_t) INT64_MAX)
            cutoff = (uint64_t) INT64_MAX;
        int64_t count = s_retain_age (self, cutoff, now_ms, &budget);
        if (count < 0)
            goto failed;
        removed += count;
    }
    if (max_messages && budget > 0) {
        int64_t count = s_retain_count (self, max_messages, &budget, rooms);
        if (count < 0)
            goto failed;
        removed += count;
    }
    if (s_run (self, ST_COMMIT))
        goto failed;
    return removed > INT_MAX? INT_MAX: (int) removed;

failed:
    if (!sqlite3_get_autocommit (self->db))
        s_run (self, ST_ROLLBACK);
    self->age_cursor = age_cursor;
    return -1;
}



//  --------------------------------------------------------------------------
//  Topic of a room: 1 with topic, set_by and *ts filled; 0 if the room has
//  no topic (topic and set_by empty, *ts 0); -1 on a storage error or a
//  stored value over its limit (logged; the fields are empty then too).
//  An error is never "no topic": a room loaded with it would forget its
//  topic.

int
zchat_store_topic_get (zchat_store_t *self, const char *room,
                       char *topic, char *set_by, uint64_t *ts)
{
    assert (topic && set_by && ts);
    topic [0] = set_by [0] = '\0';
    *ts = 0;
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    if (!self || !room_len)
        return -1;
    sqlite3_stmt *stmt = self->stmt [ST_TOPIC_GET];
    if (sqlite3_bind_text (stmt, 1, room, (int) room_len, SQLITE_STATIC)) {
        s_log_error (self, "topic get: bind");
        return -1;
    }
    int result = -1;
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW) {
        if (s_column_copy (stmt, 0, topic, ZCHAT_MAX_TOPIC) == 0
        &&  s_column_copy (stmt, 1, set_by, ZCHAT_MAX_NICK) == 0) {
            *ts = (uint64_t) sqlite3_column_int64 (stmt, 2);
            result = 1;
        }
        else
            topic [0] = set_by [0] = '\0';
    }
    else
    if (rc == SQLITE_DONE)
        result = 0;
    else
        s_log_error (self, "topic get");
    sqlite3_reset (stmt);
    return result;
}


//  --------------------------------------------------------------------------
//  Set a room's topic. Outside a group it is durable on return; inside one
//  it is part of the group (stored by commit, dropped by rollback).
//  Returns 0 or -1.

int
zchat_store_topic_set (zchat_store_t *self, const char *room,
                       const char *topic, const char *set_by, uint64_t ts)
{
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    size_t by_len = s_name_len (set_by, ZCHAT_MAX_NICK);
    if (!self || !room_len || !by_len || !topic
    ||  strnlen (topic, ZCHAT_MAX_TOPIC + 1) > ZCHAT_MAX_TOPIC
    ||  ts > (uint64_t) INT64_MAX) {
        zsys_error ("zchat_store: topic set: invalid arguments");
        return -1;
    }
    sqlite3_stmt *stmt = self->stmt [ST_TOPIC_SET];
    if (sqlite3_bind_text (stmt, 1, room, (int) room_len, SQLITE_STATIC)
    ||  sqlite3_bind_text (stmt, 2, topic, -1, SQLITE_STATIC)
    ||  sqlite3_bind_text (stmt, 3, set_by, (int) by_len, SQLITE_STATIC)
    ||  sqlite3_bind_int64 (stmt, 4, (int64_t) ts)) {
        s_log_error (self, "topic set: bind");
        return -1;
    }
    return s_run (self, ST_TOPIC_SET);
}


//  --------------------------------------------------------------------------
//  The Z85 key that owns nick in any case (its earliest claim): 1 with key
//  filled (capacity 41); 0 if no key owns it (key empty); -1 on a storage
//  error or a stored key over its limit (logged; key empty then too). An
//  error is never "unowned": the broker would go on to treat the nick as
//  free to claim, and an operator releasing it would be told it is bound
//  to no key.

int
zchat_store_nick_owner (zchat_store_t *self, const char *nick, char *key)
{
    assert (key);
    key [0] = '\0';
    size_t nick_len = s_name_len (nick, ZCHAT_MAX_NICK);
    if (!self || !nick_len)
        return -1;
    sqlite3_stmt *stmt = self->stmt [ST_NICK_OWNER];
    if (sqlite3_bind_text (stmt, 1, nick, (int) nick_len, SQLITE_STATIC)) {
        s_log_error (self, "nick owner: bind");
        return -1;
    }
    int result = -1;
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW) {
        if (s_column_copy (stmt, 0, key, STORE_MAX_KEY) == 0)
            result = 1;                 //  a failed copy leaves key empty
    }
    else
    if (rc == SQLITE_DONE)
        result = 0;
    else
        s_log_error (self, "nick owner");
    sqlite3_reset (stmt);
    return result;
}


//  --------------------------------------------------------------------------
//  Bind a nick unowned in every case to key: 0, also when key already owns
//  it in some case (nothing is written then); -1 if another key owns it
//  (or on error). Joins an open group like topic_set.

int
zchat_store_nick_claim (zchat_store_t *self, const char *nick, const char *key)
{
    size_t nick_len = s_name_len (nick, ZCHAT_MAX_NICK);
    size_t key_len = s_name_len (key, STORE_MAX_KEY);
    if (!self || !nick_len || !key_len) {
        zsys_error ("zchat_store: nick claim: invalid arguments");
        return -1;
    }
    sqlite3_stmt *stmt = self->stmt [ST_NICK_CLAIM];
    if (sqlite3_bind_text (stmt, 1, nick, (int) nick_len, SQLITE_STATIC)
    ||  sqlite3_bind_text (stmt, 2, key, (int) key_len, SQLITE_STATIC)
    ||  sqlite3_bind_int64 (stmt, 3, zclock_time ())) {
        s_log_error (self, "nick claim: bind");
        return -1;
    }
    if (s_run (self, ST_NICK_CLAIM))
        return -1;
    if (sqlite3_changes (self->db) == 1)
        return 0;
    char owner [STORE_MAX_KEY + 1];
    if (zchat_store_nick_owner (self, nick, owner) != 1)
        return -1;
    return streq (owner, key)? 0: -1;
}


//  --------------------------------------------------------------------------
//  Number of nicks key owns (each once, whatever its cases), or -1.

int64_t
zchat_store_nick_count (zchat_store_t *self, const char *key)
{
    size_t key_len = s_name_len (key, STORE_MAX_KEY);
    if (!self || !key_len)
        return -1;
    sqlite3_stmt *stmt = self->stmt [ST_NICK_COUNT];
    if (sqlite3_bind_text (stmt, 1, key, (int) key_len, SQLITE_STATIC)) {
        s_log_error (self, "nick count: bind");
        return -1;
    }
    int64_t count = -1;
    if (sqlite3_step (stmt) == SQLITE_ROW)
        count = sqlite3_column_int64 (stmt, 0);
    else
        s_log_error (self, "nick count");
    sqlite3_reset (stmt);
    return count;
}


//  --------------------------------------------------------------------------
//  Unbind nick, in every case, from whatever key. Returns 0 (also if it
//  was unowned) or -1.

int
zchat_store_nick_release (zchat_store_t *self, const char *nick)
{
    size_t nick_len = s_name_len (nick, ZCHAT_MAX_NICK);
    if (!self || !nick_len)
        return -1;
    sqlite3_stmt *stmt = self->stmt [ST_NICK_RELEASE];
    if (sqlite3_bind_text (stmt, 1, nick, (int) nick_len, SQLITE_STATIC)) {
        s_log_error (self, "nick release: bind");
        return -1;
    }
    return s_run (self, ST_NICK_RELEASE);
}
