//! A fault-injecting TCP proxy for one peer link, for kernels without `netem` (ours: only tbf, htb, pfifo,
//! red and clsact qdiscs). The dialing node connects to the proxy, which connects to the other node; each
//! direction is shaped on its own ([`Shape`]): a delay per chunk of bytes (time, jitter, correlation and
//! distribution as netem draws them; a TCP stream keeps its order, so a chunk never overtakes the one before),
//! a rate (bytes per second, as `tbf` would), or a cut: `blackhole` swallows what is sent (a half-open link
//! when only one direction is cut), `reset` refuses the link (RST) both ways.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How netem spreads the jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Uniform in [time - jitter, time + jitter] (netem's default).
    #[default]
    Uniform,
    Normal,
    Pareto,
    Paretonormal,
}

impl std::str::FromStr for Distribution {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "none" | "uniform" => Ok(Distribution::Uniform),
            "normal" => Ok(Distribution::Normal),
            "pareto" => Ok(Distribution::Pareto),
            "paretonormal" => Ok(Distribution::Paretonormal),
            other => Err(format!(
                "`{other}` is not a distribution; expected uniform, normal, pareto or paretonormal"
            )),
        }
    }
}

/// netem's delay: `time` ± `jitter`, each draw correlated with the last by `correlation` (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Delay {
    pub time: Duration,
    pub jitter: Duration,
    pub correlation: f64,
    pub distribution: Distribution,
}

/// A cut link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cut {
    /// What is sent is swallowed; the connection stays open (peers time out).
    Blackhole,
    /// Connections are refused with a reset.
    Reset,
}

/// What happens to one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub delay: Option<Delay>,
    /// Bytes per second.
    pub rate: Option<u64>,
    pub cut: Option<Cut>,
}

impl Shape {
    /// Shapes both of `self` and `other` put on one direction (the larger delay and cut, the lower rate).
    pub fn merge(self, other: Shape) -> Shape {
        Shape {
            delay: match (self.delay, other.delay) {
                (Some(a), Some(b)) => Some(if a.time >= b.time { a } else { b }),
                (a, b) => a.or(b),
            },
            rate: match (self.rate, other.rate) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            cut: match (self.cut, other.cut) {
                (Some(Cut::Reset), _) | (_, Some(Cut::Reset)) => Some(Cut::Reset),
                (a, b) => a.or(b),
            },
        }
    }

    pub fn is_none(&self) -> bool {
        self.delay.is_none() && self.rate.is_none() && self.cut.is_none()
    }
}

/// Draws delays as netem does: a standardised value from the distribution, correlated with the previous
/// draw, scaled by the jitter around the time; never negative.
#[derive(Debug, Clone)]
pub struct Jitter {
    delay: Delay,
    state: u64,
    last: f64,
}

