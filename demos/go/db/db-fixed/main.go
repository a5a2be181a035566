// db-fixed: db-leak's twin; queryUser closes its rows, so each connection goes back to the
// pool, is reused, and is closed with the pool at exit.
package main

import (
	"database/sql"

	"tracer.demos/db/internal/users"
)

// queryUser looks a user up by id.
func queryUser(db *sql.DB, id int) (*users.User, error) {
	rows, err := db.Query("SELECT id, name FROM users WHERE id = $1", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if rows.Next() {
		var u users.User
		if err := rows.Scan(&u.ID, &u.Name); err != nil {
			return nil, err
		}
		return &u, nil
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return nil, sql.ErrNoRows
}

func main() { users.Main(queryUser) }
