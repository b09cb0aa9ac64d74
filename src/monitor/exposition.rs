//! Prometheus exposition of a drift check: `--metrics-file` (node_exporter's textfile collector)
//! and `--pushgateway` (a `PUT` that replaces the job's group, so stale series disappear).
//!
//! The text is written by `prometheus-client`'s encoder for the classic text format (version
//! 0.0.4, `prometheus_text`), which is what the textfile collector, `promtool check metrics` and
//! the Pushgateway parse. Its OpenMetrics encoder (`text`) is not used for either: promtool 2.42
//! and the Pushgateway 1.5.1 both parse classic text only (the Pushgateway ignores an
//! `application/openmetrics-text` content type and falls back to classic text), so they reject the
//! `# TYPE cqr_model info` line and would see an OpenMetrics counter's `_total` sample as an
//! untyped metric without help. (`# EOF` alone is harmless: a comment to them.)
//!
//! All metrics are gauges of one batch; the only labels are `test` on the per-test series and the
//! model's identity on `cqr_model_info`. Grouping labels (job, instance, …) come from the push URL
//! or from the scrape.

use std::fmt::Write as _;

use base64::Engine as _;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::drift::DriftReport;

/// `Content-Type` of [`encode`]'s output (the classic text format, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One drift test's result.
#[derive(Debug, Clone, PartialEq)]
pub struct TestMetric {
    /// `intent_distribution`, `confidence`, `length`, `oov_rate`, `abstain_rate`, `embedding`, …
    pub name: String,
    pub statistic: f64,
    pub effect: f64,
    pub p_value: f64,
    /// Holm-corrected p-value.
    pub p_adjusted: f64,
}

/// What a drift check exports. Test names must be unique (they label the per-test series).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftMetrics {
    pub drift: bool,
    pub tests: Vec<TestMetric>,
    /// Estimated accuracy: (point, low, high).
    pub estimated_accuracy: (f64, f64, f64),
    /// Only when the reference carried labels.
    pub reference_accuracy: Option<f64>,
    /// Only when the batch carries labels.
    pub actual_accuracy: Option<f64>,
    pub rows: u64,
    pub abstain_ratio: f64,
    /// Unix time of the check.
    pub timestamp_seconds: f64,
    /// (name, version, checksum).
    pub model: (String, String, String),
}

/// Label names the exposition itself uses; a grouping label of the same name would overwrite them
/// (the Pushgateway sets grouping labels on every pushed series).
const OWN_LABELS: [&str; 4] = ["test", "name", "version", "checksum"];

