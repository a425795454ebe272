//! A Graph API fake at the TCP level, so it can misbehave the way a real
//! network does: refuse with 5xx, answer after the client gave up, or cut a
//! 2xx short mid-body. It counts what Meta accepted per recipient (what
//! reached a person), and keeps every acceptance for the receipt player.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// How the fake treats the first attempt at each message (later attempts
/// are accepted normally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    None,
    /// 500 with Meta's "something went wrong" (131000): refused, not sent.
    Refuse5xx,
    /// Accepted, but answered only after `by` (past the worker's timeout).
    AnswerLate(Duration),
    /// Accepted, the answer's body cut off halfway and the connection closed.
    CutShort,
    /// Every answer takes this long (a slow Meta, still within the timeout).
    Slow(Duration),
}

/// A message Meta accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Our message id, as `biz_opaque_callback_data` carried it.
    pub ours: Uuid,
    pub to: String,
    pub wamid: String,
}

#[derive(Default)]
struct State {
    attempts: HashMap<Uuid, u32>,
    accepted: Vec<Accepted>,
    unplayed: Vec<Accepted>,
    refused: usize,
}

pub struct GraphFake {
    pub url: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for GraphFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GraphFake {
    pub async fn start(misbehaviour: Misbehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Graph fake");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let server = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _ = serve(stream, &state, misbehaviour).await;
                    });
                }
            }
        });
        Self { url, state, server }
    }

    /// Messages Meta accepted, per recipient (`to`, digits).
    pub fn accepted_per_recipient(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for accepted in &self.state.lock().expect("lock").accepted {
            *counts.entry(accepted.to.clone()).or_default() += 1;
        }
        counts
    }

    /// Requests refused with a 5xx (they reached nobody).
    pub fn refused(&self) -> usize {
        self.state.lock().expect("lock").refused
    }

    /// Where the receipt player takes the acceptances it has not played.
    pub fn unplayed_handle(&self) -> Unplayed {
        Unplayed(self.state.clone())
    }
}

/// The acceptances whose receipts have not been played yet.
#[derive(Clone)]
pub struct Unplayed(Arc<Mutex<State>>);

impl Unplayed {
    pub fn take(&self) -> Vec<Accepted> {
        std::mem::take(&mut self.0.lock().expect("lock").unplayed)
    }
}

async fn serve(
    mut stream: TcpStream,
    state: &Mutex<State>,
    misbehaviour: Misbehaviour,
) -> std::io::Result<()> {
    let Some(body) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let ours = request["biz_opaque_callback_data"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok())
        .unwrap_or_else(Uuid::new_v4);
    let to = request["to"]
        .as_str()
        .or(request["recipient"].as_str())
        .unwrap_or_default()
        .to_owned();
    let (first, wamid) = {
        let mut state = state.lock().expect("lock");
        let attempt = state.attempts.entry(ours).or_default();
        *attempt += 1;
        (*attempt == 1, format!("wamid.fake-{ours}-{attempt}"))
    };
    if first && misbehaviour == Misbehaviour::Refuse5xx {
        state.lock().expect("lock").refused += 1;
        let error = json!({"error": {"message": "(#131000) Something went wrong", "type": "OAuthException",
                                     "code": 131000, "fbtrace_id": "AfaultSuite"}});
        return respond(
            &mut stream,
            "500 Internal Server Error",
            &error.to_string(),
            None,
        )
        .await;
    }
    {
        let mut state = state.lock().expect("lock");
        let accepted = Accepted {
            ours,
            to: to.clone(),
            wamid: wamid.clone(),
        };
        state.accepted.push(accepted.clone());
        state.unplayed.push(accepted);
    }
    let answer = json!({"messaging_product": "whatsapp",
                        "contacts": [{"input": to, "wa_id": to}],
                        "messages": [{"id": wamid}]})
    .to_string();
    match misbehaviour {
        Misbehaviour::AnswerLate(by) if first => tokio::time::sleep(by).await,
        Misbehaviour::Slow(by) => tokio::time::sleep(by).await,
        _ => {}
    }
    let cut = (first && misbehaviour == Misbehaviour::CutShort).then_some(answer.len() / 2);
    respond(&mut stream, "200 OK", &answer, cut).await
}

/// Reads one HTTP/1.1 request; returns its body.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(buffer[header_end..].to_vec()))
}

/// Writes a response; `cut_at` writes only that much of the body, then closes.
async fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    cut_at: Option<usize>,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    let sent = cut_at.unwrap_or(body.len());
    stream.write_all(&body.as_bytes()[..sent]).await?;
    stream.flush().await?;
    stream.shutdown().await
}
