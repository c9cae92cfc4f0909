//  zchat_store — the broker's durable state in SQLite (WAL mode).
//
//  One connection, used only from the broker's event loop. Every statement
//  is prepared once in zchat_store_new and reset/rebound per call, so the
//  hot path (zchat_store_append inside a group) neither parses SQL nor
//  allocates. See broker/STORAGE.md for the design: schema, group commit,
//  durability levels, idempotency, retention and locking.

#include <czmq.h>
#include <sqlite3.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zchat_msg.h"
#include "zchat_store.h"

//  Bump when the schema changes, and teach s_schema to migrate from the
//  older versions; a store written by a newer broker is refused.
#define STORE_SCHEMA_VERSION    1

#define STORE_DB_NAME           "zchat.db"
#define STORE_LOCK_NAME         "zchat.lock"
#define STORE_MAX_KEY           40      //  a Z85 CURVE public key

//  A busy wait stalls the whole event loop, so keep it short. No other
//  writer can exist (the flock keeps other brokers out); only an operator's
//  sqlite3 shell or a backup can hold a lock, and only briefly.
#define STORE_BUSY_TIMEOUT_MS   200

//  Every statement the store runs, prepared once.
typedef enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_INSERT,
    ST_FIND_ID,
    ST_FIND_KEY,
    ST_ROOM_SEQ,
    ST_LAST_SEQ,
    ST_LAST_MSG,
    ST_FIRST_SEQ,
    ST_TAIL_START,
    ST_HISTORY,
    ST_OLDEST,
    ST_DELETE_RANGE,
    ST_ROOM_NEXT,
    ST_TOPIC_GET,
    ST_TOPIC_SET,
    ST_NICK_OWNER,
    ST_NICK_CLAIM,
    ST_NICK_RELEASE,
    ST_COUNT
} store_stmt_t;

static const char *s_sql [ST_COUNT] = {
    //  IMMEDIATE takes the write lock at once, so a busy database fails
    //  the begin, not some append in the middle of the group.
    [ST_BEGIN]      = "BEGIN IMMEDIATE",
    [ST_COMMIT]     = "COMMIT",
    [ST_ROLLBACK]   = "ROLLBACK",
    //  OR IGNORE: a clash on (nick, msg_id) is a retry, answered from the
    //  original row; a clash on (room, seq) is a bug that append reports.
    [ST_INSERT]     = "INSERT OR IGNORE INTO messages"
                      " (room, seq, ts, nick, kind, text, msg_id)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_FIND_ID]    = "SELECT room, seq, ts FROM messages"
                      " WHERE nick = ?1 AND msg_id = ?2",
    [ST_FIND_KEY]   = "SELECT 1 FROM messages WHERE room = ?1 AND seq = ?2",
    [ST_ROOM_SEQ]   = "INSERT INTO rooms (name, last_seq) VALUES (?1, ?2)"
                      " ON CONFLICT (name) DO UPDATE"
                      " SET last_seq = max (last_seq, excluded.last_seq)",
    //  rooms.last_seq survives retention; the messages term covers the
    //  appends of a group not yet committed (rooms is updated at commit).
    [ST_LAST_SEQ]   = "SELECT max ("
                      " coalesce ((SELECT last_seq FROM rooms WHERE name = ?1), 0),"
                      " coalesce ((SELECT seq FROM messages WHERE room = ?1"
                      "            ORDER BY seq DESC LIMIT 1), 0))",
    [ST_LAST_MSG]   = "SELECT seq FROM messages WHERE room = ?1"
                      " ORDER BY seq DESC LIMIT 1",
    [ST_FIRST_SEQ]  = "SELECT seq FROM messages WHERE room = ?1"
                      " ORDER BY seq LIMIT 1",
    //  The limit-th newest message at or below to_seq: walks at most
    //  limit index entries.
    [ST_TAIL_START] = "SELECT seq FROM messages WHERE room = ?1 AND seq <= ?2"
                      " ORDER BY seq DESC LIMIT 1 OFFSET ?3",
    [ST_HISTORY]    = "SELECT seq, ts, nick, kind, text FROM messages"
                      " WHERE room = ?1 AND seq BETWEEN ?2 AND ?3"
                      " ORDER BY seq LIMIT ?4",
    [ST_OLDEST]     = "SELECT room, seq FROM messages WHERE ts < ?1"
                      " ORDER BY ts LIMIT 1",
    [ST_DELETE_RANGE] = "DELETE FROM messages"
                      " WHERE room = ?1 AND seq BETWEEN ?2 AND ?3",
    [ST_ROOM_NEXT]  = "SELECT name FROM rooms WHERE name > ?1"
                      " ORDER BY name LIMIT 1",
    [ST_TOPIC_GET]  = "SELECT topic, topic_by, topic_ts FROM rooms"
                      " WHERE name = ?1 AND topic IS NOT NULL",
    [ST_TOPIC_SET]  = "INSERT INTO rooms (name, last_seq, topic, topic_by, topic_ts)"
                      " VALUES (?1, 0, ?2, ?3, ?4)"
                      " ON CONFLICT (name) DO UPDATE SET topic = excluded.topic,"
                      " topic_by = excluded.topic_by, topic_ts = excluded.topic_ts",
    [ST_NICK_OWNER] = "SELECT key FROM nick_keys WHERE nick = ?1",
    [ST_NICK_CLAIM] = "INSERT OR IGNORE INTO nick_keys (nick, key, ts)"
                      " VALUES (?1, ?2, ?3)",
    [ST_NICK_RELEASE] = "DELETE FROM nick_keys WHERE nick = ?1",
};

//  Messages live in an ordinary rowid table: appends land on its rightmost
//  leaf, and large texts do not bloat interior pages as they would in a
//  WITHOUT ROWID table keyed by (room, seq) (measured: see STORAGE.md).
//  The small tables are WITHOUT ROWID: one b-tree each instead of two.
static const char *s_schema_sql =
    "CREATE TABLE IF NOT EXISTS messages ("
    "  id INTEGER PRIMARY KEY,"
    "  room TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  nick TEXT NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  text BLOB NOT NULL,"
    "  msg_id INTEGER);"
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_room_seq ON messages (room, seq);"
    //  NULL msg_ids (id 0: no idempotency) never clash with each other.
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_sender_id ON messages (nick, msg_id);"
    "CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);"
    "CREATE TABLE IF NOT EXISTS rooms ("
    "  name TEXT PRIMARY KEY,"
    "  last_seq INTEGER NOT NULL DEFAULT 0,"
    "  topic TEXT,"
    "  topic_by TEXT,"
    "  topic_ts INTEGER) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS nick_keys ("
    "  nick TEXT PRIMARY KEY,"
    "  key TEXT NOT NULL,"
    "  ts INTEGER NOT NULL) WITHOUT ROWID;";

//  One room touched by the open group, with the highest seq appended to it.
//  An empty name marks a free slot (room names are never empty).
typedef struct {
    char room [ZCHAT_MAX_ROOM + 1];
    uint64_t seq;
} store_touched_t;

