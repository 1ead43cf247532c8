package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/portcullis/portcullis/controlplane/auth"
)

// ConfigVersion is the only config file version this build reads.
const ConfigVersion = "controlplane.portcullis.dev/v1alpha1"

// Config is the control plane's configuration file. It is the file format only;
// New turns it into the running pieces (auth.Policy, the store, the listeners).
type Config struct {
	// APIVersion must be ConfigVersion.
	APIVersion string `yaml:"apiVersion"`
	// Name identifies this replica in leader election and status. Default: the
	// host name.
	Name string `yaml:"name,omitempty"`
	// Listen is the gRPC address (admin API, config push, registry). Default
	// "127.0.0.1:9443".
	Listen string `yaml:"listen,omitempty"`
	// HTTPListen is the HTTP/JSON API, /metrics and /healthz address, over the
	// same TLS. Default "127.0.0.1:9444"; "off" disables it.
	HTTPListen string `yaml:"httpListen,omitempty"`
	// TLS is the server certificate and the CA client certificates are checked
	// against. Required (there is no plain-text mode).
	TLS TLSConfig `yaml:"tls"`
	// Store is where state is kept. Default: an embedded store under -data.
	Store StoreConfig `yaml:"store,omitempty"`
	// OIDC verifies people's bearer tokens; without it only client certificates
	// and API tokens identify operators.
	OIDC *OIDCConfig `yaml:"oidc,omitempty"`
	// ProxyTokens are the proxies' bootstrap tokens, by digest.
	ProxyTokens []ProxyTokenConfig `yaml:"proxyTokens,omitempty"`
	// APITokens are static bearer tokens for automation, by digest.
	APITokens []APITokenConfig `yaml:"apiTokens,omitempty"`
	// Roles and Bindings authorize operators (auth.Policy).
	Roles    []RoleConfig    `yaml:"roles,omitempty"`
	Bindings []BindingConfig `yaml:"bindings,omitempty"`
}

// TLSConfig names PEM files. The certificate and key are read again when they
// change on disk (a renewed certificate needs no restart).
type TLSConfig struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ClientCAFile, when set, makes the server ask for client certificates and
	// accept those this CA bundle signed (operators and automation: cert:<name>).
	ClientCAFile string `yaml:"clientCAFile,omitempty"`
}

// StoreConfig is one of Embedded and Etcd.
type StoreConfig struct {
	Embedded *EmbeddedStoreConfig `yaml:"embedded,omitempty"`
	Etcd     *EtcdStoreConfig     `yaml:"etcd,omitempty"`
}

// EmbeddedStoreConfig runs one etcd member in the process: one replica only.
type EmbeddedStoreConfig struct {
	// Dir holds the data. Default: "store" under -data.
	Dir string `yaml:"dir,omitempty"`
}

// EtcdStoreConfig connects to an etcd cluster shared by every replica.
type EtcdStoreConfig struct {
	Endpoints []string `yaml:"endpoints"`
	// Prefix keeps this control plane's keys apart in a shared cluster. Default
	// "/portcullis/".
	Prefix string `yaml:"prefix,omitempty"`
	// TLS is the client certificate and CA for the etcd cluster.
	TLS *EtcdTLSConfig `yaml:"tls,omitempty"`
	// Username and PasswordFile authenticate with etcd's own auth, when enabled.
	Username     string `yaml:"username,omitempty"`
	PasswordFile string `yaml:"passwordFile,omitempty"`
}

// EtcdTLSConfig names the PEM files of the connection to etcd.
type EtcdTLSConfig struct {
	CAFile   string `yaml:"caFile"`
	CertFile string `yaml:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile,omitempty"`
}

// OIDCConfig is auth.OIDCConfig's file form.
type OIDCConfig struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Claim names the person; default "email", then "sub".
	Claim string `yaml:"claim,omitempty"`
	// CAFile is a PEM bundle for the connection to the provider; default the
	// system roots.
	CAFile string `yaml:"caFile,omitempty"`
}

// ProxyTokenConfig is auth.ProxyToken's file form.
type ProxyTokenConfig struct {
	Name      string `yaml:"name"`
	SHA256    string `yaml:"sha256"`
	Role      string `yaml:"role"`
	Namespace string `yaml:"namespace"`
	ProxyName string `yaml:"proxyName"`
}

// APITokenConfig is auth.APIToken's file form.
type APITokenConfig struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// RoleConfig is auth.Role's file form.
type RoleConfig struct {
	Name  string       `yaml:"name"`
	Rules []RuleConfig `yaml:"rules"`
}

// RuleConfig is auth.Rule's file form.
type RuleConfig struct {
	Namespaces []string `yaml:"namespaces"`
	Services   []string `yaml:"services,omitempty"`
	Kinds      []string `yaml:"kinds"`
	Verbs      []string `yaml:"verbs"`
}

// BindingConfig is auth.Binding's file form.
type BindingConfig struct {
	Role       string   `yaml:"role"`
	Principals []string `yaml:"principals"`
}

