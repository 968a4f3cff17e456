package work_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/berth-sh/berth/internal/work"
)

func strp(s string) *string { return &s }

// TestParsePatch checks metadata updates (API.md §1 "Metadata"): a flat object; a string
// upserts, null deletes, any other value type → 400 naming the key; keys 1–64 characters,
// values ≤ 512 characters.
func TestParsePatch(t *testing.T) {
	t.Parallel()
	key64 := strings.Repeat("k", 64)
	key64multi := strings.Repeat("é", 64)   // 64 characters, 128 bytes
	key64cjk := strings.Repeat("日", 64)     // 64 characters, 192 bytes
	val512multi := strings.Repeat("日", 512) // 512 characters, 1536 bytes
	val512 := strings.Repeat("v", 512)
	tests := []struct {
		name string
		raw  string
		want work.Patch
	}{
		{"absent", "", work.Patch{}},
		{"whitespace", " \n\t", work.Patch{}},
		{"null", "null", work.Patch{}},
		{"null with spaces", "  null\n", work.Patch{}},
		{"empty object", "{}", work.Patch{}},
		{"string upserts", `{"a":"x"}`, work.Patch{"a": strp("x")}},
		{"empty string upserts", `{"a":""}`, work.Patch{"a": strp("")}},
		{"null deletes", `{"a":null}`, work.Patch{"a": nil}},
		{"mixed", `{"a":"x","b":null,"c":"y"}`, work.Patch{"a": strp("x"), "b": nil, "c": strp("y")}},
		{"spaces around values", "{ \"a\" : \"x\" , \"b\" : null }", work.Patch{"a": strp("x"), "b": nil}},
		{"escaped value", `{"a":"\u00e9\n\"q\""}`, work.Patch{"a": strp("é\n\"q\"")}},
		{"1-character key", `{"k":"v"}`, work.Patch{"k": strp("v")}},
		{"64-character key", `{"` + key64 + `":"v"}`, work.Patch{key64: strp("v")}},
		{"64 two-byte characters key", `{"` + key64multi + `":"v"}`, work.Patch{key64multi: strp("v")}},
		{"64 three-byte characters key", `{"` + key64cjk + `":"v"}`, work.Patch{key64cjk: strp("v")}},
		{"512-character value", `{"a":"` + val512 + `"}`, work.Patch{"a": strp(val512)}},
		{"512 three-byte characters value", `{"a":"` + val512multi + `"}`, work.Patch{"a": strp(val512multi)}},
		{"512 escaped characters value", `{"a":"` + strings.Repeat(`\u00e9`, 512) + `"}`, work.Patch{"a": strp(strings.Repeat("é", 512))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := work.ParsePatch(json.RawMessage(tc.raw), "metadata")
			if err != nil {
				t.Fatalf("ParsePatch(%s): %v", tc.raw, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ParsePatch(%s) = %s, want %s", tc.raw, fmtPatch(got), fmtPatch(tc.want))
			}
			for k, w := range tc.want {
				g, ok := got[k]
				switch {
				case !ok:
					t.Errorf("key %q missing", k)
				case (g == nil) != (w == nil):
					t.Errorf("key %q = %s, want %s", k, fmtVal(g), fmtVal(w))
				case g != nil && *g != *w:
					t.Errorf("key %q = %s, want %s", k, fmtVal(g), fmtVal(w))
				}
			}
		})
	}

	key65 := strings.Repeat("k", 65)
	key65multi := strings.Repeat("é", 65)
	tests2 := []struct {
		name  string
		raw   string
		param string // "" → any param starting with "metadata"
	}{
		// Non-objects.
		{"array", `[]`, "metadata"},
		{"array of pairs", `[["a","b"]]`, "metadata"},
		{"string", `"a"`, "metadata"},
		{"number", `1`, "metadata"},
		{"true", `true`, "metadata"},
		{"false", `false`, "metadata"},
		{"malformed", `{`, "metadata"},
		{"malformed value", `{"a":}`, "metadata"},
		{"trailing garbage", `{"a":"x"} x`, "metadata"},
		// Value types other than string and null name the key.
		{"integer value", `{"a":1}`, "metadata.a"},
		{"float value", `{"a":1.5}`, "metadata.a"},
		{"true value", `{"a":true}`, "metadata.a"},
		{"false value", `{"a":false}`, "metadata.a"},
		{"object value", `{"a":{}}`, "metadata.a"},
		{"nested object value", `{"a":{"b":"c"}}`, "metadata.a"},
		{"array value", `{"a":[]}`, "metadata.a"},
		{"array of strings value", `{"a":["x"]}`, "metadata.a"},
		{"bad value among good ones", `{"ok":"x","gone":null,"bad":2}`, "metadata.bad"},
		{"dotted key", `{"x.y":0}`, "metadata.x.y"},
		// Key and value lengths.
		{"empty key", `{"":"v"}`, ""},
		{"empty key deleting", `{"":null}`, ""},
		{"65-character key", `{"` + key65 + `":"v"}`, ""},
		{"65-character key deleting", `{"` + key65 + `":null}`, ""},
		{"65 two-byte characters key", `{"` + key65multi + `":"v"}`, ""},
		{"513-character value", `{"a":"` + strings.Repeat("v", 513) + `"}`, "metadata.a"},
		{"513 three-byte characters value", `{"a":"` + strings.Repeat("日", 513) + `"}`, "metadata.a"},
	}
	for _, tc := range tests2 {
		t.Run("invalid "+tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := work.ParsePatch(json.RawMessage(tc.raw), "metadata")
			if err == nil {
				t.Fatalf("ParsePatch(%.80s) = %s, want an error", tc.raw, fmtPatch(p))
			}
			if tc.param != "" {
				checkInvalid(t, err, tc.param)
				return
			}
			e := asError(t, err)
			if e.Kind != work.Invalid {
				t.Errorf("Kind = %s, want %s", kindName(e.Kind), kindName(work.Invalid))
			}
			if !strings.HasPrefix(e.Param, "metadata") {
				t.Errorf("Param = %q, want metadata or metadata.<key>", e.Param)
			}
		})
	}

	t.Run("param prefix follows the argument", func(t *testing.T) {
		t.Parallel()
		_, err := work.ParsePatch(json.RawMessage(`{"k":7}`), "session.metadata")
		checkInvalid(t, err, "session.metadata.k")
		_, err = work.ParsePatch(json.RawMessage(`7`), "session.metadata")
		checkInvalid(t, err, "session.metadata")
	})
}

