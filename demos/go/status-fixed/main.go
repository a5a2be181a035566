// status-fixed: status-leak's twin; the body is closed, so one connection is reused for every
// call, and the client's idle connection and the server are shut down at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
)

// fetchStatus returns the status code of a GET, draining and closing the body.
func fetchStatus(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func main() {
	count := flag.Int("count", 20, "requests")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})}
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(ln)
		close(done)
	}()
	url := "http://" + ln.Addr().String() + "/status"
	for i := 0; i < *count; i++ {
		if _, err := fetchStatus(url); err != nil {
			panic(err)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	_ = srv.Shutdown(context.Background())
	<-done
	fmt.Printf("made %d requests\n", *count)
}
