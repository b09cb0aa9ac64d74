//! The drift-check benchmark on BANKING77 (run by `scripts/bench_drift.sh`; not a test).
//!
//! Set-up: 10 intents are withheld; the other intents' training rows are split 70/30 (stratified,
//! seeded); models are trained on the 70% with `cqr train` (linear-only and, with the encoder,
//! the ensemble) and keep their reference profile from train's own validation split. Every row
//! of every pool is scored once; batches are then drawn from the scored pools:
//! - `no_drift`: from the 30% (the same distribution as training): false alarms;
//! - `new_intents`: 90% from the 30%, 10% from the withheld intents: detections;
//! - `prior_shift`: from the balanced test split of the seen intents (the training split is not
//!   balanced, so this is a real prior shift): detections, and which tests fire.
//!
//! Each is checked at 100, 500 and 2,000 rows, 50 batches each, at α = 0.05, with the label-free
//! accuracy estimate's error against the batch's real accuracy. Then the wall time of one whole
//! check of 2,000 rows (read, score, test, report) per model. Prints one JSON object.
//!
//! Usage: drift_bench BANKING77_DIR WORK_DIR [--encoder DIR] [--batches N] [--permutations N]
//!        [--only linear|ensemble]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use cqr::io::read::{read_all, ReadSpec, Record};
use cqr::io::Target;
use cqr::models::bundle::read_profile;
use cqr::models::Model;
use cqr::monitor::drift::{check, DriftOptions, Subject, TestKind};
use cqr::monitor::profile::{Caps, Observation, Profile};
use cqr::monitor::scan::Scan;
use cqr::util::Rng;
use serde_json::{json, Value};

const SIZES: [usize; 3] = [100, 500, 2000];
const WITHHELD: usize = 10;
const SEED: u64 = 20261201;

/// A pool of records scored once: each row's observation, embedding and text.
struct Pool {
    records: Vec<Record>,
    observed: Vec<Observation>,
    embeddings: Vec<f32>,
    dim: usize,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let data = PathBuf::from(
        args.get(1)
            .expect("usage: drift_bench BANKING77_DIR WORK_DIR"),
    );
    let work = PathBuf::from(
        args.get(2)
            .expect("usage: drift_bench BANKING77_DIR WORK_DIR"),
    );
    let encoder = flag("--encoder");
    let batches: usize = flag("--batches").map_or(Ok(50), |v| v.parse())?;
    let permutations: usize = flag("--permutations").map_or(Ok(1000), |v| v.parse())?;
    std::fs::create_dir_all(&work)?;

