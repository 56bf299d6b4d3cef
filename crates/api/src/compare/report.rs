//! Figures derived from the methods' results (break-even), and the report as CSV and HTML.

use super::{BreakEven, CompareReport, MethodId, MethodResult};
use crate::eval::Metric;

/// For each trained method with a time, the questions after which its training is paid back
/// by answering faster than RAG (whose retrieved passages lengthen every prompt).
pub(super) fn break_even(methods: &[MethodResult]) -> Vec<BreakEven> {
    let per_query = |m: &MethodResult| m.cost.eval.as_ref().map(|e| e.latency_p50_s);
    let Some(rag) = methods
        .iter()
        .find(|m| m.method == MethodId::Rag)
        .and_then(per_query)
    else {
        return Vec::new();
    };
    methods
        .iter()
        .filter(|m| m.method.trains())
        .filter_map(|m| {
            let saved = rag - per_query(m)?;
            Some(BreakEven {
                method: m.method,
                saved_per_query_s: saved,
                queries: (saved > 0.0).then(|| (m.cost.prepare_s / saved).ceil() as u64),
            })
        })
        .collect()
}

/// The metric a data curve is told in: token F1 when scored, else the first one.
fn curve_metric(result: &MethodResult) -> Option<Metric> {
    let last = result.data_curve.last()?;
    last.scores
        .iter()
        .find(|s| s.metric == Metric::TokenF1)
        .or(last.scores.first())
        .map(|s| s.metric)
}

/// A trained method's data curve in a line: "token-f1: 10% (12 examples) 0.210, 30% (36
/// examples) 0.305, 100% (120 examples) 0.412"; `None` without a curve.
pub fn data_curve_line(result: &MethodResult) -> Option<String> {
    let metric = curve_metric(result)?;
    let points: Vec<String> = result
        .data_curve
        .iter()
        .map(|p| {
            let value = p
                .scores
                .iter()
                .find(|s| s.metric == metric)
                .map(|s| format!("{:.3}", s.estimate.value))
                .unwrap_or_else(|| p.status.as_str().to_string());
            format!("{:.0}% ({} examples) {value}", p.fraction * 100.0, p.rows)
        })
        .collect();
    Some(format!("{}: {}", metric.as_str(), points.join(", ")))
}

/// The metrics any method has, in the usual order.
fn metrics_of(report: &CompareReport) -> Vec<Metric> {
    Metric::ALL
        .into_iter()
        .filter(|metric| {
            report
                .methods
                .iter()
                .any(|m| m.scores.iter().any(|s| s.metric == *metric))
        })
        .collect()
}

fn score(result: &MethodResult, metric: Metric) -> Option<&crate::eval::Estimate> {
    result
        .scores
        .iter()
        .find(|s| s.metric == metric)
        .map(|s| &s.estimate)
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// One line per method: status, every metric's mean and interval, the probe, and the costs.
pub fn render_csv(report: &CompareReport) -> String {
    let metrics = metrics_of(report);
    let mut header = vec!["method".to_string(), "status".to_string()];
    for m in &metrics {
        for part in ["", "_low", "_high"] {
            header.push(format!("{}{part}", m.as_str()));
        }
    }
    header.extend(
        [
            "probe",
            "probe_change",
            "prepare_s",
            "prepare_peak_rss_bytes",
            "prepare_energy_j",
            "data_rows",
            "data_tokens",
            "trainable_parameters",
            "artifact_bytes",
            "latency_p50_s",
            "latency_p95_s",
            "extra_context_tokens_mean",
        ]
        .map(String::from),
    );
    let mut out = vec![header.join(",")];
    for r in &report.methods {
        let mut row = vec![r.method.as_str().to_string(), r.status.as_str().to_string()];
        for m in &metrics {
            let e = score(r, *m);
            row.push(opt(e.map(|e| e.value)));
            row.push(opt(e.map(|e| e.low)));
            row.push(opt(e.map(|e| e.high)));
        }
        let eval = r.cost.eval.as_ref();
        row.extend([
            opt(r.probe.as_ref().map(|p| p.estimate.value)),
            opt(r.probe_change),
            r.cost.prepare_s.to_string(),
            opt(r.cost.prepare_peak_rss_bytes),
            opt(r.cost.prepare_energy_j),
            r.cost.footprint.data_rows.to_string(),
            r.cost.footprint.data_tokens.to_string(),
            r.cost.footprint.trainable_parameters.to_string(),
            r.cost.footprint.artifact_bytes.to_string(),
            opt(eval.map(|e| e.latency_p50_s)),
            opt(eval.map(|e| e.latency_p95_s)),
            opt(eval.map(|e| e.extra_context_tokens_mean)),
        ]);
        out.push(row.join(","));
    }
    out.join("\n") + "\n"
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "—".into())
}

