package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/gateway/cpclient"
)

// controlPlaneFlags are Main's flags for taking config from a control plane.
type controlPlaneFlags struct {
	addr, ca, tokenFile, namespace, name, node *string
	insecure                                   *bool
}

func addControlPlaneFlags(fs *flag.FlagSet) *controlPlaneFlags {
	return &controlPlaneFlags{
		addr:      fs.String("controlplane", "", "control plane host:port, or several replicas' as a comma-separated list; the config then comes from it (not with -config), with a last-known-good copy kept in -data"),
		ca:        fs.String("controlplane-ca", "", "PEM file of the CAs that sign the control plane's certificate (default: the system's roots)"),
		insecure:  fs.Bool("controlplane-insecure", false, "connect to the control plane WITHOUT TLS; for tests only: config and token travel in clear text"),
		tokenFile: fs.String("controlplane-token-file", "", "file holding this proxy's bootstrap token (required with -controlplane)"),
		namespace: fs.String("namespace", "default", "with -controlplane: the namespace whose resources this proxy serves"),
		name:      fs.String("name", "", "with -controlplane: this gateway's name, or the sidecar's workload name (required)"),
		node:      fs.String("node", "", "with -controlplane: this process's unique name among the proxy's replicas (default: the host name)"),
	}
}

// options checks the flags against each other and the -config paths, and
// returns the control plane client's options (Apply and DataDir left to the
// caller) and whether a control plane is used at all.
func (f *controlPlaneFlags) options(role string, configs []string, set map[string]bool) (cpclient.Options, bool, error) {
	if *f.addr == "" {
		for _, name := range []string{"controlplane-ca", "controlplane-insecure", "controlplane-token-file", "namespace", "name", "node"} {
			if set[name] {
				return cpclient.Options{}, false, fmt.Errorf("-%s is only meaningful with -controlplane", name)
			}
		}
		return cpclient.Options{}, false, nil
	}
	if len(configs) > 0 {
		return cpclient.Options{}, false, errors.New("-config and -controlplane exclude each other: with -controlplane the config comes from the control plane")
	}
	addrs, err := parseControlPlaneAddrs(*f.addr)
	if err != nil {
		return cpclient.Options{}, false, err
	}
	o := cpclient.Options{Addresses: addrs, Role: role, Namespace: *f.namespace, Name: *f.name, Node: *f.node}
	if o.Name == "" {
		return o, false, errors.New("-name is required with -controlplane (the gateway's name, or the sidecar's workload)")
	}
	if o.Node == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return o, false, fmt.Errorf("-node: the host name is unknown (%v); give -node", err)
		}
		o.Node = host
	}
	switch {
	case *f.insecure && *f.ca != "":
		return o, false, errors.New("-controlplane-ca and -controlplane-insecure exclude each other")
	case *f.insecure:
		// TLS stays nil: plain text. Main and the client both warn about it.
	default:
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if *f.ca != "" {
			pem, err := os.ReadFile(*f.ca)
			if err != nil {
				return o, false, fmt.Errorf("-controlplane-ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return o, false, fmt.Errorf("-controlplane-ca %s: no PEM certificate in it", *f.ca)
			}
			o.TLS.RootCAs = pool
		}
	}
	if *f.tokenFile == "" {
		return o, false, errors.New("-controlplane-token-file is required with -controlplane: the control plane admits proxies by their bootstrap token")
	}
	tok, err := os.ReadFile(*f.tokenFile)
	if err != nil {
		return o, false, fmt.Errorf("-controlplane-token-file: %v", err)
	}
	o.Token = strings.TrimSpace(string(tok))
	if o.Token == "" || strings.ContainsAny(o.Token, " \t\r\n") {
		return o, false, fmt.Errorf("-controlplane-token-file %s: want one token on one line", *f.tokenFile)
	}
	return o, true, nil
}

// parseControlPlaneAddrs splits -controlplane's comma-separated list and checks
// that each entry is host:port with a port number, and that none repeats.
func parseControlPlaneAddrs(list string) ([]string, error) {
	entries := strings.Split(list, ",")
	addrs := make([]string, 0, len(entries))
	for i, e := range entries {
		e = strings.TrimSpace(e)
		// Name the entry by its position too: an empty one has no text to name.
		where := fmt.Sprintf("-controlplane entry %d of %d", i+1, len(entries))
		if len(entries) == 1 {
			where = "-controlplane"
		}
		if e == "" {
			return nil, fmt.Errorf("%s is empty; want host:port (several replicas: host:port,host:port)", where)
		}
		if strings.Contains(e, "://") {
			return nil, fmt.Errorf("%s %q: want host:port, not a URL", where, e)
		}
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			return nil, fmt.Errorf("%s %q: want host:port: %v", where, e, err)
		}
		if host == "" {
			return nil, fmt.Errorf("%s %q: want host:port: the host is missing", where, e)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("%s %q: want host:port with a port number from 1 to 65535, not %q", where, e, port)
		}
		if slices.Contains(addrs, e) {
			return nil, fmt.Errorf("%s %q is listed twice", where, e)
		}
		addrs = append(addrs, e)
	}
	return addrs, nil
}
