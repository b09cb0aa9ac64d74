//! MLflow's REST API (checked against 3.17.2): experiments, runs, batched logging within the
//! server's limits, dataset inputs, artifacts through the artifact proxy, and the model registry.
//! Values are validated before they are sent: the server silently stores 0.0 for a bare NaN and
//! truncates long values without an error.

use serde_json::{json, Value};

use super::http::{encode_query, encode_segment, Auth, HttpClient, HttpSettings};
use super::store::{validate_key, Metric, MAX_PARAM_CHARS};
use crate::error::{Error, Result};

pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_PER_BATCH: usize = 100;
pub const MAX_TAGS_PER_BATCH: usize = 100;

const API: &str = "/api/2.0/mlflow";
const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

#[derive(Clone)]
pub struct MlflowClient {
    http: HttpClient,
}

/// A run as the server reports it.
#[derive(Debug, Clone)]
pub struct RemoteRun {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
}

/// A metric value as MLflow wants it: finite numbers as numbers, the rest as strings.
pub fn metric_value(v: f64) -> Value {
    if v.is_nan() {
        Value::from("NaN")
    } else if v == f64::INFINITY {
        Value::from("Infinity")
    } else if v == f64::NEG_INFINITY {
        Value::from("-Infinity")
    } else {
        Value::from(v)
    }
}

