"""The pool's /metrics endpoint, parsed by a real Prometheus text parser."""

from __future__ import annotations

import urllib.request

from prometheus_client import parser

import groupcache


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_follow_the_groupcache_exporter_names() -> None:
    with groupcache.Pool(listen="127.0.0.1:0") as pool:
        pool.set_peers([pool.url])
        users = groupcache.Cache("users", max_bytes=1 << 20, loader=lambda k: k.encode() * 2, pool=pool)
        empty = groupcache.Cache("empty", max_bytes=1 << 20, pool=pool)  # kept: a collected cache leaves the pool
        users.get("a")
        users.get("a")
        users.get("bb")
        m = scrape(pool.url)
        g = (("group", "users"),)
        assert m[("groupcache_gets_total", g)] == 3
        assert m[("groupcache_hits_total", g)] == 1
        assert m[("groupcache_local_load_total", g)] == 2
        assert m[("groupcache_loads_deduped_total", g)] == 2
        assert m[("groupcache_cache_items", (("group", "users"), ("type", "main")))] == 2
        # key + value bytes, as groupcache counts: "a"+"aa", "bb"+"bbbb"
        assert m[("groupcache_cache_bytes", (("group", "users"), ("type", "main")))] == 3 + 6
        assert m[("groupcache_cache_items", (("group", "users"), ("type", "hot")))] == 0
        assert m[("groupcache_gets_total", (("group", "empty"),))] == 0
        users.close()
        # A closed cache leaves the pool and its metrics.
        assert ("groupcache_gets_total", g) not in scrape(pool.url)
        assert ("groupcache_gets_total", (("group", "empty"),)) in scrape(pool.url)
        empty.close()
