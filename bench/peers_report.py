"""Turns bench/peers.sh's raw lines into medians, ratios, the issue-4 targets
and a markdown section (bench/out/peers.md, merged into BENCHMARKS.md).

    python3 bench/peers_report.py RAW OUT_JSON OUT_MD
"""
import json
import statistics
import sys

raw, out_json, out_md = sys.argv[1:4]
meta, end = {}, {}
runs = {"go": [], "rust": [], "rust_tls": []}
for line in open(raw):
    who, _, payload = line.strip().partition(" ")
    if not payload:
        continue
    obj = json.loads(payload)
    if who == "meta":
        meta = obj
    elif who == "end":
        end = obj
    else:
        runs[who].append(obj)


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = v
    return out


flats = {who: [flat(r["result"]) for r in rs] for who, rs in runs.items()}


def med(who, key):
    vals = [f[key] for f in flats[who] if key in f]
    return statistics.median(vals) if vals else float("nan")


def per_round(who, key):
    return [f.get(key, float("nan")) for f in flats[who]]


# CPU per fetch, both processes together: own_cpu_pct is a share of the
# whole machine (all cores) during the phase.
cores = meta.get("cores") or 1
for fs in flats.values():
    for f_ in fs:
        for ph in ("remote_c1", "remote_c16", "remote_c16_keepalive"):
            if f_.get(f"{ph}.ops_per_sec"):
                f_[f"{ph}.cpu_us_per_fetch"] = f_[f"{ph}.own_cpu_pct"] / 100 * cores * 1e6 / f_[f"{ph}.ops_per_sec"]

keys = sorted(set().union(*[set(f) for fs in flats.values() for f in fs]))
class Medians(dict):
    """A phase a run left out (PEERS_ONLY=tls) is NaN: "—" in the tables."""

    def __missing__(self, key):
        return float("nan")


go = Medians({k: med("go", k) for k in keys})
rs = Medians({k: med("rust", k) for k in keys})
tl = Medians({k: med("rust_tls", k) for k in keys})


def ratio(a: float, b: float) -> float:
    return a / b if b and a == a and b == b else float("nan")



# Targets (issue 4): >= 1.5x Go's fetches/s at concurrency 16; at
# concurrency 1, p50 and p99 no worse than Go's. Judged on the medians;
# the per-round pairs (Go round i, ours round i, run back to back) show
# whether the verdict holds round by round on this shared machine.
c16 = ratio(rs["remote_c16.ops_per_sec"], go["remote_c16.ops_per_sec"])
c16_rounds = [ratio(b, a) for a, b in zip(per_round("go", "remote_c16.ops_per_sec"), per_round("rust", "remote_c16.ops_per_sec"))]
c16_ka = ratio(rs["remote_c16_keepalive.ops_per_sec"], go["remote_c16_keepalive.ops_per_sec"])
p50 = (go["remote_c1.p50_us"], rs["remote_c1.p50_us"])
p99 = (go["remote_c1.p99_us"], rs["remote_c1.p99_us"])
p50_rounds = list(zip(per_round("go", "remote_c1.p50_us"), per_round("rust", "remote_c1.p50_us")))
p99_rounds = list(zip(per_round("go", "remote_c1.p99_us"), per_round("rust", "remote_c1.p99_us")))
targets = {
    "c16_throughput_ratio": c16,
    "c16_throughput_ratio_per_round": c16_rounds,
    "c16_throughput_met": c16 >= 1.5,
    "c1_p50_us": {"go": p50[0], "rust": p50[1], "met": p50[1] <= p50[0]},
    "c1_p99_us": {"go": p99[0], "rust": p99[1], "met": p99[1] <= p99[0]},
}
load = {
    "cores": meta.get("cores"),
    "loadavg_start": meta.get("loadavg_start"),
    "loadavg_end": end.get("loadavg_end"),
    "loadavg_per_run": {w: [r.get("loadavg") for r in runs[w]] for w in runs},
    "other_processes_cpu_pct_median": {"go": go.get("other_processes_cpu_pct"), "rust": rs.get("other_processes_cpu_pct")},
    "other_processes_cpu_pct_per_run": {w: per_round(w, "other_processes_cpu_pct") for w in runs},
}
# TLS (issue 11): ours over https with mutual TLS against ours over plain
# http, concurrency 16, each pair run back to back in the same round.
# Target: TLS within 1.5x of plain (plain / TLS fetches/s <= 1.5).
tls_key = "remote_c16.ops_per_sec"
tls_slowdown = ratio(rs.get(tls_key, float("nan")), tl.get(tls_key, float("nan")))
tls_rounds = [ratio(a, b) for a, b in zip(per_round("rust", tls_key), per_round("rust_tls", tls_key))]
if runs["rust_tls"]:
    targets["tls_c16_slowdown"] = tls_slowdown
    targets["tls_c16_slowdown_per_round"] = tls_rounds
    targets["tls_c16_met"] = tls_slowdown <= 1.5
