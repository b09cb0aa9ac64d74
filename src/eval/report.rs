//! The evaluation report on disk: `metrics.json`, a readable `report.md`, and PNG plots
//! (confusion heatmap of the most-confused intents, reliability diagram, coverage–accuracy
//! curve) drawn with plotters and an embedded DejaVu font, so no system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::metrics::EvalReport;
use crate::error::{Error, Result};
use crate::io::write::write_atomic;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Output {
        path: path.to_path_buf(),
        message: format!("drawing the plot: {e}"),
    }
}

/// Writes `metrics.json`, `report.md` and the plots into `dir` (created if needed).
pub fn write_report(dir: &Path, report: &EvalReport) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    register_font();
    let json = serde_json::to_vec_pretty(report).expect("a report always serialises");
    write_atomic(&dir.join("metrics.json"), &json)?;
    let plots = [
        (
            "reliability.png",
            reliability_png as fn(&Path, &EvalReport) -> Result<()>,
        ),
        ("coverage.png", coverage_png),
        ("confusion.png", confusion_png),
    ];
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

fn reliability_png(path: &Path, r: &EvalReport) -> Result<()> {
    let root = BitMapBackend::new(path, (640, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Reliability (ECE {:.4})", r.ece),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("confidence")
        .y_desc("accuracy")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(r.reliability.iter().filter(|b| b.count > 0).map(|b| {
            Rectangle::new(
                [(b.lower, 0.0), (b.upper, b.accuracy)],
                BLUE.mix(0.5).filled(),
            )
        }))
        .map_err(|e| plot_err(path, e))?
        .label("accuracy per bin")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BLUE.mix(0.5).filled()));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| plot_err(path, e))?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK));
    chart
        .draw_series(
            r.reliability
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| Circle::new((b.mean_confidence, b.accuracy), 4, RED.filled())),
        )
        .map_err(|e| plot_err(path, e))?
        .label("mean confidence vs accuracy")
        .legend(|(x, y)| Circle::new((x + 7, y), 4, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

fn coverage_png(path: &Path, r: &EvalReport) -> Result<()> {
    let root = BitMapBackend::new(path, (640, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let pts: Vec<(f64, f64)> = r
        .coverage_curve
        .iter()
        .filter(|p| p.accuracy.is_finite())
        .map(|p| (p.coverage, p.accuracy))
        .collect();
    let ymin = pts.iter().map(|p| p.1).fold(1.0f64, f64::min).min(0.9) - 0.02;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Coverage vs accuracy as the threshold rises",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..1.02f64, ymin.max(0.0)..1.005f64)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("coverage (share answered)")
        .y_desc("accuracy of answered")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(pts.iter().map(|p| Circle::new(*p, 3, BLUE.filled())))
        .map_err(|e| plot_err(path, e))?;
    // Mark the model's own threshold.
    let at = r
        .coverage_curve
        .iter()
        .find(|p| (p.threshold - r.threshold).abs() < 1e-12 && p.accuracy.is_finite());
    if let Some(p) = at {
        chart
            .draw_series(std::iter::once(Circle::new(
                (p.coverage, p.accuracy),
                7,
                RED.stroke_width(2),
            )))
            .map_err(|e| plot_err(path, e))?
            .label(format!("model threshold {:.3}", r.threshold))
            .legend(|(x, y)| Circle::new((x + 7, y), 5, RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

/// A heatmap over the intents involved in the most frequent confusions (at most 12).
fn confusion_png(path: &Path, r: &EvalReport) -> Result<()> {
    let mut labels: Vec<String> = Vec::new();
    for c in &r.confusions {
        for l in [&c.truth, &c.predicted] {
            if !labels.contains(l) && labels.len() < 12 {
                labels.push(l.clone());
            }
        }
    }
    let n = labels.len().max(1);
    let size = 200 + 44 * n as u32;
    let root = BitMapBackend::new(path, (size + 230, size - 60)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let title = if labels.is_empty() {
        "No confusions: every prediction was right"
    } else {
        "Most-confused intents (rows: truth, columns: predicted)"
    };
    let (top, body) = root.split_vertically(40);
    top.titled(title, ("sans-serif", 18))
        .map_err(|e| plot_err(path, e))?;
    if labels.is_empty() {
        return root.present().map_err(|e| plot_err(path, e));
    }
    let max = r
        .confusions
        .iter()
        .map(|c| c.count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let cell = |t: &str, p: &str| {
        r.confusions
            .iter()
            .find(|c| c.truth == t && c.predicted == p)
            .map(|c| c.count)
            .unwrap_or(0)
    };
    let left = 170i32;
    let topm = 10i32;
    let side = 44i32;
    let font = ("sans-serif", 13).into_font();
    for (i, t) in labels.iter().enumerate() {
        body.draw(&Text::new(
            short(t),
            (4, topm + i as i32 * side + side / 2 - 7),
            font.clone(),
        ))
        .map_err(|e| plot_err(path, e))?;
        for (j, p) in labels.iter().enumerate() {
            let v = if t == p { 0 } else { cell(t, p) };
            let shade = v as f64 / max;
            let color = RGBColor(
                255,
                (255.0 * (1.0 - 0.85 * shade)) as u8,
                (255.0 * (1.0 - 0.85 * shade)) as u8,
            );
            let (x0, y0) = (left + j as i32 * side, topm + i as i32 * side);
            body.draw(&Rectangle::new(
                [(x0, y0), (x0 + side, y0 + side)],
                color.filled(),
            ))
            .map_err(|e| plot_err(path, e))?;
            body.draw(&Rectangle::new(
                [(x0, y0), (x0 + side, y0 + side)],
                BLACK.mix(0.2),
            ))
            .map_err(|e| plot_err(path, e))?;
            if v > 0 {
                body.draw(&Text::new(
                    v.to_string(),
                    (x0 + side / 2 - 6, y0 + side / 2 - 7),
                    font.clone(),
                ))
                .map_err(|e| plot_err(path, e))?;
            }
        }
    }
    // Column labels, numbered to keep them legible; the key maps numbers to intents.
    for (j, _) in labels.iter().enumerate() {
        body.draw(&Text::new(
            format!("{}", j + 1),
            (
                left + j as i32 * side + side / 2 - 5,
                topm + n as i32 * side + 6,
            ),
            font.clone(),
        ))
        .map_err(|e| plot_err(path, e))?;
    }
    for (i, t) in labels.iter().enumerate() {
        body.draw(&Text::new(
            format!("{} = {}", i + 1, short(t)),
            (left + n as i32 * side + 12, topm + i as i32 * 18),
            ("sans-serif", 11).into_font(),
        ))
        .map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

fn short(s: &str) -> String {
    if s.chars().count() > 24 {
        format!("{}…", s.chars().take(23).collect::<String>())
    } else {
        s.to_string()
    }
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
        ("abstain threshold", format!("{:.4}", r.threshold)),
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

fn model_name(r: &EvalReport) -> String {
    let get = |k: &str| r.model_field(k);
    format!("{} {}", get("name"), get("version"))
}

pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", 100.0 * x)
    } else {
        "n/a".into()
    }
}
