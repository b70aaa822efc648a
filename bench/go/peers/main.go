// Command peers benchmarks golang/groupcache's peer path: remote fetches
// through node A of keys that node B owns, over HTTPPool as shipped
// (http.DefaultTransport, protobuf GetResponse).
//
// golang/groupcache allows one HTTPPool per process (NewHTTPPoolOpts panics
// on a second one, and the peer picker is a process global), so node B is a
// child process of this same binary (-role=owner); node A lives in this
// process and is driven by calling groupA.Get directly, as an application
// embedding groupcache would.
//
// Phases (each ~-dur long):
//
//	remote_c1, remote_c16: distinct keys owned by B, fetched through A at
//	  concurrency 1 and 16. Every Get is a miss on A and on B (B's getter
//	  makes a 16-byte value), so each op is one HTTP round trip A -> B plus
//	  one load on B. Reports fetches/s, p50/p99/p999 latency in µs.
//	remote_c16_keepalive: as remote_c16 but with a transport that keeps 64
//	  idle connections per host (DefaultTransport keeps 2, so at 16 most
//	  requests of remote_c16 dial a new connection).
//	hot_under_load: 15 goroutines keep fetching distinct remote keys (as
//	  remote_c16) while 1 goroutine reads one hot key owned by B, one Get
//	  every ~50 µs; reports the hot reader's latency, and how often A went to B for it
//	  (groupcache keeps ~1 in 10 peer-fetched values in A's hot cache).
//	hot_key_c16: 16 goroutines all reading the same B-owned key (cold at the
//	  start): singleflight plus the hot cache.
//
// Prints one JSON object on stdout; other_processes_cpu_pct says how much of
// the machine's CPU other processes used meanwhile (keep it near 0).
package main

import (
	"groupcachebench/cpustat"

	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/groupcache"
	"github.com/golang/groupcache/consistenthash"
)

const groupName = "peerbench"
const valueLen = 16

func getter() groupcache.Getter {
	return groupcache.GetterFunc(func(_ context.Context, key string, dest groupcache.Sink) error {
		b := make([]byte, valueLen)
		for i := range b {
			b[i] = byte((i*31 + len(key)) % 251)
		}
		return dest.SetBytes(b)
	})
}

func main() {
	role := flag.String("role", "driver", "driver | owner (internal: node B)")
	peerA := flag.String("a", "", "owner role: node A's URL")
	dur := flag.Duration("dur", 3*time.Second, "duration of each phase")
	flag.Parse()
	log.SetFlags(0)
	if *role == "owner" {
		runOwner(*peerA)
		return
	}
	runDriver(*dur)
}

