//! A small HTTP/1.1 client for the load generator: keep-alive connections to one node, a request written in one
//! go, the answer read by `Content-Length` or chunked encoding. It does only what JSON-RPC over HTTP needs, and
//! so costs a fraction of a general client per call: the generator's CPU goes to sending, not to framing.
//!
//! Failures are classified as the load report shows them: refused, reset (or closed early), timeout, HTTP
//! status, or an answer that is not HTTP.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer read (a full block with its transactions fits easily).
const MAX_BODY: usize = 64 << 20;

/// How a call failed before a JSON-RPC answer could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused.
    Refused,
    /// Reset, or closed before the answer was complete.
    Reset,
    /// No complete answer within the call's timeout.
    Timeout,
    /// Not HTTP, or a body over the limit.
    Garbage,
    /// No socket to be had here (the process's open-file limit): the call was never sent.
    NoSocket,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A node's HTTP endpoint, split for writing requests.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, for connecting.
    pub address: String,
    /// The request's first lines, up to and including `Content-Length: `.
    head: Vec<u8>,
}

impl Endpoint {
    /// An endpoint for `url` (`http://host:port/path`). HTTPS is not spoken here.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}` is not an http:// URL (the generator speaks plain HTTP)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("`{url}` has no host, or has credentials in it"));
        }
        let address = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: "
        )
        .into_bytes();
        Ok(Endpoint { address, head })
    }

    /// The whole request for `body`.
    fn request(&self, body: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.head);
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }
}

/// One keep-alive connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    request: Vec<u8>,
}

impl Connection {
    pub async fn open(endpoint: &Endpoint) -> Result<Connection, Failure> {
        match TcpStream::connect(&endpoint.address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                Ok(Connection {
                    stream,
                    buffer: Vec::with_capacity(4096),
                    request: Vec::with_capacity(1024),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Failure::Refused),
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EMFILE | nix::libc::ENFILE)) => Err(Failure::NoSocket),
            Err(_) => Err(Failure::Reset),
        }
    }

    /// POSTs `body` and reads the answer. After a failure the connection must not be used again.
    pub async fn post(&mut self, endpoint: &Endpoint, body: &[u8]) -> Result<Answer, Failure> {
        // Bytes left over from the last answer: the server sent more than it said; the connection is out of
        // step, and what comes next cannot be trusted.
        if !self.buffer.is_empty() {
            return Err(Failure::Garbage);
        }
        endpoint.request(body, &mut self.request);
        if self.stream.write_all(&self.request).await.is_err() {
            return Err(Failure::Reset);
        }
        let (status, header_end, length) = loop {
            if let Some(parsed) = parse_head(&self.buffer)? {
                break parsed;
            }
            self.fill().await?;
        };
        let body = match length {
            Length::Fixed(n) => {
                if n > MAX_BODY {
                    return Err(Failure::Garbage);
                }
                while self.buffer.len() < header_end + n {
                    self.fill().await?;
                }
                let body = self.buffer[header_end..header_end + n].to_vec();
                self.buffer.drain(..header_end + n);
                body
            }
            Length::Chunked => self.read_chunked(header_end).await?,
        };
        Ok(Answer { status, body })
    }

    async fn fill(&mut self) -> Result<(), Failure> {
        if self.buffer.len() > MAX_BODY + 65536 {
            return Err(Failure::Garbage);
        }
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => Err(Failure::Reset),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    async fn read_chunked(&mut self, mut at: usize) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buffer[at..], b"\r\n") {
                    break at + i;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buffer[at..line_end]).map_err(|_| Failure::Garbage)?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| Failure::Garbage)?;
            if body.len() + size > MAX_BODY {
                return Err(Failure::Garbage);
            }
            let data = line_end + 2;
            while self.buffer.len() < data + size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buffer[data..data + size]);
            at = data + size + 2;
            if size == 0 {
                self.buffer.drain(..at);
                return Ok(body);
            }
        }
    }
}

#[derive(Debug)]
enum Length {
    Fixed(usize),
    Chunked,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// (status, where the body starts, its length) once the head is complete.
fn parse_head(buffer: &[u8]) -> Result<Option<(u16, usize, Length)>, Failure> {
    let Some(end) = find(buffer, b"\r\n\r\n") else {
        if buffer.len() > 65536 || (buffer.len() >= 5 && !buffer.starts_with(b"HTTP/")) {
            return Err(Failure::Garbage);
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buffer[..end]).map_err(|_| Failure::Garbage)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.") {
        return Err(Failure::Garbage);
    }
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(Failure::Garbage)?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(Length::Fixed(value.trim().parse().map_err(|_| Failure::Garbage)?));
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            length = Some(Length::Chunked);
        }
    }
    Ok(Some((status, end + 4, length.unwrap_or(Length::Fixed(0)))))
}

/// POSTs `body` on a connection from `pool` (or a new one), bounded by `timeout`; the connection goes back to
/// the pool only after a complete answer.
pub async fn post(
    endpoint: &Endpoint,
    pool: &std::cell::RefCell<Vec<Connection>>,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, Failure> {
    let call = async {
        let pooled = pool.borrow_mut().pop();
        let mut connection = match pooled {
            Some(c) => c,
            None => Connection::open(endpoint).await?,
        };
        let answer = connection.post(endpoint, body).await?;
        pool.borrow_mut().push(connection);
        Ok(answer)
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:8545").unwrap();
        assert_eq!(e.address, "127.0.0.1:8545");
        let mut out = Vec::new();
        e.request(b"{}", &mut out);
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("POST / HTTP/1.1\r\nHost: 127.0.0.1:8545\r\n"));
        assert_eq!(Endpoint::parse("http://node/rpc").unwrap().address, "node:80");
        assert!(Endpoint::parse("https://x").is_err());
        assert!(Endpoint::parse("http://u:p@x").is_err());
    }

    #[test]
    fn heads_are_parsed() {
        let (status, at, length) = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!((status, at), (200, 38));
        assert!(matches!(length, Length::Fixed(5)));
        let chunked = parse_head(b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(chunked, (500, _, Length::Chunked)));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert_eq!(parse_head(b"garbage\r\n\r\n").unwrap_err(), Failure::Garbage);
        assert_eq!(parse_head(b"SSH-2.0").unwrap_err(), Failure::Garbage);
    }

    #[tokio::test]
    async fn answers_by_length_and_chunks_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .await
                .unwrap();
        });
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let pool = std::cell::RefCell::new(Vec::new());
        let first = post(&endpoint, &pool, b"{}", Duration::from_secs(5)).await.unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, b"{}".as_slice()));
        let second = post(&endpoint, &pool, b"{}", Duration::from_secs(5)).await.unwrap();
        assert_eq!(second.body, b"abcde");
        assert_eq!(pool.borrow().len(), 1, "one connection, reused");
        let third = post(&endpoint, &pool, b"{}", Duration::from_secs(5)).await;
        assert_eq!(third.unwrap_err(), Failure::Reset, "the server closed it");

        // An answer longer than it says: the next call on that connection is garbage, not a silent skip.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}xx")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await;
        });
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let pool = std::cell::RefCell::new(Vec::new());
        let first = post(&endpoint, &pool, b"{}", Duration::from_secs(5)).await.unwrap();
        assert_eq!(first.body, b"{}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The extra bytes may arrive with the answer or after it; either way they are not taken as an answer.
        let next = post(&endpoint, &pool, b"{}", Duration::from_millis(500)).await;
        assert!(next.is_err(), "{next:?}");
    }
}
