//! Membership from DNS (`peers_from`): the spec, and one round of lookups
//! that turns it into the sorted, deduplicated list of peer URLs every
//! node computes alike.
//!
//! Specs:
//! - `dns+http://NAME:PORT`: one URL `http://ADDR:PORT` per A and AAAA
//!   record of NAME;
//! - `dns+http://NAME:FIRST-LAST`: a port range, one URL per address per
//!   port (several worker processes per host, each a node on its own port);
//! - `dns+srv+http://_service._proto.NAME`: one URL per SRV record's
//!   target address and port;
//! - `https` in place of `http` in each: the same with `https://` URLs.
//!
//! Lookups use hickory-resolver, configured from /etc/resolv.conf
//! (nameservers, search domains, ndots) and answering from /etc/hosts
//! first, both read again at every round (as the C library reads them at
//! every lookup), and caching nothing: each round asks the server.
//! `nameserver` (GROUPCACHE_NAMESERVER) replaces resolv.conf's servers.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

/// The most ports a range may span (a host runs that many nodes at most).
pub const MAX_PORTS: usize = 1024;

/// The most URLs one round may produce: past it the answer is refused (a
/// misconfigured name should not build a ring of a million nodes).
pub const MAX_URLS: usize = 65_536;

/// How long one DNS query waits for an answer, and how often it is sent.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_ATTEMPTS: usize = 2;

/// Where the peers come from: a parsed `peers_from` spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSource {
    /// The spec as given, for messages.
    pub spec: String,
    /// "http" or "https": the scheme of the URLs made.
    pub scheme: &'static str,
    /// The name looked up, as given (search domains apply unless it ends
    /// with a dot).
    pub name: String,
    pub kind: SourceKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A and AAAA records of the name; each address with each port of
    /// `first..=last`.
    Addresses { first: u16, last: u16 },
    /// SRV records of the name: target addresses with the record's port.
    Srv,
}

/// Checks a DNS name: dot-separated labels of letters, digits, '-' and
/// '_' (SRV names start with `_service._proto.`), at most 63 bytes each
/// and 253 in all, with an optional final dot.
fn check_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("no name to look up".into());
    }
    if bare.len() > 253 {
        return Err(format!("the name is {} bytes long; DNS allows 253", bare.len()));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Err(format!(
                "{name:?} has an empty label (two dots in a row, or a leading dot)"
            ));
        }
        if label.len() > 63 {
            return Err(format!("the label {label:?} is longer than DNS's 63 bytes"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "{name:?} contains {c:?}; a DNS name has letters, digits, '-', '_' and dots"
            ));
        }
    }
    Ok(())
}

fn parse_port(s: &str, spec: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "peers_from {spec:?}: the port {s:?} is not a number from 1 to 65535"
        )),
    }
}

