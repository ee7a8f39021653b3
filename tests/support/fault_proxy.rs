//! A fault-injecting TCP proxy for the reliability tests: listens on 127.0.0.1:0, forwards to
//! one target, and misbehaves on demand.
//!
//! - [`Mode`] (switchable at run time) applies to every connection: pass-through, refuse
//!   (accepted then reset at once: "server down"; existing connections are reset too), reset
//!   each request, stall (accept and read, never answer), slow (delay + throttled response).
//! - [`HttpFault`]s are one-shot: each applies to the next POST (bundles, token requests) while
//!   the mode is pass-through or slow: an injected status (5xx, 429 + Retry-After, 401), a reset
//!   before forwarding, a reset after the server processed the request (reply lost), a stall.
//!
//! It parses just enough HTTP/1.1 to see request boundaries (Content-Length bodies; no
//! pipelining — hyper never pipelines) and response framing (Content-Length, chunked, or to
//! EOF), so every request is logged, not only connections. Every [`Event`] carries a monotonic
//! timestamp (from the proxy's start), from which the tests measure backoff and Retry-After.
//!
//! The proxy runs on its own current-thread Tokio runtime in a thread, so sync and async tests
//! can use it alike; dropping it stops the thread's tasks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What every connection suffers (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PassThrough,
    /// Accept, then reset at once ("server down"); idle kept-alive connections are reset too.
    Refuse,
    /// Read each request's head, then reset.
    Reset,
    /// Accept and read requests, never answer (the client's timeout fires).
    Stall,
    /// Wait `delay` before forwarding, then send the response at `bytes_per_second`.
    Slow {
        delay: Duration,
        bytes_per_second: u64,
    },
}

/// A one-shot fault for the next POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFault {
    /// Answer this status without forwarding, with an optional `Retry-After` value.
    Status {
        status: u16,
        retry_after: Option<String>,
        /// Extra response headers, e.g. `("www-authenticate", "Bearer error=\"invalid_token\"")`.
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Reset before forwarding.
    Reset,
    /// Forward, let the server process it, then reset instead of relaying the reply.
    ProcessThenReset,
    /// Never answer.
    Stall,
}

impl HttpFault {
    pub fn status(status: u16) -> Self {
        HttpFault::Status {
            status,
            retry_after: None,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn retry_after(status: u16, seconds: u64) -> Self {
        HttpFault::Status {
            status,
            retry_after: Some(seconds.to_string()),
            headers: Vec::new(),
            body: String::new(),
        }
    }
}

/// What happened to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forwarded,
    /// Forwarded under [`Mode::Slow`].
    Slowed,
    /// Answered by the proxy with this status.
    Injected(u16),
    Reset,
    /// Forwarded and processed; the reply was replaced by a reset.
    ProcessedThenReset,
    Stalled,
    /// The target could not be reached: reset.
    TargetUnreachable,
}

/// One logged thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A connection was accepted (and served).
    Connected,
    /// A connection was accepted and reset at once ([`Mode::Refuse`]).
    Refused,
    /// A request arrived (logged when its head is read) and what the proxy did with it.
    Request {
        method: String,
        path: String,
        action: Action,
    },
    /// A response went back (forwarded or injected): its status and Retry-After.
    Response {
        status: u16,
        retry_after: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Monotonic time since the proxy started.
    pub at: Duration,
    pub conn: u64,
    pub what: What,
}

impl Event {
    /// An attempt the client made: a refused connection or a request.
    pub fn is_attempt(&self) -> bool {
        matches!(self.what, What::Refused | What::Request { .. })
    }
}

struct Shared {
    start: Instant,
    events: Mutex<Vec<Event>>,
    faults: Mutex<VecDeque<HttpFault>>,
    mode: watch::Sender<Mode>,
    target: SocketAddr,
}

impl Shared {
    fn log(&self, conn: u64, what: What) {
        let at = self.start.elapsed();
        self.events
            .lock()
            .expect("proxy log lock")
            .push(Event { at, conn, what });
    }
}

/// A running proxy; stopped on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a pass-through proxy to `target`.
    pub fn start(target: SocketAddr) -> Self {
        Self::start_at(target, Instant::now())
    }

