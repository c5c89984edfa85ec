//! Nexmark queries against naive oracles computed from the generator's tables: the same rows,
//! ignoring order, at parallelism 1 and 2, over generated events and over the CSV files
//! `write_csv` makes of them (read back equal to the generator's rows, checksummed, malformed
//! lines counted as dead letters).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use eddy_core::metrics::JobSummary;
use eddy_core::nexmark::files::MANIFEST;
use eddy_core::nexmark::{
    write_csv, NexmarkConfig, NexmarkFiles, NexmarkGenerator, NexmarkInput, NexmarkKind,
    NexmarkManifest, Query,
};
use eddy_core::prelude::*;

const EVENTS: u64 = 20_000;

fn generator() -> Arc<NexmarkGenerator> {
    // 1,000 events a second: the 20,000 events span 20 s, three of q8's 10 s windows
    Arc::new(NexmarkGenerator::new(NexmarkConfig {
        seed: 42,
        rate: 1_000,
        ..NexmarkConfig::default()
    }))
}

fn table(g: &NexmarkGenerator, kind: NexmarkKind) -> RecordBatch {
    g.batch(kind, 0, kind.count(EVENTS) as usize).unwrap()
}

/// Every row of `batches` as `v1,v2,…`, sorted.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| {
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
        .collect();
    out.sort();
    out
}

fn run(query: Query, p: usize) -> Vec<String> {
    let flow = Dataflow::new(DataflowConfig::default());
    let out = MemorySink::new();
    query
        .build(&flow, &generator(), EVENTS, p)
        .sink("out", out.clone())
        .parallelism(p);
    flow.run().unwrap();
    rows(&out.batches())
}

fn oracle(query: Query) -> Vec<String> {
    let g = generator();
    let bids = table(&g, NexmarkKind::Bid);
    let int = |b: &RecordBatch, c: &str| {
        b.column_by_name(c)
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone()
    };
    match query {
        Query::Q0 => rows(&[bids]),
        Query::Q1 => {
            let euros: Float64Array = int(&bids, "price")
                .values()
                .iter()
                .map(|p| Some(*p as f64 * 0.908))
                .collect();
            let mut columns = bids.columns().to_vec();
            columns[2] = Arc::new(euros) as ArrayRef;
            let schema = Arc::new(arrow::datatypes::Schema::new(
                bids.schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (**f).clone().with_data_type(columns[i].data_type().clone()))
                    .collect::<Vec<_>>(),
            ));
            rows(&[RecordBatch::try_new(schema, columns).unwrap()])
        }
        Query::Q2 => {
            let (auction, price) = (int(&bids, "auction"), int(&bids, "price"));
            let mut v: Vec<String> = (0..bids.num_rows())
                .filter(|&r| auction.value(r) % 123 == 0)
                .map(|r| format!("{},{}", auction.value(r), price.value(r)))
                .collect();
            v.sort();
            v
        }
        Query::Q3 => {
            let (people, auctions) = (
                table(&g, NexmarkKind::Person),
                table(&g, NexmarkKind::Auction),
            );
            let text = |b: &RecordBatch, c: &str, r: usize| {
                b.column_by_name(c)
                    .unwrap()
                    .as_string::<i32>()
                    .value(r)
                    .to_string()
            };
            let mut v = Vec::new();
            let (ids, sellers, categories) = (
                int(&auctions, "id"),
                int(&auctions, "seller"),
                int(&auctions, "category"),
            );
            let person_ids = int(&people, "id");
            for a in 0..auctions.num_rows() {
                if categories.value(a) != 10 {
                    continue;
                }
                for p in 0..people.num_rows() {
                    let state = text(&people, "state", p);
                    if person_ids.value(p) == sellers.value(a)
                        && ["OR", "ID", "CA"].contains(&state.as_str())
                    {
                        v.push(format!(
                            "{},{},{},{}",
                            text(&people, "name", p),
                            text(&people, "city", p),
                            state,
                            ids.value(a)
                        ));
                    }
                }
            }
            v.sort();
            v
        }
        Query::Q7 => {
            let size = 10_000;
            let (times, prices) = (int(&bids, "date_time"), int(&bids, "price"));
            let mut highest = std::collections::BTreeMap::new();
            for r in 0..bids.num_rows() {
                let t = times.value(r);
                let end = t - t.rem_euclid(size) + size;
                let max = highest.entry(end).or_insert(i64::MIN);
                *max = (*max).max(prices.value(r));
            }
            let columns = ["auction", "price", "bidder", "date_time", "extra"];
            let projected = bids
                .project(&columns.map(|c| bids.schema().index_of(c).unwrap()))
                .unwrap();
            let mut v = Vec::new();
            for (end, max) in highest {
                let rowtime = end - 1;
                for r in 0..bids.num_rows() {
                    let t = times.value(r);
                    if prices.value(r) == max && (rowtime - size..=rowtime).contains(&t) {
                        v.extend(rows(&[projected.slice(r, 1)]));
                    }
                }
            }
            v.sort();
            v
        }
        Query::Q4 => oracle_q4(&g),
        Query::Q5 => oracle_q5(&bids),
        Query::Q9 => oracle_q9(&g),
        Query::Q11 => oracle_q11(&bids),
        Query::Q8 => {
            let (people, auctions) = (
                table(&g, NexmarkKind::Person),
                table(&g, NexmarkKind::Auction),
            );
            let size = 10_000;
            let window = |t: i64| t - t.rem_euclid(size);
            let (sellers, opened) = (int(&auctions, "seller"), int(&auctions, "date_time"));
            let selling: std::collections::HashSet<(i64, i64)> = (0..auctions.num_rows())
                .map(|a| (sellers.value(a), window(opened.value(a))))
                .collect();
            let (ids, joined) = (int(&people, "id"), int(&people, "date_time"));
            let names = people.column_by_name("name").unwrap().as_string::<i32>();
            let mut v: Vec<String> = (0..people.num_rows())
                .filter(|&p| selling.contains(&(ids.value(p), window(joined.value(p)))))
                .map(|p| {
                    format!(
                        "{},{},{}",
                        ids.value(p),
                        names.value(p),
                        window(joined.value(p))
                    )
                })
                .collect();
            v.sort();
            v
        }
    }
}

