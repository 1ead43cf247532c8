// Package testpb is the transcoder's test service: a small library (shelves and
// books) generated from library.proto (see translate/internal/gen), and Server,
// a deterministic in-memory implementation of it. It is for tests only.
package testpb

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Fixed is the clock of the service: answers never depend on the time of day.
var Fixed = time.Date(2024, 1, 2, 3, 4, 5, 600_000_000, time.UTC)

// Server is the library. It keeps nothing between calls (writes are computed,
// not stored), so the answer to a request never depends on the ones before it.
type Server struct {
	UnimplementedLibraryServer
}

var _ LibraryServer = (*Server)(nil)

func books() []*Book {
	return []*Book{
		{Name: "shelves/s1/books/dune", Title: "Dune", Author: &Author{DisplayName: "Frank Herbert", BornYear: 1920},
			Tags: []string{"classic", "space"}, Genre: Genre_FICTION, Published: timestamppb.New(time.Date(1965, 8, 1, 0, 0, 0, 0, time.UTC)),
			ReadTime: durationpb.New(14*time.Hour + 30*time.Minute), PageCount: wrapperspb.Int32(412), Isbn: 9780441013593,
			Available: true, Rating: 4.5, Cover: []byte("dune-cover"), Labels: map[string]string{"shelf": "s1"}},
		{Name: "shelves/s1/books/cosmos", Title: "Cosmos", Author: &Author{DisplayName: "Carl Sagan", BornYear: 1934},
			Tags: []string{"space"}, Genre: Genre_SCIENCE, Isbn: 9780345539434},
		{Name: "shelves/s2/books/spqr", Title: "SPQR", Author: &Author{DisplayName: "Mary Beard", BornYear: 1955},
			Tags: []string{"rome"}, Genre: Genre_HISTORY, Available: true, PageCount: wrapperspb.Int32(608)},
	}
}

func find(name string) *Book {
	for _, b := range books() {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// echoMetadata answers the request's x-user metadata in the header x-echo-user,
// sets x-request-id, and a trailer x-cost.
func echoMetadata(ctx context.Context, id string) {
	md, _ := metadata.FromIncomingContext(ctx)
	h := metadata.Pairs("x-request-id", "req-"+id)
	if u := md.Get("x-user"); len(u) > 0 {
		h.Append("x-echo-user", u...)
	}
	grpc.SetHeader(ctx, h)
	grpc.SetTrailer(ctx, metadata.Pairs("x-cost", "7"))
}

func detailed(c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st, err := status.New(c, msg).WithDetails(details...)
	if err != nil {
		return status.New(c, msg).Err()
	}
	return st.Err()
}

func (s *Server) lookup(ctx context.Context, name string) (*Book, error) {
	echoMetadata(ctx, name)
	switch {
	case !strings.HasPrefix(name, "shelves/") || strings.Count(name, "/") != 3:
		return nil, detailed(codes.InvalidArgument, "name must be shelves/*/books/*",
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "name", Description: "not a book name"}}})
	case strings.HasSuffix(name, "/secret"):
		return nil, status.Error(codes.PermissionDenied, "the secret book is not for you")
	case strings.HasSuffix(name, "/slow"):
		select {
		case <-ctx.Done():
			// Answer late, so that the caller's own deadline always fires first
			// and what it reports does not depend on which of two equal timers
			// wins (the server's answer would carry its metadata).
			time.Sleep(300 * time.Millisecond)
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(5 * time.Second):
			return nil, status.Error(codes.Internal, "the deadline did not reach the service")
		}
	case strings.HasSuffix(name, "/broken"):
		return nil, status.Error(codes.DataLoss, "the page is torn: 100% lost")
	}
	b := find(name)
	if b == nil {
		return nil, detailed(codes.NotFound, fmt.Sprintf("no book %s", name),
			&errdetails.ResourceInfo{ResourceType: "book", ResourceName: name, Description: "not on the shelf"})
	}
	return b, nil
}

// GetBook returns a book.
func (s *Server) GetBook(ctx context.Context, req *GetBookRequest) (*Book, error) {
	return s.lookup(ctx, req.GetName())
}

// GetBookTitle returns a book; its binding answers with the title alone.
func (s *Server) GetBookTitle(ctx context.Context, req *GetBookRequest) (*Book, error) {
	return s.lookup(ctx, req.GetName())
}

// ListBooks lists the books of a shelf (all shelves with no parent) that carry
// every tag asked for and one of the genres, and echoes the request.
func (s *Server) ListBooks(ctx context.Context, req *ListBooksRequest) (*ListBooksResponse, error) {
	echoMetadata(ctx, "list")
	if req.GetPageSize() < 0 || req.GetPageSize() > 100 {
		return nil, detailed(codes.OutOfRange, "page_size must be 0 to 100",
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "page_size", Description: "out of range"}}})
	}
	resp := &ListBooksResponse{Echo: req}
	genres := slices.Clone(req.GetGenres())
	if req.GetGenre() != Genre_GENRE_UNSPECIFIED {
		genres = append(genres, req.GetGenre())
	}
	for _, b := range books() {
		if req.GetParent() != "" && !strings.HasPrefix(b.Name, req.GetParent()+"/") {
			continue
		}
		if len(genres) > 0 && !slices.Contains(genres, b.Genre) {
			continue
		}
		ok := true
		for _, t := range req.GetTags() {
			ok = ok && slices.Contains(b.Tags, t)
		}
		if a := req.GetFilter().GetAuthor().GetDisplayName(); a != "" && b.GetAuthor().GetDisplayName() != a {
			ok = false
		}
		if av := req.GetFilter().GetAvailable(); av != nil && b.Available != av.Value {
			ok = false
		}
		if ok {
			resp.Books = append(resp.Books, b)
		}
	}
	if n := int(req.GetPageSize()); n > 0 && len(resp.Books) > n {
		resp.Books, resp.NextPageToken = resp.Books[:n], "more"
	}
	return resp, nil
}

