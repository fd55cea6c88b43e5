// Package storagetest gives each test its own migrated database, on either
// dialect, so storage behaviour is tested against real SQLite and PostgreSQL
// and tests never share state. SQLite databases are files under t.TempDir()
// (an in-memory database would be private to one pooled connection).
// PostgreSQL databases are cloned with CREATE DATABASE ... TEMPLATE from a
// template migrated once per schema version, which takes milliseconds, and
// dropped when the test ends.
package storagetest
