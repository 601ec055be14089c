//! HTML building blocks. Everything that comes from data goes through [`esc`]
//! (text and attribute values alike); the markup itself is written here.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::view::Minute;

/// `s` safe in HTML text and in double- or single-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time as RFC 3339 (UTC), for tables.
pub fn time_text(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A duration in seconds, short: `42 s`, `3 min`, `2.5 h`.
pub fn age_text(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// Which page of the navigation is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Stuck,
    Orders,
    None,
}

/// The whole page around `body`. `user`: who is signed in, shown in the header.
pub fn page(title: &str, nav: Nav, user: Option<&str>, body: &str) -> String {
    let link = |href: &str, label: &str, this: Nav| {
        let current = if nav == this {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{current}>{label}</a>")
    };
    let who = user
        .map(|u| format!("<span class=\"who\">signed in: {}</span>", esc(u)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · orderly console</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>\
         <body><header><strong>orderly console</strong><nav>{o}{s}{r}</nav>\
         <form class=\"search\" action=\"/console/orders\" method=\"get\">\
         <input name=\"q\" placeholder=\"order id or user id\" aria-label=\"order id or user id\">\
         <button>Find</button></form>{who}</header>\
         <main>{body}</main></body></html>",
        title = esc(title),
        o = link("/console", "Overview", Nav::Overview),
        s = link("/console/stuck", "Stuck work", Nav::Stuck),
        r = link("/console/orders", "Orders", Nav::Orders),
    )
}

/// A form that POSTs one action with the session's CSRF token.
pub fn action_form(action: &str, csrf: &str, fields: &[(&str, &str)], label: &str) -> String {
    let mut hidden = String::new();
    for (name, value) in fields {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">{hidden}<button>{}</button></form>",
        esc(action),
        esc(csrf),
        esc(label)
    )
}

/// The overview's chart: orders created and PAID per minute (lines against
/// the left scale) and the mean created→PAID latency (dots, right scale).
/// Built here from numbers only, so the page and the live update draw alike.
pub fn chart_svg(minutes: &[Minute], now: OffsetDateTime, span: usize) -> String {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    const PAD: f64 = 30.0;
    // One slot per minute of the span, the current minute last.
    let slots: Vec<String> = (0..span)
        .rev()
        .map(|back| {
            let t = now - time::Duration::minutes(back as i64);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .collect();
    let at = |slot: &str| minutes.iter().find(|m| m.minute == slot);
    let created: Vec<i64> = slots
        .iter()
        .map(|s| at(s).map_or(0, |m| m.created))
        .collect();
    let paid: Vec<i64> = slots.iter().map(|s| at(s).map_or(0, |m| m.paid)).collect();
    let latency: Vec<Option<i64>> = slots
        .iter()
        .map(|s| at(s).and_then(|m| m.paid_latency_ms))
        .collect();
    let top = created
        .iter()
        .chain(&paid)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let top_ms = latency.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (span.max(2) - 1) as f64;
    let y = |v: f64, max: f64| H - PAD + -(H - 2.0 * PAD) * v / max;
    let line = |values: &[i64]| {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v as f64, top)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut dots = String::new();
    for (i, ms) in latency.iter().enumerate() {
        if let Some(ms) = ms {
            let _ = write!(
                dots,
                "<circle class=\"lat\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{} ms</title></circle>",
                x(i),
                y(*ms as f64, top_ms),
                ms
            );
        }
    }
    let first = slots.first().map(|s| &s[11..]).unwrap_or("");
    let last = slots.last().map(|s| &s[11..]).unwrap_or("");
    format!(
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"orders per minute\">\
         <line class=\"axis\" x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>\
         <text x=\"{PAD}\" y=\"{ty}\">{first}</text><text x=\"{r}\" y=\"{ty}\" text-anchor=\"end\">{last} UTC</text>\
         <text x=\"2\" y=\"{PAD}\">{top}/min</text><text x=\"{W}\" y=\"{PAD}\" text-anchor=\"end\">{top_ms} ms</text>\
         <polyline class=\"created\" points=\"{c}\"/><polyline class=\"paid\" points=\"{p}\"/>{dots}</svg>",
        b = H - PAD,
        r = W - PAD,
        ty = H - 8.0,
        c = line(&created),
        p = line(&paid),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_data_is_text() {
        assert_eq!(
            esc(r#"<script>alert('x')</script>&"q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;"
        );
    }

    #[test]
    fn the_chart_has_a_slot_per_minute_and_a_dot_per_measured_latency() {
        let now = time::macros::datetime!(2026-01-02 03:04:30 UTC);
        let minutes = vec![Minute {
            minute: "2026-01-02T03:03".into(),
            created: 4,
            paid: 2,
            paid_latency_ms: Some(250),
        }];
        let svg = chart_svg(&minutes, now, 15);
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        let created = svg.split("class=\"created\" points=\"").nth(1).unwrap();
        let points = created.split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 15, "{svg}");
        assert!(svg.contains("02:50") && svg.contains("03:04 UTC"), "{svg}");
    }
}
