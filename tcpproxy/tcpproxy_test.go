package tcpproxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskerhq/tasker/tcpproxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes lines back until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	lis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() { _ = lis.Close(); wg.Wait() })
	return lis.Addr().String()
}

// roundTrip sends a line over c and reads the echo.
func roundTrip(c net.Conn, line string) (string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestCutAndRestore(t *testing.T) {
	t.Parallel()
	p := tcpproxy.Start(t, echoServer(t))

	before := dial(t, p.Addr())
	got, err := roundTrip(before, "hello")
	require.NoError(t, err)
	require.Equal(t, "hello", got)

	p.Cut()
	_, err = roundTrip(before, "lost")
	require.Error(t, err, "an open connection is dropped")
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "dropped, not stalled")

	// The port stays reserved, so the kernel completes the handshake; the
	// proxy then resets the connection, which a loaded machine may let
	// arrive before the dial returns.
	var d net.Dialer
	during, err := d.DialContext(t.Context(), "tcp", p.Addr())
	if err == nil {
		_, err = roundTrip(during, "refused")
		_ = during.Close()
	}
	require.Error(t, err, "a new connection is reset")
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "reset, not stalled")
	require.Equal(t, 2, p.Accepted())

	p.Restore()
	after := dial(t, p.Addr())
	got, err = roundTrip(after, "again")
	require.NoError(t, err)
	require.Equal(t, "again", got)
}

// TestCloseEndsConnections: Close leaves no goroutine behind (goleak), even
// with a connection open.
func TestCloseEndsConnections(t *testing.T) {
	t.Parallel()
	p, err := tcpproxy.New(echoServer(t))
	require.NoError(t, err)
	c := dial(t, p.Addr())
	_, err = roundTrip(c, "x")
	require.NoError(t, err)
	p.Close()
	_, err = roundTrip(c, "y")
	require.Error(t, err)
}
