package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc/status"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
)

// kinds are the resource kinds the control plane stores (auth.ResourceKinds; a
// test keeps them equal).
var kinds = []string{"Listener", "Route", "Cluster", "Telemetry", "ExternalService", "EgressPolicy", "AuthorizationPolicy", "Workload"}

// kindOf accepts a kind in any case, singular or plural ("routes",
// "authorizationpolicies"); "all" is every kind ("").
func kindOf(s string) (string, error) {
	l := strings.ToLower(s)
	if l == "all" {
		return "", nil
	}
	for _, k := range kinds {
		kl := strings.ToLower(k)
		if l == kl || l == kl+"s" || strings.HasSuffix(kl, "y") && l == kl[:len(kl)-1]+"ies" {
			return k, nil
		}
	}
	return "", usagef("unknown kind %q (one of %s, or all)", s, strings.Join(kinds, ", "))
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// apply sends the documents of every -f and prints what each did; with diff it
// is a dry run that prints the changes.
func (a *app) apply(ctx context.Context, args []string, diff bool) error {
	name := "apply"
	if diff {
		name = "diff"
	}
	fs := a.newFlags(name)
	var files multiFlag
	fs.Var(&files, "f", "file, directory or - (repeatable)")
	fs.Var(&files, "filename", "same as -f")
	dry := fs.Bool("dry-run", false, "validate and show the changes, write nothing")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s: unexpected argument %q (files are given with -f)", name, pos[0])
	}
	if len(files) == 0 {
		return usagef("%s: -f FILE|DIR|- is required", name)
	}
	docs, sources, err := readSources(files, a.stdin)
	if err != nil {
		return err
	}
	var resp *cpv1.ApplyResponse
	err = a.call(ctx, func(ctx context.Context, c cpv1.ResourcesClient) error {
		var err error
		resp, err = c.Apply(ctx, &cpv1.ApplyRequest{Documents: docs, DryRun: diff || *dry})
		return err
	})
	if err != nil {
		if st, ok := status.FromError(err); ok {
			return status.Error(st.Code(), placeInFiles(st.Message(), sources))
		}
		return err
	}
	for _, r := range resp.Results {
		ref := fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
		switch {
		case diff:
			fmt.Fprint(a.stdout, r.Diff)
		case *dry:
			fmt.Fprintf(a.stdout, "%s would be %s (dry run)\n", ref, r.Action)
			fmt.Fprint(a.stdout, r.Diff)
		case r.Action == "unchanged":
			fmt.Fprintf(a.stdout, "%s unchanged (resourceVersion %s)\n", ref, r.NewVersion)
		default:
			fmt.Fprintf(a.stdout, "%s %s (resourceVersion %s)\n", ref, r.Action, r.NewVersion)
		}
	}
	return nil
}

func (a *app) delete(ctx context.Context, args []string) error {
	fs := a.newFlags("delete")
	ns := fs.String("n", "default", "namespace")
	fs.StringVar(ns, "namespace", "default", "namespace")
	version := fs.String("resource-version", "", "delete only if the resource is still at this version")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("delete: KIND NAME are required")
	}
	kind, err := kindOf(pos[0])
	if err != nil {
		return err
	}
	if kind == "" {
		return usagef("delete: name one kind, not all")
	}
	err = a.call(ctx, func(ctx context.Context, c cpv1.ResourcesClient) error {
		_, err := c.Delete(ctx, &cpv1.DeleteRequest{Kind: kind, Namespace: *ns, Name: pos[1], ResourceVersion: *version})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s %s/%s deleted\n", kind, *ns, pos[1])
	return nil
}

// token makes a new token (written to a file, its digest printed for the config)
// or prints the digest of an existing one.
func (a *app) token(args []string) error {
	if len(args) == 0 {
		return usagef("token: new or digest")
	}
	fs := a.newFlags("token " + args[0])
	switch args[0] {
	case "new":
		out := fs.String("out", "", "file to write the token to (mode 0600)")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *out == "" {
			return usagef("token new: --out FILE is required (the token is never printed)")
		}
		tok, err := newToken()
		if err != nil {
			return err
		}
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if _, err := f.WriteString(tok + "\n"); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "sha256: %s\n", tokenDigest(tok))
		return nil
	case "digest":
		file := fs.String("file", "", "token file (default: standard input)")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		var b []byte
		var err error
		if *file != "" {
			b, err = os.ReadFile(*file)
		} else {
			b, err = io.ReadAll(io.LimitReader(a.stdin, 64<<10))
		}
		if err != nil {
			return err
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return errors.New("token digest: the token is empty")
		}
		fmt.Fprintf(a.stdout, "sha256: %s\n", tokenDigest(tok))
		return nil
	default:
		return usagef("token: unknown subcommand %q (new, digest)", args[0])
	}
}

// newToken and tokenDigest do what auth.NewToken and auth.TokenDigest do (a test
// keeps them equal); portctl imports no server package.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func tokenDigest(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}