struct _zchat_store_t {
    sqlite3 *db;
    sqlite3_stmt *stmt [ST_COUNT];
    int lock_fd;                    //  holds the flock while we live
    bool in_group;                  //  a group transaction is open
    bool group_failed;              //  the open group can only roll back
    //  Rooms touched by the open group: an open-addressed hash table whose
    //  used slots are also listed, so clearing costs only what was used.
    store_touched_t *touched;
    uint32_t *touched_used;
    size_t touched_size;            //  slots, a power of two
    size_t touched_count;
    //  Where the count-retention round robin over rooms goes on.
    char retain_cursor [ZCHAT_MAX_ROOM + 1];
};


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
//  SQLite integers are signed 64-bit: message ids use all 64 bits, so map
//  them through two's complement explicitly rather than by an
//  implementation-defined cast.

static int64_t
s_u64_to_i64 (uint64_t value)
{
    if (value <= (uint64_t) INT64_MAX)
        return (int64_t) value;
    return -(int64_t) (UINT64_MAX - value) - 1;
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
        s_log_error (self, s_sql [which]);
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE? 0: -1;
}


//  --------------------------------------------------------------------------
//  Run a query whose answer is one integer (or no row). Parameters must be
//  bound. Returns 1 with *value set, 0 if no row, -1 on error; resets.

static int
s_query_int (zchat_store_t *self, store_stmt_t which, int64_t *value)
{
    sqlite3_stmt *stmt = self->stmt [which];
    int rc = sqlite3_step (stmt);
    int result = 0;
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64 (stmt, 0);
        result = 1;
    }
    else
    if (rc != SQLITE_DONE) {
        s_log_error (self, s_sql [which]);
        result = -1;
    }
    sqlite3_reset (stmt);
    return result;
}


//  --------------------------------------------------------------------------
//  Query a per-room sequence number (ST_LAST_SEQ, ST_LAST_MSG or
//  ST_FIRST_SEQ). Returns it, 0 if none; -1 on error.

static int64_t
s_room_seq (zchat_store_t *self, store_stmt_t which, const char *room, size_t room_len)
{
    sqlite3_stmt *stmt = self->stmt [which];
    if (sqlite3_bind_text (stmt, 1, room, (int) room_len, SQLITE_STATIC) != SQLITE_OK) {
        s_log_error (self, "bind room");
        return -1;
    }
    int64_t value = 0;
    int rc = s_query_int (self, which, &value);
    if (rc < 0)
        return -1;
    return rc == 1 && value > 0? value: 0;
}


//  --------------------------------------------------------------------------
//  Forget the rooms touched by the group.

static void
s_touched_clear (zchat_store_t *self)
{
    for (size_t i = 0; i < self->touched_count; i++)
        self->touched [self->touched_used [i]].room [0] = '\0';
    self->touched_count = 0;
}


//  FNV-1a: short names, cheap and good enough for a small table.
static uint32_t
s_hash (const char *name, size_t len)
{
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        hash ^= (uint8_t) name [i];
        hash *= 16777619u;
    }
    return hash;
}


//  --------------------------------------------------------------------------
//  Size the touched-rooms table (power of two). Returns 0 or -1 (no
//  memory: the old table is kept). Rehashes the rooms in use.

static int
s_touched_resize (zchat_store_t *self, size_t size)
{
    store_touched_t *table = (store_touched_t *) calloc (size, sizeof (store_touched_t));
    uint32_t *used = (uint32_t *) calloc (size, sizeof (uint32_t));
    if (!table || !used) {
        free (table);
        free (used);
        return -1;
    }
    size_t count = 0;
    for (size_t i = 0; i < self->touched_count; i++) {
        store_touched_t *entry = &self->touched [self->touched_used [i]];
        size_t len = strlen (entry->room);
        size_t slot = s_hash (entry->room, len) & (size - 1);
        while (table [slot].room [0])
            slot = (slot + 1) & (size - 1);
        table [slot] = *entry;
        used [count++] = (uint32_t) slot;
    }
    free (self->touched);
    free (self->touched_used);
    self->touched = table;
    self->touched_used = used;
    self->touched_size = size;
    self->touched_count = count;
    return 0;
}


//  --------------------------------------------------------------------------
//  Note that the group appended seq to room. Returns 0, or -1 if out of
//  memory. Allocates only when a group touches more rooms than ever before.

static int
s_touch (zchat_store_t *self, const char *room, size_t room_len, uint64_t seq)
{
    //  Keep the load at most one half so probes stay short.
    if ((self->touched_count + 1) * 2 > self->touched_size
    &&  (self->touched_size > UINT32_MAX / 2
    ||   s_touched_resize (self, self->touched_size * 2)))
        return -1;
    size_t mask = self->touched_size - 1;
    size_t slot = s_hash (room, room_len) & mask;
    while (self->touched [slot].room [0]) {
        store_touched_t *entry = &self->touched [slot];
        if (memcmp (entry->room, room, room_len + 1) == 0) {
            if (seq > entry->seq)
                entry->seq = seq;
            return 0;
        }
        slot = (slot + 1) & mask;
    }
    memcpy (self->touched [slot].room, room, room_len + 1);
    self->touched [slot].seq = seq;
    self->touched_used [self->touched_count++] = (uint32_t) slot;
    return 0;
}


//  --------------------------------------------------------------------------
//  End the open group without storing it. Safe when SQLite has already
//  rolled the transaction back by itself (after an I/O error or disk full).

