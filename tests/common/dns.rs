//! A real DNS server on loopback for the `peers_from` tests: Debian's
//! dnsmasq (installed by `make test-rust`, as `.ci/run` runs it), serving
//! an addn-hosts file (edited, then re-read on SIGHUP) and SRV records,
//! answering NXDOMAIN for other names under its domain and forwarding
//! nothing anywhere.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The domain the tests' names live in.
pub const DOMAIN: &str = "dns.test";

pub struct Dnsmasq {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: PathBuf,
    /// `--srv-host` values (`_service._proto.name,target,port`).
    srv: Vec<String>,
}

fn dnsmasq_path() -> String {
    for p in ["/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq"] {
        if std::path::Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("dnsmasq is not installed: `make test-rust` installs it (apt-get install dnsmasq-base)");
}

/// A port free for both UDP and TCP on 127.0.0.1 (for a moment).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Dnsmasq {
    /// Starts a server with `hosts` (lines "ADDRESS NAME") as its
    /// addn-hosts file and `srv` as SRV records.
    pub fn start(hosts: &str, srv: &[&str]) -> Dnsmasq {
        let dir = std::env::temp_dir().join(format!(
            "gc-dnsmasq-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Dnsmasq {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir,
            srv: srv.iter().map(|s| s.to_string()).collect(),
        };
        d.write_hosts(hosts);
        d.run();
        d
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    fn write_hosts(&self, hosts: &str) {
        let tmp = self.dir.join("hosts.tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(hosts.as_bytes()).unwrap();
        drop(f);
        std::fs::rename(&tmp, self.hosts_path()).unwrap();
    }

    fn run(&mut self) {
        let mut cmd = Command::new(dnsmasq_path());
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
            "--local-ttl=0",
        ])
        .arg(format!("--port={}", self.addr.port()))
        .arg(format!("--local=/{DOMAIN}/"))
        .arg(format!("--addn-hosts={}", self.hosts_path().display()));
        for s in &self.srv {
            cmd.arg(format!("--srv-host={s}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq");
        self.child = Some(child);
        // Ready when its TCP port accepts (it binds UDP and TCP together).
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dnsmasq on {} exited: {st}", self.addr);
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq on {} did not start",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces the hosts file and has dnsmasq, if running, read it again
    /// (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        self.write_hosts(hosts);
        let Some(child) = &self.child else { return };
        let pid = child.id();
        // SAFETY: kill(2) on our own child, which has not been waited for
        // (so the pid is still its own).
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0, "SIGHUP to dnsmasq");
    }

    /// Stops the server (lookups then time out or are refused).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, with the current files.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// `nameserver` for pools: this server.
    pub fn nameserver(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// "ADDRESS NAME" lines, one per address, for `name` under [`DOMAIN`].
pub fn hosts(name: &str, addrs: &[&str]) -> String {
    addrs.iter().map(|a| format!("{a} {name}.{DOMAIN}\n")).collect()
}
