// Command gonode is a real golang/groupcache node for interop tests: one
// groupcache.HTTPPool (registered on http.DefaultServeMux exactly as
// groupcache.NewHTTPPool does, served on -listen) and one group whose getter
// returns deterministic bytes, plus a control HTTP server on -ctl that lets a
// test drive the node and look inside it.
//
// Getter, for a key k:
//   - "missing:..."  an error ("missing key: <k>"), never cached
//   - "big:..."      1 MiB, byte i = (i*31 + len(k)) % 251
//   - anything else  "v:" + k
//
// Every getter call is counted per key (errors too).
//
// Control server (-ctl):
//
//	GET  /get?key=K      group.Get(K): 200 with the raw bytes, or 500 + error text
//	GET  /owner?key=K    the owner URL per consistenthash.New(replicas, nil) over
//	                     the current peers ("" when there are no peers)
//	POST /owners         body: keys, one a line -> owner URLs, one a line
//	GET  /loads          JSON {key: getter calls}
//	POST /loads/reset    forget the getter counts
//	GET  /stats          group.Stats plus main/hot CacheStats as JSON
//	POST /peers          body: peer URLs (newline or comma separated) -> pool.Set
//	GET  /peers          the current peer list, one a line
//	GET  /health         "ok"
//
// Prints "ready" on stdout once both servers accept connections.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/golang/groupcache"
	"github.com/golang/groupcache/consistenthash"
)

const bigSize = 1 << 20

var (
	loadsMu sync.Mutex
	loads   = map[string]int64{}

	peersMu sync.Mutex
	peers   []string
	ring    *consistenthash.Map
)

func valueFor(key string) ([]byte, error) {
	switch {
	case strings.HasPrefix(key, "missing:"):
		return nil, errors.New("missing key: " + key)
	case strings.HasPrefix(key, "big:"):
		b := make([]byte, bigSize)
		for i := range b {
			b[i] = byte((i*31 + len(key)) % 251)
		}
		return b, nil
	default:
		return []byte("v:" + key), nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8001", "address the peer protocol is served on")
	self := flag.String("self", "", "this node's URL (default http://<listen>)")
	peerList := flag.String("peers", "", "comma-separated peer URLs, this node included (as HTTPPool.Set)")
	groupName := flag.String("group", "interop", "group name")
	ctlAddr := flag.String("ctl", "127.0.0.1:8101", "control server address")
	cacheBytes := flag.Int64("cache-bytes", 64<<20, "group cache bytes")
	replicas := flag.Int("replicas", 50, "replicas of the consistent hash (HTTPPool's default is 50)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("gonode: ")

	peerLn, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	ctlLn, err := net.Listen("tcp", *ctlAddr)
	if err != nil {
		log.Fatal(err)
	}
	if *self == "" {
		*self = "http://" + peerLn.Addr().String()
	}

	var pool *groupcache.HTTPPool
	if *replicas == 50 {
		pool = groupcache.NewHTTPPool(*self) // exactly upstream's default setup
	} else {
		pool = groupcache.NewHTTPPoolOpts(*self, &groupcache.HTTPPoolOptions{Replicas: *replicas})
		http.Handle("/_groupcache/", pool)
	}
	setPeers := func(list []string) {
		peersMu.Lock()
		defer peersMu.Unlock()
		peers = list
		ring = consistenthash.New(*replicas, nil)
		ring.Add(list...)
		pool.Set(list...)
	}
	setPeers(splitList(*peerList))
	owner := func(key string) string {
		peersMu.Lock()
		defer peersMu.Unlock()
		if ring.IsEmpty() {
			return ""
		}
		return ring.Get(key)
	}

	group := groupcache.NewGroup(*groupName, *cacheBytes, groupcache.GetterFunc(
		func(_ context.Context, key string, dest groupcache.Sink) error {
			loadsMu.Lock()
			loads[key]++
			loadsMu.Unlock()
			v, err := valueFor(key)
			if err != nil {
				return err
			}
			return dest.SetBytes(v)
		}))

	ctl := http.NewServeMux()
	ctl.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ctl.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		var b []byte
		if err := group.Get(r.Context(), key, groupcache.AllocatingByteSliceSink(&b)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b)
	})
	ctl.HandleFunc("/owner", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, owner(r.URL.Query().Get("key")))
	})
	ctl.HandleFunc("/owners", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST keys, one a line", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var out bytes.Buffer
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			out.WriteString(owner(strings.TrimSuffix(sc.Text(), "\r")))
			out.WriteByte('\n')
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(out.Bytes())
	})
	ctl.HandleFunc("/loads", func(w http.ResponseWriter, r *http.Request) {
		loadsMu.Lock()
		b, _ := json.Marshal(loads)
		loadsMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	ctl.HandleFunc("/loads/reset", func(w http.ResponseWriter, r *http.Request) {
		loadsMu.Lock()
		loads = map[string]int64{}
		loadsMu.Unlock()
		io.WriteString(w, "ok")
	})
	ctl.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		s := &group.Stats
		cs := func(c groupcache.CacheStats) map[string]int64 {
			return map[string]int64{"bytes": c.Bytes, "items": c.Items, "gets": c.Gets, "hits": c.Hits, "evictions": c.Evictions}
		}
		b, _ := json.Marshal(map[string]interface{}{
			"gets": s.Gets.Get(), "cache_hits": s.CacheHits.Get(), "peer_loads": s.PeerLoads.Get(),
			"peer_errors": s.PeerErrors.Get(), "loads": s.Loads.Get(), "loads_deduped": s.LoadsDeduped.Get(),
			"local_loads": s.LocalLoads.Get(), "local_load_errs": s.LocalLoadErrs.Get(),
			"server_requests": s.ServerRequests.Get(),
			"main":            cs(group.CacheStats(groupcache.MainCache)),
			"hot":             cs(group.CacheStats(groupcache.HotCache)),
		})
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	ctl.HandleFunc("/peers", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			setPeers(splitList(string(body)))
		}
		peersMu.Lock()
		list := append([]string(nil), peers...)
		peersMu.Unlock()
		io.WriteString(w, strings.Join(list, "\n"))
	})

	errc := make(chan error, 2)
	go func() { errc <- http.Serve(peerLn, nil) }() // DefaultServeMux, like NewHTTPPool users
	go func() { errc <- http.Serve(ctlLn, ctl) }()
	fmt.Println("ready")
	log.Printf("self=%s listen=%s ctl=%s group=%s peers=%v", *self, peerLn.Addr(), ctlLn.Addr(), *groupName, splitList(*peerList))
	log.Fatal(<-errc)
}
