// file-leak: a log aggregator that opens about 50 log files a second to append to them and
// never closes them: the handles pile up in its list of "active" logs until the process hits
// its descriptor limit. --count files are leaked.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"tracer.demos/go/internal/progress"
)

// activeLogs is the aggregator's list of open logs; nothing ever removes an entry.
var activeLogs []*os.File

// openLog opens a log file for appending.
func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644) // tracer-demo: leak site
	if err != nil {
		return nil, err
	}
	// BUG: registered as active, never closed.
	activeLogs = append(activeLogs, f)
	return f, nil
}

func main() {
	count := flag.Int("count", 100, "log files to open")
	rate := flag.Float64("rate", 50, "files per second (0: no pause)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "tracer-demo-go-logs-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	p := progress.Start("files opened")
	for i := 0; i < *count; i++ {
		f, err := openLog(filepath.Join(dir, fmt.Sprintf("app-%04d.log", i)))
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(f, "2026-11-25T10:00:00Z INFO request %d served\n", i)
		p.Tick(i + 1)
		progress.Pace(*rate)
	}
	p.Finish(*count)
	fmt.Printf("WARNING: %d log files still open\n", len(activeLogs))
}