impl PeerSource {
    /// Parses a spec (see the module documentation); the error names what
    /// is wrong with it.
    pub fn parse(spec: &str) -> Result<PeerSource, String> {
        let bad = |why: &str| Err(format!("peers_from {spec:?}: {why}"));
        let Some((scheme, rest)) = spec.split_once("://") else {
            return bad("expected dns+http://NAME:PORT, dns+https://NAME:PORT or dns+srv+http://NAME");
        };
        let (srv, scheme) = match scheme {
            "dns+http" => (false, "http"),
            "dns+https" => (false, "https"),
            "dns+srv+http" => (true, "http"),
            "dns+srv+https" => (true, "https"),
            _ => {
                return bad(&format!(
                    "unknown scheme {scheme:?}; use dns+http, dns+https, dns+srv+http or dns+srv+https"
                ))
            }
        };
        // A trailing '/' is harmless; any other path, a query or user
        // info would be silently dropped from the peer URLs: refused.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(c) = rest
            .chars()
            .find(|c| matches!(c, '/' | '?' | '#' | '@' | '[' | ']'))
        {
            return bad(&format!(
                "{c:?} is not allowed: the spec is a name and a port, without path, query, user or IP literal"
            ));
        }
        let (name, kind) = if srv {
            if rest.contains(':') {
                return bad("an SRV spec takes no port: the SRV records give each target's port");
            }
            (rest, SourceKind::Srv)
        } else {
            let Some((name, ports)) = rest.rsplit_once(':') else {
                return bad("a port is needed: dns+http://NAME:PORT or NAME:FIRST-LAST");
            };
            let (first, last) = match ports.split_once('-') {
                Some((a, b)) => (parse_port(a, spec)?, parse_port(b, spec)?),
                None => {
                    let p = parse_port(ports, spec)?;
                    (p, p)
                }
            };
            if first > last {
                return bad(&format!("the port range {first}-{last} is empty (first > last)"));
            }
            if (last - first) as usize + 1 > MAX_PORTS {
                return bad(&format!(
                    "the port range {first}-{last} has more than {MAX_PORTS} ports"
                ));
            }
            (name, SourceKind::Addresses { first, last })
        };
        if let Err(why) = check_name(name) {
            return bad(&why);
        }
        if srv && !name.starts_with('_') {
            return bad("an SRV name starts with _service._proto. (e.g. _groupcache._tcp.NAME)");
        }
        Ok(PeerSource {
            spec: spec.to_string(),
            scheme,
            name: name.to_string(),
            kind,
        })
    }

    /// The peer URL of `ip` and `port`, as a node's default self URL
    /// spells it (`http://127.0.0.1:8001`, `http://[::1]:8001`).
    fn url(&self, ip: IpAddr, port: u16) -> String {
        format!("{}://{}", self.scheme, SocketAddr::new(ip, port))
    }

    /// One round: the peer URLs, sorted and deduplicated, or why there are
    /// none (a failed lookup, or an answer with no address). Runs on a
    /// tokio runtime. `refresh` bounds each query's wait (see
    /// [`query_timeout`]).
    pub async fn resolve(
        &self,
        nameserver: Option<SocketAddr>,
        refresh: Duration,
    ) -> Result<Vec<String>, String> {
        let resolver = build_resolver(nameserver, query_timeout(refresh)).await?;
        let mut urls = BTreeSet::new();
        match self.kind {
            SourceKind::Addresses { first, last } => {
                for ip in addresses(&resolver, &self.name).await? {
                    for port in first..=last {
                        urls.insert(self.url(ip, port));
                    }
                    if urls.len() > MAX_URLS {
                        return Err(format!("{} gives more than {MAX_URLS} peers", self.name));
                    }
                }
            }
            SourceKind::Srv => {
                let lookup = resolver
                    .lookup(self.name.as_str(), RecordType::SRV)
                    .await
                    .map_err(|e| lookup_error(&self.name, "SRV", &e))?;
                let mut targets = BTreeSet::new();
                for r in lookup.answers() {
                    if let RData::SRV(srv) = &r.data {
                        // A target of "." says the service is not offered there.
                        if !srv.target.is_root() {
                            targets.insert((srv.target.to_ascii(), srv.port));
                        }
                    }
                }
                if targets.is_empty() {
                    return Err(format!("{} has no SRV record with a target", self.name));
                }
                for (target, port) in targets {
                    if port == 0 {
                        return Err(format!("the SRV record for {target} has port 0"));
                    }
                    for ip in addresses(&resolver, &target).await? {
                        urls.insert(self.url(ip, port));
                    }
                    if urls.len() > MAX_URLS {
                        return Err(format!("{} gives more than {MAX_URLS} peers", self.name));
                    }
                }
            }
        }
        Ok(urls.into_iter().collect())
    }
}

/// Parses GROUPCACHE_NAMESERVER's `IP:PORT` (or `IP`, port 53; `[v6]:PORT`).
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "nameserver {s:?}: expected IP:PORT (e.g. 127.0.0.1:5353 or [::1]:53) or an IP"
    ))
}