res = {
    "meta": meta,
    "rust_tls": tl,
    "rounds": len(runs["rust"]),
    "go": go,
    "rust": rs,
    "targets": targets,
    "c16_keepalive_ratio": c16_ka,
    "load": load,
    "runs": runs,
}
json.dump(res, open(out_json, "w"), indent=1)


def f(x, d=0):
    if x != x:
        return "—"
    return f"{x:,.{d}f}"


def rel(a, b, kind):
    """kind: "rate" (higher is better), "lat" (lower is better), "info" (no ratio)."""
    r = ratio(b, a)
    if r != r or kind == "info":
        return ""
    return f"{r:.2f}x"


def row(name, key, d=0, kind="rate"):
    return f"| {name} | {f(go[key], d)} | {f(rs[key], d)} | {rel(go[key], rs[key], kind)} |"


def ok(b):
    return "**met**" if b else "**missed**"


rounds = res["rounds"]
secs = meta.get("phase_seconds", go.get("phase_seconds"))
md = [
    f"Medians of {rounds} alternating rounds (Go, ours, Go, ours, ...), each phase {secs} s.",
    "Both sides: node A (the caller) in one process, node B (owner of every key",
    "fetched) in a child process, loopback only; 16-byte values made by B's getter;",
    "keys `<phase>-%012d` filtered to those the ring [A, B] gives to B, so every",
    "fetch is a miss on A and on B: one HTTP round trip plus one load at B.",
    "Go is golang/groupcache's `HTTPPool` as shipped (`http.DefaultTransport`,",
    "which keeps 2 idle connections per host); ours is `Group::get` with the",
    "pool's client (one keep-alive connection per calling thread).",
    f"Go: `{meta.get('go', '?')}`; Rust: `{meta.get('rustc', '?')}`.",
    "",
    "Ratios are ours / Go: above 1 is better for rates, below 1 is better for latencies.",
    "The hot reader sleeps 50 µs between gets on both sides, but a Go timer and an OS",
    "thread's `nanosleep` wake at different paces (so its reads/s differ); the hot cache",
    "keeps 1 in 10 values fetched from a peer, at random, so fetches of a hot key from B vary.",
    "",
    "| measure | golang/groupcache | ours | ours / Go |",
    "|---|---:|---:|---:|",
    row("remote fetch, concurrency 1: fetches/s", "remote_c1.ops_per_sec"),
    row("remote fetch, concurrency 1: p50 (µs)", "remote_c1.p50_us", 1, "lat"),
    row("remote fetch, concurrency 1: p99 (µs)", "remote_c1.p99_us", 1, "lat"),
    row("remote fetch, concurrency 1: CPU per fetch, both nodes (µs)", "remote_c1.cpu_us_per_fetch", 1, "lat"),
    row("remote fetch, concurrency 16: fetches/s", "remote_c16.ops_per_sec"),
    row("remote fetch, concurrency 16: p50 (µs)", "remote_c16.p50_us", 1, "lat"),
    row("remote fetch, concurrency 16: p99 (µs)", "remote_c16.p99_us", 1, "lat"),
    row("remote fetch, concurrency 16: CPU per fetch, both nodes (µs)", "remote_c16.cpu_us_per_fetch", 1, "lat"),
    row("concurrency 16, Go with 64 keep-alive conns/host: fetches/s", "remote_c16_keepalive.ops_per_sec"),
    row("concurrency 16, Go with 64 keep-alive conns/host: p50 (µs)", "remote_c16_keepalive.p50_us", 1, "lat"),
    row("concurrency 16, Go with 64 keep-alive conns/host: p99 (µs)", "remote_c16_keepalive.p99_us", 1, "lat"),
    row("hot key under load: hot reader p50 (µs)", "hot_under_load.p50_us", 1, "lat"),
    row("hot key under load: hot reader p99 (µs)", "hot_under_load.p99_us", 1, "lat"),
    row("hot key under load: hot reads/s (paced, 50 µs sleep)", "hot_under_load.ops_per_sec", 0, "info"),
    row("hot key under load: fetches of the hot key from B", "hot_under_load.hot_peer_loads", 0, "info"),
    row("hot key under load: 15 background fetchers, fetches/s", "hot_under_load.background.ops_per_sec"),
    row("hot key under load: background p99 (µs)", "hot_under_load.background.p99_us", 1, "lat"),
    row("one hot key, 16 readers (cold start): gets/s", "hot_key_c16.ops_per_sec"),
    row("one hot key, 16 readers: p99 (µs)", "hot_key_c16.p99_us", 1, "lat"),
    row("one hot key, 16 readers: fetches from B", "hot_key_c16.peer_loads", 0, "info"),
    row("other processes' CPU during the whole run (% of the machine)", "other_processes_cpu_pct", 1, "info"),
    "",
    "Targets (issue 4), on the medians:",
    "",
    f"- Concurrency 16, ≥ 1.5x Go's fetches/s: **{c16:.2f}x**, {ok(targets['c16_throughput_met'])}"
    f" (round by round: {', '.join(f'{r:.2f}x' for r in c16_rounds)}; against Go with keep-alive connections: {c16_ka:.2f}x).",
    f"- Concurrency 1, p50 no worse than Go's: {f(p50[1], 1)} µs vs {f(p50[0], 1)} µs, {ok(targets['c1_p50_us']['met'])}"
    f" (round by round, ours/Go: {', '.join(f'{b:.1f}/{a:.1f}' for a, b in p50_rounds)}).",
    f"- Concurrency 1, p99 no worse than Go's: {f(p99[1], 1)} µs vs {f(p99[0], 1)} µs, {ok(targets['c1_p99_us']['met'])}"
    f" (round by round, ours/Go: {', '.join(f'{b:.1f}/{a:.1f}' for a, b in p99_rounds)}).",
    "",
    f"Load: this machine has {load['cores']} cores shared with other work. Other processes used"
    f" {f(go.get('other_processes_cpu_pct', float('nan')), 0)}% (Go's runs) and"
    f" {f(rs.get('other_processes_cpu_pct', float('nan')), 0)}% (ours) of the machine's CPU, median"
    f" (per run: Go {', '.join(f(x, 0) for x in load['other_processes_cpu_pct_per_run']['go'])};"
    f" ours {', '.join(f(x, 0) for x in load['other_processes_cpu_pct_per_run']['rust'])});"
    f" load average {load['loadavg_start']} at the start, {load['loadavg_end']} at the end."
    " (The load average counts this benchmark's own threads too, up to ~35 runnable in a"
    " concurrency-16 phase; the CPU share of other processes is the measure of interference.)"
    " Concurrency-16 phases need both cores for the two nodes, so they move most with that load;"
    " compare Go and ours within this run only.",
    "",
    f"Command: `{meta.get('command', 'bash bench/peers.sh')}` (raw runs in bench/out/peers.raw, all fields in bench/out/peers.json).",
]


