//! The drift report as people and scripts read it: the text summary on stdout, the run's
//! metrics, and on disk `report.json`, `report.md`, a self-contained `report.html` (plots
//! embedded, opens offline) and the PNG plots: intent-share shift, reference-vs-batch
//! histograms of confidence, length and OOV rate, and a 2-D PCA of the embeddings.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::drift::{fmt_p, DriftReport, Estimate};
use super::profile::{Profile, Sample};
use super::scan::NoveltyMeasure;
use crate::error::{Error, Result};
use crate::io::write::write_atomic;

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn share(e: &Estimate) -> String {
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        e.value * 100.0,
        e.low * 100.0,
        e.high * 100.0
    )
}

fn short(checksum: &str) -> &str {
    &checksum[..checksum.len().min(12)]
}

/// The verdict line.
fn verdict(r: &DriftReport) -> String {
    let fired = r.tests.iter().filter(|t| t.drift).count();
    if r.drift {
        format!(
            "DRIFT: {fired} of {} tests below α {} after Holm's correction{}",
            r.tests.len(),
            r.alpha,
            if fired == 0 {
                " (the accuracy estimate alarmed)"
            } else {
                ""
            }
        )
    } else {
        format!(
            "no drift: no test below α {} after Holm's correction{}",
            r.alpha,
            r.min_effect
                .map(|m| format!(" with an effect of at least {m}"))
                .unwrap_or_default()
        )
    }
}

fn accuracy_line(r: &DriftReport) -> String {
    let e = &r.estimated_accuracy;
    let mut line = format!(
        "estimated accuracy {} [{}, {}] (label-free; mean confidence {})",
        pct(e.value),
        pct(e.low),
        pct(e.high),
        pct(r.mean_confidence)
    );
    if let Some(a) = r.reference_accuracy {
        let _ = write!(line, "; reference {}", pct(a));
    }
    if let (Some(a), Some(err)) = (r.actual_accuracy, r.estimate_error) {
        let _ = write!(
            line,
            "; actual {} (estimate error {:+.2} points)",
            pct(a),
            err * 100.0
        );
    }
    line
}

fn novelty_name(m: NoveltyMeasure) -> &'static str {
    match m {
        NoveltyMeasure::Embedding => {
            "1 − cosine similarity to the nearest of the queries the model learnt from"
        }
        NoveltyMeasure::OovRate => "share of words outside the model's vocabulary",
    }
}

/// What was checked against what: the model, its version and checksum, the batch, the reference.
fn subject_line(r: &DriftReport) -> String {
    let s = &r.subject;
    format!(
        "{} (version {}, checksum {}) on {} ({} rows) against {} ({} rows)",
        s.model,
        s.version,
        short(&s.checksum),
        s.data,
        r.batch_rows,
        s.reference,
        r.reference_rows
    )
}

