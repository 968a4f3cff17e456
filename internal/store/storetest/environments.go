package storetest

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

func archivedEnv(e *store.Environment) { e.ArchivedAt = base.Add(sec) }

func envID(e store.Environment) string { return e.ID }

func wantConflict(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("%s: err = %v, want ErrConflict", what, err)
	}
}

func testCreateEnvironment(t *testing.T, newStore newStoreFunc) {
	t.Run("RoundTripEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		want := store.Environment{
			ID:          id.New(id.Environment),
			Name:        "byoc ✓",
			Description: "runners in \"rack 4\"",
			ConfigType:  selfHosted,
			Config:      json.RawMessage(`{"type":"self_hosted","setup_script":"echo \"hi\"\n"}`),
			Metadata:    work.Metadata{"team": "infra", "cost_center": "42"},
			ArchivedAt:  base.Add(2 * sec),
			CreatedAt:   base,
			UpdatedAt:   base.Add(sec),
		}
		if _, err := f.st.CreateEnvironment(f.ctx, inZone(want, elsewhere)); err != nil {
			t.Fatalf("CreateEnvironment: %v", err)
		}
		got, err := f.st.GetEnvironment(f.ctx, want.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		checkEqual(t, "GetEnvironment", got, want)
		list, _, err := f.st.ListEnvironments(f.ctx, store.Page{Limit: 10}, true)
		if err != nil || len(list) != 1 {
			t.Fatalf("ListEnvironments: %d rows, err %v; want 1", len(list), err)
		}
		checkEqual(t, "ListEnvironments", list[0], want)
	})

	t.Run("ZeroFields", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		want := store.Environment{ID: id.New(id.Environment), Name: "n", ConfigType: cloud,
			Config: json.RawMessage(`{"type":"cloud"}`), CreatedAt: base, UpdatedAt: base}
		if _, err := f.st.CreateEnvironment(f.ctx, want); err != nil {
			t.Fatalf("CreateEnvironment: %v", err)
		}
		got, err := f.st.GetEnvironment(f.ctx, want.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		checkEqual(t, "GetEnvironment", got, want)
		if got.SelfHosted() {
			t.Errorf("SelfHosted() = true for config type %s", got.ConfigType)
		}
	})
}

func testGetEnvironment(t *testing.T, newStore newStoreFunc) {
	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		f.env(t, selfHosted)
		_, err := f.st.GetEnvironment(f.ctx, id.New(id.Environment))
		wantNotFound(t, "GetEnvironment", err)
	})
}

func testListEnvironments(t *testing.T, newStore newStoreFunc) {
	t.Run("Pagination", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var all, live, archived []string
		for i := range 7 {
			var mods []func(*store.Environment)
			if i == 1 || i == 4 {
				mods = append(mods, archivedEnv)
			}
			e := f.env(t, selfHosted, mods...)
			all = append(all, e.ID)
			if e.ArchivedAt.IsZero() {
				live = append(live, e.ID)
			} else {
				archived = append(archived, e.ID)
			}
		}
		t.Run("IncludeArchived", func(t *testing.T) {
			checkPages(t, id.Environment, listOf(func(p store.Page) ([]store.Environment, bool, error) {
				return f.st.ListEnvironments(f.ctx, p, true)
			}, envID), all)
		})
		t.Run("ExcludeArchived", func(t *testing.T) {
			checkPages(t, id.Environment, listOf(func(p store.Page) ([]store.Environment, bool, error) {
				return f.st.ListEnvironments(f.ctx, p, false)
			}, envID), live, archived...)
		})
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		envs, more, err := f.st.ListEnvironments(f.ctx, store.Page{Limit: 20}, true)
		if err != nil || len(envs) != 0 || more {
			t.Errorf("ListEnvironments on an empty store = %d rows, hasMore %v, err %v", len(envs), more, err)
		}
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var initial []string
		for range 9 {
			initial = append(initial, f.env(t, cloud).ID)
		}
		fence := id.New(id.Environment)
		checkPagesUnderInserts(t, listOf(func(p store.Page) ([]store.Environment, bool, error) {
			return f.st.ListEnvironments(f.ctx, p, false)
		}, envID), initial, fence, func() (string, error) {
			e := store.Environment{ID: id.New(id.Environment), Name: "n", ConfigType: cloud,
				Config: json.RawMessage(`{"type":"cloud"}`), CreatedAt: base, UpdatedAt: base}
			_, err := f.st.CreateEnvironment(f.ctx, e)
			return e.ID, err
		})
	})
}

