#!/usr/bin/python3
"""run_matrix.py - the standard zchat benchmark matrix (issue 5), plots and
the results table in bench/README.md.

Runs build/zchat-bench for each scenario (zchat and the raw libzmq
ceiling in the same run), appends every run to bench/results/<date>.csv,
draws PNG plots with gnuplot, and rewrites the table between the markers
in bench/README.md.

    /usr/bin/python3 bench/run_matrix.py [--runs K] [--budget SECONDS]
        [--fanout1000] [--idle10k] [--fairness] [--extras] [--only NAME]
        [--quick] [--no-readme]

Without options: the standard matrix (64 B and 1 KiB; 1->1, 4->4, 1->50;
durability on and off; a 10k msg/s latency run), 5 runs each, within a
9.5 minute budget (fewer runs for the last scenarios if time runs short).
The optional scenarios are separate because they are slow:
  --fanout1000   1,000 subscribers in one room (deliveries/s)
  --idle10k      10,000 idle clients over 10 processes: broker RSS per client
                 (and 9,000 if 10,000 cannot be held); then 9,000 idle
                 clients following rooms of 100
  --fairness     1 flooder + 10 normal clients, p99 with and without the
                 flooder, median of 9 runs each (issue 6)
  --extras       all three
Exit status: 0, or 1 if any run lost or duplicated a message or failed.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("BUILD", "build")
BENCH = os.path.join(ROOT, BUILD, "zchat-bench")
BROKER = os.path.join(ROOT, BUILD, "zchat-broker")
RESULTS = os.path.join(HERE, "results")
README = os.path.join(HERE, "README.md")
#  The broker's option zchat-bench's `--durable off` passes on; the
#  nodurable rows are skipped when the broker's --help does not have it.
DURABLE_OFF_SWITCH = "--durable"

#  Broker arguments for the zchat side of the standard matrix. The ceiling's
#  PUB/SUB high-water marks are unlimited (it never drops at the PUB); the
#  broker's default PUB HWM, 10,000, is the memory-safe one for production,
#  and a 4->4 or 1->50 subscriber that falls behind by that much loses runs
#  of live messages and fetches them from history, which is slower. A high
#  HWM compares like with like (measured: +20-40 % deliveries/s at 4->4,
#  never worse). Every run still reports lost and duplicated.
ZCHAT_BROKER_ARGS = "--pub-hwm 100000"

# name, senders, subscribers, size, messages per sender, rate, durable
# Counts are chosen so a zchat run takes about a second on 2 cores: runs of
# a tenth of a second (these counts divided by ten, before zchat got
# faster) were mostly start-up for both sides, and their ratios spread
# twice as wide (measured: 0.69-0.89 against 0.72-0.74 for 1to1-64B).
MATRIX = [
    ("1to1-64B-durable", 1, 1, 64, 1000000, 0, "on"),
    ("1to1-64B-nodurable", 1, 1, 64, 1000000, 0, "off"),
    ("4to4-64B-durable", 4, 4, 64, 100000, 0, "on"),
    ("4to4-64B-nodurable", 4, 4, 64, 100000, 0, "off"),
    ("1to50-64B-durable", 1, 50, 64, 20000, 0, "on"),
    ("1to50-64B-nodurable", 1, 50, 64, 20000, 0, "off"),
    ("1to1-1KiB-durable", 1, 1, 1024, 300000, 0, "on"),
    ("1to1-1KiB-nodurable", 1, 1, 1024, 300000, 0, "off"),
    ("4to4-1KiB-durable", 4, 4, 1024, 50000, 0, "on"),
    ("4to4-1KiB-nodurable", 4, 4, 1024, 50000, 0, "off"),
    ("1to50-1KiB-durable", 1, 50, 1024, 10000, 0, "on"),
    ("1to50-1KiB-nodurable", 1, 50, 1024, 10000, 0, "off"),
    ("latency-10k-64B", 1, 1, 64, 30000, 10000, "on"),
]

# Targets of issue 5, as (figure, comparison, bound).
def target_of(name):
    size_1k = "1KiB" in name
    if name.startswith("latency"):
        return ("p99", "<=", 1.5)
    if name.startswith("1to1"):
        if size_1k:
            return ("throughput", ">=", 0.8)
        return ("throughput", ">=", 0.9 if "nodurable" in name else 0.7)
    return ("deliveries", ">=", 0.8 if size_1k else 0.7)


LOAD = {}


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def log(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_bench(args, timeout):
    """Run zchat-bench with --json; return (document or None, exit code)."""
    command = [BENCH] + args + ["--json"]
    log("  $ " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a
                          for a in command))
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout,
                              cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        log("  timed out after %d s" % timeout)
        return None, -1
    if done.stderr:
        sys.stderr.write(done.stderr.decode(errors="replace"))
    try:
        return json.loads(done.stdout.decode()), done.returncode
    except ValueError:
        log("  no JSON from zchat-bench (exit %d)" % done.returncode)
        return None, done.returncode


def broker_has_durability_switch():
    try:
        out = subprocess.run([BROKER, "--help"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return DURABLE_OFF_SWITCH in out.stdout.decode(errors="replace")


def get(doc, path):
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def fmt(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return "{:,.0f}".format(value)
    return "{:.{}f}".format(value, digits)


def verdict(name, doc):
    figure, comparison, bound = target_of(name)
    value = get(doc, "ratio." + figure)
    text = "%s %s %.1f×" % ("p99" if figure == "p99" else figure,
                            "≤" if comparison == "<=" else "≥", bound)
    if value is None:
        return text, "n/a"
    met = value <= bound if comparison == "<=" else value >= bound
    return text, ("**yes**" if met else "no (%.2f)" % value)


# ---------------------------------------------------------------------------
# Plots

def gnuplot(script):
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no plots")
        return False
    done = subprocess.run(["gnuplot"], input=script.encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    if done.returncode != 0:
        log("gnuplot failed: " + done.stderr.decode(errors="replace"))
        return False
    return True


def plot_throughput(results, date):
    """Deliveries/s per fan-out, zchat beside the ceiling, durable on."""
    data = os.path.join(RESULTS, "%s-throughput.dat" % date)
    png = os.path.join(RESULTS, "%s-throughput.png" % date)
    rows = []
    for size in ("64B", "1KiB"):
        for shape, label in (("1to1", "1→1"), ("4to4", "4→4"), ("1to50", "1→50")):
            doc = results.get("%s-%s-durable" % (shape, size))
            if not doc:
                continue
            rows.append('"%s %s" %s %s' % (
                label, size.replace("KiB", " KiB").replace("64B", "64 B"),
                get(doc, "zchat.deliveries_per_s") or 0,
                get(doc, "ceiling.deliveries_per_s") or 0))
    if not rows:
        return None
    with open(data, "w") as out:
        out.write("# fan-out zchat ceiling (deliveries/s, medians)\n")
        out.write("\n".join(rows) + "\n")
    ok = gnuplot("""