/// The readable summary `cqr drift-check` prints.
pub fn summary(r: &DriftReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "drift-check {}", subject_line(r));
    let _ = writeln!(out, "{}", verdict(r));
    let _ = writeln!(
        out,
        "  {:<20} {:>10} {:>9}  {:<36} {:>9} {:>9}  drift",
        "test", "statistic", "effect", "effect measure", "p", "p (Holm)"
    );
    for t in &r.tests {
        let _ = writeln!(
            out,
            "  {:<20} {:>10.4} {:>9.4}  {:<36} {:>9} {:>9}  {}",
            t.test.name(),
            t.statistic,
            t.effect,
            t.effect_measure,
            fmt_p(t.p_value),
            fmt_p(t.p_adjusted),
            if t.drift { "yes" } else { "no" }
        );
    }
    let _ = writeln!(out, "{}", accuracy_line(r));
    let _ = writeln!(
        out,
        "abstained {} of the batch (reference {})",
        pct(r.batch_abstain_rate),
        pct(r.reference_abstain_rate)
    );
    let _ = writeln!(
        out,
        "intents whose share moved most (reference → batch, 95% intervals):"
    );
    for sh in r.intent_shifts.iter().take(5) {
        let _ = writeln!(
            out,
            "  {:<34} {} → {}  ({:+.1} points)",
            sh.intent,
            share(&sh.reference_share),
            share(&sh.batch_share),
            sh.change * 100.0
        );
    }
    let e = &r.emerging;
    let _ = writeln!(
        out,
        "least like the reference (novelty = {}):",
        novelty_name(e.measure)
    );
    for k in r.least_like.iter().take(5) {
        let _ = writeln!(out, "  {:.3}  {}: {}", k.novelty, k.id, clip(&k.text, 90));
    }
    let _ = writeln!(
        out,
        "emerging topics: {} novel queries ({} of the batch, above the reference's 95th percentile {:.3}); \
         {} abstained or novel queries clustered into {}:",
        e.novel_rows,
        pct(e.novel_share),
        e.novelty_threshold,
        e.clustered,
        e.topics.len()
    );
    for (i, t) in e.topics.iter().take(5).enumerate() {
        let _ = writeln!(
            out,
            "  {}. {} queries ({} abstained): {}",
            i + 1,
            t.size,
            t.abstained,
            t.ngrams.join(", ")
        );
        for x in &t.examples {
            let _ = writeln!(out, "       \"{}\"", clip(x, 90));
        }
    }
    for reason in &r.reasons {
        let _ = writeln!(out, "reason: {reason}");
    }
    out
}

fn clip(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// The run's single-valued metrics.
pub fn run_metrics(r: &DriftReport) -> Vec<(String, f64)> {
    let mut out = vec![
        ("drift".to_string(), f64::from(u8::from(r.drift))),
        ("batch_rows".into(), r.batch_rows as f64),
        ("estimated_accuracy".into(), r.estimated_accuracy.value),
        ("abstain_rate".into(), r.batch_abstain_rate),
        ("novel_share".into(), r.emerging.novel_share),
    ];
    if let Some(a) = r.actual_accuracy {
        out.push(("actual_accuracy".into(), a));
    }
    for t in &r.tests {
        let n = t.test.name();
        out.push((format!("{n}.statistic"), t.statistic));
        out.push((format!("{n}.effect"), t.effect));
        out.push((format!("{n}.p_value"), t.p_value));
        out.push((format!("{n}.p_adjusted"), t.p_adjusted));
    }
    out
}

/// A table of the report, shared by its markdown and HTML forms.
struct Table {
    headers: &'static [&'static str],
    rows: Vec<Vec<String>>,
}

fn yes_no(b: bool) -> String {
    (if b { "yes" } else { "no" }).to_string()
}

fn tests_table(r: &DriftReport) -> Table {
    Table {
        headers: &[
            "test",
            "method",
            "statistic",
            "effect",
            "effect measure",
            "p",
            "p (Holm)",
            "drift",
        ],
        rows: r
            .tests
            .iter()
            .map(|t| {
                vec![
                    t.test.name().to_string(),
                    t.method.clone(),
                    format!("{:.4}", t.statistic),
                    format!("{:.4}", t.effect),
                    t.effect_measure.clone(),
                    fmt_p(t.p_value),
                    fmt_p(t.p_adjusted),
                    yes_no(t.drift),
                ]
            })
            .collect(),
    }
}

fn shifts_table(r: &DriftReport) -> Table {
    Table {
        headers: &[
            "intent",
            "reference share",
            "batch share",
            "change (points)",
        ],
        rows: r
            .intent_shifts
            .iter()
            .map(|sh| {
                vec![
                    sh.intent.clone(),
                    share(&sh.reference_share),
                    share(&sh.batch_share),
                    format!("{:+.1}", sh.change * 100.0),
                ]
            })
            .collect(),
    }
}

