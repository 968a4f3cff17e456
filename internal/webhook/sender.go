package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-sh/berth/internal/store"
)

// The delivery rule of API.md §9.
const (
	// Timeout bounds one attempt: a 2xx answer within it delivers.
	Timeout = 10 * time.Second
	// FirstRetry is the wait after the first failed attempt; each further failure doubles
	// it, up to MaxRetry, and each wait is jittered by ±20 %.
	FirstRetry = time.Second
	MaxRetry   = time.Hour
	// RetryFor is how long after its creation a delivery is tried: a failure whose next
	// attempt would fall later gives it up.
	RetryFor = 24 * time.Hour
)

// Backoff is the wait after the n-th failed attempt (n ≥ 1): FirstRetry doubled n-1
// times, capped at MaxRetry, times 0.8 + 0.4·r for r in [0, 1), and never above
// MaxRetry.
func Backoff(n int, r float64) time.Duration {
	d := MaxRetry
	if n <= 12 { // 2^12 s is over an hour, and a longer shift overflows
		d = min(FirstRetry<<max(n-1, 0), MaxRetry)
	}
	return min(time.Duration(float64(d)*(0.8+0.4*r)), MaxRetry)
}

// Outcome is what became of one attempt of c, which ended at now with the HTTP status
// (0: no answer) and err (nil for an answer, whatever its status): delivered on a 2xx,
// else retried after Backoff, or given up once the retry would fall more than RetryFor
// after the delivery's creation. r is the jitter's random number, in [0, 1).
func Outcome(c store.Claimed, now time.Time, status int, err error, r float64) store.Attempt {
	a := store.Attempt{DeliveryID: c.ID, Number: c.Attempts, Status: status}
	switch {
	case err != nil:
		a.Error = err.Error()
		if len(a.Error) > maxError {
			a.Error = strings.ToValidUTF8(a.Error[:maxError], "") + "…"
		}
	case status < 200 || status > 299:
		a.Error = fmt.Sprintf("HTTP %d", status)
	default:
		a.DeliveredAt = now
		return a
	}
	if next := now.Add(Backoff(c.Attempts, r)); !next.After(c.CreatedAt.Add(RetryFor)) {
		a.NextAttemptAt = next
	}
	return a
}

// maxError bounds the error kept of a failed attempt.
const maxError = 500

// Store is what the Sender needs of the store.
type Store interface {
	ClaimDeliveries(ctx context.Context, now time.Time, hold time.Duration, limit int) ([]store.Claimed, error)
	RecordAttempt(ctx context.Context, a store.Attempt) (bool, error)
	NextDelivery(ctx context.Context) (time.Time, bool, error)
	CountPendingDeliveries(ctx context.Context) (int, error)
}

// Config configures a Sender.
type Config struct {
	Store Store
	// Now is the clock of claims, signatures and retries; nil means time.Now. Tests pass
	// one they move by hand and call SendDue.
	Now func() time.Time
	// Client sends the requests; nil means a plain http.Client. Each attempt is bounded
	// by Timeout all the same.
	Client *http.Client
	// Timeout bounds one attempt; 0 means the package's Timeout (10 s). A claim holds a
	// delivery for twice as long, so that its attempt has ended, and been recorded, before
	// anyone may claim it again.
	Timeout time.Duration
	// Batch is how many deliveries one round claims and sends at once; 0 means 32.
	Batch int
	// Poll is how often Run looks for due deliveries without being woken (deliveries
	// written by another replica, a claim that a crashed one held); 0 means a second.
	Poll time.Duration
	// Rand is the jitter's source of numbers in [0, 1); nil means math/rand/v2.
	Rand func() float64
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the sender's metrics (berth_webhook_*); nil registers none.
	Registerer prometheus.Registerer
}

// Sender works through the outbox: it claims due deliveries, POSTs each, signed, to its
// webhook's URL, and records the outcome. Several senders (one per replica) may share a
// store: a claim takes a delivery for one of them only (store.Store.ClaimDeliveries).
type Sender struct {
	cfg  Config
	wake chan struct{}

	attempts, failures, giveUps prometheus.Counter
}

