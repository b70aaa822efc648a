//! Known vectors of golang/groupcache's consistent hash (crc32 IEEE of
//! decimal(i)+url, 50 replicas). Computed from Go's algorithm by hand
//! (with any crc32 IEEE) and checked against Debian's golang/groupcache
//! `consistenthash.New(50, nil)`.

use groupcache::ring::{crc32_ieee, Ring};

const NODES: [&str; 3] = [
    "http://127.0.0.1:8001",
    "http://127.0.0.1:8002",
    "http://127.0.0.1:8003",
];

#[test]
fn crc32_vectors() {
    assert_eq!(crc32_ieee(b""), 0);
    assert_eq!(crc32_ieee(b"a"), 0xe8b7_be43);
    assert_eq!(crc32_ieee(b"foo"), 0x8c73_6521);
    assert_eq!(crc32_ieee(b"hello world"), 0x0d4a_1185);
    // The first and last virtual points of two nodes.
    assert_eq!(crc32_ieee(b"0http://127.0.0.1:8001"), 0x3ece_2e2b);
    assert_eq!(crc32_ieee(b"49http://127.0.0.1:8003"), 0xa7e9_b324);
}

#[test]
fn owner_vectors() {
    let mut r = Ring::new(Ring::DEFAULT_REPLICAS);
    r.add(NODES);
    let cases: [(&[u8], usize); 12] = [
        (b"", 0),
        (b"a", 2),
        (b"foo", 0),
        (b"hello world", 2),
        (b"key-1", 0),
        (b"key-2", 2),
        (b"key-3", 1),
        (b"key-42", 1),
        (b"a/b", 1),
        (b"a b", 1),
        (b"\xff\xfe", 1),
        ("été".as_bytes(), 0),
    ];
    for (key, owner) in cases {
        assert_eq!(r.get(key), Some(NODES[owner]), "key {key:?}");
    }
}

#[test]
fn owner_is_independent_of_list_order() {
    let mut a = Ring::new(50);
    a.add(NODES);
    let mut b = Ring::new(50);
    b.add([NODES[2], NODES[0], NODES[1]]);
    for i in 0..10_000 {
        let k = format!("key-{i}");
        assert_eq!(a.get(k.as_bytes()), b.get(k.as_bytes()));
    }
}

#[test]
fn distribution_of_10000_keys() {
    // Go gives 4218 / 2955 / 2827 for key-0 .. key-9999 over NODES.
    let mut r = Ring::new(50);
    r.add(NODES);
    let mut counts = [0; 3];
    for i in 0..10_000 {
        let o = r.get_index(format!("key-{i}").as_bytes()).unwrap();
        counts[o] += 1;
    }
    assert_eq!(counts, [4218, 2955, 2827]);
}

#[test]
fn adding_a_node_moves_keys_only_to_it() {
    let mut before = Ring::new(50);
    before.add(NODES[..2].iter().copied());
    let mut after = Ring::new(50);
    after.add(NODES);
    for i in 0..5_000 {
        let k = format!("k{i}");
        let (b, a) = (
            before.get(k.as_bytes()).unwrap(),
            after.get(k.as_bytes()).unwrap(),
        );
        assert!(a == b || a == NODES[2], "{k}: {b} -> {a}");
    }
}
