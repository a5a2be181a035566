// http-loop: the benchmark's Go HTTP client loop. N GETs to 127.0.0.1:PORT, each on a new
// connection (so net/http dials on a goroutine of its own and starts its connection's reader
// and writer goroutines every time). It speaks the benchmark's twin protocol: with CHURN_CPU=K
// it pins itself to CPU K; with CHURN_GO=FIFO it prints "ready" and waits for a byte on FIFO;
// at the end it prints the wall and CPU (user + system) nanoseconds per request.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// pin puts every thread of the process on one CPU (threads started later inherit it).
func pin(cpu int) error {
	var mask [16]uint64
	mask[cpu/64] |= 1 << (cpu % 64)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid),
			unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask[0])))
		if e != 0 {
			return e
		}
	}
	return nil
}

func cpuNs() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: http-loop N PORT")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "N must be a positive number")
		os.Exit(2)
	}
	url := "http://127.0.0.1:" + os.Args[2] + "/"
	if cpu := os.Getenv("CHURN_CPU"); cpu != "" {
		k, _ := strconv.Atoi(cpu)
		if err := pin(k); err != nil {
			fmt.Fprintln(os.Stderr, "CHURN_CPU:", err)
			os.Exit(1)
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if fifo := os.Getenv("CHURN_GO"); fifo != "" {
		// Opened read-write before saying ready: opening never blocks, and the benchmark's
		// byte cannot come (and go) before this twin holds the FIFO.
		f, err := os.OpenFile(fifo, os.O_RDWR, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "CHURN_GO:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		var b [1]byte
		_, _ = f.Read(b[:])
		f.Close()
	}
	start, cpu0 := time.Now(), cpuNs()
	for i := 0; i < n; i++ {
		resp, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	wall, cpu := float64(time.Since(start).Nanoseconds()), cpuNs()-cpu0
	fmt.Printf("%.1f %.1f\n", wall/float64(n), cpu/float64(n))
}
