//! The local run store: `runs/` in MLflow's file-store layout (experiment and run `meta.yaml`,
//! `metrics/`, `params/`, `tags/`, `artifacts/`), so `MLFLOW_ALLOW_FILE_STORE=true mlflow ui
//! --backend-store-uri runs` shows cqr's runs. Every run is written here first; `cqr_sync.json`
//! beside a run's `meta.yaml` records what has reached a tracking server, so a push can resume
//! without sending anything twice.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const MAX_PARAM_CHARS: usize = 6000;
pub const MAX_KEY_CHARS: usize = 250;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// MLflow's key rules: alphanumerics, `_ - . space : /`, at most 250 characters, and no path
/// tricks.
pub fn validate_key(key: &str) -> Result<()> {
    let ok_chars = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-. :/".contains(c));
    let bad_path = key.starts_with('/')
        || key
            .split('/')
            .any(|p| p == ".." || p == "." || p.is_empty());
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !ok_chars || bad_path {
        return Err(Error::Tracking(format!(
            "invalid key `{key}`: keys are 1–{MAX_KEY_CHARS} characters of letters, digits and `_ - . space : /`"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
}

impl RunStatus {
    fn code(self) -> u8 {
        match self {
            RunStatus::Running => 1,
            RunStatus::Finished => 3,
            RunStatus::Failed => 4,
        }
    }
    fn from_code(c: u8) -> RunStatus {
        match c {
            3 => RunStatus::Finished,
            4 | 5 => RunStatus::Failed,
            _ => RunStatus::Running,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: u64,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source: String,
    pub context: String,
}

/// A registration asked for with the run (`train --register`), carried out on push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Registration {
    pub name: String,
    pub alias: Option<String>,
    /// When false the version is registered but the alias is left where it is.
    #[serde(default = "yes")]
    pub move_alias: bool,
}

fn yes() -> bool {
    true
}

/// What of a run has reached which server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SyncState {
    pub tracking_uri: Option<String>,
    pub remote_experiment_id: Option<String>,
    pub remote_run_id: Option<String>,
    pub remote_artifact_uri: Option<String>,
    pub params_sent: bool,
    pub tags_sent: bool,
    pub inputs_sent: bool,
    /// Metrics are sent in file order; this many are on the server.
    pub metrics_sent: usize,
    pub artifacts_sent: bool,
    pub status_sent: bool,
    pub register: Option<Registration>,
    pub registered_version: Option<String>,
    pub alias_set: bool,
    pub synced: bool,
    pub last_error: Option<String>,
}

/// The local store rooted at a directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

/// A run in the local store.
#[derive(Debug, Clone)]
pub struct LocalRun {
    pub dir: PathBuf,
    pub experiment_id: String,
    pub experiment_name: String,
    pub run_id: String,
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Error::io(path, e))
}

fn yaml_str(s: &str) -> String {
    // Single-quoted YAML scalar: quotes doubled.
    format!("'{}'", s.replace('\'', "''"))
}

fn read_yaml_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?.trim();
        let v = if rest.len() >= 2 && rest.starts_with('\'') && rest.ends_with('\'') {
            rest[1..rest.len() - 1].replace("''", "'")
        } else {
            rest.to_string()
        };
        Some(v)
    })
}

/// Every file below `base` as (path relative to `base` with `/` separators, full path), sorted.
fn files_under(base: &Path) -> Vec<(String, PathBuf)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push((rel.to_string_lossy().replace('\\', "/"), p.clone()));
            }
        }
    }
    let mut out = Vec::new();
    walk(base, base, &mut out);
    out.sort();
    out
}

fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let a = crate::util::mix64(
        t ^ ((std::process::id() as u64) << 32) ^ N.fetch_add(1, Ordering::Relaxed),
    );
    let b = crate::util::mix64(a ^ 0x5bd1_e995);
    format!("{a:016x}{b:016x}")
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn abs_root(&self) -> Result<PathBuf> {
        io(&self.root, fs::create_dir_all(&self.root))?;
        io(&self.root, self.root.canonicalize())
    }

    fn write_experiment(&self, id: &str, name: &str) -> Result<()> {
        let root = self.abs_root()?;
        let dir = root.join(id);
        io(&dir, fs::create_dir_all(&dir))?;
        let now = now_ms();
        let meta = format!(
            "artifact_location: {}\ncreation_time: {now}\nexperiment_id: {}\nlast_update_time: {now}\nlifecycle_stage: active\nname: {}\n",
            yaml_str(&format!("file://{}", dir.display())),
            yaml_str(id),
            yaml_str(name)
        );
        let p = dir.join("meta.yaml");
        io(&p, fs::write(&p, meta))
    }

    /// The experiments: (id, name).
    pub fn experiments(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let meta = e.path().join("meta.yaml");
            if let Ok(text) = fs::read_to_string(&meta) {
                if let (Some(id), Some(name)) = (
                    read_yaml_field(&text, "experiment_id"),
                    read_yaml_field(&text, "name"),
                ) {
                    out.push((id, name));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Finds or creates the experiment `name`; ids are small integers, `0` is `Default`.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        let existing = self.experiments()?;
        if !existing.iter().any(|(id, _)| id == "0") {
            self.write_experiment("0", "Default")?;
        }
        if let Some((id, _)) = self.experiments()?.into_iter().find(|(_, n)| n == name) {
            return Ok(id);
        }
        let next = existing
            .iter()
            .filter_map(|(id, _)| id.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = next.to_string();
        self.write_experiment(&id, name)?;
        Ok(id)
    }

    pub fn create_run(&self, experiment: &str, run_name: &str, user: &str) -> Result<LocalRun> {
        let exp_id = self.experiment_id(experiment)?;
        let run_id = new_run_id();
        let dir = self.abs_root()?.join(&exp_id).join(&run_id);
        for sub in ["metrics", "params", "tags", "artifacts"] {
            io(&dir, fs::create_dir_all(dir.join(sub)))?;
        }
        let run = LocalRun {
            dir,
            experiment_id: exp_id,
            experiment_name: experiment.to_string(),
            run_id,
        };
        run.write_meta(run_name, user, now_ms(), None, RunStatus::Running)?;
        run.set_tag("mlflow.runName", run_name)?;
        run.set_tag("mlflow.user", user)?;
        run.write_sync(&SyncState::default())?;
        Ok(run)
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<LocalRun>> {
        let mut out = Vec::new();
        for (exp_id, exp_name) in self.experiments()? {
            let Ok(entries) = fs::read_dir(self.root.join(&exp_id)) else {
                continue;
            };
            for e in entries.flatten() {
                let dir = e.path();
                if dir.join("meta.yaml").is_file() {
                    out.push(LocalRun {
                        experiment_id: exp_id.clone(),
                        experiment_name: exp_name.clone(),
                        run_id: e.file_name().to_string_lossy().to_string(),
                        dir: dir.canonicalize().unwrap_or(dir),
                    });
                }
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.meta().map(|m| m.start_time).unwrap_or(0)));
        Ok(out)
    }

    pub fn find(&self, run_id: &str) -> Result<LocalRun> {
        self.runs()?
            .into_iter()
            .find(|r| r.run_id == run_id || r.run_id.starts_with(run_id) && run_id.len() >= 6)
            .ok_or_else(|| Error::Tracking(format!("no run `{run_id}` in {}", self.root.display())))
    }
}

/// A run's `meta.yaml`, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMeta {
    pub run_name: String,
    pub user: String,
    pub start_time: u64,
    pub end_time: Option<u64>,
    pub status: RunStatus,
}

impl LocalRun {
    fn write_meta(
        &self,
        run_name: &str,
        user: &str,
        start: u64,
        end: Option<u64>,
        status: RunStatus,
    ) -> Result<()> {
        let meta = format!(
            "artifact_uri: {}\nend_time: {}\nentry_point_name: ''\nexperiment_id: {}\nlifecycle_stage: active\nrun_id: {}\nrun_name: {}\nrun_uuid: {}\nsource_name: ''\nsource_type: 4\nsource_version: ''\nstart_time: {start}\nstatus: {}\ntags: []\nuser_id: {}\n",
            yaml_str(&format!("file://{}", self.dir.join("artifacts").display())),
            end.map(|e| e.to_string()).unwrap_or_else(|| "null".into()),
            yaml_str(&self.experiment_id),
            self.run_id,
            yaml_str(run_name),
            self.run_id,
            status.code(),
            yaml_str(user),
        );
        let p = self.dir.join("meta.yaml");
        io(&p, fs::write(&p, meta))
    }

    pub fn meta(&self) -> Result<RunMeta> {
        let p = self.dir.join("meta.yaml");
        let text = io(&p, fs::read_to_string(&p))?;
        let num = |k: &str| read_yaml_field(&text, k).and_then(|v| v.parse::<u64>().ok());
        Ok(RunMeta {
            run_name: read_yaml_field(&text, "run_name").unwrap_or_default(),
            user: read_yaml_field(&text, "user_id").unwrap_or_default(),
            start_time: num("start_time").unwrap_or(0),
            end_time: num("end_time"),
            status: RunStatus::from_code(num("status").unwrap_or(1) as u8),
        })
    }

    fn kv_path(&self, kind: &str, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        let p = self.dir.join(kind).join(key);
        if let Some(parent) = p.parent() {
            io(parent, fs::create_dir_all(parent))?;
        }
        Ok(p)
    }

    /// Logs a parameter. Params are immutable: the same value again is fine, a different one is
    /// refused. A value over MLflow's 6000 characters is stored as an artifact
    /// (`params/<key>.txt`) and the param points at it, rather than being silently truncated.
    pub fn log_param(&self, key: &str, value: &str) -> Result<()> {
        let p = self.kv_path("params", key)?;
        let value = if value.chars().count() > MAX_PARAM_CHARS {
            let rel = format!("params/{key}.txt");
            self.add_artifact_bytes(&rel, value.as_bytes())?;
            format!("(longer than {MAX_PARAM_CHARS} characters: stored as artifact {rel})")
        } else {
            value.to_string()
        };
        if let Ok(old) = fs::read_to_string(&p) {
            if old != value {
                return Err(Error::Tracking(format!(
                    "param `{key}` is already `{old}`; params cannot change within a run"
                )));
            }
            return Ok(());
        }
        io(&p, fs::write(&p, value))
    }

    pub fn set_tag(&self, key: &str, value: &str) -> Result<()> {
        let p = self.kv_path("tags", key)?;
        io(&p, fs::write(&p, value))
    }

    pub fn log_metric(&self, key: &str, value: f64, step: i64) -> Result<()> {
        use std::io::Write;
        let p = self.kv_path("metrics", key)?;
        let mut f = io(
            &p,
            fs::OpenOptions::new().create(true).append(true).open(&p),
        )?;
        let v = if value.is_nan() {
            "nan".to_string()
        } else if value.is_infinite() {
            if value > 0.0 { "inf" } else { "-inf" }.to_string()
        } else {
            format!("{value}")
        };
        io(&p, writeln!(f, "{} {v} {step}", now_ms()))
    }

    pub fn log_input(&self, d: &Dataset) -> Result<()> {
        let p = self.dir.join("cqr_inputs.json");
        let mut all: Vec<Dataset> = fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        all.push(d.clone());
        io(
            &p,
            fs::write(
                &p,
                serde_json::to_vec_pretty(&all).expect("datasets serialise"),
            ),
        )
    }

    pub fn inputs(&self) -> Vec<Dataset> {
        fs::read(self.dir.join("cqr_inputs.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn artifact_path(&self, rel: &str) -> Result<PathBuf> {
        if rel
            .split('/')
            .any(|p| p.is_empty() || p == ".." || p == ".")
        {
            return Err(Error::Tracking(format!("invalid artifact path `{rel}`")));
        }
        let p = self.dir.join("artifacts").join(rel);
        if let Some(parent) = p.parent() {
            io(parent, fs::create_dir_all(parent))?;
        }
        Ok(p)
    }

    pub fn add_artifact_bytes(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let p = self.artifact_path(rel)?;
        io(&p, fs::write(&p, bytes))
    }

    /// Copies a file or a whole directory into the run's artifacts under `rel`.
    pub fn add_artifact(&self, rel: &str, src: &Path) -> Result<()> {
        if src.is_dir() {
            for e in io(src, fs::read_dir(src))? {
                let e = io(src, e)?;
                let name = e.file_name().to_string_lossy().to_string();
                self.add_artifact(&format!("{rel}/{name}"), &e.path())?;
            }
            Ok(())
        } else {
            let p = self.artifact_path(rel)?;
            io(src, fs::copy(src, &p)).map(|_| ())
        }
    }

    /// Artifact files as paths relative to `artifacts/`, sorted.
    pub fn artifact_files(&self) -> Vec<String> {
        files_under(&self.dir.join("artifacts"))
            .into_iter()
            .map(|(rel, _)| rel)
            .collect()
    }

    pub fn finish(&self, status: RunStatus) -> Result<()> {
        let m = self.meta()?;
        self.write_meta(&m.run_name, &m.user, m.start_time, Some(now_ms()), status)
    }

    fn read_kv(&self, kind: &str) -> Vec<(String, String)> {
        files_under(&self.dir.join(kind))
            .into_iter()
            .filter_map(|(rel, p)| fs::read_to_string(p).ok().map(|v| (rel, v)))
            .collect()
    }

    pub fn params(&self) -> Vec<(String, String)> {
        self.read_kv("params")
    }

    pub fn tags(&self) -> Vec<(String, String)> {
        self.read_kv("tags")
    }

    /// Every metric point, grouped by key (sorted) in logged order.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        for (key, text) in self.read_kv("metrics") {
            for line in text.lines() {
                let mut it = line.split_whitespace();
                let (Some(ts), Some(v), Some(step)) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                let value = match v {
                    "nan" => f64::NAN,
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    other => other.parse().unwrap_or(f64::NAN),
                };
                out.push(Metric {
                    key: key.clone(),
                    value,
                    timestamp: ts.parse().unwrap_or(0),
                    step: step.parse().unwrap_or(0),
                });
            }
        }
        out
    }

    pub fn sync(&self) -> SyncState {
        fs::read(self.dir.join("cqr_sync.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn write_sync(&self, s: &SyncState) -> Result<()> {
        let p = self.dir.join("cqr_sync.json");
        let tmp = self.dir.join(".cqr_sync.json.tmp");
        io(
            &tmp,
            fs::write(
                &tmp,
                serde_json::to_vec_pretty(s).expect("sync state serialises"),
            ),
        )?;
        io(&p, fs::rename(&tmp, &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_round_trips_through_the_file_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("runs"));
        let run = store.create_run("cqr", "train tickets", "ci").unwrap();
        run.log_param("seed", "42").unwrap();
        run.log_param("seed", "42").unwrap();
        assert!(run
            .log_param("seed", "43")
            .unwrap_err()
            .to_string()
            .contains("cannot change"));
        run.log_metric("loss", 0.5, 1).unwrap();
        run.log_metric("loss", f64::NAN, 2).unwrap();
        run.set_tag("nested/tag", "x").unwrap();
        run.log_param("long", &"y".repeat(7000)).unwrap();
        run.finish(RunStatus::Finished).unwrap();

        let back = store.find(&run.run_id).unwrap();
        assert_eq!(back.experiment_name, "cqr");
        let m = back.meta().unwrap();
        assert_eq!(
            (m.run_name.as_str(), m.status),
            ("train tickets", RunStatus::Finished)
        );
        assert!(back.params().contains(&("seed".into(), "42".into())));
        assert!(back.tags().contains(&("nested/tag".into(), "x".into())));
        let metrics = back.metrics();
        assert_eq!(metrics.len(), 2);
        assert!(metrics[1].value.is_nan());
        assert_eq!(back.artifact_files(), vec!["params/long.txt"]);
        assert_eq!(store.experiment_id("cqr").unwrap(), "1");
        assert!(dir.path().join("runs/0/meta.yaml").is_file());
        assert!(validate_key("../x").is_err() && validate_key("ok key/1:2").is_ok());
    }
}