/// A page that stands alone (no scripts, no outside files): the method table with the
/// measured columns, then the break-even line.
pub fn render_html(report: &CompareReport) -> String {
    let metrics = metrics_of(report);
    let mut html = String::new();
    html.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    html.push_str(&format!(
        "<title>Tunelab comparison: {}</title>",
        escape(&report.id)
    ));
    html.push_str(
        "<style>body{font:14px system-ui,sans-serif;margin:2rem;color:#1f2328}\
         table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:.35rem .6rem;\
         vertical-align:top;text-align:left}th{background:#f6f8fa}td.n{text-align:right;\
         font-variant-numeric:tabular-nums}small{color:#59636e}</style></head><body>\n",
    );
    html.push_str(&format!(
        "<h1>{}</h1>\n<p>Base model <b>{}</b> on {}, preset {}; status {}.</p>\n",
        escape(&report.id),
        escape(&report.task.model),
        escape(&report.device),
        report.task.preset.as_str(),
        report.status.as_str()
    ));
    html.push_str("<table>\n<tr><th>method</th><th>best for</th>");
    for m in &metrics {
        html.push_str(&format!("<th>{}</th>", m.as_str()));
    }
    html.push_str(
        "<th>forgetting probe</th><th>prepare</th><th>peak memory</th><th>energy</th>\
         <th>data</th><th>per query (p50)</th><th>extra context</th><th>artifact</th></tr>\n",
    );
    for r in &report.methods {
        html.push_str(&format!(
            "<tr><td><b>{}</b><br><small>{}</small>{}</td><td>{}</td>",
            escape(&r.name),
            escape(&r.what),
            r.error
                .as_ref()
                .map(|e| format!("<br><small>failed: {}</small>", escape(&e.message)))
                .unwrap_or_default(),
            escape(&r.good_for)
        ));
        for m in &metrics {
            let cell = score(r, *m)
                .map(|e| {
                    format!(
                        "{:.3}<br><small>{:.3}–{:.3}</small>",
                        e.value, e.low, e.high
                    )
                })
                .unwrap_or_else(|| "—".into());
            html.push_str(&format!("<td class=\"n\">{cell}</td>"));
        }
        let eval = r.cost.eval.as_ref();
        html.push_str(&format!(
            "<td class=\"n\">{}</td><td class=\"n\">{:.1} s</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{} rows, {} tokens</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            match (&r.probe, r.probe_change) {
                (Some(p), Some(change)) => format!("{:.2} ({change:+.2})", p.estimate.value),
                (Some(p), None) => format!("{:.2}", p.estimate.value),
                _ => "—".into(),
            },
            r.cost.prepare_s,
            mib(r.cost.prepare_peak_rss_bytes),
            r.cost
                .prepare_energy_j
                .map(|j| format!("{j:.0} J"))
                .unwrap_or_else(|| "—".into()),
            r.cost.footprint.data_rows,
            r.cost.footprint.data_tokens,
            eval.map(|e| format!("{:.2} s", e.latency_p50_s))
                .unwrap_or_else(|| "—".into()),
            eval.map(|e| format!("{:.0} tokens", e.extra_context_tokens_mean))
                .unwrap_or_else(|| "—".into()),
            mib(Some(r.cost.footprint.artifact_bytes)),
        ));
    }
    html.push_str("</table>\n");
    let curves: Vec<(&MethodResult, String)> = report
        .methods
        .iter()
        .filter_map(|r| Some((r, data_curve_line(r)?)))
        .collect();
    if !curves.is_empty() {
        html.push_str("<h2>Quality against training data</h2>\n<p>Each trained method again on shares of its examples, with the same steps.</p>\n<ul>\n");
        for (r, line) in curves {
            html.push_str(&format!(
                "<li><b>{}</b>: {}</li>\n",
                escape(&r.name),
                escape(&line)
            ));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("<h2>Break-even against RAG</h2>\n<ul>\n");
    for b in &report.break_even {
        let line = match b.queries {
            Some(q) => format!(
                "{}: its training is paid back after {q} questions ({:.2} s saved on each).",
                b.method.name(),
                b.saved_per_query_s
            ),
            None => format!(
                "{}: answers no faster than RAG, so its training is never paid back in time.",
                b.method.name()
            ),
        };
        html.push_str(&format!("<li>{}</li>\n", escape(&line)));
    }
    html.push_str("</ul>\n<p><small>Intervals are 95% bootstrap intervals. Energy on the CPU counts the whole package (other programs included).</small></p>\n</body></html>\n");
    html
}