static void
s_abort_group (zchat_store_t *self)
{
    if (!sqlite3_get_autocommit (self->db))
        s_run (self, ST_ROLLBACK);
    self->in_group = false;
    self->group_failed = false;
    s_touched_clear (self);
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
//  Create the schema in a fresh database, accept the current one, refuse
//  one written by a newer version. Returns 0 or -1 with error filled in.

static int
s_schema (sqlite3 *db, char *error, size_t error_size)
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
    if (version == STORE_SCHEMA_VERSION)
        return 0;
    if (version > STORE_SCHEMA_VERSION) {
        snprintf (error, error_size,
                  "the database has schema version %d; this zchat-broker knows only %d",
                  version, STORE_SCHEMA_VERSION);
        return -1;
    }
    //  Version 0: a new file. Tables and version in one transaction, so a
    //  crash here leaves either nothing or a complete schema.
    char *sql = zsys_sprintf ("BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;",
                              s_schema_sql, STORE_SCHEMA_VERSION);
    if (!sql) {
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    char *message = NULL;
    int rc = sqlite3_exec (db, sql, NULL, NULL, &message);
    zstr_free (&sql);
    if (rc != SQLITE_OK) {
        snprintf (error, error_size, "cannot create the schema: %s",
                  message? message: sqlite3_errmsg (db));
        sqlite3_free (message);
        if (!sqlite3_get_autocommit (db))
            sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
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
    if (s_mkdir_p (dir)) {
        snprintf (error, error_size, "cannot create data directory %s: %s",
                  dir, strerror (errno));
        goto failed;
    }
    self->lock_fd = s_lock (dir, error, error_size);
    if (self->lock_fd < 0)
        goto failed;
    if (s_touched_resize (self, 64)) {
        snprintf (error, error_size, "out of memory");
        goto failed;
    }
    db_path = zsys_sprintf ("%s/%s", dir, STORE_DB_NAME);
    if (!db_path) {
        snprintf (error, error_size, "out of memory");
        goto failed;
    }
    //  NOMUTEX: one thread uses this connection, no need to pay for locks.
    int rc = sqlite3_open_v2 (db_path, &self->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                              | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf (error, error_size, "cannot open %s: %s", db_path,
                  self->db? sqlite3_errmsg (self->db): sqlite3_errstr (rc));
        goto failed;
    }
    if (sqlite3_busy_timeout (self->db, STORE_BUSY_TIMEOUT_MS) != SQLITE_OK) {
        snprintf (error, error_size, "busy_timeout: %s", sqlite3_errmsg (self->db));
        goto failed;
    }
    //  WAL: a commit appends its pages to one file and, with
    //  synchronous=NORMAL, does not wait for the disk: the write() reaches
    //  the kernel before COMMIT returns, so a kill -9 of the broker loses
    //  nothing acknowledged. FULL adds an fsync of the WAL per commit, the
    //  price of surviving power loss; with groups it is paid once per
    //  group, not per message.
    //  cache_size -16384 = 16 MiB: keeps the right edges of the three
    //  message b-trees and the active senders' index pages hot.
    //  wal_autocheckpoint 1000 pages (~4 MiB, SQLite's default, kept on
    //  purpose): the checkpoint runs inside a commit on the event loop, so
    //  many small ones (a few ms each) beat rare long stalls.
    //  journal_size_limit 64 MiB: a WAL that grew while a reader held an
    //  old snapshot is truncated again afterwards.
    //  secure_delete FAST: Debian compiles secure_delete ON, which costs
    //  extra writes on every retention delete; FAST still zeroes deleted
    //  messages in the pages being written anyway.
    //  temp_store MEMORY: no temp files for the rare sort.
    if (s_pragma (self->db, "PRAGMA journal_mode = WAL", "wal", error, error_size)
    ||  s_pragma (self->db, fsync? "PRAGMA synchronous = FULL"
                                 : "PRAGMA synchronous = NORMAL", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA cache_size = -16384", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA wal_autocheckpoint = 1000", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA journal_size_limit = 67108864", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA secure_delete = FAST", NULL, error, error_size)
    ||  s_pragma (self->db, "PRAGMA temp_store = MEMORY", NULL, error, error_size)
    ||  s_schema (self->db, error, error_size))
        goto failed;

    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3 (self->db, s_sql [i], -1, SQLITE_PREPARE_PERSISTENT,
                                &self->stmt [i], NULL) != SQLITE_OK) {
            snprintf (error, error_size, "cannot prepare \"%s\": %s",
                      s_sql [i], sqlite3_errmsg (self->db));
            goto failed;
        }
    zstr_free (&db_path);
    return self;

failed:
    zstr_free (&db_path);
    zchat_store_destroy (&self);
    return NULL;
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
        //  The last connection to close checkpoints and removes the WAL.
        if (sqlite3_close (self->db) != SQLITE_OK)
            zsys_error ("zchat_store: close: %s", sqlite3_errmsg (self->db));
    }
    //  Only now that the database is closed may another broker have it.
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    free (self->touched);
    free (self->touched_used);
    free (self);
    *self_p = NULL;
}


//  --------------------------------------------------------------------------
//  Newest sequence number of a room, 0 if it has no messages yet (or on a
//  storage error, which is logged: an append at a taken seq then fails).

uint64_t
zchat_store_last_seq (zchat_store_t *self, const char *room)
{
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    if (!self || !room_len)
        return 0;
    int64_t seq = s_room_seq (self, ST_LAST_SEQ, room, room_len);
    return seq > 0? (uint64_t) seq: 0;
}


//  --------------------------------------------------------------------------
//  Oldest sequence number still held for a room, 0 if none is held.

uint64_t
zchat_store_first_seq (zchat_store_t *self, const char *room)
{
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    if (!self || !room_len)
        return 0;
    int64_t seq = s_room_seq (self, ST_FIRST_SEQ, room, room_len);
    return seq > 0? (uint64_t) seq: 0;
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
    if (s_run (self, ST_BEGIN))
        return -1;
    self->in_group = true;
    self->group_failed = false;
    s_touched_clear (self);
    return 0;
}


//  --------------------------------------------------------------------------
//  Make every append since begin durable. rooms.last_seq is written here,
//  once per touched room, so that seq numbering survives a retention that
//  deletes every message of a room. Returns 0, or -1 after rolling the
//  whole group back.

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
    sqlite3_stmt *stmt = self->stmt [ST_ROOM_SEQ];
    for (size_t i = 0; i < self->touched_count; i++) {
        store_touched_t *entry = &self->touched [self->touched_used [i]];
        if (sqlite3_bind_text (stmt, 1, entry->room, -1, SQLITE_STATIC)
        ||  sqlite3_bind_int64 (stmt, 2, (int64_t) entry->seq)) {
            s_log_error (self, "bind rooms.last_seq");
            goto failed;
        }
        if (s_run (self, ST_ROOM_SEQ))
            goto failed;
    }
    if (s_run (self, ST_COMMIT))
        goto failed;
    self->in_group = false;
    s_touched_clear (self);
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
//  Append one room message inside a group. msg_id 0 means "no id": such a
//  message is never taken for a retry (id 0 is reserved by the protocol).
//  Returns 0 when stored, 1 for a retry of a stored (nick, msg_id) with the
//  original room, seq and ts, -1 on error (including a (room, seq) that is
//  already taken: the broker's numbering is wrong, nothing was written).

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
    //  itself; appending now would autocommit outside the group.
    if (sqlite3_get_autocommit (self->db)) {
        zsys_error ("zchat_store: append: the group's transaction was lost");
        self->group_failed = true;
        return -1;
    }
    //  SQLITE_STATIC: the caller's buffers outlive the step, and every
    //  parameter is bound again before the next one.
    sqlite3_stmt *stmt = self->stmt [ST_INSERT];
    int rc = sqlite3_bind_text (stmt, 1, room, (int) room_len, SQLITE_STATIC);
    rc |= sqlite3_bind_int64 (stmt, 2, (int64_t) seq);
    rc |= sqlite3_bind_int64 (stmt, 3, (int64_t) ts);
    rc |= sqlite3_bind_text (stmt, 4, nick, (int) nick_len, SQLITE_STATIC);
    rc |= sqlite3_bind_int (stmt, 5, kind);
    //  A NULL pointer would bind SQL NULL, not an empty blob.
    rc |= sqlite3_bind_blob (stmt, 6, text? text: "", (int) text_size, SQLITE_STATIC);
    rc |= msg_id? sqlite3_bind_int64 (stmt, 7, s_u64_to_i64 (msg_id))
                : sqlite3_bind_null (stmt, 7);
    if (rc != SQLITE_OK) {
        s_log_error (self, "append: bind");
        return -1;
    }
    if (s_run (self, ST_INSERT))
        return -1;
    if (sqlite3_changes (self->db) == 1) {
        if (s_touch (self, room, room_len, seq)) {
            //  The row is in, but commit could not keep rooms.last_seq.
            zsys_error ("zchat_store: append: out of memory; the group will fail");
            self->group_failed = true;
            return -1;
        }
        return 0;
    }
    //  Ignored: a retry if (nick, msg_id) is taken, else (room, seq) was.
    if (msg_id) {
        stmt = self->stmt [ST_FIND_ID];
        if (sqlite3_bind_text (stmt, 1, nick, (int) nick_len, SQLITE_STATIC)
        ||  sqlite3_bind_int64 (stmt, 2, s_u64_to_i64 (msg_id))) {
            s_log_error (self, "append: bind");
            return -1;
        }
        rc = sqlite3_step (stmt);
        int result = -1;
        char found_room [ZCHAT_MAX_ROOM + 1];
        if (rc == SQLITE_ROW) {
            if (s_column_copy (stmt, 0, found_room, ZCHAT_MAX_ROOM) == 0) {
                if (orig_room)
                    memcpy (orig_room, found_room, strlen (found_room) + 1);
                if (orig_seq)
                    *orig_seq = (uint64_t) sqlite3_column_int64 (stmt, 1);
                if (orig_ts)
                    *orig_ts = (uint64_t) sqlite3_column_int64 (stmt, 2);
                result = 1;
            }
        }
        else
        if (rc != SQLITE_DONE)
            s_log_error (self, "append: find original");
        sqlite3_reset (stmt);
        if (rc != SQLITE_DONE)
            return result;
    }
    //  Not a retry. Name the real cause in the log (cold path).
    stmt = self->stmt [ST_FIND_KEY];
    int64_t taken = 0;
    if (sqlite3_bind_text (stmt, 1, room, (int) room_len, SQLITE_STATIC)
    ||  sqlite3_bind_int64 (stmt, 2, (int64_t) seq))
        s_log_error (self, "append: bind");
    else
    if (s_query_int (self, ST_FIND_KEY, &taken) == 1)
        zsys_error ("zchat_store: append: room %s already has seq %" PRIu64
                    " (not stored)", room, seq);
    else
        zsys_error ("zchat_store: append: %s/%" PRIu64 " was not stored",
                    room, seq);
    return -1;
}


