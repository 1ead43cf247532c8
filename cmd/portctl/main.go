// Command portctl is the command-line client of the Portcullis control plane's
// admin API: apply, diff, get and delete config resources, and read proxy status
// and the audit log. It talks gRPC over TLS, authenticated by a client
// certificate or a bearer token (README.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1 // the call failed (refused, invalid, unreachable ...)
	exitUsage    = 2 // the command line is wrong
	exitConflict = 3 // a resourceVersion was stale: get, merge, apply again
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// env is the environment (os.Getenv, or a map in tests).
type env func(string) string

// app is one invocation: its streams and global options.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	g              globalFlags
}

type globalFlags struct {
	server, ca, cert, key, tokenFile string
	timeout                          time.Duration
}

// usageError is a command-line mistake: exit code 2, with the usage hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

const usage = `Usage: portctl [global flags] COMMAND [flags]

Global flags may come before or after the command.

Commands:
  apply  -f FILE|DIR|- [-f ...] [--dry-run]   create or update resources
  diff   -f FILE|DIR|- [-f ...]               show what apply would change
  get    KIND [NAME] [-n NS | -A] [-o table|yaml|json]
  delete KIND NAME [-n NS] [--resource-version V]
  status [-o table|json]                      proxies and the leading replica
  audit  [--after N] [--limit N] [-o table|json]
  token  new --out FILE | digest [--file FILE]

Global flags (or environment variables):
  --server HOST:PORT   control plane gRPC address (PORTCTL_SERVER, default 127.0.0.1:9443)
  --ca FILE            CA bundle of the server certificate (PORTCTL_CA; default system roots)
  --cert FILE --key FILE   client certificate (PORTCTL_CERT, PORTCTL_KEY)
  --token-file FILE    bearer token (PORTCTL_TOKEN_FILE)
  --timeout DURATION   per call (PORTCTL_TIMEOUT, default 30s)

Exit codes: 0 ok, 1 error, 2 usage, 3 conflict.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv env) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, g: globalsFromEnv(getenv)}
	err := a.dispatch(ctx, args)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.msg != "" {
			fmt.Fprintf(stderr, "error: %s\n\n", ue.msg)
		}
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "error: %s\n", describe(err))
	if status.Code(err) == codes.Aborted {
		return exitConflict
	}
	return exitError
}

// describe words a gRPC error for a person.
func describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch st.Code() {
	case codes.Unauthenticated:
		return "not authenticated: " + st.Message()
	case codes.PermissionDenied:
		return "permission denied: " + st.Message()
	case codes.Aborted:
		return st.Message()
	case codes.Unavailable:
		return "the control plane is unavailable: " + st.Message()
	case codes.DeadlineExceeded:
		return "no answer in time: " + st.Message()
	case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition:
		return st.Message()
	default:
		return strings.ToLower(st.Code().String()) + ": " + st.Message()
	}
}

func (a *app) dispatch(ctx context.Context, args []string) error {
	// Global flags may come before the command too.
	pre := a.newFlags("")
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	args = pre.Args()
	if len(args) == 0 {
		return usagef("")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		return flag.ErrHelp
	case "apply":
		return a.apply(ctx, rest, false)
	case "diff":
		return a.apply(ctx, rest, true)
	case "get":
		return a.get(ctx, rest)
	case "delete":
		return a.delete(ctx, rest)
	case "status":
		return a.status(ctx, rest)
	case "audit":
		return a.audit(ctx, rest)
	case "token":
		return a.token(rest)
	default:
		return usagef("unknown command %q", cmd)
	}
}

// globalsFromEnv reads the global flags' defaults from the environment.
func globalsFromEnv(getenv env) globalFlags {
	def := func(k, d string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return d
	}
	g := globalFlags{
		server: def("PORTCTL_SERVER", "127.0.0.1:9443"), ca: getenv("PORTCTL_CA"),
		cert: getenv("PORTCTL_CERT"), key: getenv("PORTCTL_KEY"), tokenFile: getenv("PORTCTL_TOKEN_FILE"),
		timeout: 30 * time.Second,
	}
	if d, err := time.ParseDuration(getenv("PORTCTL_TIMEOUT")); err == nil && d > 0 {
		g.timeout = d
	}
	return g
}

// newFlags returns a command's flag set with the global flags on it, defaulted
// to what the environment and the flags before the command said.
func (a *app) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.TrimSpace("portctl "+name), flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run
	fs.StringVar(&a.g.server, "server", a.g.server, "control plane gRPC address")
	fs.StringVar(&a.g.ca, "ca", a.g.ca, "server CA bundle")
	fs.StringVar(&a.g.cert, "cert", a.g.cert, "client certificate")
	fs.StringVar(&a.g.key, "key", a.g.key, "client key")
	fs.StringVar(&a.g.tokenFile, "token-file", a.g.tokenFile, "bearer token file")
	fs.DurationVar(&a.g.timeout, "timeout", a.g.timeout, "per call timeout")
	return fs
}

// parse parses flags and positional arguments in any order (kubectl's habit:
// "get route web -n shop").
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
