// Package webhook delivers berth's webhooks (API.md §9): the body and signature of a
// delivery, the retry rule, and the Sender that works through the durable outbox the
// store keeps (store.Store.ClaimDeliveries).
//
// # Verifying a delivery
//
// Every delivery is a POST with the headers
//
//	Content-Type: application/json
//	Berth-Webhook-Id: whd_…
//	Berth-Signature: t=<unix seconds>,v1=<hex of HMAC-SHA256(secret, "<t>.<body>")>
//
// where secret is the webhook's whsec_… secret, as POST …/webhooks showed it, used as
// it is (the whole string, prefix included), and body is the request body byte for byte.
// A receiver computes the HMAC itself, compares it in constant time with v1, checks that
// t is recent (so that a recorded request cannot be replayed days later), and dedupes on
// Berth-Webhook-Id (a delivery may arrive more than once). [Verify] does all but the
// dedupe:
//
//	body, _ := io.ReadAll(r.Body)
//	if err := webhook.Verify(secret, r.Header.Get("Berth-Signature"), body, 5*time.Minute); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The headers of a delivery.
const (
	SignatureHeader = "Berth-Signature"
	IDHeader        = "Berth-Webhook-Id"
)

// EventType is the type of every delivery's event.
const EventType = "work.queued"

// SecretPrefix starts every webhook secret.
const SecretPrefix = "whsec_"

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewSecret returns a fresh webhook secret: "whsec_" and 43 random base62 characters
// (about 256 bits).
func NewSecret() string {
	b := []byte(SecretPrefix)
	max := big.NewInt(int64(len(base62)))
	for range 43 {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("webhook secret: " + err.Error())
		}
		b = append(b, base62[n.Int64()])
	}
	return string(b)
}

// Event is the JSON body of a delivery, which is also its "event" in the delivery log:
// {"id","type":"work.queued","created_at","environment_id","work_id","session_id"}. It is
// made from the stored delivery alone, so that every attempt sends the same bytes.
func Event(d store.Delivery) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, d.ID)
	b = append(b, `,"type":"`+EventType+`","created_at":"`...)
	b = work.Timestamp(d.CreatedAt).AppendFormat(b, work.TimeLayout)
	b = append(b, `","environment_id":`...)
	b = strconv.AppendQuote(b, d.EnvironmentID)
	b = append(b, `,"work_id":`...)
	b = strconv.AppendQuote(b, d.WorkID)
	b = append(b, `,"session_id":`...)
	b = strconv.AppendQuote(b, d.SessionID)
	return append(b, '}')
}

// Sign returns the Berth-Signature header of body sent at t with secret:
// t=<unix seconds>,v1=<hex of HMAC-SHA256(secret, "<t>.<body>")>.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("webhook: malformed Berth-Signature header")
	ErrSignature = errors.New("webhook: signature does not match")
	ErrTooOld    = errors.New("webhook: signature timestamp outside the tolerance")
)

// Verify checks a delivery as its receiver got it: header is its Berth-Signature, body its
// bytes, secret the webhook's secret. The signature must match (compared in constant time)
// and its timestamp be within tolerance of the receiver's clock, either way; a tolerance
// of 0 or less skips the time check. A header may carry several v1 values (none is sent
// today, but a receiver that accepts any of them can survive a change of secret).
func Verify(secret, header string, body []byte, tolerance time.Duration) error {
	return VerifyAt(secret, header, body, tolerance, time.Now())
}

// VerifyAt is Verify with the receiver's clock reading now.
func VerifyAt(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil {
				return ErrMalformed
			}
			sigs = append(sigs, sig)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	want := mac(secret, ts, body)
	ok := false
	for _, sig := range sigs {
		ok = hmac.Equal(sig, want) || ok
	}
	if !ok {
		return ErrSignature
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: signed at %s, %s from now", ErrTooOld, time.Unix(sec, 0).UTC().Format(time.RFC3339), d.Round(time.Second))
		}
	}
	return nil
}
