package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// maxYAML bounds a template file, like the template it encodes.
const maxYAML = 1 << 20

// ParseYAML reads one template written in YAML with the proto field names
// (snake_case; the JSON camelCase names work too) and durations as protojson
// writes them ("30s", "0.5s"). Unknown fields and duplicate keys are errors.
// It does not validate: call Validate. Every error is an InvalidArgument
// naming the field when it can be told, e.g. template.steps[1].config.
func ParseYAML(data []byte) (*taskerv1.TaskTemplate, error) {
	if len(data) > maxYAML {
		return nil, fault.Invalid("template", "the YAML document exceeds %d bytes", maxYAML)
	}
	// Strict: YAML forbids duplicate keys, and the lenient mode would keep
	// either value silently.
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fault.Invalid("template", "invalid YAML: %v", err)
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil, fault.Invalid("template", "the YAML document is empty")
	}
	t := &taskerv1.TaskTemplate{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, t); err != nil {
		field, msg := locateProtoJSONError(j, err)
		return nil, fault.Invalid(field, "%s", msg)
	}
	return t, nil
}

// protojsonPos matches the position protojson puts in its errors. The
// "proto:" prefix is followed by a space or, at random per build, a
// non-breaking one: protobuf-go discourages matching its messages, so when
// this fails to match the whole message is reported against "template".
var protojsonPos = regexp.MustCompile(`^proto:[\s\x{00a0}]*(?:syntax error )?\(line (\d+):(\d+)\):[\s\x{00a0}]*`)

// locateProtoJSONError turns protojson's position in the JSON (meaningless
// to someone who wrote YAML) into the field path of the value or key at
// that position.
func locateProtoJSONError(j []byte, err error) (field, msg string) {
	msg = err.Error()
	m := protojsonPos.FindStringSubmatchIndex(msg)
	if m == nil {
		return "template", msg
	}
	line, _ := strconv.Atoi(msg[m[2]:m[3]])
	col, _ := strconv.Atoi(msg[m[4]:m[5]])
	rest := msg[m[1]:]
	if line != 1 || col < 1 {
		// YAMLToJSON writes one line; anything else is not ours to decode.
		return "template", rest
	}
	// The column counts runes from 1; find the byte offset.
	off := 0
	for i := 1; i < col && off < len(j); i++ {
		_, n := utf8.DecodeRune(j[off:])
		off += n
	}
	return jsonPathAt(j, off), rest
}

// jsonPathAt returns the path, rooted at "template", of the key or value
// of the JSON document j that spans byte offset off.
func jsonPathAt(j []byte, off int) string {
	type frame struct {
		array   bool
		key     string // object: the current key
		index   int    // array: the current element
		needKey bool   // object: the next string is a key
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		b.WriteString("template")
		for _, f := range stack {
			switch {
			case f.array:
				fmt.Fprintf(&b, "[%d]", f.index)
			case !f.needKey:
				b.WriteString("." + f.key)
			}
		}
		return b.String()
	}
	// valueDone moves the innermost container past the value just read.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if top := &stack[len(stack)-1]; top.array {
			top.index++
		} else {
			top.needKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return path()
		}
		end := int(dec.InputOffset())
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				if end > off {
					return path()
				}
				stack = append(stack, frame{array: tok == '[', needKey: tok == '{'})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].needKey {
				stack[n-1].key, stack[n-1].needKey = tok, false
				if end > off {
					return path()
				}
				continue
			}
			if end > off {
				return path()
			}
			valueDone()
		default:
			if end > off {
				return path()
			}
			valueDone()
		}
	}
}

// Loaded is one template file read by LoadDir.
type Loaded struct {
	// Path is the file the template came from, for messages.
	Path string
	// Template is the parsed and validated template, as written (not
	// normalized).
	Template *taskerv1.TaskTemplate
}

// LoadDir reads every *.yaml and *.yml file directly in dir, in name
// order, and parses and validates each. It stops at the first bad file
// with an error naming the file and wrapping the *fault.Error, and refuses
// two files that define the same namespace, name and version. Start-up
// loading and the CLI's apply use it, then register each template.
func LoadDir(dir string) ([]Loaded, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Loaded
	seen := map[string]string{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		t, err := loadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		id := t.GetNamespace() + "/" + t.GetName() + "@" + t.GetVersion()
		if other, dup := seen[id]; dup {
			return nil, fmt.Errorf("%s: %w", path, fault.Invalid("template", "%s is also defined in %s", id, other))
		}
		seen[id] = path
		out = append(out, Loaded{Path: path, Template: t})
	}
	return out, nil
}

func loadFile(path string) (*taskerv1.TaskTemplate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// One byte more than allowed, so ParseYAML sees an oversized file as
	// such without our reading all of it.
	data, err := io.ReadAll(io.LimitReader(f, maxYAML+1))
	if err != nil {
		return nil, err
	}
	t, err := ParseYAML(data)
	if err != nil {
		return nil, err
	}
	if err := Validate(t); err != nil {
		return nil, err
	}
	return t, nil
}
