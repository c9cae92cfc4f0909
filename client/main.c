//  zchat — the command-line client: chat in a terminal, or script zchat
//  with --send, --listen and --json. This file only picks the mode; the
//  modes live in zchat_cli_*.c, on the public libzchat API.

#include "zchat_cli.h"

//  A hangup (terminal closed, ssh dropped) ends the client like SIGTERM:
//  goodbye said, so the nick is free at once, not held for the broker's
//  session timeout. czmq catches only SIGINT and SIGTERM.
static void
s_on_hangup (int signum)
{
    (void) signum;
    zsys_interrupted = 1;
}

int
main (int argc, char **argv)
{
    zchat_cli_opts_t opts;
    int exit_code = zchat_cli_opts_parse (&opts, argc, argv);
    if (exit_code || opts.help)
        return exit_code;
    //  czmq's own log lines would break the one-line-per-failure rule.
    zsys_set_logstream (NULL);
    //  A reader of our output that goes away is a write error to report
    //  (and a goodbye to say), not a silent death by SIGPIPE.
    signal (SIGPIPE, SIG_IGN);
    struct sigaction hangup = { .sa_handler = s_on_hangup };
    sigemptyset (&hangup.sa_mask);
    sigaction (SIGHUP, &hangup, NULL);
    if (opts.send)
        exit_code = zchat_cli_send_run (&opts);
    else
    if (opts.listen)
        exit_code = zchat_cli_listen_run (&opts);
    else
    if (opts.json)
        exit_code = zchat_cli_json_run (&opts);
    else
        //  Line editing only when both ends are a terminal: with stdout
        //  redirected, the edit line would land in the file.
        exit_code = zchat_cli_interactive_run (&opts,
                        isatty (STDIN_FILENO) && isatty (STDOUT_FILENO));
    return exit_code;
}
