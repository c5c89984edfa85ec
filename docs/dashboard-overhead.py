"""Measures what an open dashboard costs `eddy learn` (docs/dashboard.md, "Overhead").

    python3 docs/dashboard-overhead.py EDDY_BINARY DATA.csv [--runs 5]

Alternates runs without and with `--ui 127.0.0.1:0`; in a run with the dashboard a client holds
the server-sent event stream open (as an open page does) and, once a second, fetches
`/api/overview`, `/api/series?prefix=eddy_` (every kept series: more than any page asks for) and
`/metrics`. Each run trains FTRL on DATA (label column `label`) to its end; the figure is the
training throughput `eddy learn` reports (`rows_per_s` of its summary line), and the wall time
from start to exit is kept beside it. Prints every run and the medians as JSON. Standard library
only.
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ARGS = argparse.ArgumentParser()
ARGS.add_argument("eddy")
ARGS.add_argument("data")
ARGS.add_argument("--runs", type=int, default=5)
OPTS = ARGS.parse_args()


def client(addr, stop, counts):
    """Holds /api/events open and polls the API once a second until `stop` is set."""

    def stream():
        try:
            with urllib.request.urlopen(f"http://{addr}/api/events", timeout=5) as r:
                while not stop.is_set():
                    line = r.readline()
                    if not line:
                        return
                    if line.startswith(b"event: sample"):
                        counts["events"] += 1
        except OSError:
            pass

    threading.Thread(target=stream, daemon=True).start()
    while not stop.is_set():
        for path in ("/api/overview", "/api/series?prefix=eddy_", "/metrics"):
            try:
                with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as r:
                    r.read()
                    counts["polls"] += 1
            except OSError:
                pass
        stop.wait(1.0)


def run(ui):
    cmd = [OPTS.eddy, "learn", "--data", OPTS.data, "--label", "label"]
    if ui:
        cmd += ["--ui", "127.0.0.1:0"]
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    counts = {"events": 0, "polls": 0}
    for line in p.stderr:
        if ui and line.startswith("dashboard at http://"):
            addr = line.split("http://", 1)[1].split("/", 1)[0]
            threading.Thread(target=client, args=(addr, stop, counts), daemon=True).start()
    summary = json.loads(p.stdout.read().strip().splitlines()[-1])
    p.wait()
    took = time.monotonic() - start
    stop.set()
    if p.returncode != 0:
        sys.exit(f"{cmd} failed: {p.returncode}")
    return {"ui": ui, "rows_per_s": summary["rows_per_s"], "seconds": round(took, 3),
            **(counts if ui else {})}


runs = []
for i in range(OPTS.runs):
    for ui in (False, True):
        runs.append(run(ui))
        print(json.dumps(runs[-1]), file=sys.stderr)
without = statistics.median(r["rows_per_s"] for r in runs if not r["ui"])
with_ui = statistics.median(r["rows_per_s"] for r in runs if r["ui"])
print(json.dumps({"runs": runs, "median_rows_per_s_without": without,
                  "median_rows_per_s_with_ui": with_ui, "ratio": round(with_ui / without, 4)}))
