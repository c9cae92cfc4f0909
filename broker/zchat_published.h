//  zchat_published — the record of seqs published before their commit.
//
//  With durability off the broker publishes a group of messages before
//  SQLite has them. If it dies in between, numbering would start again
//  from the last commit, and the next messages of a room would get seqs
//  that subscribers have already seen with other messages, and drop as
//  seen. So before such a group goes out, the store writes each room's
//  newest seq in it to DIR/zchat.published (one pwrite, no fsync: it has
//  to outlive the process, like a commit with synchronous=NORMAL, not the
//  machine), and at the next open moves each room's numbering past it.
//
//  The file holds records, each complete: a record names every room with
//  seqs published and not yet stored. A record is framed and checksummed,
//  so a write cut short by the process's death is told apart from a whole
//  one, and reading stops at the first record that is not whole.

#ifndef ZCHAT_PUBLISHED_H_INCLUDED
#define ZCHAT_PUBLISHED_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The file in the store's directory.
#define ZCHAT_PUBLISHED_FILE    "zchat.published"

typedef struct _zchat_published_t zchat_published_t;

//  The record of directory dir. Opens nothing yet: the file is created by
//  the first write. NULL if out of memory.
zchat_published_t *
    zchat_published_new (const char *dir);

//  Close; nulls *self_p. Safe on NULL. Leaves the file as it is.
void
    zchat_published_destroy (zchat_published_t **self_p);

//  Called once per (room, seq) that the file's whole records hold; rooms
//  may repeat. room is not NUL-terminated.
typedef void (zchat_published_fn) (void *arg, const char *room, size_t room_len,
                                   uint64_t seq);

//  Read every whole record of the file (none if it does not exist).
//  Returns the number of (room, seq) pairs passed to fn, or -1 if the file
//  could not be read (errno set).
int64_t
    zchat_published_read (zchat_published_t *self, zchat_published_fn *fn, void *arg);

//  Build a record: start, add each room's newest published seq (room_len
//  1..ZCHAT_MAX_ROOM), write. write puts it at the start of the file when
//  append is false (every earlier record is then stale: what it named is
//  stored), else after the last one written. Returns 0, or -1 (errno set;
//  add fails only when out of memory; write also when the record would end
//  past what a read takes in, EFBIG).
void
    zchat_published_start (zchat_published_t *self);
int
    zchat_published_add (zchat_published_t *self, const char *room, size_t room_len,
                         uint64_t seq);
int
    zchat_published_write (zchat_published_t *self, bool append);

//  Remove the file: nothing it records is unstored any more. Returns 0
//  (also if there was no file), or -1 (errno set).
int
    zchat_published_remove (zchat_published_t *self);

//  Self test; asserts on failure.
void
    zchat_published_test (bool verbose);

#endif