// LoadConfig reads and checks a config file. Errors name the file, line and
// field.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes data strictly (unknown fields and duplicate keys are
// errors) and checks it.
func ParseConfig(file string, data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalWithOptions(data, &c, yaml.Strict()); err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) {
			if t := ye.GetToken(); t != nil && t.Position != nil {
				return nil, fmt.Errorf("%s:%d:%d: %s", file, t.Position.Line, t.Position.Column, ye.GetMessage())
			}
		}
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if err := c.check(); err != nil {
		return nil, placeErrors(file, data, err)
	}
	return &c, nil
}

// check validates what decoding cannot; errors are "field.path: message" lines.
func (c *Config) check() error {
	var errs []string
	fail := func(path, format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	if c.APIVersion != ConfigVersion {
		fail("apiVersion", "%q is not %q", c.APIVersion, ConfigVersion)
	}
	if _, _, err := net.SplitHostPort(c.Listen); c.Listen != "" && err != nil {
		fail("listen", "%q is not host:port", c.Listen)
	}
	if _, _, err := net.SplitHostPort(c.HTTPListen); c.HTTPListen != "" && c.HTTPListen != "off" && err != nil {
		fail("httpListen", "%q is not host:port (or off)", c.HTTPListen)
	}
	if c.TLS.CertFile == "" {
		fail("tls.certFile", "required")
	}
	if c.TLS.KeyFile == "" {
		fail("tls.keyFile", "required")
	}
	if c.Store.Embedded != nil && c.Store.Etcd != nil {
		fail("store", "embedded and etcd are exclusive")
	}
	if e := c.Store.Etcd; e != nil {
		if len(e.Endpoints) == 0 {
			fail("store.etcd.endpoints", "at least one endpoint is required")
		}
		if (e.Username == "") != (e.PasswordFile == "") {
			fail("store.etcd.username", "username and passwordFile go together")
		}
		if e.TLS != nil && (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
			fail("store.etcd.tls.certFile", "certFile and keyFile go together")
		}
	}
	if _, err := c.authOptions(nil); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := c.policy(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// authOptions is the token part of the authenticator's options (OIDC is added
// by the server, which owns the HTTP client).
func (c *Config) authOptions(oidc *auth.OIDCVerifier) (auth.Options, error) {
	o := auth.Options{OIDC: oidc}
	for _, t := range c.ProxyTokens {
		o.ProxyTokens = append(o.ProxyTokens, auth.ProxyToken{Name: t.Name, SHA256: t.SHA256, Role: t.Role, Namespace: t.Namespace, ProxyName: t.ProxyName})
	}
	for _, t := range c.APITokens {
		o.APITokens = append(o.APITokens, auth.APIToken{Name: t.Name, SHA256: t.SHA256})
	}
	if _, err := auth.NewAuthenticator(o); err != nil {
		return o, err
	}
	if c.OIDC != nil {
		if _, err := auth.NewOIDCVerifier(auth.OIDCConfig{Issuer: c.OIDC.Issuer, Audience: c.OIDC.Audience, Claim: c.OIDC.Claim}); err != nil {
			return o, err
		}
	}
	return o, nil
}

func (c *Config) policy() (*auth.Policy, error) {
	roles := make([]auth.Role, 0, len(c.Roles))
	for _, r := range c.Roles {
		role := auth.Role{Name: r.Name}
		for _, rule := range r.Rules {
			ar := auth.Rule{Namespaces: rule.Namespaces, Services: rule.Services, Kinds: rule.Kinds}
			for _, v := range rule.Verbs {
				ar.Verbs = append(ar.Verbs, auth.Verb(v))
			}
			role.Rules = append(role.Rules, ar)
		}
		roles = append(roles, role)
	}
	bindings := make([]auth.Binding, 0, len(c.Bindings))
	for _, b := range c.Bindings {
		bindings = append(bindings, auth.Binding{Role: b.Role, Principals: b.Principals})
	}
	return auth.NewPolicy(roles, bindings)
}

// placeErrors prefixes each "field.path: message" line of err with the file,
// line and column of that field, when the file has it.
func placeErrors(file string, data []byte, err error) error {
	f, perr := parser.ParseBytes(data, 0)
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		field, _, ok := strings.Cut(l, ": ")
		pos := ""
		if ok && perr == nil {
			pos = fieldPosition(f, field)
		}
		lines[i] = file + pos + ": " + l
	}
	return errors.New(strings.Join(lines, "\n"))
}

// fieldPosition returns ":line:col" of a dotted field path in f, or of its
// nearest ancestor present, or "".
func fieldPosition(f *ast.File, field string) string {
	for field != "" {
		if p, err := yaml.PathString("$." + field); err == nil {
			if n, err := p.FilterFile(f); err == nil && n != nil {
				if m, ok := n.(*ast.MappingNode); ok && len(m.Values) > 0 {
					n = m.Values[0].Key // a block: point at its first key
				}
				if t := n.GetToken(); t != nil && t.Position != nil {
					return fmt.Sprintf(":%d:%d", t.Position.Line, t.Position.Column)
				}
			}
		}
		i := strings.LastIndexAny(field, ".[")
		if i <= 0 {
			break
		}
		field = field[:i]
	}
	return ""
}