/// How long one DNS query waits for its answer: half the refresh interval,
/// between 100 ms and [`QUERY_TIMEOUT`] (2 s at the default 5 s refresh),
/// so that a round against a dead server ends in about one interval (two
/// attempts) and a failure is noticed as soon as the refresh allows.
pub fn query_timeout(refresh: Duration) -> Duration {
    (refresh / 2).clamp(Duration::from_millis(100), QUERY_TIMEOUT)
}

/// A resolver for one round: resolv.conf and /etc/hosts as they are now.
async fn build_resolver(nameserver: Option<SocketAddr>, timeout: Duration) -> Result<TokioResolver, String> {
    // It reads two small files: off the runtime's workers.
    tokio::task::spawn_blocking(move || make_resolver(nameserver, timeout))
        .await
        .map_err(|e| format!("making a resolver: {e}"))?
}

fn make_resolver(nameserver: Option<SocketAddr>, timeout: Duration) -> Result<TokioResolver, String> {
    let system = hickory_resolver::system_conf::read_system_conf();
    let (config, mut opts) = match (system, nameserver) {
        (Ok((config, opts)), None) => (config, opts),
        (Err(e), None) => return Err(format!("reading /etc/resolv.conf: {e}")),
        (system, Some(addr)) => {
            // The override replaces the servers only: search domains and
            // options stay as resolv.conf says, when it can be read.
            let (config, opts) =
                system.unwrap_or_else(|_| (ResolverConfig::default(), ResolverOpts::default()));
            let (domain, search, _) = config.into_parts();
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut server.connections {
                c.port = addr.port();
            }
            (ResolverConfig::from_parts(domain, search, vec![server]), opts)
        }
    };
    opts.timeout = timeout;
    opts.attempts = QUERY_ATTEMPTS;
    // Every round asks the server: membership follows the records within
    // one refresh, whatever their TTL.
    opts.cache_size = 0;
    // /etc/hosts first (read by `build`), as the C library does.
    opts.use_hosts_file = ResolveHosts::Always;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| format!("making a resolver: {e}"))
}

/// Whether an error only says "no records of this type" (the name exists
/// with other types, or does not exist at all): an empty answer, not a
/// failure of the lookup.
fn is_empty_answer(e: &NetError) -> bool {
    e.is_no_records_found()
}

fn lookup_error(name: &str, what: &str, e: &NetError) -> String {
    if e.is_nx_domain() {
        format!("{name} does not exist (NXDOMAIN)")
    } else if e.is_no_records_found() {
        format!("{name} has no {what} record")
    } else {
        format!("looking up {what} records of {name}: {e}")
    }
}

