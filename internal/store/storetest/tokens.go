package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

func draftToken(envID string) store.Token {
	return store.Token{
		ID:            id.New(id.Token),
		Name:          "ci",
		Role:          "worker",
		EnvironmentID: envID,
		Hash:          "sha256:" + id.New("h"),
		CreatedAt:     base,
	}
}

func (f *fixture) token(t *testing.T, mods ...func(*store.Token)) store.Token {
	t.Helper()
	tok := draftToken("")
	tok.Role = "admin"
	for _, m := range mods {
		m(&tok)
	}
	if _, err := f.st.CreateToken(f.ctx, tok); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	return tok
}

func tokenID(t store.Token) string { return t.ID }

func testCreateToken(t *testing.T, newStore newStoreFunc) {
	t.Run("RoundTripEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		want := draftToken(id.New(id.Environment))
		want.LastUsedAt = base.Add(sec)
		want.RevokedAt = base.Add(2 * sec)
		if _, err := f.st.CreateToken(f.ctx, inZone(want, elsewhere)); err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		got, err := f.st.TokenByHash(f.ctx, want.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "TokenByHash", got, want)
		list, _, err := f.st.ListTokens(f.ctx, store.Page{Limit: 10})
		if err != nil || len(list) != 1 {
			t.Fatalf("ListTokens: %d rows, err %v; want 1", len(list), err)
		}
		checkEqual(t, "ListTokens", list[0], want)
	})
}

func testCreateFirstToken(t *testing.T, newStore newStoreFunc) {
	t.Run("OnlyIntoAnEmptyStore", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		first := draftToken("")
		_, created, err := f.st.CreateFirstToken(f.ctx, first)
		if err != nil || !created {
			t.Fatalf("CreateFirstToken on an empty store = %t, %v; want true", created, err)
		}
		got, err := f.st.TokenByHash(f.ctx, first.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "TokenByHash", got, first)
		second := draftToken("")
		_, created, err = f.st.CreateFirstToken(f.ctx, second)
		if err != nil || created {
			t.Fatalf("CreateFirstToken on a store with a token = %t, %v; want false", created, err)
		}
		if n, err := f.st.CountTokens(f.ctx); err != nil || n != 1 {
			t.Fatalf("CountTokens = %d, %v; want 1", n, err)
		}
	})

	t.Run("ConcurrentCallersOneWinner", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var wg sync.WaitGroup
		wins := make(chan bool, racers)
		for range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, created, err := f.st.CreateFirstToken(f.ctx, draftToken(""))
				if err != nil {
					t.Errorf("CreateFirstToken: %v", err)
				}
				wins <- created
			}()
		}
		wg.Wait()
		close(wins)
		n := 0
		for w := range wins {
			if w {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d concurrent CreateFirstToken calls succeeded, want 1", n)
		}
		if count, err := f.st.CountTokens(f.ctx); err != nil || count != 1 {
			t.Fatalf("CountTokens = %d, %v; want 1", count, err)
		}
	})
}

func testTokenByHash(t *testing.T, newStore newStoreFunc) {
	t.Run("FindsByHash", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		a := f.token(t)
		b := f.token(t, func(tok *store.Token) { tok.RevokedAt = base.Add(sec) })
		for _, want := range []store.Token{a, b} {
			got, err := f.st.TokenByHash(f.ctx, want.Hash)
			if err != nil {
				t.Fatalf("TokenByHash: %v", err)
			}
			checkEqual(t, "TokenByHash", got, want)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tok := f.token(t)
		_, err := f.st.TokenByHash(f.ctx, tok.Hash+"x")
		wantNotFound(t, "TokenByHash", err)
	})
}

func testListTokens(t *testing.T, newStore newStoreFunc) {
	t.Run("Pagination", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var want []string
		for i := range 7 {
			tok := f.token(t, func(tok *store.Token) {
				if i%3 == 0 {
					tok.RevokedAt = base.Add(sec)
				}
			})
			want = append(want, tok.ID)
		}
		checkPages(t, id.Token, listOf(func(p store.Page) ([]store.Token, bool, error) {
			return f.st.ListTokens(f.ctx, p)
		}, tokenID), want)
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		var initial []string
		for range 9 {
			initial = append(initial, f.token(t).ID)
		}
		fence := id.New(id.Token)
		checkPagesUnderInserts(t, listOf(func(p store.Page) ([]store.Token, bool, error) {
			return f.st.ListTokens(f.ctx, p)
		}, tokenID), initial, fence, func() (string, error) {
			tok := draftToken("")
			_, err := f.st.CreateToken(f.ctx, tok)
			return tok.ID, err
		})
	})
}

