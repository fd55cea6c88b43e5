// Package auth holds Tasker's API tokens and what they allow.
//
// A token is a random secret of 256 bits, shown once when it is created and
// stored only as its SHA-256 hash, with a name, resource:action scopes
// (Scope), the namespaces it may act on, an optional expiry and a revocation
// time. Store creates, lists and revokes tokens directly in the database, so
// the first token needs no running server. Authenticator turns the bearer
// secret of a call into a Principal, caching lookups for a few seconds in a
// bounded cache so that a revocation takes effect on every replica within
// that time. Namespaces resolves the namespace of a task or step id for the
// server's per-namespace checks; a namespace never changes, so those
// answers are cached without expiry.
//
// The server decides which scope each RPC needs and which namespaces it
// touches; this package only knows what a token holds.
package auth
