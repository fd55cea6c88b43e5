package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// AllowList is the outbound policy of http steps, parsed from
// --http-allow-hosts: comma-separated entries, each a host ("api.example.com",
// "127.0.0.1"), a host and port ("localhost:8080"), a domain wildcard
// ("*.example.com", its subdomains) or an address prefix ("10.0.0.0/8").
//
// With no entry every host may be called. With entries, a URL's host (at
// the start and after each redirect) must match one. Either way, an address
// that is loopback, private, link-local (cloud metadata services such as
// 169.254.169.254 among them), shared (100.64.0.0/10), unspecified or
// multicast is refused unless an entry allows it explicitly: a prefix
// holding it, or a host or host:port entry naming the host exactly. The
// address checked is the one dialled, after resolution, so a name that
// resolves to an internal address cannot get around the rule.
type AllowList struct {
	hosts    map[string]bool // "host" and "host:port", lower case
	suffixes []string        // ".example.com" of "*.example.com"
	prefixes []netip.Prefix
}

// ParseAllowList parses comma-separated entries; blanks are ignored.
func ParseAllowList(s string) (*AllowList, error) {
	a := &AllowList{hosts: map[string]bool{}}
	for e := range strings.SplitSeq(s, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "":
			continue
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("http allow-list entry %q: not an address prefix: %w", e, err)
			}
			a.prefixes = append(a.prefixes, p.Masked())
		case strings.HasPrefix(e, "*."):
			if len(e) < 3 || strings.ContainsAny(e[2:], "*:") {
				return nil, fmt.Errorf("http allow-list entry %q: a wildcard is *.domain", e)
			}
			a.suffixes = append(a.suffixes, e[1:])
		default:
			host := e
			if h, port, err := net.SplitHostPort(e); err == nil {
				if port == "" || h == "" {
					return nil, fmt.Errorf("http allow-list entry %q: empty host or port", e)
				}
				host = h
				e = net.JoinHostPort(h, port)
			}
			if strings.ContainsAny(host, "*/ ") || strings.Trim(host, "[]") == "" {
				return nil, fmt.Errorf("http allow-list entry %q: not a host", e)
			}
			a.hosts[strings.Trim(e, "[]")] = true
		}
	}
	return a, nil
}

// Empty reports whether the list has no entry (every public host allowed).
func (a *AllowList) Empty() bool {
	return len(a.hosts) == 0 && len(a.suffixes) == 0 && len(a.prefixes) == 0
}

// named reports whether a host or host:port entry names host exactly.
func (a *AllowList) named(host, port string) bool {
	host = strings.ToLower(host)
	return a.hosts[host] || a.hosts[net.JoinHostPort(host, port)]
}

// HostAllowed reports whether a URL with this host and port may be called.
func (a *AllowList) HostAllowed(host, port string) bool {
	if a.Empty() || a.named(host, port) {
		return true
	}
	h := strings.ToLower(host)
	for _, s := range a.suffixes {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		for _, p := range a.prefixes {
			if p.Contains(ip.Unmap()) {
				return true
			}
		}
	}
	return false
}

// addrAllowed reports whether ip, which host:port resolved to, may be
// dialled.
func (a *AllowList) addrAllowed(host, port string, ip netip.Addr) bool {
	ip = ip.Unmap()
	if !special(ip) || a.named(host, port) {
		return true
	}
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

var sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // carrier-grade NAT; some clouds' metadata

// special reports an address inside a network or host, not on the
// internet.
func special(ip netip.Addr) bool {
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || !ip.IsValid() ||
		sharedSpace.Contains(ip) || (ip.Is4() && ip.As4()[0] == 0)
}

// RefusedError is a dial the allow-list refused.
type RefusedError struct {
	Host string
	Addr netip.Addr
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("host %s resolves to %s, an internal address that --http-allow-hosts does not allow", e.Host, e.Addr)
}

// dialer dials only addresses the allow-list allows.
type dialer struct {
	allow    *AllowList
	resolver *net.Resolver
	net      net.Dialer
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = d.resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	var errs []error
	for _, ip := range ips {
		if !d.allow.addrAllowed(host, port, ip) {
			errs = append(errs, &RefusedError{Host: host, Addr: ip.Unmap()})
			continue
		}
		conn, err := d.net.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("host %s has no address", host)
	}
	return nil, errors.Join(errs...)
}
