//  zchat_walvfs — a SQLite VFS that writes a transaction's WAL frames to
//  the file in one write instead of two per frame, and a checkpoint's
//  pages in runs instead of one write each. See zchat_walvfs.h.

#include "zchat_walvfs.h"

#include <czmq.h>
#include <sqlite3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>

//  The layout of SQLite's WAL (sqlite.org/walformat.html): a 32-byte
//  header (the page size in bytes 8-11), then frames, each a 24-byte header
//  and a page; bytes 4-7 of a frame header, the database size after a
//  commit, are nonzero only in a commit's last frame.
#define S_WAL_HEADER        32
#define S_FRAME_HEADER      24
//  Gathered bytes of one file before they go out anyway, and the buffer's
//  first size (it doubles up to the limit).
#define S_BUFFER_LIMIT      (1024 * 1024)
#define S_BUFFER_FIRST      (64 * 1024)
//  The unix VFS writes at most 128 KiB - 1 in one call (it masks the size
//  with 0x1ffff, so a remainder of a multiple of 128 KiB would write
//  nothing and fail as "disk full"): gathered bytes go out in pieces of
//  this size at most.
#define S_WRITE_MAX         (124 * 1024)
//  SQLite's WAL write lock: the first lock of the shared memory
#define S_WAL_WRITE_LOCK    0

//  Bytes gathered for one file, to go out in as few writes as they can
typedef struct {
    uint8_t *buffer;            //  gathered bytes, for file offset `offset`
    size_t size;
    size_t limit;               //  allocated
    sqlite3_int64 offset;
} s_gather_t;

//  A WAL file
typedef struct {
    sqlite3_file base;          //  our methods
    sqlite3_file *real;         //  the wrapped file, after this struct
    s_gather_t gather;          //  a transaction's frames
    sqlite3_int64 append_at;    //  where new frames go (-1: not known yet)
    int page_size;              //  from the WAL's header (0: not known yet)
    bool page_next;             //  the last write was a frame header,
    bool commit_next;           //  ... of a commit's last frame,
    sqlite3_int64 header_end;   //  ... ending here
    struct _s_db_file_t *db;    //  the database file of its connection
} s_file_t;

//  A database file: the wrapped file, and the WAL file of the same
//  connection, whose gathered frames must not outlive the write lock
typedef struct _s_db_file_t {
    sqlite3_file base;
    sqlite3_file *real;
    s_file_t *wal;
    bool write_locked;          //  holds the WAL write lock (shared memory)
    bool copying;               //  a checkpoint copies pages into it
    bool copy_failed;           //  ... and a read or write of it failed
    s_gather_t gather;          //  the checkpoint's pages
} s_db_file_t;

static sqlite3_vfs s_vfs;
static sqlite3_vfs *s_real;     //  the default VFS we wrap
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static int s_register_rc = SQLITE_ERROR;
static atomic_uint_fast64_t s_writes;
static atomic_uint_fast64_t s_in_place;    //  frames written in place (tests)
static atomic_uint_fast64_t s_discarded;   //  gathered bytes a rollback dropped
static atomic_int s_fail_flush;             //  self test: fail the next flushes
static atomic_uint_fast64_t s_db_writes;    //  checkpoint writes to databases
static atomic_int s_fail_db_flush;          //  self test: ... fail the next ones,
static atomic_int s_fail_db_copied;         //  ... or those at the copy's end
static atomic_int s_fail_wal_read;          //  ... or the Nth read of a
                                            //  checkpoint's WAL from now
//  A checkpoint's last pages could not be written after SQLite took them
//  as copied (see s_db_copied): from then on every file of this VFS
//  refuses what could read or overwrite what the WAL alone still holds.
static atomic_bool s_broken;

#define S_WRAPPER_SIZE  (sizeof (s_file_t) > sizeof (s_db_file_t)? \
                         sizeof (s_file_t): sizeof (s_db_file_t))
#define S_REAL_OFFSET   ((S_WRAPPER_SIZE + 15) & ~(size_t) 15)

//  --------------------------------------------------------------------------
//  Write what is gathered into real, counting the writes in writes, and
//  keep it. fail is a self test's switch: while above zero, a write
//  fails as on a disk that filled up (and counts one down).

static int
s_gather_write (s_gather_t *self, sqlite3_file *real, atomic_uint_fast64_t *writes,
                atomic_int *fail)
{
    if (self->size > 0 && atomic_load (fail) > 0) {
        atomic_fetch_sub (fail, 1);
        return SQLITE_FULL;
    }
    int rc = SQLITE_OK;
    for (size_t done = 0; done < self->size && rc == SQLITE_OK; done += S_WRITE_MAX) {
        size_t amount = self->size - done < S_WRITE_MAX? self->size - done: S_WRITE_MAX;
        rc = real->pMethods->xWrite (real, self->buffer + done, (int) amount,
                                     self->offset + (sqlite3_int64) done);
        atomic_fetch_add_explicit (writes, 1, memory_order_relaxed);
    }
    return rc;
}

//  s_gather_write, then empty the buffer whatever became of it (the
//  caller says what a failure means)
static int
s_gather_flush (s_gather_t *self, sqlite3_file *real, atomic_uint_fast64_t *writes,
                atomic_int *fail)
{
    int rc = s_gather_write (self, real, writes, fail);
    self->size = 0;
    return rc;
}

//  Room for size more bytes in the buffer, or -1 (then write through).
static int
s_gather_reserve (s_gather_t *self, size_t size)
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

