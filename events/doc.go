// Package events owns the event log: the catalogue of event types, Append,
// which writes events in the same transaction as the change they describe,
// the numbering that gives readers a dense, strictly increasing sequence,
// Log, which reads it and wakes readers when it grows, and what is built
// on reading it: subscriptions, in-process subscribers, exporters, custom
// events and retention.
//
// On SQLite there is one writer, so Append numbers events inside the writing
// transaction: the next sequence is the highest one plus one, and no later
// commit can slip below it; the engine calls Log.Appended after such a
// commit to wake readers in the process. On PostgreSQL concurrent writers
// commit in any order, so Append leaves events unnumbered and Log.Appended
// NOTIFYs tasker_events after the commit; one Sequencer per database (the holder of a
// session advisory lock on a dedicated connection) numbers committed events
// after the committed maximum, one short transaction per batch, and
// NOTIFYs tasker_sequenced with the new head, which every process's Log
// follows through the process's one storage.Listener (Log.Listen; the
// sequencer is woken through it too). Readers only read numbered
// events, which at any moment form a dense prefix of the sequence, so a
// number once read is final and nothing ever appears below it.
//
// Readers select events with a Filter (namespace, template, task,
// correlation id, type patterns such as "step.*"), validated by
// ParseFilter, whose Matcher also matches events in memory. Log.List
// reports how far it scanned, so a narrowly filtered reader resumes
// without rescanning, and refuses a resume point that retention has already
// passed with OutOfRange LOG_TRUNCATED.
//
// Log.Run is the replica's one reader of the log: once per wake-up it
// reads the new events and hands each live Subscription (Log.Subscribe)
// those its filter selects, into a bounded buffer of its own, so a commit
// costs the database the same few reads however many subscriptions
// follow. A subscription reads pages with List itself until it has caught
// up with the reader, then joins its feed; one whose buffer would overflow
// is let go, reads at its own pace from right after the last event it
// took, and joins again when it reaches the reader's position, so a slow
// one never holds back the engine or the others, and sequence numbers keep
// every hand-over free of gaps and repeats. The gRPC Subscribe stream and
// each in-process subscriber of a Registry are one Subscription each. The Registry also
// holds the Exporters by format (JSON lines and CSV built in), which write
// the stable Record form of events, and the file exports of
// Registry.ExportToFile: each follows the log with a Subscription of its
// own and, after syncing the file, stores a Checkpoint (sequence and byte
// offset) beside it, so after a crash it cuts the file back to the
// checkpoint and resumes after its sequence: every event exactly once, in
// order.
//
// The Catalogue documents every built-in type and its payload fields;
// custom events (Log.Publish) use any other lowercase dotted type. A
// Retainer trims the oldest events by age and count, never the newest and
// never an unnumbered one.
package events