impl Jitter {
    pub fn new(delay: Delay, seed: u64) -> Jitter {
        Jitter {
            delay,
            state: seed | 1,
            last: 0.0,
        }
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64*, in (0, 1).
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Pareto with shape 3 (netem's table), standardised to mean 0 and deviation 1.
    fn pareto(&mut self) -> f64 {
        let x = (1.0 - self.uniform()).powf(-1.0 / 3.0);
        (x - 1.5) / 0.75f64.sqrt()
    }

    /// The next delay.
    pub fn draw(&mut self) -> Duration {
        if self.delay.jitter.is_zero() {
            return self.delay.time;
        }
        let z = match self.delay.distribution {
            // Uniform in [-1, 1] scales to [time - jitter, time + jitter].
            Distribution::Uniform => self.uniform() * 2.0 - 1.0,
            Distribution::Normal => self.normal(),
            Distribution::Pareto => self.pareto(),
            Distribution::Paretonormal => 0.25 * self.normal() + 0.75 * self.pareto(),
        };
        let rho = self.delay.correlation.clamp(0.0, 1.0);
        self.last = (1.0 - rho) * z + rho * self.last;
        let secs = self.delay.time.as_secs_f64() + self.delay.jitter.as_secs_f64() * self.last;
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// A running proxy: the dialer connects to `address`. Its shapes can change while connections live, as a
/// qdisc changes on a live interface: a link is set up unshaped (a peer handshake under a 3 s delay would time
/// out, which netem on an established link never causes) and shaped once it carries traffic.
pub struct LinkProxy {
    pub address: SocketAddr,
    shapes: watch::Sender<(Shape, Shape)>,
    stop: CancellationToken,
}

impl LinkProxy {
    /// Listens on `listen` (port 0 picks one) and forwards every connection to `target`, `forward` shaping
    /// what the dialer sends and `backward` what it gets. Stops (every connection closed) when dropped.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        forward: Shape,
        backward: Shape,
        seed: u64,
    ) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let stop = CancellationToken::new();
        let (shapes, watching) = watch::channel((forward, backward));
        let token = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((inbound, _)) = accepted else { continue };
                n += 1;
                tokio::spawn(connection(
                    inbound,
                    target,
                    watching.clone(),
                    seed.wrapping_add(n * 2),
                    token.clone(),
                ));
            }
        });
        Ok(LinkProxy { address, shapes, stop })
    }

    /// Changes the shapes of the live link and of later connections.
    pub fn set(&self, forward: Shape, backward: Shape) {
        self.shapes.send_replace((forward, backward));
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn resets((forward, backward): &(Shape, Shape)) -> bool {
    forward.cut == Some(Cut::Reset) || backward.cut == Some(Cut::Reset)
}

async fn connection(
    inbound: TcpStream,
    target: SocketAddr,
    mut shapes: watch::Receiver<(Shape, Shape)>,
    seed: u64,
    stop: CancellationToken,
) {
    // Every close of a proxied connection is a reset, as a cut link's would be.
    let _ = inbound.set_zero_linger();
    if resets(&shapes.borrow_and_update()) {
        return;
    }
    let outbound = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        _ => return,
    };
    let _ = (
        inbound.set_nodelay(true),
        outbound.set_nodelay(true),
        outbound.set_zero_linger(),
    );
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let one = pump(in_read, out_write, shapes.clone(), 0, seed, stop.clone());
    let other = pump(
        out_read,
        in_write,
        shapes.clone(),
        1,
        seed.wrapping_add(1),
        stop.clone(),
    );
    let reset = async {
        while shapes.changed().await.is_ok() {
            if resets(&shapes.borrow_and_update()) {
                return;
            }
        }
        std::future::pending::<()>().await
    };
    // When one direction ends, the other is closed too: a peer link is one connection.
    tokio::select! {
        _ = one => {}
        _ = other => {}
        _ = reset => {}
        _ = stop.cancelled() => {}
    }
}