//  Gather amount bytes for offset, which must follow what is gathered
//  (or start it); -1 if there is no room (nothing gathered then).
static int
s_gather_add (s_gather_t *self, const void *data, int amount, sqlite3_int64 offset)
{
    if (s_gather_reserve (self, (size_t) amount))
        return -1;
    if (self->size == 0)
        self->offset = offset;
    memcpy (self->buffer + self->size, data, (size_t) amount);
    self->size += (size_t) amount;
    return 0;
}

static bool
s_gather_follows (s_gather_t *self, sqlite3_int64 offset)
{
    return self->size > 0 && offset == self->offset + (sqlite3_int64) self->size;
}

//  The WAL's frames: on failure SQLite fails the write or sync that
//  needed them and rolls the transaction back.
static int
s_flush (s_file_t *self)
{
    if (self->gather.size > 0 && atomic_load (&s_broken)) {
        self->gather.size = 0;          //  see s_broken: no WAL write goes out
        return SQLITE_IOERR_WRITE;
    }
    return s_gather_flush (&self->gather, self->real, &s_writes, &s_fail_flush);
}

//  s_flush for a call that is not a write: SQLite believes what is
//  gathered written, so a failure to write it must fail the transaction
//  whole (an I/O error), never just a statement (as "disk full" would).
static int
s_flush_before (s_file_t *self)
{
    int rc = s_flush (self);
    return rc == SQLITE_OK || (rc & 0xff) == SQLITE_IOERR? rc: SQLITE_IOERR_WRITE;
}

//  The page size a WAL header names, or 0 if it makes no sense.
static int
s_header_page_size (const uint8_t *header)
{
    uint32_t size = (uint32_t) header [8] << 24 | (uint32_t) header [9] << 16
                  | (uint32_t) header [10] << 8 | header [11];
    return size >= 512 && size <= 65536 && (size & (size - 1)) == 0? (int) size: 0;
}

//  The page size from the WAL's header, read from the file if this
//  object has not written one (a WAL that was there when it opened); 0
//  if there is none.
static int
s_page_size (s_file_t *self)
{
    if (self->page_size == 0 && self->gather.size == 0) {
        uint8_t header [S_WAL_HEADER];
        if (self->real->pMethods->xRead (self->real, header, S_WAL_HEADER, 0) == SQLITE_OK)
            self->page_size = s_header_page_size (header);
    }
    return self->page_size;
}

//  The write lock is being released: what is still gathered belongs to a
//  transaction that ended without its commit frame (rolled back after
//  spilling). Written later it would land on whatever another writer has
//  committed since at those offsets, so it is dropped.
static void
s_discard (s_file_t *self)
{
    if (self->gather.size > 0)
        atomic_fetch_add_explicit (&s_discarded, self->gather.size, memory_order_relaxed);
    self->gather.size = 0;
    self->page_next = false;
    self->commit_next = false;
}

//  --------------------------------------------------------------------------
//  The WAL file's methods

static int
s_write (sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset)
{
    s_file_t *self = (s_file_t *) file;
    //  The WAL's header names the page size. A frame is a header where
    //  the layout has one, then its page right after it: anything else
    //  (SQLite splits a padding frame at a sync point) is not gathered.
    if (offset == 0 && amount >= S_WAL_HEADER)
        self->page_size = s_header_page_size ((const uint8_t *) data);
    int page_size = offset == 0? 0: s_page_size (self);
    bool page = self->page_next && offset == self->header_end && amount == page_size;
    bool commit = page && self->commit_next;
    bool header = !page && amount == S_FRAME_HEADER && page_size > 0
               && offset >= S_WAL_HEADER
               && (offset - S_WAL_HEADER) % (S_FRAME_HEADER + page_size) == 0;
    self->page_next = false;
    self->commit_next = false;
    //  Only frames appended where the last commit (or the WAL's header)
    //  ended gather: that is where a transaction's new frames go. What
    //  SQLite writes in place (a frame written again, checksums set right
    //  after the commit frame) goes out at once, in order, so nothing is
    //  ever left gathered after the commit frame.
    bool append = self->gather.size > 0
                ? s_gather_follows (&self->gather, offset)
                : self->append_at < 0 || offset == self->append_at;
    bool gather = (header || page) && append;
    if ((header || page) && !append)
        atomic_fetch_add_explicit (&s_in_place, 1, memory_order_relaxed);
    if (atomic_load (&s_broken))
        return SQLITE_IOERR_WRITE;
    int rc = SQLITE_OK;
    if (!gather || s_gather_add (&self->gather, data, amount, offset)) {
        rc = s_flush (self);
        if (rc != SQLITE_OK)
            return rc;
        if (!gather || s_gather_add (&self->gather, data, amount, offset)) {
            atomic_fetch_add_explicit (&s_writes, 1, memory_order_relaxed);
            rc = self->real->pMethods->xWrite (self->real, data, amount, offset);
            gather = false;
        }
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
    int rc = s_flush_before (self);
    bool copying = self->db && self->db->copying;
    if (rc == SQLITE_OK && copying && atomic_load (&s_fail_wal_read) > 0
    &&  atomic_fetch_sub (&s_fail_wal_read, 1) == 1)
        rc = SQLITE_IOERR_READ;
    if (rc == SQLITE_OK)
        rc = self->real->pMethods->xRead (self->real, data, amount, offset);
    //  A checkpoint that cannot read its frames stops there, and SQLite
    //  takes nothing of it as copied (s_db_copied)
    if (rc != SQLITE_OK && copying)
        self->db->copy_failed = true;
    return rc;
}

static int
s_truncate (sqlite3_file *file, sqlite3_int64 size)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush_before (self);
    self->append_at = -1;
    if (rc == SQLITE_OK && atomic_load (&s_broken))
        rc = SQLITE_IOERR_TRUNCATE;
    return rc != SQLITE_OK? rc: self->real->pMethods->xTruncate (self->real, size);
}

