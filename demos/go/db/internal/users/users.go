// Package users is the user service the database demos share: a users table in PostgreSQL,
// and lookups made all at once through one database/sql pool, each by the program's own
// queryUser. Callers give up on a lookup after --timeout (one still waiting for a connection
// stays blocked in the pool: its goroutine is abandoned).
package users

import (
	"bufio"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	_ "github.com/lib/pq"
)

// User is a row of the users table.
type User struct {
	ID   int
	Name string
}

// Lookup is a program's queryUser. It takes no context, as in most code that leaks: a
// context's end would close the rows (database/sql watches it) and hide the leak.
type Lookup func(db *sql.DB, id int) (*User, error)

// Main parses the flags, fills the users table, runs the lookups concurrently, prints what
// happened to them and to the pool, keeps running for --hold, then closes the pool and exits.
func Main(queryUser Lookup) {
	dsn := flag.String("dsn", os.Getenv("TRACER_DEMO_DSN"), "libpq connection string (default: $TRACER_DEMO_DSN)")
	count := flag.Int("count", 10, "user lookups, made concurrently")
	maxOpen := flag.Int("max-open", 0, "the pool's MaxOpenConns (0: unbounded)")
	timeout := flag.Duration("timeout", 2*time.Second, "how long the callers wait for their lookups")
	waitLine := flag.Bool("wait", false, "wait for a line on standard input before the lookups (to attach a tracer first)")
	rate := flag.Float64("rate", 0, "lookups started per second (0: all at once)")
	hold := flag.Duration("hold", 3*time.Second, "how long the service keeps running after the lookups")
	flag.Parse()
	if *dsn == "" {
		fail(errors.New("no --dsn and no TRACER_DEMO_DSN"))
	}
	if err := fill(*dsn, *count); err != nil {
		fail(err)
	}
	db, err := sql.Open("postgres", *dsn)
	if err != nil {
		fail(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(*maxOpen)
	if *waitLine {
		fmt.Println("[READY] press Enter to start the lookups")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fail(fmt.Errorf("reading standard input: %w", err))
		}
	}
	results := make(chan error, *count)
	for id := 1; id <= *count; id++ {
		go func(id int) {
			_, err := queryUser(db, id)
			results <- err
		}(id)
		if *rate > 0 {
			time.Sleep(time.Duration(float64(time.Second) / *rate))
		}
	}
	found, failed := 0, 0
	deadline := time.After(*timeout)
wait:
	for done := 0; done < *count; done++ {
		select {
		case err := <-results:
			if err != nil {
				failed++
				fmt.Fprintf(os.Stderr, "lookup: %v\n", err)
			} else {
				found++
			}
		case <-deadline:
			break wait
		}
	}
	timedOut := *count - found - failed
	fmt.Printf("%d lookups: %d found, %d still waiting for a connection after %s, %d failed\n", *count, found, timedOut, *timeout, failed)
	start := time.Now()
	for {
		s := db.Stats()
		fmt.Printf("[AFTER %.0fs] pool: %d connections open, %d in use, %d idle; callers waited %d times\n",
			time.Since(start).Seconds(), s.OpenConnections, s.InUse, s.Idle, s.WaitCount)
		if time.Since(start) >= *hold {
			break
		}
		next := time.Second
		if left := *hold - time.Since(start); left < next {
			next = left
		}
		time.Sleep(next)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

// fill creates the users table with users 1..n, through a pool of its own, closed after.
func fill(dsn string, n int) error {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS users (id int PRIMARY KEY, name text NOT NULL)"); err != nil {
		return fmt.Errorf("creating the users table: %w", err)
	}
	_, err = db.Exec("INSERT INTO users SELECT g, 'user-' || g FROM generate_series(1, $1::int) g ON CONFLICT DO NOTHING", n)
	if err != nil {
		return fmt.Errorf("filling the users table: %w", err)
	}
	return nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "error: %v\n", err)
	os.Exit(1)
}
