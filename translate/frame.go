package translate

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// putFrameHeader writes the 5-byte prefix of a gRPC message: the compressed flag
// (0: the transcoder never compresses, and asks for no compression) and the
// big-endian length.
func putFrameHeader(b []byte, n int) {
	b[0] = 0
	binary.BigEndian.PutUint32(b[1:5], uint32(n))
}

// frameReader splits a gRPC response body into messages, across writes of any
// size. A message is handed on as soon as it is complete, so server streams reach
// the client message by message.
type frameReader struct {
	buf []byte
}

// feed adds p and calls each with every message now complete. The slice given to
// each is valid only during the call.
func (f *frameReader) feed(p []byte, max int, each func([]byte) error) error {
	data := p
	if len(f.buf) > 0 {
		f.buf = append(f.buf, p...)
		data = f.buf
	}
	for len(data) >= 5 {
		if data[0] != 0 {
			// grpc-accept-encoding was not sent, so a compressed message is a
			// service that does not follow the protocol.
			return errors.New("compressed message, though no compression was offered")
		}
		n := binary.BigEndian.Uint32(data[1:5])
		if int64(n) > int64(max) {
			return fmt.Errorf("a %d-byte message is over the %d-byte limit", n, max)
		}
		if len(data) < 5+int(n) {
			break
		}
		if err := each(data[5 : 5+int(n)]); err != nil {
			return err
		}
		data = data[5+int(n):]
	}
	// Keep the incomplete rest; copy, since p belongs to the caller.
	f.buf = append(f.buf[:0], data...)
	return nil
}

// pending reports an incomplete message left at the end of the body.
func (f *frameReader) pending() bool { return len(f.buf) > 0 }

// marshalField writes the value of the field at path fds of msg as JSON, in the
// same form it has inside its message (response_body).
func (t *Transcoder) marshalField(msg protoreflect.Message, fds []protoreflect.FieldDescriptor) ([]byte, error) {
	parent := msg
	for _, fd := range fds[:len(fds)-1] {
		parent = parent.Get(fd).Message()
	}
	leaf := fds[len(fds)-1]
	if leaf.Message() != nil && !leaf.IsList() && !leaf.IsMap() {
		return t.marshal.Marshal(parent.Get(leaf).Message().Interface())
	}
	// A scalar, list or map has no JSON form of its own in protojson: marshal a
	// message holding only it, and take its value out.
	tmp := dynamicpb.NewMessage(parent.Descriptor())
	if parent.Has(leaf) {
		tmp.Set(leaf, parent.Get(leaf))
	}
	opts := t.marshal
	opts.EmitUnpopulated = true
	b, err := opts.Marshal(tmp)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	key := leaf.JSONName()
	if opts.UseProtoNames {
		key = string(leaf.Name())
	}
	return obj[key], nil
}
