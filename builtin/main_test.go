package builtin_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection openers live as long as a pool; pools of
		// finished tests are closed, but the opener exits asynchronously.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
