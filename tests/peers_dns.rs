//! Membership from DNS (`peers_from`) against a real DNS server on
//! loopback (dnsmasq, `common::dns`), with nodes bound to the 127.0.2.x
//! addresses it serves: the membership appears, follows records added and
//! removed within a refresh, survives the server going down, expands port
//! ranges and SRV records, includes AAAA records, and a key is loaded once
//! across the cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::dns::{hosts, Dnsmasq, DOMAIN};
use crate::common::*;
use groupcache::peers::{Pool, PoolError, PoolOptions};

const REFRESH: Duration = Duration::from_millis(200);

fn dns_opts(spec: &str, dns: &Dnsmasq) -> PoolOptions {
    PoolOptions {
        peers_from: Some(spec.to_string()),
        peers_refresh: REFRESH,
        nameserver: dns.nameserver(),
        ..opts(2000)
    }
}

/// A port free on every address of `ips`, for `span` ports from it.
fn common_port(ips: &[&str], span: u16) -> u16 {
    'again: loop {
        let probe = std::net::TcpListener::bind((ips[0], 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        if port.checked_add(span).is_none() {
            continue;
        }
        for ip in ips {
            for p in port..port + span {
                if std::net::TcpListener::bind((*ip, p)).is_err() {
                    continue 'again;
                }
            }
        }
        return port;
    }
}

/// `n` keys for the DNS tests.
fn dns_keys(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("dns-key-{i}").into_bytes()).collect()
}

/// Nodes on every `ip` and port `port..port+span`, all with `opts`.
fn nodes_at(ips: &[&str], port: u16, span: u16, opts: &PoolOptions) -> Vec<Node> {
    let mut nodes = Vec::new();
    for ip in ips {
        for p in port..port + span {
            nodes.push(Node::at(&format!("{ip}:{p}"), opts.clone()).unwrap());
        }
    }
    nodes
}

fn urls(ips: &[&str], port: u16, span: u16) -> Vec<String> {
    let mut v: Vec<String> = ips
        .iter()
        .flat_map(|ip| {
            (port..port + span).map(move |p| {
                let ip: std::net::IpAddr = ip.parse().unwrap();
                format!("http://{}", std::net::SocketAddr::new(ip, p))
            })
        })
        .collect();
    v.sort();
    v
}

/// Waits up to `within` for `cond`; returns whether it came.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn membership_from_a_records_and_keys_load_once() {
    let ips = ["127.0.2.1", "127.0.2.2", "127.0.2.3"];
    let dns = Dnsmasq::start(&hosts("three", &ips), &[]);
    let port = common_port(&ips, 1);
    let spec = format!("dns+http://three.{DOMAIN}:{port}");
    let nodes = nodes_at(&ips, port, 1, &dns_opts(&spec, &dns));
    let want = urls(&ips, port, 1);
    // Pool::new waited for the first answer: the membership is there.
    for n in &nodes {
        assert_eq!(n.pool.peers(), want, "{}", n.pool.url());
        let s = n.group.stats();
        assert_eq!((s.peers, s.membership_changes), (3, 1), "{}", n.pool.url());
    }
    assert_loaded_once(&nodes, &want, &dns_keys(60));
    let stats: Vec<_> = nodes.iter().map(|n| n.group.stats()).collect();
    assert!(
        stats.iter().all(|s| s.peer_errors == 0 && s.peer_loads > 0),
        "{stats:?}"
    );
    // Nothing changed since: refreshes that find the same list count nothing.
    std::thread::sleep(REFRESH * 3);
    assert!(nodes.iter().all(|n| n.pool.membership() == (3, 1)));
}

