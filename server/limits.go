package server

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// maxPageBytes bounds the encoded size of one page of ListEvents, ListTasks
// and ListSteps, on top of its item count: half gRPC's default 4 MiB receive
// limit, so a page of large items reaches every client and a listing's
// memory stays bounded. A page always holds at least one item.
const maxPageBytes = 2 << 20

// itemSize is what m adds to a response as an element of a repeated field.
func itemSize(m proto.Message) int {
	return 1 + protowire.SizeBytes(proto.Size(m))
}
