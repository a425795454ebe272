//! Counts SQL round trips: a TCP proxy between our pools (worker and API)
//! and Postgres that forwards bytes both ways unchanged and reads the
//! frontend (client → server) protocol stream as it passes.
//!
//! A round trip is a message after which the client waits for the server:
//! every `Sync` (`S`, the end of an extended-protocol exchange) and every
//! simple `Query` (`Q`). A `Sync` with no message before it since the last
//! round trip is counted apart as a ping (sqlx's test-before-acquire): it is
//! a real round trip, but one the pool makes, not a query.
//!
//! The stream must be plain text: connect through the proxy with
//! `sslmode=disable` ([`PgCounter::url`] adds it). The proxy runs on one
//! thread of its own, named [`THREAD_NAME`], so that the CPU it burns can be
//! told apart from ours.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy thread's name (as /proc shows it in `task/*/comm`).
pub const THREAD_NAME: &str = "pg-counter";

/// Round trips seen so far (or between two readings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundTrips {
    /// Every `Sync` and simple `Query`, pings included.
    pub total: u64,
    /// Of which lone `Sync`s: the pool checking a connection.
    pub pings: u64,
}

impl std::ops::Sub for RoundTrips {
    type Output = RoundTrips;
    fn sub(self, earlier: RoundTrips) -> RoundTrips {
        RoundTrips {
            total: self.total.saturating_sub(earlier.total),
            pings: self.pings.saturating_sub(earlier.pings),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: AtomicU64,
    pings: AtomicU64,
}

/// A running counting proxy.
#[derive(Debug, Clone)]
pub struct PgCounter {
    listen: SocketAddr,
    counts: Arc<Counts>,
}

impl PgCounter {
    /// Starts the proxy on a free local port, forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the SQL counter")?;
        listener.set_nonblocking(true)?;
        let listen = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the SQL counter's runtime")?;
        std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return eprintln!("SQL counter: {e}"),
                    };
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            // Out of descriptors, most likely: let some close.
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        };
                        tokio::spawn(forward(client, upstream, shared.clone()));
                    }
                });
            })
            .context("starting the SQL counter's thread")?;
        Ok(Self { listen, counts })
    }

    /// `database_url` with its host and port replaced by the proxy's, and
    /// TLS off (an encrypted stream cannot be read).
    pub fn url(&self, database_url: &str) -> anyhow::Result<String> {
        let (scheme, rest) = database_url
            .split_once("://")
            .context("the database URL has no scheme")?;
        let (authority, path) = rest
            .split_once('/')
            .context("the database URL has no path")?;
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        let separator = if path.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{scheme}://{user}{}/{path}{separator}sslmode=disable",
            self.listen
        ))
    }

    /// The round trips counted since the proxy started.
    pub fn read(&self) -> RoundTrips {
        RoundTrips {
            total: self.counts.total.load(Ordering::Relaxed),
            pings: self.counts.pings.load(Ordering::Relaxed),
        }
    }
}

/// `host:port` of a Postgres URL (the proxy's upstream).
pub fn upstream_of(database_url: &str) -> anyhow::Result<SocketAddr> {
    let rest = database_url
        .split_once("://")
        .map(|(_, rest)| rest)
        .context("the database URL has no scheme")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {host_port}"))?
        .next()
        .with_context(|| format!("{host_port} resolves to nothing"))
}

async fn forward(client: TcpStream, upstream: SocketAddr, counts: Arc<Counts>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Without these, Nagle's algorithm and delayed ACKs add tens of ms per
    // small message: the proxy would measure itself.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let to_server = async {
        let mut stream = FrontendStream::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_in.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let seen = stream.feed(&buf[..n]);
            counts.total.fetch_add(seen.total, Ordering::Relaxed);
            counts.pings.fetch_add(seen.pings, Ordering::Relaxed);
            if server_out.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_out.shutdown().await;
    };
    let to_client = async {
        let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
        let _ = client_out.shutdown().await;
    };
    tokio::join!(to_server, to_client);
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// Where the reader is in the client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Untyped startup packets: length (4 bytes, itself included), code.
    Startup,
    /// Typed messages: type byte, length (4 bytes, itself included).
    Messages,
    /// A length that cannot be: stop reading, keep forwarding.
    Lost,
}