    let read = |name: &str| {
        let mut spec = ReadSpec::new(Target::Path(data.join(name)));
        spec.need_label = true;
        read_all(&spec)
    };
    let train = read("train.csv")?;
    let test = read("test.csv")?;
    let mut intents: Vec<String> = train
        .iter()
        .filter_map(|r| r.label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Rng::new(SEED).shuffle(&mut intents);
    let withheld: BTreeSet<String> = intents[..WITHHELD].iter().cloned().collect();
    let is_new = |r: &Record| withheld.contains(r.label.as_deref().unwrap_or(""));
    let seen_train: Vec<Record> = train.iter().filter(|r| !is_new(r)).cloned().collect();
    let (fit, held) = cqr::models::train::stratified_split(&seen_train, 0.3, SEED);
    let fit_path = work.join("fit.csv");
    write_csv(&fit_path, &fit)?;
    let pools_raw = [
        ("held_out", held.into_iter().cloned().collect::<Vec<_>>()),
        (
            "withheld",
            train
                .iter()
                .chain(&test)
                .filter(|r| is_new(r))
                .cloned()
                .collect(),
        ),
        (
            "test_seen",
            test.iter().filter(|r| !is_new(r)).cloned().collect(),
        ),
    ];

    let only = flag("--only");
    let mut models = vec![("linear", vec!["--components", "linear"])];
    if let Some(dir) = &encoder {
        models.push((
            "ensemble",
            vec!["--components", "linear,encoder", "--encoder", dir.as_str()],
        ));
    }
    let mut out = serde_json::Map::new();
    out.insert(
        "setup".into(),
        json!({
            "withheld_intents": withheld,
            "fit_rows": fit.len(),
            "pools": pools_raw.iter().map(|(n, p)| (n.to_string(), p.len())).collect::<BTreeMap<_, _>>(),
            "batches_per_size": batches,
            "alpha": 0.05,
            "permutations": permutations,
        }),
    );
    models.retain(|(name, _)| only.as_deref().is_none_or(|o| o == *name));
    for (name, extra) in &models {
        let bundle = work.join(format!("drift-{name}"));
        let t = Instant::now();
        let mut argv = vec!["cqr", "-q", "train", fit_path.to_str().unwrap(), "-o"];
        argv.push(bundle.to_str().unwrap());
        argv.extend(["--force", "--seed", "42"]);
        argv.extend(extra.iter().copied());
        let runs = work.join("runs");
        argv.extend(["--runs-dir", runs.to_str().unwrap()]);
        cqr::cli::run(cqr::cli::Cli::try_parse_from(&argv)?)?;
        let train_seconds = t.elapsed().as_secs_f64();
        let model = Model::load(&bundle)?;
        let reference = read_profile(&bundle, model.manifest.profile.as_ref().expect("a profile"))?;
        let t = Instant::now();
        let pools: BTreeMap<&str, Pool> = pools_raw
            .iter()
            .map(|(n, recs)| Ok((*n, score(&model, recs.clone())?)))
            .collect::<anyhow::Result<_>>()?;
        let scoring_seconds = t.elapsed().as_secs_f64();
        let options = DriftOptions {
            alpha: 0.05,
            min_effect: None,
            max_accuracy_drop: None,
            permutations,
            seed: 7,
        };
        let mut scenarios = serde_json::Map::new();
        for scenario in ["no_drift", "new_intents", "prior_shift"] {
            let mut per_size = serde_json::Map::new();
            for &size in &SIZES {
                per_size.insert(
                    size.to_string(),
                    run_batches(
                        &model, &reference, &pools, scenario, size, batches, &options,
                    ),
                );
            }
            scenarios.insert(scenario.into(), Value::Object(per_size));
        }
        let speed = time_check(&bundle, &pools["held_out"], &work, name, permutations)?;
        out.insert(
            name.to_string(),
            json!({
                "train_seconds": train_seconds,
                "valid_accuracy": model.manifest.metrics.get("valid_accuracy"),
                "reference_rows": reference.summary.rows,
                "scoring_seconds_all_pools": scoring_seconds,
                "scenarios": scenarios,
                "check_2000_rows": speed,
            }),
        );
    }
    println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    Ok(())
}

/// Scores `records` (masked as the model was trained) once.
fn score(model: &Model, mut records: Vec<Record>) -> anyhow::Result<Pool> {
    cqr::pipeline::mask_for_model(model.manifest.masking, &mut records);
    let mut observed = Vec::with_capacity(records.len());
    let mut embeddings = Vec::new();
    for chunk in records.chunks(1024) {
        let (o, e) = cqr::pipeline::observe(model, chunk)?;
        observed.extend(o);
        embeddings.extend(e.unwrap_or_default());
    }
    Ok(Pool {
        records,
        observed,
        embeddings,
        dim: model.embedding_dim().unwrap_or(0),
    })
}

/// `n` distinct row indices of a pool of `len`, seeded.
fn draw(rng: &mut Rng, len: usize, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    rng.shuffle(&mut idx);
    idx.truncate(n.min(len));
    idx
}

fn run_batches(
    model: &Model,
    reference: &Profile,
    pools: &BTreeMap<&str, Pool>,
    scenario: &str,
    size: usize,
    batches: usize,
    options: &DriftOptions,
) -> Value {
    let mut rng = Rng::new(SEED ^ size as u64 ^ (scenario.len() as u64 * 7919));
    let (mut alarms, mut errors, mut fired) = (0usize, Vec::new(), BTreeMap::<&str, usize>::new());
    let mut seconds = 0.0;
    for b in 0..batches {
        let rows: Vec<(&Pool, usize)> = match scenario {
            "no_drift" => {
                let p = &pools["held_out"];
                draw(&mut rng, p.records.len(), size)
                    .into_iter()
                    .map(|i| (p, i))
                    .collect()
            }
            "new_intents" => {
                let (p, q) = (&pools["held_out"], &pools["withheld"]);
                let k = size / 10;
                draw(&mut rng, p.records.len(), size - k)
                    .into_iter()
                    .map(|i| (p, i))
                    .chain(
                        draw(&mut rng, q.records.len(), k)
                            .into_iter()
                            .map(|i| (q, i)),
                    )
                    .collect()
            }
            _ => {
                let p = &pools["test_seen"];
                draw(&mut rng, p.records.len(), size)
                    .into_iter()
                    .map(|i| (p, i))
                    .collect()
            }
        };
        let t = Instant::now();
        let caps = Caps {
            values: 200_000,
            embeddings: 1_000,
            novelty: 0,
            seed: b as u64,
        };
        let mut scan = Scan::new(reference, model.labels().len(), rows[0].0.dim, caps);
        for &(p, i) in &rows {
            let e = (p.dim > 0).then(|| &p.embeddings[i * p.dim..(i + 1) * p.dim]);
            let o = &p.observed[i];
            let novelty = scan.novelty(o, e);
            scan.push(&"", &p.records[i].text, o, e, novelty);
        }
        let subject = Subject {
            model: String::new(),
            version: String::new(),
            checksum: String::new(),
            data: String::new(),
            reference: String::new(),
        };
        let o = DriftOptions {
            seed: options.seed ^ b as u64,
            ..options.clone()
        };
        let r = check(subject, reference, &scan.finish(), model.labels(), true, &o);
        seconds += t.elapsed().as_secs_f64();
        alarms += usize::from(r.drift);
        for t in r.tests.iter().filter(|t| t.drift) {
            *fired.entry(test_name(t.test)).or_default() += 1;
        }
        if let (Some(a), est) = (r.actual_accuracy, r.estimated_accuracy.value) {
            errors.push(est - a);
        }
    }
    let mae = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len().max(1) as f64;
    let bias = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    json!({
        "batches": batches,
        "alarm_rate": alarms as f64 / batches as f64,
        "tests_fired": fired,
        "estimate_mae_points": mae * 100.0,
        "estimate_bias_points": bias * 100.0,
        "seconds_per_check": seconds / batches as f64,
    })
}

fn test_name(t: TestKind) -> &'static str {
    t.name()
}

