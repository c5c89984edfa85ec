//! One test per refusal of the model file, plus round trips.

use super::*;
use crate::online::linear::{FtrlLogisticParams, FtrlLogisticRegression};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Toy {
    name: String,
    weights: Vec<f32>,
}

fn toy() -> Toy {
    Toy {
        name: "toy".into(),
        weights: (0..100).map(|i| i as f32 * 0.5).collect(),
    }
}

fn message(e: Error) -> String {
    match e {
        Error::ModelFile { path, message } => format!("{path}: {message}"),
        other => panic!("expected a ModelFile error, got {other:?}"),
    }
}

#[test]
fn round_trip_in_memory_and_on_disk() {
    let bytes = encode("toy", &toy()).unwrap();
    assert_eq!(&bytes[..8], b"EDDYMODL");
    let back: Toy = decode(&bytes, "toy").unwrap();
    assert_eq!(back, toy());
    let h = read_header(&bytes).unwrap();
    assert_eq!((h.version, h.kind.as_str()), (FORMAT_VERSION, "toy"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.eddy");
    save_model(&path, "toy", &toy()).unwrap();
    save_model(&path, "toy", &toy()).unwrap(); // overwrites atomically
    let back: Toy = load_model(&path, "toy").unwrap();
    assert_eq!(back, toy());
    assert_eq!(read_file_header(&path).unwrap().kind, "toy");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
}

#[test]
fn learner_round_trip() {
    let m = FtrlLogisticParams {
        bits: 10,
        ..Default::default()
    }
    .build()
    .unwrap();
    let bytes = encode("ftrl-logistic-regression", &m).unwrap();
    let back: FtrlLogisticRegression = decode(&bytes, "ftrl-logistic-regression").unwrap();
    assert_eq!(back, m);
}

#[test]
fn refuses_wrong_magic() {
    let mut bytes = encode("toy", &toy()).unwrap();
    bytes[0] = b'X';
    let e = message(decode::<Toy>(&bytes, "toy").unwrap_err());
    assert!(e.contains("wrong magic"), "{e}");
    assert!(message(decode::<Toy>(b"EDD", "toy").unwrap_err()).contains("magic"));
}

#[test]
fn refuses_truncated() {
    let bytes = encode("toy", &toy()).unwrap();
    for cut in [10, 14, 18, 30, bytes.len() - 1] {
        let e = message(decode::<Toy>(&bytes[..cut], "toy").unwrap_err());
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(message(decode::<Toy>(&long, "toy").unwrap_err()).contains("trailing"));
}

#[test]
fn refuses_flipped_bytes() {
    let bytes = encode("toy", &toy()).unwrap();
    // every byte of the kind, payload and checksum is covered by the checksum
    for at in [16, 30, 40, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let e = message(decode::<Toy>(&bad, "toy").unwrap_err());
        assert!(e.contains("checksum mismatch"), "byte {at}: {e}");
    }
}

#[test]
fn refuses_kind_mismatch() {
    let bytes = encode("toy", &toy()).unwrap();
    let e = message(decode::<Toy>(&bytes, "other").unwrap_err());
    assert!(e.contains("holds a `toy` model, expected `other`"), "{e}");
}

#[test]
fn refuses_newer_format_version() {
    let mut bytes = encode("toy", &toy()).unwrap();
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.eddy");
    std::fs::write(&path, &bytes).unwrap();
    let e = message(load_model::<Toy>(&path, "toy").unwrap_err());
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(
        e.contains(&format!(
            "written by a newer eddy (format {}, this build reads up to {FORMAT_VERSION})",
            FORMAT_VERSION + 1
        )),
        "{e}"
    );
}

#[test]
fn refuses_a_payload_of_another_type() {
    let bytes = encode("toy", &3u8).unwrap();
    let e = message(decode::<Toy>(&bytes, "toy").unwrap_err());
    assert!(e.contains("does not decode"), "{e}");
}

#[test]
fn missing_file_is_an_io_error() {
    let e = load_model::<Toy>(Path::new("/nonexistent/m.eddy"), "toy").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
}

/// Re-encodes `payload` under a fresh header and checksum, as a hand-edited file would be.
fn with_payload(kind: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(kind.len() as u32).to_le_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

#[test]
fn refuses_trailing_payload_bytes_under_a_valid_checksum() {
    let mut payload = bincode::serialize(&toy()).unwrap();
    assert_eq!(
        decode::<Toy>(&with_payload("toy", &payload), "toy").unwrap(),
        toy()
    );
    payload.extend_from_slice(&[0, 0, 0, 0]);
    let e = message(decode::<Toy>(&with_payload("toy", &payload), "toy").unwrap_err());
    assert!(e.contains("does not decode"), "{e}");
}

#[test]
fn refuses_non_finite_weights_under_a_valid_checksum() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut t = toy();
        t.weights[7] = bad;
        let bytes = encode("toy", &t).unwrap();
        let e = message(decode::<Toy>(&bytes, "toy").unwrap_err());
        assert!(e.contains(&format!("`weights[7]` is {bad}")), "{e}");
    }
}

#[test]
fn refuses_a_trained_model_whose_hasher_is_wider_than_its_learner() {
    use crate::feature::categorical::{FeatureHasher, FeatureHasherParams, Featurizer, LabelSpec};
    use crate::pipeline::Pipeline;
    use crate::trained::{OnlineModel, TrainedModel, TRAINED_MODEL_KIND};
    use crate::transform::Params;

    let trained = |hasher_bits: u32| TrainedModel {
        pipeline: Pipeline::new(
            vec![],
            Featurizer::Hasher(FeatureHasher::new(
                FeatureHasherParams {
                    categorical: vec!["c".into()],
                    bits: hasher_bits,
                    ..Default::default()
                }
                .check()
                .unwrap(),
            )),
            Some(LabelSpec::new("label")),
        ),
        model: OnlineModel::Ftrl(
            FtrlLogisticParams {
                bits: 10,
                ..Default::default()
            }
            .build()
            .unwrap(),
        ),
    };
    let good = encode(TRAINED_MODEL_KIND, &trained(10)).unwrap();
    assert!(TrainedModel::from_bytes(&good).is_ok());
    for bits in [12, 30] {
        let bytes = encode(TRAINED_MODEL_KIND, &trained(bits)).unwrap();
        let e = message(TrainedModel::from_bytes(&bytes).unwrap_err());
        assert!(
            e.contains(&format!("features of dimension {}", 1u64 << bits)),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.eddy");
        std::fs::write(&path, &bytes).unwrap();
        assert!(TrainedModel::load(&path).is_err());
    }
}

/// A trained tree (dense assembler on `a`, `b` → decision tree) and its encoded bytes.
fn trained_tree() -> (
    crate::trained::TrainedModel,
    arrow::record_batch::RecordBatch,
) {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array};

    use crate::feature::categorical::{
        Featurizer, LabelSpec, VectorAssembler, VectorAssemblerParams,
    };
    use crate::features::{Examples, Features};
    use crate::learners::{LearnerKind, LearnerSpec};
    use crate::pipeline::Pipeline;
    use crate::transform::Params;

    let n = 80;
    let a: Vec<f64> = (0..n).map(|i| (i % 9) as f64).collect();
    let b: Vec<f64> = (0..n).map(|i| (i % 5) as f64).collect();
    let y: Vec<i64> = (0..n).map(|i| i64::from(i % 9 > 4 && i % 5 > 1)).collect();
    let batch = arrow::record_batch::RecordBatch::try_from_iter([
        ("a", Arc::new(Float64Array::from(a)) as ArrayRef),
        ("b", Arc::new(Float64Array::from(b)) as ArrayRef),
        ("label", Arc::new(Int64Array::from(y)) as ArrayRef),
    ])
    .unwrap();
    let assembler = VectorAssemblerParams {
        numeric: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    let pipeline = Pipeline::new(
        vec![],
        Featurizer::Assembler(VectorAssembler::new(assembler.check().unwrap())),
        Some(LabelSpec::new("label")),
    );
    let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
    pipeline.examples_into(&batch, &mut ex).unwrap();
    let model = LearnerSpec::new(LearnerKind::Tree)
        .fit(pipeline.dim(), &ex)
        .unwrap();
    (crate::trained::TrainedModel { pipeline, model }, batch)
}

#[test]
fn a_trained_tree_round_trips_and_a_forged_one_is_refused() {
    use crate::features::Features;
    use crate::trained::{TrainedModel, TRAINED_MODEL_KIND};

    let (tree, batch) = trained_tree();
    let bytes = tree.to_bytes().unwrap();
    let back = TrainedModel::from_bytes(&bytes).unwrap();
    let (mut f, mut p1, mut p2) = (Features::Sparse(Default::default()), Vec::new(), Vec::new());
    tree.predict_batch(&batch, &mut f, &mut p1).unwrap();
    back.predict_batch(&batch, &mut f, &mut p2).unwrap();
    assert_eq!(p1, p2);
    assert!(p1.contains(&1.0) && p1.contains(&0.0), "{p1:?}");

    // bincode ends the payload with the tree's `classes` and `dim` (u64 LE): a checksummed
    // file whose tree claims one class, or no feature columns, is refused on decode
    let header = 24 + TRAINED_MODEL_KIND.len();
    let payload = &bytes[header..bytes.len() - 8];
    let end = payload.len();
    assert_eq!(payload[end - 8..], 2u64.to_le_bytes(), "dim is last");
    assert_eq!(
        payload[end - 16..end - 8],
        2u64.to_le_bytes(),
        "classes before it"
    );
    for (at, value) in [(end - 16, 1u64), (end - 8, 0u64)] {
        let mut forged = payload.to_vec();
        forged[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let e = message(
            TrainedModel::from_bytes(&with_payload(TRAINED_MODEL_KIND, &forged)).unwrap_err(),
        );
        assert!(e.contains("decision-tree model: node"), "{e}");
    }
    // and a flipped byte fails the checksum
    let mut flipped = bytes.clone();
    flipped[header + 3] ^= 0x10;
    assert!(TrainedModel::from_bytes(&flipped).is_err());
}

/// [`Toy`] with its weights as a checked table (`model::table`).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct CheckedToy {
    name: String,
    #[serde(with = "crate::model::table")]
    weights: Vec<f32>,
}

fn checked_toy() -> CheckedToy {
    let Toy { name, weights } = toy();
    CheckedToy { name, weights }
}

/// A checked table of 1000 rows, all zero but `nonzero`.
fn sparse_toy(nonzero: &[(usize, f32)]) -> CheckedToy {
    let mut weights = vec![0.0; 1000];
    for &(i, v) in nonzero {
        weights[i] = v;
    }
    CheckedToy {
        name: "sparse".into(),
        weights,
    }
}

#[test]
fn a_dense_table_writes_the_bytes_of_a_plain_vec_and_reads_them_back() {
    let plain = encode("toy", &toy()).unwrap();
    // the same payload (the header's version may differ)
    assert_eq!(encode("toy", &checked_toy()).unwrap()[12..], plain[12..]);
    assert_eq!(decode::<CheckedToy>(&plain, "toy").unwrap(), checked_toy());
    let json = serde_json::to_string(&checked_toy()).unwrap();
    assert_eq!(
        serde_json::from_str::<CheckedToy>(&json).unwrap(),
        checked_toy()
    );
}

#[test]
fn a_mostly_zero_table_is_written_sparse_and_reads_back_exactly() {
    let t = sparse_toy(&[(0, 1.5), (17, -0.0), (999, 2.0)]);
    let bytes = encode("toy", &t).unwrap();
    let dense_payload = 8 + 1000 * 4;
    assert!(
        bytes.len() < 200,
        "{} bytes, dense would be over {dense_payload}",
        bytes.len()
    );
    let back = decode::<CheckedToy>(&bytes, "toy").unwrap();
    assert_eq!(back, t);
    assert_eq!(
        back.weights[17].to_bits(),
        (-0.0f32).to_bits(),
        "-0.0 is kept"
    );
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<CheckedToy>(&json).unwrap(), t);
    // an FTRL model: the untouched slots are left out
    let m = FtrlLogisticParams {
        bits: 16,
        ..Default::default()
    }
    .build()
    .unwrap();
    let file = encode("ftrl-logistic-regression", &m).unwrap();
    assert!(
        file.len() < 1000,
        "a fresh 2^16-slot model takes {} bytes",
        file.len()
    );
    assert_eq!(
        decode::<FtrlLogisticRegression>(&file, "ftrl-logistic-regression").unwrap(),
        m
    );
}

/// A payload of `name` and a sparse table of `len` rows with `entries` as `(index, value)`,
/// announcing `nnz` of them.
fn sparse_payload(len: u64, nnz: u64, entries: &[(u32, f32)]) -> Vec<u8> {
    let mut payload = bincode::options()
        .with_fixint_encoding()
        .serialize(&"toy".to_string())
        .unwrap();
    payload.extend_from_slice(&(len | 1 << 63).to_le_bytes());
    payload.extend_from_slice(&nnz.to_le_bytes());
    for &(i, v) in entries {
        payload.extend_from_slice(&i.to_le_bytes());
        payload.extend_from_slice(&v.to_le_bytes());
    }
    payload
}

#[test]
fn a_checked_table_refuses_non_finite_entries_bad_indices_and_absurd_lengths() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for mut t in [checked_toy(), sparse_toy(&[(3, 1.0)])] {
            t.weights[7] = bad;
            let e = message(decode::<CheckedToy>(&encode("toy", &t).unwrap(), "toy").unwrap_err());
            assert!(e.contains("entry 7 of a weight table is not finite"), "{e}");
        }
    }
    let refused = |payload: Vec<u8>| {
        message(decode::<CheckedToy>(&with_payload("toy", &payload), "toy").unwrap_err())
    };
    assert!(decode::<CheckedToy>(
        &with_payload("toy", &sparse_payload(10, 2, &[(1, 1.0), (4, 2.0)])),
        "toy"
    )
    .is_ok());
    for (entries, why) in [
        (&[(4, 1.0), (1, 2.0)][..], "out of range or order"),
        (&[(4, 1.0), (4, 2.0)][..], "out of range or order"),
        (&[(1, 1.0), (10, 2.0)][..], "out of range or order"),
    ] {
        let e = refused(sparse_payload(10, 2, entries));
        assert!(e.contains(why), "{e}");
    }
    let e = refused(sparse_payload(10, 11, &[]));
    assert!(e.contains("holds 11 non-zero rows"), "{e}");
    let e = refused(sparse_payload(10, 3, &[(1, 1.0), (2, 2.0)]));
    assert!(e.contains("does not decode"), "{e}");
    // 2^61 rows (valid checksum: a crafted file) is an error, not an abort, in either form
    for e in [refused(sparse_payload(1 << 61, 0, &[])), {
        let mut p = sparse_payload(0, 0, &[]);
        let at = p.len() - 16;
        p.truncate(at);
        p.extend_from_slice(&(1u64 << 61).to_le_bytes());
        p.extend_from_slice(&[0; 64]);
        refused(p)
    }] {
        assert!(e.contains("does not fit in memory"), "{e}");
    }
}
