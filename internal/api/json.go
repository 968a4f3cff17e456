package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/berth-sh/berth/internal/work"
)

// maxBody is the largest request body accepted (API.md §1).
const maxBody = 32 << 20

// timestamp is a time as API.md writes it: RFC 3339 UTC, microseconds, trailing zeros
// dropped; the zero time is null.
type timestamp time.Time

func (t timestamp) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 32)
	b = append(b, '"')
	b = work.Timestamp(tt).AppendFormat(b, work.TimeLayout)
	return append(b, '"'), nil
}

// writeJSON writes v as the response body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		status, b = http.StatusInternalServerError, mustErrorBody(w, errInternal)
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// writeError writes the error envelope of e.
func writeError(w http.ResponseWriter, e *apiError) {
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeRaw(w, e.Status, mustErrorBody(w, e))
}

func mustErrorBody(w http.ResponseWriter, e *apiError) []byte {
	b, err := json.Marshal(errorBody{
		Type:      "error",
		RequestID: w.Header().Get("x-request-id"),
		Error:     errorPayload{Type: e.Type, Message: e.Message, Param: e.Param, Details: e.Details},
	})
	if err != nil {
		b, _ = json.Marshal(errorBody{Type: "error", RequestID: w.Header().Get("x-request-id"),
			Error: errorPayload{Type: typeAPI, Message: errInternal.Message}})
	}
	return b
}

// readBody reads a request body of at most maxBody bytes. An empty or all-whitespace body
// reads as {}.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBody {
		return nil, errBodyTooLarge // refused before reading a byte of it
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errBodyTooLarge
		}
		return nil, errInvalid("", "Request body could not be read.")
	}
	if len(b) > maxBody {
		return nil, errBodyTooLarge
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return []byte("{}"), nil
	}
	if !utf8.Valid(b) {
		// JSON text is UTF-8 (RFC 8259 §8.1); storing other bytes would corrupt them.
		return nil, errInvalid("", "Request body must be valid UTF-8.")
	}
	return b, nil
}

// fields is a request body object, each field kept raw until it is validated.
type fields map[string]json.RawMessage

// parseFields decodes a body that must be one JSON object.
func parseFields(b []byte) (fields, error) {
	if !json.Valid(b) {
		return nil, errMalformedJSON
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, errBodyNotObject
	}
	var f fields
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, errMalformedJSON
	}
	return f, nil
}

// has reports whether the field is present and not null.
func (f fields) has(name string) bool {
	v, ok := f[name]
	return ok && !isNull(v)
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// str returns a string field. Absent or null gives ok = false.
func (f fields) str(name string, maxLen int) (s string, ok bool, err error) {
	v, present := f[name]
	if !present || isNull(v) {
		return "", false, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false, errInvalid(name, "%s must be a string.", name)
	}
	if utf8.RuneCountInString(s) > maxLen {
		return "", false, errInvalid(name, "%s must have at most %d characters.", name, maxLen)
	}
	if strings.ContainsRune(s, 0) {
		return "", false, errInvalid(name, "%s must not contain NUL characters.", name)
	}
	return s, true, nil
}

// boolean returns a boolean field; absent or null gives def.
func (f fields) boolean(name string, def bool) (bool, error) {
	v, present := f[name]
	if !present || isNull(v) {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, errInvalid(name, "%s must be a boolean.", name)
	}
	return b, nil
}

// metadata returns the metadata patch of a body.
func (f fields) metadata() (work.Patch, error) {
	return work.ParsePatch(f["metadata"], "metadata")
}

// jsonTree is a JSON value decoded with its object keys in order, for storing a client's
// free-form JSON (an agent object) in a normal form. Exactly one of its fields is set.
type jsonTree struct {
	scalar string      // a string, number, true, false or null, as JSON text
	array  []*jsonTree // an array (non-nil, maybe empty)
	object *jsonObject // an object
}

// jsonObject is an object's keys in the order they first appeared, each once.
type jsonObject struct {
	keys  []string
	vals  []*jsonTree
	index map[string]int
}

// set sets key to v: in its place when the key is already there, else at the end.
func (o *jsonObject) set(key string, v *jsonTree) {
	if i, ok := o.index[key]; ok {
		o.vals[i] = v
		return
	}
	if o.index == nil {
		o.index = map[string]int{}
	}
	o.index[key] = len(o.keys)
	o.keys, o.vals = append(o.keys, key), append(o.vals, v)
}

// get returns the value of key.
func (o *jsonObject) get(key string) (*jsonTree, bool) {
	i, ok := o.index[key]
	if !ok {
		return nil, false
	}
	return o.vals[i], true
}

func (t *jsonTree) isString() bool { return strings.HasPrefix(t.scalar, `"`) }
func (t *jsonTree) isNull() bool   { return t.scalar == "null" }

// decodeJSONTree decodes one JSON value in a single pass. A key repeated in an object is
// kept once, at its first place with its last value, as encoding/json decodes it; numbers
// keep their literal text. The input's nesting depth is bounded by encoding/json's own
// limit (json.Valid, which every request body passes first).
func decodeJSONTree(raw []byte) (*jsonTree, error) {
	if !json.Valid(raw) {
		return nil, errors.New("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return decodeJSONValue(dec)
}

func decodeJSONValue(dec *json.Decoder) (*jsonTree, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('['):
		t := &jsonTree{array: []*jsonTree{}}
		for dec.More() {
			v, err := decodeJSONValue(dec)
			if err != nil {
				return nil, err
			}
			t.array = append(t.array, v)
		}
		_, err := dec.Token() // ]
		return t, err
	case json.Delim('{'):
		obj := &jsonObject{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			v, err := decodeJSONValue(dec)
			if err != nil {
				return nil, err
			}
			obj.set(k, v)
		}
		_, err := dec.Token() // }
		return &jsonTree{object: obj}, err
	}
	b, err := json.Marshal(tok) // string, json.Number, bool or nil
	return &jsonTree{scalar: string(b)}, err
}

// marshal writes the tree as compact JSON.
func (t *jsonTree) marshal() (json.RawMessage, error) {
	var b bytes.Buffer
	t.write(&b)
	return b.Bytes(), nil
}

func (t *jsonTree) write(b *bytes.Buffer) {
	switch {
	case t.object != nil:
		b.WriteByte('{')
		for i, k := range t.object.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			t.object.vals[i].write(b)
		}
		b.WriteByte('}')
	case t.array != nil:
		b.WriteByte('[')
		for i, v := range t.array {
			if i > 0 {
				b.WriteByte(',')
			}
			v.write(b)
		}
		b.WriteByte(']')
	default:
		b.WriteString(t.scalar)
	}
}