fn int(b: &RecordBatch, c: &str) -> Vec<i64> {
    b.column_by_name(c)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// q5: per 10 s window sliding by 2 s, every auction with the window's most bids.
fn oracle_q5(bids: &RecordBatch) -> Vec<String> {
    let (size, slide) = (10_000, 2_000);
    let mut counts = std::collections::BTreeMap::<(i64, i64), i64>::new();
    for (auction, t) in int(bids, "auction").into_iter().zip(int(bids, "date_time")) {
        let last = t - t.rem_euclid(slide);
        let mut start = last;
        while start > t - size {
            *counts.entry((start, auction)).or_default() += 1;
            start -= slide;
        }
    }
    let mut most = std::collections::BTreeMap::<i64, i64>::new();
    for (&(start, _), &n) in &counts {
        let m = most.entry(start).or_default();
        *m = (*m).max(n);
    }
    sorted(
        counts
            .iter()
            .filter(|((start, _), n)| most[start] == **n)
            .map(|((start, auction), n)| format!("{auction},{n},{start},{}", start + size))
            .collect(),
    )
}

/// q11: per bidder, runs of bids at most 10 s apart, as (count, first, last + 10 s).
fn oracle_q11(bids: &RecordBatch) -> Vec<String> {
    let gap = 10_000;
    let mut times = std::collections::BTreeMap::<i64, Vec<i64>>::new();
    for (bidder, t) in int(bids, "bidder").into_iter().zip(int(bids, "date_time")) {
        times.entry(bidder).or_default().push(t);
    }
    let mut v = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let (mut first, mut n) = (ts[0], 1);
        for w in ts.windows(2) {
            if w[1] - w[0] > gap {
                v.push(format!("{bidder},{n},{first},{}", w[0] + gap));
                (first, n) = (w[1], 0);
            }
            n += 1;
        }
        v.push(format!("{bidder},{n},{first},{}", ts[ts.len() - 1] + gap));
    }
    sorted(v)
}