    /// Like [`FaultProxy::start`], with event times counted from `epoch` (several proxies
    /// sharing one epoch have comparable logs).
    pub fn start_at(target: SocketAddr, epoch: Instant) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            start: epoch,
            events: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            mode: watch::Sender::new(Mode::PassThrough),
            target,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, serving) => {}
                    }
                });
                // Dropping the runtime drops every connection task (and its sockets).
            })
            .expect("spawn proxy thread");
        Self {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Queues one-shot faults for the next POSTs, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = HttpFault>) {
        self.shared
            .faults
            .lock()
            .expect("faults lock")
            .extend(faults);
    }

    /// One-shot faults not yet applied.
    pub fn pending_faults(&self) -> usize {
        self.shared.faults.lock().expect("faults lock").len()
    }

    /// Monotonic time since the proxy started (the events' time base).
    pub fn now(&self) -> Duration {
        self.shared.start.elapsed()
    }

    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().expect("proxy log lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_conn = 0u64;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        next_conn += 1;
        let conn = next_conn;
        if *shared.mode.borrow() == Mode::Refuse {
            shared.log(conn, What::Refused);
            reset(client);
            continue;
        }
        shared.log(conn, What::Connected);
        tokio::spawn(serve(client, conn, shared.clone()));
    }
}