/// The metrics of one check, as a `prometheus-client` collector (which keeps tests in order, unlike
/// a `Family`, whose series come out in hash order).
#[derive(Debug)]
struct Exposition(DriftMetrics);

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn per_test(
    encoder: &mut DescriptorEncoder,
    tests: &[TestMetric],
    name: &str,
    help: &str,
    value: fn(&TestMetric) -> f64,
) -> Result<(), std::fmt::Error> {
    if tests.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for t in tests {
        let labels = [("test", t.name.as_str())];
        ConstGauge::new(value(t)).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Exposition {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        gauge(
            &mut e,
            "cqr_drift_detected",
            "Whether the last drift check detected drift (1) or not (0).",
            flag(m.drift),
        )?;
        per_test(
            &mut e,
            &m.tests,
            "cqr_drift_p_value",
            "Holm-corrected p-value of each drift test.",
            |t| t.p_adjusted,
        )?;
        per_test(
            &mut e,
            &m.tests,
            "cqr_drift_p_value_raw",
            "Uncorrected p-value of each drift test.",
            |t| t.p_value,
        )?;
        per_test(
            &mut e,
            &m.tests,
            "cqr_drift_effect",
            "Effect size of each drift test.",
            |t| t.effect,
        )?;
        per_test(
            &mut e,
            &m.tests,
            "cqr_drift_statistic",
            "Test statistic of each drift test.",
            |t| t.statistic,
        )?;
        let (acc, low, high) = m.estimated_accuracy;
        gauge(
            &mut e,
            "cqr_estimated_accuracy",
            "Estimated accuracy of the model on the checked batch.",
            acc,
        )?;
        gauge(
            &mut e,
            "cqr_estimated_accuracy_low",
            "Lower bound of the estimated accuracy's interval.",
            low,
        )?;
        gauge(
            &mut e,
            "cqr_estimated_accuracy_high",
            "Upper bound of the estimated accuracy's interval.",
            high,
        )?;
        if let Some(reference) = m.reference_accuracy {
            gauge(
                &mut e,
                "cqr_reference_accuracy",
                "Accuracy of the model on the reference data.",
                reference,
            )?;
        }
        if let Some(actual) = m.actual_accuracy {
            gauge(
                &mut e,
                "cqr_actual_accuracy",
                "Accuracy of the model on the checked batch, measured against its labels.",
                actual,
            )?;
        }
        gauge(
            &mut e,
            "cqr_batch_rows",
            "Number of rows in the checked batch.",
            m.rows as f64,
        )?;
        gauge(
            &mut e,
            "cqr_abstain_ratio",
            "Fraction of the checked batch on which the model abstained.",
            m.abstain_ratio,
        )?;
        gauge(
            &mut e,
            "cqr_drift_check_timestamp_seconds",
            "Unix time of the drift check.",
            m.timestamp_seconds,
        )?;
        let (name, version, checksum) = &m.model;
        let info = Info::new([
            ("name", name.as_str()),
            ("version", version.as_str()),
            ("checksum", checksum.as_str()),
        ]);
        // Registered as `cqr_model`; the encoder appends `_info` (and types it `gauge` in the
        // classic format).
        info.encode(e.encode_descriptor(
            "cqr_model",
            "The model that ran the drift check (always 1).",
            None,
            info.metric_type(),
        )?)
    }
}

impl DriftMetrics {
    /// What a drift report exports, checked at `timestamp_seconds`.
    pub fn of(r: &DriftReport, timestamp_seconds: f64) -> DriftMetrics {
        let e = &r.estimated_accuracy;
        DriftMetrics {
            drift: r.drift,
            tests: r
                .tests
                .iter()
                .map(|t| TestMetric {
                    name: t.test.name().to_string(),
                    statistic: t.statistic,
                    effect: t.effect,
                    p_value: t.p_value,
                    p_adjusted: t.p_adjusted,
                })
                .collect(),
            estimated_accuracy: (e.value, e.low, e.high),
            reference_accuracy: r.reference_accuracy,
            actual_accuracy: r.actual_accuracy,
            rows: r.batch_rows,
            abstain_ratio: r.batch_abstain_rate,
            timestamp_seconds,
            model: (
                r.subject.model.clone(),
                r.subject.version.clone(),
                r.subject.checksum.clone(),
            ),
        }
    }
}

fn registry(m: &DriftMetrics) -> Registry {
    debug_assert!(
        {
            let mut names: Vec<&str> = m.tests.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            names.windows(2).all(|w| w[0] != w[1])
        },
        "drift test names must be unique"
    );
    let mut r = Registry::default();
    r.register_collector(Box::new(Exposition(m.clone())));
    r
}

/// The metrics in the classic Prometheus text format (0.0.4): for the textfile collector and the
/// Pushgateway, served with [`CONTENT_TYPE`].
pub fn encode(m: &DriftMetrics) -> String {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry(m))
        .expect("writing to a String cannot fail");
    out
}

/// Checks a grouping label's name: Prometheus label-name syntax, not reserved (`__…`), not `job`.
fn check_label_name(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        Err(format!(
            "invalid label name '{key}': must match [a-zA-Z_][a-zA-Z0-9_]*"
        ))
    } else if key.starts_with("__") {
        Err(format!(
            "invalid label name '{key}': names starting with __ are reserved"
        ))
    } else if key == "job" {
        Err("invalid label name 'job': the job is set with --job".to_string())
    } else {
        Ok(())
    }
}

