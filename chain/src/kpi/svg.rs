//! Charts as inline SVG, drawn here so a report needs nothing but itself to open: line charts (optionally with a
//! logarithmic x axis and shaded spans) and histograms.

use std::fmt::Write;

/// Line colours, in order.
const COLOURS: &[&str] = &[
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04",
];
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;

/// Text made safe for HTML and SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// One line of a chart.
pub struct Line<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A span of the x axis to shade, with a label.
pub struct Span {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

/// About five round tick values covering `[min, max]`.
fn ticks(min: f64, max: f64) -> Vec<f64> {
    if !(min.is_finite() && max.is_finite()) || max <= min {
        return vec![min];
    }
    let raw = (max - min) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(magnitude * 10.0);
    let mut out = Vec::new();
    let mut v = (min / step).ceil() * step;
    while v <= max + step * 1e-9 && out.len() < 20 {
        out.push(v);
        v += step;
    }
    out
}

/// A tick's label: as many decimals as the step between ticks needs.
fn tick_label(v: f64, step: f64) -> String {
    if v.abs() >= 1e4 || !(step.is_finite() && step > 0.0) {
        return short(v);
    }
    let digits = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.digits$}")
}

/// A number short enough for an axis.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A line chart. With `log_x`, x values must be positive (others are left out).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line<'_>],
    spans: &[Span],
    log_x: bool,
) -> String {
    let fx = |x: f64| if log_x { x.log10() } else { x };
    let all: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|l| l.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
        .collect();
    let mut svg = header(title);
    if all.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" class="none">no data</text></svg>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    let (mut x0, mut x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(fx(*x)), b.max(fx(*x))));
    let y1 = all.iter().fold(f64::MIN, |a, (_, y)| a.max(*y)).max(0.0);
    let y0 = all.iter().fold(f64::MAX, |a, (_, y)| a.min(*y)).min(0.0);
    let y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.05 };
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let px = |x: f64| LEFT + (fx(x) - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT);
    let py = |y: f64| HEIGHT - BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM);
    for span in spans {
        let (a, b) = (px(span.from).max(LEFT), px(span.to).min(WIDTH - RIGHT));
        if b > a {
            let _ = write!(
                svg,
                r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{:.1}" class="span"><title>{}</title></rect><text x="{:.1}" y="{:.1}" class="spanlabel">{}</text>"##,
                b - a,
                HEIGHT - TOP - BOTTOM,
                escape(&span.label),
                a + 2.0,
                TOP + 10.0,
                escape(&span.label)
            );
        }
    }
    axes(&mut svg, x_label, y_label);
    y_grid(&mut svg, &ticks(y0, y1), py);
    let x_ticks: Vec<f64> = if log_x {
        // Decades, and 2 and 5 between them when few decades are shown.
        let steps: &[f64] = if x1 - x0 < 2.5 { &[1.0, 2.0, 5.0] } else { &[1.0] };
        (x0.floor() as i32..=x1.ceil() as i32)
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .collect()
    } else {
        ticks(x0, x1)
    };
    let x_step = if log_x {
        0.0
    } else {
        x_ticks.get(1).map_or(1.0, |b| b - x_ticks[0])
    };
    for t in x_ticks {
        let x = px(t);
        if (LEFT - 0.5..=WIDTH - RIGHT + 0.5).contains(&x) {
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
                HEIGHT - BOTTOM + 14.0,
                if log_x { short(t) } else { tick_label(t, x_step) }
            );
        }
    }
    for (i, line) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut path = String::new();
        let mut pen_up = true;
        for (x, y) in &line.points {
            if !(x.is_finite() && y.is_finite()) || (log_x && *x <= 0.0) {
                pen_up = true;
                continue;
            }
            let _ = write!(path, "{}{:.1},{:.1} ", if pen_up { "M" } else { "L" }, px(*x), py(*y));
            pen_up = false;
        }
        // A line of one point is a dot.
        let finite: Vec<&(f64, f64)> = line
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
            .collect();
        if let [(x, y)] = finite[..] {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}" class="dot"/>"#,
                px(*x),
                py(*y)
            );
        }
        let _ = write!(
            svg,
            r#"<path d="{path}" stroke="{colour}" class="line"><title>{}</title></path><text x="{}" y="{}" fill="{colour}" class="legend">{}</text>"#,
            escape(line.name),
            250.0 + (i % 4) as f64 * 96.0,
            12.0 + (i / 4) as f64 * 11.0,
            escape(line.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A histogram of `values` in `bins` equal bins.
pub fn histogram(title: &str, x_label: &str, values: &[f64], bins: usize) -> String {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mut svg = header(title);
    if values.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" class="none">no data</text></svg>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    let (min, max) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let (min, max) = if max > min { (min, max) } else { (min - 0.5, max + 0.5) };
    let bins = bins.max(1);
    let width = (max - min) / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in &values {
        let i = (((v - min) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.05;
    axes(&mut svg, x_label, "count");
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    y_grid(&mut svg, &ticks(0.0, top), |t| HEIGHT - BOTTOM - t / top * plot_h);
    for (i, count) in counts.iter().enumerate() {
        let h = *count as f64 / top * plot_h;
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" class="bar"><title>{}-{}: {count}</title></rect>"#,
            LEFT + i as f64 * plot_w / bins as f64 + 0.5,
            HEIGHT - BOTTOM - h,
            (plot_w / bins as f64 - 1.0).max(0.5),
            short(min + i as f64 * width),
            short(min + (i + 1) as f64 * width)
        );
    }
    let x_ticks = ticks(min, max);
    let x_step = x_ticks.get(1).map_or(1.0, |b| b - x_ticks[0]);
    for t in x_ticks {
        let x = LEFT + (t - min) / (max - min) * plot_w;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
            HEIGHT - BOTTOM + 14.0,
            tick_label(t, x_step)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Grid lines and labels at the `ticks` of the y axis, placed by `py`.
fn y_grid(svg: &mut String, ticks: &[f64], py: impl Fn(f64) -> f64) {
    let step = ticks.get(1).map_or(1.0, |b| b - ticks[0]);
    for t in ticks {
        let y = py(*t);
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" text-anchor="end" class="tick">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            tick_label(*t, step),
        );
    }
}

fn header(title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img" aria-label="{t}"><text x="{LEFT}" y="16" class="title">{t}</text>"#,
        t = escape(title)
    )
}

fn axes(svg: &mut String, x_label: &str, y_label: &str) {
    let _ = write!(
        svg,
        r#"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" class="axis"/><line x1="{LEFT}" x2="{r}" y1="{b}" y2="{b}" class="axis"/><text x="{r}" y="{xl}" text-anchor="end" class="label">{x}</text><text x="12" y="{TOP}" class="label" transform="rotate(-90 12 {TOP})" text-anchor="end">{y}</text>"#,
        b = HEIGHT - BOTTOM,
        r = WIDTH - RIGHT,
        xl = HEIGHT - BOTTOM + 28.0,
        x = escape(x_label),
        y = escape(y_label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_draw_their_data_and_escape_names() {
        let svg = line_chart(
            "TPS <x>",
            "s",
            "per s",
            &[Line {
                name: "a&b",
                points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, f64::NAN), (3.0, 2.0)],
            }],
            &[Span {
                from: 1.0,
                to: 2.0,
                label: "phase 1".into(),
            }],
            false,
        );
        assert!(svg.contains("TPS &lt;x&gt;") && svg.contains("a&amp;b"));
        assert_eq!(
            svg.matches(" M").count() + svg.matches("\"M").count(),
            2,
            "a gap lifts the pen: {svg}"
        );
        assert!(svg.contains("class=\"span\""));
        assert!(line_chart("t", "x", "y", &[], &[], false).contains("no data"));
        let cdf = line_chart(
            "cdf",
            "ms",
            "",
            &[Line {
                name: "l",
                points: vec![(0.0, 0.0), (1.0, 0.5), (100.0, 1.0)],
            }],
            &[],
            true,
        );
        assert!(cdf.contains(">100<") && cdf.contains(">1.0<"), "decade ticks: {cdf}");
        assert_eq!(tick_label(0.9995, 0.0005), "0.9995");
        assert_eq!(tick_label(20.0, 20.0), "20");
        let h = histogram("h", "s", &[1.0, 1.0, 2.0, 3.0], 2);
        assert_eq!(h.matches("class=\"bar\"").count(), 2);
        assert!(h.contains(": 2</title>"));
        assert_eq!(ticks(0.0, 100.0), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
    }
}