fn least_like_table(r: &DriftReport) -> Table {
    Table {
        headers: &["novelty", "id", "abstained", "text"],
        rows: r
            .least_like
            .iter()
            .map(|k| {
                vec![
                    format!("{:.3}", k.novelty),
                    k.id.clone(),
                    yes_no(k.abstained),
                    clip(&k.text, 300),
                ]
            })
            .collect(),
    }
}

/// The report's sections in order: a heading and either prose or a table.
enum Block {
    Heading(String),
    Text(String),
    Table(Table),
    /// Topics: (headline, example texts).
    List(Vec<(String, Vec<String>)>),
}

fn blocks(r: &DriftReport) -> Vec<Block> {
    let e = &r.emerging;
    let mut reasons = String::new();
    for reason in &r.reasons {
        reasons.push_str(&format!("\n- {reason}"));
    }
    vec![
        Block::Text(format!("Model {}.", subject_line(r))),
        Block::Text(format!("{}{reasons}", verdict(r))),
        Block::Heading("Tests".into()),
        Block::Table(tests_table(r)),
        Block::Heading("Accuracy".into()),
        Block::Text(format!(
            "{}. Estimate: {}. Abstained on {} of the batch (reference {}).",
            accuracy_line(r),
            r.estimate_method,
            pct(r.batch_abstain_rate),
            pct(r.reference_abstain_rate)
        )),
        Block::Heading("Intents whose share moved most".into()),
        Block::Table(shifts_table(r)),
        Block::Heading("Least like the reference".into()),
        Block::Text(format!("Novelty: {}.", novelty_name(e.measure))),
        Block::Table(least_like_table(r)),
        Block::Heading("Emerging topics".into()),
        Block::Text(format!(
            "{} novel queries ({} of the batch; novel = above the reference's own 95th-percentile \
             novelty, {:.3}). {} abstained or novel queries clustered; rule: {}.",
            e.novel_rows,
            pct(e.novel_share),
            e.novelty_threshold,
            e.clustered,
            e.rule
        )),
        Block::List(
            e.topics
                .iter()
                .map(|t| {
                    (
                        format!(
                            "{} queries ({} abstained): {}",
                            t.size,
                            t.abstained,
                            t.ngrams.join(", ")
                        ),
                        t.examples.iter().map(|x| clip(x, 300)).collect(),
                    )
                })
                .collect(),
        ),
        Block::Heading("Plots".into()),
    ]
}

