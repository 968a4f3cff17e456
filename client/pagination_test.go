package client_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/berth-sh/berth/client"
)

func TestListPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	var want []string
	for i := range 7 {
		want = append(want, b.selfHosted(fmt.Sprintf("env-%d", i)).ID)
	}

	page, err := b.admin.ListEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Limit: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(envIDs(page.Data), want[:3]) || !page.HasMore || page.NextPage != want[2] ||
		page.FirstID != want[0] || page.LastID != want[2] {
		t.Fatalf("first page %+v", page)
	}
	page, err = b.admin.ListEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Limit: 3, Page: page.NextPage}})
	if err != nil || !slices.Equal(envIDs(page.Data), want[3:6]) {
		t.Fatalf("second page %+v %v", page, err)
	}
	page, err = b.admin.ListEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Limit: 2, BeforeID: want[4]}})
	if err != nil || !slices.Equal(envIDs(page.Data), want[2:4]) || !page.HasMore || page.NextPage != "" {
		t.Fatalf("before_id page %+v %v", page, err)
	}
	_, err = b.admin.ListEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Page: want[0], AfterID: want[1]}})
	apiError(t, err, 400, "invalid_request_error")

	// All… follows next_page: 7 items in 3 requests.
	before := b.requests.Load()
	var got []string
	for env, err := range b.admin.AllEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Limit: 3}}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, env.ID)
	}
	if !slices.Equal(got, want) || b.requests.Load()-before != 3 {
		t.Fatalf("all: %v in %d requests, want %v in 3", got, b.requests.Load()-before, want)
	}

	// From an after_id on, and stopping early: no request beyond the page in hand.
	before = b.requests.Load()
	got = nil
	for env, err := range b.admin.AllEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Limit: 2, AfterID: want[0]}}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, env.ID)
		if len(got) == 3 {
			break
		}
	}
	if !slices.Equal(got, want[1:4]) || b.requests.Load()-before != 2 {
		t.Fatalf("early break: %v in %d requests", got, b.requests.Load()-before)
	}

	// A failing request ends the iteration with its error, once.
	var yields []error
	for _, err := range b.admin.AllEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Limit: -1}}) {
		yields = append(yields, err)
	}
	if len(yields) != 1 {
		t.Fatalf("%d yields from a bad list, want 1", len(yields))
	}
	apiError(t, yields[0], 400, "invalid_request_error")
}

func TestAllOfEveryList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	env := b.selfHosted("byoc")
	var sessions []string
	for range 5 {
		sessions = append(sessions, b.session(env.ID).ID)
	}
	if _, err := b.admin.SendEvents(ctx, sessions[0], []any{
		client.UserMessage("1"), client.UserMessage("2"), client.UserMessage("3"), client.UserMessage("4"),
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := b.admin.CreateToken(ctx, client.CreateTokenParams{Name: "t", Role: client.RoleMember}); err != nil {
			t.Fatal(err)
		}
	}
	lp := client.ListParams{Limit: 2}

	n, err := count(b.admin.AllSessions(ctx, client.ListSessionsParams{ListParams: lp, EnvironmentID: env.ID}))
	if err != nil || n != 5 {
		t.Errorf("sessions: %d %v", n, err)
	}
	n, err = count(b.admin.AllWork(ctx, env.ID, client.ListWorkParams{ListParams: lp, States: []client.State{client.StateQueued}}))
	if err != nil || n != 5 {
		t.Errorf("work: %d %v", n, err)
	}
	n, err = count(b.admin.AllEvents(ctx, sessions[0], client.ListEventsParams{ListParams: lp}))
	if err != nil || n != 4 {
		t.Errorf("events: %d %v", n, err)
	}
	n, err = count(b.admin.AllTokens(ctx, lp))
	if err != nil || n != 3 { // the bundle's admin token and two more
		t.Errorf("tokens: %d %v", n, err)
	}
}

func count[T any](seq func(func(T, error) bool)) (int, error) {
	n := 0
	for _, err := range seq {
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
