//! TLS between nodes: https clusters, mutual TLS, refused certificates,
//! rotation of the files in place, and the handshake under the server's
//! connection limits. Certificates are made at test time by
//! tests/tls/make-certs.sh (the openssl CLI).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::common::faults::raw_exchange;
use crate::common::*;
use groupcache::peers::{Pool, PoolError, PoolOptions};
use sha2::{Digest, Sha256};

/// The test PKI (see make-certs.sh), made once per test process.
fn pki() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("groupcache-tls-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/make-certs.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(&dir)
            .output()
            .expect("running make-certs.sh");
        assert!(
            out.status.success(),
            "make-certs.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn pem(name: &str) -> PathBuf {
    pki().join(name)
}

/// Options with TLS from `cert`/`key` (names in the PKI) and, if given, the CA.
fn tls_opts(cert: &str, key: &str, ca: Option<&str>) -> PoolOptions {
    PoolOptions {
        tls_cert: Some(pem(cert)),
        tls_key: Some(pem(key)),
        tls_ca: ca.map(pem),
        ..opts(2000)
    }
}

fn mtls() -> PoolOptions {
    tls_opts("node.pem", "node.key", Some("ca.pem"))
}

/// SHA-256 (hex) of the first certificate of a PEM file.
fn fingerprint_of(file: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_file_iter(file)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    hex(&Sha256::digest(der.as_ref()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a TLS client saw: the server's certificate (SHA-256) and every byte
/// it answered to one GET, or why it failed.
struct Probe {
    server_cert: Option<String>,
    answer: Result<Vec<u8>, String>,
}

impl Probe {
    fn http_status(&self) -> Option<u16> {
        let a = self.answer.as_ref().ok()?;
        let text = String::from_utf8_lossy(a);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

/// Connects to `addr` with rustls, trusting `ca`, presenting `client`
/// (cert, key) if given; sends one GET and reads the answer to its end.
fn probe(addr: SocketAddr, ca: &str, client: Option<(&str, &str)>) -> Probe {
    probe_with(
        addr,
        ca,
        client,
        b"GET /_groupcache/g/probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
}

/// A rustls client configuration trusting `ca`, presenting `client` (cert,
/// key) if given.
fn client_config(ca: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pem(ca)).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(pem(cert))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(pem(key)).unwrap())
                .unwrap()
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// [`probe`] with `request` (bytes as sent) in place of the GET.
fn probe_with(addr: SocketAddr, ca: &str, client: Option<(&str, &str)>, request: &[u8]) -> Probe {
    use rustls::pki_types::ServerName;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(client_config(ca, client), name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut answer = Vec::new();
    let r = tls.write_all(request).and_then(|_| tls.read_to_end(&mut answer));
    let server_cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| hex(&Sha256::digest(c.as_ref())));
    Probe {
        server_cert,
        answer: match r {
            Ok(_) if !answer.is_empty() => Ok(answer),
            Ok(_) => Err("closed without an answer".to_string()),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Sends a plain-http GET and returns what came back (within 2 s).
fn plain_get(addr: SocketAddr) -> Vec<u8> {
    raw_exchange(
        addr,
        b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
}

#[test]
fn cluster_over_https_with_mutual_tls_and_a_secret() {
    let o = PoolOptions {
        secret: Some("s3cret".into()),
        ..mtls()
    };
    let (nodes, urls) = cluster(3, o);
    assert!(
        urls.iter().all(|u| u.starts_with("https://127.0.0.1:")),
        "{urls:?}"
    );
    let keys: Vec<Vec<u8>> = (0..60).map(|i| format!("key-{i}").into_bytes()).collect();
    for (i, n) in nodes.iter().enumerate() {
        for k in keys.iter().skip(i) {
            assert_eq!(n.group.get(k).unwrap(), value_for(1, k));
        }
    }
    for k in &keys {
        let total: u64 = nodes.iter().map(|n| n.loads(k)).sum();
        assert_eq!(total, 1, "{:?} loaded {total} times", String::from_utf8_lossy(k));
        assert_eq!(nodes[owner_of(&urls, k)].loads(k), 1);
    }
    // Server side: every node answered peers, and its port speaks only TLS
    // (a plain request gets no HTTP answer), so those answers went over it.
    for n in &nodes {
        let s = n.group.stats();
        assert!(s.server_requests > 0 && s.peer_errors == 0, "{s:?}");
        let plain = plain_get(n.addr());
        assert!(
            !plain.starts_with(b"HTTP/"),
            "{:?}",
            String::from_utf8_lossy(&plain)
        );
    }
    // The node presents its certificate; with the right client certificate
    // the request reaches HTTP (401: unsigned, the secret is on too).
    let p = probe(nodes[0].addr(), "ca.pem", Some(("node2.pem", "node2.key")));
    assert_eq!(p.server_cert.as_deref(), Some(&*fingerprint_of(&pem("node.pem"))));
    assert_eq!(p.http_status(), Some(401), "{:?}", p.answer);
    // PUT and DELETE travel too (set: to the owner).
    let k = &keys[0];
    nodes[1].group.set(k, b"new", 0).unwrap();
    assert_eq!(nodes[owner_of(&urls, k)].group.get(k).unwrap(), &b"new"[..]);
    for n in nodes {
        n.shut();
    }
}

#[test]
fn clients_without_an_accepted_certificate_are_refused() {
    let node = Node::new(mtls());
    node.group.set(b"probe", b"v", 0).unwrap();
    let addr = node.addr();
    // The control: a certificate from the CA gets an HTTP answer.
    let ok = probe(addr, "ca.pem", Some(("node2.pem", "node2.key")));
    assert_eq!(ok.http_status(), Some(200), "{:?}", ok.answer);
    for (what, client) in [
        ("a certificate from another CA", Some(("other.pem", "other.key"))),
        ("an expired certificate", Some(("expired.pem", "expired.key"))),
    ] {
        let p = probe(addr, "ca.pem", client);
        assert!(p.answer.is_err(), "{what}: answered {:?}", p.answer);
    }
    // No certificate: the handshake is let through (readiness probes), the
    // request is not (see the tests below).
    let p = probe(addr, "ca.pem", None);
    assert_eq!(p.http_status(), Some(403), "{:?}", p.answer);
    assert_eq!(node.loads(b"probe"), 0);
    // Plain http to an https node: no HTTP answer.
    let plain = plain_get(addr);
    assert!(
        !plain.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&plain)
    );
    // The same through a pool: a node with a certificate of another CA
    // cannot fetch from it (its get loads locally, the owner never loads).
    for (cert, key) in [("other.pem", "other.key"), ("expired.pem", "expired.key")] {
        let stranger = Node::new(tls_opts(cert, key, Some("ca.pem")));
        let urls = vec![node.pool.url().to_string(), stranger.pool.url().to_string()];
        stranger.pool.set_peers(&urls).unwrap();
        let k = keys_owned_by(&urls, 0, 1, &format!("{cert}-"))[0].clone();
        let before = node.group.stats().server_requests;
        assert_eq!(stranger.group.get(&k).unwrap(), value_for(1, &k));
        assert_eq!(node.loads(&k), 0, "{cert}");
        assert_eq!(node.group.stats().server_requests, before, "{cert}");
        assert!(stranger.group.stats().peer_errors > 0, "{cert}");
        stranger.shut();
    }
    node.shut();
}

#[test]
fn servers_without_an_accepted_certificate_are_refused() {
    // The client checks the server: expired, another CA's, or a name other
    // than the URL's host. The caller loads locally; the server never loads.
    for (cert, key) in [
        ("expired.pem", "expired.key"),
        ("other.pem", "other.key"),
        ("wrongname.pem", "wrongname.key"),
    ] {
        // The bad server accepts clients of both CAs: the refusal is the
        // client's alone.
        let server = Node::new(tls_opts(cert, key, Some("both-ca.pem")));
        let client = Node::new(mtls());
        let urls = vec![server.pool.url().to_string(), client.pool.url().to_string()];
        client.pool.set_peers(&urls).unwrap();
        let k = keys_owned_by(&urls, 0, 1, &format!("{cert}-"))[0].clone();
        assert_eq!(client.group.get(&k).unwrap(), value_for(1, &k));
        assert_eq!(server.loads(&k), 0, "{cert}");
        assert_eq!(server.group.stats().server_requests, 0, "{cert}");
        assert!(client.group.stats().peer_errors > 0, "{cert}");
        server.shut();
        client.shut();
    }
    // The control: the same with the good certificate reaches the owner.
    let server = Node::new(mtls());
    let client = Node::new(mtls());
    let urls = link([&*server.pool, &*client.pool]);
    let k = keys_owned_by(&urls, 0, 1, "good-")[0].clone();
    assert_eq!(client.group.get(&k).unwrap(), value_for(1, &k));
    assert_eq!(server.loads(&k), 1);
    assert_eq!(client.loads(&k), 0);
    server.shut();
    client.shut();
}

/// Why `Pool::new` refuses `o` (it must: an invalid argument).
fn invalid(o: PoolOptions) -> String {
    match Pool::new("127.0.0.1:0", None, o) {
        Err(PoolError::InvalidArgument(m)) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn tls_options_and_urls_are_checked() {
    let m = invalid(PoolOptions {
        tls_cert: Some(pem("node.pem")),
        ..opts(500)
    });
    assert!(m.contains("tls_cert and tls_key"), "{m}");
    let m = invalid(PoolOptions {
        tls_ca: Some(pem("ca.pem")),
        ..opts(500)
    });
    assert!(m.contains("tls_ca needs tls_cert"), "{m}");
    let m = invalid(tls_opts("node.pem", "node2.key", Some("ca.pem")));
    assert!(m.contains("tls_cert") && m.contains("node2.key"), "{m}");
    let m = invalid(tls_opts("node.key", "node.key", None));
    assert!(m.contains("tls_cert") && m.contains("no PEM certificate"), "{m}");
    let m = invalid(tls_opts("node.pem", "node.key", Some("missing.pem")));
    assert!(m.contains("tls_ca") && m.contains("missing.pem"), "{m}");
    // http and https are not mixed in one cluster.
    let tls = Pool::new("127.0.0.1:0", None, mtls()).unwrap();
    let plain = Pool::new("127.0.0.1:0", None, opts(500)).unwrap();
    assert!(tls.url().starts_with("https://"));
    for urls in [
        vec![tls.url().to_string(), plain.url().to_string()],
        vec![plain.url().to_string()],
    ] {
        match tls.set_peers(&urls) {
            Err(PoolError::InvalidArgument(m)) => assert!(m.contains("must be https://"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    match plain.set_peers(&[tls.url().to_string()]) {
        Err(PoolError::InvalidArgument(m)) => assert!(m.contains("needs TLS on this node"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Pool::new("127.0.0.1:0", Some("http://127.0.0.1:1"), mtls()),
        Err(PoolError::InvalidArgument(_))
    ));
    // Nor when the peers come from DNS: the spec's scheme must match.
    let m = invalid(PoolOptions {
        peers_from: Some("dns+http://peers.invalid:8000".into()),
        ..mtls()
    });
    assert!(m.contains("dns+https://") && m.contains("serves https"), "{m}");
    let m = invalid(PoolOptions {
        peers_from: Some("dns+srv+https://_gc._tcp.peers.invalid".into()),
        ..opts(500)
    });
    assert!(m.contains("dns+http://") && m.contains("plain http"), "{m}");
}

/// Copies `from` over `to` in place (truncate and write: the file keeps its
/// inode, as a careless rotation would do; cert-manager swaps a symlink).
fn overwrite(to: &Path, from: &Path) {
    std::fs::write(to, std::fs::read(from).unwrap()).unwrap();
}

#[test]
fn rotated_files_are_used_for_new_connections_without_stopping() {
    let dir = pki().join(format!("rotate-{}", line!()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    overwrite(&cert, &pem("node.pem"));
    overwrite(&key, &pem("node.key"));
    let server = Node::new(PoolOptions {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
        tls_ca: Some(pem("ca.pem")),
        ..opts(2000)
    });
    let client = Node::new(mtls());
    let urls = link([&*server.pool, &*client.pool]);
    // A client node fetches keys the server owns all along, each a new
    // key (a remote load), on its kept-alive connection.
    let stop = Arc::new(AtomicBool::new(false));
    let fetcher = {
        let (stop, group) = (stop.clone(), client.group.clone());
        let keys = keys_owned_by(&urls, 0, 100_000, "rot-");
        std::thread::spawn(move || {
            let mut n = 0usize;
            for k in keys {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                assert_eq!(group.get(&k).unwrap(), value_for(1, &k));
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };
    let seen = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = probe(server.addr(), "ca.pem", Some(("node2.pem", "node2.key")));
            assert!(p.http_status().is_some(), "{:?}", p.answer);
            if p.server_cert.as_deref() == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "still {:?}, not {want}", p.server_cert);
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (old, new) = (
        fingerprint_of(&pem("node.pem")),
        fingerprint_of(&pem("node2.pem")),
    );
    seen(&old);
    // In place, the key first: for a moment the two do not match (that
    // load fails and the old pair stays), then they do.
    overwrite(&key, &pem("node2.key"));
    std::thread::sleep(Duration::from_millis(1200));
    overwrite(&cert, &pem("node2.pem"));
    seen(&new);
    // A broken file keeps the last good certificate.
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let p = probe(server.addr(), "ca.pem", Some(("node2.pem", "node2.key")));
    assert_eq!(p.server_cert.as_deref(), Some(&*new));
    assert_eq!(p.http_status(), Some(200), "{:?}", p.answer);
    // And a good one again is picked up.
    overwrite(&cert, &pem("node.pem"));
    overwrite(&key, &pem("node.key"));
    seen(&old);
    stop.store(true, Ordering::Relaxed);
    let fetched = fetcher.join().unwrap();
    // The node served all along: every fetch was answered by the owner.
    let s = client.group.stats();
    assert!(fetched > 100, "{fetched}");
    assert_eq!(s.peer_errors, 0, "{s:?}");
    assert_eq!((server.total_loads() - server.loads(b"probe")) as usize, fetched);
    server.shut();
    client.shut();
}

/// Opens `n` TCP connections that send the first bytes of a TLS
/// ClientHello (or nothing) and stall.
fn stalled(addr: SocketAddr, n: usize, partial: bool) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            if partial {
                // A handshake record header announcing 512 bytes, and 3 of them.
                s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
                    .unwrap();
            }
            s
        })
        .collect()
}

/// Whether the server closed `s` (EOF or reset) within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // an alert
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A node with a 400 ms head deadline; the connections `open` makes to
/// it must all be closed by it, none before the deadline.
fn assert_cut_by_the_header_timeout(open: impl FnOnce(SocketAddr) -> Vec<TcpStream>) -> Node {
    let node = Node::new(PoolOptions {
        header_timeout: Duration::from_millis(400),
        ..mtls()
    });
    let t0 = Instant::now();
    let mut conns = open(node.addr());
    for (i, c) in conns.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(3)),
            "connection {i} still open"
        );
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(350),
        "closed before the timeout: {took:?}"
    );
    node
}

/// A node with room for four connections and a long head deadline, filled
/// by the four that `open` makes: a real peer still gets in, within the
/// time it returns, and the longest-waiting of them goes.
fn assert_the_limit_makes_room(open: impl FnOnce(SocketAddr) -> Vec<TcpStream>, prefix: &str) -> Duration {
    let server = Node::new(PoolOptions {
        max_connections: 4,
        header_timeout: Duration::from_secs(30),
        ..mtls()
    });
    let client = Node::new(mtls());
    let urls = link([&*server.pool, &*client.pool]);
    let mut conns = open(server.addr());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !closed_within(&mut conns[0], Duration::from_millis(100)),
        "closed early"
    );
    let k = keys_owned_by(&urls, 0, 1, prefix)[0].clone();
    let t0 = Instant::now();
    assert_eq!(client.group.get(&k).unwrap(), value_for(1, &k));
    let took = t0.elapsed();
    assert_eq!(server.loads(&k), 1, "not fetched from its owner");
    assert!(
        closed_within(&mut conns[0], Duration::from_secs(2)),
        "the longest-waiting connection was not closed to make room"
    );
    for c in &mut conns[1..] {
        assert!(!closed_within(c, Duration::from_millis(50)));
    }
    server.shut();
    client.shut();
    took
}

#[test]
fn a_stalled_handshake_is_cut_by_the_header_timeout() {
    let node = assert_cut_by_the_header_timeout(|a| {
        let mut conns = stalled(a, 3, false);
        conns.extend(stalled(a, 3, true));
        conns
    });
    // The node still serves a real client.
    assert!(probe(node.addr(), "ca.pem", Some(("node.pem", "node.key")))
        .http_status()
        .is_some());
    node.shut();
}

#[test]
fn stalled_handshakes_count_against_the_connection_limit() {
    // Four stalled handshakes fill the table; a real peer still gets in
    // (the longest-waiting staller goes).
    let took = assert_the_limit_makes_room(|a| stalled(a, 4, true), "limit-");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn callers_inside_a_runtime_fetch_over_tls_too() {
    // A caller inside a tokio runtime goes through the pool's pooled
    // client (hyper-util), which has a TLS connector of its own.
    let server = Node::new(mtls());
    let client = Node::new(mtls());
    let urls = link([&*server.pool, &*client.pool]);
    let keys = keys_owned_by(&urls, 0, 20, "rt-");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let group = client.group.clone();
    let ks = keys.clone();
    rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            for k in &ks {
                assert_eq!(group.get(k).unwrap(), value_for(1, k));
            }
            group.set(&ks[0], b"set", 0).unwrap();
        })
        .await
        .unwrap()
    });
    for k in &keys {
        assert_eq!(server.loads(k), 1);
        assert_eq!(client.loads(k), 0);
    }
    assert_eq!(server.group.get(&keys[0]).unwrap(), &b"set"[..]);
    assert_eq!(client.group.stats().peer_errors, 0);
    server.shut();
    client.shut();
}

/// A node with mutual TLS (and, if given, a secret) that has "probe" cached.
fn mtls_node(secret: Option<&str>) -> Node {
    let node = Node::new(PoolOptions {
        secret: secret.map(str::to_string),
        ..mtls()
    });
    node.group.set(b"probe", b"v", 0).unwrap();
    node
}

/// Every request a peer, a client or a scraper could send, as raw bytes
/// (a complete request each, bodies included).
fn every_route() -> Vec<(&'static str, Vec<u8>)> {
    use groupcache::peers::proto::{GetManyRequest, SetRequest};
    use prost::Message;
    let set = SetRequest {
        group: b"g".to_vec().into(),
        key: b"probe".to_vec().into(),
        value: b"changed".to_vec().into(),
        ..Default::default()
    }
    .encode_to_vec();
    let batch = GetManyRequest {
        group: b"g".to_vec().into(),
        keys: vec![b"probe".to_vec().into(), b"batch-miss".to_vec().into()],
        ..Default::default()
    }
    .encode_to_vec();
    let with_body = |head: &str, body: &[u8]| {
        let mut r = format!(
            "{head} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let bare = |head: &str| format!("{head} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    vec![
        ("GET a cached key", bare("GET /_groupcache/g/probe")),
        ("GET a miss", bare("GET /_groupcache/g/miss")),
        ("PUT", with_body("PUT /_groupcache/g/probe", &set)),
        ("DELETE", bare("DELETE /_groupcache/g/probe")),
        ("POST a batch", with_body("POST /_groupcache/g", &batch)),
        ("GET /metrics", bare("GET /metrics")),
        ("GET the base path (our probe)", bare("GET /_groupcache/")),
        ("GET elsewhere", bare("GET /other")),
        ("POST /healthz", with_body("POST /healthz", b"x")),
        ("PUT /healthz", with_body("PUT /healthz", b"x")),
        ("GET /healthz/x", bare("GET /healthz/x")),
        ("OPTIONS *", bare("OPTIONS *")),
    ]
}

#[test]
fn without_a_client_certificate_only_healthz_is_served() {
    for secret in [None, Some("s3cret")] {
        let node = mtls_node(secret);
        let addr = node.addr();
        let before = node.group.stats();
        // A readiness probe (no certificate, no check of the server's):
        // GET and HEAD /healthz answer.
        for req in [
            &b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ] {
            let p = probe_with(addr, "ca.pem", None, req);
            assert_eq!(p.http_status(), Some(200), "{:?}", p.answer);
        }
        // Everything else: 403, and the connection is closed after it.
        for (what, req) in every_route() {
            let p = probe_with(addr, "ca.pem", None, &req);
            assert_eq!(p.http_status(), Some(403), "{what}: {:?}", p.answer);
            let text = String::from_utf8_lossy(p.answer.as_ref().unwrap()).to_lowercase();
            assert!(text.contains("connection: close"), "{what}: {text}");
            assert!(text.ends_with("client certificate required\n"), "{what}: {text}");
        }
        // Keep-alive does not help: a /healthz first, then a cache request
        // on the same connection, is refused the same.
        let p = probe_with(
            addr,
            "ca.pem",
            None,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /_groupcache/g/probe HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let text = String::from_utf8_lossy(p.answer.as_ref().unwrap()).to_string();
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "{text}");
        assert!(text.contains("HTTP/1.1 403 "), "{text}");
        // A body is never read: a PUT announcing 10 MB, none of it sent,
        // is refused at once (not after body_timeout, not 413).
        let t0 = Instant::now();
        let p = probe_with(
            addr,
            "ca.pem",
            None,
            b"PUT /_groupcache/g/probe HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
        );
        assert_eq!(p.http_status(), Some(403), "{:?}", p.answer);
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        // Nothing reached the cache: no load, no change, no server request.
        assert_eq!(node.total_loads(), 0);
        assert_eq!(node.group.get(b"probe").unwrap(), &b"v"[..]);
        assert_eq!(node.total_loads(), 0);
        let after = node.group.stats();
        assert_eq!(after.server_requests, before.server_requests, "{after:?}");
        assert_eq!(
            after.server_batch_requests, before.server_batch_requests,
            "{after:?}"
        );
        // A certificate that does not verify is still refused at the
        // handshake, even for /healthz.
        for client in [("other.pem", "other.key"), ("expired.pem", "expired.key")] {
            let p = probe_with(
                addr,
                "ca.pem",
                Some(client),
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert!(p.answer.is_err(), "{client:?}: answered {:?}", p.answer);
        }
        // The control: with a good certificate the routes are served (by
        // the secret's rules when there is one: 401 unsigned, /metrics open).
        let good = Some(("node2.pem", "node2.key"));
        let get = b"GET /_groupcache/g/probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let p = probe_with(addr, "ca.pem", good, get);
        let want = if secret.is_some() { 401 } else { 200 };
        assert_eq!(p.http_status(), Some(want), "{:?}", p.answer);
        let p = probe_with(
            addr,
            "ca.pem",
            good,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(p.http_status(), Some(200), "{:?}", p.answer);
        let p = probe_with(
            addr,
            "ca.pem",
            good,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(p.http_status(), Some(200), "{:?}", p.answer);
        node.shut();
    }
    // While the node drains, the probe sees 503 (and so stops sending it
    // traffic), peers with certificates are still served.
    let node = Node::new(PoolOptions {
        drain: Duration::from_millis(1500),
        ..mtls()
    });
    node.group.set(b"probe", b"v", 0).unwrap();
    let addr = node.addr();
    let closing = {
        let pool = node.pool.clone();
        std::thread::spawn(move || pool.close())
    };
    std::thread::sleep(Duration::from_millis(300));
    let health = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let p = probe_with(addr, "ca.pem", None, health);
    assert_eq!(p.http_status(), Some(503), "{:?}", p.answer);
    let p = probe(addr, "ca.pem", Some(("node2.pem", "node2.key")));
    assert_eq!(p.http_status(), Some(200), "{:?}", p.answer);
    closing.join().unwrap();
    node.shut();
}

/// Opens `n` TLS connections without a client certificate that finish the
/// handshake and then send nothing.
fn anonymous_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    use rustls::pki_types::ServerName;
    (0..n)
        .map(|_| {
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let mut conn = rustls::ClientConnection::new(client_config("ca.pem", None), name).unwrap();
            let mut sock = TcpStream::connect(addr).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).unwrap();
            }
            // The client's last flight (its empty Certificate, Finished).
            while conn.wants_write() {
                conn.write_tls(&mut sock).unwrap();
            }
            sock
        })
        .collect()
}

#[test]
fn connections_without_a_client_certificate_keep_every_limit() {
    // The head deadline: a handshake finished without a certificate, then
    // nothing, is cut when it ends.
    assert_cut_by_the_header_timeout(|a| anonymous_idle(a, 3)).shut();
    // The connection limit: four of them fill the table; a real peer still
    // gets in (the longest-waiting one goes).
    assert_the_limit_makes_room(|a| anonymous_idle(a, 4), "anon-limit-");
}

/// Three nodes on 127.0.3.1-3 (IP-address URLs), all with `opts`, linked.
fn ip_cluster(opts: PoolOptions) -> (Vec<Node>, Vec<String>) {
    let nodes: Vec<Node> = (1..=3)
        .map(|i| Node::at(&format!("127.0.3.{i}:0"), opts.clone()).unwrap())
        .collect();
    let urls = link(nodes.iter().map(|n| &*n.pool));
    (nodes, urls)
}

/// Options with cluster.pem (it names "groupcache-peers" and no address).
fn cluster_opts(server_name: Option<&str>) -> PoolOptions {
    PoolOptions {
        tls_server_name: server_name.map(str::to_string),
        ..tls_opts("cluster.pem", "cluster.key", Some("ca.pem"))
    }
}

#[test]
fn tls_server_name_checks_peers_by_name_over_ip_urls() {
    // With the name: every key is fetched from its owner, once.
    let (nodes, urls) = ip_cluster(cluster_opts(Some("groupcache-peers")));
    assert!(urls.iter().all(|u| u.starts_with("https://127.0.3.")), "{urls:?}");
    let keys: Vec<Vec<u8>> = (0..30).map(|i| format!("named-{i}").into_bytes()).collect();
    assert_loaded_once(&nodes, &urls, &keys);
    for n in &nodes {
        let s = n.group.stats();
        assert!(s.peer_errors == 0 && s.server_requests > 0, "{s:?}");
    }
    for n in nodes {
        n.shut();
    }
    // Without it (the URL's IP address, which the certificate does not
    // name) or with another name: no peer is accepted; every node loads
    // the keys it asked for itself.
    for name in [None, Some("elsewhere.example"), Some("127.0.3.1")] {
        let (nodes, urls) = ip_cluster(cluster_opts(name));
        let asker = &nodes[0];
        let keys = keys_owned_by(&urls, 1, 5, &format!("unnamed-{name:?}-"));
        for k in &keys {
            assert_eq!(asker.group.get(k).unwrap(), value_for(1, k));
            assert_eq!(asker.loads(k), 1, "{name:?}");
            assert_eq!(nodes[1].loads(k), 0, "{name:?}");
        }
        assert!(asker.group.stats().peer_errors > 0, "{name:?}");
        assert_eq!(nodes[1].group.stats().server_requests, 0, "{name:?}");
        for n in nodes {
            n.shut();
        }
    }
}

#[test]
fn tls_server_name_is_checked() {
    let m = invalid(PoolOptions {
        tls_server_name: Some("groupcache-peers".into()),
        ..opts(500)
    });
    assert!(m.contains("tls_server_name needs tls_cert"), "{m}");
    for bad in [
        "",
        "bad name",
        "https://groupcache-peers",
        "groupcache-peers:8001",
    ] {
        let m = invalid(cluster_opts(Some(bad)));
        assert!(m.contains("tls_server_name"), "{bad:?}: {m}");
    }
}

#[test]
fn a_batch_never_reuses_a_connection_kept_for_another_tls_setting() {
    // One thread, two client nodes and one plain-http owner at one address:
    // the plain client's batch leaves a kept connection to it; the TLS
    // client's batch to the same address must not take that connection
    // (it would speak plaintext to an https peer), but open its own, whose
    // handshake fails: the TLS client then loads its keys itself.
    let owner = Node::new(opts(2000));
    let addr = owner.addr();
    let plain = Node::new(opts(2000));
    let plain_urls = vec![plain.pool.url().to_string(), format!("http://{addr}")];
    plain.pool.set_peers(&plain_urls).unwrap();
    let tls = Node::new(mtls());
    let tls_urls = vec![tls.pool.url().to_string(), format!("https://{addr}")];
    tls.pool.set_peers(&tls_urls).unwrap();

    let ks = keys_owned_by(&plain_urls, 1, 3, "plain-batch-");
    let ks: Vec<&[u8]> = ks.iter().map(|k| &k[..]).collect();
    for (k, r) in ks.iter().zip(plain.group.get_many(&ks)) {
        assert_eq!(r.unwrap(), value_for(1, k));
        assert_eq!(owner.loads(k), 1);
    }
    let ks = keys_owned_by(&tls_urls, 1, 3, "tls-batch-");
    let ks: Vec<&[u8]> = ks.iter().map(|k| &k[..]).collect();
    for (k, r) in ks.iter().zip(tls.group.get_many(&ks)) {
        assert_eq!(r.unwrap(), value_for(1, k));
        assert_eq!(owner.loads(k), 0, "the TLS node's batch reached the plain owner");
        assert_eq!(tls.loads(k), 1);
    }
    assert!(tls.group.stats().peer_errors > 0);
    for n in [owner, plain, tls] {
        n.shut();
    }
}
