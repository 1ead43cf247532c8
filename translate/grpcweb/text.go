package grpcweb

import (
	"encoding/base64"
	"errors"
	"io"
)

// base64Stream decodes a text-mode request body as it is read. The body is the
// concatenation of base64 chunks, each possibly padded (a client may encode and
// send every message on its own), so padding may appear in the middle: the
// stream decodes run by run, a run ending at a padded quantum. Line breaks and
// spaces between quanta are skipped.
type base64Stream struct {
	src  io.Reader
	in   []byte // base64 characters not decoded yet (an incomplete quantum)
	out  []byte // decoded bytes not returned yet
	buf  []byte
	eof  bool
	fail error
}

var errTruncatedBase64 = errors.New("base64 body ends inside a quantum")

func (s *base64Stream) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.fail != nil {
			return 0, s.fail
		}
		if s.eof {
			if len(s.in) > 0 {
				s.fail = errTruncatedBase64
				return 0, s.fail
			}
			return 0, io.EOF
		}
		if s.buf == nil {
			s.buf = make([]byte, 16<<10)
		}
		n, err := s.src.Read(s.buf)
		for _, c := range s.buf[:n] {
			switch c {
			case '\r', '\n', ' ', '\t':
			default:
				s.in = append(s.in, c)
			}
		}
		if err == io.EOF {
			s.eof = true
		} else if err != nil {
			return 0, err
		}
		if derr := s.decode(); derr != nil {
			s.fail = derr
		}
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// decode turns every complete quantum of s.in into bytes of s.out.
func (s *base64Stream) decode() error {
	whole := len(s.in) / 4 * 4
	start := 0
	for i := 0; i < whole; i += 4 {
		if s.in[i+3] != '=' && i+4 < whole {
			continue
		}
		// s.in[start:i+4] is a run whose only padding, if any, is at its end.
		run := s.in[start : i+4]
		dst := make([]byte, base64.StdEncoding.DecodedLen(len(run)))
		n, err := base64.StdEncoding.Decode(dst, run)
		if err != nil {
			return errBadBase64
		}
		s.out = append(s.out, dst[:n]...)
		start = i + 4
	}
	s.in = append(s.in[:0], s.in[whole:]...)
	return nil
}
