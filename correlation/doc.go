// Package correlation carries the correlation id of a call through a
// context: taken from the x-correlation-id request header or generated,
// stored on the task it creates, and stamped on every event, log line and
// span the call causes.
package correlation
