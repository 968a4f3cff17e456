// Package openapitest checks concrete responses against berth's OpenAPI document
// (package openapi): a Validator matches request paths to the document's operations and
// validates response bodies with its JSON Schemas (draft 2020-12). It is for tests, and
// keeps its JSON Schema library out of the binary.
package openapitest

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/berth-sh/berth/internal/openapi"
)

// docURL is the base URL under which the document is registered with the JSON
// Schema compiler. It is never fetched.
const docURL = "https://berth.invalid/openapi.json"

// parsedDoc is the document decoded once, with its operations in Routes order.
type parsedDoc struct {
	doc map[string]any
	ops []*opInfo
}

// opInfo is one operation: its route, the segments of its path template, and
// the JSON pointers of its (dereferenced) Response Objects by status code.
type opInfo struct {
	route     openapi.Route
	segs      []string
	responses map[int]string
}

var parsed = sync.OnceValues(func() (*parsedDoc, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(openapi.Document()))
	if err != nil {
		return nil, fmt.Errorf("openapi: openapi.json: %w", err)
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi: openapi.json is not a JSON object")
	}
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi: openapi.json has no paths object")
	}
	p := &parsedDoc{doc: doc}
	for tmpl, item := range paths {
		itemObj, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("openapi: path %s is not an object", tmpl)
		}
		if !strings.HasPrefix(tmpl, "/") {
			return nil, fmt.Errorf("openapi: path %s does not start with /", tmpl)
		}
		for _, m := range openapi.OperationMethods {
			opv, ok := itemObj[m]
			if !ok {
				continue
			}
			opObj, ok := opv.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("openapi: %s %s is not an object", m, tmpl)
			}
			o := &opInfo{
				route:     openapi.Route{Method: strings.ToUpper(m), Path: tmpl},
				segs:      strings.Split(tmpl[1:], "/"),
				responses: map[int]string{},
			}
			resps, ok := opObj["responses"].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("openapi: %s has no responses", o.route)
			}
			for code := range resps {
				status, err := strconv.Atoi(code)
				if err != nil || status < 100 || status > 599 {
					return nil, fmt.Errorf("openapi: %s: response key %q is not a status code", o.route, code)
				}
				ptr, _, err := deref(doc, "/paths/"+escapeToken(tmpl)+"/"+m+"/responses/"+code)
				if err != nil {
					return nil, fmt.Errorf("openapi: %s %d: %w", o.route, status, err)
				}
				o.responses[status] = ptr
			}
			p.ops = append(p.ops, o)
		}
	}
	sort.Slice(p.ops, func(i, j int) bool {
		a, b := p.ops[i].route, p.ops[j].route
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Method < b.Method
	})
	return p, nil
})

// escapeToken escapes one JSON Pointer reference token (RFC 6901).
func escapeToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// lookup returns the value at a JSON Pointer ("" or "/a/b") in doc.
func lookup(doc any, ptr string) (any, error) {
	if ptr == "" {
		return doc, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("invalid JSON pointer %q", ptr)
	}
	cur := doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("JSON pointer %q: no member %q", ptr, tok)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("JSON pointer %q: bad index %q", ptr, tok)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("JSON pointer %q: cannot descend into %T", ptr, cur)
		}
	}
	return cur, nil
}

// deref follows OpenAPI Reference Objects ({"$ref": "#/..."}) starting at ptr
// and returns the pointer and value of the object finally referred to. Only
// references local to the document are supported.
func deref(doc any, ptr string) (string, map[string]any, error) {
	for range 16 {
		v, err := lookup(doc, ptr)
		if err != nil {
			return "", nil, err
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return "", nil, fmt.Errorf("%q is not an object", ptr)
		}
		r, ok := obj["$ref"].(string)
		if !ok {
			return ptr, obj, nil
		}
		if !strings.HasPrefix(r, "#") {
			return "", nil, fmt.Errorf("%q: non-local $ref %q", ptr, r)
		}
		ptr = r[1:]
	}
	return "", nil, fmt.Errorf("%q: $ref chain too long", ptr)
}

// Validator validates responses against the document. Build it with
// [NewValidator]; it is immutable and safe for concurrent use.
type Validator struct {
	ops []*validatorOp
	// notAllowed is the body schema of components.responses.MethodNotAllowed,
	// used for methods that the document does not list on an existing path.
	notAllowed *jsonschema.Schema
	// components holds every compiled components.schemas entry by name.
	components map[string]*jsonschema.Schema
}

type validatorOp struct {
	*opInfo
	responses map[int]*validatorResp
}

