// Package fault defines the domain errors of Tasker: what went wrong, in the
// terms of the contract's error table (DESIGN §2), without knowing gRPC.
//
// The engine and the registry return *Error values; the server maps them to
// status codes with BadRequest, ErrorInfo and ResourceInfo details in one
// interceptor, and batch calls copy the same code and reason into their
// per-entry results. Storage attaches an Unavailable error, with a retry
// delay, to the driver errors that mean the database is out of reach. Any
// other error reaching the server is internal: it is logged in full and
// masked to the client.
package fault
