//  bench_report — one side of a run (zchat or the ceiling) as JSON or as
//  a few lines of text. Latencies are reported in microseconds.

#include "bench.h"

static double
s_us (uint64_t ns)
{
    return (double) ns / 1000.0;
}

static cJSON *
s_percentiles (const bench_hist_t *hist)
{
    cJSON *object = cJSON_CreateObject ();
    if (!object)
        return NULL;
    cJSON_AddNumberToObject (object, "count", (double) hist->count);
    if (hist->count == 0) {
        //  Nothing measured: null, never a made-up zero.
        cJSON_AddNullToObject (object, "p50");
        cJSON_AddNullToObject (object, "p90");
        cJSON_AddNullToObject (object, "p99");
        cJSON_AddNullToObject (object, "p999");
        cJSON_AddNullToObject (object, "max");
        cJSON_AddNullToObject (object, "mean");
        return object;
    }
    cJSON_AddNumberToObject (object, "p50", s_us (bench_hist_quantile (hist, 0.50)));
    cJSON_AddNumberToObject (object, "p90", s_us (bench_hist_quantile (hist, 0.90)));
    cJSON_AddNumberToObject (object, "p99", s_us (bench_hist_quantile (hist, 0.99)));
    cJSON_AddNumberToObject (object, "p999", s_us (bench_hist_quantile (hist, 0.999)));
    cJSON_AddNumberToObject (object, "max", s_us (hist->max));
    cJSON_AddNumberToObject (object, "mean", bench_hist_mean (hist) / 1000.0);
    return object;
}

//  --------------------------------------------------------------------------
//  Every figure of one side. The caller owns the object.

cJSON *
bench_side_json (const bench_side_t *self)
{
    cJSON *object = cJSON_CreateObject ();
    if (!object)
        return NULL;
    cJSON_AddBoolToObject (object, "ran", self->ran);
    cJSON_AddStringToObject (object, "status", self->status);
    if (!self->ran)
        return object;
    cJSON_AddNumberToObject (object, "messages", (double) self->messages);
    cJSON_AddNumberToObject (object, "accepted", (double) self->accepted);
    cJSON_AddNumberToObject (object, "msgs_per_s", self->msgs_per_s);
    cJSON_AddNumberToObject (object, "deliveries_expected",
                             (double) self->expected_deliveries);
    cJSON_AddNumberToObject (object, "deliveries", (double) self->deliveries);
    cJSON_AddNumberToObject (object, "deliveries_per_s", self->deliveries_per_s);
    cJSON_AddNumberToObject (object, "lost", (double) self->lost);
    cJSON_AddNumberToObject (object, "duplicated", (double) self->duplicated);
    cJSON_AddNumberToObject (object, "repaired", (double) self->repaired);
    cJSON_AddNumberToObject (object, "gaps", (double) self->gaps);
    cJSON_AddNumberToObject (object, "send_errors", (double) self->send_errors);
    cJSON_AddNumberToObject (object, "accept_s", self->accept_s);
    cJSON_AddNumberToObject (object, "deliver_s", self->deliver_s);
    cJSON_AddItemToObject (object, "latency_us", s_percentiles (self->lat));
    cJSON_AddItemToObject (object, "ack_latency_us", s_percentiles (self->ack));
    cJSON_AddNumberToObject (object, "sender_cpu_s", self->sender_cpu_s);
    cJSON_AddNumberToObject (object, "receiver_cpu_s", self->receiver_cpu_s);
    cJSON_AddNumberToObject (object, "server_cpu_s", self->server_cpu_s);
    cJSON_AddNumberToObject (object, "server_cpu_pct", self->server_cpu_pct);
    cJSON_AddNumberToObject (object, "server_peak_rss_kb", (double) self->server_hwm_kb);
    cJSON_AddNumberToObject (object, "server_rss_kb", (double) self->server_rss_kb);
    if (self->flood_acked) {
        cJSON_AddNumberToObject (object, "flood_acked", (double) self->flood_acked);
        cJSON_AddNumberToObject (object, "flood_msgs_per_s", self->flood_msgs_per_s);
    }
    return object;
}

static void
s_print_hist (FILE *file, const char *label, const bench_hist_t *hist)
{
    if (hist->count == 0) {
        fprintf (file, "  %-13s n/a\n", label);
        return;
    }
    fprintf (file, "  %-13s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f us"
             "  (n=%llu)\n", label,
             s_us (bench_hist_quantile (hist, 0.50)),
             s_us (bench_hist_quantile (hist, 0.90)),
             s_us (bench_hist_quantile (hist, 0.99)),
             s_us (bench_hist_quantile (hist, 0.999)),
             s_us (hist->max), (unsigned long long) hist->count);
}

//  --------------------------------------------------------------------------
//  A few lines for a human.

void
bench_side_print (const bench_side_t *self, const char *name, FILE *file)
{
    if (!self->ran) {
        fprintf (file, "%s: not measured (%s)\n", name, self->status);
        return;
    }
    fprintf (file, "%s: %s\n", name, self->status);
    fprintf (file, "  accepted      %llu of %llu msgs, %.0f msgs/s\n",
             (unsigned long long) self->accepted,
             (unsigned long long) self->messages, self->msgs_per_s);
    fprintf (file, "  delivered     %llu of %llu, %.0f deliveries/s\n",
             (unsigned long long) self->deliveries,
             (unsigned long long) self->expected_deliveries,
             self->deliveries_per_s);
    fprintf (file, "  completeness  lost %llu  duplicated %llu  repaired %llu"
             "  gaps %llu  send errors %llu\n",
             (unsigned long long) self->lost,
             (unsigned long long) self->duplicated,
             (unsigned long long) self->repaired,
             (unsigned long long) self->gaps,
             (unsigned long long) self->send_errors);
    s_print_hist (file, "latency", self->lat);
    s_print_hist (file, "ack latency", self->ack);
    fprintf (file, "  server        cpu %.2f s (%.0f %%), peak rss %ld kB\n",
             self->server_cpu_s, self->server_cpu_pct, self->server_hwm_kb);
    fprintf (file, "  clients       cpu %.2f s senders, %.2f s subscribers\n",
             self->sender_cpu_s, self->receiver_cpu_s);
    if (self->flood_acked)
        fprintf (file, "  flooder       %llu acked, %.0f msgs/s\n",
                 (unsigned long long) self->flood_acked, self->flood_msgs_per_s);
}
