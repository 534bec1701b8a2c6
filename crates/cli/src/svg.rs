//! A small SVG chart writer: line charts with axes, ticks, a legend, reference lines and
//! shaded cells. Hand-written so plots need no system libraries or font files; text is
//! left to the viewer's default sans-serif font.

use std::fmt::Write as _;

/// Colours for series, in order (colour-blind-safe Okabe–Ito palette).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// One line of a chart. A non-finite `y` breaks the line (a gap).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Draw as a staircase (value held until the next point).
    pub step: bool,
}

/// A filled rectangle in data coordinates.
#[derive(Debug, Clone)]
pub struct Cell {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub color: String,
    pub opacity: f64,
}

/// A chart panel.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub series: Vec<Series>,
    /// Vertical reference lines with a label at the top (segment starts).
    pub vlines: Vec<(f64, String)>,
    /// Horizontal reference lines with a label (budget).
    pub hlines: Vec<(f64, String)>,
    pub cells: Vec<Cell>,
    /// Tick labels for the y axis at integer positions instead of numbers.
    pub y_names: Option<Vec<String>>,
    /// Format y ticks as percentages.
    pub y_percent: bool,
}

const LEFT: f64 = 96.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;

impl Chart {
    /// Renders the chart into the box at (`ox`, `oy`) of size `w` × `h` (pixels).
    pub fn render(&self, ox: f64, oy: f64, w: f64, h: f64) -> String {
        let (pw, ph) = (w - LEFT - RIGHT, h - TOP - BOTTOM);
        let (x0, x1) = self.x_range;
        let (y0, y1) = self.y_range;
        let sx = |x: f64| ox + LEFT + (x - x0) / (x1 - x0).max(1e-12) * pw;
        let sy = |y: f64| oy + TOP + ph - (y - y0) / (y1 - y0).max(1e-12) * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"#,
            ox + LEFT,
            oy + 20.0,
            esc(&self.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{pw:.1}" height="{ph:.1}" fill="#ffffff" stroke="#444444"/>"##,
            ox + LEFT,
            oy + TOP
        );
        for c in &self.cells {
            let (ax, bx) = (sx(c.x), sx(c.x + c.w));
            let (ay, by) = (sy(c.y + c.h), sy(c.y));
            let _ = writeln!(
                s,
                r#"<rect x="{ax:.1}" y="{ay:.1}" width="{:.2}" height="{:.2}" fill="{}" fill-opacity="{:.3}"/>"#,
                (bx - ax).max(0.5),
                (by - ay).max(0.5),
                c.color,
                c.opacity
            );
        }
        // Ticks and grid.
        for x in ticks(x0, x1) {
            let px = sx(x);
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
                oy + TOP,
                oy + TOP + ph,
                oy + TOP + ph + 15.0,
                num(x)
            );
        }
        let y_ticks: Vec<(f64, String)> = match &self.y_names {
            Some(names) => names
                .iter()
                .enumerate()
                .map(|(i, n)| (i as f64 + 0.5, n.clone()))
                .collect(),
            None => ticks(y0, y1)
                .into_iter()
                .map(|y| {
                    let label = if self.y_percent {
                        format!("{}%", num(100.0 * y))
                    } else {
                        num(y)
                    };
                    (y, label)
                })
                .collect(),
        };
        for (y, label) in y_ticks {
            let py = sy(y);
            let _ = writeln!(
                s,
                r##"<line x1="{:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                ox + LEFT,
                ox + LEFT + pw,
                ox + LEFT - 6.0,
                py + 4.0,
                esc(&label)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            ox + LEFT + pw / 2.0,
            oy + h - 8.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"#,
            ox + 14.0,
            oy + TOP + ph / 2.0,
            esc(&self.y_label)
        );
        for (x, label) in &self.vlines {
            let px = sx(*x);
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#888888" stroke-dasharray="2,3"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#555555">{}</text>"##,
                oy + TOP,
                oy + TOP + ph,
                px + 3.0,
                oy + TOP + 11.0,
                esc(label)
            );
        }
        for (y, label) in &self.hlines {
            let py = sy(*y);
            let _ = writeln!(
                s,
                r##"<line x1="{:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#C00000" stroke-width="1.5" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#C00000" text-anchor="end">{}</text>"##,
                ox + LEFT,
                ox + LEFT + pw,
                ox + LEFT + pw - 4.0,
                py - 4.0,
                esc(label)
            );
        }
        let clip_y = |y: f64| y.clamp(y0.min(y1), y0.max(y1));
        for line in &self.series {
            let dash = if line.dashed {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            };
            for run in runs(&line.points, line.step) {
                let pts: Vec<String> = run
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(clip_y(y))))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.6"{dash}/>"#,
                    pts.join(" "),
                    line.color
                );
            }
        }
        for (i, line) in self.series.iter().enumerate() {
            let ly = oy + TOP + 10.0 + 17.0 * i as f64;
            let lx = ox + LEFT + pw + 12.0;
            let dash = if line.dashed {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2.5"{dash}/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
                lx + 22.0,
                line.color,
                lx + 27.0,
                ly + 4.0,
                esc(&line.name)
            );
        }
        s
    }
}

/// A whole SVG document of `panels` stacked vertically, each `w` × `h`.
pub fn stack(panels: &[Chart], w: f64, h: f64) -> String {
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" viewBox="0 0 {w} {}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#,
        h * panels.len() as f64,
        h * panels.len() as f64
    );
    s.push('\n');
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    for (i, chart) in panels.iter().enumerate() {
        s.push_str(&chart.render(0.0, h * i as f64, w, h));
    }
    s.push_str("</svg>\n");
    s
}

/// Splits points into finite runs; staircases hold each value until the next x.
fn runs(points: &[(f64, f64)], step: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        if !y.is_finite() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if step {
            cur.push((x, y));
            let next_x = points.get(i + 1).map_or(x + 1.0, |p| p.0);
            cur.push((next_x, y));
        } else {
            cur.push((x, y));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// About five round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs();
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let first = (lo.min(hi) / step).ceil() as i64;
    let last = (lo.max(hi) / step + 1e-9).floor() as i64;
    // Integer multiples, rounded, so 3 × 0.2 prints and compares as 0.6.
    let out: Vec<f64> = (first..=last)
        .map(|k| (k as f64 * step * 1e9).round() / 1e9)
        .collect();
    out
}

fn num(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(0.0, 100.0), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(3.0, 3.0), vec![3.0]);
    }

    #[test]
    fn gaps_split_lines() {
        let pts = [(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0), (3.0, 2.0)];
        assert_eq!(runs(&pts, false).len(), 2);
        assert_eq!(
            runs(&pts, true)[1],
            vec![(2.0, 2.0), (3.0, 2.0), (3.0, 2.0), (4.0, 2.0)]
        );
    }

    #[test]
    fn renders_a_well_formed_document() {
        let chart = Chart {
            title: "a < b".into(),
            x_range: (0.0, 10.0),
            y_range: (0.0, 1.0),
            series: vec![Series {
                name: "s".into(),
                color: PALETTE[0].into(),
                points: vec![(0.0, 0.5), (10.0, 0.7)],
                dashed: false,
                step: false,
            }],
            ..Chart::default()
        };
        let svg = stack(&[chart], 800.0, 300.0);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b") && svg.contains("<polyline"));
    }
}
