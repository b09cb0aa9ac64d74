//! MLflow's REST API (checked against 3.17.2): experiments, runs, batched logging within the
//! server's limits, dataset inputs, artifacts through the artifact proxy, and the model registry.
//! Values are validated before they are sent: the server silently stores 0.0 for a bare NaN and
//! truncates long values without an error.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::http::{encode_query, encode_segment, Auth, HttpClient, HttpSettings};
use super::store::{validate_key, Metric, MAX_PARAM_CHARS};
use super::wire::{
    CreateExperiment, CreateExperimentResponse, CreateModelVersion, CreateRegisteredModel,
    CreateRun, DatasetInput, DatasetSpec, GetExperimentResponse, Ignored, KeyValue,
    ListArtifactsResponse, LogBatch, LogInputs, MetricPoint, ModelVersion, ModelVersionResponse,
    RegisteredModel, RegisteredModelResponse, Run, RunResponse, SearchModelVersionsResponse,
    SearchRegisteredModelsResponse, SetAlias, UpdateRun,
};
use crate::error::{Error, Result};

pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_PER_BATCH: usize = 100;
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Page size for registry searches (the server's cap for registered models).
const SEARCH_PAGE: usize = 1000;

const API: &str = "/api/2.0/mlflow";
const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// Server error codes cqr answers rather than reports.
const NOT_FOUND: &str = "RESOURCE_DOES_NOT_EXIST";
const EXISTS: &str = "RESOURCE_ALREADY_EXISTS";

/// `endpoint?k=v&…`, each value percent-encoded.
fn with_query(endpoint: &str, pairs: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_query(v)))
        .collect();
    format!("{endpoint}?{}", pairs.join("&"))
}

