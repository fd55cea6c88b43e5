package tcpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards the connections it accepts to a target address.
type Proxy struct {
	target string
	lis    net.Listener
	done   chan struct{} // closed when the accept loop has ended

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{} // both ends of every forwarded connection
	// accepted counts connections accepted, forwarded or reset, so a test
	// can wait for a client to have tried.
	accepted int
	wg       sync.WaitGroup // the goroutines copying data
}

// New starts a proxy on a loopback port of its own that forwards to target.
// Close it when done.
func New(target string) (*Proxy, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, lis: lis, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

// Start is New for a test: it fails the test if the proxy cannot start and
// closes the proxy when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatalf("tcpproxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr is the address clients connect to instead of the target.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Cut resets every open connection and every new one until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		reset(c)
		delete(p.conns, c)
	}
}

// Restore forwards new connections again. Connections cut stay closed:
// clients reconnect, as they would after a real outage.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Accepted returns how many connections the proxy has accepted so far,
// forwarded or reset.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() {
	_ = p.lis.Close()
	<-p.done
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer close(p.done)
	for {
		client, err := p.lis.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		p.accepted++
		cut := p.cut
		p.mu.Unlock()
		if cut {
			reset(client)
			continue
		}
		p.wg.Add(1)
		go p.forward(client)
	}
}

// forward connects client to the target and copies both ways until either
// side closes or Cut.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	var d net.Dialer
	server, err := d.Dial("tcp", p.target)
	if err != nil {
		reset(client)
		return
	}
	p.mu.Lock()
	if p.cut { // cut while dialling
		p.mu.Unlock()
		reset(client)
		reset(server)
		return
	}
	p.conns[client] = struct{}{}
	p.conns[server] = struct{}{}
	p.mu.Unlock()

	var copies sync.WaitGroup
	copies.Go(func() { pipe(server, client) })
	copies.Go(func() { pipe(client, server) })
	copies.Wait()

	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
	_ = client.Close()
	_ = server.Close()
}

// pipe copies from src to dst and passes on the end of src's data, so a
// clean close on one side is a clean close on the other.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil || errors.Is(err, io.EOF) {
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			return
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// reset closes c with a TCP reset rather than an orderly close, the way a
// peer that crashed or a network that broke is seen.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