// New returns a sender for cfg.
func New(cfg Config) *Sender {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		// A redirect is an answer like any other non-2xx: not followed.
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = Timeout
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 32
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sender{cfg: cfg, wake: make(chan struct{}, 1),
		attempts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_webhook_attempts_total", Help: "Webhook delivery attempts made (each POST sent).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_webhook_failures_total", Help: "Webhook delivery attempts that failed (no 2xx answer within the timeout).",
		}),
		giveUps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_webhook_give_ups_total", Help: "Webhook deliveries given up after failing for 24 hours.",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.attempts, s.failures, s.giveUps,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "berth_webhook_deliveries_pending", Help: "Webhook deliveries neither delivered nor given up yet.",
			}, s.pending))
	}
	return s
}

func (s *Sender) pending() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := s.cfg.Store.CountPendingDeliveries(ctx)
	if err != nil {
		s.cfg.Logger.Warn("count pending webhook deliveries", "err", err)
		return 0
	}
	return float64(n)
}

// Wake tells Run that deliveries were written (it then looks at once). It never blocks.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run sends due deliveries until ctx ends: at once when woken, when the earliest pending
// delivery falls due, and every Poll in any case. It returns once its last round has
// ended (an attempt cut off by ctx is recorded as failed, due again at once).
func (s *Sender) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		n, err := s.SendDue(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.cfg.Logger.Error("webhook deliveries", "err", err)
		}
		wait := s.cfg.Poll
		if n == s.cfg.Batch && err == nil {
			wait = 0 // more may be due
		} else if at, ok, err := s.cfg.Store.NextDelivery(ctx); err == nil && ok {
			// Not sooner than 10 ms: a due delivery that the last round did not get is
			// held by another replica's claim, which moves it on as it commits.
			wait = min(wait, max(at.Sub(s.cfg.Now()), 10*time.Millisecond))
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// SendDue runs one round: it claims up to Batch deliveries due now, sends them at once,
// records each outcome, and returns how many it attempted once all are recorded.
func (s *Sender) SendDue(ctx context.Context) (int, error) {
	claimed, err := s.cfg.Store.ClaimDeliveries(ctx, s.cfg.Now(), 2*s.cfg.Timeout, s.cfg.Batch)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(claimed))
	for i, c := range claimed {
		wg.Go(func() { errs[i] = s.attempt(ctx, c) })
	}
	wg.Wait()
	return len(claimed), errors.Join(errs...)
}

// errInterrupted is the outcome of an attempt cut off because the server is stopping.
var errInterrupted = errors.New("interrupted: the server stopped")

// attempt sends c once and records the outcome.
func (s *Sender) attempt(ctx context.Context, c store.Claimed) error {
	status, err := s.post(ctx, c)
	now := s.cfg.Now()
	var a store.Attempt
	if err != nil && ctx.Err() != nil {
		// Not the receiver's fault: due again at once, on whichever server is up.
		a = store.Attempt{DeliveryID: c.ID, Number: c.Attempts, Error: errInterrupted.Error(), NextAttemptAt: now}
	} else {
		a = Outcome(c, now, status, err, s.cfg.Rand())
	}
	s.attempts.Inc()
	log := s.cfg.Logger.With("delivery_id", c.ID, "webhook_id", c.WebhookID, "attempt", c.Attempts)
	switch {
	case !a.DeliveredAt.IsZero():
		log.Debug("webhook delivered", "status", status)
	case !a.NextAttemptAt.IsZero():
		s.failures.Inc()
		log.Info("webhook delivery failed", "error", a.Error, "next_attempt_at", a.NextAttemptAt)
	default:
		s.failures.Inc()
		s.giveUps.Inc()
		log.Warn("webhook delivery given up", "error", a.Error, "created_at", c.CreatedAt)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	if _, err := s.cfg.Store.RecordAttempt(rctx, a); err != nil {
		return fmt.Errorf("record attempt %d of %s: %w", c.Attempts, c.ID, err)
	}
	return nil
}

// maxAnswer is how much of an answer's body is read (and dropped), so that the
// connection can be reused.
const maxAnswer = 64 << 10

// post sends c and returns the answer's status, or the error that kept it from arriving.
func (s *Sender) post(ctx context.Context, c store.Claimed) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	body := Event(c.Delivery)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "berth-webhook/1")
	req.Header.Set(IDHeader, c.ID)
	req.Header.Set(SignatureHeader, Sign(c.Secret, s.cfg.Now(), body))
	res, err := s.cfg.Client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("no answer within %s", s.cfg.Timeout)
		}
		return 0, err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(res.Body, maxAnswer))
	res.Body.Close()
	if err != nil && res.StatusCode/100 == 2 {
		return res.StatusCode, fmt.Errorf("reading the answer: %w", err)
	}
	return res.StatusCode, nil
}