/// Per auction with a winner: (id, category, expires, winning price, its winning bids as
/// `bidder,price,time`).
fn winners(g: &NexmarkGenerator) -> Vec<(i64, i64, i64, i64, Vec<String>)> {
    let (auctions, bids) = (table(g, NexmarkKind::Auction), table(g, NexmarkKind::Bid));
    let (ids, categories) = (int(&auctions, "id"), int(&auctions, "category"));
    let (opened, expires, reserves) = (
        int(&auctions, "date_time"),
        int(&auctions, "expires"),
        int(&auctions, "reserve"),
    );
    let (on, bidders, prices, times) = (
        int(&bids, "auction"),
        int(&bids, "bidder"),
        int(&bids, "price"),
        int(&bids, "date_time"),
    );
    let mut out = Vec::new();
    for a in 0..ids.len() {
        let valid: Vec<usize> = (0..on.len())
            .filter(|&b| {
                on[b] == ids[a]
                    && (opened[a]..=expires[a]).contains(&times[b])
                    && prices[b] >= reserves[a]
            })
            .collect();
        let Some(best) = valid.iter().map(|&b| prices[b]).max() else {
            continue;
        };
        let winning = valid
            .iter()
            .filter(|&&b| prices[b] == best)
            .map(|&b| format!("{},{},{}", bidders[b], prices[b], times[b]))
            .collect();
        out.push((ids[a], categories[a], expires[a], best, winning));
    }
    out
}

/// q9: every bid at its auction's winning price.
fn oracle_q9(g: &NexmarkGenerator) -> Vec<String> {
    let mut v = Vec::new();
    for (id, category, expires, _, winning) in winners(g) {
        v.extend(
            winning
                .iter()
                .map(|w| format!("{id},{category},{expires},{w}")),
        );
    }
    sorted(v)
}

/// q4: per category and 10 s window of expiry, the mean winning price and the auctions.
fn oracle_q4(g: &NexmarkGenerator) -> Vec<String> {
    let size = 10_000;
    let mut windows = std::collections::BTreeMap::<(i64, i64), (i64, i64)>::new();
    for (_, category, expires, price, _) in winners(g) {
        let w = windows
            .entry((category, expires - expires.rem_euclid(size)))
            .or_default();
        *w = (w.0 + price, w.1 + 1);
    }
    sorted(
        windows
            .into_iter()
            .map(|((category, start), (sum, n))| {
                let mean = Float64Array::from(vec![sum as f64 / n as f64]);
                let mean = array_value_to_string(&mean, 0).unwrap();
                format!("{category},{start},{},{mean},{n}", start + size)
            })
            .collect(),
    )
}

#[test]
fn every_query_gives_its_oracles_rows_at_parallelism_1_and_2() {
    for query in Query::ALL {
        let want = oracle(query);
        assert!(!want.is_empty(), "{query:?}: the oracle found nothing");
        if query == Query::Q8 {
            let windows: std::collections::HashSet<&str> =
                want.iter().filter_map(|r| r.rsplit(',').next()).collect();
            assert!(windows.len() >= 2, "q8 should span windows: {windows:?}");
        }
        for p in [1, 2] {
            let got = run(query, p);
            assert_eq!(
                got.len(),
                want.len(),
                "{query:?} at parallelism {p}: row count"
            );
            assert!(got == want, "{query:?} at parallelism {p}: rows differ");
        }
    }
}

#[test]
fn queries_parse_by_name_and_unknown_ones_are_refused() {
    assert_eq!("Q2".parse::<Query>().unwrap(), Query::Q2);
    let e = "q99".parse::<Query>().unwrap_err().to_string();
    assert!(e.contains("q0, q1, q2, q3, q4, q5, q7, q8, q9, q11"), "{e}");
}

/// The first `EVENTS` events written as files in parts of 3,000 events (the last part short).
fn files(dir: &std::path::Path) -> NexmarkFiles {
    write_csv(&generator(), EVENTS, 3_000, dir).unwrap();
    NexmarkFiles::open(dir).unwrap()
}

