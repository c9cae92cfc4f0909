//  zchat_store_test — the self test of zchat_store: a real store in a
//  temporary directory, checked through the API and, where the design
//  is the point (schema, query plans, the id window, chunk buffers),
//  through the store's internals.

#include <czmq.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <semaphore.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zchat_store_int.h"

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

//  The oldest seq held of room; the read must not fail.
static uint64_t
s_first_seq (zchat_store_t *store, const char *room)
{
    uint64_t first_seq = UINT64_MAX;
    int rc = zchat_store_first_seq (store, room, &first_seq);
    assert (rc == 0 && first_seq != UINT64_MAX);
    return first_seq;
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

//  Run retention until a call removes nothing with the age rule's walk
//  back at its start (a call can pass over chunks and remove nothing, and
//  the next goes on). Returns the messages removed, *calls the calls made.
static int
s_retain_all (zchat_store_t *store, uint64_t max_messages, uint64_t max_age_ms,
              uint64_t now_ms, size_t batch, int *calls)
{
    int total = 0;
    *calls = 0;
    while (true) {
        int count = zchat_store_retain (store, max_messages, max_age_ms, now_ms, batch);
        assert (count >= 0 && count <= (int) batch * 64);
        ++*calls;
        assert (*calls < 200);
        total += count;
        if (count == 0 && store->age_cursor == 0)
            return total;
    }
}

//  Checks the 4000-byte texts of "long" (filled with 'a' + seq % 26) and
//  that seqs come in order without holes.
typedef struct {
    uint64_t first, last;
} s_long_t;

static int
s_check_long (void *arg, uint64_t seq, uint64_t ts, const char *nick, uint8_t kind,
              const char *text, size_t text_size)
{
    s_long_t *seen = (s_long_t *) arg;
    assert (ts == 1700000000000ull + seq && streq (nick, "writer") && kind == 0);
    assert (text_size == 4000);
    for (size_t i = 0; i < text_size; i++)
        assert (text [i] == 'a' + (int) (seq % 26));
    assert (seen->last == 0 || seq == seen->last + 1);
    if (seen->first == 0)
        seen->first = seq;
    seen->last = seq;
    return 0;
}

//  Append a group of 16 texts of 4000 bytes to room "wal", about 16 WAL
//  pages a commit; returns the commit's duration in microseconds.
static int64_t
s_fill_wal (zchat_store_t *store, uint64_t *seq)
{
    static char text [4000];
    memset (text, 'w', sizeof (text));
    assert (zchat_store_begin (store) == 0);
    for (int i = 0; i < 16; i++) {
        ++*seq;
        assert (zchat_store_append (store, "wal", *seq, 1700000000000ull + *seq, "walker",
                                    ZCHAT_KIND_TEXT, text, sizeof (text), *seq,
                                    NULL, NULL, NULL) == 0);
    }
    int64_t start = zclock_usecs ();
    assert (zchat_store_commit (store) == 0);
    return zclock_usecs () - start;
}

static int64_t
s_file_size (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0? (int64_t) st.st_size: -1;
}

//  Counts the messages of "wal" and checks their seqs run without holes.
static int
s_check_wal (void *arg, uint64_t seq, uint64_t ts, const char *nick, uint8_t kind,
             const char *text, size_t text_size)
{
    (void) ts; (void) kind; (void) text;
    s_long_t *seen = (s_long_t *) arg;
    assert (streq (nick, "walker") && text_size == 4000);
    assert (seen->last == 0 || seq == seen->last + 1);
    if (seen->first == 0)
        seen->first = seq;
    seen->last = seq;
    return 0;
}

//  History of "wal" from seq from on: exactly from..last.
static void
s_assert_wal (zchat_store_t *store, uint64_t from, uint64_t last)
{
    s_long_t seen = { 0, 0 };
    int count = zchat_store_history (store, "wal", from, 0, (size_t) (last - from + 1),
                                     s_check_wal, &seen);
    assert (count == (int) (last - from + 1));
    assert (seen.first == from && seen.last == last);
}

//  The checkpointer's round stops between its PASSIVE pass and its
//  RESTART decision until the test has committed.
typedef struct {
    sem_t passive_done;
    sem_t go_on;
} s_between_t;

static void
s_sem_wait (sem_t *sem, int timeout_ms)
{
    struct timespec deadline;
    assert (clock_gettime (CLOCK_REALTIME, &deadline) == 0);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int rc;
    while ((rc = sem_timedwait (sem, &deadline)) != 0 && errno == EINTR)
        ;
    assert (rc == 0);
}

static void
s_between (void *arg)
{
    s_between_t *between = (s_between_t *) arg;
    assert (sem_post (&between->passive_done) == 0);
    s_sem_wait (&between->go_on, 10000);
}

//  Checkpoints run on the checkpointer thread, never inside a commit.
static void
s_test_checkpoints (const char *base, bool verbose)
{
    char *dir = zsys_sprintf ("%s/checkpoints", base);
    assert (dir);
    char error [256];
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    char *wal = zsys_sprintf ("%s/%s-wal", dir, STORE_DB_NAME);
    assert (wal);
    uint64_t seq = 0;

    //  With the checkpointer held, the WAL grows past the RESTART length
    //  and no commit ever starts it over: no commit ran a checkpoint
    //  (autocheckpoint would have reset it every 1000 pages). The WAL
    //  hook woke the thread once per STORE_CKPT_PAGES of WAL, not after
    //  every commit past the first STORE_CKPT_PAGES (hundreds of wakes).
    zchat_store_ckpt_hold (store, true);
    int prev_pages = 0;
    int64_t worst_us = 0;
    uint64_t wakes_before = store->ckpt.wakes;
    while (store->ckpt.wal_pages < STORE_CKPT_RESTART_PAGES + STORE_CKPT_PAGES / 2) {
        int64_t took = s_fill_wal (store, &seq);
        worst_us = took > worst_us? took: worst_us;
        assert (store->ckpt.wal_pages > prev_pages);
        prev_pages = store->ckpt.wal_pages;
    }
    assert (store->ckpt.wakes > wakes_before);
    assert (store->ckpt.wakes - wakes_before <= (uint64_t) (prev_pages / STORE_CKPT_PAGES));
    if (verbose)
        printf ("\n   %d WAL pages without a checkpoint, %" PRIu64 " wakes,"
                " slowest commit %" PRId64 " us",
                prev_pages, store->ckpt.wakes - wakes_before, worst_us);
    //  Let go and wake it while a group is open: its transaction began
    //  before the round copied the WAL, so its commit (in the hook, after
    //  the round's PASSIVE pass and before its RESTART decision) does not
    //  start the WAL over but appends to it, as commits that overlap a
    //  round do under a steady stream; and so would every later commit,
    //  the WAL never being wholly copied when one begins. The round's
    //  RESTART copies that short tail, so the next commit starts over.
    uint64_t runs_before = 0, restarts_before = 0;
    zchat_store_ckpt_stats (store, &runs_before, NULL, &restarts_before);
    s_between_t between;
    assert (sem_init (&between.passive_done, 0, 0) == 0);
    assert (sem_init (&between.go_on, 0, 0) == 0);
    zchat_store_ckpt_between (store, s_between, &between);
    assert (zchat_store_begin (store) == 0);
    zchat_store_ckpt_hold (store, false);
    zchat_store_ckpt_wake (store);
    s_sem_wait (&between.passive_done, 5000);
    static char text [4000];
    memset (text, 'v', sizeof (text));
    for (int i = 0; i < 4; i++) {
        ++seq;
        assert (zchat_store_append (store, "wal", seq, 1700000000000ull + seq, "walker",
                                    ZCHAT_KIND_TEXT, text, sizeof (text), seq,
                                    NULL, NULL, NULL) == 0);
    }
    assert (zchat_store_commit (store) == 0);
    int tail_pages = store->ckpt.wal_pages - prev_pages;
    assert (tail_pages > 0 && tail_pages <= STORE_CKPT_TAIL_PAGES);
    zchat_store_ckpt_between (store, NULL, NULL);
    assert (sem_post (&between.go_on) == 0);
    int64_t deadline = zclock_mono () + 5000;
    uint64_t runs = runs_before, restarts = 0;
    while (runs == runs_before) {
        assert (zclock_mono () < deadline);
        zclock_sleep (5);
        zchat_store_ckpt_stats (store, &runs, NULL, &restarts);
    }
    assert (restarts >= restarts_before + 1);
    prev_pages = store->ckpt.wal_pages;
    s_fill_wal (store, &seq);
    assert (store->ckpt.wal_pages < prev_pages);
    assert (store->ckpt.wal_pages < STORE_CKPT_PAGES);
    s_assert_wal (store, seq - 9, seq);

    //  A stream faster than the disk: the WAL is STORE_CKPT_FORCE_PAGES long
    //  and much more than a short tail came during the round. The round
    //  still ends with a RESTART, and the WAL file, over the (lowered) cap,
    //  gets no TRUNCATE on top: the next commit starts it over.
    zchat_store_ckpt_hold (store, true);
    while (store->ckpt.wal_pages < STORE_CKPT_FORCE_PAGES + STORE_CKPT_PAGES)
        s_fill_wal (store, &seq);
    uint64_t truncates_before = 0;
    zchat_store_ckpt_stats (store, &runs_before, &truncates_before, &restarts_before);
    zchat_store_ckpt_cap (store, 4096);
    zchat_store_ckpt_between (store, s_between, &between);
    int rc = zchat_store_begin (store);
    assert (rc == 0);
    prev_pages = store->ckpt.wal_pages;
    zchat_store_ckpt_hold (store, false);
    zchat_store_ckpt_wake (store);
    s_sem_wait (&between.passive_done, 5000);
    for (int i = 0; i < 64; i++) {
        ++seq;
        rc = zchat_store_append (store, "wal", seq, 1700000000000ull + seq, "walker",
                                 ZCHAT_KIND_TEXT, text, sizeof (text), seq, NULL, NULL, NULL);
        assert (rc == 0);
    }
    rc = zchat_store_commit (store);
    assert (rc == 0);
    assert (store->ckpt.wal_pages - prev_pages > STORE_CKPT_TAIL_PAGES);
    zchat_store_ckpt_between (store, NULL, NULL);
    assert (sem_post (&between.go_on) == 0);
    deadline = zclock_mono () + 5000;
    runs = runs_before;
    uint64_t truncates = truncates_before;
    while (runs == runs_before) {
        assert (zclock_mono () < deadline);
        zclock_sleep (5);
        zchat_store_ckpt_stats (store, &runs, &truncates, &restarts);
    }
    assert (restarts == restarts_before + 1);
    assert (truncates == truncates_before);
    zchat_store_ckpt_cap (store, STORE_WAL_CAP_BYTES);
    prev_pages = store->ckpt.wal_pages;
    s_fill_wal (store, &seq);
    assert (store->ckpt.wal_pages < prev_pages);
    s_assert_wal (store, seq - 9, seq);
    sem_destroy (&between.passive_done);
    sem_destroy (&between.go_on);

    //  The rule: a long WAL, copied to within a short tail, not idle since
    //  the last RESTART
    const int R = STORE_CKPT_RESTART_PAGES, T = STORE_CKPT_TAIL_PAGES;
    assert (zchat_store_ckpt_restart_due (R, R, R, 0));
    assert (!zchat_store_ckpt_restart_due (R - 1, R - 1, R - 1, 0));
    assert (zchat_store_ckpt_restart_due (R, R, R + T, 0));
    assert (!zchat_store_ckpt_restart_due (R, R, R + T + 1, 0));
    assert (!zchat_store_ckpt_restart_due (R, R - 1, R, 0));
    assert (!zchat_store_ckpt_restart_due (R, R, 2, 0));        //  started over
    assert (!zchat_store_ckpt_restart_due (R, R, R, R));        //  idle since
    assert (zchat_store_ckpt_restart_due (R, R, R + 1, R));
    //  ... or, a stream faster than the disk never leaving a short tail,
    //  a WAL of STORE_CKPT_FORCE_PAGES copied whatever came since
    const int F = STORE_CKPT_FORCE_PAGES;
    assert (F > R);
    assert (zchat_store_ckpt_restart_due (F, F, 2 * F, 0));
    assert (!zchat_store_ckpt_restart_due (F - 1, F - 1, 2 * F, 0));
    assert (!zchat_store_ckpt_restart_due (F, F - 1, 2 * F, 0));
    assert (!zchat_store_ckpt_restart_due (F, F, F, F));        //  idle since

    //  A reader holding an old snapshot starves passive checkpoints; past
    //  the cap the thread tries TRUNCATE, which gives up after its short
    //  busy timeout, and commits go on meanwhile. Once the reader is gone
    //  the WAL file is truncated to nothing.
    char *db_path = zsys_sprintf ("%s/%s", dir, STORE_DB_NAME);
    assert (db_path);
    sqlite3 *reader = NULL;
    assert (sqlite3_open_v2 (db_path, &reader, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *read = NULL;
    assert (sqlite3_prepare_v2 (reader, "SELECT count (*) FROM chunks", -1, &read, NULL)
            == SQLITE_OK);
    assert (sqlite3_exec (reader, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    assert (sqlite3_step (read) == SQLITE_ROW);
    for (int i = 0; i < 8; i++)
        s_fill_wal (store, &seq);
    zchat_store_ckpt_cap (store, 4096);
    zchat_store_ckpt_wake (store);
    deadline = zclock_mono () + 5000;
    while (truncates == truncates_before) {
        assert (zclock_mono () < deadline);
        zclock_sleep (5);
        zchat_store_ckpt_stats (store, NULL, &truncates, NULL);
    }
    for (int i = 0; i < 8; i++)
        s_fill_wal (store, &seq);
    assert (s_file_size (wal) > 4096);
    sqlite3_finalize (read);
    assert (sqlite3_exec (reader, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    assert (sqlite3_close (reader) == SQLITE_OK);
    zchat_store_ckpt_wake (store);
    deadline = zclock_mono () + 5000;
    while (s_file_size (wal) != 0) {
        assert (zclock_mono () < deadline);
        zclock_sleep (5);
    }
    s_assert_wal (store, seq - 9, seq);

    //  A clean close stops the thread, checkpoints and removes the WAL;
    //  everything is there on reopening.
    zchat_store_destroy (&store);
    assert (s_file_size (wal) == -1);
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (zchat_store_last_seq (store, "wal") == seq);
    s_assert_wal (store, 1, seq);
    zchat_store_destroy (&store);
    zstr_free (&db_path);
    zstr_free (&wal);
    zstr_free (&dir);
}

//  The gate: a second connection holds the write lock, as the
//  checkpointer's RESTART does while the disk catches up, and opens the
//  gate when it lets go.
typedef struct {
    zchat_store_t *store;
    sqlite3 *other;
    int hold_ms;
} s_gate_t;

static void *
s_gate_holder (void *arg)
{
    s_gate_t *gate = (s_gate_t *) arg;
    zclock_sleep (gate->hold_ms);
    if (gate->other) {
        int rc = sqlite3_exec (gate->other, "COMMIT", NULL, NULL, NULL);
        assert (rc == SQLITE_OK);
    }
    zchat_store_ckpt_gate (gate->store, false);
    return NULL;
}

//  Closes the gate, starts the holder, then begins a group, which must
//  wait until the holder opens the gate; returns how long it waited.
static int64_t
s_begin_at_gate (s_gate_t *gate, pthread_t *thread)
{
    zchat_store_ckpt_gate (gate->store, true);
    int64_t started = zclock_mono ();
    int rc = pthread_create (thread, NULL, s_gate_holder, gate);
    assert (rc == 0);
    rc = zchat_store_begin (gate->store);
    int64_t waited = zclock_mono () - started;
    assert (rc == 0);
    assert (waited >= gate->hold_ms);
    return waited;
}

//  While the checkpointer holds the write lock (the gate is closed) a
//  group waits as long as it takes, where any other holder makes it give
//  up after STORE_BUSY_TIMEOUT_MS: a stream faster than the disk used to
//  get ERROR 500 when a RESTART's syncs outlasted that.
static void
s_test_gate (const char *base, bool verbose)
{
    char error [256];
    char *dir = zsys_sprintf ("%s/gate", base);
    assert (dir);
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    char *db_path = zsys_sprintf ("%s/%s", dir, STORE_DB_NAME);
    assert (db_path);
    sqlite3 *other = NULL;
    int rc = sqlite3_open_v2 (db_path, &other, SQLITE_OPEN_READWRITE, NULL);
    assert (rc == SQLITE_OK);

    //  The busy handler: the usual limit, or the gate's once it saw the
    //  gate closed, also after it opened (the checkpointer lets go of the
    //  lock before it opens the gate)
    rc = zchat_store_busy_wait (store, 0);
    assert (rc == 1);
    store->busy_started -= (STORE_BUSY_TIMEOUT_MS + 10) * 1000;
    rc = zchat_store_busy_wait (store, 1);
    assert (rc == 0);
    rc = zchat_store_busy_wait (store, 0);
    assert (rc == 1);
    zchat_store_ckpt_gate (store, true);
    rc = zchat_store_busy_wait (store, 1);
    assert (rc == 1);
    zchat_store_ckpt_gate (store, false);
    store->busy_started -= (STORE_BUSY_TIMEOUT_MS + 10) * 1000;
    rc = zchat_store_busy_wait (store, 1);
    assert (rc == 1);
    store->busy_started -= STORE_CKPT_GATE_MAX_MS * 1000;
    rc = zchat_store_busy_wait (store, 1);
    assert (rc == 0);

    //  Another holder: given up after STORE_BUSY_TIMEOUT_MS
    rc = sqlite3_exec (other, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    assert (rc == SQLITE_OK);
    int64_t started = zclock_mono ();
    rc = zchat_store_begin (store);
    int64_t waited = zclock_mono () - started;
    assert (rc == -1);
    assert (waited >= STORE_BUSY_TIMEOUT_MS && waited < STORE_CKPT_GATE_MAX_MS);

    //  The checkpointer, holding the lock: waited for, three times as long
    s_gate_t gate = { store, other, 3 * STORE_BUSY_TIMEOUT_MS };
    pthread_t thread;
    waited = s_begin_at_gate (&gate, &thread);
    uint64_t seq = zchat_store_last_seq (store, "gate") + 1;
    rc = zchat_store_append (store, "gate", seq, 1700000000000ull, "gater",
                             ZCHAT_KIND_TEXT, "through", 7, 1, NULL, NULL, NULL);
    assert (rc == 0);
    rc = zchat_store_commit (store);
    assert (rc == 0);
    rc = pthread_join (thread, NULL);
    assert (rc == 0);
    assert (zchat_store_last_seq (store, "gate") == seq);
    if (verbose)
        printf ("\n   a group waited %" PRId64 " ms at the gate", waited);

    //  The gate closed, the lock free (the checkpointer is about to take
    //  it): no transaction begins until the gate opens
    gate.other = NULL;
    s_begin_at_gate (&gate, &thread);
    rc = zchat_store_commit (store);
    assert (rc == 0);
    rc = pthread_join (thread, NULL);
    assert (rc == 0);

    //  A gate that stays closed while the lock is held: one limit for the
    //  wait at the gate and the busy wait after it, not one each
    rc = sqlite3_exec (other, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    assert (rc == SQLITE_OK);
    zchat_store_ckpt_gate (store, true);
    started = zclock_mono ();
    rc = zchat_store_begin (store);
    waited = zclock_mono () - started;
    assert (rc == -1);
    assert (waited >= STORE_CKPT_GATE_MAX_MS && waited < STORE_CKPT_GATE_MAX_MS * 3 / 2);
    zchat_store_ckpt_gate (store, false);
    rc = sqlite3_exec (other, "COMMIT", NULL, NULL, NULL);
    assert (rc == SQLITE_OK);

    rc = sqlite3_close (other);
    assert (rc == SQLITE_OK);
    zchat_store_destroy (&store);
    zstr_free (&db_path);
    zstr_free (&dir);
}

//  WAL frames (pages) one group commit writes, on average over `groups`
//  groups of `group` 64-byte messages spread round robin over `rooms`
//  rooms (names prefix0, prefix1, ...). The checkpointer must be held: the
//  WAL then only grows, and the WAL hook's page count after each commit
//  tells what the commit added.
static double
s_commit_pages (zchat_store_t *store, const char *prefix, int rooms, int group,
                int groups, uint64_t *next_id)
{
    char text [64];
    memset (text, 'p', sizeof (text));
    int64_t pages = 0;
    int room = 0;
    for (int g = 0; g < groups; g++) {
        int before = store->ckpt.wal_pages;
        assert (zchat_store_begin (store) == 0);
        for (int i = 0; i < group; i++) {
            char name [ZCHAT_MAX_ROOM + 1];
            snprintf (name, sizeof (name), "%s%d", prefix, room);
            uint64_t seq = zchat_store_last_seq (store, name) + 1;
            assert (zchat_store_append (store, name, seq, 1700000000000ull + *next_id,
                                        "pager", ZCHAT_KIND_TEXT, text, sizeof (text),
                                        *next_id, NULL, NULL, NULL) == 0);
            ++*next_id;
            room = (room + 1) % rooms;
        }
        assert (zchat_store_commit (store) == 0);
        assert (store->ckpt.wal_pages > before);
        pages += store->ckpt.wal_pages - before;
    }
    return (double) pages / groups;
}

//  What a commit costs in pages: the WAL frames written per group, for
//  one-message groups (a steady, light stream: every message its own
//  commit) and for big groups (flat out). Each page is 4 KiB of WAL,
//  checksummed by SQLite and copied again by the checkpointer.
static void
s_test_pages (const char *base, bool verbose)
{
    char *dir = zsys_sprintf ("%s/pages", base);
    assert (dir);
    char error [256];
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    zchat_store_ckpt_hold (store, true);
    uint64_t next_id = 1;
    //  Warm up: every room has its first chunks and rows
    s_commit_pages (store, "one", 1, 1, 50, &next_id);
    s_commit_pages (store, "many", 16, 16, 10, &next_id);
    double one = s_commit_pages (store, "one", 1, 1, 500, &next_id);
    double spread = s_commit_pages (store, "many", 16, 1, 500, &next_id);
    double sixteen = s_commit_pages (store, "many", 16, 16, 100, &next_id);
    double big = s_commit_pages (store, "one", 1, 256, 50, &next_id);
    if (verbose)
        printf ("\n   WAL pages per commit: one message %.2f, one message in one of"
                " 16 rooms %.2f, 16 x 16 messages %.2f, 256 messages %.2f\n",
                one, spread, sixteen, big);
    //  Two pages: the chunk's leaf and its chunks_room_seq entry's (and
    //  now and then a page split). No row of rooms is written.
    assert (one < 2.5 && spread < 2.5);
    sqlite3_stmt *rows = NULL;
    assert (sqlite3_prepare_v2 (store->db, "SELECT count (*) FROM rooms", -1, &rows, NULL)
            == SQLITE_OK);
    assert (sqlite3_step (rows) == SQLITE_ROW && sqlite3_column_int (rows, 0) == 0);
    sqlite3_finalize (rows);
    zchat_store_ckpt_hold (store, false);
    zchat_store_destroy (&store);
    zstr_free (&dir);
}

//  One group of count messages to room, stamped ts, ts + 1, ...; returns
//  the room's newest seq after it.
static uint64_t
s_fill_at (zchat_store_t *store, const char *room, int count, uint64_t ts, uint64_t *id)
{
    uint64_t seq = zchat_store_last_seq (store, room);
    assert (zchat_store_begin (store) == 0);
    for (int i = 0; i < count; i++)
        assert (zchat_store_append (store, room, ++seq, ts + (uint64_t) i, "ager", 0,
                                    "a", 1, ++*id, NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    return seq;
}

//  The age rule walks the chunks in the order they were written and stops
//  at the first whole one that has not expired; it passes over chunks a
//  floor cuts through and chunks stamped after now, and a call that runs
//  out of budget leaves the walk where it was for the next one.
static void
s_test_age_walk (const char *base, bool verbose)
{
    const uint64_t T = 1700000000000ull;
    char *dir = zsys_sprintf ("%s/age", base);
    assert (dir);
    char error [256];
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    uint64_t id = 0;

    //  A clock that only goes forward: three rooms in turn, one message a
    //  chunk, stamped T..T+89. At T+1050 with a 1 s limit, T..T+49 are
    //  expired, exactly; the walk stops at the first chunk that is not,
    //  with budget to spare (so it did not go on past it).
    for (int i = 0; i < 90; i++) {
        char room [16];
        snprintf (room, sizeof (room), "m%d", i % 3);
        s_fill_at (store, room, 1, T + (uint64_t) i, &id);
    }
    assert (zchat_store_retain (store, 0, 1000, T + 1050, 1000) == 50);
    assert (store->age_cursor == 0);
    //  m0 had T, T+3, ...: 17 of them below T+50 (seq 1..17)
    assert (s_first_seq (store, "m0") == 18);
    assert (s_first_seq (store, "m1") == 18);
    assert (s_first_seq (store, "m2") == 17);
    assert (zchat_store_retain (store, 0, 1000, T + 1050, 1000) == 0);

    //  A floor that cuts through the oldest chunk of cut (count rule:
    //  keep 35 of 40), then late: the walk passes over cut while its rest
    //  is young, and takes it when that has expired too.
    s_fill_at (store, "cut", 40, T + 200, &id);
    s_fill_at (store, "late", 1, T + 300, &id);
    assert (zchat_store_retain (store, 35, 0, T + 1050, 1000) == 5);
    assert (zchat_store_retain (store, 0, 1000, T + 1205, 1000) == 40);
    assert (s_first_seq (store, "cut") == 6);
    assert (zchat_store_retain (store, 0, 1000, T + 1301, 1000) == 35 + 1);
    assert (s_first_seq (store, "cut") == 0);
    assert (s_first_seq (store, "late") == 0);
    assert (zchat_store_last_seq (store, "cut") == 40);

    //  A clock that went back: back2 is stamped older than back1, which
    //  was written before it. It waits for back1 (a message counts as no
    //  older than any written before it), then both go.
    s_fill_at (store, "back1", 1, T + 2000, &id);
    s_fill_at (store, "back2", 1, T + 1500, &id);
    assert (zchat_store_retain (store, 0, 1000, T + 2600, 1000) == 0);
    assert (s_first_seq (store, "back2") == 1);
    assert (zchat_store_retain (store, 0, 1000, T + 3001, 1000) == 2);

    //  A clock that was ahead: ahead is stamped a year from now. The walk
    //  passes over it: what was written after it still expires.
    s_fill_at (store, "ahead", 1, T + 365ull * 86400000, &id);
    s_fill_at (store, "after", 1, T + 4000, &id);
    assert (zchat_store_retain (store, 0, 1000, T + 5001, 1000) == 1);
    assert (s_first_seq (store, "ahead") == 1);
    assert (s_first_seq (store, "after") == 0);

    //  Bounded work: 20 rooms whose oldest chunk a floor cuts through,
    //  then one expired message. With 5 a call, the walk passes over four
    //  calls' worth and the fifth call takes the message.
    for (int i = 0; i < 20; i++) {
        char room [16];
        snprintf (room, sizeof (room), "p%d", i);
        s_fill_at (store, room, 4, T + 6500, &id);
    }
    s_fill_at (store, "tail", 1, T + 6000, &id);
    int calls = 0;
    assert (s_retain_all (store, 2, 0, T, 1000, &calls) == 40);
    for (int call = 0; call < 4; call++) {
        //  ahead, then p0..p19: 21 to pass over
        assert (zchat_store_retain (store, 0, 1000, T + 7001, 5) == 0);
        assert (store->age_cursor != 0);
    }
    assert (zchat_store_retain (store, 0, 1000, T + 7001, 5) == 1);
    assert (s_first_seq (store, "tail") == 0);
    assert (s_first_seq (store, "p19") == 3);
    zchat_store_destroy (&store);
    zstr_free (&dir);
    if (verbose)
        printf (" * age rule: walk in written order, passing cut chunks and the future\n");
}

//  The schema of version 2, as that broker created it (the first files of
//  that version lacked the index nick_keys_key, which came later).
static const char *s_schema_v2 =
    "CREATE TABLE chunks (id INTEGER PRIMARY KEY, room TEXT NOT NULL,"
    "  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,"
    "  count INTEGER NOT NULL, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL,"
    "  data BLOB NOT NULL);"
    "CREATE UNIQUE INDEX chunks_room_seq ON chunks (room, last_seq);"
    "CREATE INDEX chunks_min_ts ON chunks (min_ts);"
    "CREATE TABLE rooms (name TEXT PRIMARY KEY,"
    "  last_seq INTEGER NOT NULL DEFAULT 0, floor_seq INTEGER NOT NULL DEFAULT 0,"
    "  topic TEXT, topic_by TEXT, topic_ts INTEGER) WITHOUT ROWID;"
    "CREATE TABLE nick_keys (nick TEXT PRIMARY KEY, key TEXT NOT NULL,"
    "  ts INTEGER NOT NULL) WITHOUT ROWID;"
    "PRAGMA user_version = 2;";

//  1 if the database has a schema object of this name.
static int
s_has_object (zchat_store_t *store, const char *name)
{
    sqlite3_stmt *stmt = NULL;
    assert (sqlite3_prepare_v2 (store->db, "SELECT count (*) FROM sqlite_master"
                                " WHERE name = ?1", -1, &stmt, NULL) == SQLITE_OK);
    assert (sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC) == SQLITE_OK);
    assert (sqlite3_step (stmt) == SQLITE_ROW);
    int count = sqlite3_column_int (stmt, 0);
    sqlite3_finalize (stmt);
    return count;
}

static int
s_user_version (zchat_store_t *store)
{
    sqlite3_stmt *stmt = NULL;
    assert (sqlite3_prepare_v2 (store->db, "PRAGMA user_version", -1, &stmt, NULL)
            == SQLITE_OK);
    assert (sqlite3_step (stmt) == SQLITE_ROW);
    int version = sqlite3_column_int (stmt, 0);
    sqlite3_finalize (stmt);
    return version;
}

//  A nick is one nick in any ASCII case: bound in every case to the key
//  that claimed it first, counted once, released in every case. A store
//  from before that rule, holding one nick in two cases bound to two keys,
//  opens as it is: the earliest claim owns the nick in every case (ts,
//  then the spelling that sorts first), the later row is ignored and not
//  counted, and a release removes both. A file of schema 3 without the
//  index that finds nicks in any case gets it when opened.
static void
s_test_nick_case (const char *base, bool verbose)
{
    char error [256];
    char *dir = zsys_sprintf ("%s/nickcase", base);
    assert (dir);
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (s_has_object (store, "nick_keys_nocase") == 1);
    const char *key_a = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    const char *key_b = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    const char *key_c = "A7c>!xD$J5m2bQ:uy-Wq.N3r+KpL9vZ{eT0s@hG]";
    char key [STORE_MAX_KEY + 1];
    assert (zchat_store_nick_claim (store, "alice", key_a) == 0);
    assert (zchat_store_nick_owner (store, "ALICE", key) == 1 && streq (key, key_a));
    assert (zchat_store_nick_owner (store, "aLiCe", key) == 1 && streq (key, key_a));
    assert (zchat_store_nick_claim (store, "Alice", key_b) == -1);
    assert (zchat_store_nick_claim (store, "Alice", key_a) == 0);     //  the owner's
    assert (zchat_store_nick_count (store, key_a) == 1);
    assert (zchat_store_nick_count (store, key_b) == 0);
    assert (zchat_store_nick_claim (store, "[x]", key_b) == 0);       //  not { x }
    assert (zchat_store_nick_owner (store, "{x}", key) == 0);
    assert (zchat_store_nick_release (store, "ALICE") == 0);
    assert (zchat_store_nick_owner (store, "alice", key) == 0);
    assert (zchat_store_nick_claim (store, "Alice", key_b) == 0);
    assert (zchat_store_nick_owner (store, "alice", key) == 1 && streq (key, key_b));

    //  Rows as a broker before the rule could leave them: "Dave" (key_b)
    //  before "dave" (key_a) and "DAVE" (key_c); "Erin" and "erin" claimed
    //  in the same millisecond, by key_b and key_a ("Erin" sorts first);
    //  "fred" twice by key_a, once by key_b in between.
    const char *rows =
        "INSERT INTO nick_keys (nick, key, ts) VALUES"
        " ('dave', 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7', 200),"
        " ('Dave', 'Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID', 100),"
        " ('DAVE', 'A7c>!xD$J5m2bQ:uy-Wq.N3r+KpL9vZ{eT0s@hG]', 300),"
        " ('erin', 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7', 400),"
        " ('Erin', 'Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID', 400),"
        " ('fred', 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7', 500),"
        " ('Fred', 'Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID', 600),"
        " ('FRED', 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7', 700);"
        "DROP INDEX nick_keys_nocase;";
    assert (sqlite3_exec (store->db, rows, NULL, NULL, NULL) == SQLITE_OK);
    zchat_store_destroy (&store);
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (s_has_object (store, "nick_keys_nocase") == 1);
    assert (s_user_version (store) == STORE_SCHEMA_VERSION);
    assert (zchat_store_nick_owner (store, "dave", key) == 1 && streq (key, key_b));
    assert (zchat_store_nick_owner (store, "DAVE", key) == 1 && streq (key, key_b));
    assert (zchat_store_nick_owner (store, "erin", key) == 1 && streq (key, key_b));
    assert (zchat_store_nick_owner (store, "fRED", key) == 1 && streq (key, key_a));
    assert (zchat_store_nick_claim (store, "dave", key_a) == -1);
    assert (zchat_store_nick_claim (store, "DaVe", key_c) == -1);
    assert (zchat_store_nick_claim (store, "dAVE", key_b) == 0);
    assert (zchat_store_nick_claim (store, "ERIN", key_a) == -1);
    assert (zchat_store_nick_claim (store, "FrEd", key_b) == -1);
    //  key_a: fred; key_b: Alice, [x], Dave, Erin; key_c: nothing it can use
    assert (zchat_store_nick_count (store, key_a) == 1);
    assert (zchat_store_nick_count (store, key_b) == 4);
    assert (zchat_store_nick_count (store, key_c) == 0);
    //  A release in any case removes every row of the nick
    assert (zchat_store_nick_release (store, "DAVE") == 0);
    assert (zchat_store_nick_owner (store, "dave", key) == 0);
    assert (zchat_store_nick_claim (store, "dave", key_c) == 0);
    assert (zchat_store_nick_count (store, key_c) == 1);
    assert (zchat_store_nick_count (store, key_b) == 3);
    zchat_store_destroy (&store);
    zstr_free (&dir);
    if (verbose)
        printf (" * nicks bound in any case, old conflicting rows resolved\n");
}

//  A store written by the broker of schema version 2 opens, is upgraded in
//  place, and goes on: seqs after the newest it had, its history, its
//  message ids (a resend is still recognised), topics, nick bindings,
//  retention. Its rows are made as version 2 made them: chunks have not
//  changed, so a scratch store writes them and they are copied into a file
//  made with version 2's schema, where rooms.last_seq holds each room's
//  newest seq (version 2 wrote it at every commit).
static void
s_test_upgrade (const char *base, bool verbose)
{
    const uint64_t T = 1700000000000ull;
    char error [256];
    char *scratch = zsys_sprintf ("%s/upgrade-rows", base);
    char *dir = zsys_sprintf ("%s/upgrade", base);
    assert (scratch && dir);
    zchat_store_t *store = zchat_store_new (scratch, false, error, sizeof (error));
    assert (store);
    uint64_t id = 0;
    s_fill_at (store, "up-a", 10, T, &id);
    s_fill_at (store, "up-b", 5, T + 100, &id);
    s_fill_at (store, "up-a", 15, T + 200, &id);
    const char *key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    assert (zchat_store_topic_set (store, "up-a", "old times", "ager", T) == 0);
    assert (zchat_store_nick_claim (store, "ager", key) == 0);
    zchat_store_destroy (&store);

    assert (mkdir (dir, 0700) == 0);
    char *path = zsys_sprintf ("%s/%s", dir, STORE_DB_NAME);
    char *source = zsys_sprintf ("ATTACH '%s/%s' AS source", scratch, STORE_DB_NAME);
    assert (path && source);
    sqlite3 *db = NULL;
    assert (sqlite3_open (path, &db) == SQLITE_OK);
    assert (sqlite3_exec (db, s_schema_v2, NULL, NULL, NULL) == SQLITE_OK);
    assert (sqlite3_exec (db, source, NULL, NULL, NULL) == SQLITE_OK);
    //  "gone": retention removed all 7 of its messages (floor 8). "bare":
    //  its 9 messages were removed by hand; only rooms.last_seq is left.
    const char *copy =
        "INSERT INTO chunks SELECT * FROM source.chunks;"
        "INSERT INTO rooms SELECT * FROM source.rooms;"
        "INSERT INTO rooms (name, last_seq) SELECT room, max (last_seq) FROM chunks"
        "  WHERE true GROUP BY room"
        "  ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq;"
        "INSERT INTO rooms (name, last_seq, floor_seq) VALUES ('gone', 7, 8);"
        "INSERT INTO rooms (name, last_seq) VALUES ('bare', 9);"
        "INSERT INTO nick_keys SELECT * FROM source.nick_keys;"
        "DETACH source;";
    assert (sqlite3_exec (db, copy, NULL, NULL, NULL) == SQLITE_OK);
    assert (sqlite3_close (db) == SQLITE_OK);

    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (s_user_version (store) == STORE_SCHEMA_VERSION);
    assert (s_has_object (store, "chunks_min_ts") == 0);
    assert (s_has_object (store, "nick_keys_key") == 1);
    assert (s_has_object (store, "nick_keys_nocase") == 1);
    assert (zchat_store_last_seq (store, "up-a") == 25);
    assert (zchat_store_last_seq (store, "up-b") == 5);
    assert (zchat_store_last_seq (store, "gone") == 7);
    assert (s_first_seq (store, "gone") == 0);
    assert (zchat_store_last_seq (store, "bare") == 9);
    s_assert_history (store, "up-a", 1, 0, 100, 1, 25);
    s_assert_history (store, "up-b", 0, 0, 3, 3, 5);
    char topic [ZCHAT_MAX_TOPIC + 1], set_by [ZCHAT_MAX_NICK + 1], owner [STORE_MAX_KEY + 1];
    uint64_t topic_ts = 0;
    assert (zchat_store_topic_get (store, "up-a", topic, set_by, &topic_ts) == 1);
    assert (streq (topic, "old times") && streq (set_by, "ager") && topic_ts == T);
    assert (zchat_store_nick_owner (store, "ager", owner) == 1 && streq (owner, key));
    assert (zchat_store_nick_count (store, key) == 1);
    //  A resend of a message stored before the upgrade is recognised
    char orig_room [ZCHAT_MAX_ROOM + 1];
    uint64_t orig_seq = 0, orig_ts = 0;
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "up-b", 6, T + 999, "ager", 0, "a", 1, 13,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (streq (orig_room, "up-b") && orig_seq == 3 && orig_ts == T + 102);
    assert (zchat_store_append (store, "up-a", 25, T + 999, "ager", 0, "a", 1, 1000,
                                NULL, NULL, NULL) == -1);
    zchat_store_rollback (store);
    assert (s_fill_at (store, "up-a", 1, T + 300, &id) == 26);
    assert (s_fill_at (store, "gone", 1, T + 300, &id) == 8);
    assert (s_fill_at (store, "bare", 1, T + 300, &id) == 10);
    assert (s_first_seq (store, "gone") == 8);
    //  Retention by age, without the index version 2 had: 1 s at T+1150
    //  takes up-a's first ten (T..T+9) and all of up-b (T+100..T+104).
    int calls = 0;
    assert (s_retain_all (store, 0, 1000, T + 1150, 1000, &calls) == 15);
    assert (s_first_seq (store, "up-a") == 11);
    assert (s_first_seq (store, "up-b") == 0);
    assert (zchat_store_last_seq (store, "up-b") == 5);
    zchat_store_destroy (&store);

    //  Upgraded once: it opens as it is now.
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (s_user_version (store) == STORE_SCHEMA_VERSION);
    assert (zchat_store_last_seq (store, "up-a") == 26);
    assert (zchat_store_last_seq (store, "up-b") == 5);
    assert (zchat_store_last_seq (store, "gone") == 8);
    zchat_store_destroy (&store);
    zstr_free (&source);
    zstr_free (&path);
    zstr_free (&dir);
    zstr_free (&scratch);
    if (verbose)
        printf (" * a store of schema version 2 upgraded in place\n");
}

//  The newest seq of the rooms groups touch is remembered between groups:
//  a taken seq is refused whether the room is remembered or not, a rolled
//  back group changes nothing, and a table full at its largest is emptied
//  and fills again.
static void
s_test_newest (const char *base, bool verbose)
{
    const uint64_t T = 1700000000000ull;
    char *dir = zsys_sprintf ("%s/newest", base);
    assert (dir);
    char error [256];
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    store->newest_max = STORE_NEWEST_MIN * 2;
    uint64_t id = 0;
    char room [16];
    //  More rooms than the largest table holds: it grows once, then is
    //  emptied when full (at half its slots) and fills again.
    size_t most = 0;
    for (int i = 0; i < 3 * STORE_NEWEST_MIN; i++) {
        snprintf (room, sizeof (room), "n%d", i);
        assert (s_fill_at (store, room, 1 + i % 3, T, &id) == (uint64_t) (1 + i % 3));
        assert (store->newest_count * 2 <= store->newest_size);
        most = store->newest_count > most? store->newest_count: most;
        uint64_t known = 0;
        assert (zchat_store_newest_known (store, room, &known) == 1
                && known == (uint64_t) (1 + i % 3));
    }
    assert (store->newest_size == STORE_NEWEST_MIN * 2 && most == STORE_NEWEST_MIN);
    assert (store->newest_count < 3 * STORE_NEWEST_MIN - STORE_NEWEST_MIN);
    //  Every room, remembered or forgotten, refuses a taken seq and goes
    //  on after its newest.
    for (int i = 0; i < 3 * STORE_NEWEST_MIN; i++) {
        snprintf (room, sizeof (room), "n%d", i);
        uint64_t newest = (uint64_t) (1 + i % 3);
        assert (zchat_store_begin (store) == 0);
        assert (zchat_store_append (store, room, newest, T, "ager", 0, "a", 1, ++id,
                                    NULL, NULL, NULL) == -1);
        assert (zchat_store_append (store, room, newest + 1, T, "ager", 0, "a", 1, ++id,
                                    NULL, NULL, NULL) == 0);
        zchat_store_rollback (store);
    }
    //  A rolled back group changed nothing: seq 2 of n0 is still free.
    uint64_t known = 0;
    assert (zchat_store_newest_known (store, "n0", &known) == 0 || known == 1);
    assert (s_fill_at (store, "n0", 1, T, &id) == 2);
    assert (zchat_store_newest_known (store, "n0", &known) == 1 && known == 2);
    //  Retention that removes every message of a room leaves its newest.
    int calls = 0;
    assert (s_retain_all (store, 0, 1000, T + 2000, 10000, &calls) > 0);
    assert (s_first_seq (store, "n0") == 0);
    assert (s_fill_at (store, "n0", 1, T + 3000, &id) == 3);
    zchat_store_destroy (&store);
    zstr_free (&dir);
    if (verbose)
        printf (" * newest seqs remembered between groups\n");
}

//  Run sql on the store's own connection; it must succeed.
static void
s_exec (zchat_store_t *store, const char *sql)
{
    int rc = sqlite3_exec (store->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        fprintf (stderr, "%s: %s\n", sql, sqlite3_errmsg (store->db));
        assert (false);
    }
}

//  A read that fails is an error, never "none": the oldest seq, the topic
//  and a nick's owner are -1 when their statement fails (a renamed column
//  breaks just the statements that name it), when the file holds a topic
//  or key over its limit, or when the chunk the floor cuts through does
//  not decode; and they read as before once the store is whole again.
static void
s_test_read_errors (const char *base, bool verbose)
{
    const uint64_t T = 1700000000000ull;
    char *dir = zsys_sprintf ("%s/read-errors", base);
    assert (dir);
    char error [256];
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    s_fill (store, "lobby", 5, T, 1000);
    assert (zchat_store_topic_set (store, "lobby", "kept", "alice", T) == 0);
    char topic [ZCHAT_MAX_TOPIC + 1], set_by [ZCHAT_MAX_NICK + 1];
    uint64_t ts = 0, first_seq = 0;

    s_exec (store, "ALTER TABLE rooms RENAME COLUMN topic TO topic_away");
    assert (zchat_store_topic_get (store, "lobby", topic, set_by, &ts) == -1);
    assert (streq (topic, "") && streq (set_by, "") && ts == 0);
    assert (zchat_store_topic_get (store, "never", topic, set_by, &ts) == -1);
    assert (s_first_seq (store, "lobby") == 1);
    s_exec (store, "ALTER TABLE rooms RENAME COLUMN topic_away TO topic");
    assert (zchat_store_topic_get (store, "lobby", topic, set_by, &ts) == 1);
    assert (streq (topic, "kept") && streq (set_by, "alice") && ts == T);
    assert (zchat_store_topic_get (store, "never", topic, set_by, &ts) == 0);

    //  A topic longer than any the store writes: the file is damaged
    s_exec (store, "UPDATE rooms SET topic = printf ('%.*c', 300, 'x')"
                   " WHERE name = 'lobby'");
    assert (zchat_store_topic_get (store, "lobby", topic, set_by, &ts) == -1);
    assert (streq (topic, "") && streq (set_by, "") && ts == 0);
    s_exec (store, "UPDATE rooms SET topic = 'kept' WHERE name = 'lobby'");

    //  The chunk lookup fails (it names min_ts), and the floor's (rooms)
    s_exec (store, "ALTER TABLE chunks RENAME COLUMN min_ts TO min_ts_away");
    first_seq = 99;
    assert (zchat_store_first_seq (store, "lobby", &first_seq) == -1 && first_seq == 0);
    assert (zchat_store_first_seq (store, "never", &first_seq) == -1);
    s_exec (store, "ALTER TABLE chunks RENAME COLUMN min_ts_away TO min_ts");
    s_exec (store, "ALTER TABLE rooms RENAME TO rooms_away");
    assert (zchat_store_first_seq (store, "lobby", &first_seq) == -1);
    s_exec (store, "ALTER TABLE rooms_away RENAME TO rooms");
    assert (s_first_seq (store, "lobby") == 1);
    assert (s_first_seq (store, "never") == 0);

    //  Seqs with holes (1, 3 .. 19) in one chunk, the floor at 10 in a
    //  hole: the oldest held, 11, is found by decoding the chunk, and a
    //  chunk that does not decode is an error.
    assert (zchat_store_begin (store) == 0);
    for (uint64_t seq = 1; seq <= 19; seq += 2)
        assert (zchat_store_append (store, "holes", seq, T, "filler", 0, "h", 1, 0,
                                    NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    int calls = 0;
    assert (s_retain_all (store, 10, 0, T, 1000, &calls) == 5);
    assert (s_first_seq (store, "holes") == 11);
    s_exec (store, "UPDATE chunks SET data = x'01' WHERE room = 'holes'");
    assert (zchat_store_first_seq (store, "holes", &first_seq) == -1 && first_seq == 0);
    assert (s_first_seq (store, "lobby") == 1);

    //  A nick's owner: bound, unbound, and a read that fails, for either.
    //  A claim that cannot read the owner back fails too.
    const char *key_a = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    char key [STORE_MAX_KEY + 1];
    assert (zchat_store_nick_claim (store, "alice", key_a) == 0);
    s_exec (store, "ALTER TABLE nick_keys RENAME COLUMN nick TO nick_away");
    strcpy (key, "stale");
    assert (zchat_store_nick_owner (store, "alice", key) == -1 && streq (key, ""));
    assert (zchat_store_nick_owner (store, "nobody", key) == -1);
    s_exec (store, "ALTER TABLE nick_keys RENAME COLUMN nick_away TO nick");
    assert (zchat_store_nick_owner (store, "alice", key) == 1 && streq (key, key_a));
    assert (zchat_store_nick_owner (store, "nobody", key) == 0 && streq (key, ""));
    //  A key longer than any the store writes: the file is damaged
    s_exec (store, "UPDATE nick_keys SET key = printf ('%.*c', 60, 'k')"
                   " WHERE nick = 'alice'");
    assert (zchat_store_nick_owner (store, "alice", key) == -1 && streq (key, ""));
    assert (zchat_store_nick_claim (store, "alice", key_a) == -1);
    s_exec (store, "UPDATE nick_keys SET key = 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7'"
                   " WHERE nick = 'alice'");
    assert (zchat_store_nick_owner (store, "alice", key) == 1 && streq (key, key_a));

    zchat_store_destroy (&store);
    zstr_free (&dir);
    if (verbose)
        printf (" * read errors are errors, not \"none\"\n");
}

//  A xorshift generator: the index test is the same on every run.
static uint64_t
s_next_random (uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

//  What the kill -9 test's child reports after each commit: the newest
//  seq of each of its two rooms.
typedef struct {
    uint64_t kept, gone;
} s_report_t;

//  The kill -9 test's child: commits groups of 1 to 3 messages to "kept"
//  (stamped far in the future, so never expired), every seventh with one
//  to "gone" (stamped long ago), and reports each commit on fd; after
//  every fifth group a retention round removes every message of "gone",
//  which so has none most of the time. Runs until killed.
static void
s_kill9_child (const char *dir, int fd)
{
    const uint64_t T = 1700000000000ull;
    char error [256];
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    if (!store)
        _exit (1);
    uint64_t kept = zchat_store_last_seq (store, "kept");
    uint64_t gone = zchat_store_last_seq (store, "gone");
    for (uint64_t n = 0; ; n++) {
        if (zchat_store_begin (store))
            _exit (1);
        for (uint64_t i = 0; i <= n % 3; i++) {
            kept++;
            if (zchat_store_append (store, "kept", kept, T + 1000000000000ull + kept,
                                    "killer", 0, "k", 1, kept, NULL, NULL, NULL))
                _exit (1);
        }
        if (n % 7 == 0) {
            gone++;
            if (zchat_store_append (store, "gone", gone, T + gone, "killed", 0, "g", 1,
                                    gone, NULL, NULL, NULL))
                _exit (1);
        }
        if (zchat_store_commit (store))
            _exit (1);
        s_report_t report = { kept, gone };
        if (write (fd, &report, sizeof (report)) != (ssize_t) sizeof (report))
            _exit (1);
        if (n % 5 == 4 && zchat_store_retain (store, 0, 1000, T + 1000000, 100000) < 0)
            _exit (1);
    }
}

//  kill -9 at any point of a stream of commits and retention rounds: what
//  was committed is there, every room's seqs run without holes up to its
//  newest, and numbering goes on after the newest, also for a room whose
//  every message retention had removed: no seq is handed out twice.
static void
s_test_kill9 (const char *base, bool verbose)
{
    char *dir = zsys_sprintf ("%s/kill9", base);
    assert (dir);
    char error [256];
    uint64_t state = 0x5EED0F9ull;
    s_report_t last = { 0, 0 };
    for (int round = 0; round < 8; round++) {
        int fds [2];
        assert (pipe (fds) == 0);
        fflush (NULL);
        pid_t child = fork ();
        assert (child >= 0);
        if (child == 0) {
            close (fds [0]);
            s_kill9_child (dir, fds [1]);
        }
        close (fds [1]);
        //  Let it commit a while, then kill it wherever it is: in a
        //  commit, a retention round, or between them.
        int reports = 5 + (int) (s_next_random (&state) % 60);
        s_report_t report;
        for (int i = 0; i < reports; i++) {
            assert (read (fds [0], &report, sizeof (report)) == (ssize_t) sizeof (report));
            last = report;
        }
        struct timespec pause = { 0, (long) (s_next_random (&state) % 2000) * 1000 };
        nanosleep (&pause, NULL);
        assert (kill (child, SIGKILL) == 0);
        int status = 0;
        assert (waitpid (child, &status, 0) == child);
        assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
        while (read (fds [0], &report, sizeof (report)) == (ssize_t) sizeof (report))
            last = report;
        close (fds [0]);

        //  Every reported commit is there; the one in progress may be too.
        zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
        assert (store);
        uint64_t kept = zchat_store_last_seq (store, "kept");
        uint64_t gone = zchat_store_last_seq (store, "gone");
        assert (kept >= last.kept && kept <= last.kept + 3);
        assert (gone == last.gone || (gone == last.gone + 1 && kept > last.kept));
        if (verbose && s_first_seq (store, "gone") == 0)
            printf ("\n   killed with every message of gone removed");
        s_assert_history (store, "kept", 1, 0, 64, 1, kept < 64? kept: 64);
        s_assert_history (store, "kept", 0, 0, 64, kept > 63? kept - 63: 1, kept);
        uint64_t first = s_first_seq (store, "gone");
        if (first)
            s_assert_history (store, "gone", first, 0, 64, first, gone);
        last.kept = kept;
        last.gone = gone;
        zchat_store_destroy (&store);
    }
    zstr_free (&dir);
    if (verbose)
        printf (" * kill -9 mid-stream, %" PRIu64 " and %" PRIu64 " seqs\n",
                last.kept, last.gone);
}

//  Append count messages to room from seq first on, in the open group.
static void
s_append_run (zchat_store_t *store, const char *room, uint64_t first, int count)
{
    for (int i = 0; i < count; i++)
        assert (zchat_store_append (store, room, first + (uint64_t) i, 1700000000000ull,
                                    "early", 0, "p", 1, 0, NULL, NULL, NULL) == 0);
}

//  Fork a child that opens the store, runs steps, and dies by SIGKILL
//  before it can commit or close; wait for it.
static void
s_die_after (const char *dir, void (*steps) (zchat_store_t *))
{
    char error [256];
    fflush (NULL);
    pid_t child = fork ();
    assert (child >= 0);
    if (child == 0) {
        zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
        if (!store)
            _exit (1);
        steps (store);
        kill (getpid (), SIGKILL);
        _exit (1);
    }
    int status = 0;
    assert (waitpid (child, &status, 0) == child);
    assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
}

//  A committed group, then one published (durability off) and never
//  committed: a3 b1 stored, a4..a6 and c1..c2 out.
static void
s_published_steps (zchat_store_t *store)
{
    assert (zchat_store_begin (store) == 0);
    s_append_run (store, "a", 1, 3);
    s_append_run (store, "b", 1, 1);
    assert (zchat_store_commit (store) == 0);
    assert (zchat_store_begin (store) == 0);
    s_append_run (store, "a", 4, 3);
    s_append_run (store, "c", 1, 2);
    assert (zchat_store_publishing (store) == 0);
}

//  A published group whose commit fails (a8), then another published one
//  (d1) cut short by death: the record of the first must survive the
//  second's.
static void
s_failed_steps (zchat_store_t *store)
{
    assert (zchat_store_begin (store) == 0);
    s_append_run (store, "a", 8, 1);
    assert (zchat_store_publishing (store) == 0);
    zchat_store_rollback (store);
    assert (zchat_store_begin (store) == 0);
    s_append_run (store, "d", 1, 1);
    assert (zchat_store_publishing (store) == 0);
}

//  Durability off: seqs published before their commit are never handed
//  out again, whether the process dies before the commit or the commit
//  fails, and the record of them (zchat.published) is gone once
//  everything it named is stored or written down as skipped.
static void
s_test_published (const char *base, bool verbose)
{
    char error [256];
    char *dir = zsys_sprintf ("%s/published", base);
    assert (dir);
    char *path = zsys_sprintf ("%s/%s", dir, ZCHAT_PUBLISHED_FILE);
    assert (path);

    //  Death between publishing and commit: numbering goes on past what
    //  went out, history holds only what was stored, and the open drops
    //  the record
    s_die_after (dir, s_published_steps);
    assert (access (path, F_OK) == 0);
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (access (path, F_OK) != 0);
    assert (zchat_store_last_seq (store, "a") == 6);
    assert (zchat_store_last_seq (store, "b") == 1);
    assert (zchat_store_last_seq (store, "c") == 2);
    s_assert_history (store, "a", 1, 0, 64, 1, 3);
    s_assert_history (store, "c", 1, 0, 64, 0, 0);
    //  The next message takes the next seq; a clean close after a
    //  published group that committed leaves no record
    assert (zchat_store_begin (store) == 0);
    s_append_run (store, "a", 7, 1);
    assert (zchat_store_publishing (store) == 0);
    assert (access (path, F_OK) == 0);
    assert (zchat_store_commit (store) == 0);
    zchat_store_destroy (&store);
    assert (access (path, F_OK) != 0);

    //  A failed commit, then death: both groups' rooms go on past theirs
    s_die_after (dir, s_failed_steps);
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (zchat_store_last_seq (store, "a") == 8);
    assert (zchat_store_last_seq (store, "d") == 1);
    s_assert_history (store, "a", 1, 6, 64, 1, 3);
    s_assert_history (store, "a", 4, 0, 64, 7, 7);

    //  A failed commit, then one that succeeds (durable, so not published
    //  itself): it writes the failed group's seqs down, and then the
    //  record can go
    assert (zchat_store_begin (store) == 0);
    s_append_run (store, "a", 9, 1);
    s_append_run (store, "e", 1, 1);
    assert (zchat_store_publishing (store) == 0);
    zchat_store_rollback (store);
    //  its seqs are used all the same: a room opened anew numbers past them
    assert (zchat_store_last_seq (store, "a") == 9);
    assert (zchat_store_last_seq (store, "e") == 1);
    assert (zchat_store_begin (store) == 0);
    s_append_run (store, "d", 2, 1);
    assert (zchat_store_commit (store) == 0);
    assert (zchat_store_last_seq (store, "a") == 9);
    assert (zchat_store_last_seq (store, "e") == 1);
    zchat_store_destroy (&store);
    assert (access (path, F_OK) != 0);
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (zchat_store_last_seq (store, "a") == 9);
    assert (zchat_store_last_seq (store, "e") == 1);
    assert (zchat_store_last_seq (store, "d") == 2);

    //  A close with a published group's seqs not yet written down keeps
    //  the record for the next open
    assert (zchat_store_begin (store) == 0);
    s_append_run (store, "f", 1, 4);
    assert (zchat_store_publishing (store) == 0);
    zchat_store_rollback (store);
    zchat_store_destroy (&store);
    assert (access (path, F_OK) == 0);
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (zchat_store_last_seq (store, "f") == 4);
    zchat_store_destroy (&store);

    //  A record that is not whole (cut short, or not ours) is not read,
    //  and does not keep the store from opening
    FILE *file = fopen (path, "w");
    assert (file);
    assert (fwrite ("ZPB1\x0b\0\0\0\x01g", 1, 10, file) == 10);
    assert (fclose (file) == 0);
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (access (path, F_OK) != 0);
    assert (zchat_store_last_seq (store, "g") == 0);
    assert (zchat_store_last_seq (store, "a") == 9);
    zchat_store_destroy (&store);

    zstr_free (&path);
    zstr_free (&dir);
    if (verbose)
        printf (" * durability off: published seqs kept past a crash and a failed commit\n");
}

//  The idempotency index on its own, with key hashes made up to reach
//  the corners (a home bucket that overflows, spill counts stuck at their
//  top, the ring wrapping around), then through appends: runs of ids from
//  several senders, a window much smaller than what is sent, and a
//  rollback.
static void
s_test_index (const char *base, bool verbose)
{
    const uint64_t T0 = 1700000000000ull;
    char error [256];
    char *dir = zsys_sprintf ("%s/index", base);
    assert (dir);
    zchat_store_t *store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    assert (zchat_store_keys_check (store) == 0);
    uint64_t state = 0x1D3A5EEDull;

    //  600 keys with one home bucket: they fill it and the buckets after
    //  it, and the home's spill count sticks at its top. Each is found
    //  once, and so is a duplicate hash, twice.
    size_t home_mask = store->buckets - 1;
    uint64_t home = 77 & home_mask;
    uint64_t crowd [600];
    for (size_t i = 0; i < 600; i++) {
        crowd [i] = (s_next_random (&state) & ~(uint64_t) home_mask) | home;
        zchat_store_keys_add (store, crowd [i], 1000 + (int64_t) i);
    }
    assert (store->spill [home] == STORE_SPILL_STUCK);
    assert (zchat_store_keys_check (store) == 0);
    for (size_t i = 0; i < 600; i++)
        assert (zchat_store_keys_count (store, crowd [i]) == 1);
    zchat_store_keys_add (store, crowd [599], 2000);
    assert (zchat_store_keys_count (store, crowd [599]) == 2);

    //  A window of 500 forgets the oldest 101; the stuck count stays and
    //  lookups still end.
    store->keys_max = 500;
    zchat_store_keys_add (store, crowd [0] ^ (1ull << 40), 2001);
    assert (store->keys_head - store->keys_tail == 500);
    assert (zchat_store_keys_check (store) == 0);
    for (size_t i = 0; i < 102; i++)
        assert (zchat_store_keys_count (store, crowd [i]) == 0);
    for (size_t i = 102; i < 599; i++)
        assert (zchat_store_keys_count (store, crowd [i]) == 1);
    assert (zchat_store_keys_count (store, crowd [599]) == 2);

    //  The ring wraps around many times at its smallest size, with keys
    //  spread over every bucket; checked as it goes.
    store->keys_max = store->keys_limit;
    size_t limit = store->keys_limit;
    uint64_t *spread = (uint64_t *) malloc (5 * limit * sizeof (uint64_t));
    assert (spread);
    for (size_t i = 0; i < 5 * limit; i++) {
        spread [i] = s_next_random (&state);
        zchat_store_keys_add (store, spread [i], 3000 + (int64_t) i);
        if (i % 1000 == 0)
            assert (zchat_store_keys_check (store) == 0);
    }
    assert (store->keys_limit == limit);
    assert (zchat_store_keys_check (store) == 0);
    for (size_t i = 4 * limit - 10; i < 4 * limit + 10; i++)
        assert (zchat_store_keys_count (store, spread [i]) == (i >= 4 * limit));
    for (size_t i = 5 * limit - 100; i < 5 * limit; i++)
        assert (zchat_store_keys_count (store, spread [i]) == 1);
    free (spread);

    //  Growing: the index is rebuilt at each size
    store->keys_max = STORE_KEYS_MAX;
    for (size_t i = 0; i < 3 * limit; i++)
        zchat_store_keys_add (store, s_next_random (&state), 9000);
    assert (store->keys_limit == 4 * limit);
    assert (zchat_store_keys_check (store) == 0);
    zchat_store_destroy (&store);

    //  Through appends: 4 senders with ids counting up from different
    //  starts, interleaved in runs of 1 to 40, in groups of about 300; the
    //  window (1,000) is far smaller than what is sent (6,000). Every id
    //  in the window is recognised with its original seq, none before it.
    store = zchat_store_new (dir, false, error, sizeof (error));
    assert (store);
    store->keys_max = 1000;
    const char *nicks [4] = { "ann", "bo", "cyrus-the-long-named-sender", "d" };
    uint64_t next_id [4] = { 1, 15, 1ull << 40, 0xFFFFFFFFFFFFF000ull };
    uint64_t *sent_id = (uint64_t *) malloc (6000 * sizeof (uint64_t));
    int *sent_by = (int *) malloc (6000 * sizeof (int));
    assert (sent_id && sent_by);
    uint64_t seq = 0;
    size_t in_group = 0;
    assert (zchat_store_begin (store) == 0);
    while (seq < 6000) {
        int who = (int) (s_next_random (&state) % 4);
        int run = 1 + (int) (s_next_random (&state) % 40);
        for (int k = 0; k < run && seq < 6000; k++) {
            sent_id [seq] = next_id [who]++;
            sent_by [seq] = who;
            seq++;
            assert (zchat_store_append (store, "idx", seq, T0, nicks [who], 0, "i", 1,
                                        sent_id [seq - 1], NULL, NULL, NULL) == 0);
            if (++in_group == 300) {
                assert (zchat_store_commit (store) == 0);
                assert (zchat_store_begin (store) == 0);
                in_group = 0;
            }
        }
    }
    assert (zchat_store_keys_check (store) == 0);
    char orig_room [ZCHAT_MAX_ROOM + 1];
    uint64_t orig_seq = 0, orig_ts = 0;
    for (uint64_t at = 5000; at < 6000; at++) {
        assert (zchat_store_append (store, "idx", 6001, T0, nicks [sent_by [at]], 0,
                                    "i", 1, sent_id [at],
                                    orig_room, &orig_seq, &orig_ts) == 1);
        assert (orig_seq == at + 1 && streq (orig_room, "idx"));
    }
    //  Just outside the window: stored again, as a new message
    assert (zchat_store_append (store, "idx", 6001, T0, nicks [sent_by [4999]], 0,
                                "i", 1, sent_id [4999], NULL, NULL, NULL) == 0);
    //  A rollback takes the group's keys out again
    zchat_store_rollback (store);
    assert (zchat_store_keys_check (store) == 0);
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "idx", 6001, T0, nicks [sent_by [4999]], 0,
                                "i", 1, sent_id [4999], NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    free (sent_id);
    free (sent_by);
    zchat_store_destroy (&store);
    zstr_free (&dir);
    if (verbose)
        printf (" * idempotency index: crowded buckets, wrap-around, runs of ids\n");
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
        char *sql = zsys_sprintf ("EXPLAIN QUERY PLAN %s", zchat_store_sql [i]);
        assert (sql);
        sqlite3_stmt *plan = NULL;
        assert (sqlite3_prepare_v2 (store->db, sql, -1, &plan, NULL) == SQLITE_OK);
        while (sqlite3_step (plan) == SQLITE_ROW) {
            const char *detail = (const char *) sqlite3_column_text (plan, 3);
            if (verbose)
                printf ("\n   %s: %s", zchat_store_sql [i], detail);
            assert (strncmp (detail, "SCAN", 4) != 0 || streq (detail, "SCAN CONSTANT ROW"));
        }
        sqlite3_finalize (plan);
        zstr_free (&sql);
    }

    //  Empty store.
    assert (zchat_store_last_seq (store, "lobby") == 0);
    assert (s_first_seq (store, "lobby") == 0);
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
    assert (s_first_seq (store, "lobby") == 1);
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
    assert (zchat_store_topic_get (store, "lobby", topic, set_by, &topic_ts) == 0);
    assert (streq (topic, "") && streq (set_by, "") && topic_ts == 0);
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
    assert (zchat_store_nick_owner (store, "alice", key) == 0 && streq (key, ""));
    assert (zchat_store_nick_claim (store, "alice", key_a) == 0);
    assert (zchat_store_nick_claim (store, "alice", key_a) == 0);      //  again: fine
    assert (zchat_store_nick_claim (store, "alice", key_b) == -1);     //  taken
    assert (zchat_store_nick_claim (store, "bob", key_b) == 0);
    assert (zchat_store_nick_claim (store, "carol", key_a) == 0);
    assert (zchat_store_nick_release (store, "carol") == 0);
    assert (zchat_store_nick_owner (store, "carol", key) == 0);
    assert (zchat_store_nick_release (store, "carol") == 0);           //  unowned: fine
    assert (zchat_store_nick_count (store, key_a) == 1);
    assert (zchat_store_nick_count (store, key_b) == 1);
    assert (zchat_store_nick_claim (store, "carol", key_b) == 0);
    assert (zchat_store_nick_count (store, key_b) == 2);
    assert (zchat_store_nick_release (store, "carol") == 0);
    assert (zchat_store_nick_count (store, key_b) == 1);
    assert (zchat_store_nick_count (store, "nobody") == 0);

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
    assert (s_first_seq (store, "lobby") == 1);
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
    assert (zchat_store_topic_get (store, "lobby", topic, set_by, &topic_ts) == 1);
    assert (streq (topic, "Welcome \xe2\x98\x95") && streq (set_by, "alice") && topic_ts == T0);
    assert (zchat_store_topic_get (store, "long", topic, set_by, &topic_ts) == 1);
    assert (strlen (topic) == ZCHAT_MAX_TOPIC);
    assert (zchat_store_nick_owner (store, "alice", key) == 1 && streq (key, key_a));
    assert (zchat_store_nick_owner (store, "bob", key) == 1 && streq (key, key_b));
    assert (zchat_store_nick_owner (store, "carol", key) == 0 && streq (key, ""));

    //  Retention by count: big has 100 (one chunk), keep 20.
    s_fill (store, "big", 100, T0, 1000);
    s_fill (store, "small", 5, T0, 2000);
    //  Not while a group is open.
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_retain (store, 20, 0, T0, 30) == 0);
    zchat_store_rollback (store);
    assert (s_first_seq (store, "big") == 1);
    //  The floor moves exactly, through the middle of the chunk.
    assert (zchat_store_retain (store, 20, 0, T0, 30) == 80);
    assert (s_first_seq (store, "big") == 81);
    assert (zchat_store_retain (store, 20, 0, T0, 30) == 0);
    assert (zchat_store_last_seq (store, "big") == 100);
    s_assert_history (store, "big", 1, 0, 100, 81, 100);
    s_assert_history (store, "big", 0, 0, 5, 96, 100);
    assert (s_first_seq (store, "small") == 1);
    assert (s_first_seq (store, "lobby") == 1);
    assert (zchat_store_last_seq (store, "small") == 5);

    //  Retention by age: aged has ts T0+1000..T0+1049 (seq 1..50). With a
    //  1 s limit at T0+2024, ts < T0+1024 is expired: seq 1..24.
    s_fill (store, "aged", 50, T0 + 1000, 3000);
    //  Every older message elsewhere (lobby, ops, big, small: ts <
    //  T0+1024) goes too. lobby's seq 11..14, stamped T0+11000 and on but
    //  written before big, small and aged, are from the future as seen
    //  from T0+2024 (a clock that was ahead): the walk passes over them.
    int calls = 0;
    int total = s_retain_all (store, 0, 1000, T0 + 2024, 7, &calls);
    assert (s_first_seq (store, "aged") == 25);
    assert (zchat_store_last_seq (store, "aged") == 50);
    s_assert_history (store, "aged", 1, 0, 100, 25, 50);
    //  lobby's ts are T0+1000 * seq: only seq 1 (T0+1000) is older.
    assert (s_first_seq (store, "lobby") == 2);
    //  ops (T0+1..6), small (T0..T0+4) and big (T0+80..99) are all older.
    assert (s_first_seq (store, "ops") == 0);
    assert (s_first_seq (store, "small") == 0);
    assert (s_first_seq (store, "big") == 0);
    assert (total == 24 + 1 + 6 + 5 + 20);

    //  A clock that went back: skew's seq 20 is stamped older than 1..19.
    //  Its expiry takes the whole prefix 1..20 (never leaving a hole).
    assert (zchat_store_begin (store) == 0);
    for (uint64_t seq = 1; seq <= 20; seq++)
        assert (zchat_store_append (store, "skew", seq, seq < 20? T0 + 50000: T0 + 500,
                                    "filler", 0, "x", 1, 8000 + seq, NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    assert (zchat_store_retain (store, 0, 1000, T0 + 2024, 7) == 20);
    assert (zchat_store_retain (store, 0, 1000, T0 + 2024, 7) == 0);
    assert (s_first_seq (store, "skew") == 0);
    assert (zchat_store_last_seq (store, "skew") == 20);

    //  Both rules together, then everything expires: numbering goes on.
    //  Keep 10: aged loses 25..40, lobby (2..14) loses 2..4.
    assert (zchat_store_retain (store, 10, 0, T0, 1000) == 16 + 3);
    assert (s_first_seq (store, "aged") == 41);
    assert (s_first_seq (store, "lobby") == 5);
    s_retain_all (store, 5, 1, UINT64_MAX / 2, 4, &calls);
    const char *rooms [] = { "lobby", "ops", "big", "small", "aged" };
    const uint64_t lasts [] = { 14, 6, 100, 5, 50 };
    for (size_t i = 0; i < 5; i++) {
        assert (s_first_seq (store, rooms [i]) == 0);
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
    assert (s_first_seq (store, "big") == 101);
    assert (zchat_store_last_seq (store, "big") == 101);
    assert (zchat_store_topic_get (store, "quiet", topic, set_by, &topic_ts) == 1);
    assert (streq (topic, "nobody here") && streq (set_by, "bob"));

    //  Many rooms in one group: the touched-rooms table grows. What
    //  their chunk buffers keep afterwards is bounded.
    store->pending_keep = 20000;
    assert (zchat_store_begin (store) == 0);
    for (int i = 0; i < 300; i++) {
        char room [16];
        snprintf (room, sizeof (room), "r%d", i);
        for (uint64_t seq = 1; seq <= 2; seq++)
            assert (zchat_store_append (store, room, seq, T0, "filler", 0, "x", 1,
                                        5000 + (uint64_t) i * 2 + seq, NULL, NULL, NULL) == 0);
    }
    assert (store->pending_bytes > 300 * 1024);
    assert (zchat_store_commit (store) == 0);
    assert (store->pending_bytes <= 20000 && store->pending_bytes > 0);
    //  Count retention visits rooms round robin, a bounded number a call.
    int count;
    total = 0;
    calls = 0;
    while ((count = zchat_store_retain (store, 1, 0, T0, 50)) > 0) {
        assert (count <= 50);
        total += count;
        assert (++calls < 100);
    }
    assert (total == 300 + 0);              //  r0..r299 lose seq 1; big keeps 101
    assert (s_first_seq (store, "r299") == 2);
    zchat_store_destroy (&store);

    //  A fresh store for chunk boundaries, bounded retention, holes, the
    //  idempotency window and damaged data.
    char *dir2 = zsys_sprintf ("%s/second", base);
    assert (dir2);
    store = zchat_store_new (dir2, false, error, sizeof (error));
    assert (store);

    //  Bounded work: "many" has 40 chunks of 2 messages. Keeping 10 takes
    //  35 chunks; each call deletes at most 7, the last call stops exactly.
    for (int i = 0; i < 40; i++)
        s_fill (store, "many", 2, T0 + 1000000000 + (uint64_t) i * 2, 20000 + (uint64_t) i * 2);
    total = 0;
    calls = 0;
    while ((count = zchat_store_retain (store, 10, 0, T0, 7)) > 0) {
        assert (count <= 14);
        total += count;
        assert (++calls < 100);
    }
    assert (total == 70 && calls == 5);
    assert (s_first_seq (store, "many") == 71);
    s_assert_history (store, "many", 1, 0, 100, 71, 80);
    s_assert_history (store, "many", 0, 0, 100, 71, 80);


    //  One group larger than a chunk: 40 texts of 4000 bytes are written
    //  as several chunks, some during the group. The group's messages are
    //  visible to history and to retries before the commit, in memory and
    //  in the chunks already written.
    char *long_text = (char *) malloc (4000);
    assert (long_text);
    assert (zchat_store_begin (store) == 0);
    for (uint64_t seq = 1; seq <= 40; seq++) {
        memset (long_text, 'a' + (int) (seq % 26), 4000);
        assert (zchat_store_append (store, "long", seq, T0 + seq, "writer", 0,
                                    long_text, 4000, 700 + seq, NULL, NULL, NULL) == 0);
    }
    assert (zchat_store_append (store, "long", 41, T0, "writer", 0, "x", 1, 701,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (streq (orig_room, "long") && orig_seq == 1 && orig_ts == T0 + 1);
    assert (zchat_store_append (store, "long", 41, T0, "writer", 0, "x", 1, 740,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (orig_seq == 40 && orig_ts == T0 + 40);
    s_long_t checked = { 0, 0 };
    assert (zchat_store_history (store, "long", 0, 0, 5, s_check_long, &checked) == 5);
    assert (checked.first == 36 && checked.last == 40);
    assert (s_first_seq (store, "long") == 1);
    assert (zchat_store_commit (store) == 0);
    free (long_text);
    checked.first = checked.last = 0;
    assert (zchat_store_history (store, "long", 1, 0, 100, s_check_long, &checked) == 40);
    assert (checked.first == 1 && checked.last == 40);
    checked.first = checked.last = 0;
    assert (zchat_store_history (store, "long", 0, 17, 10, s_check_long, &checked) == 10);
    assert (checked.first == 8 && checked.last == 17);
    sqlite3_stmt *query = NULL;
    assert (sqlite3_prepare_v2 (store->db, "SELECT count(*) FROM chunks WHERE room = 'long'",
                                -1, &query, NULL) == SQLITE_OK);
    assert (sqlite3_step (query) == SQLITE_ROW);
    assert (sqlite3_column_int (query, 0) >= 3);
    sqlite3_finalize (query);

    //  The same by age: "old" has 20 chunks of 3, all expired.
    for (int i = 0; i < 20; i++)
        s_fill (store, "old", 3, T0 + (uint64_t) i * 3, 21000 + (uint64_t) i * 3);
    total = s_retain_all (store, 0, 1000, T0 + 1000000, 5, &calls);
    //  long's ts T0+1..40 expire with it: 40 more in 3 chunks. many's 5
    //  chunks, written first but stamped after now, are passed over at a
    //  cost of one each: the first call does only that, 23 chunks at most
    //  5 a call take 5 more; then the walk starts over, passes over many
    //  again, and the eighth call finds nothing after it.
    assert (total == 60 + 40 && calls == 8);
    assert (s_first_seq (store, "old") == 0);
    assert (s_first_seq (store, "long") == 0);
    assert (zchat_store_last_seq (store, "old") == 60);
    assert (s_first_seq (store, "many") == 71);

    //  Seqs with holes (the store allows them; the broker never makes
    //  them): counting falls back to decoding.
    assert (zchat_store_begin (store) == 0);
    for (uint64_t seq = 1; seq <= 19; seq += 2)
        assert (zchat_store_append (store, "holes", seq, T0 + 1000000000, "filler", 0,
                                    "h", 1, 0, NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    s_seen_t holes = { 0 };
    assert (zchat_store_history (store, "holes", 0, 0, 3, s_collect, &holes) == 3);
    assert (holes.seq [0] == 15 && holes.seq [2] == 19);
    memset (&holes, 0, sizeof (holes));
    assert (zchat_store_history (store, "holes", 0, 12, 2, s_collect, &holes) == 2);
    assert (holes.seq [0] == 9 && holes.seq [1] == 11);
    //  Keep the newest 10 seqs (10..19): five messages go, the floor is
    //  in a hole, and the oldest message held is 11.
    assert (zchat_store_retain (store, 10, 0, T0, 1000) == 5);
    assert (s_first_seq (store, "holes") == 11);
    memset (&holes, 0, sizeof (holes));
    assert (zchat_store_history (store, "holes", 1, 0, 100, s_collect, &holes) == 5);
    assert (holes.seq [0] == 11 && holes.seq [4] == 19);
    memset (&holes, 0, sizeof (holes));
    assert (zchat_store_history (store, "holes", 0, 0, 100, s_collect, &holes) == 5);
    assert (holes.seq [0] == 11);

    //  The idempotency window: with room for 4 ids, the oldest are
    //  forgotten (a resend is stored again), the newest recognised.
    store->keys_max = 4;
    assert (zchat_store_begin (store) == 0);
    for (uint64_t seq = 1; seq <= 6; seq++)
        assert (zchat_store_append (store, "win", seq, T0, "w", 0, "w", 1, seq,
                                    NULL, NULL, NULL) == 0);
    assert (store->keys_head - store->keys_tail == 4);
    assert (zchat_store_append (store, "win", 7, T0, "w", 0, "w", 1, 6,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (orig_seq == 6);
    assert (zchat_store_append (store, "win", 7, T0, "w", 0, "w", 1, 1,
                                NULL, NULL, NULL) == 0);
    assert (zchat_store_commit (store) == 0);
    //  After a restart every retained chunk is read again: all of them.
    zchat_store_destroy (&store);
    store = zchat_store_new (dir2, false, error, sizeof (error));
    assert (store);
    assert (zchat_store_begin (store) == 0);
    assert (zchat_store_append (store, "win", 8, T0, "w", 0, "w", 1, 2,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (orig_seq == 2);
    assert (zchat_store_append (store, "win", 8, T0, "w", 0, "w", 1, 1,
                                orig_room, &orig_seq, &orig_ts) == 1);
    assert (orig_seq == 7);
    //  Ids of messages retention removed are free again.
    assert (zchat_store_append (store, "old", 61, T0, "filler", 0, "x", 1, 21000,
                                NULL, NULL, NULL) == 0);
    zchat_store_rollback (store);

    //  A damaged chunk is an error, never a crash; start-up skips it.
    assert (sqlite3_exec (store->db, "UPDATE chunks SET data = x'0000000100000002ff01'"
                          " WHERE room = 'holes'", NULL, NULL, NULL) == SQLITE_OK);
    memset (&holes, 0, sizeof (holes));
    assert (zchat_store_history (store, "holes", 1, 0, 100, s_collect, &holes) == -1);
    assert (sqlite3_exec (store->db, "UPDATE chunks SET data = x'01' WHERE room = 'many'",
                          NULL, NULL, NULL) == SQLITE_OK);
    assert (zchat_store_history (store, "many", 75, 0, 100, s_collect, &holes) == -1);
    zchat_store_destroy (&store);
    store = zchat_store_new (dir2, false, error, sizeof (error));
    assert (store);
    zchat_store_destroy (&store);
    zstr_free (&dir2);

    s_test_checkpoints (base, verbose);
    s_test_gate (base, verbose);
    s_test_index (base, verbose);
    s_test_pages (base, verbose);
    s_test_age_walk (base, verbose);
    s_test_upgrade (base, verbose);
    s_test_nick_case (base, verbose);
    s_test_kill9 (base, verbose);
    s_test_published (base, verbose);
    s_test_newest (base, verbose);
    s_test_read_errors (base, verbose);

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

    //  A version 1 database (one row per message) is refused, clearly.
    char *dir3 = zsys_sprintf ("%s/version1", base);
    assert (dir3 && mkdir (dir3, 0700) == 0);
    char *path3 = zsys_sprintf ("%s/%s", dir3, STORE_DB_NAME);
    sqlite3 *old_db = NULL;
    assert (sqlite3_open (path3, &old_db) == SQLITE_OK);
    assert (sqlite3_exec (old_db, "CREATE TABLE messages (id INTEGER PRIMARY KEY);"
                          " PRAGMA user_version = 1;", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close (old_db);
    assert (zchat_store_new (dir3, false, error, sizeof (error)) == NULL);
    assert (strstr (error, "schema version 1") && strstr (error, path3));
    zstr_free (&path3);
    zstr_free (&dir3);

    //  Clean everything up.
    assert (nftw (base, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    assert (stat (base, &st) == -1 && errno == ENOENT);
    zstr_free (&dir);

    if (verbose)
        printf ("OK\n");
}
