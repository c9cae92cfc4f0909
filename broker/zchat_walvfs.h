//  zchat_walvfs — a SQLite VFS that writes a transaction's WAL frames to
//  the file in one write instead of two per frame, and a checkpoint's
//  pages in runs instead of one write each.
//
//  SQLite writes each WAL frame as two pwrite calls (its 24-byte header,
//  then the page): a commit of 10 pages is 20 system calls on the broker's
//  event loop, a fifth of its time flat out. This VFS wraps the default
//  one. In a WAL file, whole frames (a header where the WAL's layout puts
//  one, then its page) appended where the last commit ended gather in a
//  buffer, and go to the OS when the transaction's commit frame is
//  complete, before SQLite makes the frames visible to other connections
//  (it updates the WAL index only after writing): a COMMIT returns, as
//  before, only once its frames are in the kernel. Anything else on such
//  a file (a read, a sync, a truncate, a write in place or of another
//  shape) first writes what is gathered, then goes out itself. What a
//  transaction gathered and never committed (it spilled, then rolled back)
//  is dropped when the database file's WAL write lock is released (or,
//  in exclusive locking mode, its file lock), so it can never land on
//  what another writer committed since. The default VFS's files must have
//  shared memory (io_methods version 3), as the unix VFS's do.
//
//  A checkpoint's pages, which SQLite copies into the database file one
//  write each, gather the same way in runs of consecutive pages and go
//  out before SQLite takes them as copied (SQLITE_FCNTL_CKPT_DONE). If
//  they cannot be written even then, SQLite would go on as if they were;
//  the VFS then refuses, until the process ends, every read of a database
//  and every write of a WAL (the WAL still holds them; the next process
//  to open the database copies them again).

#ifndef ZCHAT_WALVFS_H_INCLUDED
#define ZCHAT_WALVFS_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZCHAT_WALVFS_NAME   "zchat-wal"

//  Register the VFS (once, whatever the number of calls; never as the
//  default). Open with sqlite3_open_v2 (..., ZCHAT_WALVFS_NAME). Returns
//  SQLITE_OK or an SQLite error code.
int
    zchat_walvfs_register (void);

//  Writes of WAL files passed to the OS so far, in this process (tests).
uint64_t
    zchat_walvfs_writes (void);

//  Self test; asserts on failure.
void
    zchat_walvfs_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
