package server

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/taskerhq/tasker/fault"
)

// requestCodec is gRPC's protobuf codec, except for encodedMessage (sent
// as it is) and for what happens when a
// request does not decode (invalid UTF-8 in a string, a truncated field,
// nesting past protobuf's recursion limit). grpc-go answers every codec
// error with Internal, but a malformed request is the caller's mistake, so
// the codec remembers the failure against the message and reports success;
// the decode interceptors, which run before anything reads the message,
// answer InvalidArgument instead. The entry lives only between the decode
// and the interceptor that takes it: every received message passes one.
type requestCodec struct {
	encoding.CodecV2
	failed sync.Map // proto.Message → error
}

func newRequestCodec() *requestCodec {
	return &requestCodec{CodecV2: encoding.GetCodecV2(protocodec.Name)}
}

// encodedMessage is a message already in its wire form, which Marshal
// passes through: a stream may send one with SendMsg in place of the
// message it encodes, so that bytes shared by many streams are encoded
// once (see renderCache). It is never modified once made.
type encodedMessage []byte

// Marshal encodes v, or returns an encodedMessage's bytes as they are. The
// buffer is not pooled, so gRPC's freeing it after the write leaves the
// shared bytes alone.
func (c *requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(encodedMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return c.CodecV2.Marshal(v)
}

func (c *requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err != nil {
		if _, ok := v.(proto.Message); ok {
			c.failed.Store(v, err)
			return nil
		}
	}
	return err
}

// take returns InvalidArgument when m failed to decode, and forgets it.
func (c *requestCodec) take(m any) error {
	if _, ok := c.failed.LoadAndDelete(m); ok {
		// The decoder's message may quote bytes of the request; the
		// answer names the rule only.
		return &fault.Error{Code: fault.InvalidArgument, Message: "the request is not a valid protobuf encoding of its message " +
			"(invalid UTF-8 in a string, a truncated field, or nesting deeper than the decoder allows)"}
	}
	return nil
}

func (c *requestCodec) unaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := c.take(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (c *requestCodec) streamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, decodedStream{ss, c})
}

// decodedStream reports a received message that failed to decode.
type decodedStream struct {
	grpc.ServerStream
	codec *requestCodec
}

func (s decodedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.codec.take(m)
}
