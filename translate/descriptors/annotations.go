package descriptors

import (
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// HTTPRule returns the google.api.http annotation of a method, or nil.
//
// The options are re-read through the binary's type registry: a method compiled
// at run time or decoded from a descriptor set may carry the extension as unknown
// bytes or as a dynamic message, and either way the typed rule comes out.
func HTTPRule(md protoreflect.MethodDescriptor) *annotations.HttpRule {
	opts, ok := md.Options().(proto.Message)
	if !ok || opts == nil {
		return nil
	}
	// No fast path through proto.GetExtension on opts itself: when the
	// extension was set from another copy of its descriptor (protocompile's),
	// the typed getter panics on the mismatch.
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(opts)
	if err != nil || len(b) == 0 {
		return nil
	}
	var mo descriptorpb.MethodOptions
	if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes, AllowPartial: true}).Unmarshal(b, &mo); err != nil {
		return nil
	}
	if !proto.HasExtension(&mo, annotations.E_Http) {
		return nil
	}
	r, _ := proto.GetExtension(&mo, annotations.E_Http).(*annotations.HttpRule)
	return r
}
