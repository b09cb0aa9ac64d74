//! Tracking: every run cqr makes is recorded in the local store (`runs/`, MLflow's file layout)
//! and, when a tracking URI names an HTTP(S) server, pushed there over MLflow's REST API. The
//! local copy is the source of truth: a server that is down or fails mid-push costs nothing, the
//! run stays flagged unsynced and `cqr runs push` sends the rest later, never anything twice.
//! `resolve` turns `models:/` and `runs:/` references into verified local bundles.

pub mod http;
pub mod mlflow;
pub mod refs;
pub mod store;
pub mod wire;

use std::path::PathBuf;

use mlflow::MlflowClient;
use store::{LocalRun, LocalStore, Registration, RunStatus, SyncState};

use crate::error::{Error, Result};

/// Where runs go, resolved once: `--tracking-uri` > `MLFLOW_TRACKING_URI`; `--experiment` >
/// `MLFLOW_EXPERIMENT_NAME` > `cqr`; the local store is `--runs-dir` > `CQR_RUNS_DIR` > `runs`.
#[derive(Debug, Clone)]
pub struct TrackingSettings {
    pub uri: Option<String>,
    pub experiment: String,
    pub runs_dir: PathBuf,
}

impl TrackingSettings {
    /// The HTTP(S) server, if one is configured (any other URI is a local store path).
    pub fn server(&self) -> Option<MlflowClient> {
        self.uri
            .as_deref()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .map(MlflowClient::new)
    }

    pub fn store(&self) -> LocalStore {
        match self.uri.as_deref() {
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                LocalStore::new(u.strip_prefix("file://").unwrap_or(u))
            }
            _ => LocalStore::new(&self.runs_dir),
        }
    }
}

/// What happened to a run at its end.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub local_run_id: String,
    pub local_dir: PathBuf,
    /// The server's run id and UI link, when the push succeeded.
    pub remote: Option<(String, String)>,
    pub registered_version: Option<String>,
    /// Why the run is not (fully) on the server, when it is not.
    pub unsynced_reason: Option<String>,
}

/// A run being recorded.
pub struct ActiveRun {
    pub local: LocalRun,
    settings: TrackingSettings,
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && s.len() == 40).then_some(s)
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

impl ActiveRun {
    pub fn start(settings: &TrackingSettings, run_name: &str, command: &str) -> Result<ActiveRun> {
        let store = settings.store();
        let local = store.create_run(&settings.experiment, run_name, &user())?;
        local.set_tag("mlflow.source.name", "cqr")?;
        local.set_tag("mlflow.source.type", "LOCAL")?;
        local.set_tag("cqr.version", env!("CARGO_PKG_VERSION"))?;
        local.set_tag("cqr.command", command)?;
        if let Some(c) = git_commit() {
            local.set_tag("mlflow.source.git.commit", &c)?;
        }
        Ok(ActiveRun {
            local,
            settings: settings.clone(),
        })
    }

    /// Ends the run locally, then pushes it when a server is configured. A failed push is a
    /// warning, never an error: the run is kept for `cqr runs push`.
    pub fn end(self, status: RunStatus, register: Option<Registration>) -> Result<RunOutcome> {
        self.local.finish(status)?;
        if register.is_some() {
            let mut s = self.local.sync();
            s.register = register;
            self.local.write_sync(&s)?;
        }
        let mut outcome = RunOutcome {
            local_run_id: self.local.run_id.clone(),
            local_dir: self.local.dir.clone(),
            remote: None,
            registered_version: None,
            unsynced_reason: None,
        };
        match self.settings.server() {
            None => {
                if self.local.sync().register.is_some() {
                    outcome.unsynced_reason =
                        Some("registration needs a tracking server (set MLFLOW_TRACKING_URI), then `cqr runs push`".into());
                }
            }
            Some(client) => match push(&self.local, &client) {
                Ok(s) => {
                    outcome.remote = s.remote_run_id.clone().map(|r| {
                        let url =
                            client.run_url(s.remote_experiment_id.as_deref().unwrap_or("0"), &r);
                        (r, url)
                    });
                    outcome.registered_version = s.registered_version.clone();
                }
                Err(e) => outcome.unsynced_reason = Some(e.to_string()),
            },
        }
        Ok(outcome)
    }
}

