//! Model references: a bundle directory, `models:/NAME/VERSION`, `models:/NAME@ALIAS` or
//! `runs:/RUN_ID/PATH`. Registry and run references are downloaded once into a cache keyed by
//! run and path, verified against the manifest's checksums, and fetched again when a cached copy
//! is corrupt or partial.

use std::path::{Path, PathBuf};

use super::mlflow::MlflowClient;
use super::wire::ModelVersion;
use super::TrackingSettings;
use crate::error::{Error, Result};
use crate::io::atomic::TempDir;
use crate::models::bundle::load_manifest;
use crate::models::Model;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Dir(PathBuf),
    Version { name: String, version: String },
    Alias { name: String, alias: String },
    Run { run_id: String, path: String },
}

impl ModelRef {
    pub fn parse(s: &str) -> Result<ModelRef> {
        if let Some(rest) = s.strip_prefix("models:/") {
            if let Some((name, alias)) = rest.rsplit_once('@') {
                if !name.is_empty() && !alias.is_empty() {
                    return Ok(ModelRef::Alias {
                        name: name.to_string(),
                        alias: alias.to_string(),
                    });
                }
            } else if let Some((name, version)) = rest.rsplit_once('/') {
                if !name.is_empty()
                    && !version.is_empty()
                    && version.chars().all(|c| c.is_ascii_digit())
                {
                    return Ok(ModelRef::Version {
                        name: name.to_string(),
                        version: version.to_string(),
                    });
                }
            }
            return Err(Error::Usage(format!(
                "`{s}`: expected models:/NAME/VERSION or models:/NAME@ALIAS"
            )));
        }
        if let Some(rest) = s.strip_prefix("runs:/") {
            return match rest.split_once('/') {
                Some((run, path)) if !run.is_empty() && !path.is_empty() => Ok(ModelRef::Run {
                    run_id: run.to_string(),
                    path: path.trim_end_matches('/').to_string(),
                }),
                _ => Err(Error::Usage(format!(
                    "`{s}`: expected runs:/RUN_ID/PATH (e.g. runs:/abc123/model)"
                ))),
            };
        }
        Ok(ModelRef::Dir(PathBuf::from(s)))
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Loads the model a reference names; a registry reference answers with the registry's name and
/// version in every output record.
pub fn load_model(reference: &str, settings: &TrackingSettings) -> Result<Model> {
    let (dir, registry) = resolve(reference, settings)?;
    let mut model = Model::load(&dir)?;
    model.registry = registry;
    Ok(model)
}

/// Resolves a reference to a local bundle directory, downloading when needed; for registry
/// references also the (name, version) it resolved to.
pub fn resolve(
    reference: &str,
    settings: &TrackingSettings,
) -> Result<(PathBuf, Option<(String, String)>)> {
    let r = ModelRef::parse(reference)?;
    if let ModelRef::Dir(p) = r {
        return Ok((p, None));
    }
    // A run of the local store needs no server.
    if let ModelRef::Run { run_id, path } = &r {
        if let Ok(local) = settings.store().find(run_id) {
            let dir = local.dir.join("artifacts").join(path);
            if dir.is_dir() {
                return Ok((dir, None));
            }
        }
    }
    let client = settings.server().ok_or_else(|| {
        Error::Usage(format!(
            "`{reference}` needs a tracking server: set MLFLOW_TRACKING_URI or pass --tracking-uri"
        ))
    })?;
    let (run_id, path, registry) = match &r {
        ModelRef::Run { run_id, path } => (run_id.clone(), path.clone(), None),
        ModelRef::Version { name, version } => {
            let v = client.model_version(name, version)?;
            let (run, path) = source_of(&v, reference)?;
            (run, path, Some((name.clone(), v.version)))
        }
        ModelRef::Alias { name, alias } => {
            let v = client.alias_version(name, alias)?.ok_or_else(|| {
                Error::Tracking(format!(
                    "model `{name}` has no alias `{alias}` on {}",
                    client.uri()
                ))
            })?;
            let (run, path) = source_of(&v, reference)?;
            (run, path, Some((name.clone(), v.version)))
        }
        ModelRef::Dir(_) => unreachable!("handled above"),
    };
    let dest = crate::util::cache_root()
        .join("runs")
        .join(safe(&run_id))
        .join(safe(&path));
    if dest.is_dir() {
        match load_manifest(&dest) {
            Ok(_) => return Ok((dest, registry)),
            Err(e) => {
                tracing::warn!("cached copy of {reference} is damaged ({e}); fetching it again");
                let _ = std::fs::remove_dir_all(&dest);
            }
        }
    }
    download(&client, &run_id, &path, &dest, reference)?;
    Ok((dest, registry))
}

/// The run and artifact path of a registered version (source `runs:/<run>/<path>`, or any
/// source of a version registered from a run, whose bundle is then under `model`).
fn source_of(version: &ModelVersion, reference: &str) -> Result<(String, String)> {
    match (ModelRef::parse(&version.source), version.run()) {
        (Ok(ModelRef::Run { run_id, path }), _) => Ok((run_id, path)),
        (_, Some(run)) => Ok((run.to_string(), "model".to_string())),
        _ => Err(Error::Tracking(format!(
            "{reference}: the version's source `{}` is not a run artifact cqr can fetch",
            version.source
        ))),
    }
}

fn download(
    client: &MlflowClient,
    run_id: &str,
    path: &str,
    dest: &Path,
    reference: &str,
) -> Result<()> {
    let run = client.get_run(run_id)?;
    let files = client.list_artifacts(run_id, path)?;
    if files.is_empty() {
        return Err(Error::Tracking(format!(
            "{reference}: run {run_id} has no artifacts under `{path}`"
        )));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = TempDir::beside(dest)?;
    for (file, size) in &files {
        let rel = file
            .strip_prefix(path)
            .unwrap_or(file)
            .trim_start_matches('/');
        let bytes = client.download_artifact(&run.info.artifact_uri, file)?;
        if let Some(size) = size.filter(|&s| s != bytes.len() as u64) {
            return Err(Error::Tracking(format!(
                "{reference}: `{file}` arrived with {} bytes, the server lists {size}",
                bytes.len()
            )));
        }
        let target = tmp.path().join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&target, bytes).map_err(|e| Error::io(&target, e))?;
    }
    load_manifest(tmp.path()).map_err(|e| {
        Error::Tracking(format!(
            "{reference}: the downloaded bundle does not verify: {e}"
        ))
    })?;
    tmp.commit(dest, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reference_form() {
        assert_eq!(
            ModelRef::parse("models:/intents/3").unwrap(),
            ModelRef::Version {
                name: "intents".into(),
                version: "3".into()
            }
        );
        assert_eq!(
            ModelRef::parse("models:/intents@champion").unwrap(),
            ModelRef::Alias {
                name: "intents".into(),
                alias: "champion".into()
            }
        );
        assert_eq!(
            ModelRef::parse("runs:/abc/model").unwrap(),
            ModelRef::Run {
                run_id: "abc".into(),
                path: "model".into()
            }
        );
        assert_eq!(
            ModelRef::parse("models/tickets").unwrap(),
            ModelRef::Dir("models/tickets".into())
        );
        assert!(ModelRef::parse("models:/x/latest").is_err());
        assert!(ModelRef::parse("runs:/abc").is_err());
    }
}
