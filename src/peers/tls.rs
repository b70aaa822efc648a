//! TLS between nodes: the certificates a pool serves and presents, read
//! from PEM files and read again when the files change.
//!
//! rustls with the ring provider, on both sides:
//!
//! - `tls_cert` (the node's certificate chain, leaf first) and `tls_key`
//!   (its private key: PKCS#8, PKCS#1 or SEC1): the server serves https
//!   with them, and the client presents the same certificate to peers that
//!   ask for one (so a node's certificate needs both the serverAuth and
//!   clientAuth uses, or none).
//! - `tls_ca` (one or more CA certificates): the client accepts a peer
//!   only with a certificate chain to one of them, for the host of the
//!   peer's URL (a DNS name or IP address in its subjectAltName); and the
//!   server asks every client for such a certificate (mutual TLS). Without
//!   it the client checks peers against the system's trust store
//!   (SSL_CERT_FILE / SSL_CERT_DIR honoured) and the server asks for no
//!   client certificate.
//! - `tls_server_name`: the name every peer's certificate is checked
//!   against, in place of the host of its URL (chain, validity and usage
//!   are checked as ever; the connection still goes to the URL's address).
//!   For membership from DNS, whose URLs are pod IPs that a shared
//!   certificate cannot name. It is part of the `Tls`, whose `id` keys the
//!   keep-alive connections: a connection checked against one name is
//!   never reused by a pool that checks another.
//!
//! Mutual TLS and clients without a certificate: with `tls_ca` the server
//! asks for a client certificate but lets a client that presents none
//! finish the handshake, so that a readiness probe (kubelet's httpGet with
//! `scheme: HTTPS`, which has no certificate) can reach `/healthz`; such a
//! connection is answered `GET`/`HEAD /healthz` only, everything else 403
//! before its body is read (see `server::route`). A client that presents a
//! certificate that does not verify (another CA, expired, no clientAuth
//! use) still fails the handshake.
//!
//! Rotation: when a connection is made (accepted or opened), and at most
//! once per [`CHECK_EVERY`], the three files are looked at (`stat`, which
//! follows symlinks, as Kubernetes' atomic secret updates use). When one
//! changed, all are read again and new connections use them; connections
//! already open keep theirs. Files that do not load (half written, a key
//! that does not match the certificate, ...) leave the last good ones in
//! use and are logged once, until they change again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};

/// How often the files are looked at, at most (when connections are made).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The files of a node's TLS identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    /// The name peers' certificates must carry (`tls_server_name`); none:
    /// the host of each peer's URL.
    pub server_name: Option<String>,
}

/// What one reading of the files made.
struct Loaded {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    /// SHA-256 of the node's leaf certificate, hex: for logs and tests.
    fingerprint: String,
}

/// What `stat` says of a file: (device, inode, size, mtime ns); `None`
/// if it cannot be read.
type Stamp = Option<(u64, u64, u64, i128)>;

fn stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    ))
}

/// The stamps of the certificate, key and CA files.
fn stamps(files: &TlsFiles) -> [Stamp; 3] {
    [
        stamp(&files.cert),
        stamp(&files.key),
        files.ca.as_deref().and_then(stamp),
    ]
}

struct Watch {
    checked: Instant,
    /// The files as last read (loaded or not).
    seen: [Stamp; 3],
}

/// A node's TLS configuration, shared by its server and client.
pub(crate) struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
    watch: Mutex<Watch>,
    /// Distinct for every `Tls` of the process: keeps the keep-alive
    /// connections of nodes with different identities (or different
    /// `server_name`s) apart.
    id: u64,
    /// `files.server_name`, checked.
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &str, p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(p)
        .map_err(|e| format!("{what} {}: {e}", p.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", p.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", p.display()));
    }
    Ok(certs)
}

