//! The health route (`GET /healthz`): answered while serving, 503 while
//! draining, never behind a loader, within the connection limit.

use super::signed::secret_opts;
use super::*;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// The whole response to `req`, head and body, as text.
fn raw_text(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn healthz_answers_200_while_serving_and_only_get_or_head() {
    let p = pair();
    let a = p.server.local_addr();
    let text = raw_text(a, HEALTHZ);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("cache-control: no-store\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nok\n"), "{text}");
    // HEAD: the same status, no body.
    let text = raw_text(
        a,
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
    // A query string is the same route (probes may add one).
    assert_eq!(
        raw(
            a,
            b"GET /healthz?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        (200, b"ok\n".to_vec())
    );
    let text = raw_text(
        a,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 405 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("allow: get, head\r\n"),
        "{text}"
    );
    // Nothing else moved: no group was asked.
    assert!(p.fake.gets.lock().unwrap().is_empty());
    // Neighbours are not the route.
    assert_eq!(
        raw(
            a,
            b"GET /healthz/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .0,
        404
    );
}

#[test]
fn healthz_needs_no_signature_and_says_nothing_more() {
    let (server, _fake, _svc) = server_with(secret_opts());
    let a = server.local_addr();
    assert_eq!(raw(a, HEALTHZ), (200, b"ok\n".to_vec()));
    // Everything else still needs one.
    assert_eq!(
        raw(
            a,
            b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .0,
        401
    );
}

#[test]
fn healthz_answers_503_while_the_pool_drains_then_the_port_closes() {
    let drain = Duration::from_millis(800);
    let (server, fake, _svc) = server_with(PoolOptions { drain, ..opts() });
    let a = server.local_addr();
    // A keep-alive connection made before the drain, as a peer's would be.
    let mut kept = TcpStream::connect(a).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let get_on_kept = |s: &mut TcpStream, key: &str| -> String {
        s.write_all(format!("GET /_groupcache/g/{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(get_on_kept(&mut kept, "before").starts_with("HTTP/1.1 200 "));
    assert_eq!(raw(a, HEALTHZ).0, 200);

    let closer = {
        let server = server.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            server.close();
            t.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    // Draining: the probe fails, everything else is served as before, on
    // new connections and on the kept one.
    assert_eq!(raw(a, HEALTHZ), (503, b"closing\n".to_vec()));
    assert!(!server.is_closed());
    let (st, body) = raw(
        a,
        b"GET /_groupcache/g/during HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 200);
    assert!(body.ends_with(b"v:during"));
    assert!(get_on_kept(&mut kept, "during2").starts_with("HTTP/1.1 200 "));
    // A second close returns at once, the drain goes on.
    let t = Instant::now();
    server.close();
    assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
    assert_eq!(raw(a, HEALTHZ).0, 503);

    let took = closer.join().unwrap();
    assert!(
        took >= drain,
        "close returned after {took:?}, before the drain ended"
    );
    assert!(server.is_closed());
    assert!(TcpStream::connect(a).is_err(), "still accepting after close");
    assert_eq!(fake.gets.lock().unwrap().len(), 3);
}

#[test]
fn without_a_drain_close_does_not_wait() {
    let (server, _fake, _svc) = server_with(opts());
    assert_eq!(raw(server.local_addr(), HEALTHZ).0, 200);
    let t = Instant::now();
    server.close();
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    assert!(TcpStream::connect(server.local_addr()).is_err());
}

#[test]
fn healthz_is_answered_while_stuck_loaders_hold_every_worker() {
    // Two runtime workers (misses of fast groups may run inline), two
    // server workers, both in a getter that takes seconds, and more misses
    // queued behind them: the probe is still answered at once.
    let (server, fake, _svc) = server_with(PoolOptions {
        server_workers: 2,
        worker_threads: 2,
        ..opts()
    });
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(2500));
    let a = server.local_addr();
    let stuck = gets_in_threads(a, "s", 6);
    // Wait until both workers are inside the getter.
    wait_for_gets(&fake, 2);
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(raw(a, HEALTHZ), (200, b"ok\n".to_vec()));
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "probe took {:?}",
            t.elapsed()
        );
    }
    // They were stuck all along: two in the getter, the rest queued.
    assert_eq!(fake.gets.lock().unwrap().len(), 2);
    *fake.delay.lock().unwrap() = None;
    for s in stuck {
        assert_eq!(s.join().unwrap().0, 200);
    }
}

#[test]
fn healthz_obeys_the_connection_limit() {
    // No way around the server's limits: with every connection busy
    // serving, a probe is refused like any newcomer (the node cannot take
    // more work: not ready is the truth).
    let (server, fake, _svc) = server_with(PoolOptions {
        max_connections: 2,
        ..opts()
    });
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(500));
    let a = server.local_addr();
    let busy = gets_in_threads(a, "b", 2);
    wait_for_gets(&fake, 2);
    assert_eq!(raw(a, HEALTHZ), (503, b"server busy\n".to_vec()));
    for b in busy {
        assert_eq!(b.join().unwrap().0, 200);
    }
    assert_eq!(raw(a, HEALTHZ).0, 200);
}

#[test]
fn healthz_probe_that_sends_nothing_is_closed_after_the_header_timeout() {
    let (server, _fake, _svc) = server_with(PoolOptions {
        header_timeout: Duration::from_millis(300),
        ..opts()
    });
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap(); // never ends
    assert!(closed_within(&mut s, Duration::from_secs(3)));
}