func fmtVal(v *string) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *v)
}

func fmtPatch(p work.Patch) string {
	var b strings.Builder
	b.WriteString("{")
	for k, v := range p {
		fmt.Fprintf(&b, "%q:%s ", k, fmtVal(v))
	}
	b.WriteString("}")
	return b.String()
}

func nKeys(n int, prefix string) work.Metadata {
	m := work.Metadata{}
	for i := range n {
		m[fmt.Sprintf("%s%02d", prefix, i)] = "v"
	}
	return m
}

// TestMerge checks that a patch upserts, deletes and leaves absent keys alone, that the
// result holds at most 16 keys, and that the input is not modified.
func TestMerge(t *testing.T) {
	t.Parallel()
	fifteen := nKeys(15, "k")
	sixteen := nKeys(16, "k")
	tests := []struct {
		name    string
		m       work.Metadata
		p       work.Patch
		want    work.Metadata
		wantErr bool
	}{
		{"nil patch keeps everything", work.Metadata{"a": "1"}, nil, work.Metadata{"a": "1"}, false},
		{"empty patch keeps everything", work.Metadata{"a": "1"}, work.Patch{}, work.Metadata{"a": "1"}, false},
		{"upsert new key", work.Metadata{"a": "1"}, work.Patch{"b": strp("2")}, work.Metadata{"a": "1", "b": "2"}, false},
		{"upsert existing key", work.Metadata{"a": "1"}, work.Patch{"a": strp("9")}, work.Metadata{"a": "9"}, false},
		{"upsert empty string", work.Metadata{"a": "1"}, work.Patch{"a": strp("")}, work.Metadata{"a": ""}, false},
		{"delete", work.Metadata{"a": "1", "b": "2"}, work.Patch{"a": nil}, work.Metadata{"b": "2"}, false},
		{"delete missing key", work.Metadata{"a": "1"}, work.Patch{"z": nil}, work.Metadata{"a": "1"}, false},
		{"upsert, delete and untouched",
			work.Metadata{"keep": "k", "up": "old", "del": "d"},
			work.Patch{"up": strp("new"), "del": nil, "add": strp("a")},
			work.Metadata{"keep": "k", "up": "new", "add": "a"}, false},
		{"nil metadata", nil, work.Patch{"a": strp("1")}, work.Metadata{"a": "1"}, false},
		{"16 keys from empty", work.Metadata{}, patchOf(nKeys(16, "p")), nKeys(16, "p"), false},
		{"15 + 1 = 16 keys", fifteen, work.Patch{"new": strp("v")}, withKey(fifteen, "new", "v"), false},
		{"16 keys, upsert existing", sixteen, work.Patch{"k00": strp("w")}, withKey(sixteen, "k00", "w"), false},
		{"16 keys, delete one add one", sixteen, work.Patch{"k00": nil, "new": strp("v")}, withKey(withoutKey(sixteen, "k00"), "new", "v"), false},
		{"16 + 1 = 17 keys", sixteen, work.Patch{"new": strp("v")}, nil, true},
		{"17 keys from empty", work.Metadata{}, patchOf(nKeys(17, "p")), nil, true},
		{"15 + 2 = 17 keys", fifteen, work.Patch{"x": strp("1"), "y": strp("2")}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := maps.Clone(tc.m)
			got, err := work.Merge(tc.m, tc.p, "metadata")
			if !maps.Equal(tc.m, before) || (tc.m == nil) != (before == nil) {
				t.Errorf("input modified: %v, was %v", tc.m, before)
			}
			if tc.wantErr {
				checkInvalid(t, err, "metadata")
				return
			}
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			if got == nil {
				t.Fatalf("Merge returned nil metadata")
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("Merge = %v, want %v", got, tc.want)
			}
			// The result shares no memory with the input.
			got["__probe__"] = "x"
			if _, ok := tc.m["__probe__"]; ok {
				t.Errorf("result shares memory with the input")
			}
		})
	}

	if work.MaxMetadataKeys != 16 || work.MaxMetadataKeyLen != 64 || work.MaxMetadataValueLen != 512 {
		t.Errorf("limits = %d keys, %d key chars, %d value chars; want 16, 64, 512",
			work.MaxMetadataKeys, work.MaxMetadataKeyLen, work.MaxMetadataValueLen)
	}
}

