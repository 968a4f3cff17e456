package openapitest

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/berth-sh/berth/internal/openapi"
)

const (
	envID  = "env_019e64e01a137caf953ac2ac7b42ec5c"
	sessID = "sess_019f3be3fa66750bb9a1fbcde85b5fe1"
	workID = "work_019f3be4fd2475d9a784bf2c739e1194"
	tokID  = "tok_019f3be4fd2475d9a784bf2c739e11aa"
	evtID  = "evt_019f3be4fd2475d9a784bf2c739e11bb"

	envPath  = "/api/v1/cloud/environments/" + envID
	workPath = envPath + "/work/" + workID
	sessPath = "/api/v1/cloud/sessions/" + sessID
)

// newValidator returns a Validator or stops the test.
func newValidator(t *testing.T) *Validator {
	t.Helper()
	v, err := NewValidator()
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	return v
}

// decodedDoc returns a fresh decoded copy of the document.
func decodedDoc(t *testing.T) map[string]any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(openapi.Document()))
	if err != nil {
		t.Fatalf("decode openapi.json: %v", err)
	}
	return v.(map[string]any)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDocumentIsValidOpenAPI31 validates the document against the official
// OpenAPI 3.1 JSON Schema (testdata/oas-3.1-schema.json, copied from
// OAI/OpenAPI-Specification schemas/v3.1/schema.json at commit
// d3c5de169f7f5c526ba6ec84469abf554153e5a8; see testdata/README.md).
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/oas-3.1-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	const metaURL = "https://spec.openapis.org/oas/3.1/schema/2022-02-27"
	if id := meta.(map[string]any)["$id"]; id != metaURL {
		t.Fatalf("meta-schema $id = %v, want %s", id, metaURL)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(metaURL, meta); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(metaURL)
	if err != nil {
		t.Fatalf("compile OAS 3.1 meta-schema: %v", err)
	}

	doc := decodedDoc(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf(`openapi = %v, want "3.1.0"`, doc["openapi"])
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3.1 document:\n%v", err)
	}

	// The meta-schema does reject broken documents.
	broken := decodedDoc(t)
	delete(broken["info"].(map[string]any), "version")
	if sch.Validate(broken) == nil {
		t.Error("meta-schema accepted a document without info.version")
	}
	broken = decodedDoc(t)
	op := broken["paths"].(map[string]any)["/healthz"].(map[string]any)["get"].(map[string]any)
	op["responses"].(map[string]any)["200"].(map[string]any)["bogus"] = true
	if sch.Validate(broken) == nil {
		t.Error("meta-schema accepted a response with an unknown field")
	}
}

// walk calls fn for every JSON value in v with its JSON pointer.
func walk(ptr string, v any, fn func(ptr string, v any)) {
	fn(ptr, v)
	switch c := v.(type) {
	case map[string]any:
		for k, e := range c {
			walk(ptr+"/"+escapeToken(k), e, fn)
		}
	case []any:
		for i, e := range c {
			walk(ptr+"/"+strconv.Itoa(i), e, fn)
		}
	}
}

func TestEveryRefResolves(t *testing.T) {
	t.Parallel()
	doc := decodedDoc(t)
	n := 0
	walk("", doc, func(ptr string, v any) {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		r, ok := obj["$ref"].(string)
		if !ok {
			return
		}
		n++
		if !strings.HasPrefix(r, "#/") {
			t.Errorf("%s: $ref %q is not local", ptr, r)
			return
		}
		if _, err := lookup(doc, r[1:]); err != nil {
			t.Errorf("%s: $ref %q does not resolve: %v", ptr, r, err)
		}
	})
	if n < 100 {
		t.Errorf("found only %d $refs; walk is broken?", n)
	}
	// discriminator mappings are references too.
	walk("", doc, func(ptr string, v any) {
		obj, ok := v.(map[string]any)
		if !ok || !strings.HasSuffix(ptr, "/discriminator") {
			return
		}
		m, _ := obj["mapping"].(map[string]any)
		for k, r := range m {
			rs, _ := r.(string)
			if _, err := lookup(doc, strings.TrimPrefix(rs, "#")); err != nil {
				t.Errorf("%s mapping %s: %v", ptr, k, err)
			}
		}
	})
}