static int
s_sync (sqlite3_file *file, int flags)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush_before (self);
    return rc != SQLITE_OK? rc: self->real->pMethods->xSync (self->real, flags);
}

static int
s_file_size (sqlite3_file *file, sqlite3_int64 *size)
{
    s_file_t *self = (s_file_t *) file;
    int rc = s_flush_before (self);
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
    int rc = s_flush_before (self);
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
    if (self->db && self->db->wal == self)
        self->db->wal = NULL;
    int rc = s_flush (self);
    int close_rc = self->real->pMethods->xClose (self->real);
    free (self->gather.buffer);
    self->gather.buffer = NULL;
    return rc != SQLITE_OK? rc: close_rc;
}

//  Version 1: a WAL file has no shared memory or memory map of its own
static const sqlite3_io_methods s_methods = {
    1, s_close, s_read, s_write, s_truncate, s_sync, s_file_size, s_lock,
    s_unlock, s_check_reserved, s_file_control, s_sector_size, s_device,
    NULL, NULL, NULL, NULL, NULL, NULL
};

//  --------------------------------------------------------------------------
//  A database file's methods: the wrapped file's; the write lock's
//  release drops what the WAL file still gathers (s_discard); and the
//  pages a checkpoint copies into it gather in runs of consecutive pages.
//
//  SQLite copies a checkpoint's pages one pwrite each, in page order: on
//  this Linux a new 4 KiB page of the file cost 3.5 times the kernel's
//  time of the same bytes written 64 KiB or more at a time (page-cache
//  folios of one page each, each with its own allocation, accounting and
//  block reservation), and the checkpointer was a quarter of the machine
//  at 1 KiB messages. Gathered runs are written when a page does not
//  follow the run, when the buffer is full, before anything that reads or
//  changes the file, and at the latest when SQLite says the copy is done
//  (SQLITE_FCNTL_CKPT_DONE), which is before it tells other connections
//  that the pages are in the database (nBackfill) or truncates and syncs
//  it. Only pages written between SQLITE_FCNTL_CKPT_START and _DONE
//  gather: a database in WAL mode is written by nothing else, and this
//  keeps any other use of a file (a rollback journal's, say) as it was.

#define S_DB(file)  (((s_db_file_t *) (file))->real)

//  Write the gathered pages. A failure fails the call that needed them
//  (as an I/O error: SQLite then gives the checkpoint up, its pages still
//  in the WAL).
static int
s_db_flush (s_db_file_t *self)
{
    int rc = s_gather_flush (&self->gather, self->real, &s_db_writes, &s_fail_db_flush);
    if (rc != SQLITE_OK && self->copying)
        self->copy_failed = true;       //  SQLite sees it and gives the copy up
    return rc == SQLITE_OK || (rc & 0xff) == SQLITE_IOERR? rc: SQLITE_IOERR_WRITE;
}

//  s_db_flush before a call that reads or changes the file
static int
s_db_ready (s_db_file_t *self)
{
    if (atomic_load (&s_broken))
        return SQLITE_IOERR;
    return self->gather.size > 0? s_db_flush (self): SQLITE_OK;
}

//  SQLite is done copying pages: write the rest now. SQLite ignores what
//  a file control returns here and marks the pages copied unless the
//  copy itself failed, and in a checkpoint of part of the WAL nothing
//  comes after; so the pages are tried once more, and if they still
//  cannot be written the VFS stops everything that could read those pages
//  from the database or overwrite them in the WAL (s_broken), until the
//  process ends. The WAL keeps every committed frame; the next process to
//  open the database finds them there and copies them again. A copy that
//  failed on its way (a read of the WAL, a write) is one SQLite gave up:
//  it marks nothing copied, so the rest need not be written at all.
static void
s_db_copied (s_db_file_t *self)
{
    self->copying = false;
    if (self->copy_failed) {
        atomic_fetch_add_explicit (&s_discarded, self->gather.size, memory_order_relaxed);
        self->gather.size = 0;
        return;
    }
    if (self->gather.size == 0)
        return;
    int rc = s_gather_write (&self->gather, self->real, &s_db_writes, &s_fail_db_copied);
    if (rc != SQLITE_OK)
        rc = s_gather_write (&self->gather, self->real, &s_db_writes, &s_fail_db_copied);
    if (rc != SQLITE_OK) {
        atomic_store (&s_broken, true);
        zsys_error ("zchat_walvfs: a checkpoint could not write %zu bytes at offset %lld"
                    " of the database (SQLite error %d): the store stops here; restart"
                    " the broker once the disk is sound (the WAL still holds them)",
                    self->gather.size, (long long) self->gather.offset, rc);
    }
    self->gather.size = 0;
}

static int
s_db_close (sqlite3_file *file)
{
    s_db_file_t *self = (s_db_file_t *) file;
    if (self->wal)
        self->wal->db = NULL;
    int rc = s_db_ready (self);
    int close_rc = self->real->pMethods->xClose (self->real);
    free (self->gather.buffer);
    self->gather.buffer = NULL;
    return rc != SQLITE_OK? rc: close_rc;
}