//  --------------------------------------------------------------------------
//  Messages of room with from_seq <= seq <= to_seq (to_seq 0 = newest),
//  ascending, at most limit of them, streamed row by row to fn. from_seq 0
//  asks for the last limit messages up to to_seq (PROTOCOL.md §6.4).
//  Returns the number passed to fn, or -1 on error. fn must not call
//  zchat_store_history itself (the statement is shared).

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
    int64_t to = to_seq == 0 || to_seq > (uint64_t) INT64_MAX? INT64_MAX: (int64_t) to_seq;
    if (from_seq > (uint64_t) INT64_MAX)
        return 0;
    int64_t from = (int64_t) from_seq;
    sqlite3_stmt *stmt = NULL;
    if (from == 0) {
        stmt = self->stmt [ST_TAIL_START];
        if (sqlite3_bind_text (stmt, 1, room, (int) room_len, SQLITE_STATIC)
        ||  sqlite3_bind_int64 (stmt, 2, to)
        ||  sqlite3_bind_int64 (stmt, 3, (int64_t) limit - 1)) {
            s_log_error (self, "history: bind");
            return -1;
        }
        int rc = s_query_int (self, ST_TAIL_START, &from);
        if (rc < 0)
            return -1;
        if (rc == 0)
            from = 0;               //  fewer than limit: all of them
    }
    stmt = self->stmt [ST_HISTORY];
    if (sqlite3_bind_text (stmt, 1, room, (int) room_len, SQLITE_STATIC)
    ||  sqlite3_bind_int64 (stmt, 2, from)
    ||  sqlite3_bind_int64 (stmt, 3, to)
    ||  sqlite3_bind_int64 (stmt, 4, (int64_t) limit)) {
        s_log_error (self, "history: bind");
        return -1;
    }
    int count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
        uint64_t ts = (uint64_t) sqlite3_column_int64 (stmt, 1);
        const char *nick = (const char *) sqlite3_column_text (stmt, 2);
        int kind = sqlite3_column_int (stmt, 3);
        const char *text = (const char *) sqlite3_column_blob (stmt, 4);
        int text_size = sqlite3_column_bytes (stmt, 4);
        if (!nick || kind < 0 || kind > UINT8_MAX || text_size < 0) {
            zsys_error ("zchat_store: history: malformed row %s/%" PRIu64, room, seq);
            rc = SQLITE_CORRUPT;
            break;
        }
        count++;
        if (fn (arg, seq, ts, nick, (uint8_t) kind, text? text: "", (size_t) text_size)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE && rc != SQLITE_CORRUPT)
        s_log_error (self, "history");
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE? count: -1;
}


//  --------------------------------------------------------------------------
//  Delete seq first..last of room, at most budget rows. Returns the number
//  deleted or -1.

static int
s_delete_range (zchat_store_t *self, const char *room, int64_t first, int64_t last)
{
    sqlite3_stmt *stmt = self->stmt [ST_DELETE_RANGE];
    if (sqlite3_bind_text (stmt, 1, room, -1, SQLITE_STATIC)
    ||  sqlite3_bind_int64 (stmt, 2, first)
    ||  sqlite3_bind_int64 (stmt, 3, last)) {
        s_log_error (self, "retain: bind");
        return -1;
    }
    if (s_run (self, ST_DELETE_RANGE))
        return -1;
    return sqlite3_changes (self->db);
}


//  --------------------------------------------------------------------------
//  Age rule: repeatedly take the message with the oldest ts below cutoff
//  and delete its room's prefix up to it. Deleting prefixes keeps every
//  room's history without holes; a message sent before an expired one is
//  taken to be at least as old even if the clock said otherwise. Each step
//  is an index lookup and deletes at least one row. Returns rows deleted.

static int
s_retain_age (zchat_store_t *self, int64_t cutoff, int budget)
{
    int deleted = 0;
    sqlite3_stmt *stmt = self->stmt [ST_OLDEST];
    while (deleted < budget) {
        if (sqlite3_bind_int64 (stmt, 1, cutoff)) {
            s_log_error (self, "retain: bind");
            return -1;
        }
        int rc = sqlite3_step (stmt);
        char room [ZCHAT_MAX_ROOM + 1];
        int64_t seq = 0;
        if (rc == SQLITE_ROW) {
            seq = sqlite3_column_int64 (stmt, 1);
            if (s_column_copy (stmt, 0, room, ZCHAT_MAX_ROOM))
                rc = SQLITE_CORRUPT;
        }
        else
        if (rc != SQLITE_DONE)
            s_log_error (self, "retain: oldest");
        sqlite3_reset (stmt);
        if (rc == SQLITE_DONE)
            break;                  //  nothing has expired
        if (rc != SQLITE_ROW)
            return -1;
        int64_t first = s_room_seq (self, ST_FIRST_SEQ, room, strlen (room));
        if (first <= 0)
            return -1;              //  the row just found must have a room
        //  Seqs are unique per room, so this range holds at most the rest
        //  of the budget, however sparse it is.
        int64_t last = seq;
        if (last - first >= budget - deleted)
            last = first + (budget - deleted) - 1;
        int count = s_delete_range (self, room, first, last);
        if (count < 0)
            return -1;
        if (count == 0) {
            zsys_error ("zchat_store: retain: nothing deleted in %s", room);
            return -1;              //  would loop for ever otherwise
        }
        deleted += count;
    }
    return deleted;
}


//  --------------------------------------------------------------------------
//  Count rule: visit rooms round robin from where the last call stopped,
//  at most budget rooms per call, and cut each to its newest max_messages
//  seqs. Returns rows deleted.

