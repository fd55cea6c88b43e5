package worker

import "time"

// OmittedParents returns the names of the parents whose results did not
// travel with the claim, so tests can tell that Parent read them with
// GetStep.
func OmittedParents(s *Step) []string {
	var names []string
	for _, p := range s.parents {
		if p.omitted {
			names = append(names, p.name)
		}
	}
	return names
}

// Classify returns what FailStep would send for a handler's error.
func Classify(err error) (typ string, nonRetryable bool, retryAfter time.Duration) {
	f := describe(err)
	return f.typ, f.nonRetryable, f.retryAfter
}
