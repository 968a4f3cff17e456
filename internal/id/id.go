// Package id makes and checks berth's resource IDs: a prefix, an underscore and the 32
// lowercase hex digits of a UUIDv7.
//
// IDs are strictly increasing in the order they are made, also within one millisecond
// and also when the clock steps back: a generator remembers the last ID it made and makes
// the next one above it. Since every ID holds the same 128 bits after its prefix, IDs of
// different resources compare by creation order too, once their prefixes are cut.
//
// That a process makes its IDs in order is not enough for readers: a row becomes visible
// when its transaction commits, not when its ID was made. The stores therefore make the IDs
// of the rows they list inside the step that commits them, and raise the generator's floor
// (Observe) to IDs made elsewhere (another process on the same SQLite file, another
// replica of a PostgreSQL database), so that ID order is commit order. See package store.
package id

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync"
	"time"
)

// Prefixes of the resources, as API.md §1 names them.
const (
	Environment = "env"
	Session     = "sess"
	Work        = "work"
	Event       = "evt"
	Token       = "tok"
	// Webhook and Delivery are berth's own (API.md §9).
	Webhook  = "whk"
	Delivery = "whd"
)

// A Generator makes UUIDv7 IDs, each greater than every ID it made or observed before.
// It is safe for concurrent use. The zero value is ready.
type Generator struct {
	mu   sync.Mutex
	last uuid // zero: none yet
	// now is the clock; nil means time.Now. Tests set it.
	now func() time.Time
}

// uuid is a UUID as two big-endian halves, so that comparison and increment are integer
// operations.
type uuid struct{ hi, lo uint64 }

func (u uuid) less(v uuid) bool { return u.hi < v.hi || u.hi == v.hi && u.lo < v.lo }

// The UUIDv7 layout (RFC 9562): 48 bits of Unix milliseconds, the version (0111), 12 bits
// rand_a, the variant (10), 62 bits rand_b. Increments treat rand_a and rand_b as one
// 74-bit counter, leaving the version and variant bits alone; a carry out of it moves the
// milliseconds on.
const (
	versionBits = 0x7 << 12
	randAMask   = 0xfff
	variantBits = 0x2 << 62
	randBMask   = 1<<62 - 1
)

// v7 makes a fresh UUIDv7 for the millisecond ms with random rand_a and rand_b.
func v7(ms int64) uuid {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		// The system's random source has failed, which leaves nothing safe to hand out.
		panic("id: " + err.Error())
	}
	randA := uint64(binary.BigEndian.Uint16(b[:2])) & randAMask
	randB := binary.BigEndian.Uint64(b[2:]) & randBMask
	return uuid{hi: uint64(ms)<<16 | versionBits | randA, lo: variantBits | randB}
}

// next returns the smallest UUIDv7 above u.
func (u uuid) next() uuid {
	if u.lo&randBMask != randBMask {
		u.lo++
		return u
	}
	u.lo = variantBits
	if u.hi&randAMask != randAMask {
		u.hi++
		return u
	}
	ms := u.hi >> 16
	return uuid{hi: (ms+1)<<16 | versionBits, lo: variantBits}
}

func (u uuid) hex() string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], u.hi)
	binary.BigEndian.PutUint64(raw[8:], u.lo)
	var b [32]byte
	hex.Encode(b[:], raw[:])
	return string(b[:])
}

// New returns a fresh ID with the given prefix, greater than every ID g made or observed.
// Within one millisecond, the IDs after the first step up by one from a random start, so
// that they stay unguessable across milliseconds and ordered within one.
func (g *Generator) New(prefix string) string {
	now := time.Now
	if g.now != nil {
		now = g.now
	}
	fresh := v7(now().UnixMilli())
	g.mu.Lock()
	if fresh.hi>>16 > g.last.hi>>16 {
		g.last = fresh // a millisecond after every ID before: start it at random
	} else {
		g.last = g.last.next() // the same millisecond, or the clock is behind: count on
	}
	u := g.last
	g.mu.Unlock()
	return prefix + "_" + u.hex()
}

// Observe raises g's floor to the ID s (of any prefix) if it is greater than every ID g
// made or observed: later IDs of g are above it. An ID that is not one is ignored.
func (g *Generator) Observe(s string) {
	_, rest, ok := strings.Cut(s, "_")
	if !ok || len(rest) != 32 {
		return
	}
	var raw [16]byte
	if _, err := hex.Decode(raw[:], []byte(rest)); err != nil {
		return
	}
	u := uuid{hi: binary.BigEndian.Uint64(raw[:8]), lo: binary.BigEndian.Uint64(raw[8:])}
	g.mu.Lock()
	if g.last.less(u) {
		g.last = u
	}
	g.mu.Unlock()
}

// process is the generator of New.
var process Generator

// New returns a fresh ID with the given prefix from the process's generator: greater than
// every ID the process made before.
func New(prefix string) string { return process.New(prefix) }

// Observe raises the floor of the process's generator (see Generator.Observe).
func Observe(s string) { process.Observe(s) }

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
