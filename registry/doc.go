// Package registry owns task templates: the named, versioned DAGs of steps
// that tasks are created from. It parses them from YAML, validates them
// against every rule RegisterTaskTemplate documents (names, semantic
// version, unique steps, known dependencies, no cycle, policy bounds, JSON
// Schema, sizes) and reports each violation with its field path; it fills
// the template-level defaults and works out the effective retry policy,
// lease and timeout of each step, which the engine copies onto steps at
// task creation; it hashes a canonical form of the content so that
// registering the same template twice is a no-op and different content for
// an existing version is refused unless replaced; and it stores versions
// through ent and finds them again, the latest by semantic version when
// none is named. It knows nothing of gRPC services: the Store answers with
// tasker.v1 template messages, which the server returns as they are, and
// *fault.Error values, which the server turns into statuses. Only the engine
// reads the stored rows (Resolve), to create tasks from them.
package registry
