package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
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
		addr:      fs.String("controlplane", "", "control plane host:port; the config then comes from it (not with -config), with a last-known-good copy kept in -data"),
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
	if strings.Contains(*f.addr, "://") {
		return cpclient.Options{}, false, fmt.Errorf("-controlplane %q: want host:port, not a URL", *f.addr)
	}
	if _, _, err := net.SplitHostPort(*f.addr); err != nil {
		return cpclient.Options{}, false, fmt.Errorf("-controlplane %q: want host:port: %v", *f.addr, err)
	}
	o := cpclient.Options{Address: *f.addr, Role: role, Namespace: *f.namespace, Name: *f.name, Node: *f.node}
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
