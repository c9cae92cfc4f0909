//  zchat_walvfs — a SQLite VFS that writes a transaction's WAL frames to
//  the file in one write instead of two per frame. See zchat_walvfs.h.

#include "zchat_walvfs.h"

#include <czmq.h>
#include <sqlite3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

//  The frame layout of SQLite's WAL format (sqlite.org/walformat.html): a
//  frame is a 24-byte header, then the page; bytes 4-7 of the header, the
//  database size after a commit, are nonzero only in a commit's last frame.
#define S_FRAME_HEADER      24
//  Gathered bytes of one file before they go out anyway, and the buffer's
//  first size (it doubles up to the limit).
#define S_BUFFER_LIMIT      (4 * 1024 * 1024)
#define S_BUFFER_FIRST      (64 * 1024)
//  The unix VFS writes at most 128 KiB - 1 in one call (it masks the size
//  with 0x1ffff, so a remainder of a multiple of 128 KiB would write
//  nothing and fail as "disk full"): gathered bytes go out in pieces of
//  this size.
#define S_WRITE_MAX         (64 * 1024)

typedef struct {
    sqlite3_file base;          //  our methods
    sqlite3_file *real;         //  the wrapped file, after this struct
    uint8_t *buffer;            //  gathered bytes, for file offset `offset`
    size_t size;
    size_t limit;               //  allocated
    sqlite3_int64 offset;
    sqlite3_int64 append_at;    //  where new frames go (-1: not known yet)
    bool page_next;             //  the last write was a frame header,
    bool commit_next;           //  ... of a commit's last frame,
    sqlite3_int64 header_end;   //  ... ending here
} s_file_t;

static sqlite3_vfs s_vfs;
static sqlite3_vfs *s_real;     //  the default VFS we wrap
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static int s_register_rc = SQLITE_ERROR;
static atomic_uint_fast64_t s_writes;
static atomic_uint_fast64_t s_in_place;    //  frames written in place (tests)

#define S_REAL_OFFSET   ((sizeof (s_file_t) + 15) & ~(size_t) 15)

//  --------------------------------------------------------------------------
//  Write what is gathered. On failure it is dropped: SQLite fails the
//  write or sync that needed it and rolls the transaction back.

static int
s_flush (s_file_t *self)
{
    int rc = SQLITE_OK;
    for (size_t done = 0; done < self->size && rc == SQLITE_OK; done += S_WRITE_MAX) {
        size_t amount = self->size - done < S_WRITE_MAX? self->size - done: S_WRITE_MAX;
        rc = self->real->pMethods->xWrite (self->real, self->buffer + done, (int) amount,
                                           self->offset + (sqlite3_int64) done);
        atomic_fetch_add_explicit (&s_writes, 1, memory_order_relaxed);
    }
    self->size = 0;
    return rc;
}

//  Room for size more bytes in the buffer, or -1 (then write through).
static int
s_reserve (s_file_t *self, size_t size)
{
    if (self->size + size <= self->limit)
        return 0;
    if (self->size + size > S_BUFFER_LIMIT)
        return -1;
    size_t limit = self->limit? self->limit: S_BUFFER_FIRST;
    while (limit < self->size + size)
        limit *= 2;
    uint8_t *buffer = (uint8_t *) realloc (self->buffer, limit);
    if (!buffer)
        return -1;
    self->buffer = buffer;
    self->limit = limit;
    return 0;
}

//  --------------------------------------------------------------------------
//  The WAL file's methods