/// The report in markdown; `images` are the plot files beside it.
pub fn markdown(r: &DriftReport, images: &[(&str, &str)]) -> String {
    let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
    let mut out = format!("# Drift check: {}\n", r.subject.model);
    for b in blocks(r) {
        match b {
            Block::Heading(h) => out.push_str(&format!("\n## {h}\n")),
            Block::Text(t) => out.push_str(&format!("\n{t}\n")),
            Block::Table(t) => {
                out.push_str(&format!(
                    "\n| {} |\n|{}\n",
                    t.headers.join(" | "),
                    "---|".repeat(t.headers.len())
                ));
                for row in &t.rows {
                    let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
            }
            Block::List(items) => {
                out.push('\n');
                for (i, (head, examples)) in items.iter().enumerate() {
                    out.push_str(&format!("{}. {}\n", i + 1, head));
                    for x in examples {
                        out.push_str(&format!("    - {}\n", cell(x)));
                    }
                }
            }
        }
    }
    for (file, title) in images {
        out.push_str(&format!("\n![{title}]({file})\n"));
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one self-contained HTML page: tables, and the plots inlined as base64 PNGs.
pub fn html(r: &DriftReport, images: &[(&str, &str, Vec<u8>)]) -> String {
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drift check: {0}</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
         .drift{{color:#b00;font-weight:bold}}.ok{{color:#070;font-weight:bold}}img{{max-width:100%}}</style></head>\
         <body><h1>Drift check: {0}</h1>",
        html_escape(&r.subject.model)
    );
    for (k, b) in blocks(r).into_iter().enumerate() {
        match b {
            Block::Heading(h) => out.push_str(&format!("<h2>{}</h2>", html_escape(&h))),
            // The second block is the verdict.
            Block::Text(t) if k == 1 => out.push_str(&format!(
                "<p class=\"{}\">{}</p>",
                if r.drift { "drift" } else { "ok" },
                html_escape(&t).replace('\n', "<br>")
            )),
            Block::Text(t) => out.push_str(&format!("<p>{}</p>", html_escape(&t))),
            Block::Table(t) => {
                out.push_str("<table><tr>");
                for h in t.headers {
                    out.push_str(&format!("<th>{}</th>", html_escape(h)));
                }
                out.push_str("</tr>");
                for row in &t.rows {
                    out.push_str("<tr>");
                    for c in row {
                        let class = if c == "yes" && t.headers.last() == Some(&"drift") {
                            " class=\"drift\""
                        } else {
                            ""
                        };
                        out.push_str(&format!("<td{class}>{}</td>", html_escape(c)));
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</table>");
            }
            Block::List(items) => {
                out.push_str("<ol>");
                for (head, examples) in items {
                    out.push_str(&format!("<li><b>{}</b><ul>", html_escape(&head)));
                    for x in examples {
                        out.push_str(&format!("<li>{}</li>", html_escape(&x)));
                    }
                    out.push_str("</ul></li>");
                }
                out.push_str("</ol>");
            }
        }
    }
    for (_, title, png) in images {
        out.push_str(&format!(
            "<h3>{0}</h3><img alt=\"{0}\" src=\"data:image/png;base64,{1}\">",
            html_escape(title),
            base64::engine::general_purpose::STANDARD.encode(png)
        ));
    }
    out.push_str("</body></html>\n");
    out
}

/// Draws one plot into the file it is given.
type Draw<'a> = Box<dyn Fn(&Path) -> Result<()> + 'a>;

/// Writes `report.json`, the PNG plots, `report.md` and `report.html` into `dir` (created if
/// needed); returns the file names.
pub fn write(
    dir: &Path,
    r: &DriftReport,
    (reference, batch): (&Profile, &Profile),
) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::eval::plots::register_font();
    let json = serde_json::to_vec_pretty(r).expect("a report always serialises");
    write_atomic(&dir.join("report.json"), &json)?;
    let mut written = vec!["report.json".to_string()];
    let (rs, bs) = (&reference.sample, &batch.sample);
    let mut plots: Vec<(&str, &str, Draw<'_>)> = vec![
        (
            "intent_shift.png",
            "Intent shares: reference vs batch",
            Box::new(|p: &Path| shares_png(p, r)),
        ),
        (
            "confidence.png",
            "Calibrated confidence",
            Box::new(|p: &Path| {
                histogram_png(p, "calibrated confidence", &rs.confidence, &bs.confidence)
            }),
        ),
        (
            "length.png",
            "Text length (characters)",
            Box::new(|p: &Path| {
                histogram_png(p, "text length (characters)", &rs.length, &bs.length)
            }),
        ),
        (
            "oov_rate.png",
            "Out-of-vocabulary rate",
            Box::new(|p: &Path| {
                histogram_png(p, "share of words outside the vocabulary", &rs.oov, &bs.oov)
            }),
        ),
    ];
    if rs.embedding_rows() >= 2 && bs.embedding_rows() >= 2 {
        plots.push((
            "embeddings_pca.png",
            "Embeddings, first two principal components",
            Box::new(|p: &Path| pca_png(p, rs, bs)),
        ));
    }
    let mut images: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    for (name, title, draw) in &plots {
        // Drawn to a temporary name, then renamed, like every other output.
        let tmp = dir.join(format!(".{name}.cqr-tmp-{}.png", std::process::id()));
        let result = draw(&tmp).and_then(|_| {
            let bytes = std::fs::read(&tmp).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, dir.join(name)).map_err(|e| Error::io(dir.join(name), e))?;
            Ok(bytes)
        });
        match result {
            Ok(bytes) => images.push((name, title, bytes)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        written.push(name.to_string());
    }
    let refs: Vec<(&str, &str)> = images.iter().map(|(n, t, _)| (*n, *t)).collect();
    write_atomic(&dir.join("report.md"), markdown(r, &refs).as_bytes())?;
    write_atomic(&dir.join("report.html"), html(r, &images).as_bytes())?;
    written.extend(["report.md".to_string(), "report.html".to_string()]);
    Ok(written)
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Output {
        path: path.to_path_buf(),
        message: format!("drawing the plot: {e}"),
    }
}

const REFERENCE_COLOUR: RGBColor = RGBColor(31, 119, 180);
const BATCH_COLOUR: RGBColor = RGBColor(255, 127, 14);

/// Horizontal bars: each moved intent's reference and batch share.
fn shares_png(path: &Path, r: &DriftReport) -> Result<()> {
    let rows = &r.intent_shifts;
    let n = rows.len().max(1);
    let max = rows
        .iter()
        .map(|s| s.reference_share.high.max(s.batch_share.high))
        .fold(0.01f64, f64::max);
    let root = BitMapBackend::new(path, (900, 120 + 40 * n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let names: Vec<String> = rows.iter().map(|s| s.intent.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("Intent shares that moved most", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..max * 1.05, 0f64..n as f64)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("share of queries")
        .disable_y_mesh()
        .y_labels(0)
        .x_label_formatter(&|x| format!("{:.0}%", x * 100.0))
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (k, s) in rows.iter().enumerate() {
        let y = (n - 1 - k) as f64;
        chart
            .draw_series([
                Rectangle::new(
                    [(0.0, y + 0.52), (s.reference_share.value, y + 0.9)],
                    REFERENCE_COLOUR.filled(),
                ),
                Rectangle::new(
                    [(0.0, y + 0.1), (s.batch_share.value, y + 0.48)],
                    BATCH_COLOUR.filled(),
                ),
            ])
            .map_err(|e| plot_err(path, e))?;
    }
    // Each intent's name beside its pair of bars, right-aligned against the axis.
    let style = TextStyle::from(("sans-serif", 14).into_font()).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Right,
            plotters::style::text_anchor::VPos::Center,
        ),
    );
    for (k, name) in names.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, (n - 1 - k) as f64 + 0.5));
        root.draw(&Text::new(name.clone(), (x - 8, y), style.clone()))
            .map_err(|e| plot_err(path, e))?;
    }
    legend(&mut chart, path)?;
    root.present().map_err(|e| plot_err(path, e))
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    path: &Path,
) -> Result<()> {
    let (x, y) = (chart.x_range(), chart.y_range());
    let at = (x.end, y.end);
    chart
        .draw_series(std::iter::once(EmptyElement::at(at)))
        .map_err(|e| plot_err(path, e))?
        .label("reference")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], REFERENCE_COLOUR.filled()));
    chart
        .draw_series(std::iter::once(EmptyElement::at(at)))
        .map_err(|e| plot_err(path, e))?
        .label("batch")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BATCH_COLOUR.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| plot_err(path, e))
}

