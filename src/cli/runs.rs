//! `cqr runs list` and `cqr runs push`: the local run store and sending what the tracking server
//! has not received yet.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Outcome;
use crate::error::Error;
use crate::tracking::{push, TrackingSettings};
use crate::ui;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List the runs in the local store, newest first, with their sync state.
    List(ListArgs),
    /// Send unsent runs (or the ones named) to the tracking server; safe to repeat.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Run ids (or unique prefixes of at least 6 characters); default: every unsent run.
    pub run_ids: Vec<String>,
}

/// One run of `cqr runs list --json`.
#[derive(Serialize)]
struct RunLine<'a> {
    run_id: &'a str,
    experiment: &'a str,
    name: &'a str,
    status: &'a str,
    start_time: u64,
    synced: bool,
    remote_run_id: Option<&'a str>,
    tracking_uri: Option<&'a str>,
    registered_version: Option<&'a str>,
    last_error: Option<&'a str>,
}

pub fn run(cmd: RunsCommand, tracking: &TrackingSettings) -> anyhow::Result<Outcome> {
    let store = tracking.store();
    match cmd {
        RunsCommand::List(a) => {
            let runs = store.runs()?;
            if !a.json {
                ui::print(&format!(
                    "{:<32}  {:<10}  {:<22}  {:<8}  {:<20}  sync",
                    "run", "experiment", "name", "status", "started"
                ))?;
            }
            for r in runs {
                let m = r.meta()?;
                let s = r.sync();
                let sync = match (&s.remote_run_id, s.synced) {
                    (Some(id), true) => format!("sent as {id}"),
                    (_, false) if s.tracking_uri.is_some() => {
                        "NOT SENT (cqr runs push)".to_string()
                    }
                    _ => "local only".to_string(),
                };
                if a.json {
                    let line = RunLine {
                        run_id: &r.run_id,
                        experiment: &r.experiment_name,
                        name: &m.run_name,
                        status: m.status.as_str(),
                        start_time: m.start_time,
                        synced: s.synced,
                        remote_run_id: s.remote_run_id.as_deref(),
                        tracking_uri: s.tracking_uri.as_deref(),
                        registered_version: s.registered_version.as_deref(),
                        last_error: s.last_error.as_deref(),
                    };
                    ui::print(
                        &serde_json::to_string(&line).expect("a run line always serialises"),
                    )?;
                } else {
                    ui::print(&format!(
                        "{:<32}  {:<10}  {:<22}  {:<8}  {:<20}  {sync}",
                        r.run_id,
                        r.experiment_name,
                        m.run_name,
                        m.status.as_str(),
                        crate::util::rfc3339_utc(m.start_time / 1000)
                    ))?;
                }
            }
            Ok(Outcome::Success)
        }
        RunsCommand::Push(a) => {
            let client = tracking.server().ok_or_else(|| {
                Error::Usage("nothing to push to: set MLFLOW_TRACKING_URI or --tracking-uri".into())
            })?;
            let runs = if a.run_ids.is_empty() {
                store
                    .runs()?
                    .into_iter()
                    .filter(|r| !r.sync().synced)
                    .collect()
            } else {
                a.run_ids
                    .iter()
                    .map(|id| store.find(id))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let mut failed = 0;
            let mut sent = 0;
            for r in &runs {
                if r.sync().synced {
                    ui::note(&format!("{}: already on the server", r.run_id));
                    continue;
                }
                match push(r, &client) {
                    Ok(s) => {
                        sent += 1;
                        let rid = s.remote_run_id.unwrap_or_default();
                        let url =
                            client.run_url(s.remote_experiment_id.as_deref().unwrap_or("0"), &rid);
                        let reg = s
                            .registered_version
                            .map(|v| format!(", registered as version {v}"))
                            .unwrap_or_default();
                        ui::print(&format!("pushed {} → {rid}{reg}  {url}", r.run_id))?;
                    }
                    Err(e) => {
                        failed += 1;
                        ui::warn(&format!("{}: not sent: {e}", r.run_id));
                    }
                }
            }
            ui::note(&format!(
                "{sent} run(s) pushed, {failed} failed, {} already on the server",
                runs.len() - sent - failed
            ));
            if failed > 0 {
                return Err(Error::Tracking(format!(
                    "{failed} run(s) could not be pushed; they stay in {}",
                    store.root().display()
                ))
                .into());
            }
            Ok(Outcome::Success)
        }
    }
}
