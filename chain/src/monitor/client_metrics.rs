//! The client's own Prometheus metrics, scraped from its loopback metrics endpoint (geth and GoQuorum
//! `/debug/metrics/prometheus`, Besu and OpenEthereum `/metrics`) and parsed with the `prometheus-parse` crate.
//! From them: the node's **data rate** (geth-family `p2p_ingress` / `p2p_egress` byte meters, as rates),
//! **block processing** (geth-family `chain_inserts` timer: median and 95th percentile of block import, in
//! ms), and an allow-list of the client's series stored as they are (`client:<name>`).

use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

use crate::spec::Client;

/// Client series stored by default (those the client has; the rest are skipped).
pub const DEFAULT_SERIES: &[&str] = &[
    "chain_head_block",
    "p2p_peers",
    "txpool_pending",
    "txpool_queued",
    "chain_inserts_count",
    "ethereum_blockchain_height",
    "ethereum_peer_count",
];

/// What one scrape gave.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ClientMetrics {
    pub net_in_bytes_per_second: Option<f64>,
    pub net_out_bytes_per_second: Option<f64>,
    pub block_import_ms: Option<f64>,
    pub block_import_p95_ms: Option<f64>,
    /// Allow-listed series by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<(String, f64)>,
    /// Why the endpoint could not be read or parsed, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_error: Option<String>,
}

/// Scrapes one node's metrics endpoint, keeping the last byte counters for rates.
#[derive(Debug)]
pub struct Scraper {
    url: String,
    http: reqwest::Client,
    allow: Vec<String>,
    last_bytes: Option<(Instant, f64, f64)>,
}

/// The metrics URL of a node of `client` serving metrics on `host:port`; anvil has none.
pub fn metrics_url(client: Client, host: &str, port: u16) -> Option<String> {
    match client {
        Client::Geth | Client::Quorum => Some(format!("http://{host}:{port}/debug/metrics/prometheus")),
        Client::Besu | Client::Openethereum => Some(format!("http://{host}:{port}/metrics")),
        Client::Anvil => None,
    }
}

impl Scraper {
    pub fn new(url: String, timeout: Duration, allow: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            url,
            http,
            allow,
            last_bytes: None,
        }
    }

    /// One scrape; a failure is reported in `metrics_error`, never as an error.
    pub async fn scrape(&mut self) -> ClientMetrics {
        let text = match self.fetch().await {
            Ok(text) => text,
            Err(reason) => {
                self.last_bytes = None;
                return ClientMetrics {
                    metrics_error: Some(reason),
                    ..ClientMetrics::default()
                };
            }
        };
        let at = Instant::now();
        let scrape = match parse(&text) {
            Ok(scrape) if scrape.samples.is_empty() => {
                return ClientMetrics {
                    metrics_error: Some(format!("{}: the answer holds no Prometheus samples", self.url)),
                    ..ClientMetrics::default()
                }
            }
            Ok(scrape) => scrape,
            Err(err) => {
                return ClientMetrics {
                    metrics_error: Some(format!("{}: not Prometheus text: {err}", self.url)),
                    ..ClientMetrics::default()
                }
            }
        };
        let mut out = ClientMetrics::default();
        if let (Some(ingress), Some(egress)) = (plain(&scrape, "p2p_ingress"), plain(&scrape, "p2p_egress")) {
            if let Some((before, last_in, last_out)) = self.last_bytes {
                let seconds = at.duration_since(before).as_secs_f64();
                if seconds > 0.0 {
                    out.net_in_bytes_per_second = Some((ingress - last_in).max(0.0) / seconds);
                    out.net_out_bytes_per_second = Some((egress - last_out).max(0.0) / seconds);
                }
            }
            self.last_bytes = Some((at, ingress, egress));
        }
        // geth's timers are in nanoseconds.
        out.block_import_ms = quantile(&scrape, "chain_inserts", 0.5).map(|ns| ns / 1e6);
        out.block_import_p95_ms = quantile(&scrape, "chain_inserts", 0.95).map(|ns| ns / 1e6);
        for name in &self.allow {
            if let Some(value) = plain(&scrape, name) {
                out.series.push((name.clone(), value));
            }
        }
        out
    }

    async fn fetch(&self) -> Result<String, String> {
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        if !response.status().is_success() {
            return Err(format!("{}: HTTP {}", self.url, response.status()));
        }
        response.text().await.map_err(|e| format!("{}: {e}", self.url))
    }
}