static int
s_retain_count (zchat_store_t *self, int64_t max_messages, int budget)
{
    int deleted = 0;
    int visited = 0;
    bool wrapped = false;
    sqlite3_stmt *stmt = self->stmt [ST_ROOM_NEXT];
    while (deleted < budget && visited < budget) {
        if (sqlite3_bind_text (stmt, 1, self->retain_cursor, -1, SQLITE_STATIC)) {
            s_log_error (self, "retain: bind");
            return -1;
        }
        int rc = sqlite3_step (stmt);
        char room [ZCHAT_MAX_ROOM + 1];
        if (rc == SQLITE_ROW && s_column_copy (stmt, 0, room, ZCHAT_MAX_ROOM))
            rc = SQLITE_CORRUPT;
        else
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
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
        int64_t last = s_room_seq (self, ST_LAST_MSG, room, room_len);
        int64_t first = last > 0? s_room_seq (self, ST_FIRST_SEQ, room, room_len): 0;
        if (last < 0 || first < 0)
            return -1;
        int64_t cut = last - max_messages;      //  delete seq <= cut
        if (last > 0 && cut >= first) {
            int64_t end = cut;
            if (end - first >= budget - deleted)
                end = first + (budget - deleted) - 1;
            int count = s_delete_range (self, room, first, end);
            if (count < 0)
                return -1;
            deleted += count;
            if (end < cut)
                break;              //  not done: come back to this room
        }
        memcpy (self->retain_cursor, room, room_len + 1);
    }
    return deleted;
}


//  --------------------------------------------------------------------------
//  Delete what is over the retention limits, at most batch rows per call,
//  in one transaction. Does nothing (returns 0) while a group is open: the
//  broker calls it between groups. Returns rows deleted, or -1.

int
zchat_store_retain (zchat_store_t *self, uint64_t max_messages,
                    uint64_t max_age_ms, uint64_t now_ms, size_t batch)
{
    if (!self)
        return -1;
    if (self->in_group || batch == 0 || (max_messages == 0 && max_age_ms == 0))
        return 0;
    int budget = batch > INT_MAX? INT_MAX: (int) batch;
    if (s_run (self, ST_BEGIN))
        return -1;
    int deleted = 0;
    if (max_age_ms && now_ms > max_age_ms) {
        uint64_t cutoff = now_ms - max_age_ms;
        int count = s_retain_age (self, cutoff > (uint64_t) INT64_MAX?
                                        INT64_MAX: (int64_t) cutoff, budget);
        if (count < 0)
            goto failed;
        deleted += count;
    }
    if (max_messages && deleted < budget) {
        int count = s_retain_count (self, max_messages > (uint64_t) INT64_MAX?
                                          INT64_MAX: (int64_t) max_messages,
                                    budget - deleted);
        if (count < 0)
            goto failed;
        deleted += count;
    }
    if (s_run (self, ST_COMMIT))
        goto failed;
    return deleted;

failed:
    if (!sqlite3_get_autocommit (self->db))
        s_run (self, ST_ROLLBACK);
    return -1;
}


//  --------------------------------------------------------------------------
//  Topic of a room: 0 with topic, set_by and *ts filled, or -1 if the room
//  has no topic (or on error).

int
zchat_store_topic_get (zchat_store_t *self, const char *room,
                       char *topic, char *set_by, uint64_t *ts)
{
    size_t room_len = s_name_len (room, ZCHAT_MAX_ROOM);
    if (!self || !room_len || !topic || !set_by || !ts)
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
            result = 0;
        }
    }
    else
    if (rc != SQLITE_DONE)
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
//  The Z85 key that owns nick: 0 with key filled (capacity 41), or -1.

int
zchat_store_nick_owner (zchat_store_t *self, const char *nick, char *key)
{
    size_t nick_len = s_name_len (nick, ZCHAT_MAX_NICK);
    if (!self || !nick_len || !key)
        return -1;
    sqlite3_stmt *stmt = self->stmt [ST_NICK_OWNER];
    if (sqlite3_bind_text (stmt, 1, nick, (int) nick_len, SQLITE_STATIC)) {
        s_log_error (self, "nick owner: bind");
        return -1;
    }
    int result = -1;
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        result = s_column_copy (stmt, 0, key, STORE_MAX_KEY);
    else
    if (rc != SQLITE_DONE)
        s_log_error (self, "nick owner");
    sqlite3_reset (stmt);
    return result;
}


//  --------------------------------------------------------------------------
//  Bind an unowned nick to key: 0, also when key already owns it; -1 if
//  another key owns it (or on error). Joins an open group like topic_set.

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
    if (zchat_store_nick_owner (self, nick, owner))
        return -1;
    return streq (owner, key)? 0: -1;
}


//  --------------------------------------------------------------------------
//  Unbind nick from its key. Returns 0 (also if it was unowned) or -1.

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


//  --------------------------------------------------------------------------
//  Self test

//  What a history call handed to its callback.
typedef struct {
    int count;
    int stop_after;                 //  0 = never stop
    uint64_t seq [64];
    uint64_t ts [64];
    char nick [64][ZCHAT_MAX_NICK + 1];
    uint8_t kind [64];
    char text [64][128];
    size_t text_size [64];
} s_seen_t;

static int
s_collect (void *arg, uint64_t seq, uint64_t ts, const char *nick, uint8_t kind,
           const char *text, size_t text_size)
{
    s_seen_t *seen = (s_seen_t *) arg;
    assert (seen->count < 64);
    assert (text_size <= sizeof (seen->text [0]));
    int i = seen->count++;
    seen->seq [i] = seq;
    seen->ts [i] = ts;
    snprintf (seen->nick [i], sizeof (seen->nick [i]), "%s", nick);
    seen->kind [i] = kind;
    memcpy (seen->text [i], text, text_size);
    seen->text_size [i] = text_size;
    return seen->stop_after && seen->count >= seen->stop_after;
}

//  History of room as the seqs it returned, checked against first..last.
static void
s_assert_history (zchat_store_t *store, const char *room, uint64_t from, uint64_t to,
                  size_t limit, uint64_t expect_first, uint64_t expect_last)
{
    s_seen_t seen = { 0 };
    int count = zchat_store_history (store, room, from, to, limit, s_collect, &seen);
    int expect = expect_last? (int) (expect_last - expect_first + 1): 0;
    assert (count == expect);
    assert (seen.count == expect);
    for (int i = 0; i < count; i++)
        assert (seen.seq [i] == expect_first + (uint64_t) i);
}

static int
s_remove_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st; (void) flag; (void) ftw;
    return remove (path);
}

//  Append count messages to room, seq after its last, ts from ts_base by 1.
static void
s_fill (zchat_store_t *store, const char *room, int count, uint64_t ts_base,
        uint64_t id_base)
{
    uint64_t seq = zchat_store_last_seq (store, room);
    assert (zchat_store_begin (store) == 0);
    for (int i = 0; i < count; i++) {
        char text [32];
        int len = snprintf (text, sizeof (text), "%s %d", room, i);
        assert (zchat_store_append (store, room, seq + 1 + (uint64_t) i,
                                    ts_base + (uint64_t) i, "filler", ZCHAT_KIND_TEXT,
                                    text, (size_t) len, id_base + (uint64_t) i,
                                    NULL, NULL, NULL) == 0);
    }
    assert (zchat_store_commit (store) == 0);
}