/// Moves bytes one way (`side` 0: the dialer's, 1: the other's), shaped as the proxy says at each chunk: a
/// reader stamps each chunk with when it may be delivered, a writer delivers it then (at most `rate` bytes a
/// second). A bounded queue between them keeps TCP's back-pressure.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shapes: watch::Receiver<(Shape, Shape)>,
    side: usize,
    seed: u64,
    stop: CancellationToken,
) {
    let shape_now = move || {
        let both = *shapes.borrow();
        if side == 0 {
            both.0
        } else {
            both.1
        }
    };
    let (send, mut receive) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader_shape = shape_now.clone();
    let reader = async move {
        let mut jitter: Option<Jitter> = None;
        let mut last = Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let shape = reader_shape();
            if shape.cut.is_some() {
                continue;
            }
            if jitter.as_ref().map(|j| j.delay) != shape.delay {
                jitter = shape.delay.map(|d| Jitter::new(d, seed));
            }
            let at = match jitter.as_mut() {
                Some(j) => (Instant::now() + j.draw()).max(last),
                None => Instant::now().max(last),
            };
            last = at;
            if send.send((at, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        let mut free_at = Instant::now();
        while let Some((at, bytes)) = receive.recv().await {
            // A deadline already past is not slept on: tokio's timer rounds every sleep up to its next
            // millisecond, which cost an unshaped link about 1 ms a chunk (measured by `dagctl bench chaos`).
            let due = at.max(free_at);
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
            if let Some(rate) = shape_now().rate.filter(|r| *r > 0) {
                free_at = Instant::now().max(free_at) + Duration::from_secs_f64(bytes.len() as f64 / rate as f64);
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(reader, writer) } => {}
        _ = stop.cancelled() => {}
    }
}

/// Reads a rate as `tc` writes it: bits (`bit`, `kbit`, `mbit`, `gbit`) or bytes (`bps`, `kbps`, `mbps`,
/// `gbps`) a second, with 1000 steps (`kibit`, `kibps`, ... for 1024). Bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a rate; expected e.g. 100kbit, 1mbit or 500kbps"))?;
    let (scale, bits) = match unit {
        "bit" => (1.0, true),
        "kbit" => (1e3, true),
        "mbit" => (1e6, true),
        "gbit" => (1e9, true),
        "kibit" => (1024.0, true),
        "mibit" => (1048576.0, true),
        "bps" => (1.0, false),
        "kbps" => (1e3, false),
        "mbps" => (1e6, false),
        "gbps" => (1e9, false),
        "kibps" => (1024.0, false),
        "mibps" => (1048576.0, false),
        _ => {
            return Err(format!(
                "`{text}`: a rate needs a unit: bit, kbit, mbit, gbit (bits) or bps, kbps, mbps (bytes) a second"
            ))
        }
    };
    let bytes = value * scale / if bits { 8.0 } else { 1.0 };
    if bytes.is_nan() || bytes < 1.0 {
        return Err(format!("`{text}`: a rate must be at least one byte a second"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay(time: u64, jitter: u64, correlation: f64, distribution: Distribution) -> Delay {
        Delay {
            time: Duration::from_millis(time),
            jitter: Duration::from_millis(jitter),
            correlation,
            distribution,
        }
    }

    fn stats(draws: &[f64]) -> (f64, f64) {
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn delays_spread_as_netem_draws_them() {
        let draws = |d: Delay| -> Vec<f64> {
            let mut j = Jitter::new(d, 7);
            (0..20_000).map(|_| j.draw().as_secs_f64() * 1000.0).collect()
        };
        let uniform = draws(delay(3000, 30, 0.0, Distribution::Uniform));
        assert!(uniform.iter().all(|d| (2970.0..=3030.0).contains(d)));
        let (mean, sd) = stats(&uniform);
        assert!(
            (mean - 3000.0).abs() < 1.0 && (sd - 30.0 / 3f64.sqrt()).abs() < 1.0,
            "{mean} {sd}"
        );
        let (mean, sd) = stats(&draws(delay(100, 20, 0.0, Distribution::Normal)));
        assert!(
            (mean - 100.0).abs() < 1.0 && (sd - 20.0).abs() < 1.0,
            "normal {mean} {sd}"
        );
        let pareto = draws(delay(100, 20, 0.0, Distribution::Pareto));
        let (mean, _) = stats(&pareto);
        assert!((mean - 100.0).abs() < 2.0, "pareto mean {mean}");
        assert!(
            pareto.iter().cloned().fold(0.0, f64::max) > 160.0,
            "pareto has a long tail"
        );
        assert_eq!(draws(delay(50, 0, 0.5, Distribution::Normal))[0], 50.0);
        assert!(draws(delay(10, 100, 0.0, Distribution::Normal))
            .iter()
            .all(|d| *d >= 0.0));
    }

    #[test]
    fn correlation_ties_each_draw_to_the_last() {
        let lag1 = |rho: f64| {
            let mut j = Jitter::new(delay(1000, 100, rho, Distribution::Uniform), 3);
            let d: Vec<f64> = (0..20_000).map(|_| j.draw().as_secs_f64()).collect();
            let (mean, sd) = stats(&d);
            d.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum::<f64>() / (d.len() - 1) as f64 / (sd * sd)
        };
        assert!(lag1(0.0).abs() < 0.05);
        assert!((lag1(0.2) - 0.2).abs() < 0.05, "{}", lag1(0.2));
        assert!((lag1(0.8) - 0.8).abs() < 0.05);
    }

    #[test]
    fn rates_read_as_tc_writes_them() {
        assert_eq!(parse_rate("100kbit"), Ok(12_500));
        assert_eq!(parse_rate("1mbit"), Ok(125_000));
        assert_eq!(parse_rate("500kbps"), Ok(500_000));
        assert_eq!(parse_rate("1.5mbps"), Ok(1_500_000));
        assert!(parse_rate("100").unwrap_err().contains("needs a unit"));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0kbit").is_err());
    }

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(proxy: SocketAddr, bytes: usize) -> std::io::Result<Duration> {
        let mut stream = TcpStream::connect(proxy).await?;
        let started = Instant::now();
        stream.write_all(&vec![7u8; bytes]).await?;
        let mut got = vec![0u8; bytes];
        stream.read_exact(&mut got).await?;
        Ok(started.elapsed())
    }

    #[tokio::test]
    async fn the_proxy_delays_limits_and_cuts_a_real_connection() {
        let echo = echo_server().await;
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let plain = LinkProxy::start(any, echo, Shape::default(), Shape::default(), 1)
            .await
            .unwrap();
        assert!(round_trip(plain.address, 100).await.unwrap() < Duration::from_millis(100));
        let slow = Shape {
            delay: Some(delay(300, 0, 0.0, Distribution::Uniform)),
            ..Shape::default()
        };
        let delayed = LinkProxy::start(any, echo, slow, Shape::default(), 1).await.unwrap();
        let took = round_trip(delayed.address, 100).await.unwrap();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(600),
            "{took:?}"
        );
        let both = LinkProxy::start(any, echo, slow, slow, 1).await.unwrap();
        let took = round_trip(both.address, 100).await.unwrap();
        assert!(took >= Duration::from_millis(600), "both ways: {took:?}");
        // 50 KB at 100 KB/s takes about half a second.
        let narrow = Shape {
            rate: Some(100_000),
            ..Shape::default()
        };
        let limited = LinkProxy::start(any, echo, narrow, Shape::default(), 1).await.unwrap();
        let took = round_trip(limited.address, 50_000).await.unwrap();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        // A blackholed direction swallows; a reset refuses.
        let hole = Shape {
            cut: Some(Cut::Blackhole),
            ..Shape::default()
        };
        let swallowed = LinkProxy::start(any, echo, hole, Shape::default(), 1).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_millis(500), round_trip(swallowed.address, 10)).await;
        assert!(answer.is_err(), "nothing comes back through a blackhole");
        let refuse = Shape {
            cut: Some(Cut::Reset),
            ..Shape::default()
        };
        let refused = LinkProxy::start(any, echo, Shape::default(), refuse, 1).await.unwrap();
        assert!(round_trip(refused.address, 10).await.is_err());
        // Shapes change on a live connection: unshaped first, then delayed, then cut with a reset.
        let live = LinkProxy::start(any, echo, Shape::default(), Shape::default(), 1)
            .await
            .unwrap();
        let mut stream = TcpStream::connect(live.address).await.unwrap();
        let mut echoed = [0u8; 4];
        let started = Instant::now();
        stream.write_all(b"ping").await.unwrap();
        stream.read_exact(&mut echoed).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(100));
        live.set(slow, Shape::default());
        let started = Instant::now();
        stream.write_all(b"ping").await.unwrap();
        stream.read_exact(&mut echoed).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the same connection, now delayed"
        );
        live.set(refuse, Shape::default());
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(ended, Ok(Err(_)) | Ok(Ok(0))),
            "a reset ends the live connection: {ended:?}"
        );
        // Dropped, it listens no more.
        let address = plain.address;
        drop(plain);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(address).await.is_err());
    }
}