func testUpdateEnvironment(t *testing.T, newStore newStoreFunc) {
	t.Run("WritesEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		want := store.Environment{
			ID:          e.ID,
			Name:        "renamed",
			Description: "new description",
			ConfigType:  cloud,
			Config:      json.RawMessage(`{"type":"cloud","networking":{"type":"limited"}}`),
			Metadata:    work.Metadata{"owner": "ops"},
			ArchivedAt:  base.Add(5 * sec),
			CreatedAt:   e.CreatedAt,
			UpdatedAt:   base.Add(5 * sec),
		}
		calls := 0
		got, err := f.st.UpdateEnvironment(f.ctx, e.ID, func(cur *store.Environment) error {
			calls++
			checkEqual(t, "fn's environment (the stored row)", *cur, e)
			*cur = want
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateEnvironment: %v", err)
		}
		if calls == 0 {
			t.Errorf("fn was not called")
		}
		checkEqual(t, "UpdateEnvironment's result", got, want)
		stored, err := f.st.GetEnvironment(f.ctx, e.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		checkEqual(t, "GetEnvironment after UpdateEnvironment", stored, want)
	})

	t.Run("FnErrorWritesNothing", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		fnErr := errors.New("fn refused")
		_, err := f.st.UpdateEnvironment(f.ctx, e.ID, func(cur *store.Environment) error {
			cur.Name = "changed"
			cur.Metadata = work.Metadata{"x": "y"}
			cur.ArchivedAt = base.Add(sec)
			return fnErr
		})
		if err != fnErr {
			t.Errorf("UpdateEnvironment: err = %v, want fn's error unchanged", err)
		}
		stored, err := f.st.GetEnvironment(f.ctx, e.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		checkEqual(t, "GetEnvironment after a failed fn", stored, e)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		called := false
		_, err := f.st.UpdateEnvironment(f.ctx, id.New(id.Environment), func(*store.Environment) error {
			called = true
			return nil
		})
		wantNotFound(t, "UpdateEnvironment", err)
		if called {
			t.Errorf("fn called for a missing environment")
		}
	})

	t.Run("ConcurrentUpdatesNotLost", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted, func(e *store.Environment) { e.Metadata = work.Metadata{"n": "0"} })
		errs := make([]error, racers)
		race(racers, func(i int) {
			_, errs[i] = f.st.UpdateEnvironment(f.ctx, e.ID, func(cur *store.Environment) error {
				n, err := strconv.Atoi(cur.Metadata["n"])
				if err != nil {
					return err
				}
				cur.Metadata = work.Metadata{"n": strconv.Itoa(n + 1)}
				return nil
			})
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("update %d: %v", i, err)
			}
		}
		stored, err := f.st.GetEnvironment(f.ctx, e.ID)
		if err != nil {
			t.Fatalf("GetEnvironment: %v", err)
		}
		if got := stored.Metadata["n"]; got != strconv.Itoa(racers) {
			t.Errorf("after %d concurrent increments n = %s: updates were lost", racers, got)
		}
	})
}

func testDeleteEnvironment(t *testing.T, newStore newStoreFunc) {
	t.Run("Deletes", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		other := f.env(t, selfHosted)
		if err := f.st.DeleteEnvironment(f.ctx, e.ID); err != nil {
			t.Fatalf("DeleteEnvironment: %v", err)
		}
		_, err := f.st.GetEnvironment(f.ctx, e.ID)
		wantNotFound(t, "GetEnvironment after delete", err)
		envs, _, err := f.st.ListEnvironments(f.ctx, store.Page{Limit: 10}, true)
		if err != nil {
			t.Fatalf("ListEnvironments: %v", err)
		}
		if ids := listIDs(envs, envID); !slices.Equal(ids, []string{other.ID}) {
			t.Errorf("ListEnvironments after delete = %v, want [%s]", ids, other.ID)
		}
	})

	t.Run("ConflictWhileReferenced", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		// Even an archived session whose only item is stopped keeps its environment.
		s, it := draft(e.ID, work.Stopped, base)
		s.ArchivedAt = base.Add(sec)
		f.put(t, s, &it)
		err := f.st.DeleteEnvironment(f.ctx, e.ID)
		wantConflict(t, "DeleteEnvironment with a session", err)
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteEnvironment with a session: ErrNotFound as well")
		}
		if _, err := f.st.GetEnvironment(f.ctx, e.ID); err != nil {
			t.Errorf("GetEnvironment after a refused delete: %v", err)
		}
		checkEqual(t, "work item after a refused delete", f.getWork(t, it), it)
	})

	t.Run("DeletesWorkItems", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		other := f.env(t, selfHosted)
		s, it := f.item(t, e, work.Active, base)
		_, keep := f.item(t, other, work.Queued, base)
		if _, err := f.st.DeleteSession(f.ctx, s.ID, base.Add(time.Minute)); err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		if err := f.st.DeleteEnvironment(f.ctx, e.ID); err != nil {
			t.Fatalf("DeleteEnvironment: %v", err)
		}
		_, err := f.st.GetWork(f.ctx, e.ID, it.ID)
		wantNotFound(t, "GetWork of a deleted environment's item", err)
		// An environment made again with the same ID must not find the old items.
		f.env(t, selfHosted, func(n *store.Environment) { n.ID = e.ID })
		if items := f.listWork(t, e.ID); len(items) != 0 {
			t.Errorf("ListWork of a re-created environment = %v, want none", itemIDs(items))
		}
		_, err = f.st.GetWork(f.ctx, e.ID, it.ID)
		wantNotFound(t, "GetWork in a re-created environment", err)
		checkEqual(t, "another environment's item", f.getWork(t, keep), keep)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		wantNotFound(t, "DeleteEnvironment", f.st.DeleteEnvironment(f.ctx, id.New(id.Environment)))
	})
}
