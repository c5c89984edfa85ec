//! Nexmark queries against naive oracles computed from the generator's tables: the same rows,
//! ignoring order, at parallelism 1 and 2.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use eddy_core::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkKind, Query};
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
    assert!(e.contains("q0, q1, q2, q3, q7, q8"), "{e}");
}
