//! golang/groupcache's consistent hash (`consistenthash.Map`), bit for bit.
//!
//! Every node of a cluster, ours or Go's, must agree on each key's owner, so
//! this follows Go's algorithm exactly rather than improving on it:
//! - each node URL gets `replicas` points, the crc32 (IEEE) of
//!   `decimal(i) + url` for `i` in `0..replicas` (`strconv.Itoa(i) + key`);
//! - the points are sorted as unsigned 32-bit numbers;
//! - a key belongs to the node of the first point `>= crc32(key)`, wrapping
//!   around to the first point;
//! - when two points collide, the node added last wins (Go's `hashMap[hash] =
//!   key` overwrites), so the order of the peer list matters only then.
//!
//! Node URLs are hashed exactly as given: "http://a:1" and "http://a:1/" are
//! different nodes, as in Go. Not thread-safe by itself; the pool swaps whole
//! rings behind a lock, as Go's `HTTPPool.Set` does.

/// The hash of keys and of virtual nodes; Go's `consistenthash.Hash`.
pub type HashFn = fn(&[u8]) -> u32;

/// crc32 with the IEEE polynomial, Go's `crc32.ChecksumIEEE`.
pub fn crc32_ieee(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A consistent-hash ring of node URLs.
#[derive(Clone, Debug)]
pub struct Ring {
    replicas: usize,
    hash: HashFn,
    /// Sorted, deduplicated points, and the index into `nodes` of each.
    points: Vec<u32>,
    owners: Vec<u32>,
    nodes: Vec<String>,
}

impl Ring {
    /// golang/groupcache's (and mailgun's) `HTTPPool` default.
    pub const DEFAULT_REPLICAS: usize = 50;

    /// An empty ring with `replicas` points per node, hashed with crc32 IEEE.
    pub fn new(replicas: usize) -> Ring {
        Ring::with_hash(replicas, crc32_ieee)
    }

    /// An empty ring with another hash function (Go's `New(replicas, fn)`);
    /// used by tests that mirror Go's own.
    pub fn with_hash(replicas: usize, hash: HashFn) -> Ring {
        Ring {
            replicas,
            hash,
            points: Vec::new(),
            owners: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Adds nodes, as Go's `Map.Add(keys...)`.
    pub fn add<I, S>(&mut self, nodes: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        // (point, node index); rebuilt whole so a later node overwrites an
        // earlier one on a collision, exactly like Go's map assignment.
        let mut all: Vec<(u32, u32)> = self
            .points
            .iter()
            .copied()
            .zip(self.owners.iter().copied())
            .collect();
        let mut buf = Vec::new();
        for node in nodes {
            let node = node.into();
            let idx = self.nodes.len() as u32;
            for i in 0..self.replicas {
                buf.clear();
                buf.extend_from_slice(i.to_string().as_bytes());
                buf.extend_from_slice(node.as_bytes());
                all.push(((self.hash)(&buf), idx));
            }
            self.nodes.push(node);
        }
        // Stable sort keeps insertion order among equal points; keep the last.
        all.sort_by_key(|&(p, _)| p);
        let mut points = Vec::with_capacity(all.len());
        let mut owners = Vec::with_capacity(all.len());
        for (p, o) in all {
            if points.last() == Some(&p) {
                *owners.last_mut().unwrap() = o;
            } else {
                points.push(p);
                owners.push(o);
            }
        }
        self.points = points;
        self.owners = owners;
    }

    /// True when no node has been added (or `replicas` is 0).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The nodes in the order they were added (duplicates included).
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The owner of `key`, as an index into [`Ring::nodes`].
    pub fn get_index(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = (self.hash)(key);
        let mut i = self.points.partition_point(|&p| p < h);
        if i == self.points.len() {
            i = 0;
        }
        Some(self.owners[i] as usize)
    }

    /// The owner of `key`, Go's `Map.Get` (`None` where Go returns "").
    pub fn get(&self, key: &[u8]) -> Option<&str> {
        self.get_index(key).map(|i| self.nodes[i].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's consistenthash_test.go hash: the key parsed as a decimal number.
    fn atoi(b: &[u8]) -> u32 {
        std::str::from_utf8(b).unwrap().parse().unwrap()
    }

    #[test]
    fn go_hashing_test() {
        // Same cases as Go's TestHashing: nodes 6, 4, 2 with 3 replicas give
        // points 2, 4, 6, 12, 14, 16, 22, 24, 26.
        let mut r = Ring::with_hash(3, atoi);
        r.add(["6", "4", "2"]);
        for (k, want) in [("2", "2"), ("11", "2"), ("23", "4"), ("27", "2")] {
            assert_eq!(r.get(k.as_bytes()), Some(want), "key {k}");
        }
        // Adding 8, 18, 28: 27 now maps to 8.
        r.add(["8"]);
        for (k, want) in [("2", "2"), ("11", "2"), ("23", "4"), ("27", "8")] {
            assert_eq!(r.get(k.as_bytes()), Some(want), "key {k}");
        }
    }

    #[test]
    fn collision_last_added_wins() {
        // Both nodes hash to the same points; Go's map keeps the last writer.
        let mut r = Ring::with_hash(1, |_| 7);
        r.add(["a", "b"]);
        assert_eq!(r.get(b"x"), Some("b"));
    }

    #[test]
    fn empty_ring() {
        let r = Ring::new(50);
        assert!(r.is_empty());
        assert_eq!(r.get(b"k"), None);
        let mut r = Ring::new(0);
        r.add(["http://a"]);
        assert!(r.is_empty());
    }

    #[test]
    fn crc32_is_ieee() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32_ieee(b""), 0);
    }
}