#[test]
fn records_added_and_removed_change_membership_and_dns_down_keeps_it() {
    let ips = ["127.0.2.11", "127.0.2.12", "127.0.2.13"];
    let mut dns = Dnsmasq::start(&hosts("grow", &ips[..2]), &[]);
    let port = common_port(&ips, 1);
    let spec = format!("dns+http://grow.{DOMAIN}:{port}");
    let nodes = nodes_at(&ips, port, 1, &dns_opts(&spec, &dns));
    for n in &nodes {
        assert_eq!(n.pool.peers(), urls(&ips[..2], port, 1));
    }
    // The third node (not listed yet) still serves and forwards.
    let k = keys_owned_by(&urls(&ips[..2], port, 1), 0, 1, "grow-").remove(0);
    assert_eq!(nodes[2].group.get(&k).unwrap(), value_for(1, &k));
    assert_eq!((nodes[0].loads(&k), nodes[2].loads(&k)), (1, 0));

    // Added: every node sees it within a refresh or so.
    dns.set_hosts(&hosts("grow", &ips));
    let all = urls(&ips, port, 1);
    for n in &nodes {
        assert!(
            eventually(REFRESH * 10, || n.pool.peers() == all),
            "{}: {:?}",
            n.pool.url(),
            n.pool.peers()
        );
        assert_eq!(n.pool.membership(), (3, 2));
    }
    // Removed.
    dns.set_hosts(&hosts("grow", &[ips[0], ips[2]]));
    let two = urls(&[ips[0], ips[2]], port, 1);
    for n in &nodes {
        assert!(
            eventually(REFRESH * 10, || n.pool.peers() == two),
            "{:?}",
            n.pool.peers()
        );
        assert_eq!(n.pool.membership(), (2, 3));
    }
    // The server goes away: lookups fail (after their timeouts: 2 s, twice,
    // then TCP), the membership stays.
    dns.stop();
    std::thread::sleep(Duration::from_secs(7));
    for n in &nodes {
        assert_eq!(n.pool.peers(), two);
        assert_eq!(n.pool.membership(), (2, 3));
    }
    // A name that does not exist (NXDOMAIN) or has no address keeps it too.
    dns.set_hosts("");
    dns.restart();
    std::thread::sleep(Duration::from_secs(7));
    for n in &nodes {
        assert_eq!(n.pool.peers(), two);
    }
    // And it comes back.
    dns.set_hosts(&hosts("grow", &ips));
    for n in &nodes {
        assert!(
            eventually(REFRESH * 10, || n.pool.peers() == all),
            "{:?}",
            n.pool.peers()
        );
        assert_eq!(n.pool.membership(), (3, 4));
    }
    assert_loaded_once(&nodes, &all, &dns_keys(30));
}

#[test]
fn a_port_range_gives_a_node_per_address_and_port() {
    let ips = ["127.0.2.21", "127.0.2.22"];
    let dns = Dnsmasq::start(&hosts("workers", &ips), &[]);
    let port = common_port(&ips, 3);
    let spec = format!("dns+http://workers.{DOMAIN}:{port}-{}", port + 2);
    let nodes = nodes_at(&ips, port, 3, &dns_opts(&spec, &dns));
    let want = urls(&ips, port, 3);
    assert_eq!(want.len(), 6);
    for n in &nodes {
        assert_eq!(n.pool.peers(), want);
        assert_eq!(n.group.stats().peers, 6);
    }
    assert_loaded_once(&nodes, &want, &dns_keys(60));
}

#[test]
fn srv_records_give_targets_and_their_ports() {
    let ips = ["127.0.2.31", "127.0.2.32"];
    let port = common_port(&ips, 2);
    let mut hosts_text = hosts("a", &ips[..1]);
    hosts_text += &hosts("b", &ips[1..]);
    let srv = [
        format!("_groupcache._tcp.svc.{DOMAIN},a.{DOMAIN},{port}"),
        format!("_groupcache._tcp.svc.{DOMAIN},b.{DOMAIN},{port}"),
        format!("_groupcache._tcp.svc.{DOMAIN},b.{DOMAIN},{}", port + 1),
    ];
    let srv: Vec<&str> = srv.iter().map(String::as_str).collect();
    let dns = Dnsmasq::start(&hosts_text, &srv);
    let spec = format!("dns+srv+http://_groupcache._tcp.svc.{DOMAIN}");
    let o = dns_opts(&spec, &dns);
    let nodes = vec![
        Node::at(&format!("{}:{port}", ips[0]), o.clone()).unwrap(),
        Node::at(&format!("{}:{port}", ips[1]), o.clone()).unwrap(),
        Node::at(&format!("{}:{}", ips[1], port + 1), o).unwrap(),
    ];
    let mut want = vec![
        format!("http://{}:{port}", ips[0]),
        format!("http://{}:{port}", ips[1]),
        format!("http://{}:{}", ips[1], port + 1),
    ];
    want.sort();
    for n in &nodes {
        assert_eq!(n.pool.peers(), want);
    }
    assert_loaded_once(&nodes, &want, &dns_keys(40));
}

#[test]
fn aaaa_records_are_peers_too() {
    let ips = ["127.0.2.41", "::1"];
    let dns = Dnsmasq::start(&hosts("dual", &ips), &[]);
    let port = common_port(&ips, 1);
    let spec = format!("dns+http://dual.{DOMAIN}:{port}");
    let nodes = vec![
        Node::at(&format!("127.0.2.41:{port}"), dns_opts(&spec, &dns)).unwrap(),
        Node::at(&format!("[::1]:{port}"), dns_opts(&spec, &dns)).unwrap(),
    ];
    let want = urls(&ips, port, 1);
    assert!(want.contains(&format!("http://[::1]:{port}")), "{want:?}");
    for n in &nodes {
        assert_eq!(n.pool.peers(), want);
    }
    assert_loaded_once(&nodes, &want, &dns_keys(40));
}