fn run_on(query: Query, input: &NexmarkInput, p: usize) -> (Vec<String>, JobSummary) {
    let flow = Dataflow::new(DataflowConfig::default());
    let out = MemorySink::new();
    query
        .build_on(&flow, input, p)
        .sink("out", out.clone())
        .parallelism(p);
    let summary = flow.run().unwrap();
    (rows(&out.batches()), summary)
}

#[test]
fn the_files_hold_the_generators_events_and_every_query_reads_them_alike() {
    let dir = tempfile::tempdir().unwrap();
    let input = NexmarkInput::Files(files(dir.path()));
    let manifest = match &input {
        NexmarkInput::Files(f) => f.manifest().clone(),
        _ => unreachable!(),
    };
    assert_eq!(manifest.events, EVENTS);
    assert_eq!(manifest.config(), generator().config());
    for kind in NexmarkKind::ALL {
        let entry = manifest.kind(kind).unwrap();
        assert_eq!(entry.rows, kind.count(EVENTS));
        assert_eq!(entry.parts, 7, "{}", kind.name());
        // read back alone, a kind's files are the generator's rows, in order
        let flow = Dataflow::new(DataflowConfig::default());
        let out = MemorySink::new();
        let NexmarkInput::Files(f) = &input else {
            unreachable!()
        };
        flow.source_with(kind.name(), f.source(kind))
            .sink("out", out.clone());
        flow.run().unwrap();
        let read = arrow::compute::concat_batches(&NexmarkGenerator::schema(kind), &out.batches())
            .unwrap();
        assert_eq!(read, table(&generator(), kind), "{}", kind.name());
    }
    for query in Query::ALL {
        let want = oracle(query);
        for p in [1, 2] {
            let (got, summary) = run_on(query, &input, p);
            assert_eq!(summary.dead_letters, 0);
            assert_eq!(
                got.len(),
                want.len(),
                "{query:?} on files at parallelism {p}"
            );
            assert!(
                got == want,
                "{query:?} on files at parallelism {p}: rows differ"
            );
        }
    }
}

#[test]
fn the_same_events_have_the_same_checksums_and_another_seed_does_not() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = write_csv(&generator(), EVENTS, 3_000, a.path()).unwrap();
    // other part sizes, same bytes in the same order
    let second = write_csv(&generator(), EVENTS, 7_000, b.path()).unwrap();
    let other = NexmarkGenerator::new(NexmarkConfig {
        seed: 43,
        ..generator().config()
    });
    let third = write_csv(&other, EVENTS, 3_000, c.path()).unwrap();
    for kind in NexmarkKind::ALL {
        let sum = |m: &NexmarkManifest| m.kind(kind).unwrap().checksum.clone();
        assert_eq!(sum(&first), sum(&second), "{}", kind.name());
        assert_ne!(sum(&first), sum(&third), "{}: another seed", kind.name());
    }
}

#[test]
fn a_malformed_line_is_a_counted_dead_letter_and_a_wrong_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = NexmarkInput::Files(files(dir.path()));
    // garble the price of one bid in the second part
    let part = dir.path().join("bid/part-00001.csv");
    let text = std::fs::read_to_string(&part).unwrap();
    let first = text.lines().next().unwrap();
    let fields: Vec<&str> = first.split(',').collect();
    let garbled = format!(
        "{},{},12x4,{},{}",
        fields[0], fields[1], fields[3], fields[4]
    );
    std::fs::write(&part, text.replacen(first, &garbled, 1)).unwrap();
    let (got, summary) = run_on(Query::Q0, &input, 2);
    assert_eq!(summary.dead_letters, 1);
    assert_eq!(got.len() as u64, NexmarkKind::Bid.count(EVENTS) - 1);

    // a manifest whose counts do not fit its events is refused, naming the file
    let path = dir.path().join(MANIFEST);
    let manifest = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, manifest.replacen("20000", "20050", 1)).unwrap();
    let e = NexmarkFiles::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("nexmark.json") && e.contains("20050"), "{e}");

    // and a second write into the same directory is refused
    let e = write_csv(&generator(), EVENTS, 3_000, dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds files"), "{e}");
}
