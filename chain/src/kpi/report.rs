//! The KPIs as one self-contained HTML page: styles and charts inline (SVG), no script, nothing fetched, so it
//! opens anywhere, is attached to a mail or kept as a run's artefact.

use std::fmt::Write;

use super::svg::{escape, histogram, line_chart, short, Line, Span};
use super::Kpis;
use crate::load::summary::Latency;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111;max-width:1360px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
th{background:#f4f4f5}td.l,th.l{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:12px}\
.chart{width:640px;height:260px;border:1px solid #eee;background:#fff}.chart .title{font-weight:600;font-size:12px}\
.chart .tick,.chart .legend,.chart .label,.chart .spanlabel{font-size:10px}.chart .none{fill:#999}\
.chart .axis{stroke:#444}.chart .grid{stroke:#eee}.chart .line{fill:none;stroke-width:1.5}\
.chart .span{fill:#fde68a;opacity:.35}.chart .bar{fill:#60a5fa}.note{color:#92400e}.bad{color:#b91c1c;font-weight:600}.ok{color:#166534}";

fn latency_cells(l: &Latency) -> String {
    format!(
        "<td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>",
        l.min, l.mean, l.p50, l.p90, l.p99, l.p999, l.max
    )
}

const LATENCY_HEAD: &str =
    "<th>min ms</th><th>mean ms</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th>";

/// The report.
pub fn html(kpis: &Kpis) -> String {
    let run = &kpis.run;
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>KPIs of {d} / {r}</title><style>{STYLE}</style></head><body>\
         <h1>KPIs of {d} / {r}</h1><p>Run state <b>{s}</b>{net}; computed {c}.</p>",
        d = escape(&run.dag_id),
        r = escape(&run.run_id),
        s = escape(&run.state),
        net = kpis
            .network
            .as_deref()
            .map(|n| format!(", network <b>{}</b>", escape(n)))
            .unwrap_or_default(),
        c = kpis.computed_at.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    for r in &kpis.regressions {
        let _ = write!(out, "<p class=\"bad\">Regression: {}</p>", escape(&r.text));
    }
    summary(&mut out, kpis);
    for load in &kpis.loads {
        let name = escape(load.task_id.as_deref().unwrap_or("load"));
        let _ = write!(out, "<h2 id=\"load-{name}\">Load {name}</h2>");
        for note in &load.notes {
            let _ = write!(out, "<p class=\"note\">{}</p>", escape(note));
        }
        out.push_str("<table><tr><th class=\"l\">kind</th><th class=\"l\">response</th><th>count</th>");
        out.push_str(LATENCY_HEAD);
        out.push_str("</tr>");
        for row in &load.latency {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td>{}</tr>",
                escape(&row.kind),
                escape(&row.response),
                row.count,
                latency_cells(&row.latency_ms)
            );
        }
        out.push_str("</table>");
        if !load.errors.by_response.is_empty() {
            out.push_str("<table><tr><th class=\"l\">error</th><th>count</th><th>share of calls</th></tr>");
            for (name, count) in &load.errors.by_response {
                let _ = write!(
                    out,
                    "<tr><td class=\"l\">{}</td><td>{count}</td><td>{:.3}%</td></tr>",
                    escape(name),
                    *count as f64 / load.errors.calls.max(1) as f64 * 100.0
                );
            }
            out.push_str("</table>");
        }
        if load.phases.len() > 1 {
            out.push_str("<table><tr><th>phase</th><th>rate</th><th>from s</th><th>to s</th><th>calls</th><th>errors</th><th>p50 ms</th><th>p99 ms</th><th>TPS included</th></tr>");
            for p in &load.phases {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{:.2}%</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
                    p.index, p.rate, p.start_s, p.end_s, p.calls, p.error_rate * 100.0,
                    p.latency_ms.as_ref().map_or("-".into(), |l| format!("{:.2}", l.p50)),
                    p.latency_ms.as_ref().map_or("-".into(), |l| format!("{:.2}", l.p99)),
                    p.tps_included
                );
            }
            out.push_str("</table>");
        }
        let spans: Vec<Span> = load
            .phases
            .iter()
            .filter(|_| load.phases.len() > 1)
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, p)| Span {
                from: p.start_s,
                to: p.end_s,
                label: format!("{:.0}/s", p.rate),
            })
            .collect();
        let s = &load.series;
        let t = |i: usize| (i as f64 + 0.5) * s.width_s;
        let series = |v: &[f64]| v.iter().enumerate().map(|(i, y)| (t(i), *y)).collect::<Vec<_>>();
        let optional = |v: &[Option<f64>]| {
            v.iter()
                .enumerate()
                .map(|(i, y)| (t(i), y.unwrap_or(f64::NAN)))
                .collect::<Vec<_>>()
        };
        out.push_str("<div class=\"charts\">");
        let cdf: Vec<(f64, f64)> = load.cdf.clone();
        out.push_str(&line_chart(
            "Latency CDF (successful calls)",
            "ms (log)",
            "share",
            &[Line {
                name: "all kinds",
                points: cdf,
            }],
            &[],
            true,
        ));
        let mut tps = vec![
            Line {
                name: "calls sent/s",
                points: series(&s.sent_per_s),
            },
            Line {
                name: "answered/s",
                points: series(&s.answered_per_s),
            },
        ];
        if load.transactions.is_some() {
            tps.push(Line {
                name: "TPS included",
                points: series(&s.tps_included),
            });
            tps.push(Line {
                name: "TPS confirmed",
                points: series(&s.tps_confirmed),
            });
        }
        out.push_str(&line_chart(
            "Throughput",
            "s from the load's start",
            "per s",
            &tps,
            &spans,
            false,
        ));
        out.push_str(&line_chart(
            "Latency over time",
            "s from the load's start",
            "ms",
            &[
                Line {
                    name: "p50",
                    points: optional(&s.p50_ms),
                },
                Line {
                    name: "p99",
                    points: optional(&s.p99_ms),
                },
            ],
            &spans,
            false,
        ));
        out.push_str(&line_chart(
            "Errors",
            "s from the load's start",
            "failed per s",
            &[Line {
                name: "failed/s",
                points: series(&s.failed_per_s),
            }],
            &spans,
            false,
        ));
        out.push_str("</div>");
    }
    network(&mut out, kpis);
    resilience(&mut out, kpis);
    recommendation(&mut out, kpis);
    if !kpis.log_lines.is_empty() {
        out.push_str("<h2>Log lines by level</h2><table><tr><th class=\"l\">node</th><th class=\"l\">level</th><th>lines</th></tr>");
        for l in &kpis.log_lines {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
                escape(&l.node),
                escape(&l.level),
                l.count
            );
        }
        out.push_str("</table>");
    }
    if !kpis.alerts.is_empty() {
        let _ = write!(out, "<h2>Alerts</h2><p>From {}.</p>", escape(&kpis.logs_from));
        out.push_str("<table><tr><th class=\"l\">node</th><th class=\"l\">level</th><th class=\"l\">pattern</th><th>count</th><th class=\"l\">first</th><th class=\"l\">last</th></tr>");
        for a in &kpis.alerts {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                escape(&a.node),
                escape(&a.level),
                escape(&a.pattern),
                a.count,
                a.first_at.format("%H:%M:%S"),
                a.last_at.format("%H:%M:%S")
            );
        }
        out.push_str("</table>");
    }
    if kpis.trend.len() > 1 {
        let _ = write!(
            out,
            "<h2>Trend over the last {} runs of {}</h2>",
            kpis.trend.len(),
            escape(&run.dag_id)
        );
        trend_charts(&mut out, &kpis.trend, &kpis.regressions);
    }
    if !kpis.not_computed.is_empty() {
        out.push_str("<h2>Not computed</h2><ul>");
        for m in &kpis.not_computed {
            let _ = write!(out, "<li><b>{}</b>: {}</li>", escape(&m.kpi), escape(&m.reason));
        }
        out.push_str("</ul>");
    }
    out.push_str("</body></html>\n");
    out
}