func TestEverySchemaCompiles(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	doc := decodedDoc(t)
	comps := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for name := range comps {
		if v.components[name] == nil {
			t.Errorf("components.schemas.%s was not compiled", name)
		}
	}
	for _, want := range []string{
		"Environment", "EnvironmentConfig", "EnvironmentDeleted", "Session", "SessionDeleted",
		"SessionCancel", "Event", "EventList", "Work", "WorkHeartbeat", "WorkQueueStats", "Token",
		"TokenWithSecret", "Error", "EnvironmentPage", "SessionPage", "EventPage", "WorkPage", "TokenPage",
	} {
		if comps[want] == nil {
			t.Errorf("components.schemas.%s is missing", want)
		}
	}
	// The config union takes exactly one variant.
	for _, ok := range []string{`{"type":"self_hosted"}`, `{"type":"self_hosted","setup_script":"echo"}`,
		`{"type":"cloud"}`, `{"type":"cloud","networking":{"type":"limited"},"packages":{"apt":["curl"],"cargo":[]}}`} {
		if err := v.validateComponent("EnvironmentConfig", []byte(ok)); err != nil {
			t.Errorf("EnvironmentConfig %s rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{`{}`, `null`, `{"type":"self_hosted","networking":{"type":"limited"}}`,
		`{"type":"cloud","networking":{"type":"open"}}`, `{"type":"cloud","packages":{"apt":"curl"}}`} {
		if err := v.validateComponent("EnvironmentConfig", []byte(bad)); err == nil {
			t.Errorf("EnvironmentConfig %s accepted", bad)
		}
	}
	if err := v.validateComponent("NoSuchSchema", []byte(`{}`)); err == nil {
		t.Error("validateComponent accepted an unknown schema name")
	}
	// Every JSON response of every operation has a compiled schema.
	for _, o := range v.ops {
		for status, r := range o.responses {
			if r.schema == nil && !(o.route.Path == "/metrics" && status == 200) {
				t.Errorf("%s %d: no JSON schema", o.route, status)
			}
		}
	}
}

// TestOperations checks the document's own consistency: path parameters,
// operation IDs, success and error statuses, security.
func TestOperations(t *testing.T) {
	t.Parallel()
	doc := decodedDoc(t)
	paramRE := regexp.MustCompile(`\{([^}]+)\}`)
	opIDs := map[string]bool{}
	for tmpl, item := range doc["paths"].(map[string]any) {
		itemObj := item.(map[string]any)
		var itemParams []any
		if ps, ok := itemObj["parameters"].([]any); ok {
			itemParams = ps
		}
		inTemplate := map[string]bool{}
		for _, m := range paramRE.FindAllStringSubmatch(tmpl, -1) {
			inTemplate[m[1]] = true
		}
		for _, method := range openapi.OperationMethods {
			opv, ok := itemObj[method]
			if !ok {
				continue
			}
			op := opv.(map[string]any)
			where := strings.ToUpper(method) + " " + tmpl
			id, _ := op["operationId"].(string)
			if id == "" || opIDs[id] {
				t.Errorf("%s: operationId %q missing or duplicated", where, id)
			}
			opIDs[id] = true

			declared := map[string]bool{}
			var opParams []any
			if ps, ok := op["parameters"].([]any); ok {
				opParams = ps
			}
			for _, p := range slices.Concat(itemParams, opParams) {
				pp := p.(map[string]any)
				if r, ok := pp["$ref"].(string); ok {
					v, err := lookup(doc, r[1:])
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					pp = v.(map[string]any)
				}
				if pp["in"] == "path" {
					declared[pp["name"].(string)] = true
					if pp["required"] != true {
						t.Errorf("%s: path parameter %v is not required", where, pp["name"])
					}
				}
			}
			for name := range inTemplate {
				if !declared[name] {
					t.Errorf("%s: path parameter {%s} is not declared", where, name)
				}
			}
			for name := range declared {
				if !inTemplate[name] {
					t.Errorf("%s: declared path parameter %s is not in the template", where, name)
				}
			}

			resps := op["responses"].(map[string]any)
			success := 0
			for code := range resps {
				if code[0] == '2' {
					success++
				}
			}
			if success == 0 {
				t.Errorf("%s: no success response", where)
			}
			service := !strings.HasPrefix(tmpl, "/api/v1/cloud/")
			sec, hasSec := op["security"].([]any)
			if service {
				if !hasSec || len(sec) != 0 {
					t.Errorf("%s: service endpoint must have security: []", where)
				}
				continue
			}
			if hasSec {
				t.Errorf("%s: API operation overrides the bearer security", where)
			}
			want := []string{"400", "401", "403", "500", "503"}
			if len(inTemplate) > 0 {
				want = append(want, "404")
			}
			if method == "post" || method == "delete" {
				want = append(want, "409")
			}
			if strings.HasSuffix(tmpl, "/heartbeat") {
				want = append(want, "412")
			}
			for _, code := range want {
				if resps[code] == nil {
					t.Errorf("%s: error response %s is not declared", where, code)
				}
			}
		}
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	const (
		e = "/api/v1/cloud/environments"
		s = "/api/v1/cloud/sessions"
		w = e + "/{environment_id}/work"
	)
	want := []openapi.Route{
		{Method: "POST", Path: e}, {Method: "GET", Path: e},
		{Method: "GET", Path: e + "/{environment_id}"}, {Method: "POST", Path: e + "/{environment_id}"}, {Method: "DELETE", Path: e + "/{environment_id}"},
		{Method: "POST", Path: e + "/{environment_id}/archive"},
		{Method: "POST", Path: s}, {Method: "GET", Path: s},
		{Method: "GET", Path: s + "/{session_id}"}, {Method: "POST", Path: s + "/{session_id}"}, {Method: "DELETE", Path: s + "/{session_id}"},
		{Method: "POST", Path: s + "/{session_id}/archive"}, {Method: "POST", Path: s + "/{session_id}/cancel"},
		{Method: "GET", Path: s + "/{session_id}/events"}, {Method: "POST", Path: s + "/{session_id}/events"},
		{Method: "GET", Path: w}, {Method: "GET", Path: w + "/poll"}, {Method: "GET", Path: w + "/stats"},
		{Method: "GET", Path: w + "/{work_id}"}, {Method: "POST", Path: w + "/{work_id}"},
		{Method: "POST", Path: w + "/{work_id}/ack"}, {Method: "POST", Path: w + "/{work_id}/heartbeat"}, {Method: "POST", Path: w + "/{work_id}/stop"},
		{Method: "POST", Path: "/api/v1/cloud/tokens"}, {Method: "GET", Path: "/api/v1/cloud/tokens"},
		{Method: "POST", Path: "/api/v1/cloud/tokens/{token_id}/revoke"},
		{Method: "POST", Path: e + "/{environment_id}/webhooks"}, {Method: "GET", Path: e + "/{environment_id}/webhooks"},
		{Method: "DELETE", Path: e + "/{environment_id}/webhooks/{webhook_id}"},
		{Method: "GET", Path: e + "/{environment_id}/webhooks/{webhook_id}/deliveries"},
		{Method: "GET", Path: "/healthz"}, {Method: "GET", Path: "/readyz"}, {Method: "GET", Path: "/metrics"}, {Method: "GET", Path: "/openapi.json"},
	}
	slices.SortFunc(want, func(a, b openapi.Route) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	got := openapi.Routes()
	if !slices.Equal(got, want) {
		t.Errorf("openapi.Routes() =\n%v\nwant\n%v", got, want)
	}
	got[0].Method = "XXX"
	if openapi.Routes()[0].Method == "XXX" {
		t.Error("openapi.Routes() returned shared storage")
	}
}

func TestDocumentIsCopy(t *testing.T) {
	t.Parallel()
	d := openapi.Document()
	if !json.Valid(d) {
		t.Fatal("openapi.Document() is not valid JSON")
	}
	d[0] = 'X'
	if openapi.Document()[0] == 'X' {
		t.Error("openapi.Document() returned shared storage")
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	const w = "/api/v1/cloud/environments/{environment_id}/work"
	cases := []struct {
		method, path string
		want         string // "" = no match
	}{
		{"GET", envPath + "/work/poll", w + "/poll"},
		{"GET", envPath + "/work/stats", w + "/stats"},
		{"GET", envPath + "/work/stats?x=1", w + "/stats"},
		{"GET", workPath, w + "/{work_id}"},
		{"get", workPath, w + "/{work_id}"},
		{"POST", workPath, w + "/{work_id}"},
		{"POST", workPath + "/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", w + "/{work_id}/heartbeat"},
		{"GET", envPath + "/work", w},
		{"GET", "/api/v1/cloud/environments/segment%20%2F%3F%25%23/work/poll", w + "/poll"},
		{"GET", "/api/v1/cloud/environments/a%2Fb/work/" + workID, w + "/{work_id}"},
		{"GET", envPath, "/api/v1/cloud/environments/{environment_id}"},
		{"GET", "/api/v1/cloud/environments", "/api/v1/cloud/environments"},
		{"POST", "/api/v1/cloud/tokens/" + tokID + "/revoke", "/api/v1/cloud/tokens/{token_id}/revoke"},
		{"GET", "/healthz", "/healthz"},
		{"GET", "/openapi.json", "/openapi.json"},
		// literal beats parameter, whatever the method
		{"POST", envPath + "/work/poll", ""},
		{"DELETE", envPath + "/work/stats", ""},
		// unknown paths and methods
		{"GET", "/api/v1/cloud/environments/", ""},
		{"GET", "/api/v1/cloud/environments//work/poll", ""},
		{"GET", "/api/v1/cloud/nope", ""},
		{"GET", "/api/v1/cloud/environments/a/b/work/poll", ""},
		{"GET", "/healthz/x", ""},
		{"GET", "", ""},
		{"GET", "healthz", ""},
		{"PUT", envPath, ""},
		{"HEAD", "/healthz", ""},
		{"POST", "/healthz", ""},
	}
	for _, c := range cases {
		r, ok := v.Match(c.method, c.path)
		if c.want == "" {
			if ok {
				t.Errorf("Match(%s, %s) = %v, want no match", c.method, c.path, r)
			}
			continue
		}
		if !ok || r.Path != c.want || r.Method != strings.ToUpper(c.method) {
			t.Errorf("Match(%s, %s) = %v, %v; want %s %s", c.method, c.path, r, ok, strings.ToUpper(c.method), c.want)
		}
	}
}

type contract struct {
	Service  string          `json:"service"`
	Name     string          `json:"name"`
	Method   string          `json:"method"`
	Route    string          `json:"route"`
	Response json.RawMessage `json:"response"`
}

func loadContracts(t *testing.T) map[string]contract {
	t.Helper()
	raw, err := os.ReadFile("testdata/contracts.json")
	if err != nil {
		t.Fatal(err)
	}
	var list []contract
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]contract{}
	for _, c := range list {
		out[c.Service+"."+c.Name] = c
	}
	return out
}

func fillPath(tmpl string) string {
	return strings.NewReplacer("{environment_id}", envID, "{work_id}", workID, "{session_id}", sessID, "{token_id}", tokID).Replace(tmpl)
}

// TestRecordedExamples validates the response examples recorded by the Go SDK's
// contract tests (spec/contracts/qoder-sdk-contracts.json).
func TestRecordedExamples(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	contracts := loadContracts(t)
	cases := []struct {
		key    string
		status int
	}{
		{"EnvironmentWorkService.Get", 200},
		{"EnvironmentWorkService.Update", 200},
		{"EnvironmentWorkService.List", 200},
		{"EnvironmentWorkService.Ack", 200},
		{"EnvironmentWorkService.Stop", 200},
		{"EnvironmentWorkService.Heartbeat", 200},
		{"EnvironmentWorkService.Stats", 200},
		{"EnvironmentWorkService.Poll", 200},
		{"EnvironmentService.New", 201},
		{"EnvironmentService.Get", 200},
		{"EnvironmentService.Update", 200},
		{"EnvironmentService.List", 200},
		{"EnvironmentService.Archive", 200},
		{"EnvironmentService.Delete", 200},
	}
	for _, c := range cases {
		ct, ok := contracts[c.key]
		if !ok {
			t.Errorf("%s: no recorded example", c.key)
			continue
		}
		path := fillPath(ct.Route)
		if r, ok := v.Match(ct.Method, path); !ok || r.Path != ct.Route {
			t.Errorf("%s: Match(%s, %s) = %v, %v", c.key, ct.Method, path, r, ok)
		}
		if err := v.ValidateResponse(ct.Method, path, c.status, ct.Response); err != nil {
			t.Errorf("%s: recorded example rejected: %v", c.key, err)
		}
	}
	if got := string(contracts["EnvironmentWorkService.Poll"].Response); got != "null" {
		t.Errorf("recorded poll response = %s, want null", got)
	}
}

func decodeObj(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWorkMutationsRejected checks that the Work schema is strict.
func TestWorkMutationsRejected(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	work := loadContracts(t)["EnvironmentWorkService.Get"].Response
	if err := v.ValidateResponse("GET", workPath, 200, work); err != nil {
		t.Fatalf("valid work rejected: %v", err)
	}
	if err := v.ValidateResponse("GET", envPath+"/work/poll", 200, work); err != nil {
		t.Fatalf("valid polled work rejected: %v", err)
	}
	keys := []string{"id", "type", "environment_id", "data", "state", "created_at", "acknowledged_at",
		"started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at", "metadata"}
	for _, k := range keys {
		m := decodeObj(t, work)
		delete(m, k)
		if err := v.ValidateResponse("GET", workPath, 200, mustJSON(t, m)); err == nil {
			t.Errorf("work without %q accepted", k)
		}
		if err := v.ValidateResponse("GET", envPath+"/work/poll", 200, mustJSON(t, m)); err == nil {
			t.Errorf("polled work without %q accepted", k)
		}
	}
	mutations := map[string]func(m map[string]any){
		"unknown key":                func(m map[string]any) { m["secret"] = nil },
		"unknown key 2":              func(m map[string]any) { m["worker_id"] = "w1" },
		"bad state":                  func(m map[string]any) { m["state"] = "running" },
		"bad type":                   func(m map[string]any) { m["type"] = "job" },
		"bad id prefix":              func(m map[string]any) { m["id"] = "wrk_019f3be4fd2475d9a784bf2c739e1194" },
		"upper-case id":              func(m map[string]any) { m["id"] = "work_019F3BE4FD2475D9A784BF2C739E1194" },
		"short id":                   func(m map[string]any) { m["id"] = "work_019f" },
		"null created_at":            func(m map[string]any) { m["created_at"] = nil },
		"offset timestamp":           func(m map[string]any) { m["created_at"] = "2026-07-01T08:15:01+00:00" },
		"trailing zero":              func(m map[string]any) { m["started_at"] = "2026-07-01T08:15:06.120Z" },
		"nanoseconds":                func(m map[string]any) { m["started_at"] = "2026-07-01T08:15:06.123456789Z" },
		"bare dot":                   func(m map[string]any) { m["started_at"] = "2026-07-01T08:15:06.Z" },
		"impossible date":            func(m map[string]any) { m["started_at"] = "2026-13-01T08:15:06Z" },
		"numeric metadata":           func(m map[string]any) { m["metadata"] = map[string]any{"n": 1} },
		"null metadata value":        func(m map[string]any) { m["metadata"] = map[string]any{"n": nil} },
		"null metadata":              func(m map[string]any) { m["metadata"] = nil },
		"data of other type":         func(m map[string]any) { m["data"] = map[string]any{"type": "healthcheck", "id": sessID} },
		"data with unknown key":      func(m map[string]any) { m["data"].(map[string]any)["x"] = 1 },
		"data session id is work id": func(m map[string]any) { m["data"].(map[string]any)["id"] = workID },
	}
	for name, mutate := range mutations {
		m := decodeObj(t, work)
		mutate(m)
		if err := v.ValidateResponse("GET", workPath, 200, mustJSON(t, m)); err == nil {
			t.Errorf("work with %s accepted", name)
		}
	}
	// Microseconds with trailing zeros dropped are fine.
	for _, ts := range []string{"2026-07-01T08:15:06Z", "2026-07-01T08:15:06.1Z", "2026-07-01T08:15:06.000001Z", "2026-07-01T08:15:06.999999Z"} {
		m := decodeObj(t, work)
		m["stopped_at"] = ts
		if err := v.ValidateResponse("GET", workPath, 200, mustJSON(t, m)); err != nil {
			t.Errorf("timestamp %s rejected: %v", ts, err)
		}
	}
	// A page with a mutated item is rejected too.
	page := decodeObj(t, loadContracts(t)["EnvironmentWorkService.List"].Response)
	page["data"].([]any)[0].(map[string]any)["extra"] = true
	if err := v.ValidateResponse("GET", envPath+"/work", 200, mustJSON(t, page)); err == nil {
		t.Error("work page with an unknown item key accepted")
	}
	page = decodeObj(t, loadContracts(t)["EnvironmentWorkService.List"].Response)
	delete(page, "next_page")
	if err := v.ValidateResponse("GET", envPath+"/work", 200, mustJSON(t, page)); err == nil {
		t.Error("work page without next_page accepted")
	}
	page = decodeObj(t, loadContracts(t)["EnvironmentWorkService.List"].Response)
	page["prev_page"] = nil
	if err := v.ValidateResponse("GET", envPath+"/work", 200, mustJSON(t, page)); err == nil {
		t.Error("work page with an unknown key accepted")
	}
}

func TestPollBodies(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	poll := envPath + "/work/poll"
	for _, body := range []string{"null", " null\n"} {
		if err := v.ValidateResponse("GET", poll, 200, []byte(body)); err != nil {
			t.Errorf("poll %q rejected: %v", body, err)
		}
	}
	for _, body := range []string{"{}", `{"data":[]}`, "", "nul", "null null", "[]", `""`, "0"} {
		if err := v.ValidateResponse("GET", poll, 200, []byte(body)); err == nil {
			t.Errorf("poll %q accepted", body)
		}
	}
	if err := v.ValidateResponse("GET", poll, 204, nil); err == nil {
		t.Error("poll 204 accepted; API.md says 200 null")
	}
}

func TestOtherResponses(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	ts := "2026-07-01T08:15:06.120394Z"
	session := map[string]any{
		"id": sessID, "type": "session", "environment_id": envID,
		"agent": map[string]any{"id": "agent_x", "type": "agent", "version": nil},
		"title": "", "status": "idle", "metadata": map[string]any{}, "archived_at": nil,
		"created_at": ts, "updated_at": ts,
	}
	token := map[string]any{
		"id": tokID, "type": "token", "name": "ci", "role": "worker", "environment_id": envID,
		"created_at": ts, "last_used_at": nil, "revoked_at": nil,
	}
	tokenSecret := map[string]any{}
	for k, val := range token {
		tokenSecret[k] = val
	}
	tokenSecret["secret"] = "pt-" + strings.Repeat("aZ09", 10)
	event := map[string]any{"id": evtID, "type": "user.message", "created_at": ts,
		"content": []any{map[string]any{"type": "text", "text": "hi"}}}
	env := map[string]any{
		"id": envID, "type": "environment", "name": "byoc", "description": "",
		"config": map[string]any{"type": "self_hosted"}, "metadata": map[string]any{},
		"archived_at": nil, "created_at": ts, "updated_at": ts,
	}
	pageOf := func(items ...map[string]any) map[string]any {
		data := []any{}
		first, last := any(nil), any(nil)
		for _, it := range items {
			data = append(data, it)
		}
		if len(items) > 0 {
			first, last = items[0]["id"], items[len(items)-1]["id"]
		}
		return map[string]any{"data": data, "first_id": first, "last_id": last, "has_more": false, "next_page": nil}
	}
	cancel := map[string]any{"id": sessID, "type": "session", "status": "canceling"}
	health := map[string]any{"status": "ok"}

	good := []struct {
		method, path string
		status       int
		body         any
	}{
		{"POST", "/api/v1/cloud/environments", 201, env},
		{"GET", "/api/v1/cloud/environments", 200, pageOf()},
		{"GET", "/api/v1/cloud/environments?include_archived=true", 200, pageOf(env)},
		{"POST", "/api/v1/cloud/sessions", 201, session},
		{"GET", "/api/v1/cloud/sessions", 200, pageOf(session)},
		{"GET", sessPath, 200, session},
		{"POST", sessPath, 200, session},
		{"POST", sessPath + "/archive", 200, session},
		{"DELETE", sessPath, 200, map[string]any{"id": sessID, "type": "session_deleted"}},
		{"POST", sessPath + "/cancel", 202, cancel},
		{"POST", sessPath + "/cancel", 200, cancel},
		{"POST", sessPath + "/events", 200, map[string]any{"data": []any{event}}},
		{"GET", sessPath + "/events", 200, pageOf(event)},
		{"POST", "/api/v1/cloud/tokens", 201, tokenSecret},
		{"GET", "/api/v1/cloud/tokens", 200, pageOf(token)},
		{"POST", "/api/v1/cloud/tokens/" + tokID + "/revoke", 200, token},
		{"GET", "/healthz", 200, health},
		{"GET", "/readyz", 200, health},
		{"GET", "/openapi.json", 200, decodedDoc(t)},
	}
	for _, c := range good {
		if err := v.ValidateResponse(c.method, c.path, c.status, mustJSON(t, c.body)); err != nil {
			t.Errorf("%s %s %d rejected: %v", c.method, c.path, c.status, err)
		}
	}
	if err := v.ValidateResponse("GET", "/metrics", 200, []byte("# HELP x\nx 1\n")); err != nil {
		t.Errorf("metrics rejected: %v", err)
	}

	bad := []struct {
		name, method, path string
		status             int
		body               any
	}{
		{"session with unknown key", "GET", sessPath, 200, with(session, "usage", map[string]any{})},
		{"session with bad status", "GET", sessPath, 200, with(session, "status", "terminated")},
		{"session without agent type", "GET", sessPath, 200, with(session, "agent", map[string]any{"id": "a"})},
		{"session with string agent", "GET", sessPath, 200, with(session, "agent", "agent_x")},
		{"cancel with other status", "POST", sessPath + "/cancel", 202, with(cancel, "status", "canceled")},
		{"cancel with 201", "POST", sessPath + "/cancel", 201, cancel},
		{"token without secret on create", "POST", "/api/v1/cloud/tokens", 201, token},
		{"token with secret on revoke", "POST", "/api/v1/cloud/tokens/" + tokID + "/revoke", 200, tokenSecret},
		{"token with bad role", "POST", "/api/v1/cloud/tokens/" + tokID + "/revoke", 200, with(token, "role", "owner")},
		{"worker token without environment", "POST", "/api/v1/cloud/tokens/" + tokID + "/revoke", 200, with(token, "environment_id", nil)},
		{"short secret", "POST", "/api/v1/cloud/tokens", 201, with(tokenSecret, "secret", "pt-abc")},
		{"event without id", "POST", sessPath + "/events", 200, map[string]any{"data": []any{with(event, "id", nil)}}},
		{"event list as page", "POST", sessPath + "/events", 200, pageOf(event)},
		{"env with unknown config key", "GET", envPath, 200, with(env, "config", map[string]any{"type": "self_hosted", "packages": map[string]any{}})},
		{"env with null config", "GET", envPath, 200, with(env, "config", nil)},
		{"env with unknown config type", "GET", envPath, 200, with(env, "config", map[string]any{"type": "byoc"})},
		{"env with empty name", "GET", envPath, 200, with(env, "name", "")},
		{"env with scope", "GET", envPath, 200, with(env, "scope", "account")},
		{"env deleted with extra", "DELETE", envPath, 200, map[string]any{"id": envID, "type": "environment_deleted", "deleted": true}},
		{"env delete with 204", "DELETE", envPath, 204, nil},
		{"heartbeat with string ttl", "POST", workPath + "/heartbeat", 200, map[string]any{"type": "work_heartbeat", "last_heartbeat": ts, "lease_extended": true, "state": "active", "ttl_seconds": "60"}},
		{"heartbeat in state starting", "POST", workPath + "/heartbeat", 200, map[string]any{"type": "work_heartbeat", "last_heartbeat": ts, "lease_extended": true, "state": "starting", "ttl_seconds": 60}},
		{"heartbeat ttl over 600", "POST", workPath + "/heartbeat", 200, map[string]any{"type": "work_heartbeat", "last_heartbeat": ts, "lease_extended": true, "state": "active", "ttl_seconds": 601}},
		{"stats with negative depth", "GET", envPath + "/work/stats", 200, map[string]any{"type": "work_queue_stats", "depth": -1, "pending": 0, "oldest_queued_at": nil, "workers_polling": 0}},
		{"stats without workers_polling", "GET", envPath + "/work/stats", 200, map[string]any{"type": "work_queue_stats", "depth": 0, "pending": 0, "oldest_queued_at": nil}},
		{"page with bad first_id", "GET", "/api/v1/cloud/environments", 200, with(pageOf(env), "first_id", sessID)},
		{"healthz not ok", "GET", "/healthz", 200, map[string]any{"status": "down"}},
		{"healthz 503", "GET", "/healthz", 503, health},
	}
	for _, c := range bad {
		var body []byte
		if c.body != nil {
			body = mustJSON(t, c.body)
		}
		if err := v.ValidateResponse(c.method, c.path, c.status, body); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

// with returns a shallow copy of m with key set to val (val nil → JSON null).
func with(m map[string]any, key string, val any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[key] = val
	return out
}

func TestErrorEnvelope(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	example := []byte(`{"type":"error","request_id":"0b9c3f0e-8a4b-4f7e-9d6a-3c2b1a0f9e8d","error":{"type":"invalid_request_error","message":"limit must be a positive integer","param":"limit"}}`)
	for _, c := range []struct {
		method, path string
	}{
		{"GET", "/api/v1/cloud/environments?limit=0"},
		{"GET", envPath + "/work/poll?block_ms=1000"},
		{"POST", workPath + "/stop"},
		{"POST", "/api/v1/cloud/tokens"},
	} {
		if err := v.ValidateResponse(c.method, c.path, 400, example); err != nil {
			t.Errorf("%s %s 400: %v", c.method, c.path, err)
		}
	}
	errBody := func(typ string, extra map[string]any) []byte {
		e := map[string]any{"type": typ, "message": "m"}
		for k, val := range extra {
			e[k] = val
		}
		return mustJSON(t, map[string]any{"type": "error", "request_id": "r1", "error": e})
	}
	good := []struct {
		method, path string
		status       int
		body         []byte
	}{
		{"GET", envPath, 401, errBody("authentication_error", nil)},
		{"DELETE", envPath, 403, errBody("permission_error", nil)},
		{"GET", workPath, 404, errBody("not_found_error", nil)},
		{"POST", workPath + "/ack", 409, errBody("invalid_request_error", nil)},
		{"DELETE", envPath, 409, errBody("conflict_error", nil)},
		{"GET", envPath + "/work/stats", 500, errBody("api_error", nil)},
		{"PUT", envPath, 405, errBody("invalid_request_error", nil)},
		{"POST", envPath + "/work/poll", 405, errBody("invalid_request_error", nil)},
		{"GET", "/readyz", 503, errBody("api_error", nil)},
		{"POST", workPath + "/ack", 503, errBody("api_error", nil)},
		{"POST", workPath + "/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", 412, errBody("precondition_failed_error", map[string]any{
			"details": map[string]any{"current_state": map[string]any{"state": "active", "ttl_seconds": 60, "last_heartbeat": "2026-07-01T08:15:06.120394Z"}},
		})},
		{"POST", workPath + "/heartbeat", 409, errBody("invalid_request_error", map[string]any{"code": "x"})},
	}
	for _, c := range good {
		if err := v.ValidateResponse(c.method, c.path, c.status, c.body); err != nil {
			t.Errorf("%s %s %d: %v", c.method, c.path, c.status, err)
		}
	}
	base := decodeObj(t, example)
	bad := []struct {
		name         string
		method, path string
		status       int
		body         []byte
	}{
		{"unknown top-level key", "GET", envPath, 400, mustJSON(t, with(base, "code", "x"))},
		{"no request_id", "GET", envPath, 400, func() []byte { m := decodeObj(t, example); delete(m, "request_id"); return mustJSON(t, m) }()},
		{"empty request_id", "GET", envPath, 400, mustJSON(t, with(base, "request_id", ""))},
		{"type not error", "GET", envPath, 400, mustJSON(t, with(base, "type", "err"))},
		{"no message", "GET", envPath, 400, mustJSON(t, with(base, "error", map[string]any{"type": "invalid_request_error"}))},
		{"null param", "GET", envPath, 400, mustJSON(t, with(base, "error", map[string]any{"type": "invalid_request_error", "message": "m", "param": nil}))},
		{"unknown error type", "GET", envPath, 400, errBody("bad_request", nil)},
		{"wrong type for 401", "GET", envPath, 401, errBody("invalid_request_error", nil)},
		{"wrong type for 404", "GET", envPath, 404, errBody("api_error", nil)},
		{"wrong type for 405", "PUT", envPath, 405, errBody("not_found_error", nil)},
		{"405 for a declared method", "GET", envPath, 405, errBody("invalid_request_error", nil)},
		{"412 without details", "POST", workPath + "/heartbeat", 412, errBody("precondition_failed_error", nil)},
		{"412 on stop", "POST", workPath + "/stop", 412, errBody("precondition_failed_error", map[string]any{
			"details": map[string]any{"current_state": map[string]any{"state": "active", "ttl_seconds": 60, "last_heartbeat": nil}},
		})},
		{"409 on a GET", "GET", workPath, 409, errBody("conflict_error", nil)},
		{"404 on an unknown path", "GET", "/api/v1/cloud/nope", 404, errBody("not_found_error", nil)},
		{"plain text error", "GET", envPath, 500, []byte("internal error")},
		{"503 with another type", "GET", envPath, 503, errBody("invalid_request_error", nil)},
		{"503 on healthz", "GET", "/healthz", 503, errBody("api_error", nil)},
	}
	for _, c := range bad {
		if err := v.ValidateResponse(c.method, c.path, c.status, c.body); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestValidateResponseErrorsAreDescriptive(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	err := v.ValidateResponse("GET", workPath, 200, []byte(`{"id":"work_x"}`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"GET /api/v1/cloud/environments/{environment_id}/work/{work_id}", workPath, "200", "missing properties", "/id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	err = v.ValidateResponse("GET", workPath, 418, nil)
	if err == nil || !strings.Contains(err.Error(), "418") || !strings.Contains(err.Error(), "declared") {
		t.Errorf("undeclared status: %v", err)
	}
	err = v.ValidateResponse("GET", "/nope", 200, nil)
	if err == nil || !strings.Contains(err.Error(), "no route") {
		t.Errorf("unknown route: %v", err)
	}
}

// TestConcurrentUse exercises one Validator from many goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	work := loadContracts(t)["EnvironmentWorkService.Get"].Response
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			for range 50 {
				if _, ok := v.Match("GET", envPath+"/work/poll"); !ok {
					t.Error("no match")
				}
				if err := v.ValidateResponse("GET", workPath, 200, work); err != nil {
					t.Error(err)
				}
				if err := v.ValidateResponse("GET", envPath+"/work/poll", 200, []byte("{}")); err == nil {
					t.Error("{} accepted")
				}
			}
		})
	}
}
