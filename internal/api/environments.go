package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

const (
	maxNameLen        = 255
	maxDescriptionLen = 2048 // API.md sets none; 2 KiB is a paragraph, not a document
	maxSetupScript    = 64 << 10
)

var errEnvironmentNotFound = errNotFound("Environment not found.")

// environmentParam reads the path's environment ID; a malformed one cannot exist (404).
func (c *call) environmentParam() (string, error) {
	v := c.r.PathValue("environment_id")
	if !id.Valid(id.Environment, v) {
		return "", errEnvironmentNotFound
	}
	return v, nil
}

func (c *call) loadEnvironment() (store.Environment, error) {
	envID, err := c.environmentParam()
	if err != nil {
		return store.Environment{}, err
	}
	env, err := c.s.store.GetEnvironment(c.r.Context(), envID)
	if err != nil {
		return env, asAPIError(err, errEnvironmentNotFound)
	}
	return env, nil
}

// parseName validates a required name: a string, non-empty after trimming, at most 255
// characters. It is stored as given.
func (f fields) name() (string, bool, error) {
	s, ok, err := f.str("name", maxNameLen)
	if err != nil {
		return "", false, err
	}
	if _, present := f["name"]; present && strings.TrimSpace(s) == "" {
		return "", false, errInvalid("name", "name must not be empty.")
	}
	return s, ok, nil
}

// parseConfig validates and normalises an environment config (API.md §2). A self_hosted
// config may carry only setup_script. A cloud config may carry packages, networking and
// setup_script; other keys of a cloud config are dropped, as unknown fields are elsewhere.
// packages is written in full, every manager present, as the hosted platform writes it.
func parseConfig(raw json.RawMessage) (configType string, normalised json.RawMessage, err error) {
	raw = bytes.TrimSpace(raw)
	var obj map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &obj) != nil || len(obj) == 0 {
		return "", nil, errInvalid("config", "config must be an object with a type.")
	}
	var typ string
	if t, ok := obj["type"]; !ok || json.Unmarshal(t, &typ) != nil || (typ != "cloud" && typ != "self_hosted") {
		return "", nil, errInvalid("config.type", "config.type must be cloud or self_hosted.")
	}
	out := &orderedObject{}
	out.add("type", typ)
	if typ == "cloud" {
		pk, err := parsePackages(obj["packages"])
		if err != nil {
			return "", nil, err
		}
		out.add("packages", pk)
		if v, ok := obj["networking"]; ok && !isNull(v) {
			var n struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(v, &n) != nil || (n.Type != "limited" && n.Type != "unrestricted") {
				return "", nil, errInvalid("config.networking", "config.networking.type must be limited or unrestricted.")
			}
			out.add("networking", n)
		}
	}
	for k := range obj {
		if typ == "self_hosted" && k != "type" && k != "setup_script" {
			return "", nil, errInvalid("config."+k, "A self_hosted config may carry only setup_script; %s is not allowed.", k)
		}
	}
	if v, ok := obj["setup_script"]; ok && !isNull(v) {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", nil, errInvalid("config.setup_script", "config.setup_script must be a string.")
		}
		if len(s) > maxSetupScript {
			return "", nil, errInvalid("config.setup_script", "config.setup_script must not exceed 64 KiB.")
		}
		out.add("setup_script", s)
	}
	b, err := out.marshal()
	return typ, b, err
}

var packageManagers = []string{"apt", "cargo", "gem", "go", "npm", "pip"}

func parsePackages(raw json.RawMessage) (json.RawMessage, error) {
	lists := map[string][]string{}
	if len(raw) > 0 && !isNull(raw) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil, errInvalid("config.packages", "config.packages must be an object of string arrays.")
		}
		for k, v := range obj {
			if k == "type" {
				var t string
				if json.Unmarshal(v, &t) != nil || t != "packages" {
					return nil, errInvalid("config.packages.type", "config.packages.type must be packages.")
				}
				continue
			}
			known := false
			for _, m := range packageManagers {
				known = known || m == k
			}
			var list []string
			if !known || json.Unmarshal(v, &list) != nil {
				return nil, errInvalid("config.packages."+k, "config.packages may hold only string arrays apt, cargo, gem, go, npm and pip.")
			}
			lists[k] = list
		}
	}
	out := &orderedObject{}
	out.add("type", "packages")
	for _, m := range packageManagers {
		l := lists[m]
		if l == nil {
			l = []string{}
		}
		out.add(m, l)
	}
	return out.marshal()
}

// orderedObject builds a JSON object whose keys keep the order they were added in.
type orderedObject struct {
	keys []string
	vals []any
}