/// The chaos tasks: faults, verdict criteria with their numbers, KPIs during the faults against before.
fn resilience(out: &mut String, kpis: &Kpis) {
    if kpis.resilience.is_empty() {
        return;
    }
    out.push_str("<h2>Resilience</h2><table><tr><th class=\"l\">task</th><th class=\"l\">faults</th><th class=\"l\">verdict</th><th>blocks/s during</th><th>before</th><th>calls during</th><th>before</th><th>errors during</th><th>before</th><th>worst p99 ms during</th><th>before</th></tr>");
    let num = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
    for p in &kpis.resilience {
        let verdict: Vec<String> = p
            .criteria
            .iter()
            .map(|c| {
                format!(
                    "<span class=\"{}\">{} {}</span>: {}",
                    if c.passed { "ok" } else { "bad" },
                    if c.passed { "PASS" } else { "FAIL" },
                    escape(&c.name),
                    escape(&c.detail)
                )
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{} on {}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.task),
            escape(&p.faults.join("; ")),
            escape(&p.nodes.join(", ")),
            if verdict.is_empty() { "no verdict".to_string() } else { verdict.join("<br>") },
            num(p.during.blocks_per_second, 2),
            num(p.before.blocks_per_second, 2),
            p.during.calls,
            p.before.calls,
            pct(p.during.error_rate),
            pct(p.before.error_rate),
            num(p.during.worst_p99_ms, 0),
            num(p.before.worst_p99_ms, 0),
        );
    }
    out.push_str("</table>");
}

