//! Plots: the latency-over-time chart of `replenish load --svg` as a self-contained SVG
//! document, written by hand (a few dozen elements; no plotting crate). The x axis is
//! seconds since the start of the run, the y axis milliseconds; one line each for the
//! median, the 99th percentile and the maximum of every time slice ([`Slice`]), with
//! round-numbered grid lines, a legend and a title.

use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A plotted statistic: name, colour, dash pattern, and its value in a slice.
/// Latency of the requests sent during one slice of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Start of the slice, seconds from the start of the run.
    pub start_s: f64,
    /// Length of the slice in seconds.
    pub width_s: f64,
    /// Responses to requests sent in it.
    pub count: u64,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Largest, microseconds.
    pub max_us: u64,
}

type Series = (&'static str, &'static str, &'static str, fn(&Slice) -> u64);

/// A round step giving about `target` intervals over `span`: 1, 2 or 5 times a power
/// of ten.
fn step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Text safe inside an SVG element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number without needless decimals.
fn label(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{value:.decimals$}")
}

/// The SVG document of `timeline` under `title`.
pub fn latency_svg(timeline: &[Slice], title: &str) -> String {
    let end_s = timeline
        .iter()
        .map(|s| s.start_s + s.width_s)
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    let top_ms = timeline
        .iter()
        .map(|s| s.max_us as f64 / 1000.0)
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    let (x_step, y_step) = (step(end_s, 10.0), step(top_ms, 6.0));
    let x_end = (end_s / x_step).ceil() * x_step;
    let y_end = (top_ms / y_step).ceil() * y_step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |s: f64| LEFT + s / x_end * plot_w;
    let y = |ms: f64| TOP + plot_h - ms / y_end * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Grid and tick labels.
    let mut t = 0.0;
    while t <= x_end + x_step / 2.0 {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#e0e0e0"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            x(t),
            TOP + plot_h,
            TOP + plot_h + 16.0,
            label(t, x_step)
        );
        t += x_step;
    }
    let mut v = 0.0;
    while v <= y_end + y_step / 2.0 {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e0e0e0"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            y(v),
            LEFT + plot_w,
            LEFT - 6.0,
            y(v) + 4.0,
            label(v, y_step)
        );
        v += y_step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#606060"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since start (by send time)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    // One line per statistic, points at the middle of each slice.
    let series: [Series; 3] = [
        ("max", "#9e9e9e", "4 3", |s| s.max_us),
        ("p99", "#e65100", "", |s| s.p99_us),
        ("p50", "#1565c0", "", |s| s.p50_us),
    ];
    for (index, (name, colour, dash, value)) in series.iter().enumerate() {
        let points: Vec<String> = timeline
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1}",
                    x(s.start_s + s.width_s / 2.0),
                    y(value(s) as f64 / 1000.0)
                )
            })
            .collect();
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 14.0 + index as f64 * 16.0;
        let lx = LEFT + plot_w - 70.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{ly:.1}">{name}</text>"#,
            ly - 4.0,
            lx + 24.0,
            ly - 4.0,
            lx + 30.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(step(10.0, 10.0), 1.0);
        assert_eq!(step(37.0, 6.0), 10.0);
        assert_eq!(step(0.9, 6.0), 0.2);
        assert_eq!(step(3.3, 10.0), 0.5);
    }

    #[test]
    fn the_svg_has_a_line_per_statistic_and_escapes_the_title() {
        let timeline: Vec<Slice> = (0..5)
            .map(|i| Slice {
                start_s: f64::from(i) * 0.5,
                width_s: 0.5,
                count: 10,
                p50_us: 800 + u64::from(i as u32) * 10,
                p99_us: 2_500,
                max_us: 4_000,
            })
            .collect();
        let svg = latency_svg(&timeline, "load <127.0.0.1:8583> & more");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("load &lt;127.0.0.1:8583&gt; &amp; more"));
        assert!(svg.contains(">p50<") && svg.contains(">p99<") && svg.contains(">max<"));
        let empty = latency_svg(&[], "empty");
        assert_eq!(
            empty.matches("<polyline").count(),
            3,
            "an empty run still draws"
        );
    }
}
