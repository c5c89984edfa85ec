#!/usr/bin/env python3
"""Nexmark queries in Flink SQL (PyFlink 1.20.1, local mini-cluster) over `eddy gen nexmark` files.

    python nexmark_flink.py DATA [--ordered-data DIR] [-q q0,q5] [-p 1 -p 2] [--no-count]

Streaming mode, event time from `date_time` (epoch ms) with watermarks 1 ms behind the largest time
seen, headerless CSV filesystem sources (one table per kind), blackhole sink. Prints one JSON line
per query and parallelism:

    {"system": "flink", "query", "parallelism", "events", "seconds", "wall_seconds",
     "cpu_seconds", "events_per_s", "events_per_cpu_s", "output_rows"}

- `seconds`: the job's net run time (Flink's JobExecutionResult), so the mini-cluster's start is
  not counted; `wall_seconds`: from the job's RUNNING status to its end, as the client sees it.
- `cpu_seconds`: CPU time (user + system) of the JVM over the same span (from /proc/PID/stat):
  planning, code generation and the mini-cluster's start are not counted.
- `output_rows`: the rows the query outputs, counted by a second run of the same query under
  `SELECT COUNT(*)` (net of retractions; skipped with `--no-count`, then null).

Windowed queries (q4, q5, q7, q8, q9, q11) read `--ordered-data` when given: the same events written
with one part per kind, because Flink hands a directory's files to its readers in no particular
order, which makes rows late for windows. The others read DATA's parts, spread over the readers.
"""

import argparse
import json
import os
import sys
import time

# Every query, in the order eddy runs them.
QUERIES = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11"]
WINDOWED = {"q4", "q5", "q7", "q8", "q9", "q11"}

COLUMNS = {
    "person": "id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, "
    "state STRING, date_time BIGINT, extra STRING",
    "auction": "id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT, "
    "date_time BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING",
    "bid": "auction BIGINT, bidder BIGINT, price BIGINT, date_time BIGINT, extra STRING",
}


