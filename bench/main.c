//  zchat-bench — measures zchat beside the raw libzmq ceiling, in the same
//  run, on the same machine, with every message accounted for.
//
//  It starts its own broker (build/zchat-broker beside this program) on
//  free loopback ports with a temporary data directory, or uses --server;
//  then S sender and R subscriber processes talk through libzchat. The
//  same S, R, size, count and rate then go through a minimal zmq_msg_t
//  forwarder of the broker's shape (the ceiling). See bench/README.md.
//
//  Exit status: 0 when every message was delivered exactly once; 1 when
//  zchat lost or duplicated a message or left a send unacknowledged (the
//  reason is printed); 2 usage error; 3 a run could not be carried out.

#include "bench.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DURABLE_OFF_ARGS    "--durable off"

typedef struct {
    bench_params_t params;
    bool    json;
    const char *csv;
    const char *label;
    const char *cdf;
    int     runs;
    bool    zchat;
    bool    ceiling;
    int     idle_clients;
    int     idle_procs;
    int     idle_hold;
    int     idle_room_size;
} s_options_t;

static void
s_usage (FILE *file)
{
    fprintf (file,
"usage: zchat-bench [options]\n"
"  --senders S          sender processes (1)\n"
"  --subscribers R      subscribers (1); over 100 they share 20 processes\n"
"  --sub-procs P        subscriber processes (default: one per subscriber)\n"
"  --size BYTES         message text size, >= %d (64)\n"
"  --messages N         messages per sender (100000)\n"
"  --rate MSGS_PER_S    total send rate over all senders, 0 = flat out (0)\n"
"  --window W           unacknowledged sends per zchat sender (2048)\n"
"  --durable on|off     off: broker started with '%s' (on)\n"
"  --durable-off-args A broker arguments that turn durable commit off\n"
"  --broker-args A      extra arguments for our broker (space-separated); it\n"
"                       already has --query-budget scaled to our clients / 4\n"
"  --server ENDPOINT    use this broker instead of starting one\n"
"  --hwm N              ceiling PUB/SUB high-water mark, 0 = none (0)\n"
"  --runs K             repeat K times; figures are medians (1)\n"
"  --zchat-only, --ceiling-only\n"
"  --flooder            add one sender flooding flat out (fairness)\n"
"  --senders-receive    the senders are the receivers (fairness)\n"
"  --idle-clients N     only measure broker memory with N idle clients\n"
"  --idle-procs P       processes to spread them over (N/1000)\n"
"  --idle-hold S        idle seconds before measuring (4; libzmq's queues\n"
"                       reach their steady size after ~14 min of pings)\n"
"  --idle-room-size K   idle clients follow rooms of K members each (0: none,\n"
"                       so each holds only its DEALER connection)\n"
"  --timeout SECONDS    bound on each side of a run (120)\n"
"  --json               one JSON document on stdout\n"
"  --csv FILE           append one row per run (header if new)\n"
"  --cdf PREFIX         write latency CDFs to PREFIX-zchat.dat, -ceiling.dat\n"
"  --label TEXT         scenario name for the CSV\n",
             BENCH_MIN_SIZE, DURABLE_OFF_ARGS);
}

static long
s_number (const char *text, long min, long max)
{
    char *end = NULL;
    long value = text? strtol (text, &end, 10): -1;
    if (!text || end == text || *end || value < min || value > max)
        return -1;
    return value;
}

//  Long options; the whole-number ones come first, in the order of the
//  table in s_parse.
enum {
    OPT_SENDERS = 256, OPT_SUBSCRIBERS, OPT_SUB_PROCS, OPT_SIZE, OPT_WINDOW,
    OPT_HWM, OPT_TIMEOUT, OPT_RUNS, OPT_IDLE_CLIENTS, OPT_IDLE_PROCS, OPT_IDLE_HOLD,
    OPT_IDLE_ROOM_SIZE,
    OPT_MESSAGES, OPT_RATE, OPT_DURABLE, OPT_DURABLE_OFF_ARGS, OPT_BROKER_ARGS,
    OPT_SERVER, OPT_CSV, OPT_CDF, OPT_LABEL, OPT_JSON, OPT_ZCHAT_ONLY,
    OPT_CEILING_ONLY, OPT_FLOODER, OPT_SENDERS_RECEIVE
};

