//! The test process itself: a test run in a process of its own, counts of
//! this process's threads and fds, and a node in a child process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{opts, spawn_named, Node};

// ---------------------------------------------------------------- own process

/// Set in a re-run of this binary to the name of the test it is for.
const OWN_PROCESS_ENV: &str = "GC_TEST_OWN_PROCESS";

/// Tests in processes of their own run one at a time (as when they had a
/// binary each), so that their timing bounds need not allow for another.
static OWN_PROCESS: Mutex<()> = Mutex::new(());

/// The name libtest knows a test by: `f` in module `module` (its
/// `module_path!()`), without the crate's name, e.g.
/// "reliability_peers::child_node" (for `--exact`).
pub fn harness_name(module: &str, f: &str) -> String {
    let path = module.split_once("::").map_or("", |(_, p)| p);
    if path.is_empty() {
        f.to_string()
    } else {
        format!("{path}::{f}")
    }
}

/// Runs `body` in a process of its own: this test binary re-run with the
/// calling test alone. For a test that counts this process's threads and
/// fds, or forks: in the shared process other tests' threads, sockets and
/// locks come and go. Call it as the whole body of a `#[test]`; the test is
/// known by its thread's name (libtest names the thread after the test).
/// The child's output is passed on (shown with `--nocapture` or on failure).
pub fn in_own_process(body: impl FnOnce()) {
    let me = std::thread::current();
    let name = me
        .name()
        .filter(|n| *n != "main")
        .expect("in_own_process runs as a test's body, on the thread libtest names after the test")
        .to_string();
    if std::env::var(OWN_PROCESS_ENV).as_deref() == Ok(name.as_str()) {
        body();
        return;
    }
    let _one = OWN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OWN_PROCESS_ENV, &name)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprint!("{stderr}");
    // The child ran exactly this test, and it passed (a filter that
    // matched nothing would pass too).
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} in its own process: {}\n{stdout}",
        out.status
    );
}

// ---------------------------------------------------------------- accounting

pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Threads of this process whose name starts with one of `prefixes`.
pub fn threads_named(prefixes: &[&str]) -> usize {
    let Ok(d) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    d.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|c| prefixes.iter().any(|p| c.starts_with(p)))
        .count()
}

/// The library's threads (pool runtimes, server workers) and ours
/// (helpers are named "rel-...", see [`spawn_named`]).
pub fn lib_threads() -> usize {
    threads_named(&["gcpool-", "gcwork-", "gcwatch-", "tokio-", "rel-"])
}

/// Snapshot of fds and library threads; `settled` waits (up to `within`)
/// until both are back to at most the snapshot. Meaningful only in a
/// process of its own ([`in_own_process`]).
pub struct Baseline {
    pub fds: usize,
    pub threads: usize,
}

impl Baseline {
    pub fn take() -> Baseline {
        Baseline {
            fds: fd_count(),
            threads: lib_threads(),
        }
    }

    /// Panics with a description if fds or threads stay above the baseline.
    pub fn assert_settled(&self, what: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let (f, t) = (fd_count(), lib_threads());
            if f <= self.fds && t <= self.threads {
                return;
            }
            if Instant::now() > end {
                let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter_map(|e| std::fs::read_link(e.path()).ok())
                            .map(|p| p.display().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                panic!(
                    "{what}: leak: fds {} -> {f}, library threads {} -> {t}; fds now: {fds:?}",
                    self.fds, self.threads
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------- child node

/// Env var that turns the `child_node` test into a node.
const CHILD_ENV: &str = "GC_RELIABILITY_CHILD";

/// A node in a child process (this test binary re-run as `child_node`),
/// killable with SIGKILL.
pub struct ChildNode {
    pub child: Child,
    pub url: String,
}

impl ChildNode {
    /// A node whose loader takes `delay_ms` per load.
    pub fn spawn(delay_ms: u64) -> ChildNode {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                &harness_name(module_path!(), "child_node"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, delay_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("child node exited before printing its URL")
                .unwrap();
            // libtest prints "test ...child_node ... " before it, same line.
            if let Some(i) = line.find("NODE ") {
                break line[i + 5..].trim().to_string();
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        spawn_named("child-out", move || for _ in lines {});
        ChildNode { child, url }
    }

    pub fn kill9(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Not a test: with `CHILD_ENV` set (by [`ChildNode::spawn`]), serves
/// group "g" (loader delay from the variable) until killed.
#[test]
#[ignore = "not a test: the body of a child process ChildNode::spawn starts"]
fn child_node() {
    let delay = std::env::var(CHILD_ENV).unwrap_or_else(|_| {
        panic!("{CHILD_ENV} is not set: child_node runs only as ChildNode::spawn's child")
    });
    let node = Node::new(opts(2000));
    node.loader
        .delay_ms
        .store(delay.parse().unwrap_or(0), Ordering::SeqCst);
    println!("NODE {}", node.pool.url());
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