/// Reference and batch histograms of one value, each normalised to shares of its rows.
fn histogram_png(path: &Path, what: &str, reference: &[f32], batch: &[f32]) -> Result<()> {
    const BINS: usize = 30;
    let all = reference.iter().chain(batch).copied();
    let (lo, hi) = all.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (f64::from(lo), f64::from(hi))
    } else {
        (0.0, 1.0)
    };
    let width = (hi - lo) / BINS as f64;
    let shares = |v: &[f32]| {
        let mut h = vec![0f64; BINS];
        for &x in v {
            let b = (((f64::from(x) - lo) / width) as usize).min(BINS - 1);
            h[b] += 1.0;
        }
        let n = v.len().max(1) as f64;
        h.iter_mut().for_each(|c| *c /= n);
        h
    };
    let (hr, hb) = (shares(reference), shares(batch));
    let top = hr.iter().chain(&hb).fold(0.01f64, |a, &b| a.max(b));
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{what}: reference vs batch"), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0f64..top * 1.1)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc(what)
        .y_desc("share of rows")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (h, colour) in [(&hr, REFERENCE_COLOUR), (&hb, BATCH_COLOUR)] {
        chart
            .draw_series(h.iter().enumerate().map(|(i, &v)| {
                let x = lo + i as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, v)], colour.mix(0.45).filled())
            }))
            .map_err(|e| plot_err(path, e))?;
    }
    legend(&mut chart, path)?;
    root.present().map_err(|e| plot_err(path, e))
}

