//! Group and key escaping: the functions, and keys going through a real
//! two-node cluster unchanged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::escape::{escape, unescape};
use groupcache::peers::{Pool, PoolOptions};

fn tricky() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        &b""[..],
        b"/",
        b"a/b/c",
        b"/lead",
        b"trail/",
        b" ",
        b"a b",
        b"+",
        b"a+b",
        b"%",
        b"%20",
        b"%2B",
        b"100% sure",
        "é".as_bytes(),
        "日本語 / ☃".as_bytes(),
        b"\xff\xfe\x00",
        b"?query=1&x=2#frag",
        b"..",
        b"./..",
        b"~-._",
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    v.push((0..=255u8).collect());
    v
}

#[test]
fn escape_round_trips() {
    for k in tricky() {
        let e = escape(&k);
        assert!(
            e.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{e}"
        );
        assert_eq!(unescape(e.as_bytes()).unwrap(), k);
    }
    assert_eq!(escape(b"a b+c/d%"), "a%20b%2Bc%2Fd%25");
    // What golang/groupcache's client (url.QueryEscape) sends decodes too.
    assert_eq!(unescape(b"a+b%2Bc%2Fd%25").unwrap(), b"a b+c/d%");
}

struct Echo(Mutex<Vec<Vec<u8>>>);

impl Getter for Echo {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        self.0.lock().unwrap().push(key.to_vec());
        let mut v = b"echo:".to_vec();
        v.extend_from_slice(key);
        sink.set(&v, 0)
    }
}

#[test]
fn keys_reach_the_owner_unchanged() {
    let opts = PoolOptions {
        worker_threads: 1,
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let owner_seen = Arc::new(Echo(Mutex::new(Vec::new())));
    let owner_group = Group::new(
        "odd group name é",
        1 << 20,
        Some(owner_seen.clone() as Arc<dyn Getter>),
    );
    let owner = Pool::new("127.0.0.1:0", None, opts.clone()).unwrap();
    owner.register(owner_group.clone()).unwrap();
    owner.set_peers(&[owner.url().to_string()]).unwrap();

    // The asking node is not in the list, so it sends every key to the owner.
    let asker_seen = Arc::new(Echo(Mutex::new(Vec::new())));
    let asker_group = Group::new(
        "odd group name é",
        1 << 20,
        Some(asker_seen.clone() as Arc<dyn Getter>),
    );
    let asker = Pool::new("127.0.0.1:0", None, opts).unwrap();
    asker.register(asker_group.clone()).unwrap();
    asker.set_peers(&[owner.url().to_string()]).unwrap();

    for k in tricky() {
        let mut want = b"echo:".to_vec();
        want.extend_from_slice(&k);
        assert_eq!(asker_group.get(&k).unwrap(), want, "key {k:?}");
        assert_eq!(owner_seen.0.lock().unwrap().last(), Some(&k), "key {k:?}");
    }
    assert!(
        asker_seen.0.lock().unwrap().is_empty(),
        "the asker loaded locally"
    );
    assert_eq!(asker_group.stats().peer_errors, 0);
}
