// Package id makes and checks berth's resource IDs: a prefix, an underscore and the 32
// lowercase hex digits of a UUIDv7.
//
// IDs made by one process are strictly increasing in creation order, also within one
// millisecond, so "ascending ID order = creation order" holds for everything one server
// creates. google/uuid's NewV7 guarantees this: it keeps the last timestamp and uses the 12
// rand_a bits as a sub-millisecond sequence that it bumps when the clock has not advanced.
package id

import (
	"encoding/hex"
	"strings"

	"github.com/google/uuid"
)

// Prefixes of the resources, as API.md §1 names them.
const (
	Environment = "env"
	Session     = "sess"
	Work        = "work"
	Event       = "evt"
	Token       = "tok"
)

// New returns a fresh ID with the given prefix.
func New(prefix string) string {
	u, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's random source fails, which leaves nothing
		// safe to hand out.
		panic("id: " + err.Error())
	}
	var b [32]byte
	hex.Encode(b[:], u[:])
	return prefix + "_" + string(b[:])
}

// Valid reports whether s is an ID with the given prefix: the prefix, "_" and exactly 32
// lowercase hex digits.
func Valid(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 32 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
