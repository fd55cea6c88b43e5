package reqcheck

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/taskerhq/tasker/fault"
)

// MaxViolations bounds the violations one error lists, so a request with a
// million bad numbers gets a short answer.
const MaxViolations = 20

// maxKey is how much of a map or Struct key a field path quotes: enough to
// find the field, too little to echo a value back into logs.
const maxKey = 32

// MaxJSONDepth is how deeply JSON values (contexts, results, payloads) may
// nest: {"a": [1]} has depth 2. Deeper values are refused, so no part of the
// service (validation, storage, templates, clients in other languages)
// recurses without bound on a caller's value.
const MaxJSONDepth = 64

// The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59Z.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
	// maxDurationSeconds is google.protobuf.Duration's bound, about 10,000
	// years.
	maxDurationSeconds = 315576000000
)

// Message checks m and returns an InvalidArgument *fault.Error naming each
// bad field by its path (e.g. "context.price", "handlers[2].namespace"), or
// nil when every value is valid.
func Message(m proto.Message) error {
	if m == nil {
		return nil
	}
	c := checker{}
	c.message(m.ProtoReflect(), "")
	if len(c.violations) == 0 {
		return nil
	}
	return fault.Invalids(c.violations)
}

type checker struct {
	violations []fault.Violation
}

func (c *checker) add(path, description string) {
	if len(c.violations) < MaxViolations {
		c.violations = append(c.violations, fault.Violation{Field: path, Description: description})
	}
}

func (c *checker) full() bool { return len(c.violations) >= MaxViolations }

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func (c *checker) message(m protoreflect.Message, path string) {
	if !m.IsValid() || c.full() {
		return
	}
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		c.timestamp(m, path)
		return
	case "google.protobuf.Duration":
		c.duration(m, path)
		return
	case "google.protobuf.Struct":
		c.structFields(m, path, 1)
		return
	case "google.protobuf.Value":
		c.value(m, path, 0)
		return
	case "google.protobuf.ListValue":
		c.list(m, path, 1)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := join(path, string(fd.Name()))
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && !c.full(); i++ {
				c.single(fd, l.Get(i), p+"["+strconv.Itoa(i)+"]")
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				c.single(fd.MapValue(), mv, p+"["+quoteKey(k.String())+"]")
				return !c.full()
			})
		default:
			c.single(fd, v, p)
		}
		return !c.full()
	})
}

// single checks one value of field fd (an element, for a list).
func (c *checker) single(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		c.message(v.Message(), path)
	case protoreflect.EnumKind:
		if fd.Enum().Values().ByNumber(v.Enum()) == nil {
			c.add(path, fmt.Sprintf("%d is not a value of %s", v.Enum(), fd.Enum().FullName()))
		}
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		c.number(v.Float(), path)
	}
}

func (c *checker) number(f float64, path string) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		c.add(path, "must be a finite number (NaN and infinities are not JSON)")
	}
}

func secondsNanos(m protoreflect.Message) (int64, int32) {
	fields := m.Descriptor().Fields()
	return m.Get(fields.ByName("seconds")).Int(), int32(m.Get(fields.ByName("nanos")).Int())
}

func (c *checker) timestamp(m protoreflect.Message, path string) {
	s, n := secondsNanos(m)
	switch {
	case s < minTimestampSeconds || s > maxTimestampSeconds:
		c.add(path, "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
	case n < 0 || n >= 1e9:
		c.add(path, "nanos must be in [0, 999999999]")
	}
}

func (c *checker) duration(m protoreflect.Message, path string) {
	s, n := secondsNanos(m)
	switch {
	case s < -maxDurationSeconds || s > maxDurationSeconds:
		c.add(path, "seconds must be within ±315576000000 (10,000 years)")
	case n <= -1e9 || n >= 1e9:
		c.add(path, "nanos must be in (-1e9, 1e9)")
	case (s > 0 && n < 0) || (s < 0 && n > 0):
		c.add(path, "seconds and nanos must have the same sign")
	}
}

// structFields walks a google.protobuf.Struct at nesting depth (1 for a
// top-level object), naming its members the way a JSON path would:
// context.order.items[2].price.
func (c *checker) structFields(m protoreflect.Message, path string, depth int) {
	if c.tooDeep(path, depth) {
		return
	}
	fd := m.Descriptor().Fields().ByName("fields")
	if fd == nil || !m.Has(fd) {
		return
	}
	m.Get(fd).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		c.value(v.Message(), join(path, shortKey(k.String())), depth)
		return !c.full()
	})
}

func (c *checker) tooDeep(path string, depth int) bool {
	if depth <= MaxJSONDepth {
		return false
	}
	c.add(path, fmt.Sprintf("JSON values may nest at most %d levels deep", MaxJSONDepth))
	return true
}

// value checks one JSON value inside containers nested depth deep.
func (c *checker) value(m protoreflect.Message, path string, depth int) {
	od := m.Descriptor().Oneofs().ByName("kind")
	if od == nil {
		return
	}
	fd := m.WhichOneof(od)
	if fd == nil {
		// JSON has no value without a kind; null is null_value.
		c.add(path, "must hold a value (null_value for null)")
		return
	}
	v := m.Get(fd)
	switch fd.Name() {
	case "number_value":
		c.number(v.Float(), path)
	case "struct_value":
		c.structFields(v.Message(), path, depth+1)
	case "list_value":
		c.list(v.Message(), path, depth+1)
	}
}

func (c *checker) list(m protoreflect.Message, path string, depth int) {
	if c.tooDeep(path, depth) {
		return
	}
	fd := m.Descriptor().Fields().ByName("values")
	if fd == nil || !m.Has(fd) {
		return
	}
	l := m.Get(fd).List()
	for i := 0; i < l.Len() && !c.full(); i++ {
		c.value(l.Get(i).Message(), path+"["+strconv.Itoa(i)+"]", depth)
	}
}

// shortKey cuts a key to maxKey bytes (on a rune boundary), so a path never
// carries a long value.
func shortKey(k string) string {
	if len(k) <= maxKey {
		return k
	}
	cut := maxKey
	for cut > 0 && !utf8.RuneStart(k[cut]) {
		cut--
	}
	return k[:cut] + "…"
}

func quoteKey(k string) string { return strconv.Quote(shortKey(k)) }
