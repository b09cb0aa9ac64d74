//! `cqr models list [NAME]` and `cqr models promote NAME VERSION --alias ALIAS`: the model
//! registry on the tracking server.

use clap::{Args, Subcommand};

use super::Outcome;
use crate::error::Error;
use crate::tracking::TrackingSettings;
use crate::ui;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List registered models, or the versions of one.
    List(ListArgs),
    /// Point an alias (e.g. champion) at a version.
    Promote(PromoteArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    pub name: String,
    pub version: String,
    #[arg(long)]
    pub alias: String,
}

pub fn run(cmd: ModelsCommand, tracking: &TrackingSettings) -> anyhow::Result<Outcome> {
    let client = tracking.server().ok_or_else(|| {
        Error::Usage(
            "the registry lives on a tracking server: set MLFLOW_TRACKING_URI or --tracking-uri"
                .into(),
        )
    })?;
    match cmd {
        ModelsCommand::List(ListArgs { name: None }) => {
            ui::print(&format!("{:<30}  {:<8}  aliases", "model", "latest"))?;
            for m in client.search_registered_models()? {
                let latest = m["latest_versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["version"].as_str().and_then(|s| s.parse::<u64>().ok()))
                    .max()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into());
                let aliases: Vec<String> = m["aliases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        format!(
                            "{}→{}",
                            a["alias"].as_str().unwrap_or("?"),
                            a["version"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                ui::print(&format!(
                    "{:<30}  {:<8}  {}",
                    m["name"].as_str().unwrap_or("?"),
                    latest,
                    aliases.join(", ")
                ))?;
            }
        }
        ModelsCommand::List(ListArgs { name: Some(name) }) => {
            let mut versions = client.search_model_versions(&name)?;
            if versions.is_empty() {
                return Err(Error::Tracking(format!(
                    "no versions of model `{name}` on {}",
                    client.uri()
                ))
                .into());
            }
            versions.sort_by_key(|v| {
                std::cmp::Reverse(
                    v["version"]
                        .as_str()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0),
                )
            });
            let aliases = client.registered_model(&name)?["aliases"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ui::print(&format!(
                "{:<8}  {:<32}  {:<10}  aliases",
                "version", "run", "status"
            ))?;
            for v in versions {
                let version = v["version"].as_str().unwrap_or("?");
                let names: Vec<&str> = aliases
                    .iter()
                    .filter(|a| a["version"].as_str() == Some(version))
                    .filter_map(|a| a["alias"].as_str())
                    .collect();
                ui::print(&format!(
                    "{:<8}  {:<32}  {:<10}  {}",
                    version,
                    v["run_id"].as_str().unwrap_or("-"),
                    v["status"].as_str().unwrap_or("?"),
                    names.join(", ")
                ))?;
            }
        }
        ModelsCommand::Promote(p) => {
            client.model_version(&p.name, &p.version)?;
            client.set_alias(&p.name, &p.alias, &p.version)?;
            ui::print(&format!(
                "models:/{}@{} → version {}",
                p.name, p.alias, p.version
            ))?;
        }
    }
    Ok(Outcome::Success)
}