static int
s_db_read (sqlite3_file *file, void *data, int amount, sqlite3_int64 offset)
{
    int rc = s_db_ready ((s_db_file_t *) file);
    return rc != SQLITE_OK? rc: S_DB (file)->pMethods->xRead (S_DB (file), data, amount, offset);
}

static int
s_db_write (sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset)
{
    s_db_file_t *self = (s_db_file_t *) file;
    if (atomic_load (&s_broken))
        return SQLITE_IOERR_WRITE;
    int rc = SQLITE_OK;
    if (self->copying) {
        if (self->gather.size > 0 && !s_gather_follows (&self->gather, offset))
            rc = s_db_flush (self);
        if (rc == SQLITE_OK && s_gather_add (&self->gather, data, amount, offset) == 0)
            return SQLITE_OK;
        if (rc == SQLITE_OK)
            rc = s_db_flush (self);
        if (rc == SQLITE_OK && s_gather_add (&self->gather, data, amount, offset) == 0)
            return SQLITE_OK;
    }
    if (rc == SQLITE_OK)
        rc = s_db_ready (self);
    if (rc == SQLITE_OK)
        rc = self->real->pMethods->xWrite (self->real, data, amount, offset);
    if (rc != SQLITE_OK && self->copying)
        self->copy_failed = true;
    return rc;
}

static int
s_db_truncate (sqlite3_file *file, sqlite3_int64 size)
{
    int rc = s_db_ready ((s_db_file_t *) file);
    return rc != SQLITE_OK? rc: S_DB (file)->pMethods->xTruncate (S_DB (file), size);
}

static int
s_db_sync (sqlite3_file *file, int flags)
{
    int rc = s_db_ready ((s_db_file_t *) file);
    return rc != SQLITE_OK? rc: S_DB (file)->pMethods->xSync (S_DB (file), flags);
}

static int
s_db_file_size (sqlite3_file *file, sqlite3_int64 *size)
{
    int rc = s_db_ready ((s_db_file_t *) file);
    return rc != SQLITE_OK? rc: S_DB (file)->pMethods->xFileSize (S_DB (file), size);
}

static int
s_db_lock (sqlite3_file *file, int level)
{
    return S_DB (file)->pMethods->xLock (S_DB (file), level);
}

static int
s_db_unlock (sqlite3_file *file, int level)
{
    //  With locking_mode=EXCLUSIVE SQLite takes no WAL write lock in the
    //  shared memory, so a rolled-back transaction's frames are dropped
    //  here instead, once the connection lets go of the file (never while
    //  it holds the WAL write lock: its transaction still runs)
    s_db_file_t *self = (s_db_file_t *) file;
    if (self->wal && !self->write_locked && level < SQLITE_LOCK_EXCLUSIVE)
        s_discard (self->wal);
    return self->real->pMethods->xUnlock (self->real, level);
}

static int
s_db_check_reserved (sqlite3_file *file, int *result)
{
    return S_DB (file)->pMethods->xCheckReservedLock (S_DB (file), result);
}

static int
s_db_file_control (sqlite3_file *file, int op, void *arg)
{
    //  No flush for other file controls: pages gather only during a copy,
    //  none of them reads a page, and SQLite ignores what some return, so
    //  a failed flush here could lose pages it then takes as copied
    s_db_file_t *self = (s_db_file_t *) file;
    if (op == SQLITE_FCNTL_CKPT_DONE)
        s_db_copied (self);
    if (op == SQLITE_FCNTL_CKPT_START) {
        self->copying = true;
        self->copy_failed = false;
    }
    return self->real->pMethods->xFileControl (self->real, op, arg);
}

static int
s_db_sector_size (sqlite3_file *file)
{
    return S_DB (file)->pMethods->xSectorSize (S_DB (file));
}

static int
s_db_device (sqlite3_file *file)
{
    return S_DB (file)->pMethods->xDeviceCharacteristics (S_DB (file));
}

static int
s_db_shm_map (sqlite3_file *file, int region, int size, int extend, void volatile **map)
{
    return S_DB (file)->pMethods->xShmMap (S_DB (file), region, size, extend, map);
}

static int
s_db_shm_lock (sqlite3_file *file, int offset, int n, int flags)
{
    s_db_file_t *self = (s_db_file_t *) file;
    bool write_lock = (flags & SQLITE_SHM_EXCLUSIVE)
                   && offset <= S_WAL_WRITE_LOCK && S_WAL_WRITE_LOCK < offset + n;
    if (write_lock && (flags & SQLITE_SHM_UNLOCK)) {
        self->write_locked = false;
        if (self->wal)
            s_discard (self->wal);
    }
    int rc = self->real->pMethods->xShmLock (self->real, offset, n, flags);
    if (write_lock && (flags & SQLITE_SHM_LOCK) && rc == SQLITE_OK)
        self->write_locked = true;
    return rc;
}

static void
s_db_shm_barrier (sqlite3_file *file)
{
    S_DB (file)->pMethods->xShmBarrier (S_DB (file));
}

static int
s_db_shm_unmap (sqlite3_file *file, int delete_flag)
{
    return S_DB (file)->pMethods->xShmUnmap (S_DB (file), delete_flag);
}

static int
s_db_fetch (sqlite3_file *file, sqlite3_int64 offset, int amount, void **map)
{
    int rc = s_db_ready ((s_db_file_t *) file);
    if (rc != SQLITE_OK)
        return rc;
    return S_DB (file)->pMethods->xFetch (S_DB (file), offset, amount, map);
}

