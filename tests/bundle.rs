//! The bundle round trip through the library: a trained model, saved and loaded again, predicts
//! exactly what it predicted in memory.

use std::path::PathBuf;

use cqr::io::read::{read_all, ReadSpec};
use cqr::io::Target;
use cqr::models::calibration::softmax_t;
use cqr::models::train::{stratified_split, train, TrainParams};
use cqr::models::{Classifier, Model};
use cqr::settings::defaults;

#[test]
fn load_of_save_predicts_identically() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut spec = ReadSpec::new(Target::Path(root.join("data/tickets.csv")));
    spec.need_label = true;
    let records = read_all(&spec).unwrap();
    let params = TrainParams {
        seed: 5,
        valid_split: 0.1,
        target_precision: 0.95,
        features: defaults::feature_spec(),
        linear: defaults::linear_params(),
        refit: true,
        encoder: None,
    }
    .validate()
    .unwrap();
    let (tr, va) = stratified_split(&records, 0.1, 5);
    let trained = train(&params, &tr, &va, ("train", "valid"), &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    let manifest = trained
        .save(&path, "m", false, 5, serde_json::json!({}))
        .unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.manifest, manifest);
    assert_eq!(loaded.labels(), trained.labels.as_slice());

    let mut test_spec = ReadSpec::new(Target::Path(root.join("data/tickets_test.csv")));
    test_spec.need_label = true;
    let test = read_all(&test_spec).unwrap();
    let texts: Vec<&str> = test.iter().map(|r| r.text.as_str()).collect();
    let c = trained.labels.len();
    let logits = trained.linear.logits(&texts).unwrap();
    let mut expect = vec![0f32; c];
    for (row, got) in logits.chunks(c).zip(loaded.predict(&texts).unwrap()) {
        softmax_t(row, trained.temperature.temperature, &mut expect);
        assert_eq!(got.probs, expect);
    }
}