static int
s_write (sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset)
{
    s_file_t *self = (s_file_t *) file;
    //  A frame is a header, then its page right after it
    bool page = self->page_next && offset == self->header_end;
    bool commit = page && self->commit_next;
    bool header = !page && amount == S_FRAME_HEADER;
    self->page_next = false;
    self->commit_next = false;
    //  Only frames appended where the last commit (or the WAL's header)
    //  ended gather: that is where a transaction's new frames go. What
    //  SQLite writes in place (a frame written again, checksums set right
    //  after the commit frame) goes out at once, in order, so nothing is
    //  ever left gathered after the commit frame.
    bool append = self->size > 0
                ? offset == self->offset + (sqlite3_int64) self->size
                : self->append_at < 0 || offset == self->append_at;
    bool gather = (header || page) && append;
    if ((header || page) && !append)
        atomic_fetch_add_explicit (&s_in_place, 1, memory_order_relaxed);
    int rc = SQLITE_OK;
    if (!gather || s_reserve (self, (size_t) amount)) {
        rc = s_flush (self);
        if (rc != SQLITE_OK)
            return rc;
        if (!gather || s_reserve (self, (size_t) amount)) {
            atomic_fetch_add_explicit (&s_writes, 1, memory_order_relaxed);
            rc = self->real->pMethods->xWrite (self->real, data, amount, offset);
            gather = false;
        }
    }
    if (gather) {
        if (self->size == 0)
            self->offset = offset;
        memcpy (self->buffer + self->size, data, (size_t) amount);
        self->size += (size_t) amount;
    }
    if (header) {
        const uint8_t *bytes = (const uint8_t *) data;
        self->page_next = true;
        self->commit_next = (bytes [4] | bytes [5] | bytes [6] | bytes [7]) != 0;
        self->header_end = offset + amount;
    }
    else
    if (commit) {
        //  The commit's last frame: out with the rest now, before SQLite
        //  tells other connections the frames are there
        self->append_at = offset + amount;
        if (gather)
            rc = s_flush (self);
    }
    else
    if (!page && offset == 0)
        self->append_at = amount;       //  a new WAL's header: frames follow
    return rc;
}

static int
s_read (sqlite3_file *file, void *data, int amount, sqlite3_int64 offset)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush (self);
    return rc != SQLITE_OK? rc: self->real->pMethods->xRead (self->real, data, amount, offset);
}

static int
s_truncate (sqlite3_file *file, sqlite3_int64 size)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush (self);
    self->append_at = -1;
    return rc != SQLITE_OK? rc: self->real->pMethods->xTruncate (self->real, size);
}

static int
s_sync (sqlite3_file *file, int flags)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush (self);
    return rc != SQLITE_OK? rc: self->real->pMethods->xSync (self->real, flags);
}

static int
s_file_size (sqlite3_file *file, sqlite3_int64 *size)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush (self);
    return rc != SQLITE_OK? rc: self->real->pMethods->xFileSize (self->real, size);
}

static int
s_lock (sqlite3_file *file, int level)
{
    s_file_t *self = (s_file_t *) file;
    return self->real->pMethods->xLock (self->real, level);
}

static int
s_unlock (sqlite3_file *file, int level)
{
    s_file_t *self = (s_file_t *) file;
    return self->real->pMethods->xUnlock (self->real, level);
}

static int
s_check_reserved (sqlite3_file *file, int *result)
{
    s_file_t *self = (s_file_t *) file;
    return self->real->pMethods->xCheckReservedLock (self->real, result);
}

static int
s_file_control (sqlite3_file *file, int op, void *arg)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush (self);
    return rc != SQLITE_OK? rc: self->real->pMethods->xFileControl (self->real, op, arg);
}

static int
s_sector_size (sqlite3_file *file)
{
    s_file_t *self = (s_file_t *) file;
    return self->real->pMethods->xSectorSize (self->real);
}

static int
s_device (sqlite3_file *file)
{
    s_file_t *self = (s_file_t *) file;
    return self->real->pMethods->xDeviceCharacteristics (self->real);
}

static int
s_close (sqlite3_file *file)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush (self);
    int close_rc = self->real->pMethods->xClose (self->real);
    free (self->buffer);
    self->buffer = NULL;
    return rc != SQLITE_OK? rc: close_rc;
}

