package work

import (
	"bytes"
	"encoding/json"
	"maps"
	"unicode/utf8"
)

// Metadata limits (API.md §1).
const (
	MaxMetadataKeys     = 16
	MaxMetadataKeyLen   = 64
	MaxMetadataValueLen = 512
	// MaxWorkMetadataKeys is a work item's own limit, a few keys above the general one.
	// An item's metadata starts as a copy of its session's, which may already hold
	// MaxMetadataKeys keys, and a worker must still be able to record the item's outcome
	// (exit_code) in it: otherwise a finished item would look exactly like an abandoned
	// one. Sessions and environments keep MaxMetadataKeys.
	MaxWorkMetadataKeys = MaxMetadataKeys + 4
)

// Metadata is a flat string → string map.
type Metadata map[string]string

// Clone returns a copy; it never returns nil.
func (m Metadata) Clone() Metadata {
	out := make(Metadata, len(m))
	maps.Copy(out, m)
	return out
}

// Patch is a metadata update: a non-nil value upserts its key, a nil value deletes it,
// absent keys are untouched.
type Patch map[string]*string

// ParsePatch decodes a metadata object from a request body. param names the field in
// errors ("metadata"). A JSON null or an absent field is an empty patch. Values must be
// strings or null (any other type → Invalid with param "<param>.<key>"); keys must have
// 1–64 characters and values at most 512.
func ParsePatch(raw json.RawMessage, param string) (Patch, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		return nil, invalid(param, "%s must be an object of string values.", param)
	}
	p := make(Patch, len(obj))
	for k, v := range obj {
		if n := utf8.RuneCountInString(k); n < 1 || n > MaxMetadataKeyLen {
			return nil, invalid(param, "%s keys must have 1 to %d characters.", param, MaxMetadataKeyLen)
		}
		v = bytes.TrimSpace(v)
		if bytes.Equal(v, []byte("null")) {
			p[k] = nil
			continue
		}
		var s string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return nil, invalid(param+"."+k, "%s.%s must be a string or null.", param, k)
		}
		if utf8.RuneCountInString(s) > MaxMetadataValueLen {
			return nil, invalid(param+"."+k, "%s.%s must have at most %d characters.", param, k, MaxMetadataValueLen)
		}
		p[k] = &s
	}
	return p, nil
}

// Merge applies p to m and returns the result (m is not modified). The result may hold at
// most MaxMetadataKeys keys.
func Merge(m Metadata, p Patch, param string) (Metadata, error) {
	return merge(m, p, MaxMetadataKeys, param)
}

// MergeWork is Merge for a work item's metadata, whose result may hold up to
// MaxWorkMetadataKeys keys.
func MergeWork(m Metadata, p Patch, param string) (Metadata, error) {
	return merge(m, p, MaxWorkMetadataKeys, param)
}

func merge(m Metadata, p Patch, limit int, param string) (Metadata, error) {
	out := m.Clone()
	for k, v := range p {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	if len(out) > limit {
		return nil, invalid(param, "%s may hold at most %d keys.", param, limit)
	}
	return out, nil
}
