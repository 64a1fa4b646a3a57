//! Line charts of metric series as SVG geometry, rendered by `run_chart.html` (askama
//! escapes every label), and x–y charts of one quantity against another, rendered by
//! `xy_chart.html` (the server's only: charts.js does not redraw them). `web/static/charts.js` draws the same geometry when it redraws a
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

/// The height of an x–y chart: below its plot, the x ticks and the x axis's title.
pub const XY_HEIGHT: f64 = 190.0;
const XY_BOTTOM: f64 = 44.0;
/// An x–y chart's points keep this far inside its axes, so that a mark at an end of a
/// range is not drawn over an axis (`xy_chart.html` puts the end ticks there).
const XY_INSET: f64 = 6.0;

/// One point of an x–y chart and what its mark's tooltip says.
pub struct XyPoint {
    pub x: f64,
    pub y: f64,
    pub title: String,
}

/// A line of an x–y chart: its points in the order they are joined.
pub struct XySeries {
    pub label: String,
    pub color: &'static str,
    pub points: Vec<XyPoint>,
}

/// One quantity against another (not against the step): each line's points joined in
/// their order and each marked by a circle with its title. Its axes are titled.
pub struct XyChart {
    pub name: String,
    pub x_title: String,
    pub y_title: String,
    pub lines: Vec<XyLine>,
    pub x_min: String,
    pub x_max: String,
    pub y_min: String,
    pub y_max: String,
    pub legend: bool,
}

pub struct XyLine {
    pub label: String,
    pub color: &'static str,
    /// SVG polyline points: `x,y x,y …` in the chart's coordinates.
    pub points: String,
    pub marks: Vec<Mark>,
}

/// A marked point: its centre in the chart's coordinates, and its tooltip.
pub struct Mark {
    pub cx: String,
    pub cy: String,
    pub title: String,
}

/// An x–y chart of `series` on shared axes titled `x_title` and `y_title`; the x axis
/// spans `x_range` where given (charts side by side that share it), else the points.
pub fn xy_chart(
    name: &str,
    (x_title, y_title): (&str, &str),
    x_range: Option<(f64, f64)>,
    series: &[XySeries],
    legend: bool,
) -> XyChart {
    let points = || series.iter().flat_map(|s| &s.points);
    let (x0, x1) = x_range.unwrap_or_else(|| bounds(points().map(|p| p.x)));
    let (y0, y1) = bounds(points().map(|p| p.y));
    let (left, right) = (LEFT + XY_INSET, WIDTH - RIGHT - XY_INSET);
    let (bottom, top) = (XY_HEIGHT - XY_BOTTOM - XY_INSET, TOP + XY_INSET);
    let x = |v: f64| format!("{:.1}", left + (v - x0) / (x1 - x0) * (right - left));
    let y = |v: f64| format!("{:.1}", bottom - (v - y0) / (y1 - y0) * (bottom - top));
    let lines = series
        .iter()
        .map(|s| XyLine {
            label: s.label.clone(),
            color: s.color,
            points: s.points.iter().map(|p| format!("{},{}", x(p.x), y(p.y))).collect::<Vec<_>>().join(" "),
            marks: s.points.iter().map(|p| Mark { cx: x(p.x), cy: y(p.y), title: p.title.clone() }).collect(),
        })
        .collect();
    XyChart {
        name: name.to_owned(),
        x_title: x_title.to_owned(),
        y_title: y_title.to_owned(),
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

    fn point(x: f64, y: f64) -> XyPoint {
        XyPoint { x, y, title: format!("{x}, {y}") }
    }

    #[test]
    fn an_xy_chart_places_its_points_by_their_x_not_their_order() {
        // x 0..4 over 62..306 (61 px a unit), y 1..3 over 140..14 (63 px a unit): 6 px inside
        // the axes at 56 and 146.
        let s = XySeries {
            label: "gold".into(),
            color: "#000",
            points: vec![point(0.0, 1.0), point(4.0, 2.0), point(1.0, 3.0)],
        };
        let c = xy_chart("gold", ("KL (nats)", "gold"), None, &[s], false);
        assert_eq!(c.lines[0].points, "62.0,140.0 306.0,77.0 123.0,14.0");
        let marks: Vec<_> =
            c.lines[0].marks.iter().map(|m| (m.cx.as_str(), m.cy.as_str(), m.title.as_str())).collect();
        assert_eq!(marks, [("62.0", "140.0", "0, 1"), ("306.0", "77.0", "4, 2"), ("123.0", "14.0", "1, 3")]);
        assert_eq!(
            (c.x_min.as_str(), c.x_max.as_str(), c.y_min.as_str(), c.y_max.as_str()),
            ("0", "4.00", "1.00", "3.00")
        );
        assert_eq!((c.x_title.as_str(), c.y_title.as_str()), ("KL (nats)", "gold"));
    }

    #[test]
    fn xy_charts_side_by_side_share_the_x_range_given() {
        let s = XySeries { label: "a".into(), color: "#000", points: vec![point(2.0, 5.0), point(6.0, 5.0)] };
        let c = xy_chart("a", ("KL (nats)", "a"), Some((2.0, 10.0)), &[s], true);
        // A flat line sits mid-height: 5 ± 0.5 over 140..14; x 2..10 over 62..306.
        assert_eq!(c.lines[0].points, "62.0,77.0 184.0,77.0");
        assert_eq!(
            (c.x_min.as_str(), c.x_max.as_str(), c.y_min.as_str(), c.y_max.as_str()),
            ("2.00", "10.0", "4.50", "5.50")
        );
    }

    #[test]
    fn metrics_group_by_their_prefix() {
        assert_eq!(group_of("ppo/clipfrac"), "ppo");
        assert_eq!(group_of("accuracy"), "other");
    }
}
