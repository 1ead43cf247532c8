package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
	"github.com/portcullis/portcullis/controlplane/resources"
)

// MaxApplyBytes bounds an HTTP apply body, as gRPC's default message limit bounds
// a gRPC one.
const MaxApplyBytes = 4 << 20

// httpStatus maps a gRPC code to the HTTP status the JSON API answers with. One
// table for every handler, so the same failure gets the same status on both APIs.
// The less obvious choices:
//   - Aborted (a stale resourceVersion) is 409 Conflict, what a client retries on
//     after reading again.
//   - FailedPrecondition (a delete that would leave dangling references) is 409
//     too: the request is well-formed, the state of the namespace stands in its
//     way.
//   - Unavailable covers the store, the audit log and the identity provider being
//     unreachable: 503, worth retrying.
var httpStatus = map[codes.Code]int{
	codes.OK:                 http.StatusOK,
	codes.InvalidArgument:    http.StatusBadRequest,
	codes.Unauthenticated:    http.StatusUnauthorized,
	codes.PermissionDenied:   http.StatusForbidden,
	codes.NotFound:           http.StatusNotFound,
	codes.Aborted:            http.StatusConflict,
	codes.AlreadyExists:      http.StatusConflict,
	codes.FailedPrecondition: http.StatusConflict,
	codes.ResourceExhausted:  http.StatusTooManyRequests,
	codes.Canceled:           499, // the client went away (nginx's convention)
	codes.DeadlineExceeded:   http.StatusGatewayTimeout,
	codes.Unimplemented:      http.StatusNotImplemented,
	codes.Unavailable:        http.StatusServiceUnavailable,
	codes.Internal:           http.StatusInternalServerError,
	codes.Unknown:            http.StatusInternalServerError,
}

// HTTPStatus returns the HTTP status for a gRPC code (500 for codes not listed).
func HTTPStatus(c codes.Code) int {
	if s, ok := httpStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// HTTPOptions configure the JSON API.
type HTTPOptions struct {
	// Authenticator authenticates every request (required).
	Authenticator *auth.Authenticator
	// Observe, when set, is told of every request's method name ("Apply") and
	// outcome, for metrics.
	Observe func(method string, code codes.Code)
}

// Handler serves the Resources API as HTTP/JSON under /v1/:
//
//	POST   /v1/apply?dryRun=true            body: YAML documents
//	GET    /v1/resources?kind=&namespace=
//	GET    /v1/resources/{kind}/{namespace}/{name}
//	DELETE /v1/resources/{kind}/{namespace}/{name}?resourceVersion=
//	GET    /v1/status
//	GET    /v1/audit?after=&limit=
//	GET    /v1/snapshot                      a backup of the whole store (HTTP only)
//
// Responses are the gRPC messages in protojson; errors are
// {"code": "PERMISSION_DENIED", "message": "..."} with the status from HTTPStatus.
// GETs of resources answer with the YAML documents themselves when the request
// accepts application/yaml.
func (s *Service) Handler(opts HTTPOptions) http.Handler {
	h := &httpAPI{svc: s, observe: opts.Observe}
	if h.observe == nil {
		h.observe = func(string, codes.Code) {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/apply", h.apply)
	mux.HandleFunc("GET /v1/resources", h.list)
	mux.HandleFunc("GET /v1/resources/{kind}/{namespace}/{name}", h.get)
	mux.HandleFunc("DELETE /v1/resources/{kind}/{namespace}/{name}", h.delete)
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("GET /v1/audit", h.audit)
	mux.HandleFunc("GET /v1/snapshot", h.snapshotStore)
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, status.Errorf(codes.NotFound, "no API at %s %s", r.Method, r.URL.Path))
	})
	return opts.Authenticator.Middleware(mux, func(w http.ResponseWriter, r *http.Request, err error) {
		code := codes.Unauthenticated
		if auth.IsUnavailable(err) {
			code = codes.Unavailable
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis-controlplane"`)
		}
		h.observe(methodOf(r), code)
		writeError(w, status.Error(code, err.Error()))
	})
}

type httpAPI struct {
	svc     *Service
	observe func(method string, code codes.Code)
}

// methodOf names the API method of a request, for metrics of refused requests.
func methodOf(r *http.Request) string {
	switch p := strings.TrimPrefix(r.URL.Path, "/v1/"); {
	case p == "apply":
		return "Apply"
	case p == "resources":
		return "List"
	case strings.HasPrefix(p, "resources/") && r.Method == http.MethodDelete:
		return "Delete"
	case strings.HasPrefix(p, "resources/"):
		return "Get"
	case p == "status":
		return "Status"
	case p == "audit":
		return "Audit"
	case p == "snapshot":
		return "Snapshot"
	default:
		return "unknown"
	}
}

func (h *httpAPI) apply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxApplyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reply(w, "Apply", nil, status.Errorf(codes.ResourceExhausted, "the body is larger than %d bytes", MaxApplyBytes))
			return
		}
		h.reply(w, "Apply", nil, status.Errorf(codes.InvalidArgument, "reading the body: %v", err))
		return
	}
	dry, err := boolParam(r, "dryRun")
	if err != nil {
		h.reply(w, "Apply", nil, err)
		return
	}
	resp, err := h.svc.Apply(r.Context(), &cpv1.ApplyRequest{Documents: body, DryRun: dry})
	h.reply(w, "Apply", resp, err)
}

