// Package openapi holds berth's OpenAPI 3.1 description (openapi.json, served at
// GET /openapi.json).
//
// The document describes every endpoint of API.md. It is embedded in the binary;
// [Document] returns it and [Routes] lists its operations. The validator that the tests
// check every response with is in package openapitest, so that its JSON Schema library
// stays out of the binary.
package openapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

//go:embed openapi.json
var document []byte

// docURL is the base URL under which the document is registered with the JSON
// Schema compiler. It is never fetched.
const docURL = "https://berth.invalid/openapi.json"

// Document returns the OpenAPI 3.1 document, exactly the bytes of the embedded
// openapi.json. Each call returns a fresh copy that the caller may keep or modify.
func Document() []byte {
	return bytes.Clone(document)
}

// Route is one operation of the document: an upper-case HTTP method and a path
// template as written in the document, e.g.
// {"GET", "/api/v1/cloud/environments/{environment_id}/work/poll"}.
type Route struct {
	Method string
	Path   string
}

// String returns "METHOD /path/template".
func (r Route) String() string { return r.Method + " " + r.Path }

// Routes returns every (method, path template) of the document, sorted by path
// template and then by method. The slice is a fresh copy. It panics if the
// embedded document cannot be parsed, which the tests rule out.
func Routes() []Route {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(document, &doc); err != nil {
		panic(fmt.Sprintf("openapi: openapi.json: %v", err)) // checked by the tests
	}
	var out []Route
	for tmpl, item := range doc.Paths {
		for _, m := range OperationMethods {
			if _, ok := item[m]; ok {
				out = append(out, Route{Method: strings.ToUpper(m), Path: tmpl})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Method < b.Method
	})
	return out
}

// OperationMethods are the Path Item fields that hold operations, in OAS order.
var OperationMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