//  Version 1: a WAL file has no shared memory or memory map of its own
static const sqlite3_io_methods s_methods = {
    1, s_close, s_read, s_write, s_truncate, s_sync, s_file_size, s_lock,
    s_unlock, s_check_reserved, s_file_control, s_sector_size, s_device,
    NULL, NULL, NULL, NULL, NULL, NULL
};

//  --------------------------------------------------------------------------
//  The VFS: WAL files get the methods above, everything else is the
//  default VFS's own file.

static int
s_open (sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    (void) vfs;
    if (!(flags & SQLITE_OPEN_WAL))
        return s_real->xOpen (s_real, name, file, flags, out_flags);
    s_file_t *self = (s_file_t *) file;
    memset (self, 0, sizeof (s_file_t));
    self->append_at = -1;
    self->real = (sqlite3_file *) ((uint8_t *) file + S_REAL_OFFSET);
    int rc = s_real->xOpen (s_real, name, self->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        //  SQLite closes a file only if its methods are set: ours are not
        if (self->real->pMethods)
            self->real->pMethods->xClose (self->real);
        return rc;
    }
    self->base.pMethods = &s_methods;
    return SQLITE_OK;
}

static int
s_delete (sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void) vfs;
    return s_real->xDelete (s_real, name, sync_dir);
}

static int
s_access (sqlite3_vfs *vfs, const char *name, int flags, int *result)
{
    (void) vfs;
    return s_real->xAccess (s_real, name, flags, result);
}

static int
s_full_pathname (sqlite3_vfs *vfs, const char *name, int size, char *out)
{
    (void) vfs;
    return s_real->xFullPathname (s_real, name, size, out);
}

static void *
s_dl_open (sqlite3_vfs *vfs, const char *name)
{
    (void) vfs;
    return s_real->xDlOpen (s_real, name);
}

static void
s_dl_error (sqlite3_vfs *vfs, int size, char *message)
{
    (void) vfs;
    s_real->xDlError (s_real, size, message);
}

static void
(*s_dl_sym (sqlite3_vfs *vfs, void *handle, const char *symbol)) (void)
{
    (void) vfs;
    return s_real->xDlSym (s_real, handle, symbol);
}

static void
s_dl_close (sqlite3_vfs *vfs, void *handle)
{
    (void) vfs;
    s_real->xDlClose (s_real, handle);
}

static int
s_randomness (sqlite3_vfs *vfs, int size, char *out)
{
    (void) vfs;
    return s_real->xRandomness (s_real, size, out);
}

static int
s_sleep (sqlite3_vfs *vfs, int microseconds)
{
    (void) vfs;
    return s_real->xSleep (s_real, microseconds);
}

static int
s_current_time (sqlite3_vfs *vfs, double *now)
{
    (void) vfs;
    return s_real->xCurrentTime (s_real, now);
}

static int
s_last_error (sqlite3_vfs *vfs, int size, char *message)
{
    (void) vfs;
    return s_real->xGetLastError (s_real, size, message);
}

static int
s_current_time_int64 (sqlite3_vfs *vfs, sqlite3_int64 *now)
{
    (void) vfs;
    return s_real->xCurrentTimeInt64 (s_real, now);
}

static void
s_register_once (void)
{
    s_real = sqlite3_vfs_find (NULL);
    //  Version 2 at least: the time in milliseconds is what SQLite asks of
    //  a VFS of version 2 or later (Debian's unix VFS is version 3; we
    //  leave out its system-call overrides, which only tests use)
    if (!s_real || s_real->iVersion < 2 || !s_real->xCurrentTimeInt64)
        return;
    s_vfs.iVersion = 2;
    s_vfs.szOsFile = (int) (S_REAL_OFFSET + (size_t) s_real->szOsFile);
    s_vfs.mxPathname = s_real->mxPathname;
    s_vfs.zName = ZCHAT_WALVFS_NAME;
    s_vfs.xOpen = s_open;
    s_vfs.xDelete = s_delete;
    s_vfs.xAccess = s_access;
    s_vfs.xFullPathname = s_full_pathname;
    s_vfs.xDlOpen = s_dl_open;
    s_vfs.xDlError = s_dl_error;
    s_vfs.xDlSym = s_dl_sym;
    s_vfs.xDlClose = s_dl_close;
    s_vfs.xRandomness = s_randomness;
    s_vfs.xSleep = s_sleep;
    s_vfs.xCurrentTime = s_current_time;
    s_vfs.xGetLastError = s_last_error;
    s_vfs.xCurrentTimeInt64 = s_current_time_int64;
    s_register_rc = sqlite3_vfs_register (&s_vfs, 0);
}