static int
s_db_unfetch (sqlite3_file *file, sqlite3_int64 offset, void *map)
{
    return S_DB (file)->pMethods->xUnfetch (S_DB (file), offset, map);
}

//  Version 3, as the unix VFS's (s_open_db refuses a file with less)
static const sqlite3_io_methods s_db_methods = {
    3, s_db_close, s_db_read, s_db_write, s_db_truncate, s_db_sync, s_db_file_size,
    s_db_lock, s_db_unlock, s_db_check_reserved, s_db_file_control, s_db_sector_size,
    s_db_device, s_db_shm_map, s_db_shm_lock, s_db_shm_barrier, s_db_shm_unmap,
    s_db_fetch, s_db_unfetch
};

//  --------------------------------------------------------------------------
//  The VFS: WAL and main database files get the methods above, everything
//  else is the default VFS's own file.

//  Open name with the default VFS into the memory after our own part of
//  file; returns the wrapped file, or NULL with *rc set. SQLite closes a
//  file only if its methods are set, and ours are not yet.
static sqlite3_file *
s_open_real (const char *name, sqlite3_file *file, int flags, int *out_flags, int *rc)
{
    sqlite3_file *real = (sqlite3_file *) ((uint8_t *) file + S_REAL_OFFSET);
    *rc = s_real->xOpen (s_real, name, real, flags, out_flags);
    if (*rc != SQLITE_OK) {
        if (real->pMethods)
            real->pMethods->xClose (real);
        return NULL;
    }
    return real;
}

static int
s_open_db (const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    s_db_file_t *self = (s_db_file_t *) file;
    memset (self, 0, sizeof (s_db_file_t));
    int rc;
    self->real = s_open_real (name, file, flags, out_flags, &rc);
    if (!self->real)
        return rc;
    if (!self->real->pMethods || self->real->pMethods->iVersion < 3) {
        if (self->real->pMethods)
            self->real->pMethods->xClose (self->real);
        return SQLITE_CANTOPEN;     //  no shared memory to watch
    }
    self->base.pMethods = &s_db_methods;
    return SQLITE_OK;
}

static int
s_open (sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    (void) vfs;
    if (flags & SQLITE_OPEN_MAIN_DB)
        return s_open_db (name, file, flags, out_flags);
    if (!(flags & SQLITE_OPEN_WAL))
        return s_real->xOpen (s_real, name, file, flags, out_flags);
    s_file_t *self = (s_file_t *) file;
    memset (self, 0, sizeof (s_file_t));
    self->append_at = -1;
    int rc;
    self->real = s_open_real (name, file, flags, out_flags, &rc);
    if (!self->real)
        return rc;
    self->base.pMethods = &s_methods;
    //  Its connection's database file, to drop what a rolled-back
    //  transaction gathered when the write lock goes
    sqlite3_file *db = sqlite3_database_file_object (name);
    if (db && db->pMethods == &s_db_methods) {
        self->db = (s_db_file_t *) db;
        self->db->wal = self;
    }
    return SQLITE_OK;
}

static int
s_delete (sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void) vfs;
    if (atomic_load (&s_broken))
        return SQLITE_IOERR_DELETE;
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

//  SQLite calls these without looking whether a VFS has them; a default
//  VFS built without extension loading may not: then nothing loads.
static void *
s_dl_open (sqlite3_vfs *vfs, const char *name)
{
    (void) vfs;
    return s_real->xDlOpen? s_real->xDlOpen (s_real, name): NULL;
}

static void
s_dl_error (sqlite3_vfs *vfs, int size, char *message)
{
    (void) vfs;
    if (s_real->xDlError)
        s_real->xDlError (s_real, size, message);
    else
    if (size > 0)
        snprintf (message, (size_t) size, "extensions cannot be loaded");
}

static void
(*s_dl_sym (sqlite3_vfs *vfs, void *handle, const char *symbol)) (void)
{
    (void) vfs;
    return s_real->xDlSym? s_real->xDlSym (s_real, handle, symbol): NULL;
}

static void
s_dl_close (sqlite3_vfs *vfs, void *handle)
{
    (void) vfs;
    if (s_real->xDlClose)
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
    return s_real->xGetLastError? s_real->xGetLastError (s_real, size, message): 0;
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
    int rc = sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL);
    assert (rc == SQLITE_OK);
    rc = sqlite3_step (stmt);
    if (rc != SQLITE_ROW)
        fprintf (stderr, "walvfs test: %s: %s\n", sql, sqlite3_errmsg (db));
    assert (rc == SQLITE_ROW);
    int64_t value = sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    return value;
}

static sqlite3 *
s_test_open (const char *path, const char *vfs)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                              | SQLITE_OPEN_URI, vfs);
    assert (rc == SQLITE_OK);
    return db;
}

static void
s_test_close (sqlite3 **db_p)
{
    int rc = sqlite3_close (*db_p);
    assert (rc == SQLITE_OK);
    *db_p = NULL;
}

static void
s_test_integrity (sqlite3 *db)
{
    sqlite3_stmt *check = NULL;
    int rc = sqlite3_prepare_v2 (db, "PRAGMA integrity_check", -1, &check, NULL);
    assert (rc == SQLITE_OK);
    rc = sqlite3_step (check);
    assert (rc == SQLITE_ROW);
    assert (streq ((const char *) sqlite3_column_text (check, 0), "ok"));
    sqlite3_finalize (check);
}

static void
s_test_unlink (const char *path)
{
    const char *suffixes [] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < sizeof (suffixes) / sizeof (suffixes [0]); i++) {
        char *name = zsys_sprintf ("%s%s", path, suffixes [i]);
        assert (name);
        unlink (name);
        zstr_free (&name);
    }
}