/// Reads the files and makes both configurations.
fn load(files: &TlsFiles) -> Result<Loaded, String> {
    let chain = read_certs("tls_cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("tls_key {}: {e}", files.key.display()))?;
    let mut fingerprint = String::with_capacity(64);
    super::auth::hex_into(&Sha256::digest(chain[0].as_ref()), &mut fingerprint);
    let provider = provider();
    // TLS 1.3 only, named here: DEFAULT_VERSIONS would add 1.2 as soon as
    // any crate in the build turned on rustls's tls12 feature.
    let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let roots = match &files.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs("tls_ca", ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("tls_ca {}: {e}", ca.display()))?;
            }
            roots
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(
                    "no tls_ca, and the system's trust store has no certificate to check peers with"
                        .to_string(),
                );
            }
            roots
        }
    };
    let roots = Arc::new(roots);
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS: {e}"))?;
    let server = if files.ca.is_some() {
        // A client without a certificate finishes the handshake (for
        // readiness probes) and is then served /healthz only (see
        // `server::route`); one whose certificate fails is refused here.
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("tls_ca: {e}"))?;
        server.with_client_cert_verifier(verifier)
    } else {
        server.with_no_client_auth()
    };
    let server = server
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| {
            format!(
                "tls_cert {} with tls_key {}: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("tls_cert with tls_key: {e}"))?;
    Ok(Loaded {
        server: Arc::new(server),
        client: Arc::new(client),
        fingerprint,
    })
}

impl Tls {
    /// Reads the files; an error says which one and why.
    pub(crate) fn load(files: TlsFiles) -> Result<Arc<Tls>, String> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let server_name = match &files.server_name {
            Some(n) => Some(checked_server_name(n)?),
            None => None,
        };
        let seen = stamps(&files);
        let loaded = load(&files)?;
        log::debug!(
            "TLS: certificate {} (sha256 {}) loaded",
            files.cert.display(),
            loaded.fingerprint
        );
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(loaded)),
            watch: Mutex::new(Watch {
                checked: Instant::now(),
                seen,
            }),
            id: IDS.fetch_add(1, Ordering::Relaxed),
            server_name,
        }))
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The name the certificate of the peer at `host` (its URL's host)
    /// must carry: `tls_server_name` if set, else `host`.
    pub(crate) fn peer_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.server_name {
            Some(n) => Ok(n.clone()),
            None => server_name(host),
        }
    }

    /// Whether the server asks clients for a certificate (`tls_ca`): a
    /// connection without one is then served `/healthz` only.
    pub(crate) fn mutual(&self) -> bool {
        self.files.ca.is_some()
    }

    fn current(&self) -> Arc<Loaded> {
        self.refresh();
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The server's configuration for a new connection.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server.clone()
    }

    /// The client's configuration for a new connection.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// Reads the files again if they changed (see the module docs). One
    /// caller at a time looks; the others go on with what is loaded.
    fn refresh(&self) {
        let Ok(mut w) = self.watch.try_lock() else {
            return;
        };
        if w.checked.elapsed() < CHECK_EVERY {
            return;
        }
        w.checked = Instant::now();
        let now = stamps(&self.files);
        if now == w.seen {
            return;
        }
        // Taken before reading: a file that changes while it is read
        // changes its stamp again, and is read again next time.
        w.seen = now;
        let old = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fingerprint
            .clone();
        match load(&self.files) {
            Ok(l) => {
                log::info!(
                    "TLS: {} changed: new connections use certificate sha256 {} (was {old})",
                    self.files.cert.display(),
                    l.fingerprint
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(l);
            }
            Err(e) => log::warn!(
                "TLS: the changed files do not load ({e}); still using certificate sha256 {old} \
                 until they change again"
            ),
        }
    }
}

/// The name a peer's certificate must carry: the host of its URL, a DNS
/// name or an IP address (brackets of an IPv6 literal removed).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string()).map_err(|e| format!("{host:?} is not a name TLS can check: {e}"))
}

/// `tls_server_name`, checked: a DNS name (or an IP address) that TLS can
/// verify a certificate against.
pub(crate) fn checked_server_name(name: &str) -> Result<ServerName<'static>, String> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    if name.is_empty() || name != name.trim() || name.contains(['/', ':', '[', ']']) {
        return Err(format!(
            "tls_server_name {name:?}: a DNS name such as groupcache-peers is needed"
        ));
    }
    ServerName::try_from(name.to_string())
        .map_err(|e| format!("tls_server_name {name:?} is not a name TLS can check: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("node-a.example").is_ok());
        assert!(server_name("bad name").is_err());
        assert!(checked_server_name("groupcache-peers").is_ok());
        assert!(checked_server_name("groupcache-peers.ns.svc.cluster.local").is_ok());
        assert!(checked_server_name("::1").is_ok());
        for bad in ["", " x", "bad name", "a:1", "https://a", "[::1]"] {
            assert!(checked_server_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_files_are_named() {
        let e = Tls::load(TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            ca: None,
            server_name: None,
        })
        .unwrap_err();
        assert!(e.contains("tls_cert /nonexistent/cert.pem"), "{e}");
    }
}