/// Sends whatever of a local run the server does not have yet; resumable and idempotent.
pub fn push(run: &LocalRun, client: &MlflowClient) -> Result<SyncState> {
    let mut s = run.sync();
    if let Some(uri) = &s.tracking_uri {
        if uri != client.uri() && s.remote_run_id.is_some() {
            return Err(Error::Tracking(format!(
                "run {} was pushed to {uri}, not {}; it is not sent twice",
                run.run_id,
                client.uri()
            )));
        }
    }
    s.tracking_uri = Some(client.uri().to_string());
    let result = push_steps(run, client, &mut s);
    s.last_error = result.as_ref().err().map(|e| e.to_string());
    s.synced = result.is_ok();
    run.write_sync(&s)?;
    result.map(|_| s)
}

fn push_steps(run: &LocalRun, client: &MlflowClient, s: &mut SyncState) -> Result<()> {
    let meta = run.meta()?;
    if s.remote_run_id.is_none() {
        let exp = client.experiment_id(&run.experiment_name)?;
        let tags = run.tags();
        let remote = client.create_run(&exp, &meta.run_name, &meta.user, meta.start_time, &tags)?;
        s.remote_experiment_id = Some(remote.info.experiment_id);
        s.remote_run_id = Some(remote.info.run_id);
        s.remote_artifact_uri = Some(remote.info.artifact_uri);
        s.tags_sent = true;
        run.write_sync(s)?;
    }
    let rid = s.remote_run_id.clone().expect("created above");
    let artifact_uri = s.remote_artifact_uri.clone().expect("created with the run");
    if !s.params_sent {
        client.log_params(&rid, &run.params())?;
        s.params_sent = true;
        run.write_sync(s)?;
    }
    if !s.tags_sent {
        client.log_tags(&rid, &run.tags())?;
        s.tags_sent = true;
        run.write_sync(s)?;
    }
    let metrics = run.metrics();
    while s.metrics_sent < metrics.len() {
        let end = (s.metrics_sent + mlflow::MAX_METRICS_PER_BATCH).min(metrics.len());
        client.log_metrics(&rid, &metrics[s.metrics_sent..end])?;
        s.metrics_sent = end;
        run.write_sync(s)?;
    }
    if !s.inputs_sent {
        for d in run.inputs() {
            client.log_input(&rid, &d.name, &d.digest, &d.source, &d.context)?;
        }
        s.inputs_sent = true;
        run.write_sync(s)?;
    }
    if !s.artifacts_sent {
        // Uploads overwrite, so a push interrupted here simply sends every file again.
        for rel in run.artifact_files() {
            let p = run.dir.join("artifacts").join(&rel);
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            client.upload_artifact(&artifact_uri, &rel, &bytes)?;
        }
        s.artifacts_sent = true;
        run.write_sync(s)?;
    }
    if !s.status_sent && meta.status != RunStatus::Running {
        client.finish_run(
            &rid,
            meta.status.as_str(),
            meta.end_time.unwrap_or(meta.start_time),
        )?;
        s.status_sent = true;
        run.write_sync(s)?;
    }
    if let Some(reg) = s.register.clone() {
        if s.registered_version.is_none() {
            client.create_registered_model(&reg.name)?;
            let tags = vec![("cqr.local_run_id".to_string(), run.run_id.clone())];
            let v = client.create_model_version(&reg.name, &rid, &tags)?;
            s.registered_version = Some(v.version);
            run.write_sync(s)?;
        }
        if let (Some(alias), false, true) = (&reg.alias, s.alias_set, reg.move_alias) {
            client.set_alias(
                &reg.name,
                alias,
                s.registered_version.as_deref().expect("registered above"),
            )?;
            s.alias_set = true;
            run.write_sync(s)?;
        }
    }
    Ok(())
}