//  Run sql through this VFS in a child process that then dies without
//  closing anything (what kill -9 leaves); its exit status: 0, or 2 if
//  the SQL failed, 3 if in_place wanted frames written in place and there
//  were none. The caller then opens the file alone, so SQLite recovers the
//  WAL from the file, checking every frame's checksum.
static int
s_test_crash (const char *uri, const char *sql, bool in_place)
{
    fflush (NULL);
    pid_t child = fork ();
    assert (child >= 0);
    if (child == 0) {
        sqlite3 *mine = NULL;
        uint64_t before = atomic_load (&s_in_place);
        if (sqlite3_open_v2 (uri, &mine, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                             | SQLITE_OPEN_URI, ZCHAT_WALVFS_NAME)
        ||  sqlite3_exec (mine, sql, NULL, NULL, NULL))
            _exit (2);
        _exit (in_place && atomic_load (&s_in_place) == before? 3: 0);
    }
    int status = 0;
    pid_t waited = waitpid (child, &status, 0);
    assert (waited == child);
    assert (WIFEXITED (status));
    return WEXITSTATUS (status);
}

//  The WAL hook of the padding test: the file must be as long as the
//  frames the index names.
typedef struct {
    const char *wal;
    int page_size;
    int commits;
    int short_commits;
} s_short_t;

static int
s_test_wal_hook (void *arg, sqlite3 *db, const char *name, int frames)
{
    (void) db;
    (void) name;
    s_short_t *self = (s_short_t *) arg;
    struct stat st;
    int rc = stat (self->wal, &st);
    assert (rc == 0);
    self->commits++;
    if (st.st_size < S_WAL_HEADER + (off_t) frames * (S_FRAME_HEADER + self->page_size))
        self->short_commits++;
    return SQLITE_OK;
}

//  A checkpoint's pages: gathered into few writes, written before
//  SQLite calls them copied, tried again once, and if they still cannot
//  be written nothing may read or overwrite what only the WAL holds.
static void
s_test_checkpoint (const char *path)
{
    //  Before the database is in WAL mode its pages go out as SQLite
    //  writes them (a rollback journal's order matters)
    uint64_t db_writes = atomic_load (&s_db_writes);
    sqlite3 *db = s_test_open (path, ZCHAT_WALVFS_NAME);
    s_test_exec (db, "CREATE TABLE t (n INTEGER PRIMARY KEY, x BLOB);"
                     " INSERT INTO t (x) VALUES (randomblob (20000));");
    assert (atomic_load (&s_db_writes) == db_writes);
    s_test_exec (db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                     " PRAGMA wal_autocheckpoint = 0;");

    //  400 pages of new rows (1.6 MB) copied by one checkpoint: a
    //  handful of writes, not one per page; a reader of the database file
    //  alone (the WAL started over) sees every row
    s_test_exec (db, "WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 400) INSERT INTO t (x) SELECT randomblob (4000)"
                     " FROM c;");
    int64_t sum = s_test_int (db, "SELECT sum (unicode (hex (x))) FROM t");
    db_writes = atomic_load (&s_db_writes);
    int frames = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &frames, &copied);
    assert (rc == SQLITE_OK);
    assert (frames == 0);           //  TRUNCATE: the WAL is empty now
    uint64_t writes = atomic_load (&s_db_writes) - db_writes;
    assert (writes >= 400 * 4096 / S_WRITE_MAX && writes <= 400 * 4096 / S_WRITE_MAX + 8);
    sqlite3 *other = s_test_open (path, NULL);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 401);
    assert (s_test_int (other, "SELECT sum (unicode (hex (x))) FROM t") == sum);
    s_test_integrity (other);

    //  A run that cannot be written in the middle of the copy (row 1's
    //  page, then the new pages at the end) fails the checkpoint, which
    //  leaves it all to the next one
    s_test_exec (db, "UPDATE t SET x = randomblob (3000) WHERE n = 1;"
                     " WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 50) INSERT INTO t (x) SELECT randomblob (4000)"
                     " FROM c;");
    sum = s_test_int (db, "SELECT sum (unicode (hex (x))) FROM t");
    atomic_store (&s_fail_db_flush, 1);
    rc = sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &frames, &copied);
    assert ((rc & 0xff) == SQLITE_IOERR);
    assert (atomic_load (&s_fail_db_flush) == 0);
    assert (!atomic_load (&s_broken));
    rc = sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &frames, &copied);
    assert (rc == SQLITE_OK && frames == 0);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 451);
    assert (s_test_int (other, "SELECT sum (unicode (hex (x))) FROM t") == sum);

    //  One that fails once at the end of the copy is written again
    s_test_exec (db, "WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 50) INSERT INTO t (x) SELECT randomblob (4000)"
                     " FROM c;");
    atomic_store (&s_fail_db_copied, 1);
    rc = sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &frames, &copied);
    assert (rc == SQLITE_OK && frames == 0);
    assert (atomic_load (&s_fail_db_copied) == 0);
    assert (!atomic_load (&s_broken));
    assert (s_test_int (other, "SELECT count (*) FROM t") == 501);
    s_test_integrity (other);
    s_test_close (&other);

    //  A copy that SQLite gives up (a frame it cannot read) marks nothing
    //  copied: what it gathered is dropped, not written, and a failure to
    //  write it could not stop anything
    s_test_exec (db, "WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 40) INSERT INTO t (x) SELECT randomblob (4000)"
                     " FROM c;");
    atomic_store (&s_fail_wal_read, 20);
    atomic_store (&s_fail_db_copied, 2);
    rc = sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &frames, &copied);
    assert ((rc & 0xff) == SQLITE_IOERR);
    assert (atomic_load (&s_fail_wal_read) == 0);
    assert (atomic_load (&s_fail_db_copied) == 2);      //  nothing was written
    assert (!atomic_load (&s_broken));
    atomic_store (&s_fail_db_copied, 0);
    rc = sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &frames, &copied);
    assert (rc == SQLITE_OK && frames == 0);
    other = s_test_open (path, NULL);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 541);
    s_test_integrity (other);
    s_test_close (&other);

    //  A run that cannot be written at all, in a checkpoint of part of the
    //  WAL (a reader holds the rest): SQLite takes its pages as copied, so
    //  the VFS stops. Nothing reads the database or writes the WAL any
    //  more, not even the last connection's close (which would delete it).
    s_test_exec (db, "WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 60) INSERT INTO t (x) SELECT randomblob (4000)"
                     " FROM c;");
    other = s_test_open (path, ZCHAT_WALVFS_NAME);
    s_test_exec (other, "BEGIN; SELECT count (*) FROM t;");     //  holds a snapshot
    s_test_exec (db, "INSERT INTO t (x) VALUES (randomblob (4000))");
    sum = s_test_int (db, "SELECT sum (unicode (hex (x))) FROM t");
    atomic_store (&s_fail_db_copied, 2);
    rc = sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied);
    assert (atomic_load (&s_broken));
    assert (copied > 0 && copied < frames);      //  SQLite believes them copied
    rc = sqlite3_exec (db, "INSERT INTO t (x) VALUES (randomblob (10))", NULL, NULL, NULL);
    assert ((rc & 0xff) == SQLITE_IOERR);
    s_test_exec (other, "COMMIT");
    rc = sqlite3_exec (other, "PRAGMA cache_size = 0; SELECT sum (length (x)) FROM t",
                       NULL, NULL, NULL);
    assert ((rc & 0xff) == SQLITE_IOERR);
    sqlite3_close (other);
    sqlite3_close (db);
    char *wal = zsys_sprintf ("%s-wal", path);
    assert (wal);
    struct stat st;
    assert (stat (wal, &st) == 0 && st.st_size > 0);

    //  The next process (here: the same, its VFS sound again) finds every
    //  committed row in the WAL
    atomic_store (&s_broken, false);
    db = s_test_open (path, NULL);
    assert (s_test_int (db, "SELECT count (*) FROM t") == 602);
    assert (s_test_int (db, "SELECT sum (unicode (hex (x))) FROM t") == sum);
    s_test_integrity (db);
    s_test_close (&db);
    zstr_free (&wal);
    s_test_unlink (path);
}

