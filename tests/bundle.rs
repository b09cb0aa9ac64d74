//! The bundle round trip: a trained model, saved and loaded again, predicts exactly what it
//! predicted in memory; any manifest survives JSON and a save and load unchanged; a bundle of a
//! newer format is refused with a message that names both versions.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cqr::io::read::{read_all, ReadSpec};
use cqr::io::Target;
use cqr::models::bundle::{
    bundle_checksum, load_manifest, save, ComponentManifest, DataFingerprint, FileEntry, Filled,
    Manifest, TrainingInfo, FORMAT_VERSION, MANIFEST,
};
use cqr::models::calibration::{softmax_t, ThresholdChoice};
use cqr::models::train::{stratified_split, train, OutOfScope, Rows, TrainParams};
use cqr::models::{Classifier, Model};
use cqr::settings::defaults;
use cqr::text::pii::Masking;
use cqr::util::sha256_hex;
use proptest::prelude::*;
use serde_json::Value;

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
        max_reject: defaults::MAX_REJECT,
        out_of_scope: oos(),
        features: defaults::feature_spec(),
        linear: defaults::linear_params(),
        refit: true,
        encoder: None,
    }
    .validate()
    .unwrap();
    let (tr, va) = stratified_split(&records, 0.1, 5);
    let rows = Rows::new(&tr, &va, ("train", "valid"), &oos()).unwrap();
    let trained = train(&params, &rows, &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    let manifest = trained
        .save(&path, "m", false, 5, serde_json::json!({}), Masking::Full)
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

// ------------------------------------------------------------------ manifests on disk

/// Files a generated manifest lists: (path, bytes).
type Contents = Vec<(String, Vec<u8>)>;

// JSON has no NaN or infinity (serde_json writes `null`), so manifest numbers are finite.
fn finite_f32() -> impl Strategy<Value = f32> {
    prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL | prop::num::f32::ZERO
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO
}

/// Free-form JSON, as component settings and training arguments are.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite_f64().prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Component `index` with one to three files of random content and their real sha256.
fn component(index: usize) -> impl Strategy<Value = (ComponentManifest, Contents)> {
    let files = prop::collection::btree_map(
        "[a-z_]{1,10}",
        (
            "[a-z0-9_-]{1,12}",
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        1..4,
    );
    (
        "[a-z]{1,10}",
        finite_f32(),
        finite_f32(),
        files,
        json_value(),
    )
        .prop_map(move |(kind, weight, temperature, roles, settings)| {
            let mut files = BTreeMap::new();
            let mut contents = Vec::new();
            for (j, (role, (stem, bytes))) in roles.into_iter().enumerate() {
                // Unique within the bundle, never `manifest.json`, never hidden.
                let path = format!("c{index}f{j}-{stem}.bin");
                let entry = FileEntry {
                    path: path.clone(),
                    sha256: sha256_hex(&bytes),
                    bytes: bytes.len() as u64,
                };
                files.insert(role, entry);
                contents.push((path, bytes));
            }
            let c = ComponentManifest {
                kind,
                weight,
                temperature,
                files,
                settings,
            };
            (c, contents)
        })
}

fn fingerprint() -> impl Strategy<Value = DataFingerprint> {
    ("\\PC{0,20}", any::<usize>(), "[0-9a-f]{64}").prop_map(|(source, rows, sha256)| {
        DataFingerprint {
            source,
            rows,
            sha256,
        }
    })
}

fn manifest() -> impl Strategy<Value = (Manifest, Contents)> {
    let head = (
        0..=FORMAT_VERSION,
        "\\PC{0,12}",
        "\\PC{0,12}",
        "\\PC{0,12}",
        "\\PC{0,25}",
        prop::collection::vec("\\PC{1,12}", 1..6),
    );
    let components = (0..=3usize).prop_flat_map(|n| (0..n).map(component).collect::<Vec<_>>());
    let abstain = (
        finite_f32(),
        finite_f64(),
        finite_f64(),
        finite_f64(),
        any::<bool>(),
    )
        .prop_map(
            |(threshold, target_precision, precision, coverage, target_met)| ThresholdChoice {
                threshold,
                target_precision,
                precision,
                coverage,
                target_met,
            },
        );
    let calibration = (abstain, finite_f32(), prop::option::of(finite_f32()));
    let training = (
        any::<u64>(),
        json_value(),
        fingerprint(),
        fingerprint(),
        finite_f64(),
    )
        .prop_map(
            |(seed, args, train_data, valid_data, seconds)| TrainingInfo {
                seed,
                args,
                train_data,
                valid_data,
                seconds,
            },
        );
    let metrics = prop::collection::btree_map("[a-z_.]{1,20}", finite_f64(), 0..8);
    (
        head,
        components,
        calibration,
        (training, metrics, "[0-9a-f]{64}"),
    )
        .prop_map(
            |(
                (format_version, cqr_version, name, version, created_at, labels),
                components,
                (abstain, ensemble_temperature, cascade_threshold),
                (training, metrics, checksum),
            )| {
                let (components, contents): (Vec<_>, Vec<_>) = components.into_iter().unzip();
                let m = Manifest {
                    format_version,
                    cqr_version,
                    name,
                    version,
                    created_at,
                    labels,
                    components,
                    abstain,
                    ensemble_temperature,
                    // Both schemes occur, tied to another arbitrary field to keep the tuple small.
                    masking: if cascade_threshold.is_some() {
                        Masking::Off
                    } else {
                        Masking::Full
                    },
                    cascade_threshold,
                    checksum,
                    training,
                    metrics,
                    profile: None,
                    novelty: None,
                    rule: None,
                    out_of_scope: None,
                };
                (m, contents.concat())
            },
        )
}

/// Saves `manifest` as a bundle in `dir` with the component files `contents`.
fn save_bundle(dir: &Path, manifest: &Manifest, contents: &Contents) -> Manifest {
    save(dir, false, manifest.clone(), |tmp| {
        for (path, bytes) in contents {
            std::fs::write(tmp.join(path), bytes).unwrap();
        }
        Ok(Filled {
            components: manifest.components.clone(),
            profile: manifest.profile.clone(),
            novelty: manifest.novelty.clone(),
        })
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_manifest_survives_json((m, _) in manifest()) {
        let pretty = serde_json::to_string_pretty(&m).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Manifest>(&pretty).unwrap(), &m);
        let compact = serde_json::to_vec(&m).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Manifest>(&compact).unwrap(), m);
    }

    #[test]
    fn a_saved_manifest_loads_as_written((m, contents) in manifest()) {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("m");
        let saved = save_bundle(&dir, &m, &contents);
        let expected = Manifest { checksum: bundle_checksum(&m), ..m };
        prop_assert_eq!(&saved, &expected);
        prop_assert_eq!(load_manifest(&dir).unwrap(), expected);
    }
}

/// A small real bundle: one label set, no components.
fn small_manifest() -> Manifest {
    let data = |source: &str| DataFingerprint {
        source: source.into(),
        rows: 10,
        sha256: sha256_hex(source.as_bytes()),
    };
    Manifest {
        format_version: FORMAT_VERSION,
        cqr_version: env!("CARGO_PKG_VERSION").into(),
        name: "x".into(),
        version: "1".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        labels: vec!["billing".into(), "refund".into()],
        components: Vec::new(),
        abstain: ThresholdChoice {
            threshold: 0.5,
            target_precision: 0.9,
            precision: 0.95,
            coverage: 0.8,
            target_met: true,
        },
        ensemble_temperature: 1.0,
        cascade_threshold: None,
        masking: Masking::Full,
        checksum: String::new(),
        training: TrainingInfo {
            seed: 1,
            args: serde_json::json!({}),
            train_data: data("train.csv"),
            valid_data: data("valid.csv"),
            seconds: 1.0,
        },
        profile: None,
        novelty: None,
        rule: None,
        out_of_scope: None,
        metrics: BTreeMap::new(),
    }
}

fn oos() -> OutOfScope {
    OutOfScope {
        label: defaults::OOS_LABEL.into(),
        as_class: false,
    }
}

#[test]
fn a_newer_format_names_its_version_and_the_highest_this_cqr_reads() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("models/x");
    save_bundle(&dir, &small_manifest(), &Vec::new());
    load_manifest(&dir).expect("the bundle loads before the edit");
    let path = dir.join(MANIFEST);
    let mut raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let newer = FORMAT_VERSION + 2;
    raw["format_version"] = Value::from(newer);
    std::fs::write(&path, serde_json::to_vec_pretty(&raw).unwrap()).unwrap();

    let message = |path: &Path| {
        format!(
            "model {}: format version {newer} is newer than this cqr ({}) reads (up to \
             {FORMAT_VERSION}); upgrade cqr",
            path.display(),
            env!("CARGO_PKG_VERSION")
        )
    };
    assert_eq!(load_manifest(&dir).unwrap_err().to_string(), message(&path));
    let out = common::cqr_in(work.path())
        .args(["evaluate", "models/x"])
        .arg(common::tickets_test())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {}\n", message(Path::new("models/x/manifest.json")))
    );
}