/// An incremental reader of the frontend protocol that counts round trips.
#[derive(Debug)]
struct FrontendStream {
    phase: Phase,
    header: [u8; 8],
    header_len: usize,
    /// Body bytes of the current message still to skip.
    remaining: usize,
    /// Messages since the last round trip (zero before a `Sync` = a ping).
    pending: u64,
}

impl Default for FrontendStream {
    fn default() -> Self {
        Self {
            phase: Phase::Startup,
            header: [0; 8],
            header_len: 0,
            remaining: 0,
            pending: 0,
        }
    }
}

impl FrontendStream {
    fn header_size(&self) -> usize {
        match self.phase {
            Phase::Startup => 8,
            _ => 5,
        }
    }

    /// Reads the next bytes; returns the round trips they complete.
    fn feed(&mut self, mut bytes: &[u8]) -> RoundTrips {
        let mut seen = RoundTrips::default();
        while !bytes.is_empty() && self.phase != Phase::Lost {
            if self.remaining > 0 {
                let skip = self.remaining.min(bytes.len());
                self.remaining -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            let want = self.header_size() - self.header_len;
            let take = want.min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == self.header_size() {
                self.header_len = 0;
                self.on_header(&mut seen);
            }
        }
        seen
    }

    fn on_header(&mut self, seen: &mut RoundTrips) {
        let h = self.header;
        match self.phase {
            Phase::Startup => {
                let length = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let code = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                let Some(rest) = length.checked_sub(8) else {
                    self.phase = Phase::Lost;
                    return;
                };
                self.remaining = rest;
                // After an SSL or GSSAPI request (refused, with sslmode=disable
                // never sent) the real startup packet follows.
                if code != SSL_REQUEST && code != GSSENC_REQUEST {
                    self.phase = Phase::Messages;
                }
            }
            Phase::Messages => {
                let length = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
                let Some(rest) = length.checked_sub(4) else {
                    self.phase = Phase::Lost;
                    return;
                };
                self.remaining = rest;
                match h[0] {
                    b'S' => {
                        seen.total += 1;
                        if self.pending == 0 {
                            seen.pings += 1;
                        }
                        self.pending = 0;
                    }
                    b'Q' => {
                        seen.total += 1;
                        self.pending = 0;
                    }
                    _ => self.pending += 1,
                }
            }
            Phase::Lost => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&u32::try_from(body.len() + 4).unwrap_or(0).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup(code: u32, body: &[u8]) -> Vec<u8> {
        let mut m = u32::try_from(body.len() + 8)
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn counts_syncs_and_queries_however_the_bytes_are_cut() {
        let mut wire = startup(SSL_REQUEST, b"");
        wire.extend(startup(196_608, b"user\0postgres\0\0"));
        wire.extend(message(b'p', b"password\0"));
        wire.extend(message(b'Q', b"begin\0"));
        wire.extend(message(b'P', b"\0select 1\0\0\0"));
        wire.extend(message(b'B', &[0; 12]));
        wire.extend(message(b'E', &[0; 5]));
        wire.extend(message(b'S', b""));
        wire.extend(message(b'S', b""));
        wire.extend(message(b'X', b""));
        let expected = RoundTrips { total: 3, pings: 1 };
        for chunk in [1, 3, 7, wire.len()] {
            let mut stream = FrontendStream::default();
            let mut seen = RoundTrips::default();
            for piece in wire.chunks(chunk) {
                let more = stream.feed(piece);
                seen.total += more.total;
                seen.pings += more.pings;
            }
            assert_eq!(seen, expected, "in chunks of {chunk}");
        }
    }

    #[test]
    fn points_a_url_at_the_proxy_without_tls() {
        let counter = PgCounter {
            listen: "127.0.0.1:6000".parse().expect("address"),
            counts: Arc::default(),
        };
        assert_eq!(
            counter
                .url("postgres://postgres@127.0.0.1:5432/busflow_bench")
                .expect("url"),
            "postgres://postgres@127.0.0.1:6000/busflow_bench?sslmode=disable"
        );
        assert_eq!(
            upstream_of("postgres://u:p@127.0.0.1/x?a=b").expect("upstream"),
            "127.0.0.1:5432".parse().expect("address")
        );
    }
}
