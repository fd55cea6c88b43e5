// Command tasker is the one binary of Tasker: `serve` runs the service,
// `migrate` prepares a database, and the client subcommands (`template
// apply`, …) talk to a running server over gRPC.
package main
