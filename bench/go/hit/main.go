// Command hit measures golang/groupcache's hit path and its memory per entry,
// the reference numbers our Rust implementation is compared against.
//
//   - ns per Group.Get hit, 16-byte and 10 KiB values, 1 and 2 goroutines
//     (GOMAXPROCS=2), median of several rounds; 1,000 prewarmed keys.
//     "hit_*" use ByteViewSink (no copy: the fairest view of the cache
//     itself); "hit_*_copy" use AllocatingByteSliceSink (the caller gets its
//     own []byte, like our cache_get_into / a Python bytes object).
//   - RSS growth per entry after 1,000,000 inserts of a 16-byte key and a
//     100-byte value, measured in a fresh child process (groupcache groups
//     can never be dropped, so a clean baseline needs its own process).
//
// Prints one JSON object on stdout; other_processes_cpu_pct says how much of
// the machine's CPU other processes used during the hit rounds (keep it near 0).
package main

import (
	"groupcachebench/cpustat"

	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/groupcache"
)

const numHotKeys = 1000

func main() {
	part := flag.String("part", "all", "all | hit | mem (mem runs in a child process by default)")
	rounds := flag.Int("rounds", 7, "rounds per measurement (median reported)")
	roundDur := flag.Duration("round", 300*time.Millisecond, "approximate duration of one round")
	entries := flag.Int("entries", 1000000, "entries for the memory measurement")
	flag.Parse()
	runtime.GOMAXPROCS(2)

	out := map[string]interface{}{}
	switch *part {
	case "mem":
		memPerEntry(*entries, out)
	case "hit":
		hitBench(*rounds, *roundDur, out)
	default:
		// Memory first, in a clean child, then the hit numbers here.
		cmd := exec.Command(os.Args[0], "-part=mem", "-entries="+strconv.Itoa(*entries))
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "mem child failed:", err)
			os.Exit(1)
		}
		if err := json.Unmarshal(b, &out); err != nil {
			fmt.Fprintln(os.Stderr, "mem child output:", err, string(b))
			os.Exit(1)
		}
		cpu0 := cpustat.Read(os.Getpid())
		hitBench(*rounds, *roundDur, out)
		out["other_processes_cpu_pct"] = cpustat.OtherPercent(cpu0, cpustat.Read(os.Getpid()))
	}
	out["go_version"] = runtime.Version()
	out["gomaxprocs"] = runtime.GOMAXPROCS(0)
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		os.Exit(1)
	}
}

func hotKey(i int) string { return fmt.Sprintf("hotkey-%09d", i) } // 16 bytes

func value(key string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i*31 + len(key) + int(key[len(key)-1])) % 251)
	}
	return b
}

type hitResult struct {
	oneNs        float64 // ns per Get on one goroutine
	twoNsPerOp   float64 // wall ns per Get, two goroutines together
	twoNsPerG    float64 // ns per Get seen by each goroutine
	twoOpsPerSec float64
}

