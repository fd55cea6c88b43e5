// Package tcpproxy is a TCP proxy for tests that puts a network fault
// between two parts of Tasker: it forwards connections from a loopback
// address to a target (the server to PostgreSQL, a worker to the server)
// until told to cut them. Cut drops every open connection with a reset, as
// a crashed peer or a broken network would, and resets new ones until
// Restore, so clients see what they see in an outage (connection reset,
// unexpected EOF, failed connects) while the address stays reserved and
// nothing else can take the port meanwhile.
//
// Tests of status codes and health use it today; the chaos suite cuts
// PostgreSQL's connections with it for several seconds at a time.
package tcpproxy