void
zchat_walvfs_test (bool verbose)
{
    int rc = zchat_walvfs_register ();
    assert (rc == SQLITE_OK);
    rc = zchat_walvfs_register ();
    assert (rc == SQLITE_OK);
    assert (sqlite3_vfs_find (ZCHAT_WALVFS_NAME) == &s_vfs);
    assert (sqlite3_vfs_find (NULL) != &s_vfs);         //  not the default

    //  A default VFS without extension loading or a last-error method: the
    //  forwarders answer for it instead of calling through NULL
    sqlite3_vfs *real = s_real;
    sqlite3_vfs bare = *real;
    bare.xDlOpen = NULL;
    bare.xDlError = NULL;
    bare.xDlSym = NULL;
    bare.xDlClose = NULL;
    bare.xGetLastError = NULL;
    s_real = &bare;
    void *handle = s_vfs.xDlOpen (&s_vfs, "libnothing.so");
    assert (handle == NULL);
    char message [64] = "";
    s_vfs.xDlError (&s_vfs, sizeof (message), message);
    assert (strlen (message) > 0);
    void (*symbol) (void) = s_vfs.xDlSym (&s_vfs, NULL, "nothing");
    assert (symbol == NULL);
    s_vfs.xDlClose (&s_vfs, NULL);
    int last = s_vfs.xGetLastError (&s_vfs, sizeof (message), message);
    assert (last == 0);
    s_real = real;

    char dir [] = "/tmp/zchat_walvfs_test.XXXXXX";
    char *made = mkdtemp (dir);
    assert (made);
    char *path = zsys_sprintf ("%s/t.db", dir);
    assert (path);
    sqlite3 *db = s_test_open (path, ZCHAT_WALVFS_NAME);
    s_test_exec (db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                     " PRAGMA wal_autocheckpoint = 0;"
                     " CREATE TABLE t (n INTEGER PRIMARY KEY, x BLOB);");
    //  The reader uses the default VFS: it sees only what reached the file
    sqlite3 *other = s_test_open (path, NULL);

    //  A commit of a dozen pages (some 50 KB of frames) is one write
    uint64_t writes = zchat_walvfs_writes ();
    s_test_exec (db, "BEGIN; WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 40) INSERT INTO t (x) SELECT randomblob (1000)"
                     " FROM c; COMMIT;");
    assert (zchat_walvfs_writes () - writes == 1);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 40);
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

    //  A transaction that spilled, then rolled back: what it gathered is
    //  dropped with the write lock, not written later over what another
    //  writer (here the default VFS) commits meanwhile
    s_test_exec (other, "PRAGMA wal_checkpoint (TRUNCATE)");
    uint64_t discarded = atomic_load (&s_discarded);
    s_test_exec (db, "BEGIN; WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 300) INSERT INTO t (x) SELECT randomblob (950)"
                     " FROM c; ROLLBACK;");
    s_test_exec (other, "BEGIN; WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                        " FROM c WHERE i < 100) INSERT INTO t (x) SELECT randomblob (300)"
                        " FROM c; COMMIT;");
    assert (s_test_int (db, "SELECT count (*) FROM t") == 741);
    s_test_exec (db, "INSERT INTO t (x) VALUES (randomblob (2000))");
    assert (s_test_int (other, "SELECT count (*) FROM t") == 742);
    s_test_integrity (other);
    assert (atomic_load (&s_discarded) > discarded);

    //  The same in locking_mode=EXCLUSIVE, which takes no WAL write lock
    //  in the shared memory: dropped when the connection, back in NORMAL
    //  mode, lets go of the file. (Exclusive needs the other connection
    //  gone, which holds a lock on the database file while open.)
    s_test_close (&other);
    s_test_exec (db, "PRAGMA wal_checkpoint (TRUNCATE); PRAGMA locking_mode = EXCLUSIVE;"
                     " SELECT count (*) FROM t;");
    discarded = atomic_load (&s_discarded);
    s_test_exec (db, "BEGIN; WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 200) INSERT INTO t (x) SELECT randomblob (900)"
                     " FROM c; ROLLBACK; PRAGMA locking_mode = NORMAL;"
                     " SELECT count (*) FROM t;");
    other = s_test_open (path, NULL);
    s_test_exec (other, "BEGIN; WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                        " FROM c WHERE i < 100) INSERT INTO t (x) SELECT zeroblob (900)"
                        " FROM c; COMMIT;");
    assert (s_test_int (db, "SELECT count (*) FROM t") == 842);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 842);
    s_test_integrity (other);
    assert (atomic_load (&s_discarded) > discarded);

    //  Gathered frames that cannot be written when a read needs them (a
    //  spilled page read back) fail the transaction whole, as an I/O
    //  error, not just the statement (as "disk full" would, leaving the
    //  transaction to commit without them)
    s_test_exec (db, "INSERT INTO t (x) VALUES (randomblob (10))");   //  after the other's
    s_test_exec (db, "BEGIN; WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1"
                     " FROM c WHERE i < 300) INSERT INTO t (x) SELECT randomblob (800)"
                     " FROM c;");
    atomic_store (&s_fail_flush, 1);
    rc = sqlite3_exec (db, "SELECT sum (length (x)) FROM t", NULL, NULL, NULL);
    assert (!atomic_load (&s_fail_flush));
    assert ((rc & 0xff) == SQLITE_IOERR);
    assert (sqlite3_get_autocommit (db));        //  rolled back whole
    assert (s_test_int (db, "SELECT count (*) FROM t") == 843);
    s_test_integrity (other);
    s_test_close (&other);
    s_test_close (&db);
    s_test_unlink (path);

    //  A process killed right after a COMMIT that spilled and wrote frames
    //  again in place (so SQLite set checksums right after the commit
    //  frame): recovery finds all of it, so nothing was left gathered
    int status = s_test_crash (path,
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
        " CREATE TABLE t (n INTEGER PRIMARY KEY, x BLOB); PRAGMA cache_size = 10; BEGIN;"
        " WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300)"
        " INSERT INTO t (x) SELECT randomblob (700) FROM c;"
        " UPDATE t SET x = zeroblob (600) WHERE n % 3 = 0; COMMIT;", true);
    assert (status == 0);
    db = s_test_open (path, NULL);
    assert (s_test_int (db, "SELECT count (*) FROM t") == 300);
    assert (s_test_int (db, "SELECT count (*) FROM t WHERE length (x) = 600") == 100);
    s_test_integrity (db);
    s_test_close (&db);
    s_test_unlink (path);

    //  With synchronous=FULL, 1 KiB pages and no power-safe overwrite,
    //  SQLite pads each commit to a sector boundary and splits the padding
    //  frame there: no piece of that may pass for a frame and stay
    //  gathered. After every commit (the WAL hook) the file must hold
    //  every frame the WAL index now names.
    char *uri = zsys_sprintf ("file:%s?psow=0", path);
    char *wal = zsys_sprintf ("%s-wal", path);
    assert (uri && wal);
    db = s_test_open (uri, ZCHAT_WALVFS_NAME);
    s_test_exec (db, "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;"
                     " PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;"
                     " CREATE TABLE t (n INTEGER PRIMARY KEY, x BLOB);");
    s_short_t shortfall = { wal, 1024, 0, 0 };
    sqlite3_wal_hook (db, s_test_wal_hook, &shortfall);
    for (int i = 0; i < 500; i++) {
        char sql [96];
        snprintf (sql, sizeof (sql), "INSERT INTO t (x) VALUES (randomblob (%d))",
                  10 + (i * 37) % 1500);
        s_test_exec (db, sql);
    }
    assert (shortfall.commits == 500);
    assert (shortfall.short_commits == 0);
    other = s_test_open (path, NULL);
    assert (s_test_int (other, "SELECT count (*) FROM t") == 500);
    s_test_integrity (other);
    s_test_close (&other);
    s_test_close (&db);
    s_test_unlink (path);
    zstr_free (&wal);
    zstr_free (&uri);

    s_test_checkpoint (path);

    rmdir (dir);
    zstr_free (&path);
    if (verbose)
        printf (" * zchat_walvfs: commits in one write, spills, rollbacks,"
                " crashes, padding, checkpoints\n");
}