#[test]
fn hosts_file_answers_before_the_server() {
    // /etc/hosts (read, never written, by this test) names localhost
    // 127.0.0.1; the server would say 127.0.9.9.
    let etc_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(
        etc_hosts
            .lines()
            .any(|l| l.split_whitespace().next() == Some("127.0.0.1")
                && l.split_whitespace().any(|w| w == "localhost")),
        "this test needs /etc/hosts to map localhost to 127.0.0.1"
    );
    let dns = Dnsmasq::start("127.0.9.9 localhost\n::1 localhost\n", &[]);
    let node = Node::at("127.0.0.1:0", PoolOptions::default()).unwrap();
    let port = node.addr().port();
    let pool = Pool::new(
        "127.0.2.61:0",
        None,
        dns_opts(&format!("dns+http://localhost:{port}"), &dns),
    )
    .unwrap();
    let peers = pool.peers();
    assert!(peers.contains(&format!("http://127.0.0.1:{port}")), "{peers:?}");
    assert!(!peers.iter().any(|u| u.contains("127.0.9.9")), "{peers:?}");
}

#[test]
fn set_peers_and_peers_from_do_not_mix_and_bad_specs_fail_at_creation() {
    let dns = Dnsmasq::start(&hosts("one", &["127.0.2.62"]), &[]);
    let spec = format!("dns+http://one.{DOMAIN}:8001");
    let pool = Pool::new("127.0.2.62:0", None, dns_opts(&spec, &dns)).unwrap();
    match pool.set_peers(&[pool.url().to_string()]) {
        Err(PoolError::InvalidArgument(m)) => {
            assert!(m.contains("peers from DNS") && m.contains(&spec), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.peers(), vec!["http://127.0.2.62:8001".to_string()]);
    for (spec, why) in [
        ("dns+http://one.dns.test", "a port is needed"),
        ("http://one.dns.test:80", "unknown scheme"),
        ("dns+http://one.dns.test:9-1", "is empty"),
    ] {
        let o = PoolOptions {
            peers_from: Some(spec.into()),
            ..PoolOptions::default()
        };
        match Pool::new("127.0.2.62:0", None, o) {
            Err(PoolError::InvalidArgument(m)) => assert!(m.contains(why), "{spec}: {m}"),
            other => panic!("{spec}: {other:?}"),
        }
    }
    let o = PoolOptions {
        peers_from: Some(spec),
        peers_refresh: Duration::from_millis(99),
        ..PoolOptions::default()
    };
    assert!(
        matches!(Pool::new("127.0.2.62:0", None, o), Err(PoolError::InvalidArgument(m)) if m.contains("peers_refresh"))
    );
}

#[test]
fn a_get_in_flight_finishes_against_the_owner_it_started_with() {
    let ips = ["127.0.2.51", "127.0.2.52"];
    let dns = Dnsmasq::start(&hosts("flight", &ips), &[]);
    let port = common_port(&ips, 1);
    let spec = format!("dns+http://flight.{DOMAIN}:{port}");
    let nodes = Arc::new(nodes_at(&ips, port, 1, &dns_opts(&spec, &dns)));
    let both = urls(&ips, port, 1);
    // A key node 1 owns, whose load there takes a while.
    let k = keys_owned_by(&both, 1, 1, "flight-").remove(0);
    nodes[1]
        .loader
        .delay_ms
        .store(1500, std::sync::atomic::Ordering::SeqCst);
    let asker = {
        let (nodes, k) = (nodes.clone(), k.clone());
        std::thread::spawn(move || nodes[0].group.get(&k))
    };
    assert!(eventually(Duration::from_secs(5), || nodes[1].loads(&k) == 1));
    // Node 1 leaves DNS while node 0's get waits on it.
    dns.set_hosts(&hosts("flight", &ips[..1]));
    assert!(eventually(REFRESH * 10, || nodes[0].pool.peers() == urls(&ips[..1], port, 1)));
    assert_eq!(asker.join().unwrap().unwrap(), value_for(1, &k));
    // Answered by node 1, as it started: node 0 did not load it.
    assert_eq!((nodes[0].loads(&k), nodes[1].loads(&k)), (0, 1));
    assert_eq!(nodes[0].group.stats().peer_errors, 0);
}
