//! MLflow's REST messages as cqr sends and reads them, following the 3.17.2 server on the wire:
//! request bodies and the parts of responses cqr uses. A field cqr relies on is required, so a
//! server whose schema changed is an error naming the endpoint and the missing field; everything
//! else is an `Option` (absent reads as `None`). The server omits empty repeated fields, so every
//! `Vec` defaults to empty; unknown fields are ignored. No HTTP here: `mlflow` sends these.

use serde::{Deserialize, Serialize};

// --------------------------------------------------------------------------------- requests

/// A `{key, value}` pair: params and tags in requests and responses alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn list(items: &[(String, String)]) -> Vec<KeyValue> {
        items
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }
}

/// A metric value as MLflow wants it: finite numbers as numbers, the rest as the strings
/// `NaN`, `Infinity` and `-Infinity` (serde_json would write `null`, which the server refuses).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetricValue {
    Number(f64),
    Special(&'static str),
}

impl From<f64> for MetricValue {
    fn from(v: f64) -> Self {
        if v.is_nan() {
            MetricValue::Special("NaN")
        } else if v == f64::INFINITY {
            MetricValue::Special("Infinity")
        } else if v == f64::NEG_INFINITY {
            MetricValue::Special("-Infinity")
        } else {
            MetricValue::Number(v)
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricPoint<'a> {
    pub key: &'a str,
    pub value: MetricValue,
    pub timestamp: u64,
    pub step: i64,
}

#[derive(Debug, Serialize)]
pub struct CreateExperiment<'a> {
    pub name: &'a str,
}

#[derive(Debug, Serialize)]
pub struct CreateRun<'a> {
    pub experiment_id: &'a str,
    pub run_name: &'a str,
    pub user_id: &'a str,
    pub start_time: u64,
    pub tags: Vec<KeyValue>,
}

/// `runs/log-batch`; empty lists are left out.
#[derive(Debug, Serialize)]
pub struct LogBatch<'a> {
    pub run_id: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub params: &'a [KeyValue],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub tags: &'a [KeyValue],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub metrics: &'a [MetricPoint<'a>],
}

#[derive(Debug, Serialize)]
pub struct LogInputs<'a> {
    pub run_id: &'a str,
    pub datasets: [DatasetInput<'a>; 1],
}

#[derive(Debug, Serialize)]
pub struct DatasetInput<'a> {
    pub tags: [KeyValue; 1],
    pub dataset: DatasetSpec<'a>,
}

#[derive(Debug, Serialize)]
pub struct DatasetSpec<'a> {
    pub name: &'a str,
    pub digest: &'a str,
    pub source_type: &'a str,
    /// JSON text, e.g. `{"uri": "…"}`: MLflow stores the source as an opaque string.
    pub source: String,
}

#[derive(Debug, Serialize)]
pub struct UpdateRun<'a> {
    pub run_id: &'a str,
    pub status: &'a str,
    pub end_time: u64,
}

#[derive(Debug, Serialize)]
pub struct CreateRegisteredModel<'a> {
    pub name: &'a str,
}

#[derive(Debug, Serialize)]
pub struct CreateModelVersion<'a> {
    pub name: &'a str,
    pub source: String,
    pub run_id: &'a str,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Serialize)]
pub struct SetAlias<'a> {
    pub name: &'a str,
    pub alias: &'a str,
    pub version: &'a str,
}

// -------------------------------------------------------------------------------- responses

/// A reply whose content cqr does not read (`{}` from log-batch, update, alias, …).
#[derive(Debug, Deserialize)]
pub struct Ignored {}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
}

#[derive(Debug, Deserialize)]
pub struct GetExperimentResponse {
    pub experiment: Experiment,
}

#[derive(Debug, Deserialize)]
pub struct CreateExperimentResponse {
    pub experiment_id: String,
}

/// A run: `runs/create` and `runs/get`. cqr reads only where it lives (its params, metrics
/// and tags, under `data`, are what cqr sent).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    pub info: RunInfo,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    /// `mlflow-artifacts:/<exp>/<run>/artifacts` when the server proxies artifacts.
    pub artifact_uri: String,
}