/// Parses a `--label KEY=VALUE` (the value may be empty or contain `=` and `/`).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid --label '{s}': expected KEY=VALUE"))?;
    check_label_name(key).map_err(|e| format!("--label '{s}': {e}"))?;
    Ok((key.to_string(), value.to_string()))
}

/// One `/name/value` segment pair of a Pushgateway path. Values that are empty, contain `/`, or
/// are `.`/`..` (which path normalisation would eat) use the `name@base64/value` form (URL-safe
/// alphabet; an empty value is written `=`, as the Pushgateway requires); others are
/// percent-encoded.
fn path_pair(out: &mut String, name: &str, value: &str) {
    if value.is_empty() {
        let _ = write!(out, "/{name}@base64/=");
    } else if value.contains('/') || value == "." || value == ".." {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
        let _ = write!(out, "/{name}@base64/{b64}");
    } else {
        let _ = write!(out, "/{name}/");
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

/// The Pushgateway path of the group `job` + `labels`, `/metrics/job/{job}/{k1}/{v1}/…`, to
/// `PUT` [`encode`]'s text to (which replaces the group, so stale series go). Errors name the
/// offending job or label: an empty job, an invalid or duplicate label name, or one the
/// exposition itself uses (`test`, `name`, `version`, `checksum`), which the Pushgateway would
/// overwrite on every series.
pub fn push_path(job: &str, labels: &[(String, String)]) -> Result<String, String> {
    if job.is_empty() {
        return Err("the Pushgateway job name must not be empty".to_string());
    }
    let mut url = String::from("/metrics");
    path_pair(&mut url, "job", job);
    for (i, (key, value)) in labels.iter().enumerate() {
        check_label_name(key)?;
        if OWN_LABELS.contains(&key.as_str()) {
            return Err(format!(
                "invalid label name '{key}': the exported metrics use it themselves"
            ));
        }
        if labels[..i].iter().any(|(k, _)| k == key) {
            return Err(format!("label '{key}' is given more than once"));
        }
        path_pair(&mut url, key, value);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(actual: Option<f64>) -> DriftMetrics {
        let test = |name: &str, p: f64| TestMetric {
            name: name.to_string(),
            statistic: 12.5,
            effect: 0.31,
            p_value: p,
            p_adjusted: (p * 2.0).min(1.0),
        };
        DriftMetrics {
            drift: true,
            tests: vec![test("intent_distribution", 0.001), test("confidence", 0.2)],
            estimated_accuracy: (0.81, 0.78, 0.84),
            reference_accuracy: Some(0.9),
            actual_accuracy: actual,
            rows: 5000,
            abstain_ratio: 0.05,
            timestamp_seconds: 1_700_000_000.0,
            model: (
                "intent-bert".to_string(),
                "1.2.0".to_string(),
                "sha256:ab\"c".to_string(),
            ),
        }
    }

    const ALL: [&str; 13] = [
        "cqr_drift_detected",
        "cqr_drift_p_value",
        "cqr_drift_p_value_raw",
        "cqr_drift_effect",
        "cqr_drift_statistic",
        "cqr_estimated_accuracy",
        "cqr_estimated_accuracy_low",
        "cqr_estimated_accuracy_high",
        "cqr_reference_accuracy",
        "cqr_actual_accuracy",
        "cqr_batch_rows",
        "cqr_abstain_ratio",
        "cqr_drift_check_timestamp_seconds",
    ];

    #[test]
    fn encode_has_help_type_and_labels() {
        let text = encode(&sample(Some(0.8)));
        for name in ALL.iter().chain(&["cqr_model_info"]) {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}\n{text}");
            assert!(
                text.contains(&format!("# TYPE {name} gauge\n")),
                "{name}\n{text}"
            );
        }
        assert!(text.contains("cqr_drift_detected 1"), "{text}");
        assert!(text.contains("cqr_drift_p_value{test=\"intent_distribution\"} 0.002\n"));
        assert!(text.contains("cqr_drift_p_value_raw{test=\"confidence\"} 0.2\n"));
        assert!(text.contains("cqr_drift_effect{test=\"confidence\"} 0.31\n"));
        assert!(text.contains("cqr_drift_statistic{test=\"intent_distribution\"} 12.5\n"));
        assert!(text.contains("cqr_batch_rows 5000"));
        assert!(text.contains("cqr_actual_accuracy 0.8"));
        // Label values are escaped.
        assert!(text.contains(
            "cqr_model_info{name=\"intent-bert\",version=\"1.2.0\",checksum=\"sha256:ab\\\"c\"} 1\n"
        ));
        // Classic text: no OpenMetrics terminator.
        assert!(!text.contains("# EOF"));
        // Tests keep their order.
        let a = text.find("{test=\"intent_distribution\"}").unwrap();
        let b = text.find("{test=\"confidence\"}").unwrap();
        assert!(a < b);
    }

    #[test]
    fn encode_omits_unknown_actual_accuracy_and_empty_families() {
        let mut m = sample(None);
        m.tests.clear();
        m.drift = false;
        let text = encode(&m);
        assert!(!text.contains("cqr_actual_accuracy"));
        assert!(!text.contains("cqr_drift_p_value"));
        assert!(text.contains("cqr_drift_detected 0"));
    }

    #[test]
    fn push_path_plain_and_percent_encoded() {
        let labels = vec![
            ("instance".to_string(), "host-1".to_string()),
            ("team".to_string(), "ml ops+é".to_string()),
        ];
        assert_eq!(
            push_path("cqr_drift", &labels).unwrap(),
            "/metrics/job/cqr_drift/instance/host-1/team/ml%20ops%2B%C3%A9"
        );
        assert_eq!(push_path("cqr", &[]).unwrap(), "/metrics/job/cqr");
    }

    #[test]
    fn push_path_base64_for_slash_dots_and_empty() {
        let labels = vec![
            ("path".to_string(), "/var/tmp".to_string()),
            ("empty".to_string(), String::new()),
            ("dot".to_string(), "..".to_string()),
        ];
        assert_eq!(
            push_path("a/b", &labels).unwrap(),
            "/metrics/job@base64/YS9i/path@base64/L3Zhci90bXA/empty@base64/=/dot@base64/Li4"
        );
    }

    #[test]
    fn push_path_rejects_bad_groups() {
        let l = |k: &str| vec![(k.to_string(), "x".to_string())];
        assert!(push_path("", &[]).unwrap_err().contains("job"));
        assert!(push_path("j", &l("job")).unwrap_err().contains("'job'"));
        assert!(push_path("j", &l("test")).unwrap_err().contains("'test'"));
        assert!(push_path("j", &l("1a")).unwrap_err().contains("'1a'"));
        let dup = [l("env"), l("env")].concat();
        assert!(push_path("j", &dup).unwrap_err().contains("'env'"));
    }

    #[test]
    fn parse_label_accepts_and_rejects() {
        assert_eq!(
            parse_label("env=prod").unwrap(),
            ("env".to_string(), "prod".to_string())
        );
        assert_eq!(
            parse_label("path=/a=b").unwrap(),
            ("path".to_string(), "/a=b".to_string())
        );
        assert_eq!(parse_label("e=").unwrap(), ("e".to_string(), String::new()));
        for (bad, needle) in [
            ("noequals", "KEY=VALUE"),
            ("=v", "''"),
            ("1x=v", "'1x'"),
            ("a-b=v", "'a-b'"),
            ("__x=v", "'__x'"),
            ("job=v", "'job'"),
        ] {
            let e = parse_label(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
