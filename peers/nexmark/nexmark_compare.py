#!/usr/bin/env python3
"""eddy and Apache Flink on the same Nexmark files, query by query, as one markdown table.

    python3 nexmark_compare.py DATA --ordered-data DIR --eddy target/release/eddy \\
        [--flink-python ~/.venvs/flink/bin/python] [-q q0,q5] [-p 1 -p 2] [--repeat 3] [--out runs.jsonl]

For each query, `eddy bench nexmark --data DATA` runs first (median of --repeat runs), then
`nexmark_flink.py` (one run, output rows counted by a second run), at every parallelism, back to
back. Every JSON line goes to --out as well. The table gives events/s, events per CPU-second,
the ratios, wall and CPU seconds of both (a run whose wall time is far above its CPU time at
parallelism 1 was likely frozen or starved: rerun it) and the output rows, which must agree:
a difference is printed as `eddy N ≠ Flink M` and makes the script exit with status 1.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def lines(cmd):
    """The JSON lines a command prints (its other output passes through to stderr)."""
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit status {done.returncode}")
    return [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]


def si(x):
    """1.23 M, 456 k."""
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    return f"{x / 1e3:.0f} k" if x >= 1e3 else f"{x:.0f}"


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--ordered-data", help="the same events, one part per kind (Flink's windowed queries)")
    ap.add_argument("--eddy", default="target/release/eddy")
    ap.add_argument("--flink-python", default=os.environ.get("FLINK_PYTHON", "python3"),
                    help="the Python that has PyFlink 1.20.1 (default: $FLINK_PYTHON, else python3)")
    ap.add_argument("-q", "--queries", default="q0,q1,q2,q3,q4,q5,q7,q8,q9,q11")
    ap.add_argument("-p", "--parallelism", type=int, action="append")
    ap.add_argument("--repeat", type=int, default=3, help="eddy runs per configuration (median)")
    ap.add_argument("--out", help="append every JSON line to this file")
    args = ap.parse_args()
    ps = args.parallelism or [1, 2]
    out = open(args.out, "a") if args.out else None
    rows, mismatch = [], False
    print(f"load average at start: {load()}", file=sys.stderr)
    for q in args.queries.split(","):
        eddy = lines([args.eddy, "bench", "nexmark", "--data", args.data, "--queries", q,
                      "--parallelism", ",".join(map(str, ps)), "--repeat", str(args.repeat)])
        flink_cmd = [args.flink_python, os.path.join(HERE, "nexmark_flink.py"), args.data, "-q", q]
        if args.ordered_data:
            flink_cmd += ["--ordered-data", args.ordered_data]
        for p in ps:
            flink_cmd += ["-p", str(p)]
        flink = lines(flink_cmd)
        for line in eddy + flink:
            line["load"] = load()
            if out:
                out.write(json.dumps(line) + "\n")
                out.flush()
        by_p = {(l["system"], l["parallelism"]): l for l in eddy + flink}
        for p in ps:
            e, f = by_p[("eddy", p)], by_p[("flink", p)]
            same = e["output_rows"] == f["output_rows"]
            mismatch |= not same
            rows.append(
                f"| {q} | {p} | {si(e['events_per_s'])} | {si(f['events_per_s'])} "
                f"| {e['events_per_s'] / f['events_per_s']:.1f}× "
                f"| {si(e['events_per_cpu_s'])} | {si(f['events_per_cpu_s'])} "
                f"| {e['events_per_cpu_s'] / f['events_per_cpu_s']:.1f}× "
                f"| {e['seconds']:.2f} / {e['cpu_seconds']:.2f} | {f['wall_seconds']:.2f} / {f['cpu_seconds']:.2f} "
                f"| {e['output_rows']:,} |" if same else
                f"| {q} | {p} | … | … | … | … | … | … | … | … "
                f"| eddy {e['output_rows']:,} ≠ Flink {f['output_rows']} |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"load average at end: {load()}", file=sys.stderr)
    print("| query | p | eddy events/s | Flink events/s | eddy ÷ Flink | eddy events/CPU-s "
          "| Flink events/CPU-s | eddy ÷ Flink per CPU-s | eddy s wall / CPU | Flink s wall / CPU "
          "| output rows (both) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    sys.exit(1 if mismatch else 0)


if __name__ == "__main__":
    main()
