// http-fixed: http-leak's twin; the body is always drained and closed, so connections return to
// the pool and are reused; the client and the upstream shut down cleanly at the end.
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

func dialUpstream(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	return d.DialContext(ctx, network, addr)
}

var transport = &http.Transport{DialContext: dialUpstream, MaxIdleConnsPerHost: 2}
var client = &http.Client{Transport: transport, Timeout: 5 * time.Second}

// fetch calls the upstream and returns the body of a successful call.
func fetch(url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bad status: %d", resp.StatusCode)
	}
	return body, err
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
	srv := &http.Server{Handler: http.HandlerFunc(upstream)}
	go srv.Serve(ln)
	base := "http://" + ln.Addr().String()
	p := progress.Start("requests made")
	for i := 0; i < 2**count; i++ {
		path := "/ok"
		if i%2 == 1 {
			path = "/flaky"
		}
		fetch(base + path)
		p.Tick(i + 1)
		progress.Pace(*rate)
	}
	p.Finish(2 * *count)
	transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	fmt.Println("No leak! Connections properly reused")
}
