//! Smoke test against a real golang/groupcache node (tests/interop/gonode).
//! Ignored by a plain `cargo test` (it needs Go); `make test-interop` runs
//! it with GONODE naming the built binary:
//! `GONODE=$(tests/interop/build.sh target/go/bin) cargo test --release --test integration -- --ignored peers_gonode::`
//! (the full interop suite lives in tests/interop).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::big_value;
use groupcache::engine::{Error, Getter, Group, PeerError, PeerPicker, Sink};
use groupcache::peers::escape::escape;
use groupcache::peers::{Pool, PoolOptions};
use groupcache::ring::Ring;

struct Loader(Mutex<HashMap<Vec<u8>, u64>>);

impl Getter for Loader {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        *self.0.lock().unwrap().entry(key.to_vec()).or_default() += 1;
        if key.starts_with(b"big:") {
            return sink.set(&big_value(key), 0);
        }
        let mut v = b"v:".to_vec();
        v.extend_from_slice(key);
        sink.set(&v, 0)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny HTTP/1.0 request to the Go node's control server.
fn ctl(port: u16, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let i = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap();
    (status, out[i + 4..].to_vec())
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs Go: run by make test-interop"]
fn mixed_cluster_with_a_go_node() {
    let bin = std::env::var("GONODE").expect(
        "GONODE is not set: it names the gonode binary tests/interop/build.sh builds (make test-interop)",
    );
    let (peer_port, ctl_port) = (free_port(), free_port());
    let go_url = format!("http://127.0.0.1:{peer_port}");
    let mut child = Command::new(bin)
        .args([
            "-listen",
            &format!("127.0.0.1:{peer_port}"),
            "-ctl",
            &format!("127.0.0.1:{ctl_port}"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let _go = Kill(child);

    let loader = Arc::new(Loader(Mutex::default()));
    let group = Group::new("interop", 64 << 20, Some(loader.clone() as Arc<dyn Getter>));
    let pool = Pool::new("127.0.0.1:0", None, PoolOptions::default()).unwrap();
    pool.register(group.clone()).unwrap();
    let urls = vec![pool.url().to_string(), go_url.clone()];
    pool.set_peers(&urls).unwrap();
    assert_eq!(ctl(ctl_port, "POST", "/peers", &urls.join("\n")).0, 200);

    // Owners agree.
    let keys: Vec<String> = (0..2000).map(|i| format!("key-{i}")).collect();
    let (_, owners) = ctl(ctl_port, "POST", "/owners", &keys.join("\n"));
    let mut ring = Ring::new(50);
    ring.add(urls.iter().cloned());
    for (k, o) in keys.iter().zip(String::from_utf8(owners).unwrap().lines()) {
        assert_eq!(ring.get(k.as_bytes()), Some(o), "{k}");
    }

    // Tricky keys both ways, each loaded once, by its owner.
    let tricky = [
        "",
        "a b",
        "a+b",
        "a/b",
        "100%",
        "%2F",
        "é/日本",
        "?x#y",
        "big:1",
        "big:2",
        "plain",
    ];
    for k in tricky {
        let want = if k.starts_with("big:") {
            big_value(k.as_bytes())
        } else {
            format!("v:{k}").into_bytes()
        };
        assert_eq!(group.get(k.as_bytes()).unwrap(), want, "ours, key {k:?}");
        let (st, got) = ctl(ctl_port, "GET", &format!("/get?key={}", escape(k.as_bytes())), "");
        assert_eq!((st, got == want), (200, true), "go, key {k:?}");
        let ours = loader.0.lock().unwrap().get(k.as_bytes()).copied().unwrap_or(0);
        let owner_is_us = ring.get(k.as_bytes()) == Some(pool.url());
        assert_eq!(ours, u64::from(owner_is_us), "key {k:?} loads here");
    }
    let (_, loads) = ctl(ctl_port, "GET", "/loads", "");
    let loads = String::from_utf8(loads).unwrap();
    for k in tricky {
        if ring.get(k.as_bytes()) == Some(go_url.as_str()) {
            let needle = format!("{}:1", serde_like_quote(k));
            assert!(loads.contains(&needle), "go loads of {k:?}: {loads}");
        }
    }
    assert_eq!(group.stats().peer_errors, 0);

    // A batch for the Go node (which has no batch route): its POST is
    // answered 400 without our header, and the keys reach it as GETs, one
    // each (Go counts a server request per GET that reaches its group).
    let go_keys: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| format!("batch-{k}").into_bytes())
        .filter(|k| ring.get(k) == Some(go_url.as_str()))
        .take(40)
        .chain(["missing:b", "a b/c+d%", "big:b"].iter().map(|prefix| {
            (0..)
                .map(|i| format!("{prefix}{i}").into_bytes())
                .find(|k| ring.get(k) == Some(go_url.as_str()))
                .unwrap()
        }))
        .collect();
    assert_eq!(go_keys.len(), 43);
    let refs: Vec<&[u8]> = go_keys.iter().map(|k| &k[..]).collect();
    let peer = pool.pick_peer(refs[0]).expect("the Go node owns it");
    assert_eq!(peer.url(), go_url);
    let server_requests = || -> u64 {
        let (_, b) = ctl(ctl_port, "GET", "/stats", "");
        let s = String::from_utf8(b).unwrap();
        let i = s.find("\"server_requests\":").unwrap() + 18;
        s[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    for round in 0..2 {
        let before = server_requests();
        let got = peer.get_many("interop", &refs);
        for (k, r) in refs.iter().zip(&got) {
            if k.starts_with(b"missing:") {
                // Go answers its getter's error with a 500: a failure.
                assert!(
                    matches!(r, Err(PeerError::Failed(m)) if m.contains("500")),
                    "{r:?}"
                );
            } else if k.starts_with(b"big:") {
                assert_eq!(r.as_ref().unwrap().value, big_value(k), "round {round}");
            } else {
                assert_eq!(
                    r.as_ref().unwrap().value,
                    [&b"v:"[..], k].concat(),
                    "round {round}"
                );
            }
        }
        assert_eq!(
            server_requests() - before,
            refs.len() as u64,
            "round {round}: one GET per key"
        );
    }
}

/// JSON string as Go's encoding/json writes it, for the keys above.
fn serde_like_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
