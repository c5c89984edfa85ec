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
