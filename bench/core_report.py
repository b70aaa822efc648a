"""Turns bench/core.sh's raw lines into medians, ratios and a markdown table."""
import json
import statistics
import sys

raw, out_json, out_md = sys.argv[1:4]
runs = {"go": [], "rust": []}
for line in open(raw):
    who, _, payload = line.partition(" ")
    runs[who].append(json.loads(payload))


def med(who, key):
    vals = [r[key] for r in runs[who] if key in r]
    return statistics.median(vals) if vals else float("nan")


go = {k: med("go", k) for k in runs["go"][0]}
rs = {k: med("rust", k) for k in runs["rust"][0]}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


res = {
    "rounds": len(runs["rust"]),
    "go": go,
    "rust": rs,
    "hit16_1t_speedup_vs_go_engine": ratio(go["hit_16_1t_ns"], rs["engine_hit_16_1t_ns"]),
    "hit16_1t_speedup_vs_go_c_api": ratio(go["hit_16_1t_ns"], rs["c_get_into_hit_16_1t_ns"]),
    "hit16_2t_scaling_engine": ratio(rs["engine_hit_16_1t_ns"], rs["engine_hit_16_2t_ns"]),
    "hit16_2t_scaling_c_api": ratio(rs["c_get_into_hit_16_1t_ns"], rs["c_get_into_hit_16_2t_ns"]),
    "hit16_2t_vs_go_2t_engine": ratio(go["hit_16_2t_ns_per_op"], rs["engine_hit_16_2t_ns"]),
    "hit16_2t_vs_go_2t_c_api": ratio(go["hit_16_2t_ns_per_op"], rs["c_get_into_hit_16_2t_ns"]),
    "go_2t_scaling": ratio(go["hit_16_1t_ns"], go["hit_16_2t_ns_per_op"]),
    "baseline_2t_scaling": ratio(rs["baseline_hashmap_hit_16_1t_ns"], rs["baseline_hashmap_hit_16_2t_ns"]),
}
json.dump(res, open(out_json, "w"), indent=1)

rows = [
    ("16 B hit, 1 thread (ns)", go["hit_16_1t_ns"], rs["engine_hit_16_1t_ns"], rs["c_get_into_hit_16_1t_ns"]),
    ("16 B hit, 2 threads (ns per op, wall)", go["hit_16_2t_ns_per_op"], rs["engine_hit_16_2t_ns"], rs["c_get_into_hit_16_2t_ns"]),
    ("calibration: read-only HashMap hit, 1 thread / 2 threads (ns)", float("nan"), rs["baseline_hashmap_hit_16_1t_ns"], rs["baseline_hashmap_hit_16_2t_ns"]),
    ("10 KiB hit, 1 thread, copied out (ns)", go["hit_10k_copy_1t_ns"], rs["engine_hit_10k_1t_ns"], rs["c_get_into_hit_10k_1t_ns"]),
    ("10 KiB hit, 2 threads, copied out (ns per op)", go["hit_10k_copy_2t_ns_per_op"], rs["engine_hit_10k_2t_ns"], rs["c_get_into_hit_10k_2t_ns"]),
    ("10 KiB hit, 1 thread, shared view, no copy (ns)", go["hit_10k_1t_ns"], float("nan"), float("nan")),
    ("bytes per entry, 16 B key + 100 B value (RSS)", go["bytes_per_entry"], rs.get("rss_per_entry_bytes", float("nan")), float("nan")),
]


def f(x: float) -> str:
    return "—" if x != x else f"{x:,.1f}"


md = [
    f"Medians of {res['rounds']} alternating rounds (each round itself a median of 9 runs per figure).",
    "",
    "| measure | golang/groupcache | ours: engine | ours: C API (`cache_get_into`) |",
    "|---|---:|---:|---:|",
]
md += [f"| {name} | {f(a)} | {f(b)} | {f(c)} |" for name, a, b, c in rows]
md += [
    "",
    f"- 16 B hit vs Go, one thread: engine **{res['hit16_1t_speedup_vs_go_engine']:.2f}x**, C API **{res['hit16_1t_speedup_vs_go_c_api']:.2f}x** faster (target ≥ 2x).",
    f"- Two threads vs one (throughput): engine **{res['hit16_2t_scaling_engine']:.2f}x**, C API **{res['hit16_2t_scaling_c_api']:.2f}x** (target ≥ 1.7x); Go: {res['go_2t_scaling']:.2f}x; a read-only HashMap in the same run (what the machine allowed): {res['baseline_2t_scaling']:.2f}x.",
    f"- Two threads vs Go at two: engine **{res['hit16_2t_vs_go_2t_engine']:.2f}x**, C API **{res['hit16_2t_vs_go_2t_c_api']:.2f}x** (target ≥ 3.5x).",
    f"- Memory: **{rs.get('overhead_per_entry_bytes', float('nan')):.1f} bytes** per entry beyond key and value (target ≤ 64); Go {go['bytes_per_entry'] - 116:.1f}.",
    f"- Miss that loads (16 B, then removed): {rs['miss_load_and_remove_ns']:.0f} ns; 64-thread stampede on one key with a 10 ms getter: {rs['stampede_64_threads_ms']:.1f} ms, {rs['stampede_getter_calls_per_round']:.0f} getter call per stampede.",
    f"- Other processes used {go.get('other_processes_cpu_pct', float('nan')):.0f}% of the CPU during Go's rounds (median).",
]
open(out_md, "w").write("\n".join(md) + "\n")