fn summary(out: &mut String, kpis: &Kpis) {
    out.push_str("<h2>Summary</h2><table><tr><th class=\"l\">load</th><th>seconds</th><th>send/s</th><th>throughput/s</th><th>reads/s</th><th>TPS sent</th><th>TPS included</th><th>TPS confirmed</th><th>p50 ms</th><th>p99 ms</th><th>error rate</th><th>inclusion p50 ms</th><th>inclusion p99 ms</th></tr>");
    for load in &kpis.loads {
        let t = &load.throughput;
        let tx = load.transactions.as_ref();
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let opt2 = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}%</td><td>{}</td><td>{}</td></tr>",
            escape(load.task_id.as_deref().unwrap_or("load")),
            load.seconds,
            t.send_rate,
            t.throughput,
            t.reads_per_second,
            opt(tx.map(|_| t.tps_sent)),
            opt(tx.map(|_| t.tps_included)),
            opt(tx.map(|_| t.tps_confirmed)),
            opt2(load.latency_ms.as_ref().map(|l| l.p50)),
            opt2(load.latency_ms.as_ref().map(|l| l.p99)),
            load.errors.rate * 100.0,
            opt(tx.filter(|t| t.included > 0).map(|t| t.inclusion_ms.p50)),
            opt(tx.filter(|t| t.included > 0).map(|t| t.inclusion_ms.p99)),
        );
    }
    out.push_str("</table>");
    if let Some(blocks) = &kpis.blocks {
        out.push_str("<table><tr><th>blocks</th><th>block time mean s</th><th>stddev s</th><th>p99 s</th><th>empty blocks</th><th>gas used / limit (mean)</th><th>peak</th></tr>");
        let bt = blocks.block_time_s.as_ref();
        let f = |v: Option<f64>, scale: f64, digits: usize| {
            v.map_or("-".to_string(), |v| format!("{:.*}", digits, v * scale))
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
            blocks.blocks,
            f(bt.map(|b| b.mean), 1.0, 3),
            f(bt.map(|b| b.stddev), 1.0, 3),
            f(bt.map(|b| b.p99), 1.0, 3),
            f(blocks.empty_share, 100.0, 1) + "%",
            f(blocks.gas_used_ratio.map(|g| g.mean), 100.0, 1) + "%",
            f(blocks.gas_used_ratio.map(|g| g.peak), 100.0, 1) + "%",
        );
    }
}