def tls_row(name, key, d=0):
    r = ratio(rs.get(key, float("nan")), tl.get(key, float("nan")))
    return f"| {name} | {f(rs.get(key, float('nan')), d)} | {f(tl.get(key, float('nan')), d)} | {r:.2f}x |"


tls_md = [
    "Ours over https with mutual TLS (rustls, ring; ECDSA P-256 certificates from",
    "tests/tls/make-certs.sh) against ours over plain http, remote fetches at",
    f"concurrency 16, medians of {len(runs['rust_tls'])} rounds; in each round the plain run and",
    "the TLS run go back to back. Keep-alive connections: the handshake is paid once",
    "per connection (one per calling thread), then each fetch costs the record layer.",
    "",
    "| concurrency 16 | plain http | https, mutual TLS | plain / TLS |",
    "|---|---:|---:|---:|",
    tls_row("fetches/s", "remote_c16.ops_per_sec"),
    tls_row("p50 (µs)", "remote_c16.p50_us", 1),
    tls_row("p99 (µs)", "remote_c16.p99_us", 1),
    tls_row("CPU per fetch, both nodes (µs)", "remote_c16.cpu_us_per_fetch", 1),
    "",
    f"Target (issue 11): TLS within 1.5x of plain: plain/TLS fetches/s **{tls_slowdown:.2f}x**,"
    f" {ok(tls_slowdown <= 1.5)} (round by round: {', '.join(f'{r:.2f}x' for r in tls_rounds)}).",
    "Other processes' CPU during the runs (% of the machine): plain"
    f" {', '.join(f(x, 0) for x in per_round('rust', 'other_processes_cpu_pct'))};"
    f" TLS {', '.join(f(x, 0) for x in per_round('rust_tls', 'other_processes_cpu_pct'))}.",
]
if not runs["go"]:
    # PEERS_ONLY=tls: the TLS comparison alone.
    md = tls_md + ["", f"Command: `{meta.get('command')}` (raw runs in {raw})."]
elif runs["rust_tls"]:
    md[-1:-1] = ["### TLS between nodes", ""] + tls_md + [""]
open(out_md, "w").write("\n".join(md) + "\n")