fn kv(items: &[(String, String)]) -> Vec<Value> {
    items
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

fn str_field(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(String::from)
}

impl MlflowClient {
    pub fn new(tracking_uri: &str) -> MlflowClient {
        MlflowClient {
            http: HttpClient::new(tracking_uri, Auth::from_env(), HttpSettings::default()),
        }
    }

    pub fn with_http(http: HttpClient) -> MlflowClient {
        MlflowClient { http }
    }

    pub fn uri(&self) -> &str {
        self.http.base()
    }

    fn call(&self, method: &str, endpoint: &str, body: Option<Value>) -> Result<Value> {
        self.http
            .json(method, &format!("{API}/{endpoint}"), body.as_ref())
    }

    /// A link to the run in the MLflow UI.
    pub fn run_url(&self, experiment_id: &str, run_id: &str) -> String {
        format!("{}/#/experiments/{experiment_id}/runs/{run_id}", self.uri())
    }

    /// Gets or creates an experiment by name, safe against a concurrent creator.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        let get = || -> Result<Option<String>> {
            match self.call(
                "GET",
                &format!(
                    "experiments/get-by-name?experiment_name={}",
                    encode_query(name)
                ),
                None,
            ) {
                Ok(v) => Ok(str_field(&v, &["experiment", "experiment_id"])),
                Err(e) if e.server_code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
                Err(e) => Err(e),
            }
        };
        if let Some(id) = get()? {
            return Ok(id);
        }
        match self.call("POST", "experiments/create", Some(json!({"name": name}))) {
            Ok(v) => str_field(&v, &["experiment_id"])
                .ok_or_else(|| Error::Tracking("experiments/create returned no id".into())),
            Err(e) if e.server_code() == Some("RESOURCE_ALREADY_EXISTS") => {
                get()?.ok_or_else(|| {
                    Error::Tracking(format!("experiment `{name}` exists but cannot be read"))
                })
            }
            Err(e) => Err(e),
        }
    }

    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        user: &str,
        start_ms: u64,
        tags: &[(String, String)],
    ) -> Result<RemoteRun> {
        let v = self.call(
            "POST",
            "runs/create",
            Some(json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "user_id": user,
                "start_time": start_ms,
                "tags": kv(tags),
            })),
        )?;
        parse_run(&v["run"])
    }

    pub fn get_run(&self, run_id: &str) -> Result<(RemoteRun, Value)> {
        let v = self.call(
            "GET",
            &format!("runs/get?run_id={}", encode_query(run_id)),
            None,
        )?;
        Ok((parse_run(&v["run"])?, v["run"].clone()))
    }

    /// Logs params, tags and metrics in as many calls as the server's limits need.
    pub fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
        metrics: &[Metric],
    ) -> Result<()> {
        for (k, v) in params {
            validate_key(k)?;
            if v.chars().count() > MAX_PARAM_CHARS {
                return Err(Error::Tracking(format!(
                    "param `{k}` is longer than {MAX_PARAM_CHARS} characters; the server would truncate it"
                )));
            }
        }
        for (k, _) in tags.iter() {
            validate_key(k)?;
        }
        for m in metrics {
            validate_key(&m.key)?;
        }
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            self.call(
                "POST",
                "runs/log-batch",
                Some(json!({"run_id": run_id, "params": kv(chunk)})),
            )?;
        }
        for chunk in tags.chunks(MAX_TAGS_PER_BATCH) {
            self.call(
                "POST",
                "runs/log-batch",
                Some(json!({"run_id": run_id, "tags": kv(chunk)})),
            )?;
        }
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            self.log_metrics(run_id, chunk)?;
        }
        Ok(())
    }

    pub fn log_metrics(&self, run_id: &str, metrics: &[Metric]) -> Result<()> {
        let items: Vec<Value> = metrics
            .iter()
            .map(|m| json!({"key": m.key, "value": metric_value(m.value), "timestamp": m.timestamp, "step": m.step}))
            .collect();
        for chunk in items.chunks(MAX_METRICS_PER_BATCH) {
            self.call(
                "POST",
                "runs/log-batch",
                Some(json!({"run_id": run_id, "metrics": chunk})),
            )?;
        }
        Ok(())
    }

    pub fn log_input(
        &self,
        run_id: &str,
        name: &str,
        digest: &str,
        source: &str,
        context: &str,
    ) -> Result<()> {
        // The server caps digests at 36 characters.
        let digest: String = digest.chars().take(36).collect();
        self.call(
            "POST",
            "runs/log-inputs",
            Some(json!({"run_id": run_id, "datasets": [{
                "tags": [{"key": "mlflow.data.context", "value": context}],
                "dataset": {"name": name, "digest": digest, "source_type": "local",
                            "source": json!({"uri": source}).to_string()}
            }]})),
        )?;
        Ok(())
    }

    pub fn finish_run(&self, run_id: &str, status: &str, end_ms: u64) -> Result<()> {
        self.call(
            "POST",
            "runs/update",
            Some(json!({"run_id": run_id, "status": status, "end_time": end_ms})),
        )?;
        Ok(())
    }

    /// Path of a run-relative artifact under the proxy: `<exp>/<run>/artifacts/<rel>`.
    fn artifact_url(artifact_uri: &str, rel: &str) -> Result<String> {
        let base = artifact_uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
            Error::Tracking(format!(
                "the run's artifact location `{artifact_uri}` is not served by the tracking server's artifact proxy; \
                 start the server with artifact serving (the default)"
            ))
        })?;
        let base = base.trim_start_matches('/').trim_end_matches('/');
        let mut url = format!(
            "{ARTIFACTS}/{}",
            base.split('/')
                .map(encode_segment)
                .collect::<Vec<_>>()
                .join("/")
        );
        for seg in rel.split('/').filter(|s| !s.is_empty()) {
            url.push('/');
            url.push_str(&encode_segment(seg));
        }
        Ok(url)
    }

    pub fn upload_artifact(&self, artifact_uri: &str, rel: &str, bytes: &[u8]) -> Result<()> {
        let url = Self::artifact_url(artifact_uri, rel)?;
        self.http
            .send("PUT", &url, Some((bytes, "application/octet-stream")))?;
        Ok(())
    }

    pub fn download_artifact(&self, artifact_uri: &str, rel: &str) -> Result<Vec<u8>> {
        let url = Self::artifact_url(artifact_uri, rel)?;
        Ok(self.http.send("GET", &url, None)?.body)
    }

    /// Every artifact file under `path` of a run (recursing: the server lists one level).
    pub fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<(String, u64)>> {
        let v = self.call(
            "GET",
            &format!(
                "artifacts/list?run_id={}&path={}",
                encode_query(run_id),
                encode_query(path)
            ),
            None,
        )?;
        let mut out = Vec::new();
        for f in v
            .get("files")
            .and_then(|f| f.as_array())
            .cloned()
            .unwrap_or_default()
        {
            let p = f["path"].as_str().unwrap_or_default().to_string();
            if f["is_dir"].as_bool().unwrap_or(false) {
                out.extend(self.list_artifacts(run_id, &p)?);
            } else {
                out.push((p, f["file_size"].as_u64().unwrap_or(0)));
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------------------ registry

    pub fn create_registered_model(&self, name: &str) -> Result<()> {
        match self.call(
            "POST",
            "registered-models/create",
            Some(json!({"name": name})),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.server_code() == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Registers `runs:/<run>/model` as a new version; returns the version.
    pub fn create_model_version(
        &self,
        name: &str,
        run_id: &str,
        tags: &[(String, String)],
    ) -> Result<String> {
        let v = self.call(
            "POST",
            "model-versions/create",
            Some(json!({"name": name, "source": format!("runs:/{run_id}/model"), "run_id": run_id, "tags": kv(tags)})),
        )?;
        str_field(&v, &["model_version", "version"])
            .ok_or_else(|| Error::Tracking("model-versions/create returned no version".into()))
    }

    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        if alias.is_empty()
            || !alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::Usage(format!(
                "alias `{alias}`: use only letters, digits, `_` and `-`"
            )));
        }
        self.call(
            "POST",
            "registered-models/alias",
            Some(json!({"name": name, "alias": alias, "version": version})),
        )?;
        Ok(())
    }

    /// The version an alias points at, or `None` when the alias (or model) does not exist.
    pub fn alias_version(&self, name: &str, alias: &str) -> Result<Option<Value>> {
        match self.call(
            "GET",
            &format!(
                "registered-models/alias?name={}&alias={}",
                encode_query(name),
                encode_query(alias)
            ),
            None,
        ) {
            Ok(v) => Ok(Some(v["model_version"].clone())),
            Err(e)
                if matches!(
                    e.server_code(),
                    Some("RESOURCE_DOES_NOT_EXIST" | "INVALID_PARAMETER_VALUE")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub fn model_version(&self, name: &str, version: &str) -> Result<Value> {
        let v = self.call(
            "GET",
            &format!(
                "model-versions/get?name={}&version={}",
                encode_query(name),
                encode_query(version)
            ),
            None,
        )?;
        Ok(v["model_version"].clone())
    }

    /// Registered models, or the versions of one.
    pub fn search_registered_models(&self) -> Result<Vec<Value>> {
        let v = self.call("GET", "registered-models/search?max_results=1000", None)?;
        Ok(v.get("registered_models")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default())
    }

    /// The registered model, with `aliases: [{alias, version}]` (versions search omits them).
    pub fn registered_model(&self, name: &str) -> Result<Value> {
        let v = self.call(
            "GET",
            &format!("registered-models/get?name={}", encode_query(name)),
            None,
        )?;
        Ok(v["registered_model"].clone())
    }

    pub fn search_model_versions(&self, name: &str) -> Result<Vec<Value>> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let v = self.call(
            "GET",
            &format!(
                "model-versions/search?filter={}&max_results=1000",
                encode_query(&filter)
            ),
            None,
        )?;
        Ok(v.get("model_versions")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default())
    }
}

fn parse_run(run: &Value) -> Result<RemoteRun> {
    let info = &run["info"];
    match (
        str_field(info, &["run_id"]),
        str_field(info, &["experiment_id"]),
        str_field(info, &["artifact_uri"]),
    ) {
        (Some(run_id), Some(experiment_id), Some(artifact_uri)) => Ok(RemoteRun {
            run_id,
            experiment_id,
            artifact_uri,
        }),
        _ => Err(Error::Tracking(
            "the server's run has no run_id, experiment_id or artifact_uri".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_floats_are_strings() {
        assert_eq!(metric_value(f64::NAN), Value::from("NaN"));
        assert_eq!(metric_value(f64::NEG_INFINITY), Value::from("-Infinity"));
        assert_eq!(metric_value(0.5), Value::from(0.5));
    }

    #[test]
    fn artifact_urls_follow_the_proxy_layout() {
        let u = MlflowClient::artifact_url("mlflow-artifacts:/1/abc/artifacts", "model/a b.json")
            .unwrap();
        assert_eq!(
            u,
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/a%20b.json"
        );
        assert!(MlflowClient::artifact_url("s3://bucket/x", "m").is_err());
    }
}
