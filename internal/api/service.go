package api

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berth-sh/berth/internal/openapi"
)

type statusJSON struct {
	Status string `json:"status"`
}

// healthz: the process is up.
func (s *Server) healthz(c *call) error {
	return c.json(200, statusJSON{"ok"})
}

// readyz: the storage answers within two seconds.
func (s *Server) readyz(c *call) error {
	ctx, cancel := context.WithTimeout(c.r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		c.log.Warn("readyz: storage unreachable", "err", err)
		return errUnavailable
	}
	return c.json(200, statusJSON{"ok"})
}

func (s *Server) serveMetrics(c *call) error {
	promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}).ServeHTTP(c.w, c.r)
	return nil
}

func (s *Server) openAPI(c *call) error {
	writeRaw(c.w, http.StatusOK, openapi.Document())
	return nil
}
