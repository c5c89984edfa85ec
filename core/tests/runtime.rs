//! End-to-end tests of the runtime: chaining, edges, parallelism, failures.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use eddy_core::prelude::*;

fn numbers(n: i64, batch: i64) -> Vec<RecordBatch> {
    (0..n)
        .step_by(batch as usize)
        .map(|start| {
            let end = (start + batch).min(n);
            let x: Vec<i64> = (start..end).collect();
            let k: Vec<String> = x.iter().map(|v| format!("k{}", v % 7)).collect();
            RecordBatch::try_from_iter([
                ("x", Arc::new(Int64Array::from(x)) as ArrayRef),
                ("k", Arc::new(StringArray::from(k)) as ArrayRef),
            ])
            .unwrap()
        })
        .collect()
}

fn sorted_x(sink: &MemorySink) -> Vec<i64> {
    let mut v: Vec<i64> = sink
        .batches()
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("x").unwrap();
            let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().to_vec()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_sink_alone_in_its_task_receives_everything() {
    for p in 1..=3 {
        let out = MemorySink::new();
        let flow = Dataflow::new(DataflowConfig::default());
        flow.source(
            "numbers",
            MemorySource::from_batches(numbers(1000, 64)).unwrap(),
        )
        .rebalance()
        .sink("out", out.clone())
        .parallelism(p);
        flow.run().unwrap();
        assert_eq!(sorted_x(&out), (0..1000).collect::<Vec<_>>(), "p={p}");
    }
}

#[test]
fn hash_edges_keep_each_key_on_one_subtask_and_lose_nothing() {
    let out = MemorySink::new();
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source(
        "numbers",
        MemorySource::from_batches(numbers(5000, 100)).unwrap(),
    )
    .partition_by(["k"])
    .map("tag subtask", Ok)
    .parallelism(3)
    .broadcast()
    .project("x only", ["x", "k"])
    .parallelism(2)
    .sink("out", out.clone());
    let summary = flow.run().unwrap();
    // broadcast to 2 subtasks doubles every row
    let got = sorted_x(&out);
    assert_eq!(got.len(), 10_000);
    assert_eq!(summary.operator("tag subtask").unwrap().records_in, 5000);
    assert_eq!(summary.operator("x only").unwrap().records_in, 10_000);
}

#[test]
fn union_merges_and_operator_errors_fail_the_job_with_the_name() {
    let out = MemorySink::new();
    let flow = Dataflow::new(DataflowConfig::default());
    let a = flow.source("a", MemorySource::from_batches(numbers(300, 50)).unwrap());
    let b = flow.source("b", MemorySource::from_batches(numbers(200, 50)).unwrap());
    a.union("both", &[b]).sink("out", out.clone());
    flow.run().unwrap();
    assert_eq!(out.num_rows(), 500);

    let flow = Dataflow::new(DataflowConfig::default());
    flow.source("a", MemorySource::from_batches(numbers(300, 50)).unwrap())
        .map("explodes", |b| {
            if b.num_rows() > 0 {
                Err(Error::Internal("boom".into()))
            } else {
                Ok(b)
            }
        })
        .parallelism(2)
        .sink("out", MemorySink::new());
    let err = flow.run().unwrap_err().to_string();
    assert!(err.contains("explodes") && err.contains("boom"), "{err}");
}

#[test]
fn a_panicking_operator_fails_the_job_instead_of_hanging() {
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source("a", MemorySource::from_batches(numbers(300, 50)).unwrap())
        .rebalance()
        .map("panics", |_b| panic!("operator bug"))
        .parallelism(2)
        .sink("out", MemorySink::new());
    let err = flow.run().unwrap_err().to_string();
    assert!(
        err.contains("panicked") && err.contains("operator bug"),
        "{err}"
    );
}

#[test]
fn an_unconsumed_stream_is_a_configuration_error() {
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source("a", MemorySource::from_batches(numbers(10, 5)).unwrap())
        .project("dangling", ["x"]);
    let err = flow.run().expect_err("must fail").to_string();
    assert!(err.contains("dangling"), "{err}");
}

#[test]
fn checkpoint_barriers_reach_every_task_and_carry_source_positions() {
    use eddy_core::source::generator::GeneratorSource;
    let schema = numbers(1, 1)[0].schema();
    let src = GeneratorSource::new(
        schema,
        None,
        Arc::new(|start, len| {
            let x: Vec<i64> = (start as i64..start as i64 + len as i64).collect();
            let k: Vec<String> = x.iter().map(|v| format!("k{}", v % 7)).collect();
            Ok(RecordBatch::try_from_iter([
                ("x", Arc::new(Int64Array::from(x)) as ArrayRef),
                ("k", Arc::new(StringArray::from(k)) as ArrayRef),
            ])?)
        }),
    );
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source("gen", src)
        .partition_by(["k"])
        .project("p", ["x"])
        .parallelism(2)
        .sink("out", MemorySink::new());
    let handle = flow.start().unwrap();
    let epoch = handle.trigger_checkpoint();
    let mut acks = Vec::new();
    for _ in 0..500 {
        acks.extend(handle.checkpoint_acks());
        if acks.len() >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    handle.cancel();
    let _ = handle.join();
    // the source task and the two subtasks of `p` (the sink is chained into them)
    assert_eq!(acks.len(), 3, "{acks:?}");
    assert!(acks.iter().all(|a| a.epoch == epoch));
    let source_ack = acks.iter().find(|a| a.position.is_some()).unwrap();
    let position: u64 = source_ack.position.as_ref().unwrap().get("gen").unwrap();
    // the barrier sits between batches: the position is a whole number of batches
    assert_eq!(position % 8192, 0, "position {position}");
    assert!(acks.iter().filter(|a| a.position.is_none()).count() == 2);
}