fn network(out: &mut String, kpis: &Kpis) {
    if kpis.nodes.is_empty() {
        return;
    }
    out.push_str("<h2>Nodes</h2><table><tr><th class=\"l\">node</th><th>up</th><th>propagation p50 ms</th><th>p99 ms</th><th>peers</th><th>peer changes</th><th>pool peak</th><th>CPU mean %</th><th>CPU peak %</th><th>memory peak MiB</th><th>disk write peak/s</th><th>net in peak/s</th><th>CPU % per 1,000 TPS</th></tr>");
    for n in &kpis.nodes {
        let r = |m: &str| n.resources.get(m);
        let f = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&n.node),
            f(n.up_share.map(|u| u * 100.0), 0) + "%",
            f(n.propagation_ms.as_ref().map(|p| p.p50), 1),
            f(n.propagation_ms.as_ref().map(|p| p.p99), 1),
            n.peers.as_ref().map_or("-".into(), |p| format!("{}-{}", p.min, p.max)),
            n.peers.as_ref().map_or("-".into(), |p| p.changes.to_string()),
            f(n.txpool_peak, 0),
            f(r("cpu_percent").map(|c| c.mean), 1),
            f(r("cpu_percent").map(|c| c.peak), 1),
            f(r("rss_bytes").map(|c| c.peak / 1048576.0), 0),
            r("disk_write_bytes_per_second").map_or("-".into(), |c| short(c.peak)),
            r("net_in_bytes_per_second").map_or("-".into(), |c| short(c.peak)),
            f(n.per_1000_tps.get("cpu_percent").copied(), 1),
        );
    }
    out.push_str("</table><div class=\"charts\">");
    let start = kpis
        .charts
        .nodes
        .values()
        .flat_map(|by_node| by_node.values())
        .filter_map(|p| p.first().map(|(t, _)| *t))
        .fold(f64::MAX, f64::min);
    // Loads' and chaos faults' spans on the nodes' time axis.
    let at = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros() as f64 / 1e6 - start;
    let spans: Vec<Span> = kpis
        .loads
        .iter()
        .map(|l| {
            let from = at(l.started_at);
            Span {
                from,
                to: from + l.end_s,
                label: format!("load {}", l.task_id.as_deref().unwrap_or("")),
            }
        })
        .chain(kpis.resilience.iter().filter_map(|p| {
            Some(Span {
                from: at(p.during.from?),
                to: at(p.during.to?),
                label: format!("chaos {}", p.task),
            })
        }))
        .collect();
    for (metric, title, scale) in [
        ("head", "Head (block number)", 1.0),
        ("cpu_percent", "CPU (% of one core)", 1.0),
        ("rss_bytes", "Memory (MiB)", 1.0 / 1048576.0),
        ("disk_write_bytes_per_second", "Disk writes (bytes/s)", 1.0),
        ("net_in_bytes_per_second", "p2p in (bytes/s)", 1.0),
        ("net_out_bytes_per_second", "p2p out (bytes/s)", 1.0),
        ("txpool_pending", "Pending pool", 1.0),
        ("peers", "Peers", 1.0),
    ] {
        let Some(by_node) = kpis.charts.nodes.get(metric) else {
            continue;
        };
        let lines: Vec<Line> = by_node
            .iter()
            .map(|(node, points)| Line {
                name: node,
                points: points.iter().map(|(t, v)| (t - start, v * scale)).collect(),
            })
            .collect();
        out.push_str(&line_chart(title, "s", "", &lines, &spans, false));
    }
    out.push_str(&histogram(
        "Block time (s, from arrivals)",
        "s",
        &kpis.charts.block_times_s,
        30,
    ));
    out.push_str(&histogram(
        "Block propagation (ms behind the first node)",
        "ms",
        &kpis.charts.propagation_ms,
        30,
    ));
    out.push_str("</div>");
}