set terminal pngcairo size 900,500 font ",10"
set output '%s'
set title "Deliveries/s by fan-out (durable commit on; medians of runs)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "deliveries per second"
set format y "%%.1s%%c"
set key top left
set grid ytics
plot '%s' using 2:xtic(1) title "zchat", '' using 3 title "raw libzmq ceiling"
""" % (png, data))
    return png if ok else None


def plot_cdf(prefix, date, title):
    zchat = prefix + "-zchat.dat"
    ceiling = prefix + "-ceiling.dat"
    png = os.path.join(RESULTS, "%s-latency-cdf.png" % date)
    curves = []
    if os.path.exists(zchat):
        curves.append("'%s' using 1:2 with lines lw 2 title 'zchat'" % zchat)
    if os.path.exists(ceiling):
        curves.append("'%s' using 1:2 with lines lw 2 title 'raw libzmq ceiling'"
                      % ceiling)
    if not curves:
        return None
    ok = gnuplot("""
set terminal pngcairo size 900,500 font ",10"
set output '%s'
set title "%s"
set xlabel "send → delivery latency (µs, log scale)"
set ylabel "fraction of messages"
set logscale x
set yrange [0:1]
set grid
set key bottom right
plot %s
""" % (png, title, ", ".join(curves)))
    return png if ok else None


# ---------------------------------------------------------------------------
# README table

def replace_between(text, begin, end, body):
    if begin not in text or end not in text:
        return text.rstrip("\n") + "\n\n" + begin + "\n" + body + end + "\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + begin + "\n" + body + end + tail


def matrix_table(results, unavailable, date, runs_done, plots):
    lines = []
    lines.append("Latest run: %s on %s (%d CPUs; load average %s at the "
                 "start, %s at the end: other work on the machine shows up "
                 "as noise in both columns); figures are medians of the "
                 "runs shown, ratios are medians of per-run ratios (zchat and "
                 "ceiling measured in the same run). lost/dup are summed "
                 "over all runs. Broker started with `%s` (the ceiling's "
                 "HWM is unlimited; see below)." % (
                     date, os.uname().nodename, os.cpu_count(),
                     LOAD["start"], loadavg(), ZCHAT_BROKER_ARGS))
    lines.append("")
    lines.append("| scenario | runs | zchat msgs/s | ceiling msgs/s | ratio | "
                 "zchat deliveries/s | ceiling deliveries/s | ratio | "
                 "zchat p99 µs | ceiling p99 µs | ratio | ack p99 µs | "
                 "lost | dup | repaired | broker CPU | broker peak RSS | "
                 "target | met |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
                 "---|---|---|---|")
    for entry in MATRIX:
        name = entry[0]
        if name in unavailable:
            target, _ = verdict(name, {})
            lines.append("| %s | – | %s | | | | | | | | | | | | | | | %s | "
                         "not measured |" % (name, unavailable[name], target))
            continue
        doc = results.get(name)
        if not doc:
            continue
        target, met = verdict(name, doc)
        rss = get(doc, "zchat.server_peak_rss_kb")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | "
                     "%s | %s | %s | %s | %s | %s | %s | %s |" % (
                         name, runs_done.get(name, "?"),
                         fmt(get(doc, "zchat.msgs_per_s")),
                         fmt(get(doc, "ceiling.msgs_per_s")),
                         fmt(get(doc, "ratio.throughput"), 2),
                         fmt(get(doc, "zchat.deliveries_per_s")),
                         fmt(get(doc, "ceiling.deliveries_per_s")),
                         fmt(get(doc, "ratio.deliveries"), 2),
                         fmt(get(doc, "zchat.latency_us.p99")),
                         fmt(get(doc, "ceiling.latency_us.p99")),
                         fmt(get(doc, "ratio.p99"), 2),
                         fmt(get(doc, "zchat.ack_latency_us.p99")),
                         fmt(get(doc, "zchat.lost")),
                         fmt(get(doc, "zchat.duplicated")),
                         fmt(get(doc, "zchat.repaired")),
                         "%s %%" % fmt(get(doc, "zchat.server_cpu_pct")),
                         "%s MB" % fmt(rss / 1024.0 if rss else None, 1),
                         target, met))
    lines.append("")
    for label, path in plots:
        if path:
            lines.append("![%s](results/%s)" % (label, os.path.basename(path)))
            lines.append("")
    return "\n".join(lines) + "\n"


def extras_table(extras, date):
    lines = ["Latest optional scenarios: %s." % date, ""]
    fan = extras.get("fanout1000")
    if fan:
        lines.append("**1,000 subscribers in one room** (1 sender, %s msgs): "
                     "zchat %s deliveries/s (lost %s, duplicated %s, repaired "
                     "%s, p99 %s µs), ceiling %s deliveries/s; ratio %s." % (
                         fmt(get(fan, "messages")),
                         fmt(get(fan, "zchat.deliveries_per_s")),
                         fmt(get(fan, "zchat.lost")),
                         fmt(get(fan, "zchat.duplicated")),
                         fmt(get(fan, "zchat.repaired")),
                         fmt(get(fan, "zchat.latency_us.p99")),
                         fmt(get(fan, "ceiling.deliveries_per_s")),
                         fmt(get(fan, "ratio.deliveries"), 2)))
        lines.append("")
    idle_docs = extras.get("idle", [])
    previous = extras.get("idle_previous")
    if not idle_docs and previous:
        # Not re-run this time (it is slow): the last figures, dated.
        idle_docs = previous["docs"]
        lines.append("*Idle clients: not re-run with the figures above "
                     "(`--idle10k` is slow); the last measurement, of %s:*"
                     % previous["date"])
        lines.append("")
    for idle in idle_docs:
        idle = idle.get("idle", {})
        if idle.get("status") != "ok":
            lines.append("**%s idle clients%s** over %s processes: could not be "
                         "held: %s" % (fmt(idle.get("clients")),
                                       " following rooms of %s" % fmt(idle.get("room_size"))
                                       if idle.get("room_size") else "",
                                       fmt(idle.get("procs")),
                                       idle.get("status")))
            lines.append("")
            continue
        per = idle.get("per_client_kb")
        rooms = idle.get("room_size") or 0
        lines.append("**%s idle clients%s** over %s processes (connected in %s s, "
                     "measured after %s s idle): "
                     "broker RSS %s MB → %s MB, **%s kB per idle client** "
                     "(target ≤ 15 kB: %s); %s descriptors. Status: %s." % (
                         fmt(idle.get("clients")),
                         " following rooms of %s" % fmt(rooms) if rooms
                         # results from before room_size existed had
                         # a SUB connection each, in no room
                         else " in no room" if "room_size" in idle else "",
                         fmt(idle.get("procs")),
                         fmt(idle.get("connect_s"), 1), fmt(idle.get("hold_s", 4)),
                         fmt((idle.get("base_rss_kb") or 0) / 1024.0, 1),
                         fmt((idle.get("rss_kb") or 0) / 1024.0, 1),
                         fmt(per, 1),
                         "met" if per is not None and per <= 15 else "not met",
                         fmt(idle.get("broker_fds")), idle.get("status")))
        floor = idle.get("floor") or {}
        if floor.get("status") == "ok":
            # runs from before the floor existed have none
            lines[-1] += (" The raw libzmq floor in the same run (a bare ROUTER "
                          "and PUB holding the same connections, each having "
                          "carried as much): **%s kB per client**, so zchat is "
                          "**%s× the floor**." % (fmt(floor.get("per_client_kb"), 1),
                                                  fmt(idle.get("ratio"), 2)))
        elif floor:
            lines[-1] += " The libzmq floor could not be measured: %s." % floor.get("status")
        lines.append("")
    fair = extras.get("fairness")
    if fair:
        lines.append("**Fairness** (issue 6): 10 normal clients at %s msgs/s "
                     "each, with and without one flooder sending flat out; "
                     "median of %d runs each way." % (
                         fmt(fair["rate_each"]), fair["runs"]))
        lines.append("")
        lines.append("| | normal p99 µs | normal p50 µs | normal ack p99 µs | "
                     "flooder acked msgs/s | lost | dup |")
        lines.append("|---|---|---|---|---|---|---|")
        for key, label in (("without", "without flooder"),
                           ("with", "with flooder (broker defaults: --fair-share 1000)"),
                           ("fair", "with flooder, broker --fair-share 0 (off)"),
                           ("limited", "with flooder, broker --rate-limit 1000:2000"),
                           ("wide", "with flooder of window 2,048 (broker defaults)")):
            side = fair.get(key)
            if not side:
                continue
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                label, fmt(side["p99"]), fmt(side["p50"]),
                fmt(side["ack_p99"]), fmt(side.get("flood_rate")),
                fmt(side["lost"]), fmt(side["dup"])))
        ratio = fair.get("ratio")
        lines.append("")
        lines.append("The flooder may have 512 sends unacknowledged, as when issue 6 "
                     "set the target, except in the last row.")
        lines.append("")
        lines.append("p99 with / without = %s by default (target ≤ 2: %s)." % (
            fmt(ratio, 2),
            "met" if ratio is not None and ratio <= 2 else "not met"))
        for key, label in (("fair_ratio", "--fair-share 0 (off)"),
                           ("limited_ratio", "--rate-limit 1000:2000"),
                           ("wide_ratio", "a flooder of window 2,048")):
            if fair.get(key) is not None:
                lines.append("With %s: %s (%s)." % (
                    label, fmt(fair[key], 2),
                    "met" if fair[key] <= 2 else "not met"))
        lines.append("")
    return "\n".join(lines) + "\n"


def update_readme(begin, end, body):
    text = open(README).read() if os.path.exists(README) else "# zchat benchmark\n"
    text = replace_between(text, begin, end, body)
    with open(README, "w") as out:
        out.write(text)


# ---------------------------------------------------------------------------
# Optional scenarios

def run_fairness(csv_path, runs, quick):
    rate_each = 100
    messages = 300 if quick else 500
    common = ["--zchat-only", "--senders", "10", "--senders-receive",
              "--rate", str(rate_each * 10), "--messages", str(messages),
              "--size", "64", "--csv", csv_path]
    result = {"rate_each": rate_each, "runs": runs}
    ok = True
    # The broker's defaults include the fair share (the flooder held to
    # about 1,000 msgs/s while the others talk); the third way turns it
    # off, the fourth adds the per-session rate limit. The flooder keeps
    # the window of 512 unacknowledged sends it had when issue 6 set the
    # target (zchat-bench's default became 2,048 later); the fifth way is
    # the same flooder with 2,048, which the fair share holds back less
    # well (bench/README.md, "Fairness and the flooder's window").
    flood = ["--flooder", "--window", "512"]
    for key, extra in (("without", []), ("with", flood),
                       ("fair", flood + ["--broker-args", "--fair-share 0"]),
                       ("limited", flood + ["--broker-args",
                                            "--rate-limit 1000:2000"]),
                       ("wide", ["--flooder", "--window", "2048"])):
        p99s, p50s, acks, floods, lost, dup = [], [], [], [], 0, 0
        for _ in range(runs):
            doc, code = run_bench(common + extra + ["--label",
                                                    "fairness-" + key], 120)
            if not doc or code != 0:
                ok = False
            if not doc:
                continue
            z = doc.get("zchat", {})
            if get(z, "latency_us.p99") is not None:
                p99s.append(get(z, "latency_us.p99"))
                p50s.append(get(z, "latency_us.p50"))
            if get(z, "ack_latency_us.p99") is not None:
                acks.append(get(z, "ack_latency_us.p99"))
            if z.get("flood_msgs_per_s"):
                floods.append(z["flood_msgs_per_s"])
            lost += z.get("lost") or 0
            dup += z.get("duplicated") or 0
        med = lambda values: statistics.median(values) if values else None
        result[key] = {"p99": med(p99s), "p50": med(p50s), "ack_p99": med(acks),
                       "flood_rate": med(floods), "lost": lost, "dup": dup,
                       "p99_runs": p99s}
    base = result["without"]["p99"]
    for key, name in (("with", "ratio"), ("fair", "fair_ratio"),
                      ("limited", "limited_ratio"), ("wide", "wide_ratio")):
        result[name] = result[key]["p99"] / base if result[key]["p99"] and base else None
    return result, ok


def last_idle():
    """The idle-client results of the newest extras file that has them (read
    before today's is rewritten, so an earlier run of the same day counts)."""
    names = sorted((n for n in os.listdir(RESULTS)
                    if n.endswith("-extras.json")), reverse=True)
    for name in names:
        try:
            with open(os.path.join(RESULTS, name)) as source:
                old = json.load(source)
        except (OSError, ValueError):
            continue
        if old.get("idle"):
            return {"date": name[:-len("-extras.json")], "docs": old["idle"]}
        if old.get("idle_previous"):
            return old["idle_previous"]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=570,
                        help="seconds for the standard matrix (default 570)")
    parser.add_argument("--fanout1000", action="store_true")
    parser.add_argument("--idle10k", action="store_true")
    parser.add_argument("--fairness", action="store_true")
    parser.add_argument("--extras", action="store_true")
    parser.add_argument("--extras-only", action="store_true",
                        help="skip the standard matrix")
    parser.add_argument("--only", action="append", default=[],
                        help="run only this scenario of the matrix (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="one run each, a quarter of the messages")
    parser.add_argument("--no-readme", action="store_true")
    options = parser.parse_args()
    if options.extras:
        options.fanout1000 = options.idle10k = options.fairness = True
    if options.quick:
        options.runs = 1
    for path in (BENCH, BROKER):
        if not os.access(path, os.X_OK):
            log("run_matrix: %s is missing: run make first" % path)
            return 2
    os.makedirs(RESULTS, exist_ok=True)
    LOAD["start"] = loadavg()
    date = datetime.date.today().isoformat()
    csv_path = os.path.join(RESULTS, "%s.csv" % date)
    failed = []
    start = time.time()

    if not options.extras_only:
        has_off = broker_has_durability_switch()
        matrix = [m for m in MATRIX if not options.only or m[0] in options.only]
        unavailable = {}
        results = {}
        runs_done = {}
        cdf_prefix = os.path.join(RESULTS, "%s-latency" % date)
        for index, (name, senders, subs, size, messages, rate, durable) \
                in enumerate(matrix):
            if durable == "off" and not has_off:
                unavailable[name] = ("unavailable: the broker has no `%s off`"
                                     % DURABLE_OFF_SWITCH)
                log("== %s: skipped, %s" % (name, unavailable[name]))
                continue
            if options.quick:
                messages = max(1000, messages // 4)
            # Keep within the budget: fewer runs for what is left when
            # the time so far says the full count would not fit.
            elapsed = time.time() - start
            left = len(matrix) - index
            runs = options.runs
            if index > 0 and left > 0:
                per_run = elapsed / max(1, sum(runs_done.values()))
                affordable = int((options.budget - elapsed) / (per_run * left))
                runs = max(1, min(options.runs, affordable))
            log("== %s (%d run%s)" % (name, runs, "s" if runs > 1 else ""))
            args = ["--senders", str(senders), "--subscribers", str(subs),
                    "--size", str(size), "--messages", str(messages),
                    "--rate", str(rate), "--durable", durable,
                    "--runs", str(runs), "--csv", csv_path, "--label", name,
                    "--broker-args", ZCHAT_BROKER_ARGS]
            if name.startswith("latency"):
                args += ["--cdf", cdf_prefix]
            doc, code = run_bench(args, 120 * runs + 60)
            runs_done[name] = runs
            if doc:
                results[name] = doc
                log("   zchat %s msgs/s, %s deliveries/s, p99 %s us | ceiling "
                    "%s msgs/s, %s deliveries/s, p99 %s us | lost %s dup %s" % (
                        fmt(get(doc, "zchat.msgs_per_s")),
                        fmt(get(doc, "zchat.deliveries_per_s")),
                        fmt(get(doc, "zchat.latency_us.p99")),
                        fmt(get(doc, "ceiling.msgs_per_s")),
                        fmt(get(doc, "ceiling.deliveries_per_s")),
                        fmt(get(doc, "ceiling.latency_us.p99")),
                        fmt(get(doc, "zchat.lost")),
                        fmt(get(doc, "zchat.duplicated"))))
            if code != 0:
                failed.append("%s (exit %d%s)" % (
                    name, code, ": " + doc["failure"] if doc and
                    doc.get("failure") else ""))
        log("standard matrix: %.0f s" % (time.time() - start))
        plots = [("Deliveries/s by fan-out",
                  plot_throughput(results, date)),
                 ("Latency CDF at 10k msgs/s",
                  plot_cdf(cdf_prefix, date,
                           "Send → delivery latency at 10k msgs/s, 1→1, 64 B"))]
        with open(os.path.join(RESULTS, "%s-matrix.json" % date), "w") as out:
            json.dump({"results": results, "unavailable": unavailable,
                       "runs": runs_done}, out, indent=1)
        if not options.no_readme and (results or unavailable):
            update_readme("<!-- results:begin -->", "<!-- results:end -->",
                          matrix_table(results, unavailable, date, runs_done,
                                       plots))

    extras = {}
    #  Every bench client comes from 127.0.0.1: lift the broker's default
    #  cap of 1,000 sessions per address for the scenarios that need more.
    MANY_SESSIONS = "--max-sessions-per-address 20000"
    # Fairness first: thousands of connections are still closing, and their
    # processes exiting, after the idle-client and 1,000-subscriber runs
    # return, and a fairness run after them measured that (2.69x and 2.70x
    # after the idle clients, against 1.2-1.3x when repeated at once, even
    # 15 s later; 2.56x right after the 1,000 subscribers, 1.39x alone).
    if options.fairness:
        log("== fairness: 1 flooder + 10 normal clients")
        # 9 runs each way: with 10 receivers, a flooder and the broker on
        # two cores single runs spread over 2.5-40 ms of p99 (the same
        # binaries), and medians of 5 gave 1.21x, 1.39x and 4.34x in one
        # afternoon; issue 6 asks for at least 5.
        result, ok = run_fairness(csv_path, 2 if options.quick else 9,
                                  options.quick)
        extras["fairness"] = result
        if not ok:
            failed.append("fairness")
    if options.fanout1000:
        log("== 1,000 subscribers in one room")
        doc, code = run_bench(["--senders", "1", "--subscribers", "1000",
                               "--messages", "250" if options.quick else "1000",
                               "--size", "64", "--csv", csv_path,
                               "--label", "fanout1000", "--timeout", "240",
                               "--broker-args",
                               MANY_SESSIONS + " " + ZCHAT_BROKER_ARGS], 600)
        if doc:
            extras["fanout1000"] = doc
        if code != 0:
            failed.append("fanout1000 (exit %d)" % code)
    if options.idle10k:
        # 10,000 as issue 5 asks; when that cannot be held, also a count
        # that can, so the memory per client is still measured.
        # Idle clients in no room hold one connection each (libzchat
        # connects its SUB at the first receiving join); then, as most
        # people at a terminal are, in rooms (of 100), with a SUB each:
        # two connections, so 10,000 of those exceed the open-file limit.
        for room_size, counts in ((0, [2000] if options.quick else [10000, 9000]),
                                  (100, [2000] if options.quick else [9000])):
            for clients in counts:
                log("== %d idle clients, rooms of %d" % (clients, room_size))
                doc, code = run_bench(["--idle-clients", str(clients),
                                       "--idle-procs", str(max(1, clients // 1000)),
                                       "--idle-room-size", str(room_size),
                                       "--broker-args", MANY_SESSIONS],
                                      900)
                if doc:
                    extras.setdefault("idle", []).append(doc)
                if code == 0:
                    break
                failed.append("idle %d rooms of %d (exit %d)" % (clients, room_size, code))
    if extras and "idle" not in extras:
        previous = last_idle()
        if previous:
            extras["idle_previous"] = previous
    if extras:
        path = os.path.join(RESULTS, "%s-extras.json" % date)
        with open(path, "w") as out:
            json.dump(extras, out, indent=1)
        if not options.no_readme:
            update_readme("<!-- extras:begin -->", "<!-- extras:end -->",
                          extras_table(extras, date))

    log("total: %.0f s; results in %s" % (time.time() - start,
                                         os.path.relpath(csv_path, ROOT)))
    if failed:
        log("FAILED: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
