//  zchat-selftest — runs the self test of every module (the x_test
//  functions that live beside the code they test).
//
//  zchat-selftest [-v] [-t NAME]...   run all, or only the named modules
//  Prints one line per module and exits non-zero if any failed: a module
//  test asserts, so a failure aborts; the runner (tests/run.py) counts it.

#include <czmq.h>
#include "zchat_msg.h"
#include "zchat_msgpool.h"
#include "zchat_store.h"
#include "zchat_published.h"
#include "zchat_walvfs.h"
#include "zchat_arena.h"
#include "zchat_server.h"
#include "zchat_session.h"
#include "zchat_room.h"
#include "zchat_auth.h"
#include "zchat_broker.h"
#include "zchat_util.h"
#include "zchat_client.h"
#include "zchat_idmap.h"
#include "zchat_sequencer.h"
#include "zchat_outbox.h"
#include "zchat_client_room.h"
#include "zchat_client_int.h"

typedef struct {
    const char *name;
    void (*test) (bool verbose);
} test_t;

static test_t s_tests [] = {
    { "zchat_msg",       zchat_msg_test },
    { "zchat_msgpool",   zchat_msgpool_test },
    { "zchat_arena",     zchat_arena_test },
    { "zchat_util",      zchat_util_test },
    { "zchat_walvfs",    zchat_walvfs_test },
    { "zchat_published", zchat_published_test },
    { "zchat_store",     zchat_store_test },
    { "zchat_session",   zchat_session_test },
    { "zchat_room",      zchat_room_test },
    { "zchat_server",    zchat_server_test },
    { "zchat_auth",      zchat_auth_test },
    { "zchat_broker",    zchat_broker_test },
    { "zchat_idmap",     zchat_idmap_test },
    { "zchat_sequencer", zchat_sequencer_test },
    { "zchat_outbox",    zchat_outbox_test },
    { "zchat_event",     zchat_event_test },
    { "zchat_client_room", zchat_client_room_test },
    { "zchat_client",    zchat_client_test },
};
#define TEST_COUNT (sizeof (s_tests) / sizeof (s_tests [0]))

static bool
s_selected (const char *name, int argc, char **argv)
{
    bool any = false;
    for (int i = 1; i < argc; i++)
        if (streq (argv [i], "-t") && i + 1 < argc) {
            any = true;
            if (streq (argv [i + 1], name))
                return true;
        }
    return !any;
}

int
main (int argc, char **argv)
{
#ifdef NDEBUG
    //  The module tests check with assert, many of them by calling the code
    //  under test inside it: compiled out, they would pass doing nothing
    (void) argc;
    (void) argv;
    fprintf (stderr, "zchat-selftest: built with NDEBUG, so its asserts are gone;"
                     " build it without -DNDEBUG to run the self tests\n");
    return 1;
#endif
    bool verbose = false;
    for (int i = 1; i < argc; i++)
        if (streq (argv [i], "-v"))
            verbose = true;
    //  Tests run in this process; keep czmq from installing signal handlers
    //  that would mask a hung test from the runner's timeout.
    zsys_handler_set (NULL);
    int ran = 0;
    for (size_t i = 0; i < TEST_COUNT; i++) {
        if (!s_selected (s_tests [i].name, argc, argv))
            continue;
        printf ("selftest %s ...\n", s_tests [i].name);
        fflush (stdout);
        s_tests [i].test (verbose);
        printf ("selftest %s: OK\n", s_tests [i].name);
        fflush (stdout);
        ran++;
    }
    if (ran == 0) {
        fprintf (stderr, "zchat-selftest: no such test\n");
        return 2;
    }
    return 0;
}