// CreateBook returns the book as it would be stored.
func (s *Server) CreateBook(ctx context.Context, req *CreateBookRequest) (*Book, error) {
	echoMetadata(ctx, "create")
	return newBook(req)
}

// CreateBooks returns the books of the stream as they would be stored, or the
// first request's error.
func (s *Server) CreateBooks(stream grpc.ClientStreamingServer[CreateBookRequest, CreateBooksResponse]) error {
	echoMetadata(stream.Context(), "create-many")
	resp := &CreateBooksResponse{}
	for range 1000 {
		req, err := stream.Recv()
		if err == io.EOF {
			resp.Count = int32(len(resp.Books))
			return stream.SendAndClose(resp)
		}
		if err != nil {
			return err
		}
		b, err := newBook(req)
		if err != nil {
			return err
		}
		resp.Books = append(resp.Books, b)
	}
	return status.Error(codes.ResourceExhausted, "at most 1000 books at once")
}

func newBook(req *CreateBookRequest) (*Book, error) {
	switch {
	case req.GetBookId() == "":
		return nil, detailed(codes.InvalidArgument, "book_id is required",
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "book_id", Description: "required"}}})
	case find(req.GetParent()+"/books/"+req.GetBookId()) != nil:
		return nil, status.Error(codes.AlreadyExists, "the book exists")
	}
	b := proto.CloneOf(req.GetBook())
	if b == nil {
		b = &Book{}
	}
	b.Name = req.GetParent() + "/books/" + req.GetBookId()
	if b.Published == nil {
		b.Published = timestamppb.New(Fixed)
	}
	return b, nil
}

// UpdateBook applies the mask's top-level fields of req.book to the stored book
// and returns it; labels["update_mask"] says which paths the service saw.
func (s *Server) UpdateBook(ctx context.Context, req *UpdateBookRequest) (*Book, error) {
	b, err := s.lookup(ctx, req.GetBook().GetName())
	if err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	src, dst := req.GetBook().ProtoReflect(), b.ProtoReflect()
	for _, p := range paths {
		top, _, _ := strings.Cut(p, ".")
		fd := dst.Descriptor().Fields().ByName(protoreflect.Name(top))
		if fd == nil {
			return nil, status.Errorf(codes.InvalidArgument, "update_mask: no field %q", p)
		}
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd)
		}
	}
	if b.Labels == nil {
		b.Labels = map[string]string{}
	}
	b.Labels["update_mask"] = strings.Join(paths, ",")
	return b, nil
}

// DeleteBook checks the book exists; "dune" needs force.
func (s *Server) DeleteBook(ctx context.Context, req *DeleteBookRequest) (*emptypb.Empty, error) {
	b, err := s.lookup(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(b.Name, "/dune") && !req.GetForce() {
		return nil, detailed(codes.FailedPrecondition, "dune is on loan; delete with force",
			&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{Type: "LOAN", Subject: b.Name, Description: "on loan"}}})
	}
	return &emptypb.Empty{}, nil
}

// ArchiveBook echoes the archive order, stamped with the fixed clock.
func (s *Server) ArchiveBook(ctx context.Context, req *ArchiveBookRequest) (*ArchiveBookResponse, error) {
	if _, err := s.lookup(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if req.GetRetention().AsDuration() < 0 {
		return nil, status.Error(codes.OutOfRange, "retention must not be negative")
	}
	return &ArchiveBookResponse{Name: req.GetName(), ArchiveTime: timestamppb.New(Fixed), Retention: req.GetRetention(), Reason: req.GetReason()}, nil
}

// WatchShelf sends count events (at most 20), then ends with fail_code.
func (s *Server) WatchShelf(req *WatchShelfRequest, stream grpc.ServerStreamingServer[ShelfEvent]) error {
	echoMetadata(stream.Context(), "watch")
	if req.GetCount() < 0 || req.GetCount() > 20 {
		return status.Error(codes.InvalidArgument, "count must be 0 to 20")
	}
	for i := range req.GetCount() {
		if err := stream.Send(&ShelfEvent{Book: req.GetShelf() + "/books/b" + fmt.Sprint(i), Seq: i + 1}); err != nil {
			return err
		}
	}
	if c := codes.Code(req.GetFailCode()); c != codes.OK {
		return detailed(c, "watch ended", &errdetails.ErrorInfo{Reason: "WATCH_ENDED", Domain: "library.test"})
	}
	return nil
}