/// The pooled embedding samples projected on their first two principal components (power
/// iteration with deflation), reference and batch in two colours.
fn pca_png(path: &Path, reference: &Sample, batch: &Sample) -> Result<()> {
    let d = reference.dim;
    let pooled: Vec<&[f32]> = reference
        .embeddings
        .chunks(d)
        .chain(batch.embeddings.chunks(d))
        .collect();
    let n = pooled.len() as f64;
    let mut mean = vec![0f64; d];
    for row in &pooled {
        mean.iter_mut()
            .zip(row.iter())
            .for_each(|(m, &v)| *m += f64::from(v) / n);
    }
    let centred: Vec<Vec<f64>> = pooled
        .iter()
        .map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&v, m)| f64::from(v) - m)
                .collect()
        })
        .collect();
    let first = principal(&centred, d, None);
    let second = principal(&centred, d, Some(&first));
    let project = |row: &[f64]| {
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        (dot(row, &first), dot(row, &second))
    };
    let points: Vec<(f64, f64)> = centred.iter().map(|r| project(r)).collect();
    let (x0, x1, y0, y1) = points.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, e), &(x, y)| (a.min(x), b.max(x), c.min(y), e.max(y)),
    );
    let pad = |lo: f64, hi: f64| {
        let p = ((hi - lo) * 0.05).max(1e-6);
        (lo - p)..(hi + p)
    };
    let root = BitMapBackend::new(path, (760, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Embeddings: first two principal components",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(pad(x0, x1), pad(y0, y1))
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("PC 1")
        .y_desc("PC 2")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    let split = reference.embedding_rows();
    for (range, colour) in [
        (0..split, REFERENCE_COLOUR),
        (split..points.len(), BATCH_COLOUR),
    ] {
        chart
            .draw_series(
                points[range]
                    .iter()
                    .map(|&p| Circle::new(p, 2, colour.mix(0.6).filled())),
            )
            .map_err(|e| plot_err(path, e))?;
    }
    legend(&mut chart, path)?;
    root.present().map_err(|e| plot_err(path, e))
}

/// The leading eigenvector of the rows' covariance (orthogonal to `after` when given).
fn principal(rows: &[Vec<f64>], d: usize, after: Option<&[f64]>) -> Vec<f64> {
    let mut v: Vec<f64> = (0..d).map(|i| 1.0 + (i % 7) as f64 * 0.1).collect();
    for _ in 0..60 {
        let mut next = vec![0f64; d];
        for r in rows {
            let s: f64 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
            next.iter_mut().zip(r).for_each(|(o, a)| *o += s * a);
        }
        if let Some(u) = after {
            let s: f64 = next.iter().zip(u).map(|(a, b)| a * b).sum();
            next.iter_mut().zip(u).for_each(|(o, b)| *o -= s * b);
        }
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        v = next.into_iter().map(|x| x / norm).collect();
    }
    v
}
