// Package progress prints the demos' live progress line, read from /proc/self/fd.
package progress

import (
	"fmt"
	"os"
	"time"
)

// OpenFDs is the number of descriptors this process has open.
func OpenFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(entries)
}

// Progress prints "[AFTER 2s] open fds: 108 | files opened: 100" once a second.
type Progress struct {
	start, last time.Time
	what        string
}

// Start prints the starting descriptor count.
func Start(what string) *Progress {
	fmt.Printf("[START] open fds: %d\n", OpenFDs())
	now := time.Now()
	return &Progress{start: now, last: now, what: what}
}

// Tick reports done operations if a second has passed since the last line.
func (p *Progress) Tick(done int) {
	if time.Since(p.last) >= time.Second {
		p.last = time.Now()
		p.line(done)
	}
}

// Finish prints the final line.
func (p *Progress) Finish(done int) { p.line(done) }

func (p *Progress) line(done int) {
	fmt.Printf("[AFTER %ds] open fds: %d | %s: %d\n", int(time.Since(p.start).Seconds()), OpenFDs(), p.what, done)
}

// Pace sleeps between operations to keep rate per second (0: no pause).
func Pace(rate float64) {
	if rate > 0 {
		time.Sleep(time.Duration(float64(time.Second) / rate))
	}
}
