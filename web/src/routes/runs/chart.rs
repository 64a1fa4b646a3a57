//! Line charts of metric series as SVG geometry, rendered by `run_chart.html` (askama
//! escapes every label). `web/static/charts.js` draws the same geometry when it redraws a
//! live run's charts: keep the constants and the tick format in step with it.

use registry::runs::MetricSeries;

pub const WIDTH: f64 = 320.0;
pub const HEIGHT: f64 = 160.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// One colour per line (a version in the compare page's overlays); they repeat after 8.
pub const PALETTE: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

/// One chart: a metric, one line per series, its axes' end labels.
pub struct Chart {
    pub name: String,
    pub lines: Vec<Line>,
    pub x_min: String,
    pub x_max: String,
    pub y_min: String,
    pub y_max: String,
    /// Show a legend (overlays of several versions).
    pub legend: bool,
}

pub struct Line {
    pub label: String,
    pub color: &'static str,
    /// SVG polyline points: `x,y x,y …` in the chart's coordinates.
    pub points: String,
}

/// A chart of `series` (label, steps, values) on shared axes.
pub fn chart(name: &str, series: &[(String, &MetricSeries)], legend: bool) -> Chart {
    let steps = series.iter().flat_map(|(_, s)| s.steps.iter().map(|&x| x as f64));
    let values = series.iter().flat_map(|(_, s)| s.values.iter().copied());
    let (x0, x1) = bounds(steps);
    let (y0, y1) = bounds(values);
    let x = |step: f64| LEFT + (step - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT);
    let y = |value: f64| HEIGHT - BOTTOM - (value - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM);
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, (label, s))| Line {
            label: label.clone(),
            color: PALETTE[i % PALETTE.len()],
            points: s
                .steps
                .iter()
                .zip(&s.values)
                .map(|(&step, &value)| format!("{:.1},{:.1}", x(step as f64), y(value)))
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    Chart {
        name: name.to_owned(),
        lines,
        x_min: tick(x0),
        x_max: tick(x1),
        y_min: tick(y0),
        y_max: tick(y1),
        legend,
    }
}

/// The range of `values`, widened when it is a single point.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    (lo, hi)
}

/// An axis label with three significant digits (charts.js's `tick` writes the same).
pub fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let exponent = v.abs().log10().floor() as i32;
    if !(-3..5).contains(&exponent) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - exponent).max(0) as usize;
    format!("{v:.decimals$}")
}

/// The section a metric's chart belongs in: `loss/policy` → `loss`; `val_loss` → `other`.
pub fn group_of(name: &str) -> &str {
    name.split_once('/').map(|(group, _)| group).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_have_three_significant_digits() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(1.23456), "1.23");
        assert_eq!(tick(123.456), "123");
        assert_eq!(tick(0.0123456), "0.0123");
        assert_eq!(tick(1e-5), "1.00e-5");
        assert_eq!(tick(250000.0), "2.50e5");
    }

    #[test]
    fn a_series_spans_the_plot_area() {
        let s = MetricSeries { name: "loss/lm".into(), steps: vec![0, 10], values: vec![2.0, 1.0] };
        let c = chart("loss/lm", &[("loss/lm".into(), &s)], false);
        assert_eq!(c.lines[0].points, "56.0,8.0 312.0,138.0");
        assert_eq!((c.y_min.as_str(), c.y_max.as_str()), ("1.00", "2.00"));
    }

    #[test]
    fn metrics_group_by_their_prefix() {
        assert_eq!(group_of("ppo/clipfrac"), "ppo");
        assert_eq!(group_of("accuracy"), "other");
    }
}