// runOwner is node B: it serves the peer protocol and owns half the keys.
func runOwner(a string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	self := "http://" + ln.Addr().String()
	pool := groupcache.NewHTTPPool(self)
	pool.Set(a, self)
	g := groupcache.NewGroup(groupName, 512<<20, getter())
	mux := http.NewServeMux()
	mux.Handle("/_groupcache/", pool)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"server_requests":%d,"loads":%d,"local_loads":%d}`,
			g.Stats.ServerRequests.Get(), g.Stats.Loads.Get(), g.Stats.LocalLoads.Get())
	})
	go func() { log.Fatal(http.Serve(ln, mux)) }()
	fmt.Println("ready", self)
	// Exit when the driver closes our stdin (or dies).
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
}

type phaseResult map[string]interface{}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return float64(sorted[i].Nanoseconds()) / 1e3
}

func r1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

func summarize(lat []time.Duration, wall time.Duration) phaseResult {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return phaseResult{
		"ops":         len(lat),
		"ops_per_sec": int64(float64(len(lat)) / wall.Seconds()),
		"p50_us":      r1(pct(lat, 0.50)),
		"p99_us":      r1(pct(lat, 0.99)),
		"p999_us":     r1(pct(lat, 0.999)),
	}
}

type keySource struct {
	next int64
	keys []string
}

func (k *keySource) take() (string, bool) {
	i := atomic.AddInt64(&k.next, 1) - 1
	if int(i) >= len(k.keys) {
		return "", false
	}
	return k.keys[i], true
}

// ownedKeys makes n distinct keys with the given prefix that ring assigns to owner.
func ownedKeys(ring *consistenthash.Map, owner, prefix string, n int) *keySource {
	ks := &keySource{keys: make([]string, 0, n)}
	for i := 0; len(ks.keys) < n; i++ {
		k := fmt.Sprintf("%s-%012d", prefix, i)
		if ring.Get(k) == owner {
			ks.keys = append(ks.keys, k)
		}
	}
	return ks
}

// remoteLoad runs conc goroutines fetching distinct keys through g for dur.
func remoteLoad(g *groupcache.Group, ks *keySource, conc int, dur time.Duration, errs *int64) ([]time.Duration, time.Duration) {
	var wg sync.WaitGroup
	lats := make([][]time.Duration, conc)
	deadline := time.Now().Add(dur)
	start := time.Now()
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			ctx := context.Background()
			var v groupcache.ByteView
			l := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				key, ok := ks.take()
				if !ok {
					break
				}
				t0 := time.Now()
				err := g.Get(ctx, key, groupcache.ByteViewSink(&v))
				l = append(l, time.Since(t0))
				if err != nil || v.Len() != valueLen {
					atomic.AddInt64(errs, 1)
				}
			}
			lats[c] = l
		}(c)
	}
	wg.Wait()
	wall := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return all, wall
}

var keepAlive = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return t
}()

func runDriver(dur time.Duration) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	selfA := "http://" + ln.Addr().String()

	child := exec.Command(os.Args[0], "-role=owner", "-a="+selfA)
	child.Stderr = os.Stderr
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { stdin.Close(); child.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		log.Fatalf("owner node did not start: %q %v", line, err)
	}
	selfB := strings.TrimSpace(strings.TrimPrefix(line, "ready "))

	pool := groupcache.NewHTTPPool(selfA)
	pool.Set(selfA, selfB)
	go http.Serve(ln, nil)
	gA := groupcache.NewGroup(groupName, 512<<20, getter())
	ring := consistenthash.New(50, nil)
	ring.Add(selfA, selfB)

	out := map[string]interface{}{"value_bytes": valueLen, "phase_seconds": dur.Seconds()}
	pids := []int{os.Getpid(), child.Process.Pid}
	cpu0 := cpustat.Read(pids...)
	var errs int64

	// Warm-up: connections, code paths.
	remoteLoad(gA, ownedKeys(ring, selfB, "warm", 5000), 4, 300*time.Millisecond, &errs)

	// Enough distinct keys for 100,000 fetches/s (a phase that runs out
	// ends early); tests/peers_perf.rs uses the same budget.
	maxKeys := func(conc int) int { return int(dur.Seconds()*100000) + conc*1000 + 100000 }
	for _, conc := range []int{1, 16} {
		ks := ownedKeys(ring, selfB, fmt.Sprintf("c%d", conc), maxKeys(conc))
		peerLoads0 := gA.Stats.PeerLoads.Get()
		c0 := cpustat.Read(pids...)
		lat, wall := remoteLoad(gA, ks, conc, dur, &errs)
		res := summarize(lat, wall)
		c1 := cpustat.Read(pids...)
		res["other_cpu_pct"] = cpustat.OtherPercent(c0, c1)
		res["own_cpu_pct"] = cpustat.OwnPercent(c0, c1)
		res["peer_loads"] = gA.Stats.PeerLoads.Get() - peerLoads0
		out[fmt.Sprintf("remote_c%d", conc)] = res
	}

	// Concurrency 16 again with keep-alive connections: http.DefaultTransport
	// keeps only 2 idle connections per host, so at 16 most requests above
	// open a new TCP connection. This shows what the wire protocol costs
	// with a connection pool that fits the load.
	{
		pool.Transport = func(context.Context) http.RoundTripper { return keepAlive }
		pool.Set(selfA, selfB)
		ks := ownedKeys(ring, selfB, "k16", maxKeys(16))
		remoteLoad(gA, ownedKeys(ring, selfB, "warm2", 5000), 16, 200*time.Millisecond, &errs)
		peerLoads0 := gA.Stats.PeerLoads.Get()
		c0 := cpustat.Read(pids...)
		lat, wall := remoteLoad(gA, ks, 16, dur, &errs)
		res := summarize(lat, wall)
		c1 := cpustat.Read(pids...)
		res["other_cpu_pct"] = cpustat.OtherPercent(c0, c1)
		res["own_cpu_pct"] = cpustat.OwnPercent(c0, c1)
		res["peer_loads"] = gA.Stats.PeerLoads.Get() - peerLoads0
		res["max_idle_conns_per_host"] = keepAlive.MaxIdleConnsPerHost
		out["remote_c16_keepalive"] = res
		pool.Transport = nil
		pool.Set(selfA, selfB)
	}

	// One hot key read by one goroutine (paced: one Get every ~50 µs, so it
	// does not take a core for itself) while 15 others do remote fetches.
	{
		hot := ownedKeys(ring, selfB, "hotA", 1).keys[0]
		ks := ownedKeys(ring, selfB, "bg", maxKeys(16))
		peerLoads0 := gA.Stats.PeerLoads.Get()
		var hotLat []time.Duration
		var hotWall time.Duration
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			var v groupcache.ByteView
			deadline := time.Now().Add(dur)
			start := time.Now()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := gA.Get(ctx, hot, groupcache.ByteViewSink(&v)); err != nil {
					atomic.AddInt64(&errs, 1)
				}
				hotLat = append(hotLat, time.Since(t0))
				time.Sleep(50 * time.Microsecond)
			}
			hotWall = time.Since(start)
		}()
		bgLat, bgWall := remoteLoad(gA, ks, 15, dur, &errs)
		wg.Wait()
		peerLoadsTotal := gA.Stats.PeerLoads.Get() - peerLoads0
		res := summarize(hotLat, hotWall)
		res["hot_peer_loads"] = peerLoadsTotal - int64(len(bgLat))
		res["background"] = summarize(bgLat, bgWall)
		out["hot_under_load"] = res
	}

	// Sixteen goroutines on one hot key, cold at the start.
	{
		hot := ownedKeys(ring, selfB, "hotB", 1).keys[0]
		peerLoads0 := gA.Stats.PeerLoads.Get()
		var wg sync.WaitGroup
		lats := make([][]time.Duration, 16)
		deadline := time.Now().Add(dur)
		start := time.Now()
		for c := 0; c < 16; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				ctx := context.Background()
				var v groupcache.ByteView
				l := make([]time.Duration, 0, 1<<20)
				for time.Now().Before(deadline) {
					t0 := time.Now()
					if err := gA.Get(ctx, hot, groupcache.ByteViewSink(&v)); err != nil {
						atomic.AddInt64(&errs, 1)
					}
					l = append(l, time.Since(t0))
				}
				lats[c] = l
			}(c)
		}
		wg.Wait()
		wall := time.Since(start)
		var all []time.Duration
		for _, l := range lats {
			all = append(all, l...)
		}
		res := summarize(all, wall)
		res["peer_loads"] = gA.Stats.PeerLoads.Get() - peerLoads0
		out["hot_key_c16"] = res
	}

	if resp, err := http.Get(selfB + "/stats"); err == nil {
		var s map[string]int64
		json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		out["owner_stats"] = s
	}
	out["other_processes_cpu_pct"] = cpustat.OtherPercent(cpu0, cpustat.Read(pids...))
	out["errors"] = errs
	out["go_version"] = runtime.Version()
	json.NewEncoder(os.Stdout).Encode(out)
}
