//  zchat_published — the record of seqs published before their commit
//  (see zchat_published.h, and broker/STORAGE.md "Durability off").
//
//  A record: magic "ZPB1", body size (u32), body, check (u64), integers
//  little-endian. The body is entries of room size (u8), room, seq (u64).
//  The check is FNV-1a over everything before it: it only has to tell a
//  whole record from one cut short or from stale bytes, not resist anyone
//  (the file is the broker's own, in its data directory).

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zchat_msg.h"
#include "zchat_published.h"

#define S_MAGIC         "ZPB1"
#define S_HEAD_SIZE     8               //  magic, body size
#define S_CHECK_SIZE    8
//  A file bigger than this is not ours to read whole; a record bigger
//  than this could not have been written (8,192 rooms a group at most).
#define S_FILE_MAX      (64 * 1024 * 1024)

struct _zchat_published_t {
    char *path;
    int fd;                         //  -1 until the first write
    uint8_t *buf;                   //  the record being built
    size_t size, limit;
    off_t end;                      //  where an appended record goes
};

static void
s_put_u32 (uint8_t *at, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        at [i] = (uint8_t) (value >> (8 * i));
}

static void
s_put_u64 (uint8_t *at, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        at [i] = (uint8_t) (value >> (8 * i));
}

static uint32_t
s_get_u32 (const uint8_t *at)
{
    uint32_t value = 0;
    for (int i = 3; i >= 0; i--)
        value = value << 8 | at [i];
    return value;
}

static uint64_t
s_get_u64 (const uint8_t *at)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--)
        value = value << 8 | at [i];
    return value;
}

static uint64_t
s_check (const uint8_t *data, size_t size)
{
    uint64_t hash = 14695981039346656037u;
    for (size_t i = 0; i < size; i++) {
        hash ^= data [i];
        hash *= 1099511628211u;
    }
    return hash;
}


//  --------------------------------------------------------------------------

zchat_published_t *
zchat_published_new (const char *dir)
{
    assert (dir);
    zchat_published_t *self = (zchat_published_t *) calloc (1, sizeof (zchat_published_t));
    if (!self)
        return NULL;
    self->fd = -1;
    self->path = zsys_sprintf ("%s/%s", dir, ZCHAT_PUBLISHED_FILE);
    if (!self->path) {
        free (self);
        return NULL;
    }
    return self;
}

void
zchat_published_destroy (zchat_published_t **self_p)
{
    assert (self_p);
    zchat_published_t *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0)
        close (self->fd);
    zstr_free (&self->path);
    free (self->buf);
    free (self);
    *self_p = NULL;
}


//  --------------------------------------------------------------------------
//  Pass the entries of one whole record's body to fn. Returns the number
//  of entries, or -1 if the body does not parse (then nothing was passed).

static int64_t
s_body_walk (const uint8_t *body, size_t size, zchat_published_fn *fn, void *arg)
{
    //  Parse first, call after: a malformed body yields nothing at all.
    int64_t count = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t at = 0;
        while (at < size) {
            size_t room_len = body [at];
            if (room_len == 0 || room_len > ZCHAT_MAX_ROOM || size - at < 1 + room_len + 8)
                return -1;
            if (pass == 1)
                fn (arg, (const char *) body + at + 1, room_len,
                    s_get_u64 (body + at + 1 + room_len));
            else
                count++;
            at += 1 + room_len + 8;
        }
    }
    return count;
}