static const struct option s_long_options [] = {
    { "senders",          required_argument, NULL, OPT_SENDERS },
    { "subscribers",      required_argument, NULL, OPT_SUBSCRIBERS },
    { "sub-procs",        required_argument, NULL, OPT_SUB_PROCS },
    { "size",             required_argument, NULL, OPT_SIZE },
    { "window",           required_argument, NULL, OPT_WINDOW },
    { "hwm",              required_argument, NULL, OPT_HWM },
    { "timeout",          required_argument, NULL, OPT_TIMEOUT },
    { "runs",             required_argument, NULL, OPT_RUNS },
    { "idle-clients",     required_argument, NULL, OPT_IDLE_CLIENTS },
    { "idle-procs",       required_argument, NULL, OPT_IDLE_PROCS },
    { "idle-hold",        required_argument, NULL, OPT_IDLE_HOLD },
    { "idle-room-size",   required_argument, NULL, OPT_IDLE_ROOM_SIZE },
    { "messages",         required_argument, NULL, OPT_MESSAGES },
    { "rate",             required_argument, NULL, OPT_RATE },
    { "durable",          required_argument, NULL, OPT_DURABLE },
    { "durable-off-args", required_argument, NULL, OPT_DURABLE_OFF_ARGS },
    { "broker-args",      required_argument, NULL, OPT_BROKER_ARGS },
    { "server",           required_argument, NULL, OPT_SERVER },
    { "csv",              required_argument, NULL, OPT_CSV },
    { "cdf",              required_argument, NULL, OPT_CDF },
    { "label",            required_argument, NULL, OPT_LABEL },
    { "json",             no_argument,       NULL, OPT_JSON },
    { "zchat-only",       no_argument,       NULL, OPT_ZCHAT_ONLY },
    { "ceiling-only",     no_argument,       NULL, OPT_CEILING_ONLY },
    { "flooder",          no_argument,       NULL, OPT_FLOODER },
    { "senders-receive",  no_argument,       NULL, OPT_SENDERS_RECEIVE },
    { "verbose",          no_argument,       NULL, 'v' },
    { "help",             no_argument,       NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

//  Returns 0, or 2 on a usage error (message printed).
static int
s_parse (s_options_t *options, int argc, char **argv)
{
    bench_params_t *params = &options->params;
    //  The whole-number options, from OPT_SENDERS on: where each goes, its
    //  range.
    const struct { int *target; long min, max; } counts [] = {
        { &params->senders,       1, 1000 },
        { &params->subscribers,   1, 100000 },
        { &params->sub_procs,     1, 1000 },
        { &params->size,          BENCH_MIN_SIZE, 65536 },
        { &params->window,        1, 1000000 },
        { &params->hwm,           0, 100000000 },
        { &params->timeout_s,     1, 3600 },
        { &options->runs,         1, 1000 },
        { &options->idle_clients, 1, 1000000 },
        { &options->idle_procs,   1, 1000 },
        { &options->idle_hold,    1, 86400 },
        { &options->idle_room_size, 0, 100000 },
    };
    const int count_options = (int) (sizeof (counts) / sizeof (counts [0]));
    opterr = 0;                     //  our own messages, with the hint
    int option, index = -1;
    while ((option = getopt_long (argc, argv, ":vh", s_long_options, &index)) != -1) {
        const char *value = optarg;
        bool bad = false;
        if (option >= OPT_SENDERS && option < OPT_SENDERS + count_options) {
            long number = s_number (value, counts [option - OPT_SENDERS].min,
                                    counts [option - OPT_SENDERS].max);
            *counts [option - OPT_SENDERS].target = (int) number;
            bad = number < 0;
        }
        else
        switch (option) {
            case OPT_MESSAGES:
                params->messages = s_number (value, 1, 100000000);
                bad = params->messages < 0;
                break;
            case OPT_RATE: {
                char *end = NULL;
                params->rate = strtod (value, &end);
                bad = end == value || *end || params->rate < 0;
                break;
            }
            case OPT_DURABLE:
                bad = !streq (value, "on") && !streq (value, "off");
                params->durable = streq (value, "on");
                break;
            case OPT_DURABLE_OFF_ARGS:  params->durable_off_args = value; break;
            case OPT_BROKER_ARGS:       params->broker_args = value; break;
            case OPT_SERVER:            params->server = value; break;
            case OPT_CSV:               options->csv = value; break;
            case OPT_CDF:               options->cdf = value; break;
            case OPT_LABEL:             options->label = value; break;
            case OPT_JSON:              options->json = true; break;
            case OPT_ZCHAT_ONLY:        options->ceiling = false; break;
            case OPT_CEILING_ONLY:      options->zchat = false; break;
            case OPT_FLOODER:           params->flooder = true; break;
            case OPT_SENDERS_RECEIVE:   params->senders_receive = true; break;
            case 'v':                   params->verbose = true; break;
            case 'h':
                s_usage (stdout);
                exit (0);
            case ':':
                fprintf (stderr, "zchat-bench: bad or missing value for %s\n",
                         argv [optind - 1]);
                return 2;
            default:
                fprintf (stderr, "zchat-bench: unknown option '%s' (try --help)\n",
                         argv [optind - 1]);
                return 2;
        }
        if (bad) {
            fprintf (stderr, "zchat-bench: bad value '%s' for --%s\n", value,
                     s_long_options [index].name);
            return 2;
        }
        index = -1;
    }
    if (optind < argc) {
        fprintf (stderr, "zchat-bench: unexpected argument '%s' (try --help)\n",
                 argv [optind]);
        return 2;
    }
    if (!options->zchat && !options->ceiling) {
        fprintf (stderr, "zchat-bench: --zchat-only and --ceiling-only exclude each other\n");
        return 2;
    }
    if (params->server && !params->durable) {
        fprintf (stderr, "zchat-bench: --durable off needs our own broker, not --server\n");
        return 2;
    }
    if (params->flooder && params->senders + 1 > BENCH_MAX_SENDERS) {
        fprintf (stderr, "zchat-bench: too many senders\n");
        return 2;
    }
    if (options->idle_clients && params->server) {
        fprintf (stderr, "zchat-bench: --idle-clients measures our own broker, not --server\n");
        return 2;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Medians over runs. Each run's figures are a cJSON object; the summary
//  takes, figure by figure, the median over the runs that measured it,
//  and the sum for the correctness counts (a loss in any run must show).

static bool
s_summed (const char *name)
{
    return streq (name, "lost") || streq (name, "duplicated")
        || streq (name, "repaired") || streq (name, "gaps")
        || streq (name, "send_errors");
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y? -1: x > y? 1: 0;
}

static cJSON *
s_json_median (cJSON **objects, int count)
{
    //  The template is the first object that ran; strings and booleans
    //  come from it.
    cJSON *first = NULL;
    for (int i = 0; i < count && !first; i++)
        if (objects [i])
            first = objects [i];
    if (!first)
        return cJSON_CreateNull ();
    if (!cJSON_IsObject (first))
        return cJSON_Duplicate (first, true);
    cJSON *result = cJSON_CreateObject ();
    double *values = (double *) calloc ((size_t) count, sizeof (double));
    cJSON **children = (cJSON **) calloc ((size_t) count, sizeof (cJSON *));
    assert (values && children);
    cJSON *item;
    cJSON_ArrayForEach (item, first) {
        const char *name = item->string;
        if (cJSON_IsNumber (item)) {
            int n = 0;
            double sum = 0;
            for (int i = 0; i < count; i++) {
                cJSON *other = objects [i]
                             ? cJSON_GetObjectItemCaseSensitive (objects [i], name): NULL;
                if (cJSON_IsNumber (other)) {
                    values [n++] = other->valuedouble;
                    sum += other->valuedouble;
                }
            }
            qsort (values, (size_t) n, sizeof (double), s_compare_double);
            double median = n == 0? 0
                          : n % 2? values [n / 2]
                          : (values [n / 2 - 1] + values [n / 2]) / 2;
            cJSON_AddNumberToObject (result, name, s_summed (name)? sum: median);
        }
        else
        if (cJSON_IsObject (item)) {
            for (int i = 0; i < count; i++)
                children [i] = objects [i]
                             ? cJSON_GetObjectItemCaseSensitive (objects [i], name): NULL;
            cJSON_AddItemToObject (result, name, s_json_median (children, count));
        }
        else
            cJSON_AddItemToObject (result, name, cJSON_Duplicate (item, true));
    }
    free (values);
    free (children);
    return result;
}

//  --------------------------------------------------------------------------
//  One run's ratios; NULL when a side is missing.

static double
s_p99 (const bench_side_t *side)
{
    return (double) bench_hist_quantile (side->lat, 0.99) / 1000.0;
}

static cJSON *
s_ratio_json (const bench_side_t *zchat, const bench_side_t *ceiling)
{
    cJSON *ratio = cJSON_CreateObject ();
    if (zchat->ran && ceiling->ran && ceiling->msgs_per_s > 0)
        cJSON_AddNumberToObject (ratio, "throughput",
                                 zchat->msgs_per_s / ceiling->msgs_per_s);
    else
        cJSON_AddNullToObject (ratio, "throughput");
    if (zchat->ran && ceiling->ran && ceiling->deliveries_per_s > 0)
        cJSON_AddNumberToObject (ratio, "deliveries",
                                 zchat->deliveries_per_s / ceiling->deliveries_per_s);
    else
        cJSON_AddNullToObject (ratio, "deliveries");
    if (zchat->ran && ceiling->ran && ceiling->lat->count && zchat->lat->count)
        cJSON_AddNumberToObject (ratio, "p99", s_p99 (zchat) / s_p99 (ceiling));
    else
        cJSON_AddNullToObject (ratio, "p99");
    return ratio;
}

static double
s_get (cJSON *object, const char *path)
{
    //  path: "a.b.c"
    char copy [128];
    snprintf (copy, sizeof (copy), "%s", path);
    char *save = NULL;
    for (char *name = strtok_r (copy, ".", &save); name && object;
         name = strtok_r (NULL, ".", &save))
        object = cJSON_GetObjectItemCaseSensitive (object, name);
    return cJSON_IsNumber (object)? object->valuedouble: NAN;
}

//  --------------------------------------------------------------------------
//  CSV: one row per run, header when the file is new.

static const char *s_csv_columns [] = {
    "zchat.msgs_per_s", "zchat.deliveries_per_s", "zchat.lost",
    "zchat.duplicated", "zchat.repaired", "zchat.gaps", "zchat.send_errors",
    "zchat.latency_us.p50", "zchat.latency_us.p90", "zchat.latency_us.p99",
    "zchat.latency_us.p999", "zchat.latency_us.max",
    "zchat.ack_latency_us.p50", "zchat.ack_latency_us.p90",
    "zchat.ack_latency_us.p99", "zchat.ack_latency_us.p999",
    "zchat.ack_latency_us.max", "zchat.server_cpu_pct",
    "zchat.server_peak_rss_kb", "zchat.flood_msgs_per_s",
    "ceiling.msgs_per_s", "ceiling.deliveries_per_s", "ceiling.lost",
    "ceiling.latency_us.p50", "ceiling.latency_us.p90",
    "ceiling.latency_us.p99", "ceiling.latency_us.p999",
    "ceiling.latency_us.max", "ceiling.server_cpu_pct",
    "ceiling.server_peak_rss_kb",
    "ratio.throughput", "ratio.deliveries", "ratio.p99", NULL
};

static void
s_csv_field (FILE *file, const char *text)
{
    //  Quote anything that could break a naive reader.
    fputc ('"', file);
    for (const char *c = text; *c; c++) {
        if (*c == '"')
            fputc ('"', file);
        fputc (*c, file);
    }
    fputc ('"', file);
}

static int
s_csv_append (const char *path, const s_options_t *options, int run,
              cJSON *document)
{
    struct stat info;
    bool fresh = stat (path, &info) != 0 || info.st_size == 0;
    FILE *file = fopen (path, "a");
    if (!file)
        return -1;
    const bench_params_t *params = &options->params;
    if (fresh) {
        fprintf (file, "date,label,run,senders,subscribers,size,messages,rate,"
                       "durable,window,zchat_status,ceiling_status");
        for (int i = 0; s_csv_columns [i]; i++) {
            fputc (',', file);
            for (const char *c = s_csv_columns [i]; *c; c++)
                fputc (*c == '.'? '_': *c, file);
        }
        fputc ('\n', file);
    }
    time_t now = time (NULL);
    struct tm tm;
    char date [32];
    strftime (date, sizeof (date), "%Y-%m-%dT%H:%M:%S", localtime_r (&now, &tm));
    fprintf (file, "%s,", date);
    s_csv_field (file, options->label? options->label: "");
    fprintf (file, ",%d,%d,%d,%d,%ld,%.0f,%s,%d,", run, params->senders,
             params->subscribers, params->size, params->messages, params->rate,
             params->durable? "on": "off", params->window);
    cJSON *zstatus = cJSON_GetObjectItemCaseSensitive (
        cJSON_GetObjectItemCaseSensitive (document, "zchat"), "status");
    cJSON *cstatus = cJSON_GetObjectItemCaseSensitive (
        cJSON_GetObjectItemCaseSensitive (document, "ceiling"), "status");
    s_csv_field (file, cJSON_IsString (zstatus)? zstatus->valuestring: "not run");
    fputc (',', file);
    s_csv_field (file, cJSON_IsString (cstatus)? cstatus->valuestring: "not run");
    for (int i = 0; s_csv_columns [i]; i++) {
        double value = s_get (document, s_csv_columns [i]);
        if (isnan (value))
            fprintf (file, ",");
        else
            fprintf (file, ",%.6g", value);
    }
    fputc ('\n', file);
    return fclose (file) == 0? 0: -1;
}

static cJSON *
s_params_json (const s_options_t *options)
{
    const bench_params_t *params = &options->params;
    cJSON *object = cJSON_CreateObject ();
    cJSON_AddNumberToObject (object, "senders", params->senders);
    cJSON_AddNumberToObject (object, "subscribers", params->subscribers);
    cJSON_AddNumberToObject (object, "sub_procs",
        bench_auto_procs (params->subscribers, params->sub_procs));
    cJSON_AddNumberToObject (object, "size", params->size);
    cJSON_AddNumberToObject (object, "messages", (double) params->messages);
    cJSON_AddNumberToObject (object, "rate", params->rate);
    cJSON_AddStringToObject (object, "durable", params->durable? "on": "off");
    cJSON_AddNumberToObject (object, "window", params->window);
    cJSON_AddNumberToObject (object, "ceiling_hwm", params->hwm);
    cJSON_AddNumberToObject (object, "runs", options->runs);
    cJSON_AddBoolToObject (object, "flooder", params->flooder);
    cJSON_AddBoolToObject (object, "senders_receive", params->senders_receive);
    if (params->server)
        cJSON_AddStringToObject (object, "server", params->server);
    if (options->label)
        cJSON_AddStringToObject (object, "label", options->label);
    return object;
}

static int
s_write_cdf (const char *prefix, const char *name, const bench_hist_t *hist)
{
    if (hist->count == 0)
        return 0;
    char *path = zsys_sprintf ("%s-%s.dat", prefix, name);
    FILE *file = path? fopen (path, "w"): NULL;
    int rc = -1;
    if (file) {
        rc = bench_hist_write_cdf (hist, file);
        if (fclose (file))
            rc = -1;
    }
    zstr_free (&path);
    return rc;
}

//  --------------------------------------------------------------------------
//  Idle clients mode.

static int
s_run_idle (s_options_t *options)
{
    bench_idle_t idle;
    memset (&idle, 0, sizeof (idle));
    idle.clients = options->idle_clients;
    idle.hold_s = options->idle_hold? options->idle_hold: 4;
    idle.room_size = options->idle_room_size;
    idle.procs = options->idle_procs? options->idle_procs
               : (options->idle_clients + 999) / 1000;
    if (idle.procs > idle.clients)
        idle.procs = idle.clients;
    snprintf (idle.floor_status, sizeof (idle.floor_status), "not run");
    int rc = bench_idle_run (&options->params, &idle);
    //  Then the floor of the same shape, once the broker has gone
    if (rc == 0)
        rc = bench_floor_run (&options->params, &idle);
    double ratio = idle.floor_per_client_kb > 0?
                   idle.per_client_kb / idle.floor_per_client_kb: 0;
    if (options->json) {
        cJSON *root = cJSON_CreateObject ();
        cJSON *object = cJSON_AddObjectToObject (root, "idle");
        cJSON_AddStringToObject (object, "status", idle.status);
        cJSON_AddNumberToObject (object, "clients", idle.clients);
        cJSON_AddNumberToObject (object, "procs", idle.procs);
        cJSON_AddNumberToObject (object, "connect_s", idle.connect_s);
        cJSON_AddNumberToObject (object, "hold_s", idle.hold_s);
        cJSON_AddNumberToObject (object, "room_size", idle.room_size);
        cJSON_AddNumberToObject (object, "base_rss_kb", (double) idle.base_rss_kb);
        cJSON_AddNumberToObject (object, "rss_kb", (double) idle.rss_kb);
        cJSON_AddNumberToObject (object, "peak_rss_kb", (double) idle.hwm_kb);
        cJSON_AddNumberToObject (object, "per_client_kb", idle.per_client_kb);
        cJSON_AddNumberToObject (object, "broker_fds", idle.broker_fds);
        cJSON *floor = cJSON_AddObjectToObject (object, "floor");
        cJSON_AddStringToObject (floor, "status", idle.floor_status);
        cJSON_AddNumberToObject (floor, "base_rss_kb", (double) idle.floor_base_rss_kb);
        cJSON_AddNumberToObject (floor, "rss_kb", (double) idle.floor_rss_kb);
        cJSON_AddNumberToObject (floor, "per_client_kb", idle.floor_per_client_kb);
        cJSON_AddNumberToObject (floor, "server_fds", idle.floor_fds);
        cJSON_AddNumberToObject (floor, "pings", (double) idle.floor_pings);
        cJSON_AddNumberToObject (floor, "pings_unanswered", (double) idle.floor_unanswered);
        cJSON_AddNumberToObject (object, "ratio", ratio);
        char *text = cJSON_Print (root);
        if (text)
            printf ("%s\n", text);
        free (text);
        cJSON_Delete (root);
    }
    else {
        printf ("idle clients: %s\n", idle.status);
        printf ("  %d clients in %d processes, connected in %.1f s, idle for %d s\n",
                idle.clients, idle.procs, idle.connect_s, idle.hold_s);
        if (idle.room_size)
            printf ("  each following a room of %d of them\n", idle.room_size);
        printf ("  broker rss %ld kB before, %ld kB with them (peak %ld kB),"
                " %d fds\n", idle.base_rss_kb, idle.rss_kb, idle.hwm_kb,
                idle.broker_fds);
        printf ("  %.2f kB per idle client\n", idle.per_client_kb);
        printf ("libzmq floor: %s\n", idle.floor_status);
        printf ("  a bare ROUTER and PUB holding the same connections: rss %ld kB"
                " before, %ld kB with them, %d fds; %" PRIu64 " pings idle, %"
                PRIu64 " unanswered\n", idle.floor_base_rss_kb, idle.floor_rss_kb,
                idle.floor_fds, idle.floor_pings, idle.floor_unanswered);
        printf ("  %.2f kB per idle client; zchat %.2fx the floor\n",
                idle.floor_per_client_kb, ratio);
    }
    if (rc)
        fprintf (stderr, "zchat-bench: %s\n",
                 streq (idle.status, "ok")? idle.floor_status: idle.status);
    return rc? 3: 0;
}

//  --------------------------------------------------------------------------

int
main (int argc, char **argv)
{
    if (argc > 2 && streq (argv [1], "--role")) {
        const char *role = argv [2];
        if (streq (role, "forwarder") || streq (role, "csender")
        ||  streq (role, "csub")) {
            zsys_init ();
            return bench_ceiling_role (role, argc, argv);
        }
        if (bench_floor_owns (role)) {
            zsys_init ();
            return bench_floor_role (role, argc, argv);
        }
        return bench_zchat_role (role, argc, argv);
    }
    s_options_t options = {
        .params = {
            .senders = 1, .subscribers = 1, .size = 64, .messages = 100000,
            .rate = 0, .window = 2048, .hwm = 0, .timeout_s = 120,
            .durable = true, .durable_off_args = DURABLE_OFF_ARGS
        },
        .runs = 1, .zchat = true, .ceiling = true
    };
    int rc = s_parse (&options, argc, argv);
    if (rc)
        return rc;
    //  Many subscribers or idle clients mean many connections for us too.
    bench_raise_nofile ();
    zsys_init ();
    if (options.idle_clients)
        return s_run_idle (&options);

    bench_params_t *params = &options.params;
    cJSON **zchat_json = (cJSON **) calloc ((size_t) options.runs, sizeof (cJSON *));
    cJSON **ceiling_json = (cJSON **) calloc ((size_t) options.runs, sizeof (cJSON *));
    cJSON **ratio_json = (cJSON **) calloc ((size_t) options.runs, sizeof (cJSON *));
    bench_hist_t *zchat_lat = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    bench_hist_t *ceiling_lat = (bench_hist_t *) zmalloc (sizeof (bench_hist_t));
    assert (zchat_json && ceiling_json && ratio_json && zchat_lat && ceiling_lat);
    cJSON *runs = cJSON_CreateArray ();
    int failures = 0;           //  correctness
    int errors = 0;             //  could not run
    char why [512] = "";

    for (int run = 0; run < options.runs && !zsys_interrupted; run++) {
        bench_side_t *zchat = bench_side_new ();
        bench_side_t *ceiling = bench_side_new ();
        if (options.zchat) {
            if (bench_zchat_run (params, zchat)) {
                if (strncmp (zchat->status, "unavailable", 11) != 0) {
                    errors++;
                    fprintf (stderr, "zchat-bench: zchat run %d: %s\n", run + 1,
                             zchat->status);
                }
            }
            else
            if (zchat->lost || zchat->duplicated
            ||  zchat->accepted < zchat->messages) {
                failures++;
                snprintf (why, sizeof (why),
                          "run %d: zchat lost %llu, duplicated %llu, acked %llu "
                          "of %llu (%s)", run + 1,
                          (unsigned long long) zchat->lost,
                          (unsigned long long) zchat->duplicated,
                          (unsigned long long) zchat->accepted,
                          (unsigned long long) zchat->messages, zchat->status);
            }
        }
        else
            snprintf (zchat->status, sizeof (zchat->status), "skipped (--ceiling-only)");
        if (options.ceiling && !zsys_interrupted) {
            if (bench_ceiling_run (params, ceiling)) {
                errors++;
                fprintf (stderr, "zchat-bench: ceiling run %d: %s\n", run + 1,
                         ceiling->status);
            }
        }
        else
            snprintf (ceiling->status, sizeof (ceiling->status), "skipped (--zchat-only)");

        zchat_json [run] = bench_side_json (zchat);
        ceiling_json [run] = bench_side_json (ceiling);
        ratio_json [run] = s_ratio_json (zchat, ceiling);
        bench_hist_merge (zchat_lat, zchat->lat);
        bench_hist_merge (ceiling_lat, ceiling->lat);
        cJSON *one = cJSON_CreateObject ();
        cJSON_AddNumberToObject (one, "run", run + 1);
        cJSON_AddItemToObject (one, "zchat", cJSON_Duplicate (zchat_json [run], true));
        cJSON_AddItemToObject (one, "ceiling", cJSON_Duplicate (ceiling_json [run], true));
        cJSON_AddItemToObject (one, "ratio", cJSON_Duplicate (ratio_json [run], true));
        if (options.csv && s_csv_append (options.csv, &options, run + 1, one))
            fprintf (stderr, "zchat-bench: cannot append to %s\n", options.csv);
        cJSON_AddItemToArray (runs, one);

        if (!options.json) {
            printf ("== run %d/%d: %d -> %d, %d B, %ld msgs/sender, rate %s, "
                    "durable %s\n", run + 1, options.runs, params->senders,
                    params->subscribers, params->size, params->messages,
                    params->rate > 0? "limited": "max",
                    params->durable? "on": "off");
            if (params->rate > 0)
                printf ("   (rate %.0f msgs/s in total)\n", params->rate);
            bench_side_print (zchat, "zchat", stdout);
            bench_side_print (ceiling, "ceiling", stdout);
            if (zchat->ran && ceiling->ran)
                printf ("ratio = zchat / ceiling: throughput %.3f, deliveries %.3f,"
                        " p99 %.3f\n", s_get (ratio_json [run], "throughput"),
                        s_get (ratio_json [run], "deliveries"),
                        s_get (ratio_json [run], "p99"));
            fflush (stdout);
        }
        bench_side_destroy (&zchat);
        bench_side_destroy (&ceiling);
    }

    int done = cJSON_GetArraySize (runs);
    cJSON *zchat_median = s_json_median (zchat_json, done);
    cJSON *ceiling_median = s_json_median (ceiling_json, done);
    cJSON *ratio_median = s_json_median (ratio_json, done);
    if (options.json) {
        cJSON *root = s_params_json (&options);
        cJSON_AddItemToObject (root, "zchat", zchat_median);
        cJSON_AddItemToObject (root, "ceiling", ceiling_median);
        cJSON_AddItemToObject (root, "ratio", ratio_median);
        cJSON_AddItemToObject (root, "runs", runs);
        cJSON_AddBoolToObject (root, "correct", failures == 0 && errors == 0);
        if (why [0])
            cJSON_AddStringToObject (root, "failure", why);
        char *text = cJSON_Print (root);
        if (text)
            printf ("%s\n", text);
        free (text);
        cJSON_Delete (root);
    }
    else {
        if (done > 1)
            printf ("== median of %d runs: zchat %.0f msgs/s, %.0f deliveries/s;"
                    " ceiling %.0f msgs/s, %.0f deliveries/s; ratio throughput"
                    " %.3f, deliveries %.3f, p99 %.3f\n", done,
                    s_get (zchat_median, "msgs_per_s"),
                    s_get (zchat_median, "deliveries_per_s"),
                    s_get (ceiling_median, "msgs_per_s"),
                    s_get (ceiling_median, "deliveries_per_s"),
                    s_get (ratio_median, "throughput"),
                    s_get (ratio_median, "deliveries"),
                    s_get (ratio_median, "p99"));
        cJSON_Delete (zchat_median);
        cJSON_Delete (ceiling_median);
        cJSON_Delete (ratio_median);
        cJSON_Delete (runs);
    }
    if (options.cdf) {
        if (s_write_cdf (options.cdf, "zchat", zchat_lat)
        ||  s_write_cdf (options.cdf, "ceiling", ceiling_lat))
            fprintf (stderr, "zchat-bench: cannot write CDF files %s-*\n", options.cdf);
    }
    for (int i = 0; i < options.runs; i++) {
        cJSON_Delete (zchat_json [i]);
        cJSON_Delete (ceiling_json [i]);
        cJSON_Delete (ratio_json [i]);
    }
    free (zchat_json);
    free (ceiling_json);
    free (ratio_json);
    free (zchat_lat);
    free (ceiling_lat);
    if (zsys_interrupted) {
        fprintf (stderr, "zchat-bench: interrupted\n");
        return 130;
    }
    if (failures) {
        fprintf (stderr, "zchat-bench: CORRECTNESS FAILURE: %s\n", why);
        return 1;
    }
    return errors? 3: 0;
}
