//! A scripted HTTP server on 127.0.0.1 for tests of HTTP clients (the
//! dashboard page in a browser, `weft status`): each request gets the
//! [`Reply`] a handler picks from its path and how many times that path
//! was asked for. Stops (and releases held connections) when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server does with one request.
pub enum Reply {
    /// Writes these bytes, then closes the connection.
    Raw(Vec<u8>),
    /// Closes the connection without answering.
    Close,
    /// Keeps the connection open without answering until the server stops.
    Silent,
}

/// `HTTP/1.1 STATUS` with a `Content-Length` body and `Connection: close`.
pub fn response(status: &str, content_type: &str, body: &[u8]) -> Reply {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    Reply::Raw(r)
}

/// `HTTP/1.1 200 OK` with a chunked body cut into `chunk`-byte pieces.
pub fn chunked(content_type: &str, body: &[u8], chunk: usize) -> Reply {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(chunk.max(1)) {
        r.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        r.extend_from_slice(piece);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    Reply::Raw(r)
}

type Handler = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// A running fake server.
pub struct FakeServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts serving; `handler(path, n)` answers the `n`-th (from 0)
    /// request for `path` (query string included).
    pub fn start(handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind fake server");
        let port = listener.local_addr().expect("local addr").port();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (hits, stop) = (hits.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (hits, stop, handler) = (hits.clone(), stop.clone(), handler.clone());
                    std::thread::spawn(move || serve(conn, &hits, &stop, &*handler));
                }
            })
        };
        FakeServer {
            port,
            hits,
            stop,
            accept: Some(accept),
        }
    }

    /// How many requests for `path` arrived so far.
    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head and answers it.
fn serve(mut conn: TcpStream, hits: &Mutex<HashMap<String, usize>>, stop: &AtomicBool, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if stop.load(Ordering::Acquire) || Instant::now() > deadline || head.len() > 64 * 1024 {
            return;
        }
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
    let n = {
        let mut hits = hits.lock().unwrap_or_else(|p| p.into_inner());
        let count = hits.entry(path.clone()).or_default();
        *count += 1;
        *count - 1
    };
    match handler(&path, n) {
        Reply::Raw(bytes) => {
            let _ = conn.write_all(&bytes);
            let _ = conn.flush();
        }
        Reply::Close => {}
        Reply::Silent => {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