int64_t
zchat_published_read (zchat_published_t *self, zchat_published_fn *fn, void *arg)
{
    assert (self && fn);
    int fd = open (self->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT? 0: -1;
    int64_t total = -1;
    uint8_t *data = NULL;
    struct stat st;
    if (fstat (fd, &st))
        goto done;
    size_t size = st.st_size > S_FILE_MAX? S_FILE_MAX: (size_t) st.st_size;
    data = (uint8_t *) malloc (size? size: 1);
    if (!data)
        goto done;
    size_t got = 0;
    while (got < size) {
        ssize_t rc = pread (fd, data + got, size - got, (off_t) got);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            goto done;
        if (rc == 0)
            break;                  //  shrank meanwhile: read what is there
        got += (size_t) rc;
    }
    total = 0;
    size_t at = 0;
    while (got - at >= S_HEAD_SIZE + S_CHECK_SIZE) {
        const uint8_t *record = data + at;
        if (memcmp (record, S_MAGIC, 4) != 0)
            break;
        size_t body_size = s_get_u32 (record + 4);
        if (body_size > got - at - S_HEAD_SIZE - S_CHECK_SIZE)
            break;
        size_t whole = S_HEAD_SIZE + body_size;
        if (s_get_u64 (record + whole) != s_check (record, whole))
            break;
        int64_t count = s_body_walk (record + S_HEAD_SIZE, body_size, fn, arg);
        if (count < 0)
            break;
        total += count;
        at += whole + S_CHECK_SIZE;
    }
done:
    {
        int saved = errno;
        free (data);
        close (fd);
        errno = saved;
    }
    return total;
}


//  --------------------------------------------------------------------------

static int
s_reserve (zchat_published_t *self, size_t more)
{
    if (self->limit - self->size >= more)
        return 0;
    size_t limit = self->limit? self->limit: 256;
    while (limit - self->size < more)
        limit *= 2;
    uint8_t *buf = (uint8_t *) realloc (self->buf, limit);
    if (!buf)
        return -1;
    self->buf = buf;
    self->limit = limit;
    return 0;
}

void
zchat_published_start (zchat_published_t *self)
{
    assert (self);
    self->size = 0;
    if (s_reserve (self, S_HEAD_SIZE) == 0)
        self->size = S_HEAD_SIZE;
}

int
zchat_published_add (zchat_published_t *self, const char *room, size_t room_len,
                     uint64_t seq)
{
    assert (self && room);
    assert (room_len > 0 && room_len <= ZCHAT_MAX_ROOM);
    if (self->size < S_HEAD_SIZE || s_reserve (self, 1 + room_len + 8)) {
        errno = ENOMEM;
        return -1;
    }
    uint8_t *at = self->buf + self->size;
    at [0] = (uint8_t) room_len;
    memcpy (at + 1, room, room_len);
    s_put_u64 (at + 1 + room_len, seq);
    self->size += 1 + room_len + 8;
    return 0;
}

int
zchat_published_write (zchat_published_t *self, bool append)
{
    assert (self);
    if (self->size < S_HEAD_SIZE || s_reserve (self, S_CHECK_SIZE)
    ||  self->size - S_HEAD_SIZE > UINT32_MAX) {
        errno = ENOMEM;
        return -1;
    }
    if (self->fd < 0) {
        self->fd = open (self->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (self->fd < 0)
            return -1;
        //  Whatever an earlier run left was read and stored at open
        self->end = 0;
    }
    memcpy (self->buf, S_MAGIC, 4);
    s_put_u32 (self->buf + 4, (uint32_t) (self->size - S_HEAD_SIZE));
    s_put_u64 (self->buf + self->size, s_check (self->buf, self->size));
    size_t whole = self->size + S_CHECK_SIZE;
    off_t at = append? self->end: 0;
    //  The next open reads S_FILE_MAX bytes at most: a record past that
    //  would not be read, and its seqs would be given out again
    if ((uint64_t) at + whole > S_FILE_MAX) {
        errno = EFBIG;
        return -1;
    }
    ssize_t rc;
    do
        rc = pwrite (self->fd, self->buf, whole, at);
    while (rc < 0 && errno == EINTR);
    if (rc != (ssize_t) whole) {
        if (rc >= 0)
            errno = ENOSPC;         //  a short write: the disk is full
        return -1;
    }
    self->end = at + (off_t) whole;
    return 0;
}

int
zchat_published_remove (zchat_published_t *self)
{
    assert (self);
    if (self->fd >= 0) {
        close (self->fd);
        self->fd = -1;
    }
    self->end = 0;
    if (unlink (self->path) && errno != ENOENT)
        return -1;
    return 0;
}


//  --------------------------------------------------------------------------
//  Self test

typedef struct {
    size_t count;
    char rooms [8][ZCHAT_MAX_ROOM + 1];
    uint64_t seqs [8];
} s_seen_t;

static void
s_seen (void *arg, const char *room, size_t room_len, uint64_t seq)
{
    s_seen_t *seen = (s_seen_t *) arg;
    assert (seen->count < 8);
    memcpy (seen->rooms [seen->count], room, room_len);
    seen->rooms [seen->count][room_len] = '\0';
    seen->seqs [seen->count++] = seq;
}

static int64_t
s_read (zchat_published_t *self, s_seen_t *seen)
{
    memset (seen, 0, sizeof (*seen));
    return zchat_published_read (self, s_seen, seen);
}

void
zchat_published_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_published: ");
    char dir [] = "/tmp/zchat-published-XXXXXX";
    assert (mkdtemp (dir));
    char *path = zsys_sprintf ("%s/%s", dir, ZCHAT_PUBLISHED_FILE);
    assert (path);
    zchat_published_t *self = zchat_published_new (dir);
    assert (self);
    s_seen_t seen;

    //  No file: nothing, and no error
    assert (s_read (self, &seen) == 0);

    //  One record
    zchat_published_start (self);
    assert (zchat_published_add (self, "general", 7, 42) == 0);
    assert (zchat_published_add (self, "x", 1, UINT64_MAX) == 0);
    assert (zchat_published_write (self, false) == 0);
    assert (s_read (self, &seen) == 2);
    assert (streq (seen.rooms [0], "general") && seen.seqs [0] == 42);
    assert (streq (seen.rooms [1], "x") && seen.seqs [1] == UINT64_MAX);

    //  A record at the start replaces the last one; the longer one's tail
    //  that remains behind it is not a record
    zchat_published_start (self);
    assert (zchat_published_add (self, "b", 1, 7) == 0);
    assert (zchat_published_write (self, false) == 0);
    assert (s_read (self, &seen) == 1);
    assert (streq (seen.rooms [0], "b") && seen.seqs [0] == 7);

    //  Appended ones follow it
    zchat_published_start (self);
    assert (zchat_published_add (self, "c", 1, 9) == 0);
    assert (zchat_published_write (self, true) == 0);
    zchat_published_start (self);
    assert (zchat_published_add (self, "c", 1, 12) == 0);
    assert (zchat_published_add (self, "b", 1, 8) == 0);
    assert (zchat_published_write (self, true) == 0);
    assert (s_read (self, &seen) == 4);
    assert (streq (seen.rooms [1], "c") && seen.seqs [1] == 9);
    assert (streq (seen.rooms [3], "b") && seen.seqs [3] == 8);

    //  A write cut short: every record before it is read, it is not
    struct stat st;
    assert (stat (path, &st) == 0);
    assert (truncate (path, st.st_size - 1) == 0);
    assert (s_read (self, &seen) == 2);
    assert (truncate (path, st.st_size - 3 - 8 - 1) == 0);
    assert (s_read (self, &seen) == 2);

    //  A flipped byte in a body: that record and everything after it go
    int fd = open (path, O_RDWR);
    assert (fd >= 0);
    uint8_t byte;
    assert (pread (fd, &byte, 1, 8 + 2) == 1);
    byte ^= 1;
    assert (pwrite (fd, &byte, 1, 8 + 2) == 1);
    close (fd);
    assert (s_read (self, &seen) == 0);

    //  A body that does not parse is refused even with a good check
    zchat_published_start (self);
    assert (zchat_published_add (self, "d", 1, 1) == 0);
    self->buf [S_HEAD_SIZE] = ZCHAT_MAX_ROOM + 1;
    assert (zchat_published_write (self, false) == 0);
    assert (s_read (self, &seen) == 0);

    //  Removed: nothing left, and removing again is fine
    assert (zchat_published_remove (self) == 0);
    assert (access (path, F_OK) != 0);
    assert (zchat_published_remove (self) == 0);
    assert (s_read (self, &seen) == 0);

    //  A new object reads what an earlier one left (the next run)
    zchat_published_start (self);
    assert (zchat_published_add (self, "e", 1, 5) == 0);
    assert (zchat_published_write (self, false) == 0);
    zchat_published_destroy (&self);
    assert (self == NULL);
    self = zchat_published_new (dir);
    assert (self);
    assert (s_read (self, &seen) == 1 && seen.seqs [0] == 5);
    assert (zchat_published_remove (self) == 0);
    zchat_published_destroy (&self);

    zstr_free (&path);
    assert (rmdir (dir) == 0);
    if (verbose)
        printf ("OK\n");
}
