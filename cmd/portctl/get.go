package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goccy/go-yaml"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
)

func checkOutput(o string, allowed ...string) error {
	for _, a := range allowed {
		if o == a {
			return nil
		}
	}
	return usagef("-o %q is not one of %s", o, strings.Join(allowed, ", "))
}

// get prints one resource (KIND NAME) or a listing (KIND, or all).
func (a *app) get(ctx context.Context, args []string) error {
	fs := a.newFlags("get")
	ns := fs.String("n", "", "namespace (default: default for one resource, every readable namespace for a listing)")
	fs.StringVar(ns, "namespace", "", "same as -n")
	allNS := fs.Bool("A", false, "every namespace (a listing's default)")
	out := fs.String("o", "table", "output: table, yaml or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usagef("get: KIND [NAME] is required")
	}
	if err := checkOutput(*out, "table", "yaml", "json"); err != nil {
		return err
	}
	if *allNS && *ns != "" {
		return usagef("get: -A and -n are exclusive")
	}
	kind, err := kindOf(pos[0])
	if err != nil {
		return err
	}
	var list []*cpv1.Resource
	if len(pos) == 2 {
		if kind == "" {
			return usagef("get: name one kind to get one resource")
		}
		if *ns == "" {
			*ns = "default"
		}
		err = a.call(ctx, func(ctx context.Context, c cpv1.ResourcesClient) error {
			r, err := c.Get(ctx, &cpv1.GetRequest{Kind: kind, Namespace: *ns, Name: pos[1]})
			list = []*cpv1.Resource{r}
			return err
		})
	} else {
		err = a.call(ctx, func(ctx context.Context, c cpv1.ResourcesClient) error {
			resp, err := c.List(ctx, &cpv1.ListRequest{Kind: kind, Namespace: *ns})
			list = resp.GetResources()
			return err
		})
	}
	if err != nil {
		return err
	}
	switch *out {
	case "yaml":
		for i, r := range list {
			if i > 0 {
				fmt.Fprintln(a.stdout, "---")
			}
			a.stdout.Write(r.Yaml)
		}
	case "json":
		return a.printJSON(list, len(pos) == 2)
	default:
		if len(list) == 0 {
			fmt.Fprintln(a.stderr, "no resources found")
			return nil
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tRESOURCEVERSION")
		for _, r := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Kind, r.Namespace, r.Name, r.ResourceVersion)
		}
		return tw.Flush()
	}
	return nil
}

// printJSON writes the documents as JSON: one object, or {"items": [...]}.
func (a *app) printJSON(list []*cpv1.Resource, one bool) error {
	items := make([]json.RawMessage, 0, len(list))
	for _, r := range list {
		b, err := yaml.YAMLToJSON(r.Yaml)
		if err != nil {
			return fmt.Errorf("%s %s/%s: converting to JSON: %w", r.Kind, r.Namespace, r.Name, err)
		}
		items = append(items, json.RawMessage(bytes.TrimSpace(b)))
	}
	var v any = map[string]any{"items": items}
	if one {
		v = items[0]
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) status(ctx context.Context, args []string) error {
	fs := a.newFlags("status")
	out := fs.String("o", "table", "output: table or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("status: unexpected argument %q", pos[0])
	}
	if err := checkOutput(*out, "table", "json"); err != nil {
		return err
	}
	var resp *cpv1.StatusResponse
	if err := a.call(ctx, func(ctx context.Context, c cpv1.ResourcesClient) error {
		var err error
		resp, err = c.Status(ctx, &cpv1.StatusRequest{})
		return err
	}); err != nil {
		return err
	}
	if *out == "json" {
		return a.printProto(resp)
	}
	leader := resp.Leader
	if leader == "" {
		leader = "(none known)"
	}
	fmt.Fprintf(a.stdout, "leader: %s\n", leader)
	if len(resp.Proxies) == 0 {
		fmt.Fprintln(a.stdout, "no proxies")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tNAMESPACE\tNAME\tCONNECTED\tRUNNING\tSENT\tREFUSED\tLAST SEEN")
	for _, p := range resp.Proxies {
		refused := p.RefusedVersion
		if refused != "" && p.RefusedError != "" {
			refused += " (" + p.RefusedError + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", p.Node, p.Role, p.Namespace, p.Name, p.Connected,
			p.RunningVersion, p.SentVersion, refused, unixTime(p.LastSeenUnix, 0))
	}
	return tw.Flush()
}

func (a *app) audit(ctx context.Context, args []string) error {
	fs := a.newFlags("audit")
	after := fs.Int64("after", 0, "show entries after this sequence number")
	limit := fs.Int("limit", 100, "at most this many entries (1..1000)")
	out := fs.String("o", "table", "output: table or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("audit: unexpected argument %q", pos[0])
	}
	if err := checkOutput(*out, "table", "json"); err != nil {
		return err
	}
	if *limit < 1 || *limit > 1000 || *after < 0 {
		return usagef("audit: --limit must be 1..1000 and --after not negative")
	}
	var resp *cpv1.AuditResponse
	if err := a.call(ctx, func(ctx context.Context, c cpv1.ResourcesClient) error {
		var err error
		resp, err = c.Audit(ctx, &cpv1.AuditRequest{AfterSequence: *after, Limit: int32(*limit)})
		return err
	}); err != nil {
		return err
	}
	if *out == "json" {
		return a.printProto(resp)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tPRINCIPAL\tACTION\tRESOURCE\tALLOWED\tREASON")
	for _, e := range resp.Entries {
		res := e.Kind
		if e.Namespace != "" || e.Name != "" {
			res += " " + e.Namespace + "/" + e.Name
		}
		who := e.Principal
		if who == "" {
			who = "(unauthenticated)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%t\t%s\n", e.Sequence, unixTime(0, e.TimeUnixNano), who, e.Action,
			strings.TrimSpace(res), e.Allowed, firstLine(e.Reason))
	}
	return tw.Flush()
}

func (a *app) printProto(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, string(b))
	return nil
}

func unixTime(sec, nsec int64) string {
	if sec == 0 && nsec == 0 {
		return "-"
	}
	return time.Unix(sec, nsec).UTC().Format(time.RFC3339)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