func (o *orderedObject) add(k string, v any) { o.keys, o.vals = append(o.keys, k), append(o.vals, v) }

func (o *orderedObject) marshal() (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(o.vals[i])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (s *Server) createEnvironment(c *call) error {
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	name, ok, err := f.name()
	if err != nil {
		return err
	}
	if !ok {
		return errInvalid("name", "name is required.")
	}
	desc, _, err := f.str("description", maxDescriptionLen)
	if err != nil {
		return err
	}
	cfgType, cfg := "cloud", json.RawMessage(nil)
	if raw, present := f["config"]; present {
		if cfgType, cfg, err = parseConfig(raw); err != nil {
			return err
		}
	} else if _, cfg, err = parseConfig(json.RawMessage(`{"type":"cloud"}`)); err != nil {
		return err
	}
	patch, err := f.metadata()
	if err != nil {
		return err
	}
	meta, err := work.Merge(nil, patch, "metadata")
	if err != nil {
		return err
	}
	now := work.Timestamp(s.now())
	env, err := s.store.CreateEnvironment(c.r.Context(), store.Environment{
		Name: name, Description: desc, ConfigType: cfgType, Config: cfg,
		Metadata: meta, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return err
	}
	return c.json(201, environmentObject(env))
}

func (s *Server) listEnvironments(c *call) error {
	q := c.r.URL.Query()
	p, err := c.pageParams(id.Environment)
	if err != nil {
		return err
	}
	archived, err := boolParam(q, "include_archived")
	if err != nil {
		return err
	}
	envs, more, err := s.store.ListEnvironments(c.r.Context(), p, archived)
	if err != nil {
		return err
	}
	return c.json(200, newPage(envs, more, p, environmentID, environmentObject))
}

func (s *Server) getEnvironment(c *call) error {
	env, err := c.loadEnvironment()
	if err != nil {
		return err
	}
	return c.json(200, environmentObject(env))
}

func (s *Server) updateEnvironment(c *call) error {
	envID, err := c.environmentParam()
	if err != nil {
		return err
	}
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	name, hasName, err := f.name()
	if err != nil {
		return err
	}
	if _, present := f["name"]; present && !hasName {
		return errInvalid("name", "name must be a string.")
	}
	desc, hasDesc, err := f.str("description", maxDescriptionLen)
	if err != nil {
		return err
	}
	_, descPresent := f["description"] // null clears it
	var cfgType string
	var cfg json.RawMessage
	if raw, present := f["config"]; present {
		if cfgType, cfg, err = parseConfig(raw); err != nil {
			return err
		}
	}
	patch, err := f.metadata()
	if err != nil {
		return err
	}
	now := work.Timestamp(s.now())
	env, err := s.store.UpdateEnvironment(c.r.Context(), envID, func(e *store.Environment) error {
		if cfg != nil {
			if cfgType != e.ConfigType {
				return errInvalid("config.type", "config.type cannot change (it is %s).", e.ConfigType)
			}
			e.Config = cfg
		}
		if hasName {
			e.Name = name
		}
		if hasDesc || descPresent {
			e.Description = desc
		}
		m, err := work.Merge(e.Metadata, patch, "metadata")
		if err != nil {
			return err
		}
		e.Metadata = m
		e.UpdatedAt = now
		return nil
	})
	if err != nil {
		return asAPIError(err, errEnvironmentNotFound)
	}
	return c.json(200, environmentObject(env))
}

func (s *Server) archiveEnvironment(c *call) error {
	envID, err := c.environmentParam()
	if err != nil {
		return err
	}
	if _, err := parseFields(c.body); err != nil {
		return err
	}
	now := work.Timestamp(s.now())
	env, err := s.store.UpdateEnvironment(c.r.Context(), envID, func(e *store.Environment) error {
		if e.ArchivedAt.IsZero() {
			e.ArchivedAt, e.UpdatedAt = now, now
		}
		return nil
	})
	if err != nil {
		return asAPIError(err, errEnvironmentNotFound)
	}
	return c.json(200, environmentObject(env))
}

func (s *Server) deleteEnvironment(c *call) error {
	envID, err := c.environmentParam()
	if err != nil {
		return err
	}
	err = s.store.DeleteEnvironment(c.r.Context(), envID)
	if errors.Is(err, store.ErrConflict) {
		return errConflict("Environment %s is referenced by sessions; delete them first.", envID)
	}
	if err != nil {
		return asAPIError(err, errEnvironmentNotFound)
	}
	return c.json(200, deletedJSON{ID: envID, Type: "environment_deleted"})
}
