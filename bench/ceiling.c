//  zchat-ceiling — the raw libzmq ceiling on its own: a minimal
//  DEALER -> ROUTER -> PUB -> SUB forwarder with S sender and R subscriber
//  processes. zchat-bench runs the same code beside zchat; this program is
//  for looking at the ceiling alone.
//
//  zchat-ceiling [--senders S] [--subscribers R] [--size BYTES]
//                [--messages N] [--rate MSGS_PER_S] [--hwm N]
//                [--sub-procs P] [--timeout SECONDS] [--json]

#include "bench.h"

static void
s_usage (FILE *file)
{
    fprintf (file,
        "usage: zchat-ceiling [--senders S] [--subscribers R] [--size BYTES]\n"
        "                     [--messages N] [--rate MSGS_PER_S] [--hwm N]\n"
        "                     [--sub-procs P] [--timeout SECONDS] [--json]\n"
        "  --messages is per sender; --rate is the total over all senders\n"
        "  (0 = as fast as possible); --hwm is the PUB/SUB high-water mark\n"
        "  (0 = unlimited, the default: the ceiling then never drops).\n");
}

//  Parse a whole number in [min, max]; -1 if it is not one.
static long
s_number (const char *text, long min, long max)
{
    char *end = NULL;
    long value = text? strtol (text, &end, 10): -1;
    if (!text || end == text || *end || value < min || value > max)
        return -1;
    return value;
}

int
main (int argc, char **argv)
{
    if (argc > 2 && streq (argv [1], "--role")) {
        zsys_init ();
        return bench_ceiling_role (argv [2], argc, argv);
    }
    bench_params_t params = {
        .senders = 1, .subscribers = 1, .size = 64, .messages = 100000,
        .rate = 0, .window = 0, .hwm = 0, .timeout_s = 120
    };
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        const char *value = i + 1 < argc? argv [i + 1]: NULL;
        long number = -2;
        if (streq (arg, "--json"))
            json = true;
        else
        if (streq (arg, "--help") || streq (arg, "-h")) {
            s_usage (stdout);
            return 0;
        }
        else
        if (streq (arg, "--senders"))
            params.senders = (int) (number = s_number (value, 1, BENCH_MAX_SENDERS));
        else
        if (streq (arg, "--subscribers"))
            params.subscribers = (int) (number = s_number (value, 1, 100000));
        else
        if (streq (arg, "--sub-procs"))
            params.sub_procs = (int) (number = s_number (value, 1, 1000));
        else
        if (streq (arg, "--size"))
            params.size = (int) (number = s_number (value, BENCH_MIN_SIZE, 65536));
        else
        if (streq (arg, "--messages"))
            params.messages = number = s_number (value, 1, 100000000);
        else
        if (streq (arg, "--hwm"))
            params.hwm = (int) (number = s_number (value, 0, 100000000));
        else
        if (streq (arg, "--timeout"))
            params.timeout_s = (int) (number = s_number (value, 1, 3600));
        else
        if (streq (arg, "--rate")) {
            char *end = NULL;
            params.rate = value? strtod (value, &end): -1;
            number = (!value || end == value || *end || params.rate < 0)? -1: 0;
        }
        else {
            fprintf (stderr, "zchat-ceiling: unknown option '%s'\n", arg);
            s_usage (stderr);
            return 2;
        }
        if (number == -1) {
            fprintf (stderr, "zchat-ceiling: bad value for %s\n", arg);
            return 2;
        }
        if (number != -2)
            i++;
    }
    zsys_init ();
    bench_side_t *side = bench_side_new ();
    int rc = bench_ceiling_run (&params, side);
    if (json) {
        cJSON *root = cJSON_CreateObject ();
        cJSON_AddNumberToObject (root, "senders", params.senders);
        cJSON_AddNumberToObject (root, "subscribers", params.subscribers);
        cJSON_AddNumberToObject (root, "size", params.size);
        cJSON_AddNumberToObject (root, "messages", (double) params.messages);
        cJSON_AddNumberToObject (root, "rate", params.rate);
        cJSON_AddItemToObject (root, "ceiling", bench_side_json (side));
        char *text = cJSON_Print (root);
        if (text)
            printf ("%s\n", text);
        free (text);
        cJSON_Delete (root);
    }
    else
        bench_side_print (side, "ceiling", stdout);
    if (rc)
        fprintf (stderr, "zchat-ceiling: %s\n", side->status);
    bench_side_destroy (&side);
    return rc? 1: 0;
}
