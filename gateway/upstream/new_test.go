package upstream_test

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/gateway/config"
	"github.com/portcullis/portcullis/gateway/upstream"
)

func TestNewRefusesBadSpecs(t *testing.T) {
	short := secretFile(t, "too short")
	ok := func() config.ClusterSpec { return static([]string{"10.0.0.1:80"}) }
	tests := []struct {
		name  string
		spec  func() config.ClusterSpec
		field string
		msg   string
	}{
		{"no endpoints", func() config.ClusterSpec { return config.ClusterSpec{} }, "endpoints", "exactly one"},
		{"both endpoints and dns", func() config.ClusterSpec {
			s := ok()
			s.DNS = &config.DNSDiscovery{Name: "x", Port: 80}
			return s
		}, "endpoints", "exactly one"},
		{"host name endpoint", func() config.ClusterSpec { return static([]string{"svc.local:80"}) }, "endpoints[0].address", "dns"},
		{"no port", func() config.ClusterSpec { return static([]string{"10.0.0.1"}) }, "endpoints[0].address", "ip:port"},
		{"duplicate", func() config.ClusterSpec { return static([]string{"10.0.0.1:80", "10.0.0.1:80"}) }, "endpoints[1].address", "endpoints[0]"},
		{"negative weight", func() config.ClusterSpec { return static([]string{"10.0.0.1:80"}, -1) }, "endpoints[0].weight", "negative"},
		{"dns without name", func() config.ClusterSpec {
			return config.ClusterSpec{DNS: &config.DNSDiscovery{Port: 80}}
		}, "dns.name", "required"},
		{"dns bad port", func() config.ClusterSpec {
			return config.ClusterSpec{DNS: &config.DNSDiscovery{Name: "x", Port: 70000}}
		}, "dns.port", "port"},
		{"dns zero interval", func() config.ClusterSpec {
			return config.ClusterSpec{DNS: &config.DNSDiscovery{Name: "x", Port: 80, RefreshInterval: dur(0)}}
		}, "dns.refreshInterval", "positive"},
		{"unknown policy", func() config.ClusterSpec {
			s := ok()
			s.LoadBalancer.Policy = "fastest"
			return s
		}, "loadBalancer.policy", "fastest"},
		{"ring hash without key", func() config.ClusterSpec {
			s := ok()
			s.LoadBalancer.Policy = config.LBRingHash
			return s
		}, "loadBalancer.hash", "required"},
		{"two hash keys", func() config.ClusterSpec {
			s := ok()
			s.LoadBalancer = config.LoadBalancer{Policy: config.LBMaglev, Hash: &config.HashKey{Header: "a", SourceIP: true}}
			return s
		}, "loadBalancer.hash", "exactly one"},
		{"sticky without name", func() config.ClusterSpec {
			s := ok()
			s.LoadBalancer.StickyCookie = &config.StickyCookie{}
			return s
		}, "loadBalancer.stickyCookie.name", "required"},
		{"sticky bad name", func() config.ClusterSpec {
			s := ok()
			s.LoadBalancer.StickyCookie = &config.StickyCookie{Name: "a b"}
			return s
		}, "loadBalancer.stickyCookie.name", "cookie name"},
		{"sticky short secret", func() config.ClusterSpec {
			s := ok()
			s.LoadBalancer.StickyCookie = &config.StickyCookie{Name: "s", SecretFile: short}
			return s
		}, "loadBalancer.stickyCookie.secretFile", "at least 32"},
		{"sticky missing secret", func() config.ClusterSpec {
			s := ok()
			s.LoadBalancer.StickyCookie = &config.StickyCookie{Name: "s", SecretFile: filepath.Join(t.TempDir(), "none")}
			return s
		}, "loadBalancer.stickyCookie.secretFile", "no such file"},
		{"health path", func() config.ClusterSpec {
			s := ok()
			s.HealthCheck = &config.HealthCheck{Path: "healthz"}
			return s
		}, "healthCheck.path", "'/'"},
		{"health zero interval", func() config.ClusterSpec {
			s := ok()
			s.HealthCheck = &config.HealthCheck{Path: "/", Interval: dur(0)}
			return s
		}, "healthCheck.interval", "positive"},
		{"health negative threshold", func() config.ClusterSpec {
			s := ok()
			s.HealthCheck = &config.HealthCheck{Path: "/", UnhealthyThreshold: -1}
			return s
		}, "healthCheck.unhealthyThreshold", "negative"},
		{"health bad status", func() config.ClusterSpec {
			s := ok()
			s.HealthCheck = &config.HealthCheck{Path: "/", ExpectedStatuses: []int{200, 1000}}
			return s
		}, "healthCheck.expectedStatuses[1]", "1000"},
		{"health over TLS without a probe", func() config.ClusterSpec {
			s := ok()
			s.TLS = &config.UpstreamTLS{}
			s.HealthCheck = &config.HealthCheck{Path: "/"}
			return s
		}, "healthCheck", "Options.Probe"},
		{"outlier percent", func() config.ClusterSpec {
			s := ok()
			s.OutlierDetection = &config.OutlierDetection{MaxEjectionPercent: 101}
			return s
		}, "outlierDetection.maxEjectionPercent", "between 0 and 100"},
		{"outlier zero ejection time", func() config.ClusterSpec {
			s := ok()
			s.OutlierDetection = &config.OutlierDetection{BaseEjectionTime: dur(0)}
			return s
		}, "outlierDetection.baseEjectionTime", "positive"},
		{"negative breaker", func() config.ClusterSpec {
			s := ok()
			s.CircuitBreaker.MaxRetries = -1
			return s
		}, "circuitBreaker.maxRetries", "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := upstream.New("test", tt.spec(), upstream.Options{Logger: quiet})
			if err == nil {
				c.Close()
				t.Fatal("accepted")
			}
			var fe *upstream.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("error %q does not name field %s", err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q, want %q: ...%s...", err, tt.field, tt.msg)
			}
		})
	}

	// Every problem is reported, not only the first.
	s := static([]string{"nonsense"})
	s.LoadBalancer.Policy = "x"
	_, err := upstream.New("test", s, upstream.Options{Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "endpoints[0].address") || !strings.Contains(err.Error(), "loadBalancer.policy") {
		t.Fatalf("joined errors: %v", err)
	}
	// A missing secret file is still recognisable as such.
	s = ok()
	s.LoadBalancer.StickyCookie = &config.StickyCookie{Name: "s", SecretFile: filepath.Join(t.TempDir(), "none")}
	if _, err := upstream.New("test", s, upstream.Options{Logger: quiet}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing secret file: %v, want fs.ErrNotExist in the chain", err)
	}
}

func TestLifecycle(t *testing.T) {
	ps := &pools{}
	spec := static(addrs(2))
	spec.HealthCheck = &config.HealthCheck{Path: "/", Interval: dur(time.Hour)}
	c, err := upstream.New("orders", spec, upstream.Options{Logger: quiet, NewPool: ps.New, Probe: func(context.Context, *upstream.Endpoint, string) (int, error) { return 200, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "orders" {
		t.Fatalf("Name() = %q", c.Name())
	}
	c.Start()
	c.Start() // idempotent
	c.Close()
	c.Close() // idempotent
	c.Start() // after Close: nothing
	for _, a := range addrs(2) {
		if p := ps.made(a); len(p) != 1 || p[0].closes() != 1 {
			t.Fatalf("%s: pools %v, want one, closed once", a, p)
		}
	}
	// Requests in flight on a retired snapshot can still pick.
	if _, err := c.Pick(nil, netip.Addr{}, nil); err != nil {
		t.Fatalf("Pick after Close: %v", err)
	}
}
