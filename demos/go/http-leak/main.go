// http-leak: an API gateway whose fetch returns early on a non-200 response without closing
// the body, so the connection is never reused nor released: every failed call (--count of them)
// leaves one more connection open, on the gateway's side and on the upstream's.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"tracer.demos/go/internal/progress"
)

// dialUpstream is the gateway's dialer (a connect timeout, as production clients set).
func dialUpstream(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	return d.DialContext(ctx, network, addr) // tracer-demo: leak site
}

var client = &http.Client{Transport: &http.Transport{DialContext: dialUpstream}}

// fetch calls the upstream and returns the body of a successful call.
func fetch(url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		// BUG: resp.Body is never closed on this path.
		return nil, fmt.Errorf("bad status: %d", resp.StatusCode)
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func upstream(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/flaky" {
		http.Error(w, "upstream busy", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func main() {
	count := flag.Int("count", 100, "failing calls")
	rate := flag.Float64("rate", 25, "calls per second (0: no pause)")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go http.Serve(ln, http.HandlerFunc(upstream))
	base := "http://" + ln.Addr().String()
	p := progress.Start("requests made")
	failed := 0
	for i := 0; i < 2**count; i++ {
		path := "/ok"
		if i%2 == 1 {
			path = "/flaky"
		}
		if _, err := fetch(base + path); err != nil {
			failed++
		}
		p.Tick(i + 1)
		progress.Pace(*rate)
	}
	p.Finish(2 * *count)
	fmt.Printf("WARNING: %d calls failed and kept their connections\n", failed)
}
