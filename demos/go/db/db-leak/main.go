// db-leak: a user service whose queryUser returns the user as soon as it has read the row,
// without rows.Close(): database/sql never gets the connection back. With an unbounded pool
// every lookup opens one more connection to PostgreSQL, each held until the program exits;
// with --max-open N, N connections are held and every later caller waits for one, in vain.
package main

import (
	"database/sql"

	"tracer.demos/db/internal/users"
)

// queryUser looks a user up by id.
func queryUser(db *sql.DB, id int) (*users.User, error) {
	rows, err := db.Query("SELECT id, name FROM users WHERE id = $1", id) // tracer-demo: leak site
	if err != nil {
		return nil, err
	}
	// BUG: rows.Close() is never called: returning after the first row keeps the connection.
	if rows.Next() {
		var u users.User
		if err := rows.Scan(&u.ID, &u.Name); err != nil {
			return nil, err
		}
		return &u, nil
	}
	return nil, sql.ErrNoRows
}

func main() { users.Main(queryUser) }