#[derive(Debug, Deserialize)]
pub struct RunResponse {
    pub run: Run,
}

#[derive(Debug, Deserialize)]
pub struct ListArtifactsResponse {
    #[serde(default)]
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileInfo {
    /// Relative to the run's artifact root.
    pub path: String,
    pub is_dir: bool,
    /// Absent for directories.
    pub file_size: Option<u64>,
}

/// A registered model: `registered-models/get` and `registered-models/search`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    /// The newest version per stage (MLflow's legacy stages), not every version.
    #[serde(default)]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(default)]
    pub aliases: Vec<ModelVersionAlias>,
}

impl RegisteredModel {
    /// The highest version number among `latest_versions`.
    pub fn latest_version(&self) -> Option<u64> {
        self.latest_versions.iter().filter_map(|v| v.number()).max()
    }

    /// The aliases that point at `version`.
    pub fn aliases_of<'a>(&'a self, version: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.aliases
            .iter()
            .filter(move |a| a.version == version)
            .map(|a| a.alias.as_str())
    }
}

/// An alias of a registered model and the version it points at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelVersionAlias {
    pub alias: String,
    pub version: String,
}

/// A registered model's version: `model-versions/get`, `model-versions/search`,
/// `registered-models/alias` and `model-versions/create`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelVersion {
    /// A decimal number, sent and received as a string.
    pub version: String,
    /// Where the files are, e.g. `runs:/<run>/model`.
    pub source: String,
    pub status: ModelVersionStatus,
    /// Empty or absent when the version was not registered from a run.
    pub run_id: Option<String>,
}

impl ModelVersion {
    pub fn number(&self) -> Option<u64> {
        self.version.parse().ok()
    }

    /// The run the version was registered from, when there is one.
    pub fn run(&self) -> Option<&str> {
        self.run_id.as_deref().filter(|r| !r.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelVersionStatus {
    PendingRegistration,
    FailedRegistration,
    Ready,
}

impl ModelVersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelVersionStatus::PendingRegistration => "PENDING_REGISTRATION",
            ModelVersionStatus::FailedRegistration => "FAILED_REGISTRATION",
            ModelVersionStatus::Ready => "READY",
        }
    }
}

/// `model-versions/get`, `model-versions/create` and `registered-models/alias`.
#[derive(Debug, Deserialize)]
pub struct ModelVersionResponse {
    pub model_version: ModelVersion,
}

#[derive(Debug, Deserialize)]
pub struct RegisteredModelResponse {
    pub registered_model: RegisteredModel,
}

