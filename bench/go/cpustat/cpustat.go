// Package cpustat reads /proc/stat and /proc/PID/stat so a benchmark can
// report how much CPU other processes took while it ran (on a shared 2-core
// machine a figure is only as good as that number is small), and how much
// its own processes used. Shared by bench/go/hit and bench/go/peers.
package cpustat

import (
	"os"
	"strconv"
	"strings"
)

// Sample is a reading of the machine's busy CPU time and of our own
// processes' CPU time, both in clock ticks, so a run can report how much CPU
// other processes took meanwhile (a benchmark on a shared 2-core machine is
// only as good as that number is small).
type Sample struct{ busy, own, total int64 }

func Read(pids ...int) Sample {
	var s Sample
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line := strings.SplitN(string(b), "\n", 2)[0]
		f := strings.Fields(line)
		for i, x := range f[1:] {
			v, _ := strconv.ParseInt(x, 10, 64)
			s.total += v
			if i != 3 && i != 4 { // idle, iowait
				s.busy += v
			}
		}
	}
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		str := string(b)
		f := strings.Fields(str[strings.LastIndexByte(str, ')')+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		s.own += ut + st
	}
	return s
}

// OtherPercent is the share of all CPU time between a and b that went to
// processes other than ours (100 = every core busy with something else).
func OtherPercent(a, b Sample) float64 {
	total := b.total - a.total
	if total <= 0 {
		return 0
	}
	other := (b.busy - a.busy) - (b.own - a.own)
	if other < 0 {
		other = 0
	}
	return float64(int64(float64(other)*1000/float64(total))) / 10
}

// OwnPercent is the share of all CPU time between a and b that our own
// processes used (100 = every core busy with this benchmark).
func OwnPercent(a, b Sample) float64 {
	total := b.total - a.total
	if total <= 0 {
		return 0
	}
	return float64(int64(float64(b.own-a.own)*1000/float64(total))) / 10
}
