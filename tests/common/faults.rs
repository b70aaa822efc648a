//! Faults for the peer code: raw HTTP exchanges, hostile peers and a
//! fault-injecting loopback proxy.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{spawn_named, Rng};

// ---------------------------------------------------------------- raw HTTP

/// Sends `req` on a new connection and reads until the server closes or
/// `wait` passes. Returns every byte received.
pub fn raw_exchange(addr: SocketAddr, req: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    // The server may close before reading everything (e.g. an oversized
    // head): a failed write is then fine, the answer is what counts.
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let end = Instant::now() + wait;
    let mut buf = [0u8; 16384];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// Status codes of every response found in `bytes`, in order.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut rest: &str = &text;
    while let Some(i) = rest.find("HTTP/1.1 ") {
        let after = &rest[i + 9..];
        if let Some(code) = after.get(..3).and_then(|c| c.parse().ok()) {
            out.push(code);
        }
        rest = after;
    }
    out
}

// ---------------------------------------------------------------- bad peers

/// A listener serving each connection with `serve` on its own thread, until
/// `stop`. Connections are kept in a list so `stop` can shut them.
pub struct BadPeer {
    pub url: String,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
    pub accepted: Arc<AtomicU64>,
}

impl BadPeer {
    pub fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> BadPeer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let serve = Arc::new(serve);
        let (st, cs, acc) = (stop.clone(), conns.clone(), accepted.clone());
        let accept = spawn_named("badpeer", move || {
            let mut workers = Vec::new();
            while !st.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        s.set_nonblocking(false).unwrap();
                        cs.lock().unwrap().push(s.try_clone().unwrap());
                        let serve = serve.clone();
                        let closer = s.try_clone().unwrap();
                        workers.push(spawn_named("badconn", move || {
                            serve(s);
                            // The list above holds a clone: close for real.
                            let _ = closer.shutdown(Shutdown::Both);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for s in cs.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            for w in workers {
                let _ = w.join();
            }
        });
        BadPeer {
            url,
            stop,
            conns,
            accept: Some(accept),
            accepted,
        }
    }

    /// Accepts and never answers (reads and discards until closed).
    pub fn silent() -> BadPeer {
        BadPeer::start(|mut s| {
            let mut buf = [0u8; 4096];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        })
    }

    /// Reads a request head, writes `reply`, then closes (or holds the
    /// connection open, if `hold`).
    pub fn replying(reply: &'static [u8], hold: bool) -> BadPeer {
        BadPeer::start(move |mut s| {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(reply);
            if hold {
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }
        })
    }

    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Release);
        for s in self.conns.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

impl Drop for BadPeer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

// ---------------------------------------------------------------- proxy

/// What the proxy does to each connection.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Added before forwarding each chunk, uniformly in [min, max] ms.
    pub delay_ms: (u64, u64),
    /// Per chunk of an answer: forwards a random prefix of it, then closes
    /// both sides (a lost link).
    pub p_cut: f64,
    /// Per chunk of an answer: forwards nothing more on that connection (a
    /// black hole), until the proxy stops.
    pub p_stall: f64,
    /// Per connection: refuses at once (closed without forwarding).
    pub p_refuse: f64,
}

#[derive(Default, Debug)]
pub struct ProxyCounts {
    pub conns: AtomicU64,
    pub cut: AtomicU64,
    pub stalled: AtomicU64,
    pub refused: AtomicU64,
}

/// A loopback TCP proxy in front of `target` that injects [`Faults`].
pub struct Proxy {
    pub url: String,
    pub counts: Arc<ProxyCounts>,
    inner: BadPeer,
}

impl Proxy {
    pub fn start(target: SocketAddr, faults: Faults, seed: u64) -> Proxy {
        let counts = Arc::new(ProxyCounts::default());
        let rng = Arc::new(Mutex::new(Rng::new(seed)));
        let c = counts.clone();
        let inner = BadPeer::start(move |client| {
            c.conns.fetch_add(1, Ordering::SeqCst);
            let (refuse, mut r) = {
                let mut g = rng.lock().unwrap();
                let r = Rng::new(g.next());
                (g.chance(faults.p_refuse), r)
            };
            if refuse {
                c.refused.fetch_add(1, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            let Ok(server) = TcpStream::connect(target) else {
                return;
            };
            let _ = server.set_nodelay(true);
            let _ = client.set_nodelay(true);
            let (c2s_from, c2s_to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let mut r2 = Rng::new(r.next());
            let up = spawn_named("proxy-up", move || {
                pump(c2s_from, c2s_to, faults.delay_ms, &mut r2, None)
            });
            pump(server, client, faults.delay_ms, &mut r, Some((faults, c.clone())));
            let _ = up.join();
        });
        Proxy {
            url: inner.url.clone(),
            counts,
            inner,
        }
    }

    pub fn stop(self) {
        self.inner.stop();
    }
}

/// Copies `from` to `to` with delays. With `faults` (the answers'
/// direction), each chunk may be cut (a random prefix forwarded, then both
/// sides closed: a lost link) or start a black hole (nothing forwarded any
/// more, until the proxy stops).
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: (u64, u64),
    rng: &mut Rng,
    faults: Option<(Faults, Arc<ProxyCounts>)>,
) {
    let mut buf = [0u8; 8192];
    let mut hole = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hole {
            continue;
        }
        let d = delay.0 + rng.below(delay.1.saturating_sub(delay.0) + 1);
        if d > 0 {
            std::thread::sleep(Duration::from_millis(d));
        }
        if let Some((f, c)) = &faults {
            if rng.chance(f.p_stall) {
                c.stalled.fetch_add(1, Ordering::SeqCst);
                hole = true;
                continue;
            }
            if rng.chance(f.p_cut) {
                c.cut.fetch_add(1, Ordering::SeqCst);
                let keep = rng.below(n as u64) as usize;
                let _ = to.write_all(&buf[..keep]);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
