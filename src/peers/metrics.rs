//! `/metrics`: the groups of a pool in the Prometheus text format, named as
//! the existing groupcache exporter names them (udhos/groupcache_exporter:
//! `groupcache_gets_total{group}`, `groupcache_cache_bytes{group,type}`...),
//! so dashboards made for Go groupcache work unchanged.

use std::fmt::Write;

use crate::engine::Stats;

/// (metric, help, type, value) for the group-level counters.
fn group_metrics(s: &Stats) -> [(&'static str, &'static str, &'static str, u64); 13] {
    [
        (
            "groupcache_gets_total",
            "Count of cache gets (including from peers)",
            "counter",
            s.gets,
        ),
        (
            "groupcache_hits_total",
            "Count of cache hits (from either main or hot cache)",
            "counter",
            s.cache_hits,
        ),
        (
            "groupcache_peer_loads_total",
            "Count of non-error loads or cache hits from peers",
            "counter",
            s.peer_loads,
        ),
        (
            "groupcache_peer_errors_total",
            "Count of errors from peers",
            "counter",
            s.peer_errors,
        ),
        (
            "groupcache_loads_total",
            "Count of (gets - hits)",
            "counter",
            s.loads,
        ),
        (
            "groupcache_loads_deduped_total",
            "Count of loads after singleflight",
            "counter",
            s.loads_deduped,
        ),
        (
            "groupcache_local_load_total",
            "Count of loads from local cache",
            "counter",
            s.local_loads,
        ),
        (
            "groupcache_local_load_errs_total",
            "Count of loads from local cache that failed",
            "counter",
            s.local_load_errs,
        ),
        (
            "groupcache_server_requests_total",
            "Count of gets received from peers",
            "counter",
            s.server_requests,
        ),
        (
            "groupcache_batch_loads_total",
            "Count of batch loader calls",
            "counter",
            s.batch_loads,
        ),
        (
            "groupcache_batch_loaded_keys_total",
            "Count of keys passed to the batch loader",
            "counter",
            s.batch_loaded_keys,
        ),
        (
            "groupcache_peer_batch_requests_total",
            "Count of batch gets sent to owner peers",
            "counter",
            s.peer_batch_requests,
        ),
        (
            "groupcache_server_batch_requests_total",
            "Count of batch gets received from peers",
            "counter",
            s.server_batch_requests,
        ),
    ]
}

/// (metric, help, type, main value, hot value) for the two caches.
fn cache_metrics(s: &Stats) -> [(&'static str, &'static str, &'static str, u64, u64); 5] {
    [
        (
            "groupcache_cache_bytes",
            "Gauge of current bytes in use",
            "gauge",
            s.main_bytes,
            s.hot_bytes,
        ),
        (
            "groupcache_cache_items",
            "Gauge of current items in use",
            "gauge",
            s.main_items,
            s.hot_items,
        ),
        (
            "groupcache_cache_gets_total",
            "Count of cache gets",
            "counter",
            s.main_gets,
            s.hot_gets,
        ),
        (
            "groupcache_cache_hits_total",
            "Count of cache hits",
            "counter",
            s.main_hits,
            s.hot_hits,
        ),
        (
            "groupcache_cache_evictions_total",
            "Count of cache evictions",
            "counter",
            s.main_evictions,
            s.hot_evictions,
        ),
    ]
}

/// Escapes a label value: backslash, double quote and newline.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Renders `groups` (name, stats), sorted by name for stable output.
pub fn render(groups: &mut [(String, Stats)]) -> String {
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    let names: Vec<String> = groups.iter().map(|(n, _)| label(n)).collect();
    if let Some((_, first)) = groups.first() {
        for (i, (metric, help, kind, _)) in group_metrics(first).iter().enumerate() {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for ((_, s), n) in groups.iter().zip(&names) {
                let _ = writeln!(out, "{metric}{{group=\"{n}\"}} {}", group_metrics(s)[i].3);
            }
        }
        for (i, (metric, help, kind, _, _)) in cache_metrics(first).iter().enumerate() {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for ((_, s), n) in groups.iter().zip(&names) {
                let (_, _, _, main, hot) = cache_metrics(s)[i];
                let _ = writeln!(out, "{metric}{{group=\"{n}\",type=\"main\"}} {main}");
                let _ = writeln!(out, "{metric}{{group=\"{n}\",type=\"hot\"}} {hot}");
            }
        }
    }
    out
}

/// The pool's membership (not per group; the exporter has no such
/// metrics): `groupcache_peers`, a gauge, and
/// `groupcache_membership_changes_total`, a counter.
pub fn render_membership(peers: u64, changes: u64) -> String {
    format!(
        "# HELP groupcache_peers Distinct nodes in this node's membership\n\
         # TYPE groupcache_peers gauge\n\
         groupcache_peers {peers}\n\
         # HELP groupcache_membership_changes_total Count of changes of the membership (set_peers, DNS)\n\
         # TYPE groupcache_membership_changes_total counter\n\
         groupcache_membership_changes_total {changes}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_once_per_group_with_escaped_labels() {
        let s = Stats {
            gets: 7,
            hot_bytes: 3,
            peer_batch_requests: 5,
            ..Default::default()
        };
        let text = render(&mut [("b\"q".into(), s), ("a".into(), Stats::default())]);
        assert!(text.contains("groupcache_gets_total{group=\"b\\\"q\"} 7\n"));
        assert!(text.contains("groupcache_peer_batch_requests_total{group=\"b\\\"q\"} 5\n"));
        assert!(text.contains("groupcache_cache_bytes{group=\"b\\\"q\",type=\"hot\"} 3\n"));
        assert_eq!(text.matches("# TYPE groupcache_gets_total counter").count(), 1);
        assert_eq!(text.matches("groupcache_cache_items{").count(), 4);
        assert!(text.find("group=\"a\"").unwrap() < text.find("group=\"b").unwrap());
        assert_eq!(render(&mut []), "");
    }

    #[test]
    fn membership_is_one_gauge_and_one_counter() {
        let text = render_membership(3, 7);
        assert!(text.contains("# TYPE groupcache_peers gauge\ngroupcache_peers 3\n"));
        assert!(text.contains("# TYPE groupcache_membership_changes_total counter\n"));
        assert!(text.ends_with("groupcache_membership_changes_total 7\n"));
    }
}
