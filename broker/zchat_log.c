//  zchat_log — one switch for the broker's debug logging (see zchat_log.h).

#include "zchat_log.h"

static bool s_verbose = false;

//  ---------------------------------------------------------------------
//  Turn debug logging on or off for the whole process.

void
zchat_log_set_verbose (bool verbose)
{
    s_verbose = verbose;
}

//  ---------------------------------------------------------------------
//  True if debug logging is on.

bool
zchat_log_verbose (void)
{
    return s_verbose;
}