/// The A and AAAA addresses of `name`. Both lookups must succeed (an empty
/// answer counts as success): a round that saw only one family would give
/// a membership that other nodes do not compute.
async fn addresses(resolver: &TokioResolver, name: &str) -> Result<BTreeSet<IpAddr>, String> {
    let (v4, v6) = tokio::join!(
        resolver.lookup(name, RecordType::A),
        resolver.lookup(name, RecordType::AAAA)
    );
    let mut ips = BTreeSet::new();
    let mut nx = None;
    for (res, what) in [(v4, "A"), (v6, "AAAA")] {
        match res {
            Ok(lookup) => ips.extend(lookup.answers().iter().filter_map(|r| r.data.ip_addr())),
            Err(e) if is_empty_answer(&e) => nx = Some(lookup_error(name, what, &e)),
            Err(e) => return Err(lookup_error(name, what, &e)),
        }
    }
    if ips.is_empty() {
        return Err(match nx {
            Some(m) if m.ends_with("(NXDOMAIN)") => m,
            _ => format!("{name} has no A or AAAA record"),
        });
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> PeerSource {
        PeerSource::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn err(spec: &str) -> String {
        PeerSource::parse(spec).expect_err(spec)
    }

    #[test]
    fn a_query_waits_half_the_refresh_within_bounds() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(query_timeout(ms(5000)), ms(2000)); // the default refresh
        assert_eq!(query_timeout(ms(60_000)), ms(2000));
        assert_eq!(query_timeout(ms(1000)), ms(500));
        assert_eq!(query_timeout(ms(100)), ms(100));
    }

    #[test]
    fn specs_that_parse() {
        let s = ok("dns+http://cache.example:8001");
        assert_eq!(
            (s.scheme, s.name.as_str(), &s.kind),
            (
                "http",
                "cache.example",
                &SourceKind::Addresses {
                    first: 8001,
                    last: 8001
                }
            )
        );
        let s = ok("dns+http://cache:8001-8004/");
        assert_eq!(
            s.kind,
            SourceKind::Addresses {
                first: 8001,
                last: 8004
            }
        );
        let s = ok("dns+https://cache.ns.svc.cluster.local.:443");
        assert_eq!(
            (s.scheme, s.name.as_str()),
            ("https", "cache.ns.svc.cluster.local.")
        );
        let s = ok("dns+srv+http://_groupcache._tcp.cache.example");
        assert_eq!((s.scheme, &s.kind), ("http", &SourceKind::Srv));
        assert_eq!(ok("dns+srv+https://_gc._tcp.x").scheme, "https");
        assert_eq!(ok("dns+http://localhost:1").name, "localhost");
    }

    #[test]
    fn specs_that_do_not_parse_say_why() {
        for (spec, why) in [
            ("cache.example:8001", "expected dns+http://"),
            ("http://cache:8001", "unknown scheme \"http\""),
            ("dns+ftp://cache:8001", "unknown scheme"),
            ("dns+http://cache", "a port is needed"),
            ("dns+http://cache:", "the port \"\""),
            ("dns+http://cache:0", "the port \"0\""),
            ("dns+http://cache:65536", "the port \"65536\""),
            ("dns+http://cache:80x", "the port \"80x\""),
            ("dns+http://cache:8004-8001", "is empty"),
            ("dns+http://cache:1-2000", "more than 1024 ports"),
            ("dns+http://cache:8001-", "the port \"\""),
            ("dns+http://:8001", "no name"),
            ("dns+http://a..b:8001", "empty label"),
            ("dns+http://.a:8001", "empty label"),
            ("dns+http://ca che:8001", "contains ' '"),
            ("dns+http://cache:8001/path", "'/' is not allowed"),
            ("dns+http://cache:8001?x=1", "'?' is not allowed"),
            ("dns+http://user@cache:8001", "'@' is not allowed"),
            ("dns+http://[::1]:8001", "'[' is not allowed"),
            ("dns+srv+http://_gc._tcp.x:8001", "takes no port"),
            ("dns+srv+http://cache.example", "starts with _service._proto."),
        ] {
            let e = err(spec);
            assert!(e.contains(why), "{spec}: {e:?} lacks {why:?}");
            assert!(e.starts_with(&format!("peers_from {spec:?}")), "{e}");
        }
        let long = format!("dns+http://{}:1", "a".repeat(64));
        assert!(err(&long).contains("63 bytes"));
        let longer = format!("dns+http://{}:1", ["abc"; 80].join("."));
        assert!(err(&longer).contains("253"));
    }

    #[test]
    fn urls_as_default_self_urls_spell_them() {
        let s = ok("dns+https://x:8443");
        assert_eq!(
            s.url("127.0.2.1".parse().unwrap(), 8443),
            "https://127.0.2.1:8443"
        );
        assert_eq!(s.url("::1".parse().unwrap(), 8443), "https://[::1]:8443");
    }

    #[test]
    fn nameservers() {
        assert_eq!(
            parse_nameserver("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("[::1]:5353").unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        assert!(parse_nameserver("localhost:53")
            .unwrap_err()
            .contains("expected IP:PORT"));
        assert!(parse_nameserver("").is_err());
    }
}
