//! Tracking against real MLflow 3.17.2 servers started on 127.0.0.1 by scripts/mlflow-server.sh:
//! runs with params, metric history, tags and the bundle; the registry and aliases; model
//! references from a cold cache; chunking; NaN; a server that is down, then `runs push`; basic
//! auth; and the local store read back by MLflow itself.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::{Arc, Mutex};

mod common;

use assert_cmd::Command;
use common::{
    cqr_in, jsonl, root, run_ok, tickets, tickets_test, valid_with_unseen_label, walk,
    without_model,
};
use predicates::prelude::*;
use serde_json::{json, Value};

const ADMIN_PASSWORD: &str = "cqr-admin-secret-2026";

/// A server of our own, stopped (whole process group) when dropped.
struct Server {
    dir: tempfile::TempDir,
    uri: String,
}

impl Server {
    fn start(auth: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let uri = start_in(dir.path(), auth);
        Server { dir, uri }
    }

    fn stop(&self) {
        let st = StdCommand::new(root().join("scripts/mlflow-server.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn restart(&mut self) {
        self.stop();
        self.uri = start_in(self.dir.path(), false);
    }

    fn get(&self, path: &str) -> Value {
        let out = StdCommand::new("python3")
            .arg("-c")
            .arg("import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())")
            .arg(format!("{}{path}", self.uri))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let out = StdCommand::new("python3")
            .arg("-c")
            .arg(
                "import sys, urllib.request\n\
                 r = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers={'Content-Type': 'application/json'})\n\
                 print(urllib.request.urlopen(r).read().decode())",
            )
            .arg(format!("{}{path}", self.uri))
            .arg(body.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "POST {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every run of the experiment `name` on the server.
    fn runs(&self, experiment: &str) -> Vec<Value> {
        let exp = self.get(&format!(
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}"
        ));
        let id = exp["experiment"]["experiment_id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = self.post(
            "/api/2.0/mlflow/runs/search",
            &json!({"experiment_ids": [id], "max_results": 1000}),
        );
        r["runs"].as_array().cloned().unwrap_or_default()
    }
}

fn start_in(dir: &Path, auth: bool) -> String {
    let mut c = StdCommand::new(root().join("scripts/mlflow-server.sh"));
    c.arg("start").arg(dir);
    if auth {
        c.arg("--auth");
    }
    let out = c
        .env("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "server did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `cqr` with its own run store and cache, talking to `uri`.
fn cqr(work: &Path, uri: &str) -> Command {
    let mut c = cqr_in(work);
    c.env("MLFLOW_TRACKING_URI", uri);
    c
}

fn metric_history(server: &Server, run_id: &str, key: &str) -> Vec<Value> {
    server.get(&format!(
        "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}&max_results=25000"
    ))["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn train_registers_and_models_refs_work_from_a_cold_cache() {
    let server = Server::start(false);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let out = run_ok(
        cqr(w, &server.uri)
            .args([
                "train",
                "-o",
                "m1",
                "--register",
                "intents",
                "--alias",
                "champion",
            ])
            .arg(tickets()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}/#/experiments/", server.uri)),
        "prints the run link: {stderr}"
    );
    assert!(stderr.contains("registered as version 1"), "{stderr}");

    let runs = server.runs("cqr");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let rid = run["info"]["run_id"].as_str().unwrap();
    assert_eq!(run["info"]["status"], "FINISHED");
    let params: Vec<(String, String)> = run["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().into(),
                p["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(params.contains(&("seed".into(), "42".into())), "{params:?}");
    assert!(params.iter().any(|(k, _)| k == "features.min_df"));
    let tags = run["data"]["tags"].as_array().unwrap();
    assert!(tags
        .iter()
        .any(|t| t["key"] == "mlflow.source.name" && t["value"] == "cqr"));
    let loss = metric_history(&server, rid, "train_loss");
    assert!(loss.len() > 20, "per-iteration history: {}", loss.len());
    assert!(loss
        .windows(2)
        .all(|w| w[1]["step"].as_i64() > w[0]["step"].as_i64()));
    assert_eq!(metric_history(&server, rid, "valid_accuracy").len(), 1);

    // The bundle is downloadable and the registry points at it.
    let alias = server.get("/api/2.0/mlflow/registered-models/alias?name=intents&alias=champion");
    assert_eq!(alias["model_version"]["version"], "1");
    assert_eq!(
        alias["model_version"]["source"],
        format!("runs:/{rid}/model")
    );

    // A cold cache: classify by alias downloads, verifies and answers like the local bundle.
    let by_alias = cqr(w, &server.uri)
        .args(["classify", "models:/intents@champion"])
        .arg(tickets_test())
        .output()
        .unwrap();
    assert!(
        by_alias.status.success(),
        "{}",
        String::from_utf8_lossy(&by_alias.stderr)
    );
    let local = cqr(w, &server.uri)
        .args(["classify", "m1"])
        .arg(tickets_test())
        .output()
        .unwrap();
    let (alias_recs, local_recs) = (jsonl(&by_alias.stdout), jsonl(&local.stdout));
    assert_eq!(without_model(&alias_recs), without_model(&local_recs));
    assert_eq!(alias_recs[0]["model"]["name"], "intents");
    assert_eq!(alias_recs[0]["model"]["version"], "1");
    assert_eq!(
        alias_recs[0]["model"]["checksum"],
        local_recs[0]["model"]["checksum"]
    );
    let cached: Vec<_> = walk(&w.join("cache"));
    assert!(
        cached.iter().any(|p| p.ends_with("manifest.json")),
        "{cached:?}"
    );

    // A corrupted cache entry is detected and fetched again.
    let vocab = cached
        .iter()
        .find(|p| p.ends_with("linear_vocab.json"))
        .unwrap();
    std::fs::write(vocab, b"garbage").unwrap();
    let again = cqr(w, &server.uri)
        .args(["classify", "models:/intents/1"])
        .arg(tickets_test())
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        without_model(&jsonl(&again.stdout)),
        without_model(&local_recs)
    );

    // evaluate by version logs its own run with the report as artifacts.
    cqr(w, &server.uri)
        .args(["evaluate", "models:/intents/1"])
        .arg(tickets_test())
        .assert()
        .success();
    let eval = server
        .runs("cqr")
        .into_iter()
        .find(|r| {
            r["info"]["run_name"]
                .as_str()
                .unwrap()
                .starts_with("evaluate")
        })
        .expect("an evaluate run");
    let eid = eval["info"]["run_id"].as_str().unwrap();
    let files = server.get(&format!(
        "/api/2.0/mlflow/artifacts/list?run_id={eid}&path=report"
    ));
    let names: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"report/report.md") && names.contains(&"report/confusion.png"),
        "{names:?}"
    );
    assert!(eval["data"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "cqr.registry.model" && t["value"] == "intents/1"));

    // A second model with --promote-if-better: identical data and seed cannot beat the holder.
    let out = run_ok(
        cqr(w, &server.uri)
            .args([
                "train",
                "-o",
                "m2",
                "--register",
                "intents",
                "--alias",
                "champion",
                "--promote-if-better",
            ])
            .arg(tickets()),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("keeping the current holder"));
    let alias = server.get("/api/2.0/mlflow/registered-models/alias?name=intents&alias=champion");
    assert_eq!(alias["model_version"]["version"], "1", "the alias stays");
    cqr(w, &server.uri)
        .args(["models", "promote", "intents", "2", "--alias", "champion"])
        .assert()
        .success();
    let versions = server.get("/api/2.0/mlflow/model-versions/search?filter=name%3D%27intents%27");
    let run_of = |version: &str| {
        versions["model_versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["version"] == version)
            .map(|v| v["run_id"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(run_of("1"), rid);
    cqr(w, &server.uri)
        .args(["models", "list", "intents"])
        .assert()
        .success()
        .stdout(format!(
            "version   run                               status      aliases\n\
             2         {}  READY       champion\n\
             1         {}  READY       \n",
            run_of("2"),
            run_of("1")
        ));
    cqr(w, &server.uri)
        .args(["models", "list"])
        .assert()
        .success()
        .stdout(
            "model                           latest    aliases\n\
             intents                         2         champion→2\n",
        );
}

#[test]
fn promote_if_better_scores_the_holder_on_the_candidates_rows() {
    let server = Server::start(false);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // A validation row with a label training never sees is not one the candidate is measured
    // on, so it must not count against the holder either.
    valid_with_unseen_label(w);
    // Without refit the bundle is the model measured on validation, so the same data and seed
    // give the holder exactly the candidate's accuracy.
    let train = |out: &str, extra: &[&str]| {
        run_ok(
            cqr(w, &server.uri)
                .args(["train", "--components", "linear", "--no-refit"])
                .args(["--valid", "valid.csv", "-o", out])
                .args(["--register", "intents", "--alias", "champion"])
                .args(extra)
                .arg(tickets()),
        )
    };
    train("m1", &[]);
    let out = train("m2", &["--promote-if-better"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keeping the current holder"), "{stderr}");
    let run = server
        .runs("cqr")
        .into_iter()
        .find(|r| r["info"]["run_name"] == "train m2")
        .expect("the second run");
    let metric = |key: &str| run_value(&run, "metrics", key).as_f64().unwrap();
    assert_eq!(
        metric("promote.champion_valid_accuracy"),
        metric("promote.candidate_valid_accuracy")
    );
    // The same comparison as `evaluate --compare`: identical answers, no discordant rows.
    assert_eq!(metric("promote.accuracy_difference"), 0.0);
    assert_eq!(metric("promote.mcnemar_p"), 1.0);

    // A nightly drift check of the champion is a run too, tagged with what it checked.
    let out = run_ok(
        cqr(w, &server.uri)
            .args(["drift-check", "models:/intents@champion"])
            .arg(tickets_test()),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no drift"));
    let run = server
        .runs("cqr")
        .into_iter()
        .find(|r| r["info"]["run_name"] == "drift-check intents")
        .expect("the drift-check run");
    let tag = |key: &str| run_value(&run, "tags", key);
    assert_eq!(tag("cqr.model.version"), "1");
    assert_eq!(tag("cqr.drift"), "none");
    let metrics = run["data"]["metrics"].as_array().unwrap();
    for key in [
        "drift",
        "estimated_accuracy",
        "intent_distribution.p_adjusted",
    ] {
        assert!(
            metrics.iter().any(|m| m["key"] == key),
            "no {key} in {metrics:?}"
        );
    }
}

/// The value of `key` in a run's `metrics` or `tags`, as the REST API returns the run.
fn run_value(run: &Value, section: &str, key: &str) -> Value {
    run["data"][section]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in the run's {section}"))["value"]
        .clone()
}

/// A server on 127.0.0.1 that answers every request with `reply(request line)`, for replies a
/// real 3.17.2 server does not give on demand (a changed schema, many pages). Returns its URI
/// and the request lines it saw.
fn fake_server(
    reply: impl Fn(&str) -> String + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap_or(0) > 2 {
                header.clear();
            }
            let body = reply(&request);
            log.lock().unwrap().push(request.trim().to_string());
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    (uri, seen)
}

fn fixture(name: &str) -> Value {
    let p = root().join(format!("tests/fixtures/mlflow/{name}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_reply_missing_a_required_field_names_the_endpoint_and_the_field() {
    let mut version = fixture("registered-models_alias");
    version["model_version"]
        .as_object_mut()
        .unwrap()
        .remove("version");
    let body = version.to_string();
    let (uri, _) = fake_server(move |_| body.clone());
    let work = tempfile::tempdir().unwrap();
    let out = cqr(work.path(), &uri)
        .args(["models", "promote", "intents", "1", "--alias", "champion"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: GET {uri}/api/2.0/mlflow/model-versions/get?name=intents&version=1 answered \
             200: the reply does not have the shape cqr expects: missing field `version`"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn registry_searches_follow_every_page() {
    let page_1 = fixture("model-versions_search");
    let token = page_1["next_page_token"].as_str().unwrap().to_string();
    let mut version_1 = fixture("registered-models_alias")["model_version"].clone();
    version_1.as_object_mut().unwrap().remove("aliases");
    let page_2 = json!({ "model_versions": [version_1] });
    let model = fixture("registered-models_get");
    let (uri, seen) = fake_server(move |request| {
        if request.contains("registered-models/get") {
            model.to_string()
        } else if request.contains("page_token=") {
            page_2.to_string()
        } else {
            page_1.to_string()
        }
    });
    let work = tempfile::tempdir().unwrap();
    cqr(work.path(), &uri)
        .args(["models", "list", "intents"])
        .assert()
        .success()
        .stdout(
            "version   run                               status      aliases\n\
             2         f477a7ed552845c996fc3a3ece5e8cf3  READY       \n\
             1         f477a7ed552845c996fc3a3ece5e8cf3  READY       champion\n",
        );
    let seen = seen.lock().unwrap();
    let encoded = token.replace('=', "%3D");
    assert!(
        seen.iter()
            .any(|r| r.contains(&format!("page_token={encoded}"))),
        "{seen:?}"
    );
}

#[test]
fn a_server_that_is_down_loses_nothing_and_push_is_idempotent() {
    let mut server = Server::start(false);
    server.stop();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let out = cqr(w, &server.uri)
        .args(["train", "-o", "m", "--register", "intents"])
        .arg(tickets())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the model is written whatever the server does"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cqr runs push") && stderr.contains("cannot reach"),
        "{stderr}"
    );
    assert!(w.join("m/manifest.json").is_file());
    cqr(w, &server.uri)
        .args(["runs", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("NOT SENT"));

    server.restart();
    cqr(w, &server.uri)
        .args(["runs", "push"])
        .assert()
        .success()
        .stdout(predicate::str::contains("registered as version 1"));
    cqr(w, &server.uri)
        .args(["runs", "push"])
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
    let runs = server.runs("cqr");
    assert_eq!(runs.len(), 1, "pushed once");
    let rid = runs[0]["info"]["run_id"].as_str().unwrap();
    let local_points = std::fs::read_to_string(
        walk(&w.join("runs"))
            .into_iter()
            .find(|p| p.ends_with("metrics/train_loss"))
            .unwrap(),
    )
    .unwrap()
    .lines()
    .count();
    assert_eq!(
        metric_history(&server, rid, "train_loss").len(),
        local_points,
        "nothing lost, nothing doubled"
    );
    let versions = server.get("/api/2.0/mlflow/model-versions/search?filter=name%3D%27intents%27");
    assert_eq!(versions["model_versions"].as_array().unwrap().len(), 1);
}

#[test]
fn many_metrics_are_chunked_and_nan_survives() {
    let server = Server::start(false);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // A run in the local store with 2,500 points and special values, pushed by `runs push`.
    let store = cqr::tracking::store::LocalStore::new(w.join("runs"));
    let run = store.create_run("chunks", "many", "ci").unwrap();
    for i in 0..2500 {
        run.log_metric("m", i as f64, i).unwrap();
    }
    run.log_metric("special", f64::NAN, 0).unwrap();
    run.log_metric("special", f64::INFINITY, 1).unwrap();
    run.log_param("long", &"x".repeat(7000)).unwrap();
    run.finish(cqr::tracking::store::RunStatus::Finished)
        .unwrap();
    cqr(w, &server.uri)
        .args(["runs", "push"])
        .assert()
        .success();
    let runs = server.runs("chunks");
    let rid = runs[0]["info"]["run_id"].as_str().unwrap();
    let hist = metric_history(&server, rid, "m");
    assert_eq!(hist.len(), 2500);
    let special = metric_history(&server, rid, "special");
    assert_eq!(special[0]["value"], "NaN");
    assert!(special[1]["value"].as_f64().unwrap() > 1e300);
    let files = server.get(&format!(
        "/api/2.0/mlflow/artifacts/list?run_id={rid}&path=params"
    ));
    assert_eq!(
        files["files"][0]["path"], "params/long.txt",
        "a long param travels as an artifact"
    );
}

#[test]
fn basic_auth_right_and_wrong_credentials() {
    let server = Server::start(true);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let out = cqr(w, &server.uri)
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        .args(["train", "-o", "m"])
        .arg(tickets())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("not authenticated"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-password"),
        "credentials never appear"
    );
    cqr(w, &server.uri)
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        .args(["runs", "push"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("not authenticated")
                .and(predicate::str::contains("not-the-password").not()),
        );
    cqr(w, &server.uri)
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        .args(["runs", "push"])
        .assert()
        .success()
        .stdout(predicate::str::contains("pushed"));
    let runs_dir = w.join("runs");
    let leaked = walk(&runs_dir)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .any(|t| t.contains(ADMIN_PASSWORD) || t.contains("not-the-password"));
    assert!(!leaked, "no credential in the run store");
}

#[test]
fn the_local_store_is_readable_by_mlflow_itself() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut c = Command::cargo_bin("cqr").unwrap();
    c.current_dir(w)
        .env_remove("MLFLOW_TRACKING_URI")
        .env("CQR_RUNS_DIR", w.join("runs"))
        .args(["train", "-o", "m"])
        .arg(tickets())
        .assert()
        .success();
    let tools = std::env::var("CQR_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/cqr/tools"));
    let st = StdCommand::new(root().join("scripts/mlflow-server.sh"))
        .arg("install")
        .status()
        .unwrap();
    assert!(st.success());
    let out = StdCommand::new(tools.join("mlflow-3.17.2/bin/mlflow"))
        .args(["runs", "list", "--experiment-id", "1"])
        .env("MLFLOW_ALLOW_FILE_STORE", "true")
        .env(
            "MLFLOW_TRACKING_URI",
            format!("file://{}", w.join("runs").display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local_id = std::fs::read_dir(w.join("runs/1"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .file_name()
        .to_string_lossy()
        .to_string();
    assert!(
        stdout.contains(&local_id) && stdout.contains("train m"),
        "{stdout}"
    );
}