def max_auction_ms(rate):
    """The bound of an auction's length, as eddy's NexmarkGenerator::max_auction_ms."""
    horizon_events = 100 * 50 // 3
    return 2 * (-(-(horizon_events * 1000) // max(rate, 1)) + 1)


def ms(n):
    """An interval literal of n milliseconds."""
    return f"INTERVAL '{n // 1000}.{n % 1000:03d}' SECOND"


def ddl(kind, path, table=None, time_column="date_time", delay_ms=1):
    """A filesystem CSV table of `kind` with a rowtime from `time_column`."""
    table = table or kind
    return f"""CREATE TEMPORARY TABLE {table} (
        {COLUMNS[kind]},
        rowtime AS TO_TIMESTAMP_LTZ({time_column}, 3),
        WATERMARK FOR rowtime AS rowtime - {ms(delay_ms)}
    ) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')"""


def query_sql(q, longest):
    """The query's SELECT, with the views it needs (list of statements, the SELECT last)."""
    closing = f"""CREATE TEMPORARY VIEW closing_bids AS
        SELECT C.id, C.category, C.expires, C.rowtime AS closes, B.bidder, B.price,
               B.date_time AS bid_time
        FROM auction_closing C, bid B
        WHERE C.id = B.auction AND B.rowtime BETWEEN C.rowtime - {ms(longest)} AND C.rowtime
          AND B.date_time >= C.date_time AND B.price >= C.reserve"""
    winning = """CREATE TEMPORARY VIEW winning AS
        SELECT id, category, expires, MAX(price) AS final, window_start, window_end, window_time
        FROM TABLE(TUMBLE(TABLE closing_bids, DESCRIPTOR(closes), INTERVAL '10' SECOND))
        GROUP BY id, category, expires, window_start, window_end, window_time"""
    return {
        "q0": ["SELECT auction, bidder, price, date_time, extra FROM bid"],
        "q1": ["SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid"],
        "q2": ["SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0"],
        "q3": ["""SELECT P.name, P.city, P.state, A.id
            FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
            WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')"""],
        # the suite's q4 updates one average per category; this is its windowed variant
        "q4": [closing, winning,
               "CREATE TEMPORARY VIEW finals AS SELECT category, final, window_time AS closed FROM winning",
               """SELECT category, window_start, window_end,
                   AVG(CAST(final AS DOUBLE)) AS avg_final, COUNT(*) AS auctions
            FROM TABLE(TUMBLE(TABLE finals, DESCRIPTOR(closed), INTERVAL '10' SECOND))
            GROUP BY category, window_start, window_end"""],
        "q5": ["""CREATE TEMPORARY VIEW auction_bids AS
            SELECT auction, COUNT(*) AS num, window_start, window_end, window_time
            FROM TABLE(HOP(TABLE bid, DESCRIPTOR(rowtime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
            GROUP BY auction, window_start, window_end, window_time""",
               """CREATE TEMPORARY VIEW counted AS
            SELECT num, window_time AS counted_at FROM auction_bids""",
               """CREATE TEMPORARY VIEW max_bids AS
            SELECT MAX(num) AS maxn, window_end AS ends
            FROM TABLE(TUMBLE(TABLE counted, DESCRIPTOR(counted_at), INTERVAL '2' SECOND))
            GROUP BY window_start, window_end""",
               """SELECT A.auction, A.num, A.window_start, A.window_end
            FROM (SELECT auction, num, window_start, window_end FROM auction_bids) A
            JOIN max_bids M ON A.window_end = M.ends AND A.num >= M.maxn"""],
        "q7": ["""SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
            FROM bid B JOIN (
                SELECT MAX(price) AS maxprice, window_time AS ends
                FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
                GROUP BY window_start, window_end, window_time
            ) B1 ON B.price = B1.maxprice
            WHERE B.rowtime BETWEEN B1.ends - INTERVAL '10' SECOND AND B1.ends"""],
        "q8": ["""SELECT P.id, P.name, P.starttime FROM (
                SELECT id, name, window_start AS starttime, window_end AS endtime
                FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
                GROUP BY id, name, window_start, window_end
            ) P JOIN (
                SELECT seller, window_start AS starttime, window_end AS endtime
                FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
                GROUP BY seller, window_start, window_end
            ) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime"""],
        # every closing bid at its auction's winning price (ties all), when its window of expiry ends
        "q9": [closing, winning, """SELECT L.id, L.category, L.expires, L.bidder, L.price, L.bid_time
            FROM (SELECT * FROM TABLE(TUMBLE(TABLE closing_bids, DESCRIPTOR(closes), INTERVAL '10' SECOND))) L
            JOIN winning R ON L.window_start = R.window_start AND L.window_end = R.window_end
              AND L.id = R.id AND L.price = R.final"""],
        "q11": ["""SELECT bidder, COUNT(*) AS bid_count,
                   SESSION_START(rowtime, INTERVAL '10' SECOND) AS starttime,
                   SESSION_END(rowtime, INTERVAL '10' SECOND) AS endtime
            FROM bid GROUP BY bidder, SESSION(rowtime, INTERVAL '10' SECOND)"""],
    }[q]


def jvm_cpu_seconds():
    """CPU seconds (user + system) of the JVM children of this process."""
    ticks = os.sysconf("SC_CLK_TCK")
    me, total = os.getpid(), 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == me and name == "java":
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def environment(p, data, ordered, q, longest, count):
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("parallelism.default", str(p))
    config.set("pipeline.name", f"nexmark {q} p={p}")
    if count:
        # the count's updates are batched, so that few reach the client
        config.set("table.exec.mini-batch.enabled", "true")
        config.set("table.exec.mini-batch.allow-latency", "1 s")
        config.set("table.exec.mini-batch.size", "100000")
    root = ordered if (q in WINDOWED and ordered) else data
    for kind in COLUMNS:
        env.execute_sql(ddl(kind, os.path.join(root, kind)))
    # the auctions once more, with their expiry as event time (q4, q9): an auction is read when
    # it opens, at most `longest` before it expires, so the watermark stays that far behind
    env.execute_sql(ddl("auction", os.path.join(root, "auction"), "auction_closing", "expires",
                        longest + 1))
    *views, select = query_sql(q, longest)
    for v in views:
        env.execute_sql(v)
    return env, select


def run(q, p, data, ordered, events, longest, count):
    from pyflink.table import TableDescriptor

    env, select = environment(p, data, ordered, q, longest, False)
    table = env.sql_query(select)
    client = table.execute_insert(TableDescriptor.for_connector("blackhole").build()).get_job_client()
    # from the moment the job runs (planning, code generation and the mini-cluster's start are
    # not counted, as in the net run time), polled every 20 ms
    while str(client.get_job_status().result()) in ("JobStatus.INITIALIZING", "JobStatus.CREATED"):
        time.sleep(0.02)
    cpu, start = jvm_cpu_seconds(), time.perf_counter()
    job = client.get_job_execution_result().result()
    wall, cpu = time.perf_counter() - start, jvm_cpu_seconds() - cpu
    seconds = job.get_net_runtime() / 1000.0
    rows = None
    if count:
        env, select = environment(p, data, ordered, q, longest, True)
        with env.execute_sql(f"SELECT COUNT(*) FROM ({select})").collect() as results:
            for row in results:
                rows = row[0]
        rows = rows or 0
    return {
        "bench": "nexmark", "system": "flink", "query": q, "parallelism": p,
        "events": events, "seconds": seconds, "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 2), "events_per_s": events / seconds,
        "events_per_cpu_s": events / max(cpu, 1e-9), "output_rows": rows,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a directory of `eddy gen nexmark`")
    ap.add_argument("--ordered-data", help="the same events with one part per kind (windowed queries)")
    ap.add_argument("-q", "--queries", default=",".join(QUERIES))
    ap.add_argument("-p", "--parallelism", type=int, action="append")
    ap.add_argument("--no-count", action="store_true", help="do not count the output rows")
    args = ap.parse_args()
    with open(os.path.join(args.data, "nexmark.json")) as f:
        manifest = json.load(f)
    if args.ordered_data:
        with open(os.path.join(args.ordered_data, "nexmark.json")) as f:
            other = json.load(f)
        sums = lambda m: [(k["kind"], k["checksum"]) for k in m["kinds"]]
        if sums(other) != sums(manifest):
            sys.exit(f"{args.ordered_data}: not the same events as {args.data} (checksums differ)")
    longest = max_auction_ms(manifest["rate"])
    for q in args.queries.split(","):
        if q not in QUERIES:
            sys.exit(f"unknown query {q}: expected one of {', '.join(QUERIES)}")
        for p in args.parallelism or [1, 2]:
            line = run(q, p, os.path.abspath(args.data),
                       args.ordered_data and os.path.abspath(args.ordered_data),
                       manifest["events"], longest, not args.no_count)
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
