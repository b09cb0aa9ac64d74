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
                let latest = m
                    .latest_version()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into());
                let aliases: Vec<String> = m
                    .aliases
                    .iter()
                    .map(|a| format!("{}→{}", a.alias, a.version))
                    .collect();
                ui::print(&format!(
                    "{:<30}  {:<8}  {}",
                    m.name,
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
            versions.sort_by_key(|v| std::cmp::Reverse(v.number()));
            let model = client.registered_model(&name)?;
            ui::print(&format!(
                "{:<8}  {:<32}  {:<10}  aliases",
                "version", "run", "status"
            ))?;
            for v in versions {
                let names: Vec<&str> = model.aliases_of(&v.version).collect();
                ui::print(&format!(
                    "{:<8}  {:<32}  {:<10}  {}",
                    v.version,
                    v.run().unwrap_or("-"),
                    v.status.as_str(),
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