func testRevokeToken(t *testing.T, newStore newStoreFunc) {
	t.Run("SetsRevokedAtOnce", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tok := f.token(t)
		other := f.token(t)
		want := tok
		want.RevokedAt = base.Add(time.Minute)
		got, err := f.st.RevokeToken(f.ctx, tok.ID, want.RevokedAt)
		if err != nil {
			t.Fatalf("RevokeToken: %v", err)
		}
		checkEqual(t, "RevokeToken's result", got, want)
		got, err = f.st.RevokeToken(f.ctx, tok.ID, base.Add(time.Hour))
		if err != nil {
			t.Fatalf("second RevokeToken: %v", err)
		}
		checkEqual(t, "second RevokeToken's result", got, want)
		stored, err := f.st.TokenByHash(f.ctx, tok.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "stored token", stored, want)
		stored, err = f.st.TokenByHash(f.ctx, other.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "another token", stored, other)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		_, err := f.st.RevokeToken(f.ctx, id.New(id.Token), base)
		wantNotFound(t, "RevokeToken", err)
	})

	t.Run("ConcurrentRevokesAgree", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tok := f.token(t)
		got := make([]store.Token, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			got[i], errs[i] = f.st.RevokeToken(f.ctx, tok.ID, base.Add(time.Duration(i+1)*sec))
		})
		stored, err := f.st.TokenByHash(f.ctx, tok.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		if stored.RevokedAt.IsZero() {
			t.Fatalf("token not revoked")
		}
		for i := range racers {
			if errs[i] != nil {
				t.Errorf("RevokeToken %d: %v", i, errs[i])
				continue
			}
			if !got[i].RevokedAt.Equal(stored.RevokedAt) {
				t.Errorf("RevokeToken %d returned revoked_at %s, stored is %s: the first revocation was overwritten",
					i, fmtTime(got[i].RevokedAt), fmtTime(stored.RevokedAt))
			}
		}
	})
}

func testTouchToken(t *testing.T, newStore newStoreFunc) {
	t.Run("SetsLastUsedAt", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tok := f.token(t)
		other := f.token(t)
		for _, at := range []time.Time{base.Add(time.Minute), base.Add(time.Hour)} {
			if err := f.st.TouchToken(f.ctx, tok.ID, at); err != nil {
				t.Fatalf("TouchToken: %v", err)
			}
			want := tok
			want.LastUsedAt = at
			got, err := f.st.TokenByHash(f.ctx, tok.Hash)
			if err != nil {
				t.Fatalf("TokenByHash: %v", err)
			}
			checkEqual(t, "touched token", got, want)
		}
		got, err := f.st.TokenByHash(f.ctx, other.Hash)
		if err != nil {
			t.Fatalf("TokenByHash: %v", err)
		}
		checkEqual(t, "another token", got, other)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		wantNotFound(t, "TouchToken of a missing token", f.st.TouchToken(f.ctx, id.New(id.Token), base))
	})
}

func testCountTokens(t *testing.T, newStore newStoreFunc) {
	t.Run("CountsRevoked", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		count := func() int {
			t.Helper()
			n, err := f.st.CountTokens(f.ctx)
			if err != nil {
				t.Fatalf("CountTokens: %v", err)
			}
			return n
		}
		if n := count(); n != 0 {
			t.Errorf("CountTokens of an empty store = %d", n)
		}
		f.token(t)
		tok := f.token(t)
		f.token(t, func(tok *store.Token) { tok.RevokedAt = base })
		if _, err := f.st.RevokeToken(f.ctx, tok.ID, base); err != nil {
			t.Fatalf("RevokeToken: %v", err)
		}
		if n := count(); n != 3 {
			t.Errorf("CountTokens = %d, want 3 (revoked ones included)", n)
		}
	})
}

// testReadsAfterWrites: a store may keep tokens and environments it has read in memory
// (sqlrows.ReadCache); a write answered by the store holds for every read that starts
// after it, even while other readers keep the row warm and race with the write.
func testReadsAfterWrites(t *testing.T, newStore newStoreFunc) {
	t.Run("TokenRevocation", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		for round := range 20 {
			tok := store.Token{ID: id.New(id.Token), Name: "t", Role: "admin", Hash: id.New(id.Token), CreatedAt: base}
			if _, err := f.st.CreateToken(f.ctx, tok); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 { // keep the row warm, racing with the revocation
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := f.st.TokenByHash(f.ctx, tok.Hash); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			if _, err := f.st.TokenByHash(f.ctx, tok.Hash); err != nil {
				t.Fatal(err)
			}
			if _, err := f.st.RevokeToken(f.ctx, tok.ID, base.Add(sec)); err != nil {
				t.Fatal(err)
			}
			for range 50 {
				got, err := f.st.TokenByHash(f.ctx, tok.Hash)
				if err != nil || got.RevokedAt.IsZero() {
					t.Fatalf("round %d: a read after the revocation returned %+v, %v", round, got, err)
				}
			}
			close(stop)
			wg.Wait()
		}
	})

	t.Run("Environment", func(t *testing.T) {
		// Also: what a caller does to a returned environment does not reach the store.
		t.Parallel()
		f := setup(t, newStore)
		env := f.env(t, selfHosted, func(e *store.Environment) { e.Metadata = work.Metadata{"k": "v"} })
		got, err := f.st.GetEnvironment(f.ctx, env.ID)
		if err != nil {
			t.Fatal(err)
		}
		got.Metadata["k"] = "changed by a caller"
		got.Config[0] = 'X'
		again, err := f.st.GetEnvironment(f.ctx, env.ID)
		if err != nil || again.Metadata["k"] != "v" || string(again.Config) != string(env.Config) {
			t.Fatalf("environment changed through a returned copy: %+v, %v", again, err)
		}
		if _, err := f.st.UpdateEnvironment(f.ctx, env.ID, func(e *store.Environment) error {
			e.ArchivedAt = base.Add(sec)
			e.Name = "renamed"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if again, err = f.st.GetEnvironment(f.ctx, env.ID); err != nil || again.ArchivedAt.IsZero() || again.Name != "renamed" {
			t.Fatalf("after archive and rename: %+v, %v", again, err)
		}
		if err := f.st.DeleteEnvironment(f.ctx, env.ID); err != nil {
			t.Fatal(err)
		}
		_, err = f.st.GetEnvironment(f.ctx, env.ID)
		wantNotFound(t, "environment after its deletion", err)
	})
}