type validatorResp struct {
	pointer   string             // JSON pointer of the Response Object
	mediaKeys []string           // declared media types, sorted
	schema    *jsonschema.Schema // body schema when a JSON media type is declared
}

// NewValidator parses the embedded document and compiles, with
// github.com/santhosh-tekuri/jsonschema/v6 (draft 2020-12, format assertions
// on), every schema of components.schemas and the body schema of every JSON
// response of every operation. It returns an error if the document is
// malformed, a local $ref does not resolve, or a schema does not compile.
func NewValidator() (*Validator, error) {
	p, err := parsed()
	if err != nil {
		return nil, err
	}
	// The compiler gets its own decoded copy: it keeps references into it.
	res, err := jsonschema.UnmarshalJSON(bytes.NewReader(openapi.Document()))
	if err != nil {
		return nil, fmt.Errorf("openapi: openapi.json: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, res); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	compile := func(ptr string) (*jsonschema.Schema, error) {
		s, err := c.Compile(docURL + "#" + ptr)
		if err != nil {
			return nil, fmt.Errorf("openapi: compile #%s: %w", ptr, err)
		}
		return s, nil
	}

	v := &Validator{components: map[string]*jsonschema.Schema{}}
	comps, _ := lookup(p.doc, "/components/schemas")
	compMap, _ := comps.(map[string]any)
	for name := range compMap {
		s, err := compile("/components/schemas/" + escapeToken(name))
		if err != nil {
			return nil, err
		}
		v.components[name] = s
	}

	compileResp := func(ptr string) (*validatorResp, error) {
		_, obj, err := deref(p.doc, ptr)
		if err != nil {
			return nil, fmt.Errorf("openapi: %w", err)
		}
		r := &validatorResp{pointer: ptr}
		content, _ := obj["content"].(map[string]any)
		for mt := range content {
			r.mediaKeys = append(r.mediaKeys, mt)
		}
		slices.Sort(r.mediaKeys)
		for _, mt := range r.mediaKeys {
			if !isJSONMediaType(mt) {
				continue
			}
			if r.schema != nil {
				return nil, fmt.Errorf("openapi: #%s declares more than one JSON media type", ptr)
			}
			mtObj, _ := content[mt].(map[string]any)
			if _, ok := mtObj["schema"]; !ok {
				return nil, fmt.Errorf("openapi: #%s: %s has no schema", ptr, mt)
			}
			s, err := compile(ptr + "/content/" + escapeToken(mt) + "/schema")
			if err != nil {
				return nil, err
			}
			r.schema = s
		}
		return r, nil
	}

	for _, o := range p.ops {
		vo := &validatorOp{opInfo: o, responses: map[int]*validatorResp{}}
		for status, ptr := range o.responses {
			r, err := compileResp(ptr)
			if err != nil {
				return nil, fmt.Errorf("%w (%s %d)", err, o.route, status)
			}
			vo.responses[status] = r
		}
		v.ops = append(v.ops, vo)
	}
	na, err := compileResp("/components/responses/MethodNotAllowed")
	if err != nil {
		return nil, err
	}
	if na.schema == nil {
		return nil, fmt.Errorf("openapi: components.responses.MethodNotAllowed has no JSON schema")
	}
	v.notAllowed = na.schema
	return v, nil
}

// isJSONMediaType reports whether a media type (or range) is JSON:
// application/json or any +json type.
func isJSONMediaType(mt string) bool {
	mt = strings.ToLower(strings.TrimSpace(strings.SplitN(mt, ";", 2)[0]))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// splitPath returns the segments of a concrete request path, after dropping
// any query string or fragment, or nil if the path does not start with "/".
func splitPath(path string) []string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if !strings.HasPrefix(path, "/") {
		return nil
	}
	return strings.Split(path[1:], "/")
}

func isParam(seg string) bool {
	return len(seg) >= 2 && seg[0] == '{' && seg[len(seg)-1] == '}'
}

// matchTemplate reports whether the concrete segments fit the template
// segments: literal segments must be equal, a {parameter} takes any one
// non-empty segment (still escaped, so "%2F" stays inside one segment).
func matchTemplate(tmpl, segs []string) bool {
	if len(tmpl) != len(segs) {
		return false
	}
	for i, t := range tmpl {
		if isParam(t) {
			if segs[i] == "" {
				return false
			}
		} else if t != segs[i] {
			return false
		}
	}
	return true
}

// moreSpecific reports whether template a beats template b: at the first
// segment where one has a literal and the other a parameter, the literal wins.
func moreSpecific(a, b []string) bool {
	for i := range min(len(a), len(b)) {
		pa, pb := isParam(a[i]), isParam(b[i])
		if pa != pb {
			return !pa
		}
	}
	return false
}

// find returns the operation for method on the best-matching path template, and
// whether any template matches path at all (so a nil operation with true means
// "method not allowed on an existing path").
func (v *Validator) find(method, path string) (*validatorOp, bool) {
	segs := splitPath(path)
	if segs == nil {
		return nil, false
	}
	var best []string
	bestPath := ""
	for _, o := range v.ops {
		if o.route.Path == bestPath || !matchTemplate(o.segs, segs) {
			continue
		}
		if best == nil || moreSpecific(o.segs, best) {
			best, bestPath = o.segs, o.route.Path
		}
	}
	if best == nil {
		return nil, false
	}
	method = strings.ToUpper(method)
	for _, o := range v.ops {
		if o.route.Path == bestPath && o.route.Method == method {
			return o, true
		}
	}
	return nil, true
}

// Match returns the route of the document that serves method on the concrete
// request path, given in escaped form (e.g. r.URL.EscapedPath(); a query string
// is ignored). Each {parameter} matches exactly one non-empty escaped segment,
// so an ID containing %2F stays one segment. When several templates match, the
// one with a literal segment where the others have a parameter wins, and the
// method must be one of that template's: ".../work/poll" is never matched to
// ".../work/{work_id}", whatever the method. The method is compared
// case-insensitively; HEAD is not treated as GET. It returns false if no
// template matches or the best template has no operation for method.
func (v *Validator) Match(method, path string) (openapi.Route, bool) {
	o, _ := v.find(method, path)
	if o == nil {
		return openapi.Route{}, false
	}
	return o.route, true
}

// KnownPath reports whether any path template of the document matches the concrete,
// escaped request path, whatever the method.
func (v *Validator) KnownPath(path string) bool {
	_, exists := v.find("GET", path)
	return exists
}

// ValidateResponse checks a response against the document. It finds the route
// with [Validator.Match] and the Response Object declared for status, and
// returns an error if either is missing. As the only exception, a 405 for a
// method the document does not list on an existing path is accepted and its
// body checked against components.responses.MethodNotAllowed (API.md §1: 405
// "method not allowed on an existing path"). If the response declares a JSON
// media type, body must be one JSON value, nothing else, that validates
// against its schema (so a poll's `null` is checked too); if it declares no
// content, body must be empty; a non-JSON body (text/plain metrics) is not
// inspected. A nil error means the response conforms; errors name the route,
// the status, and for schema failures every failing keyword and instance
// location.
func (v *Validator) ValidateResponse(method, path string, status int, body []byte) error {
	o, pathExists := v.find(method, path)
	if o == nil {
		switch {
		case !pathExists:
			return fmt.Errorf("openapi: no route for %s %s", strings.ToUpper(method), path)
		case status != http.StatusMethodNotAllowed:
			return fmt.Errorf("openapi: %s is not declared on %s (only a 405 may answer it), got status %d", strings.ToUpper(method), path, status)
		}
		return validateJSON(v.notAllowed, body, fmt.Sprintf("%s %s -> 405", strings.ToUpper(method), path))
	}
	r, ok := o.responses[status]
	if !ok {
		declared := make([]int, 0, len(o.responses))
		for s := range o.responses {
			declared = append(declared, s)
		}
		slices.Sort(declared)
		return fmt.Errorf("openapi: %s (%s): status %d is not declared (declared: %v)", o.route, path, status, declared)
	}
	where := fmt.Sprintf("%s (%s) -> %d", o.route, path, status)
	switch {
	case r.schema != nil:
		return validateJSON(r.schema, body, where)
	case len(r.mediaKeys) == 0:
		if len(bytes.TrimSpace(body)) != 0 {
			return fmt.Errorf("openapi: %s: no content is declared but the body has %d bytes", where, len(body))
		}
	}
	return nil
}

func validateJSON(s *jsonschema.Schema, body []byte, where string) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("openapi: %s: body is not a single JSON value: %v", where, err)
	}
	if err := s.Validate(inst); err != nil {
		return fmt.Errorf("openapi: %s: body does not match the schema: %w", where, err)
	}
	return nil
}

// validateComponent validates a JSON body against components.schemas[name].
func (v *Validator) validateComponent(name string, body []byte) error {
	s, ok := v.components[name]
	if !ok {
		return fmt.Errorf("openapi: no component schema %q", name)
	}
	return validateJSON(s, body, "#/components/schemas/"+name)
}
