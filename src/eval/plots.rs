//! The PNG plots of an evaluation (confusion heatmap of the most-confused intents, reliability
//! diagram, coverage–accuracy curve), drawn with plotters and an embedded DejaVu font, so no
//! system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::EvalReport;
use crate::error::{Error, Result};

static FONT: Once = Once::new();

pub fn register_font() {
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

pub fn reliability_png(path: &Path, r: &EvalReport) -> Result<()> {
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

pub fn coverage_png(path: &Path, r: &EvalReport) -> Result<()> {
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

/// Out-of-scope recall against in-scope rejection for each score, with the model's own rule
/// marked (drawn only when the data has out-of-scope rows).
pub fn tradeoff_png(path: &Path, r: &EvalReport) -> Result<()> {
    let Some(o) = &r.out_of_scope else {
        return Ok(());
    };
    let root = BitMapBackend::new(path, (640, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Out-of-scope recall vs in-scope rejection",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..0.5f64, 0f64..1.005f64)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("in-scope queries refused")
        .y_desc("out-of-scope queries refused")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    let colours = [
        BLUE,
        GREEN,
        MAGENTA,
        CYAN,
        BLACK,
        RGBColor(200, 120, 0),
        RED,
    ];
    for (i, (name, curve)) in o.tradeoff.iter().enumerate() {
        let colour = if name == "abstain_rule" {
            RED
        } else {
            colours[i % (colours.len() - 1)]
        };
        let pts: Vec<(f64, f64)> = curve
            .iter()
            .filter(|p| p.in_scope_rejection.is_finite() && p.in_scope_rejection <= 0.5)
            .map(|p| (p.in_scope_rejection, p.out_of_scope_recall))
            .collect();
        let auroc = o.auroc.get(name).copied().unwrap_or(f64::NAN);
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(format!("{name} (AUROC {auroc:.3})"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
    }
    chart
        .draw_series(std::iter::once(Circle::new(
            (o.in_scope_rejection, o.recall_at_threshold),
            7,
            RED.stroke_width(2),
        )))
        .map_err(|e| plot_err(path, e))?
        .label("the model's rule")
        .legend(|(x, y)| Circle::new((x + 7, y), 5, RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// A heatmap over the intents involved in the most frequent confusions (at most 12).
pub fn confusion_png(path: &Path, r: &EvalReport) -> Result<()> {
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
