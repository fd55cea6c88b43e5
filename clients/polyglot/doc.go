// Package polyglot holds the end-to-end test of the clients in every
// language against one server: a template whose steps are served by a Go
// worker (the Go SDK, worker/), a Python worker (tasker_client,
// clients/python) and a TypeScript worker (@taskerhq/client,
// clients/typescript), with parents' results crossing every language
// boundary, a CancelTask that reaches the Python and TypeScript handlers as
// cancellation, and a subscriber in each language that must see a task's
// events as ListEvents lists them.
//
// The Python and TypeScript sides are the programs polyglot.py and
// polyglot.mjs in this folder, run as subprocesses (/usr/bin/python3 and
// node). Each has three modes: worker (the test's handlers), subscribe (a
// task's events as JSON lines) and noop (a worker of one handler that
// returns at once, which `tasker bench --worker-cmd` runs). `make
// test-polyglot` builds what they need; without python3-grpcio or node the
// test skips with a message, unless CI is "true", where it fails.
package polyglot