/// One whole `cqr drift-check` of 2,000 rows through the binary's code path; the time spent
/// scoring (which includes embedding) is measured apart by scoring the same file alone.
fn time_check(
    bundle: &Path,
    pool: &Pool,
    work: &Path,
    name: &str,
    permutations: usize,
) -> anyhow::Result<Value> {
    let batch = work.join(format!("batch-2000-{name}.csv"));
    let rows: Vec<Record> = pool.records.iter().take(2000).cloned().collect();
    write_csv(&batch, &rows)?;
    let model = Model::load(bundle)?;
    let t = Instant::now();
    score(&model, rows)?;
    let scoring = t.elapsed().as_secs_f64();
    // The whole command as a cron job runs it; its verdict (drift or not) does not matter here.
    let bin = std::env::var("CQR_BIN").unwrap_or_else(|_| "target/release/cqr".into());
    let t = Instant::now();
    let status = std::process::Command::new(&bin)
        .args(["-q", "drift-check"])
        .arg(bundle)
        .arg(&batch)
        .args([
            "--permutations",
            &permutations.to_string(),
            "--json",
            "--runs-dir",
        ])
        .arg(work.join("runs"))
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.code().is_some_and(|c| c <= 1),
        "{bin} drift-check failed: {status}"
    );
    let total = t.elapsed().as_secs_f64();
    Ok(json!({
        "rows": 2000,
        "total_seconds": total,
        "scoring_seconds": scoring,
        "check_seconds_without_scoring": (total - scoring).max(0.0),
        "permutations": permutations,
    }))
}

fn write_csv(path: &Path, rows: &[impl std::borrow::Borrow<Record>]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["text", "label"])?;
    for r in rows {
        let r = r.borrow();
        w.write_record([r.text.as_str(), r.label.as_deref().unwrap_or("")])?;
    }
    w.flush()?;
    Ok(())
}