// TestMergeWork checks a work item's limit: 4 keys above the general 16, so that a worker
// can record its outcome in an item whose metadata is a copy of a session at the limit.
func TestMergeWork(t *testing.T) {
	t.Parallel()
	session := nKeys(16, "s") // what an item copies from a session at the general limit
	twenty := nKeys(20, "k")
	tests := []struct {
		name    string
		m       work.Metadata
		p       work.Patch
		want    work.Metadata
		wantErr bool
	}{
		{"exit_code on a copy of a full session", session, work.Patch{"exit_code": strp("0")}, withKey(session, "exit_code", "0"), false},
		{"16 + 4 = 20 keys", session, patchOf(nKeys(4, "w")), mergedOf(session, nKeys(4, "w")), false},
		{"20 keys from empty", work.Metadata{}, patchOf(twenty), twenty, false},
		{"20 keys, upsert existing", twenty, work.Patch{"k00": strp("w")}, withKey(twenty, "k00", "w"), false},
		{"20 keys, delete one add one", twenty, work.Patch{"k00": nil, "new": strp("v")}, withKey(withoutKey(twenty, "k00"), "new", "v"), false},
		{"20 keys, delete", twenty, work.Patch{"k19": nil}, withoutKey(twenty, "k19"), false},
		{"16 + 5 = 21 keys", session, patchOf(nKeys(5, "w")), nil, true},
		{"20 + 1 = 21 keys", twenty, work.Patch{"new": strp("v")}, nil, true},
		{"21 keys from empty", work.Metadata{}, patchOf(nKeys(21, "p")), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := maps.Clone(tc.m)
			got, err := work.MergeWork(tc.m, tc.p, "metadata")
			if !maps.Equal(tc.m, before) {
				t.Errorf("input modified: %v, was %v", tc.m, before)
			}
			if tc.wantErr {
				checkInvalid(t, err, "metadata")
				if err != nil && !strings.Contains(err.Error(), "at most 20 keys") {
					t.Errorf("error %q does not name the limit of 20", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("MergeWork: %v", err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("MergeWork = %v, want %v", got, tc.want)
			}
		})
	}

	// The general limit is unchanged: sessions and environments stay at 16.
	if _, err := work.Merge(session, work.Patch{"exit_code": strp("0")}, "metadata"); err == nil {
		t.Errorf("Merge accepted a 17th key")
	}
	if work.MaxWorkMetadataKeys != 20 {
		t.Errorf("MaxWorkMetadataKeys = %d, want 20", work.MaxWorkMetadataKeys)
	}
}

// TestParsePatchThenMerge runs a request body through both steps, as an update does.
func TestParsePatchThenMerge(t *testing.T) {
	t.Parallel()
	m := work.Metadata{"team": "infra", "owner": "ana", "tier": "2"}
	p, err := work.ParsePatch(json.RawMessage(`{"owner":"bo","tier":null,"region":"eu"}`), "metadata")
	if err != nil {
		t.Fatal(err)
	}
	got, err := work.Merge(m, p, "metadata")
	if err != nil {
		t.Fatal(err)
	}
	want := work.Metadata{"team": "infra", "owner": "bo", "region": "eu"}
	if !maps.Equal(got, want) {
		t.Errorf("merged = %v, want %v", got, want)
	}
	if m["owner"] != "ana" || m["tier"] != "2" || len(m) != 3 {
		t.Errorf("input modified: %v", m)
	}
}

func patchOf(m work.Metadata) work.Patch {
	p := work.Patch{}
	for k, v := range m {
		p[k] = strp(v)
	}
	return p
}

func mergedOf(a, b work.Metadata) work.Metadata {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

func withKey(m work.Metadata, k, v string) work.Metadata {
	out := maps.Clone(m)
	out[k] = v
	return out
}

func withoutKey(m work.Metadata, k string) work.Metadata {
	out := maps.Clone(m)
	delete(out, k)
	return out
}
