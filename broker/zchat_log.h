//  zchat_log — one switch for the broker's debug logging.
//
//  czmq's zsys_debug always prints, so per-message diagnostics need a gate
//  of their own: a flood of bad input must cost a branch, not a log line.
//  The broker's -v turns the switch on; zsys_info and above stay
//  unconditional and are used only for rare things (session start/end,
//  storage failures, periodic summaries).

#ifndef ZCHAT_LOG_H_INCLUDED
#define ZCHAT_LOG_H_INCLUDED

#include <stdbool.h>

//  Turn debug logging on or off for the whole process (default off).
void
    zchat_log_set_verbose (bool verbose);

//  True if debug logging is on.
bool
    zchat_log_verbose (void);

//  Log at debug level only when verbose; the arguments are not evaluated
//  otherwise, so callers may format freely.
#define ZCHAT_DEBUG(...) \
    do { if (zchat_log_verbose ()) zsys_debug (__VA_ARGS__); } while (0)

#endif
