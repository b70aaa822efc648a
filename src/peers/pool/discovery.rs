//! Membership from DNS (`peers_from`): a task on the pool's runtime looks
//! the source up every `peers_refresh` and applies what it finds: a new
//! list replaces the members (requests in flight keep theirs), a failed
//! or empty round keeps the last good one, and each change of state is
//! logged once.

use super::*;

/// What the last DNS round said, for logging each change once.
#[derive(Default)]
pub(super) struct DnsState {
    /// The last round failed (the membership is the last good one's).
    failing: bool,
    /// Whether this node's URL was in the last good answer.
    self_listed: Option<bool>,
}

impl Shared {
    /// Starts looking `peers_from` up every `peers_refresh` on `handle`
    /// (the pool's runtime), if the pool has a source. `first` hears when
    /// the first round is applied.
    pub(super) fn spawn_refresh(&self, handle: &tokio::runtime::Handle, first: Option<mpsc::Sender<()>>) {
        let Some(source) = self.source.clone() else { return };
        let weak = self.me.clone();
        let (every, nameserver) = (self.opts.peers_refresh, self.opts.nameserver);
        handle.spawn(async move {
            let mut first = first;
            loop {
                let found = source.resolve(nameserver, every).await;
                match weak.upgrade() {
                    Some(s) if !s.closed.load(Ordering::Acquire) => s.apply_discovered(&source, found),
                    _ => return,
                }
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Applies one DNS round: a different list replaces the membership
    /// (requests in flight keep the one they started with); a failed or
    /// empty round keeps it. Logs changes of state only, with no lock held.
    fn apply_discovered(&self, source: &PeerSource, found: Result<Vec<String>, String>) {
        let mut logs: Vec<(log::Level, String)> = Vec::new();
        let who = &self.self_url;
        let spec = &source.spec;
        // A DNS answer is not the application's list: bound the ring it
        // would build (URLs x replicas points, made on a runtime thread
        // with `dns_state` held) like the number of URLs.
        let found = found.and_then(|urls| ring_fits(urls.len(), self.opts.replicas).map(|()| urls));
        {
            let mut st = lock(&self.dns_state);
            match found {
                Err(why) => {
                    if !st.failing {
                        st.failing = true;
                        let n = read(&self.members).distinct;
                        let keep = if n == 0 {
                            "no peers yet: this node loads every key itself".to_string()
                        } else {
                            format!("keeping the {n} peers found before")
                        };
                        let every = self.opts.peers_refresh;
                        logs.push((
                            log::Level::Warn,
                            format!(
                                "pool {who}: peers from {spec}: {why}; {keep}, trying again every {every:?}"
                            ),
                        ));
                    }
                }
                Ok(urls) => {
                    if st.failing {
                        st.failing = false;
                        logs.push((
                            log::Level::Info,
                            format!("pool {who}: peers from {spec}: answering again"),
                        ));
                    }
                    let in_child = self.in_child.load(Ordering::Acquire);
                    let old = read(&self.members).clone();
                    if old.urls != urls {
                        let Some(runtime) = lock(&self.runtime).clone() else {
                            return;
                        };
                        let m = Arc::new(self.build_members(&urls, &runtime, Some(&old), in_child));
                        {
                            let mut members = write(&self.members);
                            // `close` sets `closed` before it empties the
                            // membership under this lock: a pool closed
                            // meanwhile keeps its empty one (whose peers
                            // would hold the runtime alive).
                            if self.closed.load(Ordering::Acquire) {
                                return;
                            }
                            *members = m;
                        }
                        self.membership_changes.fetch_add(1, Ordering::Relaxed);
                        logs.push((
                            log::Level::Info,
                            format!(
                                "pool {who}: peers from {spec}: {} peers{}",
                                urls.len(),
                                describe_change(&old.urls, &urls)
                            ),
                        ));
                    }
                    // A forked child's URL is its parent's: not its own
                    // presence to report.
                    let listed = urls.contains(who);
                    if !in_child && st.self_listed != Some(listed) {
                        if !listed {
                            logs.push((
                                log::Level::Warn,
                                format!(
                                    "pool {who}: this node is not among the {} peers from {spec}: it serves and \
                                     forwards, but owns no keys (a node starting or leaving; otherwise give it \
                                     the self URL DNS gives it)",
                                    urls.len()
                                ),
                            ));
                        } else if st.self_listed.is_some() {
                            logs.push((
                                log::Level::Info,
                                format!("pool {who}: now among the peers from {spec}"),
                            ));
                        }
                        st.self_listed = Some(listed);
                    }
                }
            }
        }
        for (level, msg) in logs {
            log::log!(level, "{msg}");
        }
    }
}

/// Most points a ring built from a DNS answer may have (URLs x replicas):
/// 4 Mi points, ~64 MB while built; e.g. 83,886 URLs at the default 50
/// replicas, more than DNS gives ([`crate::peers::dns::MAX_URLS`] is 65,536), or
/// 419 at the maximum 10,000 replicas.
pub const MAX_RING_POINTS: usize = 4 << 20;

/// `Ok` when `urls` peers at `replicas` points each fit [`MAX_RING_POINTS`].
fn ring_fits(urls: usize, replicas: usize) -> Result<(), String> {
    if urls.saturating_mul(replicas) > MAX_RING_POINTS {
        return Err(format!(
            "{urls} peers at {replicas} replicas each would make a ring of more than \
             {MAX_RING_POINTS} points"
        ));
    }
    Ok(())
}

/// " (+added, -removed)" for a log line: a few URLs of each, and a count
/// past that. Linear in the lists' lengths (DNS may give tens of
/// thousands of URLs, and this runs with `dns_state` held).
fn describe_change(old: &[String], new: &[String]) -> String {
    let in_old: std::collections::HashSet<&str> = old.iter().map(String::as_str).collect();
    let in_new: std::collections::HashSet<&str> = new.iter().map(String::as_str).collect();
    let list = |v: Vec<&String>| {
        let mut s = v.iter().take(4).map(|u| u.as_str()).collect::<Vec<_>>().join(" ");
        if v.len() > 4 {
            s.push_str(&format!(" and {} more", v.len() - 4));
        }
        s
    };
    let added: Vec<&String> = new.iter().filter(|u| !in_old.contains(u.as_str())).collect();
    let removed: Vec<&String> = old.iter().filter(|u| !in_new.contains(u.as_str())).collect();
    let mut out = Vec::new();
    if !added.is_empty() {
        out.push(format!("added {}", list(added)));
    }
    if !removed.is_empty() {
        out.push(format!("removed {}", list(removed)));
    }
    if out.is_empty() {
        String::new()
    } else {
        format!(" ({})", out.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::{describe_change, ring_fits, MAX_RING_POINTS};

    fn urls(range: std::ops::Range<usize>) -> Vec<String> {
        range
            .map(|i| format!("http://127.{}.{}.{}:8000", i >> 16, (i >> 8) & 255, i & 255))
            .collect()
    }

    #[test]
    fn describe_change_names_what_came_and_went() {
        assert_eq!(describe_change(&urls(0..3), &urls(0..3)), "");
        assert_eq!(
            describe_change(&urls(0..2), &urls(1..3)),
            " (added http://127.0.0.2:8000; removed http://127.0.0.0:8000)"
        );
        let d = describe_change(&urls(0..10), &urls(5..20));
        assert!(
            d.contains("and 6 more; removed") && d.ends_with("and 1 more)"),
            "{d}"
        );
        // 65,536 URLs either side (the most a DNS answer may give): a hash
        // set each, not a scan of one list per URL of the other (that was
        // ~10 s of CPU with a lock held).
        let d = describe_change(&urls(0..65_536), &urls(1..65_537));
        assert_eq!(d, " (added http://127.1.0.0:8000; removed http://127.0.0.0:8000)");
    }

    #[test]
    fn a_ring_from_dns_is_bounded() {
        assert!(ring_fits(65_536, 50).is_ok());
        assert!(ring_fits(MAX_RING_POINTS, 1).is_ok());
        let e = ring_fits(65_536, 10_000).unwrap_err();
        assert!(e.contains("65536 peers at 10000 replicas"), "{e}");
        assert!(ring_fits(usize::MAX, 2).is_err());
    }
}