int
zchat_walvfs_register (void)
{
    if (pthread_once (&s_once, s_register_once) != 0)
        return SQLITE_ERROR;
    return s_register_rc;
}

uint64_t
zchat_walvfs_writes (void)
{
    return atomic_load_explicit (&s_writes, memory_order_relaxed);
}

//  --------------------------------------------------------------------------
//  Self test

static void
s_test_exec (sqlite3 *db, const char *sql)
{
    char *message = NULL;
    int rc = sqlite3_exec (db, sql, NULL, NULL, &message);
    if (rc != SQLITE_OK)
        fprintf (stderr, "walvfs test: %s: %s\n", sql, message? message: "?");
    sqlite3_free (message);
    assert (rc == SQLITE_OK);
}

static int64_t
s_test_int (sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    assert (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) == SQLITE_OK);
    int rc = sqlite3_step (stmt);
    if (rc != SQLITE_ROW)
        fprintf (stderr, "walvfs test: %s: %s\n", sql, sqlite3_errmsg (db));
    assert (rc == SQLITE_ROW);
    int64_t value = sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    return value;
}

//  Frames in the WAL file at path (4 KiB pages)
static int64_t
s_test_frames (const char *path)
{
    struct stat st;
    if (stat (path, &st) != 0 || st.st_size < 32)
        return 0;
    return (st.st_size - 32) / (S_FRAME_HEADER + 4096);
}