/// Closes with RST (SO_LINGER 0), as a crashed or firewalled server would.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parsed message head.
struct Head {
    /// Bytes of the head, `\r\n\r\n` included.
    len: usize,
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(buf: &[u8]) -> Option<Head> {
        let end = find(buf, b"\r\n\r\n")?;
        let text = String::from_utf8_lossy(&buf[..end]);
        let mut lines = text.split("\r\n");
        let first_line = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Head {
            len: end + 4,
            first_line,
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.parse().ok()
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// Reads until `buf` holds a whole head; `None` on EOF/error before one.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Head> {
    loop {
        if let Some(head) = Head::parse(buf) {
            return Some(head);
        }
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// Reads until `buf` holds at least `n` bytes.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<()> {
    while buf.len() < n {
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
    Some(())
}

/// Waits for the client to go away (stall: never answer).
async fn stall(mut client: TcpStream) {
    let mut sink = vec![0u8; 4096];
    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
}

async fn serve(mut client: TcpStream, conn: u64, shared: Arc<Shared>) {
    let mut mode_rx = shared.mode.subscribe();
    let mut buf = Vec::new();
    let mut upstream: Option<TcpStream> = None;
    loop {
        // Wait for the next request; a switch to Refuse/Reset while idle resets the connection
        // (a server going down takes its kept-alive connections with it).
        let head = loop {
            if let Some(head) = Head::parse(&buf) {
                break head;
            }
            tokio::select! {
                read = client.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                changed = mode_rx.changed() => {
                    if changed.is_err() { return; }
                    if matches!(*mode_rx.borrow_and_update(), Mode::Refuse | Mode::Reset) {
                        reset(client);
                        return;
                    }
                }
            }
        };
        let mut parts = head.first_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        if head.chunked() {
            // hyper sends Content-Length for the bodies the gateway builds; anything else is
            // not something this proxy understands.
            reset(client);
            return;
        }
        let total = head.len + head.content_length().unwrap_or(0);
        if fill(&mut client, &mut buf, total).await.is_none() {
            return;
        }
        let request: Vec<u8> = buf.drain(..total).collect();
        let log = |action: Action| {
            shared.log(
                conn,
                What::Request {
                    method: method.clone(),
                    path: path.clone(),
                    action,
                },
            )
        };
        let mode = *mode_rx.borrow_and_update();
        let fault = match mode {
            Mode::Refuse | Mode::Reset => {
                log(Action::Reset);
                reset(client);
                return;
            }
            Mode::Stall => {
                log(Action::Stalled);
                stall(client).await;
                return;
            }
            Mode::PassThrough | Mode::Slow { .. } if method == "POST" => {
                shared.faults.lock().expect("faults lock").pop_front()
            }
            _ => None,
        };
        let slow = match mode {
            Mode::Slow {
                delay,
                bytes_per_second,
            } => Some((delay, bytes_per_second)),
            _ => None,
        };
        let mut process_then_reset = false;
        match fault {
            Some(HttpFault::Status {
                status,
                retry_after,
                headers,
                body,
            }) => {
                log(Action::Injected(status));
                let mut response = format!(
                    "HTTP/1.1 {status} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                if let Some(ra) = &retry_after {
                    response.push_str(&format!("retry-after: {ra}\r\n"));
                }
                for (k, v) in &headers {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                if client.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                shared.log(
                    conn,
                    What::Response {
                        status,
                        retry_after,
                    },
                );
                continue;
            }
            Some(HttpFault::Reset) => {
                log(Action::Reset);
                reset(client);
                return;
            }
            Some(HttpFault::Stall) => {
                log(Action::Stalled);
                stall(client).await;
                return;
            }
            Some(HttpFault::ProcessThenReset) => {
                log(Action::ProcessedThenReset);
                process_then_reset = true;
            }
            None if slow.is_some() => log(Action::Slowed),
            None => log(Action::Forwarded),
        }
        if let Some((delay, _)) = slow {
            tokio::time::sleep(delay).await;
        }
        let Some(response) = forward(&mut upstream, shared.target, &request).await else {
            shared.log(
                conn,
                What::Request {
                    method: method.clone(),
                    path: path.clone(),
                    action: Action::TargetUnreachable,
                },
            );
            reset(client);
            return;
        };
        if process_then_reset {
            reset(client);
            return;
        }
        let written = match slow {
            Some((_, bps)) => write_throttled(&mut client, &response.bytes, bps).await,
            None => client.write_all(&response.bytes).await.is_ok(),
        };
        if !written {
            return;
        }
        shared.log(
            conn,
            What::Response {
                status: response.status,
                retry_after: response.retry_after,
            },
        );
        if response.close {
            return;
        }
    }
}

struct Response {
    bytes: Vec<u8>,
    status: u16,
    retry_after: Option<String>,
    /// The server closes the connection after it.
    close: bool,
}

/// Sends `request` on the connection to the target (opened if needed) and reads one whole
/// response. `None` when the target is unreachable or hangs up mid-response.
async fn forward(
    upstream: &mut Option<TcpStream>,
    target: SocketAddr,
    request: &[u8],
) -> Option<Response> {
    // A kept-alive connection the target closed meanwhile (Node closes idle ones after 5 s)
    // fails before any reply: then once more on a fresh connection.
    if let Some(stream) = upstream.as_mut() {
        if let Some(response) = exchange(stream, request).await {
            if response.close {
                *upstream = None;
            }
            return Some(response);
        }
        *upstream = None;
    }
    let mut stream = TcpStream::connect(target).await.ok()?;
    let response = exchange(&mut stream, request).await?;
    if !response.close {
        *upstream = Some(stream);
    }
    Some(response)
}

async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Option<Response> {
    stream.write_all(request).await.ok()?;
    let mut buf = Vec::new();
    let head = read_head(stream, &mut buf).await?;
    let status: u16 = head.first_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut close = head
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if head.chunked() {
        let mut pos = head.len;
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    break pos + i;
                }
                let want = buf.len() + 1;
                fill(stream, &mut buf, want).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers (normally none) up to an empty line.
                loop {
                    let want = pos + 2;
                    fill(stream, &mut buf, want).await?;
                    if &buf[pos..pos + 2] == b"\r\n" {
                        pos += 2;
                        break;
                    }
                    let end = loop {
                        if let Some(i) = find(&buf[pos..], b"\r\n") {
                            break pos + i;
                        }
                        let want = buf.len() + 1;
                        fill(stream, &mut buf, want).await?;
                    };
                    pos = end + 2;
                }
                buf.truncate(pos);
                break;
            }
            pos += size + 2;
            fill(stream, &mut buf, pos).await?;
        }
    } else if let Some(length) = head.content_length() {
        fill(stream, &mut buf, head.len + length).await?;
        buf.truncate(head.len + length);
    } else if !(status < 200 || status == 204 || status == 304) {
        // Delimited by EOF.
        while stream.read_buf(&mut buf).await.ok()? > 0 {}
        close = true;
    }
    Some(Response {
        status,
        retry_after: head.header("retry-after").map(str::to_owned),
        close,
        bytes: buf,
    })
}

async fn write_throttled(client: &mut TcpStream, bytes: &[u8], bytes_per_second: u64) -> bool {
    let chunk = (bytes_per_second / 10).max(1) as usize;
    for piece in bytes.chunks(chunk) {
        if client.write_all(piece).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// The attempts (refused connections and requests) in `events`, with their times.
pub fn attempts(events: &[Event]) -> Vec<&Event> {
    events.iter().filter(|e| e.is_attempt()).collect()
}
