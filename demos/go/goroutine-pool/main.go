// goroutine-pool: goroutine-leak's twin; a fixed pool of workers does the lookups, each
// answer is read, and the pool is stopped (its channel closed, its workers waited for) before
// the process exits.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"sync"
)

type job struct {
	id     int
	result chan int
}

// worker does lookups until the jobs channel is closed.
func worker(jobs <-chan job, wg *sync.WaitGroup) {
	defer wg.Done()
	for j := range jobs {
		j.result <- j.id * 2
	}
}

// handle answers one request with the pool's answer.
func handle(conn net.Conn, id int, jobs chan<- job) {
	j := job{id: id, result: make(chan int, 1)}
	jobs <- j
	fmt.Fprintf(conn, "answer %d\n", <-j.result)
}

func serve(ln net.Listener, requests int, jobs chan<- job) {
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
		handle(conn, i, jobs)
	}
}

func main() {
	requests := flag.Int("count", 30, "requests")
	workers := flag.Int("workers", 4, "pool size")
	flag.Parse()
	jobs := make(chan job)
	var wg sync.WaitGroup
	for i := 0; i < *workers; i++ {
		wg.Add(1)
		go worker(jobs, &wg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		serve(ln, *requests, jobs)
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
	close(jobs)
	wg.Wait()
	fmt.Printf("served %d requests\n", *requests)
}