void
zchat_walvfs_test (bool verbose)
{
    assert (zchat_walvfs_register () == SQLITE_OK);
    assert (zchat_walvfs_register () == SQLITE_OK);
    assert (sqlite3_vfs_find (ZCHAT_WALVFS_NAME) == &s_vfs);
    assert (sqlite3_vfs_find (NULL) != &s_vfs);         //  not the default

    char dir [] = "/tmp/zchat_walvfs_test.XXXXXX";
    assert (mkdtemp (dir));
    char *path = zsys_sprintf ("%s/t.db", dir);
    char *wal = zsys_sprintf ("%s/t.db-wal", dir);
    assert (path && wal);
    sqlite3 *db = NULL, *other = NULL;
    assert (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             ZCHAT_WALVFS_NAME) == SQLITE_OK);
    s_test_exec (db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                     " PRAGMA wal_autocheckpoint = 0;"
                     " CREATE TABLE t (n INTEGER PRIMARY KEY, x BLOB);");
    //  The reader uses the default VFS: it sees only what reached the file
    assert (sqlite3_open_v2 (path, &other, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);

    //  A commit of a dozen pages is one write, two with the new WAL's
    //  32-byte header, not two a frame
    int64_t frames = s_test_frames (wal);
    uint64_t writes = zchat_walvfs_writes ();
    s_test_exec (db, "BEGIN; WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 40) INSERT INTO t (x) SELECT randomblob (1000)"
                     " FROM c; COMMIT;");
    int64_t written = s_test_frames (wal) - frames;
    uint64_t calls = zchat_walvfs_writes () - writes;
    assert (written >= 10);
    assert (calls <= 2);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 40);
    frames = s_test_frames (wal);
    writes = zchat_walvfs_writes ();
    s_test_exec (db, "INSERT INTO t (x) VALUES (randomblob (5000))");
    assert (zchat_walvfs_writes () - writes == 1);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 41);

    //  A transaction bigger than the page cache spills frames to the WAL
    //  and reads them back before its commit; a reader sees all or none
    s_test_exec (db, "PRAGMA cache_size = 10");
    s_test_exec (db, "BEGIN; WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 600) INSERT INTO t (x) SELECT randomblob (900)"
                     " FROM c;");
    assert (s_test_int (db, "SELECT count (*) FROM t WHERE length (x) = 900") == 600);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 41);
    s_test_exec (db, "UPDATE t SET x = zeroblob (800) WHERE n % 7 = 0; COMMIT;");
    assert (s_test_int (other, "SELECT count (*) FROM t") == 641);
    assert (s_test_int (other, "SELECT count (*) FROM t WHERE length (x) = 800") == 641 / 7);

    //  A process killed right after a COMMIT that spilled and wrote
    //  frames again in place (and so set checksums right after its
    //  commit frame): the next process to open the file, alone, recovers
    //  the WAL, checking every frame's checksum, and finds all of it, so
    //  nothing of it was left gathered. (A connection open meanwhile
    //  would trust the shared WAL index instead and prove nothing.)
    char *crash = zsys_sprintf ("%s/crash.db", dir);
    assert (crash);
    fflush (NULL);
    pid_t child = fork ();
    assert (child >= 0);
    if (child == 0) {
        sqlite3 *mine = NULL;
        uint64_t in_place = atomic_load (&s_in_place);
        if (sqlite3_open_v2 (crash, &mine, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             ZCHAT_WALVFS_NAME)
        ||  sqlite3_exec (mine, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                          " CREATE TABLE t (n INTEGER PRIMARY KEY, x BLOB);"
                          " PRAGMA cache_size = 10; BEGIN;"
                          " WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                          " FROM c WHERE i < 300) INSERT INTO t (x) SELECT randomblob (700)"
                          " FROM c; UPDATE t SET x = zeroblob (600) WHERE n % 3 = 0;"
                          " COMMIT;", NULL, NULL, NULL))
            _exit (2);
        _exit (atomic_load (&s_in_place) > in_place? 0: 3);     //  no close
    }
    int status = 0;
    assert (waitpid (child, &status, 0) == child);
    assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    sqlite3 *after = NULL;
    assert (sqlite3_open_v2 (crash, &after, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    assert (s_test_int (after, "SELECT count (*) FROM t") == 300);
    assert (s_test_int (after, "SELECT count (*) FROM t WHERE length (x) = 600") == 100);
    assert (sqlite3_close (after) == SQLITE_OK);
    const char *suffixes [] = { "", "-wal", "-shm" };
    for (size_t i = 0; i < 3; i++) {
        char *name = zsys_sprintf ("%s%s", crash, suffixes [i]);
        assert (name);
        unlink (name);
        zstr_free (&name);
    }
    zstr_free (&crash);

    //  After a checkpoint the WAL starts over (its header rewritten)
    s_test_exec (other, "PRAGMA wal_checkpoint (TRUNCATE)");
    s_test_exec (db, "INSERT INTO t (x) VALUES (randomblob (2000))");
    assert (s_test_int (other, "SELECT count (*) FROM t") == 642);
    sqlite3_stmt *check = NULL;
    assert (sqlite3_prepare_v2 (other, "PRAGMA integrity_check", -1, &check, NULL)
            == SQLITE_OK);
    assert (sqlite3_step (check) == SQLITE_ROW);
    assert (streq ((const char *) sqlite3_column_text (check, 0), "ok"));
    sqlite3_finalize (check);

    assert (sqlite3_close (other) == SQLITE_OK);
    assert (sqlite3_close (db) == SQLITE_OK);
    char *shm = zsys_sprintf ("%s/t.db-shm", dir);
    assert (shm);
    unlink (wal);
    unlink (shm);
    unlink (path);
    rmdir (dir);
    zstr_free (&shm);
    zstr_free (&wal);
    zstr_free (&path);
    if (verbose)
        printf (" * zchat_walvfs: a commit in one write, spills read back, restarts\n");
}