/// The reply, or `None` when the server refused with one of `codes`.
fn unless_code<T>(reply: Result<T>, codes: &[&str]) -> Result<Option<T>> {
    match reply {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.server_code().is_some_and(|c| codes.contains(&c)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Clone)]
pub struct MlflowClient {
    http: HttpClient,
}

impl MlflowClient {
    pub fn new(tracking_uri: &str) -> MlflowClient {
        MlflowClient {
            http: HttpClient::new(tracking_uri, Auth::from_env(), HttpSettings::default()),
        }
    }

    pub fn uri(&self) -> &str {
        self.http.base()
    }

    fn get<R: DeserializeOwned>(&self, endpoint: &str) -> Result<R> {
        self.http
            .json::<(), R>("GET", &format!("{API}/{endpoint}"), None)
    }

    fn post<B: Serialize, R: DeserializeOwned>(&self, endpoint: &str, body: &B) -> Result<R> {
        self.http
            .json("POST", &format!("{API}/{endpoint}"), Some(body))
    }

    /// A POST whose reply carries nothing cqr reads.
    fn send<B: Serialize>(&self, endpoint: &str, body: &B) -> Result<()> {
        self.post::<_, Ignored>(endpoint, body).map(|_| ())
    }

    /// A link to the run in the MLflow UI.
    pub fn run_url(&self, experiment_id: &str, run_id: &str) -> String {
        format!("{}/#/experiments/{experiment_id}/runs/{run_id}", self.uri())
    }

    /// Gets or creates an experiment by name, safe against a concurrent creator.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        let get = || -> Result<Option<String>> {
            let endpoint = with_query("experiments/get-by-name", &[("experiment_name", name)]);
            let reply = self.get::<GetExperimentResponse>(&endpoint);
            Ok(unless_code(reply, &[NOT_FOUND])?.map(|r| r.experiment.experiment_id))
        };
        if let Some(id) = get()? {
            return Ok(id);
        }
        let created = self
            .post::<_, CreateExperimentResponse>("experiments/create", &CreateExperiment { name });
        match unless_code(created, &[EXISTS])? {
            Some(r) => Ok(r.experiment_id),
            None => get()?.ok_or_else(|| {
                Error::Tracking(format!("experiment `{name}` exists but cannot be read"))
            }),
        }
    }

    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        user: &str,
        start_ms: u64,
        tags: &[(String, String)],
    ) -> Result<Run> {
        let body = CreateRun {
            experiment_id,
            run_name,
            user_id: user,
            start_time: start_ms,
            tags: KeyValue::list(tags),
        };
        Ok(self.post::<_, RunResponse>("runs/create", &body)?.run)
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        let endpoint = with_query("runs/get", &[("run_id", run_id)]);
        Ok(self.get::<RunResponse>(&endpoint)?.run)
    }

    /// Logs params in as many calls as the server's limit needs, after checking every key and
    /// that no value is long enough for the server to truncate.
    pub fn log_params(&self, run_id: &str, params: &[(String, String)]) -> Result<()> {
        for (k, v) in params {
            validate_key(k)?;
            if v.chars().count() > MAX_PARAM_CHARS {
                return Err(Error::Tracking(format!(
                    "param `{k}` is longer than {MAX_PARAM_CHARS} characters; the server would truncate it"
                )));
            }
        }
        for chunk in KeyValue::list(params).chunks(MAX_PARAMS_PER_BATCH) {
            let body = LogBatch {
                run_id,
                params: chunk,
                tags: &[],
                metrics: &[],
            };
            self.send("runs/log-batch", &body)?;
        }
        Ok(())
    }

    /// Logs tags in as many calls as the server's limit needs, after checking every key.
    pub fn log_tags(&self, run_id: &str, tags: &[(String, String)]) -> Result<()> {
        for (k, _) in tags {
            validate_key(k)?;
        }
        for chunk in KeyValue::list(tags).chunks(MAX_TAGS_PER_BATCH) {
            let body = LogBatch {
                run_id,
                params: &[],
                tags: chunk,
                metrics: &[],
            };
            self.send("runs/log-batch", &body)?;
        }
        Ok(())
    }

    pub fn log_metrics(&self, run_id: &str, metrics: &[Metric]) -> Result<()> {
        let points: Vec<MetricPoint<'_>> = metrics
            .iter()
            .map(|m| MetricPoint {
                key: &m.key,
                value: m.value.into(),
                timestamp: m.timestamp,
                step: m.step,
            })
            .collect();
        for chunk in points.chunks(MAX_METRICS_PER_BATCH) {
            let body = LogBatch {
                run_id,
                params: &[],
                tags: &[],
                metrics: chunk,
            };
            self.send("runs/log-batch", &body)?;
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
        let body = LogInputs {
            run_id,
            datasets: [DatasetInput {
                tags: [KeyValue {
                    key: "mlflow.data.context".into(),
                    value: context.into(),
                }],
                dataset: DatasetSpec {
                    name,
                    digest: &digest,
                    source_type: "local",
                    source: serde_json::json!({ "uri": source }).to_string(),
                },
            }],
        };
        self.send("runs/log-inputs", &body)
    }

    pub fn finish_run(&self, run_id: &str, status: &str, end_ms: u64) -> Result<()> {
        let body = UpdateRun {
            run_id,
            status,
            end_time: end_ms,
        };
        self.send("runs/update", &body)
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

    /// Every artifact file under `path` of a run with its size, when the server knows it
    /// (recursing: the server lists one level).
    pub fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<(String, Option<u64>)>> {
        let listing: ListArtifactsResponse = self.get(&with_query(
            "artifacts/list",
            &[("run_id", run_id), ("path", path)],
        ))?;
        let mut out = Vec::new();
        for f in listing.files {
            if f.is_dir {
                out.extend(self.list_artifacts(run_id, &f.path)?);
            } else {
                out.push((f.path, f.file_size));
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------------------ registry

    pub fn create_registered_model(&self, name: &str) -> Result<()> {
        let created = self.send("registered-models/create", &CreateRegisteredModel { name });
        unless_code(created, &[EXISTS]).map(|_| ())
    }

    /// Registers `runs:/<run>/model` as a new version.
    pub fn create_model_version(
        &self,
        name: &str,
        run_id: &str,
        tags: &[(String, String)],
    ) -> Result<ModelVersion> {
        let body = CreateModelVersion {
            name,
            source: format!("runs:/{run_id}/model"),
            run_id,
            tags: KeyValue::list(tags),
        };
        Ok(self
            .post::<_, ModelVersionResponse>("model-versions/create", &body)?
            .model_version)
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
        self.send(
            "registered-models/alias",
            &SetAlias {
                name,
                alias,
                version,
            },
        )
    }

    /// The version an alias points at, or `None` when the alias (or model) does not exist.
    pub fn alias_version(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        let endpoint = with_query(
            "registered-models/alias",
            &[("name", name), ("alias", alias)],
        );
        let reply = self.get::<ModelVersionResponse>(&endpoint);
        // 3.17.2 answers a missing alias with 400 INVALID_PARAMETER_VALUE, a missing model with
        // 404.
        let codes = [NOT_FOUND, "INVALID_PARAMETER_VALUE"];
        Ok(unless_code(reply, &codes)?.map(|r| r.model_version))
    }

    pub fn model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let endpoint = with_query(
            "model-versions/get",
            &[("name", name), ("version", version)],
        );
        Ok(self.get::<ModelVersionResponse>(&endpoint)?.model_version)
    }

    /// Every registered model, following the search's pages.
    pub fn search_registered_models(&self) -> Result<Vec<RegisteredModel>> {
        self.pages(
            "registered-models/search",
            &[],
            |r: SearchRegisteredModelsResponse| (r.registered_models, r.next_page_token),
        )
    }

    /// The registered model, with `aliases` (which a versions search leaves out).
    pub fn registered_model(&self, name: &str) -> Result<RegisteredModel> {
        let endpoint = with_query("registered-models/get", &[("name", name)]);
        Ok(self
            .get::<RegisteredModelResponse>(&endpoint)?
            .registered_model)
    }

    /// Every version of a registered model, following the search's pages.
    pub fn search_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        self.pages(
            "model-versions/search",
            &[("filter", &filter)],
            |r: SearchModelVersionsResponse| (r.model_versions, r.next_page_token),
        )
    }

    /// Collects a search's items page by page.
    fn pages<R: DeserializeOwned, T>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
        items: impl Fn(R) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let page_size = SEARCH_PAGE.to_string();
        loop {
            let mut pairs = query.to_vec();
            pairs.push(("max_results", &page_size));
            if let Some(t) = &token {
                pairs.push(("page_token", t));
            }
            let (page, next) = items(self.get(&with_query(endpoint, &pairs))?);
            out.extend(page);
            match next.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn query_values_are_encoded_in_order() {
        assert_eq!(
            with_query(
                "model-versions/search",
                &[("filter", "name='a b'"), ("page_token", "eyJ9==")]
            ),
            "model-versions/search?filter=name%3D%27a%20b%27&page_token=eyJ9%3D%3D"
        );
    }
}
