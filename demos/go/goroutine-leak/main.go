// goroutine-leak: the goroutine explosion. Every request starts a lookup goroutine that reports
// on an unbuffered channel; the handler answers without waiting for it, so each lookup blocks
// forever on its send. Goroutines pile up at handle's go statement, one per request, until
// the process runs out of memory.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
)

// lookup computes the answer and reports it.
func lookup(id int, result chan<- int) {
	result <- id * 2
}

// handle answers one request; the lookup it starts is never waited for.
func handle(conn net.Conn, id int) {
	result := make(chan int)
	go lookup(id, result) // tracer-demo: leak site
	fmt.Fprintf(conn, "accepted %d\n", id)
}

func serve(ln net.Listener, requests int) {
	conn, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for i := 0; i < requests; i++ {
		if _, err := r.ReadString('\n'); err != nil {
			panic(err)
		}
		handle(conn, i)
	}
}

func main() {
	requests := flag.Int("count", 30, "requests")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		serve(ln, *requests)
		close(done)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	r := bufio.NewReader(conn)
	for i := 0; i < *requests; i++ {
		fmt.Fprintf(conn, "request %d\n", i)
		if _, err := r.ReadString('\n'); err != nil {
			panic(err)
		}
	}
	conn.Close()
	<-done
	fmt.Printf("served %d requests\n", *requests)
}
