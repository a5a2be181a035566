// status-leak: the most common Go leak, with the default client: fetchStatus reads the status
// of a GET and never closes the response body, so every call keeps its connection (and the
// transport's two goroutines serving it). The dial happens on a goroutine net/http starts, so
// the socket's own stack has no frame of this program: tracer names fetchStatus through the
// goroutine's ancestry ("created by").
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
)

// fetchStatus returns the status code of a GET; the body is never closed.
func fetchStatus(url string) (int, error) {
	resp, err := http.Get(url) // tracer-demo: leak site
	if err != nil {
		return 0, err
	}
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
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String() + "/status"
	for i := 0; i < *count; i++ {
		if _, err := fetchStatus(url); err != nil {
			panic(err)
		}
	}
	fmt.Printf("made %d requests\n", *count)
}