void
zchat_store_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_store: ");

    char base [] = "/tmp/zchat_store_test.XXXXXX";
    assert (mkdtemp (base));
    //  Two levels that do not exist yet: mkdir -p.
    char *dir = zsys_sprintf ("%s/data/zchat", base);
    assert (dir);
    char error [256];
    char expect_error [512];

    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    struct stat st;
    assert (stat (dir, &st) == 0 && S_ISDIR (st.st_mode));
    assert ((st.st_mode & 0777) == 0700);

    //  The directory is ours: a second store in this process is refused
    //  (flock on a second open file description conflicts) ...
    snprintf (expect_error, sizeof (expect_error),
              "data directory %s is in use by another zchat-broker (pid %ld)",
              dir, (long) getpid ());
    zchat_store_t *second = zchat_store_new (dir, false, error, sizeof (error));
    assert (second == NULL);
    assert (streq (error, expect_error));
    //  ... and so is another process.
    fflush (NULL);
    pid_t child = fork ();
    assert (child >= 0);
    if (child == 0) {
        char child_error [256];
        zchat_store_t *other = zchat_store_new (dir, false, child_error, sizeof (child_error));
        _exit (other == NULL && streq (child_error, expect_error)? 0: 1);
    }
    int status = 0;
    assert (waitpid (child, &status, 0) == child);
    assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);

    //  Tuning is what we asked for.
    sqlite3_stmt *pragma = NULL;
    assert (sqlite3_prepare_v2 (store->db, "PRAGMA synchronous", -1, &pragma, NULL) == SQLITE_OK);
    assert (sqlite3_step (pragma) == SQLITE_ROW);
    assert (sqlite3_column_int (pragma, 0) == 1);       //  NORMAL
    sqlite3_finalize (pragma);
    assert (sqlite3_prepare_v2 (store->db, "PRAGMA journal_mode", -1, &pragma, NULL) == SQLITE_OK);
    assert (sqlite3_step (pragma) == SQLITE_ROW);
    assert (streq ((const char *) sqlite3_column_text (pragma, 0), "wal"));
    sqlite3_finalize (pragma);

    //  No statement may scan the messages table: every one goes through an
    //  index, so no call's work grows with the size of the history.
    for (int i = 0; i < ST_COUNT; i++) {
        char *sql = zsys_sprintf ("EXPLAIN QUERY PLAN %s", s_sql [i]);
        assert (sql);
        sqlite3_stmt *plan = NULL;
        assert (sqlite3_prepare_v2 (store->db, sql, -1, &plan, NULL) == SQLITE_OK);
        while (sqlite3_step (plan) == SQLITE_ROW) {
            const char *detail = (const char *) sqlite3_column_text (plan, 3);
            if (verbose)
                printf ("\n   %s: %s", s_sql [i], detail);
            assert (strncmp (detail, "SCAN", 4) != 0 || streq (detail, "SCAN CONSTANT ROW"));
        }
        sqlite3_finalize (plan);
        zstr_free (&sql);
    }

    //  Empty store.
    assert (zchat_store_last_seq (store, "lobby") == 0);
    assert (zchat_store_first_seq (store, "lobby") == 0);
    s_assert_history (store, "lobby", 1, 0, 10, 0, 0);

    //  Misuse is refused, not asserted.
    char orig_room [ZCHAT_MAX_ROOM + 1];
    uint64_t orig_seq = 0, orig_ts = 0;
    assert (zchat_store_append (store, "lobby", 1, 1, "alice", 0, "x", 1, 1,
                                orig_room, &orig_seq, &orig_ts) == -1);
    assert (zchat_store_commit (store) == -1);
    zchat_store_rollback (store);
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_begin (store) == -1);
    assert (zchat_store_append (store, "", 1, 1, "alice", 0, "x", 1, 1, NULL, NULL, NULL) == -1);
    assert (zchat_store_append (store, "a-room-name-that-is-33-bytes-long", 1, 1, "alice",
                                0, "x", 1, 1, NULL, NULL, NULL) == -1);
    assert (zchat_store_append (store, "lobby", 0, 1, "alice", 0, "x", 1, 1, NULL, NULL, NULL) == -1);
    assert (zchat_store_append (store, "lobby", 1, 1, NULL, 0, "x", 1, 1, NULL, NULL, NULL) == -1);
    assert (zchat_store_append (store, "lobby", 1, 1, "alice", 0, NULL, 1, 1, NULL, NULL, NULL) == -1);
    zchat_store_rollback (store);

    //  A group: ten messages in lobby, three in ops.
    const uint64_t T0 = 1700000000000ull;
    assert (zchat_store_begin (store) == 0);
    for (uint64_t seq = 1; seq <= 10; seq++) {
        char text [32];
        int len = snprintf (text, sizeof (text), "hello %" PRIu64, seq);
        assert (zchat_store_append (store, "lobby", seq, T0 + seq * 1000,
                                    seq % 2? "alice": "bob", ZCHAT_KIND_TEXT,
                                    text, (size_t) len, 100 + seq,
                                    orig_room, &orig_seq, &orig_ts) == 0);
    }
    for (uint64_t seq = 1; seq <= 3; seq++)
        assert (zchat_store_append (store, "ops", seq, T0 + seq, "carol", ZCHAT_KIND_ACTION,
                                    "waves", 5, seq, NULL, NULL, NULL) == 0);
    //  Visible inside the group already.
    assert (zchat_store_last_seq (store, "lobby") == 10);
    //  A retry inside the same uncommitted group: the original comes back.
    assert (zchat_store_append (store, "lobby", 11, T0 + 99999, "alice", 0, "again", 5, 101,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (streq (orig_room, "lobby") && orig_seq == 1 && orig_ts == T0 + 1000);
    //  The same id from another sender is not a retry ...
    assert (zchat_store_append (store, "ops", 4, T0 + 4, "dave", 0, "hi", 2, 101,
                                NULL, NULL, NULL) == 0);
    //  ... and a taken (room, seq) is an error, never mistaken for a retry.
    assert (zchat_store_append (store, "lobby", 5, T0, "erin", 0, "clash", 5, 555,
                                orig_room, &orig_seq, &orig_ts) == -1);
    //  id 0 carries no idempotency: two of them are two messages.
    assert (zchat_store_append (store, "ops", 5, T0 + 5, "dave", 0, "a", 1, 0,
                                NULL, NULL, NULL) == 0);
    assert (zchat_store_append (store, "ops", 6, T0 + 6, "dave", 0, "b", 1, 0,
                                NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);

    assert (zchat_store_last_seq (store, "lobby") == 10);
    assert (zchat_store_first_seq (store, "lobby") == 1);
    assert (zchat_store_last_seq (store, "ops") == 6);
    assert (zchat_store_last_seq (store, "nowhere") == 0);

    //  History ranges.
    s_assert_history (store, "lobby", 3, 6, 100, 3, 6);
    s_assert_history (store, "lobby", 8, 0, 100, 8, 10);     //  to 0 = newest
    s_assert_history (store, "lobby", 1, 0, 2, 1, 2);        //  limit
    s_assert_history (store, "lobby", 0, 0, 3, 8, 10);       //  the last 3
    s_assert_history (store, "lobby", 0, 5, 3, 3, 5);        //  the last 3 up to 5
    s_assert_history (store, "lobby", 0, 0, 100, 1, 10);     //  fewer than limit
    s_assert_history (store, "lobby", 11, 0, 100, 0, 0);     //  past the end
    s_assert_history (store, "lobby", 1, 0, 0, 0, 0);        //  limit 0
    s_seen_t seen = { 0 };
    assert (zchat_store_history (store, "lobby", 2, 2, 10, s_collect, &seen) == 1);
    assert (seen.ts [0] == T0 + 2000 && streq (seen.nick [0], "bob"));
    assert (seen.kind [0] == ZCHAT_KIND_TEXT);
    assert (seen.text_size [0] == 7 && memcmp (seen.text [0], "hello 2", 7) == 0);
    //  The callback stops the stream.
    memset (&seen, 0, sizeof (seen));
    seen.stop_after = 2;
    assert (zchat_store_history (store, "lobby", 1, 0, 100, s_collect, &seen) == 2);
    memset (&seen, 0, sizeof (seen));
    assert (zchat_store_history (store, "ops", 1, 3, 10, s_collect, &seen) == 3);
    assert (seen.kind [2] == ZCHAT_KIND_ACTION && streq (seen.nick [2], "carol"));

    //  Texts are bytes: newlines, UTF-8, an empty text survive exactly.
    const char odd [] = "line one\nline two\r\n\tcaf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 end";
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "lobby", 11, T0 + 11000, "alice", 0, odd,
                                sizeof (odd) - 1, 111, NULL, NULL, NULL) == 0);
    assert (zchat_store_append (store, "lobby", 12, T0 + 12000, "alice", 0, NULL, 0, 112,
                                NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    memset (&seen, 0, sizeof (seen));
    assert (zchat_store_history (store, "lobby", 11, 12, 10, s_collect, &seen) == 2);
    assert (seen.text_size [0] == sizeof (odd) - 1);
    assert (memcmp (seen.text [0], odd, sizeof (odd) - 1) == 0);
    assert (seen.text_size [1] == 0);

    //  Rollback discards the group.
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "lobby", 13, T0 + 13000, "bob", 0, "lost", 4, 113,
                                NULL, NULL, NULL) == 0);
    assert (zchat_store_last_seq (store, "lobby") == 13);
    zchat_store_rollback (store);
    assert (zchat_store_last_seq (store, "lobby") == 12);
    s_assert_history (store, "lobby", 13, 0, 10, 0, 0);
    //  The rolled-back id is free again.
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "lobby", 13, T0 + 13000, "bob", 0, "kept", 4, 113,
                                NULL, NULL, NULL) == 0);
    //  A retry of a committed message, in a later group.
    assert (zchat_store_append (store, "lobby", 14, T0 + 14000, "bob", 0, "x", 1, 104,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (streq (orig_room, "lobby") && orig_seq == 4 && orig_ts == T0 + 4000);
    assert (zchat_store_commit (store) == 0);

    //  Topics and nick ownership.
    char topic [ZCHAT_MAX_TOPIC + 1];
    char set_by [ZCHAT_MAX_NICK + 1];
    uint64_t topic_ts = 0;
    assert (zchat_store_topic_get (store, "lobby", topic, set_by, &topic_ts) == -1);
    assert (zchat_store_topic_set (store, "lobby", "Welcome \xe2\x98\x95", "alice", T0) == 0);
    assert (zchat_store_topic_set (store, "quiet", "nobody here", "bob", T0 + 1) == 0);
    char long_topic [ZCHAT_MAX_TOPIC + 2];
    memset (long_topic, 't', sizeof (long_topic) - 1);
    long_topic [sizeof (long_topic) - 1] = '\0';
    assert (zchat_store_topic_set (store, "lobby", long_topic, "alice", T0) == -1);
    long_topic [ZCHAT_MAX_TOPIC] = '\0';
    assert (zchat_store_topic_set (store, "long", long_topic, "alice", T0) == 0);
    //  A topic alone does not make sequence numbers.
    assert (zchat_store_last_seq (store, "quiet") == 0);

    const char *key_a = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    const char *key_b = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    char key [STORE_MAX_KEY + 1];
    assert (zchat_store_nick_owner (store, "alice", key) == -1);
    assert (zchat_store_nick_claim (store, "alice", key_a) == 0);
    assert (zchat_store_nick_claim (store, "alice", key_a) == 0);      //  again: fine
    assert (zchat_store_nick_claim (store, "alice", key_b) == -1);     //  taken
    assert (zchat_store_nick_claim (store, "bob", key_b) == 0);
    assert (zchat_store_nick_claim (store, "carol", key_a) == 0);
    assert (zchat_store_nick_release (store, "carol") == 0);
    assert (zchat_store_nick_owner (store, "carol", key) == -1);
    assert (zchat_store_nick_release (store, "carol") == 0);           //  unowned: fine

    //  Destroy (with a group open: rolled back), then reopen.
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "lobby", 14, T0 + 14000, "bob", 0, "gone", 4, 114,
                                NULL, NULL, NULL) == 0);
    zchat_store_destroy (&store);
    assert (store == NULL);
    zchat_store_destroy (&store);                   //  safe on NULL

    store = zchat_store_new (dir, true, error, sizeof (error));
    assert (store);
    assert (sqlite3_prepare_v2 (store->db, "PRAGMA synchronous", -1, &pragma, NULL) == SQLITE_OK);
    assert (sqlite3_step (pragma) == SQLITE_ROW);
    assert (sqlite3_column_int (pragma, 0) == 2);       //  FULL with fsync
    sqlite3_finalize (pragma);
    assert (zchat_store_last_seq (store, "lobby") == 13);
    assert (zchat_store_last_seq (store, "ops") == 6);
    assert (zchat_store_first_seq (store, "lobby") == 1);
    //  Retries are still recognised after a restart.
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "lobby", 14, T0 + 14000, "alice", 0, "x", 1, 103,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (streq (orig_room, "lobby") && orig_seq == 3 && orig_ts == T0 + 3000);
    assert (zchat_store_append (store, "lobby", 14, T0 + 14000, "bob", 0, "new", 3, 114,
                                NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    memset (&seen, 0, sizeof (seen));
    assert (zchat_store_history (store, "lobby", 11, 0, 10, s_collect, &seen) == 4);
    assert (memcmp (seen.text [0], odd, sizeof (odd) - 1) == 0);
    assert (seen.text_size [3] == 3 && memcmp (seen.text [3], "new", 3) == 0);
    assert (zchat_store_topic_get (store, "lobby", topic, set_by, &topic_ts) == 0);
    assert (streq (topic, "Welcome \xe2\x98\x95") && streq (set_by, "alice") && topic_ts == T0);
    assert (zchat_store_topic_get (store, "long", topic, set_by, &topic_ts) == 0);
    assert (strlen (topic) == ZCHAT_MAX_TOPIC);
    assert (zchat_store_nick_owner (store, "alice", key) == 0 && streq (key, key_a));
    assert (zchat_store_nick_owner (store, "bob", key) == 0 && streq (key, key_b));
    assert (zchat_store_nick_owner (store, "carol", key) == -1);

    //  Retention by count: big has 100, keep 20, at most 30 rows a call.
    s_fill (store, "big", 100, T0, 1000);
    s_fill (store, "small", 5, T0, 2000);
    //  Not while a group is open.
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_retain (store, 20, 0, T0, 30) == 0);
    zchat_store_rollback (store);
    assert (zchat_store_first_seq (store, "big") == 1);
    assert (zchat_store_retain (store, 20, 0, T0, 30) == 30);
    assert (zchat_store_first_seq (store, "big") == 31);
    assert (zchat_store_retain (store, 20, 0, T0, 30) == 30);
    assert (zchat_store_first_seq (store, "big") == 61);
    assert (zchat_store_retain (store, 20, 0, T0, 30) == 20);
    assert (zchat_store_first_seq (store, "big") == 81);
    assert (zchat_store_retain (store, 20, 0, T0, 30) == 0);
    assert (zchat_store_last_seq (store, "big") == 100);
    s_assert_history (store, "big", 1, 0, 100, 81, 100);
    s_assert_history (store, "big", 0, 0, 5, 96, 100);
    assert (zchat_store_first_seq (store, "small") == 1);
    assert (zchat_store_first_seq (store, "lobby") == 1);
    assert (zchat_store_last_seq (store, "small") == 5);

    //  Retention by age: aged has ts T0+1000..T0+1049 (seq 1..50). With a
    //  10 s limit at T0+11024, ts < T0+1024 is expired: seq 1..24.
    s_fill (store, "aged", 50, T0 + 1000, 3000);
    //  Every older row elsewhere (lobby, ops, big, small: ts < T0+1024)
    //  goes too, oldest first, 7 at a time.
    int total = 0;
    int calls = 0;
    int count;
    while ((count = zchat_store_retain (store, 0, 10000, T0 + 11024, 7)) > 0) {
        assert (count <= 7);
        total += count;
        calls++;
        assert (calls < 100);
    }
    assert (count == 0);
    assert (zchat_store_first_seq (store, "aged") == 25);
    assert (zchat_store_last_seq (store, "aged") == 50);
    s_assert_history (store, "aged", 1, 0, 100, 25, 50);
    //  lobby's ts are T0+1000 * seq: only seq 1 (T0+1000) is older.
    assert (zchat_store_first_seq (store, "lobby") == 2);
    //  ops (T0+1..6), small (T0..T0+4) and big (T0+80..99) are all older.
    assert (zchat_store_first_seq (store, "ops") == 0);
    assert (zchat_store_first_seq (store, "small") == 0);
    assert (zchat_store_first_seq (store, "big") == 0);
    assert (total == 24 + 1 + 6 + 5 + 20);

    //  A clock that went back: skew's seq 20 is stamped older than 1..19.
    //  Its expiry takes the whole prefix 1..20 (never leaving a hole), in
    //  batches that still respect the bound.
    assert (zchat_store_begin (store) == 0);
    for (uint64_t seq = 1; seq <= 20; seq++)
        assert (zchat_store_append (store, "skew", seq, seq < 20? T0 + 50000: T0 + 500,
                                    "filler", 0, "x", 1, 8000 + seq, NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    assert (zchat_store_retain (store, 0, 10000, T0 + 11024, 7) == 7);
    assert (zchat_store_first_seq (store, "skew") == 8);
    assert (zchat_store_retain (store, 0, 10000, T0 + 11024, 7) == 7);
    assert (zchat_store_retain (store, 0, 10000, T0 + 11024, 7) == 6);
    assert (zchat_store_retain (store, 0, 10000, T0 + 11024, 7) == 0);
    assert (zchat_store_first_seq (store, "skew") == 0);
    assert (zchat_store_last_seq (store, "skew") == 20);

    //  Both rules together, then everything expires: numbering goes on.
    //  Keep 10: aged loses 25..40, lobby (2..14) loses 2..4.
    assert (zchat_store_retain (store, 10, 0, T0, 1000) == 16 + 3);
    assert (zchat_store_first_seq (store, "aged") == 41);
    assert (zchat_store_first_seq (store, "lobby") == 5);
    while ((count = zchat_store_retain (store, 5, 1, UINT64_MAX / 2, 4)) > 0)
        assert (count <= 4);
    assert (count == 0);
    const char *rooms [] = { "lobby", "ops", "big", "small", "aged" };
    const uint64_t lasts [] = { 14, 6, 100, 5, 50 };
    for (size_t i = 0; i < 5; i++) {
        assert (zchat_store_first_seq (store, rooms [i]) == 0);
        assert (zchat_store_last_seq (store, rooms [i]) == lasts [i]);
        s_assert_history (store, rooms [i], 0, 0, 100, 0, 0);
    }
    //  Retries of deleted messages are new messages: the window is what
    //  is retained.
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "lobby", 15, T0 + 15000, "alice", 0, "x", 1, 103,
                                NULL, NULL, NULL) == 0);
    zchat_store_rollback (store);

    zchat_store_destroy (&store);
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    for (size_t i = 0; i < 5; i++)
        assert (zchat_store_last_seq (store, rooms [i]) == lasts [i]);
    s_fill (store, "big", 1, T0, 4000);
    assert (zchat_store_first_seq (store, "big") == 101);
    assert (zchat_store_last_seq (store, "big") == 101);
    assert (zchat_store_topic_get (store, "quiet", topic, set_by, &topic_ts) == 0);
    assert (streq (topic, "nobody here") && streq (set_by, "bob"));

    //  Many rooms in one group: the touched-rooms table grows.
    assert (zchat_store_begin (store) == 0);
    for (int i = 0; i < 300; i++) {
        char room [16];
        snprintf (room, sizeof (room), "r%d", i);
        for (uint64_t seq = 1; seq <= 2; seq++)
            assert (zchat_store_append (store, room, seq, T0, "filler", 0, "x", 1,
                                        5000 + (uint64_t) i * 2 + seq, NULL, NULL, NULL) == 0);
    }
    assert (zchat_store_commit (store) == 0);
    //  Count retention visits rooms round robin, a bounded number a call.
    total = 0;
    calls = 0;
    while ((count = zchat_store_retain (store, 1, 0, T0, 50)) > 0) {
        assert (count <= 50);
        total += count;
        assert (++calls < 100);
    }
    assert (total == 300 + 0);              //  r0..r299 lose seq 1; big keeps 101
    assert (zchat_store_first_seq (store, "r299") == 2);
    zchat_store_destroy (&store);

    //  kill -9 right after commit: what commit returned 0 for is there
    //  (synchronous=NORMAL), the uncommitted group is not, and the dead
    //  process's flock is gone so the directory opens again.
    fflush (NULL);
    child = fork ();
    assert (child >= 0);
    if (child == 0) {
        zchat_store_t *doomed = zchat_store_new (dir, false, error, sizeof (error));
        if (!doomed)
            _exit (1);
        s_fill (doomed, "crash", 10, T0, 9000);
        if (zchat_store_begin (doomed) == 0)
            zchat_store_append (doomed, "crash", 11, T0, "filler", 0, "x", 1, 9999,
                                NULL, NULL, NULL);
        raise (SIGKILL);
        _exit (1);
    }
    assert (waitpid (child, &status, 0) == child);
    assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (zchat_store_last_seq (store, "crash") == 10);
    s_assert_history (store, "crash", 1, 0, 100, 1, 10);
    zchat_store_destroy (&store);

    //  Clean everything up.
    assert (nftw (base, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    assert (stat (base, &st) == -1 && errno == ENOENT);
    zstr_free (&dir);

    if (verbose)
        printf ("OK\n");
}