fn recommendation(out: &mut String, kpis: &Kpis) {
    let rec = &kpis.recommendation;
    out.push_str("<h2>Recommendation</h2>");
    if let Some(b) = &rec.bottleneck {
        let _ = write!(
            out,
            "<p class=\"{}\">{}</p>",
            if b.saturated { "bad" } else { "" },
            escape(&b.text)
        );
    }
    if let Some(s) = &rec.sizing {
        let _ = write!(out, "<p><b>{}</b></p>", escape(&s.text));
    }
    for flag in &rec.flags {
        let _ = write!(
            out,
            "<p class=\"bad\">{}: {}</p>",
            escape(&flag.setting),
            escape(&flag.text)
        );
    }
    for note in &rec.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", escape(note));
    }
    if !rec.fits.is_empty() {
        out.push_str("<table><tr><th class=\"l\">node</th><th class=\"l\">resource</th><th>base</th><th>per 1,000 TPS</th><th>± (1 s.e.)</th><th>r²</th><th>windows</th></tr>");
        for fit in &rec.fits {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
                escape(&fit.node),
                if fit.resource == "cpu" { "CPU cores" } else { "memory GiB" },
                fit.intercept,
                fit.per_1000,
                fit.per_1000_stderr,
                fit.r2,
                fit.windows
            );
        }
        out.push_str("</table>");
    }
    if !rec.windows.is_empty() {
        out.push_str("<details><summary>Evidence: the windows used</summary><table><tr><th class=\"l\">window</th><th>rate/s</th><th>p99 ms</th><th>error rate</th><th class=\"l\">node CPU cores / memory GiB</th></tr>");
        for w in &rec.windows {
            let nodes: Vec<String> = w
                .nodes
                .iter()
                .map(|(n, u)| {
                    format!(
                        "{}: {} / {}",
                        n,
                        u.cpu_cores.map_or("-".into(), |c| format!("{c:.2}")),
                        u.memory_gib.map_or("-".into(), |m| format!("{m:.2}"))
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.2}%</td><td class=\"l\">{}</td></tr>",
                escape(&w.label),
                w.rate,
                w.p99_ms,
                w.error_rate * 100.0,
                escape(&nodes.join("; "))
            );
        }
        out.push_str("</table></details>");
    }
}

/// The names trends are drawn for, with their titles.
const TREND_FIGURES: &[(&str, &str)] = &[
    ("tps_included", "TPS included"),
    ("throughput", "Throughput (calls/s)"),
    ("reads_per_second", "Reads per second"),
    ("p99_ms", "p99 latency (ms)"),
    ("p50_ms", "p50 latency (ms)"),
    ("error_rate", "Error rate"),
    ("inclusion_p99_ms", "Inclusion p99 (ms)"),
    ("block_time_mean_s", "Block time mean (s)"),
    ("block_time_stddev_s", "Block time stddev (s)"),
    ("propagation_p99_ms", "Propagation p99, worst node (ms)"),
    ("cpu_mean_percent", "CPU mean, busiest node (%)"),
    ("rss_peak_mib", "Memory peak, largest node (MiB)"),
    ("cpu_percent_per_1000_tps", "CPU % per 1,000 TPS, worst node"),
];

/// One chart per figure across `points` (oldest first), x = the run's place; regressed figures titled so.
fn trend_charts(out: &mut String, points: &[super::trend::TrendPoint], regressions: &[super::trend::Regression]) {
    out.push_str("<div class=\"charts\">");
    for (name, title) in TREND_FIGURES {
        let line: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some(((i + 1) as f64, *p.values.get(*name)?)))
            .collect();
        if line.len() < 2 {
            continue;
        }
        let regressed = regressions.iter().any(|r| r.kpi == *name);
        let title = if regressed {
            format!("{title}: REGRESSION")
        } else {
            title.to_string()
        };
        out.push_str(&line_chart(
            &title,
            "run (oldest first)",
            "",
            &[Line { name, points: line }],
            &[],
            false,
        ));
    }
    out.push_str(
        "</div><details><summary>Runs</summary><table><tr><th class=\"l\">run</th><th class=\"l\">computed</th></tr>",
    );
    for (i, p) in points.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{} {}</td><td class=\"l\">{}</td></tr>",
            i + 1,
            escape(&p.run_id),
            p.computed_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    out.push_str("</table></details>");
}

/// A DAG's trend page: its runs' headline figures (oldest first) and the newest run's regressions.
pub fn trend_html(
    dag_id: &str,
    points: &[super::trend::TrendPoint],
    regressions: &[super::trend::Regression],
) -> String {
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>KPI trend of {d}</title><style>{STYLE}</style></head><body><h1>KPI trend of {d}</h1>",
        d = escape(dag_id)
    );
    if points.is_empty() {
        out.push_str("<p class=\"note\">No run of this DAG has kept KPIs yet (a chain.log_etl task keeps them).</p>");
    } else {
        let _ = write!(out, "<p>{} runs with KPIs.</p>", points.len());
        for r in regressions {
            let _ = write!(out, "<p class=\"bad\">Newest run: regression: {}</p>", escape(&r.text));
        }
        trend_charts(&mut out, points, regressions);
    }
    out.push_str("</body></html>\n");
    out
}
