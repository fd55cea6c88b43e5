package registry

import (
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaURL names a context schema inside the compiler; relative references
// resolve against it and never reach a real resource.
const schemaURL = "urn:tasker:context_schema"

// refuseLoader is the compiler's only loader. The default one reads local
// files, and any loader that fetches URLs would let a template make the
// server read files or call hosts of the author's choosing. The standard
// meta-schemas are built into the library and need no loader.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s: schemas may not reference other documents", url)
}

// CompileSchema compiles a context schema, a decoded JSON document such as
// Struct.AsMap returns, as draft 2020-12 unless its $schema says otherwise.
// It loads nothing: a $ref to anything but the schema itself or a standard
// meta-schema fails. The engine validates task contexts with the result;
// compiling is far costlier than validating, so cache it per template.
func CompileSchema(doc any) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refuseLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
}
