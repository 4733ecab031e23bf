//! The KPIs as plain text, for a terminal and a task's log.

use super::{resilience, Kpis};

impl Kpis {
    /// A plain-text summary for a terminal.
    pub fn table(&self) -> String {
        let mut out = format!(
            "KPIs of {} / {} ({})\n",
            self.run.dag_id, self.run.run_id, self.run.state
        );
        for load in &self.loads {
            let t = &load.throughput;
            out.push_str(&format!(
                "load {} ({}, {:.1} s, {} records)\n  calls: send {:.1}/s, throughput {:.1}/s, reads {:.1}/s, errors {:.2}%\n",
                load.task_id.as_deref().unwrap_or("-"),
                load.mode,
                load.seconds,
                load.records,
                t.send_rate,
                t.throughput,
                t.reads_per_second,
                load.errors.rate * 100.0
            ));
            if let Some(tx) = &load.transactions {
                out.push_str(&format!(
                    "  transactions: {} sent, {} included, {} confirmed; TPS sent {:.1}, included {:.1}, confirmed {:.1}; inclusion p50 {:.0} ms p99 {:.0} ms\n",
                    tx.sent, tx.included, tx.confirmed, t.tps_sent, t.tps_included, t.tps_confirmed,
                    tx.inclusion_ms.p50, tx.inclusion_ms.p99
                ));
            }
            out.push_str(&format!(
                "  {:<24} {:<20} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}\n",
                "kind", "response", "count", "min ms", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
            ));
            for row in &load.latency {
                let l = &row.latency_ms;
                out.push_str(&format!(
                    "  {:<24} {:<20} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2}\n",
                    row.kind, row.response, row.count, l.min, l.p50, l.p90, l.p99, l.p999, l.max
                ));
            }
            for phase in load.phases.iter().filter(|_| load.phases.len() > 1) {
                out.push_str(&format!(
                    "  phase {} at {:.0}/s ({:.0}-{:.0} s): {} calls, errors {:.2}%, p99 {} ms, {:.1} TPS included\n",
                    phase.index,
                    phase.rate,
                    phase.start_s,
                    phase.end_s,
                    phase.calls,
                    phase.error_rate * 100.0,
                    phase
                        .latency_ms
                        .as_ref()
                        .map_or("-".into(), |l| format!("{:.1}", l.p99)),
                    phase.tps_included
                ));
            }
            for note in &load.notes {
                out.push_str(&format!("  note: {note}\n"));
            }
        }
        out.push_str(&resilience::table(&self.resilience));
        if let Some(blocks) = &self.blocks {
            if let Some(bt) = &blocks.block_time_s {
                out.push_str(&format!(
                    "blocks: {} seen, block time mean {:.3} s, stddev {:.3} s, p99 {:.3} s",
                    blocks.blocks, bt.mean, bt.stddev, bt.p99
                ));
                if let Some(empty) = blocks.empty_share {
                    out.push_str(&format!(", {:.0}% empty", empty * 100.0));
                }
                if let Some(gas) = &blocks.gas_used_ratio {
                    out.push_str(&format!(
                        ", gas used {:.1}% of the limit (peak {:.1}%)",
                        gas.mean * 100.0,
                        gas.peak * 100.0
                    ));
                }
                out.push('\n');
            }
        }
        for node in &self.nodes {
            let r = |m: &str| node.resources.get(m);
            out.push_str(&format!(
                "node {}: up {:.0}%, propagation p50 {} p99 {}, peers {}, pool peak {}, CPU mean {} peak {}, memory peak {}\n",
                node.node,
                node.up_share.unwrap_or(0.0) * 100.0,
                node.propagation_ms.as_ref().map_or("-".into(), |p| format!("{:.0} ms", p.p50)),
                node.propagation_ms.as_ref().map_or("-".into(), |p| format!("{:.0} ms", p.p99)),
                node.peers.as_ref().map_or("-".into(), |p| format!("{}-{} ({} changes)", p.min, p.max, p.changes)),
                node.txpool_peak.map_or("-".into(), |p| format!("{p:.0}")),
                r("cpu_percent").map_or("-".into(), |c| format!("{:.0}%", c.mean)),
                r("cpu_percent").map_or("-".into(), |c| format!("{:.0}%", c.peak)),
                r("rss_bytes").map_or("-".into(), |m| format!("{:.0} MiB", m.peak / 1048576.0)),
            ));
        }
        for (level, count) in &self.alerts_by_level {
            out.push_str(&format!("alerts {level} (from {}): {count}\n", self.logs_from));
        }
        for lines in &self.log_lines {
            out.push_str(&format!("log lines {} {}: {}\n", lines.node, lines.level, lines.count));
        }
        let rec = &self.recommendation;
        if let Some(b) = &rec.bottleneck {
            out.push_str(&format!("{}\n", b.text));
        }
        if let Some(s) = &rec.sizing {
            out.push_str(&format!("{}\n", s.text));
        }
        for flag in &rec.flags {
            out.push_str(&format!("setting {}: {}\n", flag.setting, flag.text));
        }
        for note in &rec.notes {
            out.push_str(&format!("recommendation: {note}\n"));
        }
        for r in &self.regressions {
            out.push_str(&format!("REGRESSION: {}\n", r.text));
        }
        if self.trend.len() > 1 && self.regressions.is_empty() {
            out.push_str(&format!(
                "no regression against the last {} runs\n",
                self.trend.len() - 1
            ));
        }
        for m in &self.not_computed {
            out.push_str(&format!("not computed: {}: {}\n", m.kpi, m.reason));
        }
        out
    }
}
