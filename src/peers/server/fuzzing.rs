//! Entry points for fuzz/ (not an API): the server's real HTTP/1.1
//! settings and routing over one in-memory connection.

use super::*;

/// For fuzz/ only, not an API: serves `raw` as everything one client sent
/// on a connection (then EOF), with the server's real HTTP/1.1 settings and
/// routing, `group` served under its name; returns every byte the server
/// wrote. Limits are small (64 KiB bodies, 16 KiB heads, 50 ms timeouts).
/// Panics if the server neither answers nor closes within 5 s.
#[doc(hidden)]
pub fn serve_raw_for_fuzzing(group: &Arc<Group>, raw: &[u8]) -> Vec<u8> {
    serve_raw(group, raw, None).0
}

/// For fuzz/ only: [`serve_raw_for_fuzzing`] with a server that requires
/// requests signed under `secret` for node [`FUZZ_NODE`] at the fixed
/// time [`FUZZ_NOW_MS`] (so that signed seeds stay valid). Also returns how
/// many requests got past authentication to a group lookup.
#[doc(hidden)]
pub fn serve_raw_signed_for_fuzzing(group: &Arc<Group>, raw: &[u8], secret: &[u8]) -> (Vec<u8>, usize) {
    fn fixed_clock() -> u64 {
        FUZZ_NOW_MS
    }
    let auth = Verifier::with_clock(secret, FUZZ_NODE, fixed_clock, 64);
    serve_raw(group, raw, Some(Arc::new(auth)))
}

/// The fuzzing server's `max_batch_keys`.
#[doc(hidden)]
pub const FUZZ_MAX_BATCH_KEYS: usize = 256;

/// The node the signed fuzzing server answers as.
#[doc(hidden)]
pub const FUZZ_NODE: &str = "127.0.0.1:7000";
/// The signed fuzzing server's clock, Unix milliseconds.
#[doc(hidden)]
pub const FUZZ_NOW_MS: u64 = 1_800_000_000_000;

fn serve_raw(group: &Arc<Group>, raw: &[u8], auth: Option<Arc<Verifier>>) -> (Vec<u8>, usize) {
    use std::sync::atomic::AtomicUsize;
    struct OneGroup(Arc<Group>, AtomicUsize);
    impl GroupLookup for OneGroup {
        fn lookup(&self, name: &str) -> Option<Arc<dyn PeerService>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            (name == self.0.name()).then(|| self.0.clone() as Arc<dyn PeerService>)
        }
        fn metrics(&self) -> String {
            crate::peers::metrics::render(&mut [(self.0.name().to_string(), self.0.stats())])
        }
    }
    /// The client's bytes in, the server's out.
    struct MemIo {
        input: Bytes,
        output: Arc<Mutex<Vec<u8>>>,
    }
    impl hyper::rt::Read for MemIo {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            mut buf: hyper::rt::ReadBufCursor<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self.input.len().min(buf.remaining());
            let chunk = self.input.split_to(n);
            buf.put_slice(&chunk);
            Poll::Ready(Ok(()))
        }
    }
    impl hyper::rt::Write for MemIo {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.output.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
    }
    let cfg = ServerConfig {
        base_path: DEFAULT_BASE_PATH.to_string(),
        max_body_bytes: 64 << 10,
        max_header_bytes: 16 << 10,
        max_connections: 1,
        header_timeout: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(50),
        body_timeout: Duration::from_millis(50),
        body_budget_bytes: 64 << 10,
        max_batch_keys: FUZZ_MAX_BATCH_KEYS,
        server_workers: 1,
        worker_name: "fuzz".to_string(),
        inline: false,
        watchdog_name: "fuzz".to_string(),
        auth,
        tls: None,
    };
    let table = ConnTable::new(
        1,
        Timeouts {
            header: cfg.header_timeout,
            idle: cfg.idle_timeout,
        },
    );
    let Admit::Serve(guard) = table.admit() else {
        unreachable!("a new table has room")
    };
    let mut builder = http1_builder(&cfg);
    // The input ends in EOF: answer what was asked before closing (the
    // production setting closes at once on EOF mid-request).
    builder.half_close(true);
    let one = Arc::new(OneGroup(group.clone(), AtomicUsize::new(0)));
    let ctx = Arc::new(ServeCtx {
        builder: builder.clone(),
        budget: BodyBudget::new(cfg.body_budget_bytes),
        workers: Arc::new(Workers::inline()),
        inline: Arc::new(Inline::new(None, String::new())),
        speeds: Mutex::default(),
        closing: Arc::new(AtomicBool::new(false)),
        tls_log: Throttle::new(LOG_INTERVAL),
        cfg,
        groups: one.clone(),
        shutdown: watch::channel(false).1,
        table,
    });
    let output = Arc::new(Mutex::new(Vec::new()));
    let io = MemIo {
        input: Bytes::copy_from_slice(raw),
        output: output.clone(),
    };
    let slot = guard.slot().clone();
    let svc = service_fn(move |req| {
        let (ctx, slot) = (ctx.clone(), slot.clone());
        async move { Ok::<_, Infallible>(serve_request(req, &ctx, &slot, false).await) }
    });
    RT.with(|rt| {
        rt.block_on(async {
            let conn = builder.serve_connection(io, svc);
            if tokio::time::timeout(Duration::from_secs(5), conn).await.is_err() {
                panic!("the server neither answered nor closed within 5 s");
            }
        })
    });
    let out = std::mem::take(&mut *output.lock().unwrap());
    (out, one.1.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_serves() {
        let g = Group::new("g", 1 << 20, None);
        g.set(b"k", b"value", 0).unwrap();
        let out = serve_raw_for_fuzzing(&g, b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\n\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(out.ends_with(b"\x0a\x05value"), "{text}");
        let out = serve_raw_for_fuzzing(&g, b"GET /_groupcache/g HTTP/1.1\r\n\r\n");
        assert!(out.starts_with(b"HTTP/1.1 400"));
        assert!(serve_raw_for_fuzzing(&g, b"").is_empty());
    }
}
