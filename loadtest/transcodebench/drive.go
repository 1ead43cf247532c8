package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/portcullis/portcullis/translate/descriptors"
)

// workload is one kind of request, as REST (for a and b) and as the gRPC call
// the transcoder makes of it (for c).
type workload struct {
	name, describe     string
	method, path, body string
	rpc                string // method name of the library
	grpcJSON           string // the request message, as protojson
}

var workloads = map[string]workload{
	"get": {
		name: "get", describe: "GET /v1/shelves/s1/books/dune, or GetBook{name} over gRPC (a 400-byte answer)",
		method: http.MethodGet, path: "/v1/shelves/s1/books/dune",
		rpc: "GetBook", grpcJSON: `{"name":"shelves/s1/books/dune"}`,
	},
	"create": {
		name: "create", describe: "POST /v1/shelves/s1/books?book_id=new with a JSON book, or CreateBook over gRPC",
		method: http.MethodPost, path: "/v1/shelves/s1/books?book_id=new",
		body: `{"title":"New","genre":"HISTORY","tags":["a","b"],"readTime":"90s","pageCount":10}`,
		rpc:  "CreateBook", grpcJSON: `{"parent":"shelves/s1","bookId":"new","book":{"title":"New","genre":"HISTORY","tags":["a","b"],"readTime":"90s","pageCount":10}}`,
	},
}

// grpcConns is how many client connections carry the gRPC load.
const grpcConns = 4

type driver struct {
	conns   int
	client  *http.Client
	library protoreflect.ServiceDescriptor
	grpcCCs []*grpc.ClientConn
}

func newDriver(conns int) (*driver, error) {
	set, err := descriptors.LoadDescriptorSet(descriptorSet)
	if err != nil {
		return nil, err
	}
	sd, err := set.Service(service)
	if err != nil {
		return nil, err
	}
	return &driver{
		conns:   conns,
		library: sd,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, ForceAttemptHTTP2: false,
		}},
	}, nil
}

func (d *driver) dialGRPC(addr string) error {
	for range grpcConns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		d.grpcCCs = append(d.grpcCCs, c)
	}
	return nil
}

func (d *driver) close() {
	for _, c := range d.grpcCCs {
		c.Close()
	}
	d.client.CloseIdleConnections()
}

// parallel runs n calls of one over d.conns workers and returns the first error.
func (d *driver) parallel(n int, one func(worker int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for w := range d.conns {
		wg.Go(func() {
			for int(next.Add(1)) <= n {
				if err := one(w); err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n)) // stop everyone
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// rest sends n REST requests of w to addr; anything but 200 is an error.
func (d *driver) rest(addr string, w workload, n int) error {
	return d.parallel(n, func(int) error {
		var body io.Reader
		if w.body != "" {
			body = strings.NewReader(w.body)
		}
		req, err := http.NewRequest(w.method, "http://"+addr+w.path, body)
		if err != nil {
			return err
		}
		if w.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := d.client.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: %d %s", w.method, w.path, resp.StatusCode, b)
		}
		return nil
	})
}

// grpc makes n gRPC calls of w's method through addr.
func (d *driver) grpc(addr string, w workload, n int) error {
	md := d.library.Methods().ByName(protoreflect.Name(w.rpc))
	if md == nil {
		return fmt.Errorf("no method %s", w.rpc)
	}
	in := dynamicpb.NewMessage(md.Input())
	if err := protojson.Unmarshal([]byte(w.grpcJSON), in); err != nil {
		return err
	}
	reqs := make([]proto.Message, d.conns)
	for i := range reqs {
		reqs[i] = proto.Clone(in)
	}
	path := "/" + service + "/" + w.rpc
	return d.parallel(n, func(worker int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out := dynamicpb.NewMessage(md.Output())
		return d.grpcCCs[worker%len(d.grpcCCs)].Invoke(ctx, path, reqs[worker], out)
	})
}