func (h *httpAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	resp, err := h.svc.List(r.Context(), &cpv1.ListRequest{Kind: q.Get("kind"), Namespace: q.Get("namespace")})
	if err == nil && wantsYAML(r) {
		var docs [][]byte
		for _, res := range resp.Resources {
			docs = append(docs, res.Yaml)
		}
		h.replyYAML(w, "List", resources.Join(docs))
		return
	}
	h.reply(w, "List", resp, err)
}

func (h *httpAPI) get(w http.ResponseWriter, r *http.Request) {
	resp, err := h.svc.Get(r.Context(), &cpv1.GetRequest{Kind: r.PathValue("kind"), Namespace: r.PathValue("namespace"), Name: r.PathValue("name")})
	if err == nil && wantsYAML(r) {
		h.replyYAML(w, "Get", resp.Yaml)
		return
	}
	h.reply(w, "Get", resp, err)
}

func (h *httpAPI) delete(w http.ResponseWriter, r *http.Request) {
	resp, err := h.svc.Delete(r.Context(), &cpv1.DeleteRequest{
		Kind: r.PathValue("kind"), Namespace: r.PathValue("namespace"), Name: r.PathValue("name"),
		ResourceVersion: r.URL.Query().Get("resourceVersion"),
	})
	h.reply(w, "Delete", resp, err)
}

func (h *httpAPI) status(w http.ResponseWriter, r *http.Request) {
	resp, err := h.svc.Status(r.Context(), &cpv1.StatusRequest{})
	h.reply(w, "Status", resp, err)
}

func (h *httpAPI) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err1 := intParam(q.Get("after"), "after")
	limit, err2 := intParam(q.Get("limit"), "limit")
	if err := firstErr(err1, err2); err != nil {
		h.reply(w, "Audit", nil, err)
		return
	}
	resp, err := h.svc.Audit(r.Context(), &cpv1.AuditRequest{AfterSequence: after, Limit: int32(min(limit, 1<<30))})
	h.reply(w, "Audit", resp, err)
}

// snapshotStore streams a backup of the store (an etcd snapshot: restore it with
// etcdutl). It needs read on StoreSnapshot in namespace "*", and is audited before
// the first byte is sent.
func (h *httpAPI) snapshotStore(w http.ResponseWriter, r *http.Request) {
	s := h.svc
	who, err := caller(r.Context())
	if err != nil {
		h.reply(w, "Snapshot", nil, err)
		return
	}
	if s.snapshot == nil {
		h.reply(w, "Snapshot", nil, status.Error(codes.Unimplemented, "this store cannot make snapshots"))
		return
	}
	d, err := s.authorize(r.Context(), who, "snapshot", auth.Request{Verb: auth.Read, Kind: auth.KindStoreSnapshot, Namespace: "*"})
	if err != nil {
		h.reply(w, "Snapshot", nil, err)
		return
	}
	if err := s.record(r.Context(), who, &cpv1.AuditEntry{Action: "snapshot", Kind: auth.KindStoreSnapshot, Allowed: true, Reason: d.Reason}); err != nil {
		h.reply(w, "Snapshot", nil, err)
		return
	}
	// A large store takes longer to send than the server's write timeout allows
	// an ordinary answer.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(30 * time.Minute))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="portcullis-store.db"`)
	n, err := s.snapshot(r.Context(), w)
	if err != nil {
		s.log.Error("store snapshot failed part-way; the download is cut off", "bytes", n, "err", err)
		h.observe("Snapshot", codes.Unavailable)
		// The status line is sent: abort the response so the client sees a broken
		// download, never a short file that looks complete.
		panic(http.ErrAbortHandler)
	}
	h.observe("Snapshot", codes.OK)
}

func (h *httpAPI) reply(w http.ResponseWriter, method string, msg proto.Message, err error) {
	if err != nil {
		h.observe(method, status.Code(err))
		writeError(w, err)
		return
	}
	b, err := protojson.MarshalOptions{EmitUnpopulated: false}.Marshal(msg)
	if err != nil {
		h.observe(method, codes.Internal)
		writeError(w, status.Errorf(codes.Internal, "encoding the response: %v", err))
		return
	}
	h.observe(method, codes.OK)
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

func (h *httpAPI) replyYAML(w http.ResponseWriter, method string, b []byte) {
	h.observe(method, codes.OK)
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(b)
}

// writeError writes err (a gRPC status) as JSON with its HTTP status.
func writeError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	if errors.Is(err, context.Canceled) {
		st = status.New(codes.Canceled, "the call was cancelled")
	}
	body, _ := json.Marshal(ErrorBody{Code: CodeName(st.Code()), Message: st.Message()})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(HTTPStatus(st.Code()))
	w.Write(append(body, '\n'))
}

// ErrorBody is the JSON API's error answer.
type ErrorBody struct {
	// Code is the gRPC code in the form google.rpc.Code names it:
	// "PERMISSION_DENIED", "ABORTED" ...
	Code    string `json:"code"`
	Message string `json:"message"`
}

// CodeName writes a gRPC code as google.rpc.Code does ("FAILED_PRECONDITION").
func CodeName(c codes.Code) string {
	var b strings.Builder
	prevLower := false
	for _, r := range c.String() {
		upper := r >= 'A' && r <= 'Z'
		if upper && prevLower {
			b.WriteByte('_')
		}
		prevLower = !upper
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func wantsYAML(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/yaml") || strings.Contains(a, "application/x-yaml")
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, status.Errorf(codes.InvalidArgument, "%s=%q is not true or false", name, v)
	}
	return b, nil
}

func intParam(v, name string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "%s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}