func hitBench(rounds int, roundDur time.Duration, out map[string]interface{}) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"16", 16}, {"10k", 10 << 10}} {
		g := groupcache.NewGroup("hit-"+sz.name, 256<<20, groupcache.GetterFunc(
			func(_ context.Context, key string, dest groupcache.Sink) error {
				return dest.SetBytes(value(key, sz.n))
			}))
		keys := make([]string, numHotKeys)
		for i := range keys {
			keys[i] = hotKey(i)
			var v groupcache.ByteView
			if err := g.Get(context.Background(), keys[i], groupcache.ByteViewSink(&v)); err != nil || v.Len() != sz.n {
				panic(fmt.Sprint("prewarm failed: ", err))
			}
		}
		loadsBefore := g.Stats.Loads.Get()
		for _, mode := range []string{"view", "copy"} {
			r := measureHits(g, keys, mode, rounds, roundDur)
			suffix := ""
			if mode == "copy" {
				suffix = "_copy"
			}
			p := "hit_" + sz.name
			out[p+suffix+"_1t_ns"] = round1(r.oneNs)
			out[p+suffix+"_2t_ns_per_op"] = round1(r.twoNsPerOp)
			out[p+suffix+"_2t_ns_per_goroutine"] = round1(r.twoNsPerG)
			out[p+suffix+"_2t_ops_per_sec"] = int64(r.twoOpsPerSec)
		}
		if g.Stats.Loads.Get() != loadsBefore {
			panic("hits benchmark caused loads: the keys were evicted")
		}
	}
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// run does n Gets over keys starting at offset and returns the elapsed time.
func run(g *groupcache.Group, keys []string, mode string, n, offset int) time.Duration {
	ctx := context.Background()
	var view groupcache.ByteView
	var buf []byte
	var sink groupcache.Sink
	if mode == "view" {
		sink = groupcache.ByteViewSink(&view)
	}
	start := time.Now()
	j := offset % len(keys)
	for i := 0; i < n; i++ {
		if mode == "copy" {
			sink = groupcache.AllocatingByteSliceSink(&buf)
		}
		if err := g.Get(ctx, keys[j], sink); err != nil {
			panic(err)
		}
		j++
		if j == len(keys) {
			j = 0
		}
	}
	return time.Since(start)
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func measureHits(g *groupcache.Group, keys []string, mode string, rounds int, roundDur time.Duration) hitResult {
	// Calibrate n so that one round takes about roundDur on one goroutine.
	n := 10000
	for {
		d := run(g, keys, mode, n, 0)
		if d >= roundDur/4 {
			n = int(float64(n) * float64(roundDur) / float64(d))
			break
		}
		n *= 4
	}
	var one, twoOp, twoG, twoTput []float64
	for r := 0; r < rounds; r++ {
		runtime.GC()
		d := run(g, keys, mode, n, r)
		one = append(one, float64(d.Nanoseconds())/float64(n))

		runtime.GC()
		var wg sync.WaitGroup
		var per [2]time.Duration
		startGate := make(chan struct{})
		for t := 0; t < 2; t++ {
			wg.Add(1)
			go func(t int) {
				defer wg.Done()
				<-startGate
				per[t] = run(g, keys, mode, n, t*len(keys)/2)
			}(t)
		}
		start := time.Now()
		close(startGate)
		wg.Wait()
		wall := time.Since(start)
		twoOp = append(twoOp, float64(wall.Nanoseconds())/float64(2*n))
		twoG = append(twoG, float64((per[0]+per[1]).Nanoseconds())/float64(2*n))
		twoTput = append(twoTput, float64(2*n)/wall.Seconds())
	}
	return hitResult{median(one), median(twoOp), median(twoG), median(twoTput)}
}

// rssBytes reads VmRSS from /proc/self/status.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line)
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024
		}
	}
	panic("no VmRSS")
}

func settle() {
	runtime.GC()
	debug.FreeOSMemory()
	runtime.GC()
	debug.FreeOSMemory()
}

func memPerEntry(entries int, out map[string]interface{}) {
	const valLen = 100
	g := groupcache.NewGroup("mem", 8<<30, groupcache.GetterFunc(
		func(_ context.Context, key string, dest groupcache.Sink) error {
			return dest.SetBytes(value(key, valLen))
		}))
	ctx := context.Background()
	var v groupcache.ByteView
	sink := groupcache.ByteViewSink(&v)
	// One warm-up Get so the group's lazily made structures exist before
	// the baseline.
	if err := g.Get(ctx, "warmup-key-00000", sink); err != nil {
		panic(err)
	}
	settle()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	before := rssBytes()
	for i := 0; i < entries; i++ {
		key := fmt.Sprintf("k%015d", i) // 16 bytes
		if err := g.Get(ctx, key, sink); err != nil {
			panic(err)
		}
	}
	v = groupcache.ByteView{}
	settle()
	after := rssBytes()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	items := g.CacheStats(groupcache.MainCache).Items
	if items != int64(entries)+1 {
		panic(fmt.Sprintf("expected %d items, have %d", entries+1, items))
	}
	out["mem_entries"] = entries
	out["mem_key_bytes"] = 16
	out["mem_value_bytes"] = valLen
	out["rss_before_bytes"] = before
	out["rss_after_bytes"] = after
	out["bytes_per_entry"] = round1(float64(after-before) / float64(entries))
	out["heap_inuse_bytes_per_entry"] = round1(float64(int64(ms1.HeapInuse)-int64(ms0.HeapInuse)) / float64(entries))
	runtime.KeepAlive(g)
}
