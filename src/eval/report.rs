//! The evaluation report as people and scripts read it: the text summary or JSON on stdout, the
//! run's metrics and gates, and on disk `metrics.json`, a readable `report.md` and the PNG plots
//! of `plots`.

use std::path::Path;

use super::plots;
use super::EvalReport;
use crate::error::{Error, Result};
use crate::io::write::write_atomic;
use crate::metrics::pct;

/// How `cqr evaluate` prints its report on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A readable summary.
    Text,
    /// One JSON object (the whole report).
    Json,
}

impl std::fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReportFormat::Text => "text",
            ReportFormat::Json => "json",
        })
    }
}

impl ReportFormat {
    /// The report as this format prints it.
    pub fn render(self, r: &EvalReport) -> String {
        match self {
            ReportFormat::Json => serde_json::to_string(r).expect("a report serialises"),
            ReportFormat::Text => summary(r),
        }
    }
}

impl EvalReport {
    /// The run's metrics as (name, value).
    pub fn run_metrics(&self) -> [(&'static str, f64); 9] {
        [
            ("accuracy", self.accuracy),
            ("macro_f1", self.macro_f1),
            ("ece", self.ece),
            ("abstain_rate", self.abstain_rate),
            ("accuracy_answered", self.accuracy_answered),
            ("latency_ms_p50", self.latency_ms.p50),
            ("latency_ms_p95", self.latency_ms.p95),
            ("throughput_qps", self.throughput_qps),
            ("n", self.n as f64),
        ]
    }

    /// The `--min-accuracy` and `--min-macro-f1` gates this report fails (an undefined figure
    /// fails its gate).
    pub fn failed_gates(
        &self,
        min_accuracy: Option<f64>,
        min_macro_f1: Option<f64>,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        if let Some(min) = min_accuracy {
            if self.accuracy.is_nan() || self.accuracy < min {
                failed.push(format!(
                    "accuracy {} is below --min-accuracy {}",
                    pct(self.accuracy),
                    pct(min)
                ));
            }
        }
        if let Some(min) = min_macro_f1 {
            if self.macro_f1.is_nan() || self.macro_f1 < min {
                failed.push(format!(
                    "macro-F1 {:.4} is below --min-macro-f1 {min}",
                    self.macro_f1
                ));
            }
        }
        failed
    }

    /// The warning about labels the model has never seen, when the data has any.
    pub fn unknown_labels_warning(&self) -> Option<String> {
        (!self.unknown_labels.is_empty()).then(|| {
            format!(
                "{} labels in the data are unknown to the model and count as errors: {}",
                self.unknown_labels.len(),
                self.unknown_labels
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// Writes `metrics.json`, `report.md` and the plots into `dir` (created if needed).
pub fn write_report(dir: &Path, report: &EvalReport) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    plots::register_font();
    let json = serde_json::to_vec_pretty(report).expect("a report always serialises");
    write_atomic(&dir.join("metrics.json"), &json)?;
    let plots = [
        (
            "reliability.png",
            plots::reliability_png as fn(&Path, &EvalReport) -> Result<()>,
        ),
        ("coverage.png", plots::coverage_png),
        ("confusion.png", plots::confusion_png),
        ("out_of_scope.png", plots::tradeoff_png),
    ];
    let plots = plots
        .into_iter()
        .filter(|(name, _)| *name != "out_of_scope.png" || report.out_of_scope.is_some());
    let mut written = vec!["metrics.json".to_string()];
    for (name, draw) in plots {
        // Drawn to a temporary name, then renamed, like every other output.
        let tmp = dir.join(format!(".{name}.cqr-tmp-{}.png", std::process::id()));
        let result = draw(&tmp, report).and_then(|_| {
            std::fs::rename(&tmp, dir.join(name)).map_err(|e| Error::io(dir.join(name), e))
        });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        written.push(name.to_string());
    }
    write_atomic(&dir.join("report.md"), markdown(report).as_bytes())?;
    written.push("report.md".to_string());
    Ok(written)
}

/// The readable summary `cqr evaluate` prints.
pub fn summary(r: &EvalReport) -> String {
    let m = &r.model;
    let mut s = format!(
        "model      {} {} ({})\ndata       {}: {} queries\naccuracy   {}   macro-F1 {:.4}   ECE {:.4}\nabstain    {}: {} abstained, accuracy when answering {}\nlatency    p50 {:.3} ms, p95 {:.3} ms per query; {:.0} queries/s in batches\n",
        m.name,
        m.version,
        &m.checksum[..12.min(m.checksum.len())],
        r.data,
        r.n,
        pct(r.accuracy),
        r.macro_f1,
        r.ece,
        abstain_rule(r),
        pct(r.abstain_rate),
        pct(r.accuracy_answered),
        r.latency_ms.p50,
        r.latency_ms.p95,
        r.throughput_qps,
    );
    if let Some(o) = &r.out_of_scope {
        s.push_str(&format!(
            "out-of-scope {} rows (`{}`): {} refused (precision {}); in-scope: {} refused, accuracy {} ({} when answered)\n",
            o.n_out_of_scope,
            o.label,
            pct(o.recall_at_threshold),
            pct(o.precision_at_threshold),
            pct(o.in_scope_rejection),
            pct(o.in_scope_accuracy),
            pct(o.in_scope_accuracy_answered),
        ));
        s.push_str(&format!(
            "  {:<22} {:>6} {:>10}\n",
            "score", "AUROC", "FPR@95TPR"
        ));
        for (k, v) in &o.auroc {
            let fpr = o.fpr_at_95_tpr.get(k).copied().unwrap_or(f64::NAN);
            s.push_str(&format!("  {k:<22} {v:>6.3} {fpr:>10.3}\n"));
        }
    }
    if let Some(f) = r.cascade_encoder_fraction {
        s.push_str(&format!(
            "cascade    {} of queries went through the encoder\n",
            pct(f)
        ));
    }
    if let Some(c) = &r.comparison {
        s.push_str(&c.summary());
    }
    if !r.confusions.is_empty() {
        s.push_str("confusions (truth → predicted)\n");
        for c in r.confusions.iter().take(5) {
            s.push_str(&format!(
                "  {:>4}  {} → {}\n",
                c.count, c.truth, c.predicted
            ));
        }
    }
    let mut worst: Vec<_> = r.per_intent.iter().filter(|(_, v)| v.support > 0).collect();
    worst.sort_by(|a, b| a.1.f1.total_cmp(&b.1.f1));
    if !worst.is_empty() {
        s.push_str("weakest intents (F1)\n");
        for (k, v) in worst.iter().take(3) {
            s.push_str(&format!("  {:.3}  {k} (support {})\n", v.f1, v.support));
        }
    }
    s
}

/// The readable report.
pub fn markdown(r: &EvalReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# Evaluation of {} on {}\n\n",
        model_name(r),
        r.data
    ));
    s.push_str("| metric | value |\n| --- | --- |\n");
    for (k, v) in [
        ("queries", format!("{}", r.n)),
        ("accuracy", pct(r.accuracy)),
        ("macro-F1", format!("{:.4}", r.macro_f1)),
        ("ECE (15 bins)", format!("{:.4}", r.ece)),
        ("abstain", abstain_rule(r)),
        ("abstain rate", pct(r.abstain_rate)),
        ("accuracy when answering", pct(r.accuracy_answered)),
        (
            "latency p50 / p95 (ms per query)",
            format!("{:.3} / {:.3}", r.latency_ms.p50, r.latency_ms.p95),
        ),
        (
            "batch throughput (queries/s)",
            format!("{:.0}", r.throughput_qps),
        ),
    ] {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    if !r.unknown_labels.is_empty() {
        s.push_str("\nLabels the model has never seen (always wrong): ");
        s.push_str(
            &r.unknown_labels
                .iter()
                .map(|(k, v)| format!("`{k}` ({v})"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        s.push('\n');
    }
    if let Some(c) = &r.comparison {
        let d = &c.difference;
        s.push_str(&format!(
            "\n## Compared with {}\n\nOn the same {} rows, A = {} and B = {}.\n\n| | A | B |\n| --- | --- | --- |\n\
             | accuracy | {} | {} |\n| macro-F1 | {:.4} | {:.4} |\n\nAccuracy difference A − B: {:+.2} points \
             (95% interval {:+.2} to {:+.2}). Only A right on {} rows, only B on {}: McNemar exact p = {:.4}.\n\n\
             | intent | support | F1 A | F1 B | A − B |\n| --- | --- | --- | --- | --- |\n",
            c.b.model,
            c.rows,
            c.a.model,
            c.b.model,
            pct(c.a.accuracy),
            pct(c.b.accuracy),
            c.a.macro_f1,
            c.b.macro_f1,
            d.value * 100.0,
            d.low * 100.0,
            d.high * 100.0,
            c.only_a_right,
            c.only_b_right,
            c.mcnemar_p
        ));
        for x in &c.per_intent {
            s.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:+.3} |\n",
                x.intent, x.support, x.f1_a, x.f1_b, x.difference
            ));
        }
    }
    if let Some(o) = &r.out_of_scope {
        s.push_str(&format!(
            "\n## Out of scope\n\n{} rows labelled `{}`, {} in scope. At the model's rule: {} of the \
             out-of-scope rows refused (precision {}), {} of the in-scope rows refused; in-scope accuracy \
             {} ({} when answered).\n\n| score | AUROC | FPR at 95% TPR |\n| --- | --- | --- |\n",
            o.n_out_of_scope,
            o.label,
            o.n_in_scope,
            pct(o.recall_at_threshold),
            pct(o.precision_at_threshold),
            pct(o.in_scope_rejection),
            pct(o.in_scope_accuracy),
            pct(o.in_scope_accuracy_answered),
        ));
        for (k, v) in &o.auroc {
            let fpr = o.fpr_at_95_tpr.get(k).copied().unwrap_or(f64::NAN);
            s.push_str(&format!("| {k} | {v:.3} | {fpr:.3} |\n"));
        }
        s.push_str("\n![out-of-scope trade-off](out_of_scope.png)\n");
    }
    s.push_str("\n## Plots\n\n![reliability](reliability.png)\n![coverage](coverage.png)\n![confusion](confusion.png)\n");
    s.push_str("\n## Top confusions\n\n| truth | predicted | count |\n| --- | --- | --- |\n");
    for c in &r.confusions {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            c.truth, c.predicted, c.count
        ));
    }
    s.push_str("\n## Per intent\n\n| intent | precision | recall | F1 | support |\n| --- | --- | --- | --- | --- |\n");
    for (k, v) in &r.per_intent {
        s.push_str(&format!(
            "| {k} | {:.3} | {:.3} | {:.3} | {} |\n",
            v.precision, v.recall, v.f1, v.support
        ));
    }
    s.push_str("\n## Coverage as the threshold moves\n\n| threshold | coverage | accuracy |\n| --- | --- | --- |\n");
    for p in &r.coverage_curve {
        s.push_str(&format!(
            "| {:.3} | {} | {} |\n",
            p.threshold,
            pct(p.coverage),
            pct(p.accuracy)
        ));
    }
    s
}

/// How the model decides to abstain: its rule, or (bundles before it) the confidence threshold.
fn abstain_rule(r: &EvalReport) -> String {
    match &r.abstain_rule {
        Some(rule) => format!("when {rule}"),
        None => format!("below {:.4}", r.threshold),
    }
}

fn model_name(r: &EvalReport) -> String {
    format!("{} {}", r.model.name, r.model.version)
}