#[derive(Debug, Deserialize)]
pub struct SearchRegisteredModelsResponse {
    #[serde(default)]
    pub registered_models: Vec<RegisteredModel>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SearchModelVersionsResponse {
    #[serde(default)]
    pub model_versions: Vec<ModelVersion>,
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    //! The fixtures are bodies captured from a real MLflow 3.17.2 server.
    use super::*;

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!(
            "{}/tests/fixtures/mlflow/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    const RUN: &str = "f477a7ed552845c996fc3a3ece5e8cf3";

    #[test]
    fn an_alias_resolves_to_a_typed_version() {
        let v = fixture::<ModelVersionResponse>("registered-models_alias").model_version;
        assert_eq!(v.version, "1");
        assert_eq!(v.number(), Some(1));
        assert_eq!(v.source, format!("runs:/{RUN}/model"));
        assert_eq!(v.run(), Some(RUN));
        assert_eq!(v.status, ModelVersionStatus::Ready);
    }

    #[test]
    fn a_registered_model_carries_aliases_and_latest_versions() {
        let m = fixture::<RegisteredModelResponse>("registered-models_get").registered_model;
        assert_eq!(m.name, "intents");
        assert_eq!(
            m.aliases,
            [ModelVersionAlias {
                alias: "champion".into(),
                version: "1".into()
            }]
        );
        assert_eq!(m.latest_version(), Some(2));
        assert_eq!(m.aliases_of("1").collect::<Vec<_>>(), ["champion"]);
        assert_eq!(m.aliases_of("2").count(), 0);
    }

    #[test]
    fn searches_carry_their_page_token() {
        let models: SearchRegisteredModelsResponse = fixture("registered-models_search");
        assert_eq!(models.registered_models.len(), 1);
        assert_eq!(models.next_page_token, None);
        let versions: SearchModelVersionsResponse = fixture("model-versions_search");
        assert_eq!(versions.model_versions.len(), 1);
        assert_eq!(versions.model_versions[0].version, "2");
        assert_eq!(
            versions.next_page_token.as_deref(),
            Some("eyJvZmZzZXQiOiAxfQ==")
        );
        // No hits: the server answers `{}`.
        let none: SearchModelVersionsResponse = serde_json::from_str("{}").unwrap();
        assert!(none.model_versions.is_empty() && none.next_page_token.is_none());
    }

    #[test]
    fn runs_read_with_where_they_live() {
        let created = fixture::<RunResponse>("runs_create").run;
        assert_eq!(created.info.experiment_id, "1");
        let run = fixture::<RunResponse>("runs_get").run;
        assert_eq!(run.info.run_id, RUN);
        assert_eq!(run.info.experiment_id, "1");
        assert_eq!(
            run.info.artifact_uri,
            format!("mlflow-artifacts:/1/{RUN}/artifacts")
        );
        // What the server keeps of a special value cqr sent: the string, as MetricValue sends it.
        let raw: serde_json::Value = fixture("runs_get");
        let metrics = raw["run"]["data"]["metrics"].as_array().unwrap();
        let nan = metrics.iter().find(|m| m["key"] == "nan").unwrap();
        assert_eq!(nan["value"], "NaN", "special values come back as strings");
    }

    #[test]
    fn artifact_listings_and_experiments_read() {
        let l: ListArtifactsResponse = fixture("artifacts_list");
        assert_eq!(
            l.files,
            [
                FileInfo {
                    path: "model/manifest.json".into(),
                    is_dir: false,
                    file_size: Some(7)
                },
                FileInfo {
                    path: "model/sub".into(),
                    is_dir: true,
                    file_size: None
                }
            ]
        );
        let e = fixture::<GetExperimentResponse>("experiments_get-by-name").experiment;
        assert_eq!(e.experiment_id, "1");
    }

    #[test]
    fn a_missing_required_field_is_an_error_that_names_it() {
        let mut body: serde_json::Value = fixture("registered-models_alias");
        body["model_version"]
            .as_object_mut()
            .unwrap()
            .remove("version");
        let e = serde_json::from_value::<ModelVersionResponse>(body).unwrap_err();
        assert!(e.to_string().contains("missing field `version`"), "{e}");
        let e = serde_json::from_str::<RegisteredModelResponse>(
            r#"{"registered_model": {"name": "m", "aliases": [{"alias": "champion"}]}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field `version`"), "{e}");
    }

    #[test]
    fn special_floats_are_strings() {
        let json = |v: f64| serde_json::to_string(&MetricValue::from(v)).unwrap();
        assert_eq!(json(f64::NAN), r#""NaN""#);
        assert_eq!(json(f64::INFINITY), r#""Infinity""#);
        assert_eq!(json(f64::NEG_INFINITY), r#""-Infinity""#);
        assert_eq!(json(0.5), "0.5");
    }

    #[test]
    fn requests_follow_the_wire_format() {
        let tags = KeyValue::list(&[("mlflow.source.name".into(), "cqr".into())]);
        let body = CreateRun {
            experiment_id: "1",
            run_name: "r",
            user_id: "ci",
            start_time: 5,
            tags,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"experiment_id":"1","run_name":"r","user_id":"ci","start_time":5,"tags":[{"key":"mlflow.source.name","value":"cqr"}]}"#
        );
        let points = [MetricPoint {
            key: "loss",
            value: f64::NAN.into(),
            timestamp: 7,
            step: 1,
        }];
        let batch = LogBatch {
            run_id: "r",
            params: &[],
            tags: &[],
            metrics: &points,
        };
        assert_eq!(
            serde_json::to_string(&batch).unwrap(),
            r#"{"run_id":"r","metrics":[{"key":"loss","value":"NaN","timestamp":7,"step":1}]}"#,
            "empty lists are left out, NaN travels as a string"
        );
    }
}
