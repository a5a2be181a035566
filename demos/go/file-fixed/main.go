// file-fixed: file-leak's twin; each log file is closed once the entry is written.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"tracer.demos/go/internal/progress"
)

// appendLog appends one entry to a log file.
func appendLog(path string, i int) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "2026-11-25T10:00:00Z INFO request %d served\n", i)
	return err
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
		if err := appendLog(filepath.Join(dir, fmt.Sprintf("app-%04d.log", i)), i); err != nil {
			panic(err)
		}
		p.Tick(i + 1)
		progress.Pace(*rate)
	}
	p.Finish(*count)
	fmt.Println("No leak! File descriptors stable")
}
