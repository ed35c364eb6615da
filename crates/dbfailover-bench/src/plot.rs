//! An SVG of the failover window: per 10 ms bucket around the fault, whether the primary served the
//! queries, the failover served them, limited mode refused them, or they failed. No plotting
//! dependency.

use crate::failover::Outcome;
use std::fmt::Write;

const FROM_MS: f64 = -200.0;
const TO_MS: f64 = 1500.0;
const BUCKET_MS: f64 = 10.0;

fn color(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Primary => "#3b6fd6",
        Outcome::Failover => "#2e9e4f",
        Outcome::Refused => "#e69b00",
        Outcome::Failed => "#d23c3c",
    }
}

/// One strip per timeline: a cell per 10 ms bucket, colored by what its queries saw.
pub(crate) fn svg(timelines: &[(String, Vec<(f64, Outcome)>)]) -> String {
    let buckets = ((TO_MS - FROM_MS) / BUCKET_MS) as usize;
    let cell = 4.0;
    let strip = 34.0;
    let left = 10.0;
    let width = left * 2.0 + buckets as f64 * cell;
    let height = 40.0 + strip * timelines.len() as f64 + 40.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        out,
        r#"<text x="{left}" y="16">PostgreSQL, 1 client: its queries per 10 ms (by completion) around the fault of the primary (t = 0), from -200 ms to +1500 ms</text>"#
    );
    for (row, (name, timeline)) in timelines.iter().enumerate() {
        let y = 30.0 + row as f64 * strip;
        let _ = write!(out, r#"<text x="{left}" y="{}">{name}</text>"#, y + 10.0);
        for b in 0..buckets {
            let start = FROM_MS + b as f64 * BUCKET_MS;
            let in_bucket: Vec<Outcome> = timeline
                .iter()
                .filter(|(at, _)| *at >= start && *at < start + BUCKET_MS)
                .map(|(_, o)| *o)
                .collect();
            // The worst outcome of the bucket shows: failed > refused > failover > primary.
            let shown = [
                Outcome::Failed,
                Outcome::Refused,
                Outcome::Failover,
                Outcome::Primary,
            ]
            .into_iter()
            .find(|o| in_bucket.contains(o));
            let fill = shown.map_or("#eeeeee", color);
            let _ = write!(
                out,
                r#"<rect x="{}" y="{}" width="{cell}" height="16" fill="{fill}"/>"#,
                left + b as f64 * cell,
                y + 14.0
            );
        }
    }
    let zero_x = left + (-FROM_MS / BUCKET_MS) * cell;
    let _ = write!(
        out,
        r#"<line x1="{zero_x}" y1="26" x2="{zero_x}" y2="{}" stroke="black" stroke-dasharray="3,2"/>"#,
        30.0 + strip * timelines.len() as f64
    );
    let legend_y = height - 16.0;
    for (i, (label, outcome)) in [
        ("served by primary", Outcome::Primary),
        ("served by failover", Outcome::Failover),
        ("refused (limited mode)", Outcome::Refused),
        ("failed", Outcome::Failed),
    ]
    .into_iter()
    .enumerate()
    {
        let x = left + i as f64 * 150.0;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{legend_y}">{label}</text>"#,
            legend_y - 9.0,
            color(outcome),
            x + 14.0
        );
    }
    out.push_str("</svg>\n");
    out
}
