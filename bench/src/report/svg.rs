//! The report's ratios as an SVG bar chart.

use std::fmt::Write as _;

use super::{Check, Report, fmt_num};

impl Report {
    /// Horizontal bars of every ratio, with its target marked.
    pub fn to_svg(&self) -> String {
        let ratios: Vec<&Check> = self.checks.iter().filter(|c| c.unit == "×").collect();
        let row = 26.0;
        let label_w = 430.0;
        let bar_w = 420.0;
        let top = 40.0;
        let height = top + row * ratios.len() as f64 + 30.0;
        let width = label_w + bar_w + 90.0;
        // Ratios span orders of magnitude (in-process bus vs TCP): log scale.
        let max = ratios
            .iter()
            .filter_map(|c| c.value.into_iter().chain(c.target).reduce(f64::max))
            .fold(1.0_f64, f64::max);
        let min = 0.01_f64;
        let span = (max * 1.2).log10() - min.log10();
        let x = |v: f64| label_w + bar_w * ((v.max(min)).log10() - min.log10()) / span;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="10" y="22" font-size="15" font-weight="bold">orderly: ratios measured side by side (log scale; | = target)</text>"##
        );
        for (i, c) in ratios.iter().enumerate() {
            let y = top + row * i as f64;
            let _ = writeln!(
                s,
                r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
                label_w - 8.0,
                y + 15.0,
                xml_escape(&c.name)
            );
            match c.value {
                Some(v) => {
                    let color = match c.met {
                        Some(true) => "#2e9d4f",
                        Some(false) => "#d9534f",
                        None => "#4a7fc1",
                    };
                    let _ = writeln!(
                        s,
                        r#"<rect x="{label_w:.1}" y="{:.1}" width="{:.1}" height="18" fill="{color}"/><text x="{:.1}" y="{:.1}">{}×</text>"#,
                        y + 2.0,
                        (x(v) - label_w).max(1.0),
                        x(v) + 4.0,
                        y + 15.0,
                        fmt_num(v)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" fill="#888888">skipped</text>"##,
                        label_w + 4.0,
                        y + 15.0
                    );
                }
            }
            if let Some(t) = c.target {
                let _ = writeln!(
                    s,
                    r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#000000" stroke-width="2"/>"##,
                    x(t),
                    y,
                    y + 22.0
                );
            }
        }
        let axis_y = top + row * ratios.len() as f64 + 4.0;
        for tick in [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0] {
            if tick > max * 1.2 {
                break;
            }
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#cccccc"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle" fill="#666666">{4}×</text>"##,
                x(tick),
                top - 4.0,
                axis_y,
                axis_y + 14.0,
                fmt_num(tick)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
