// Command demo-web is the demo application gitwarden deploys from git
// (examples/app, image gitwarden.local/demo-web:dev): an HTTP server on :8080 that
// answers with the greeting its ConfigMap sets (environment variable `greeting`, as
// examples/app/web.yaml's envFrom passes it), /healthz for liveness and /readyz for
// readiness, which turns unready as soon as the pod is asked to stop.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := envOr("LISTEN", ":8080")
	app := &app{greeting: envOr("greeting", envOr("GREETING", "hello")), debug: os.Getenv("log-level") == "debug"}
	app.hostname, _ = os.Hostname()
	app.ready.Store(true)
	srv := &http.Server{Addr: addr, Handler: app.routes(), ReadHeaderTimeout: 10 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		// Unready first, so endpoints drop the pod before connections are refused.
		app.ready.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	log.Printf("demo-web: listening on %s, greeting %q", addr, app.greeting)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("demo-web: %v", err)
	}
}

type app struct {
	greeting string
	hostname string
	debug    bool
	ready    atomic.Bool
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if a.debug {
			log.Printf("%s %s %s", r.RemoteAddr, r.Method, r.URL.Path)
		}
		fmt.Fprintf(w, "%s (from %s)\n", a.greeting, a.hostname)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

func envOr(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return fallback
}