/// Parses Prometheus text. geth writes a space between a series name and its labels (`chain_inserts
/// {quantile="0.5"}`), which Prometheus accepts and the parser does not: that space is removed first.
pub fn parse(text: &str) -> std::io::Result<Scrape> {
    let lines = text.lines().map(|line| {
        let fixed = match line.find(" {") {
            Some(i)
                if !line.starts_with('#')
                    && line[..i]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') =>
            {
                format!("{}{}", &line[..i], &line[i + 1..])
            }
            _ => line.to_string(),
        };
        Ok(fixed)
    });
    Scrape::parse(lines)
}

/// The value of an unlabelled gauge, counter or untyped series.
fn plain(scrape: &Scrape, name: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.is_empty())
        .find_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v).filter(|v| v.is_finite()),
            _ => None,
        })
}

/// A quantile of a summary, whether parsed as a summary or as untyped `quantile`-labelled samples.
fn quantile(scrape: &Scrape, name: &str, q: f64) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find_map(|s| match &s.value {
            Value::Summary(counts) => counts.iter().find(|c| (c.quantile - q).abs() < 1e-9).map(|c| c.count),
            Value::Untyped(v) | Value::Gauge(v) => s
                .labels
                .get("quantile")
                .and_then(|text| text.parse::<f64>().ok())
                .filter(|found| (found - q).abs() < 1e-9)
                .map(|_| *v),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as geth 1.13 writes them (a space before the labels of a summary).
    const GETH: &str = "# TYPE chain_head_block gauge\nchain_head_block 42\n\n# TYPE chain_inserts_count counter\nchain_inserts_count 40\n\n# TYPE chain_inserts summary\nchain_inserts {quantile=\"0.5\"} 789905\nchain_inserts {quantile=\"0.95\"} 2500000\n\n# TYPE p2p_ingress gauge\np2p_ingress 1000\n# TYPE p2p_egress gauge\np2p_egress 3000\n";

    #[test]
    fn geth_text_parses_with_its_spaced_labels() {
        let scrape = parse(GETH).unwrap();
        assert_eq!(plain(&scrape, "chain_head_block"), Some(42.0));
        assert_eq!(plain(&scrape, "chain_inserts_count"), Some(40.0));
        assert_eq!(quantile(&scrape, "chain_inserts", 0.5), Some(789905.0));
        assert_eq!(quantile(&scrape, "chain_inserts", 0.95), Some(2_500_000.0));
        assert_eq!(plain(&scrape, "nope"), None);
    }

    #[tokio::test]
    async fn rates_come_from_two_scrapes_and_failures_are_reported() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for ingress in [1000u64, 6000, 0] {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf).await;
                let body = if ingress == 0 {
                    "chain_head_block {{{\n".to_string()
                } else {
                    GETH.replace("p2p_ingress 1000", &format!("p2p_ingress {ingress}"))
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            }
        });
        let url = metrics_url(Client::Geth, "127.0.0.1", port).unwrap();
        let mut scraper = Scraper::new(
            url,
            Duration::from_secs(2),
            vec!["chain_head_block".into(), "absent".into()],
        );
        let first = scraper.scrape().await;
        assert_eq!(first.metrics_error, None);
        assert_eq!(first.net_in_bytes_per_second, None, "no rate from one scrape");
        assert_eq!(first.block_import_ms, Some(0.789905));
        assert_eq!(first.series, vec![("chain_head_block".to_string(), 42.0)]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = scraper.scrape().await;
        let rate = second.net_in_bytes_per_second.unwrap();
        assert!(
            (10_000.0..=26_000.0).contains(&rate),
            "5000 bytes in about 0.2 s: {rate}"
        );
        assert_eq!(second.net_out_bytes_per_second, Some(0.0));
        let garbage = scraper.scrape().await;
        assert!(garbage.metrics_error.is_some(), "{garbage:?}");
        let closed = scraper.scrape().await;
        assert!(closed.metrics_error.unwrap().contains("127.0.0.1"));
    }
}
