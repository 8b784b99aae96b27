// Command git-server serves git repositories over git's smart HTTP protocol, for the
// gitwarden agent to sync from inside a test cluster (image
// gitwarden.local/git-server:dev). It is git's own server, `git http-backend`, behind a
// small net/http front: plain http, or https with a certificate from files (a mounted
// kubernetes.io/tls Secret, re-read when it changes), optional basic auth (gitwarden's
// token auth arrives as basic auth), and push enabled, so a test or the demo loads a
// repository with a plain `git push`. Pushing to a repository that does not exist
// creates it (bare, default branch main).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	root := flag.String("root", "/srv/git", "directory holding the repositories (NAME.git, bare)")
	tlsCert := flag.String("tls-cert", "", "PEM certificate (chain) to serve https with; with --tls-key")
	tlsKey := flag.String("tls-key", "", "PEM private key for --tls-cert")
	authFile := flag.String("auth-file", "", "file of USER:PASSWORD lines; when set, every request needs one of them (basic auth)")
	readOnly := flag.Bool("read-only", false, "refuse pushes")
	flag.Parse()
	if (*tlsCert == "") != (*tlsKey == "") {
		log.Fatal("git-server: --tls-cert and --tls-key go together")
	}
	backend, err := httpBackend()
	if err != nil {
		log.Fatalf("git-server: %v", err)
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		log.Fatalf("git-server: %v", err)
	}
	handler := &server{root: *root, backend: backend, authFile: *authFile, push: !*readOnly}
	srv := &http.Server{Addr: *listen, Handler: logRequests(handler), ReadHeaderTimeout: 30 * time.Second}
	scheme := "http"
	if *tlsCert != "" {
		certs := &certFiles{cert: *tlsCert, key: *tlsKey}
		if _, err := certs.load(); err != nil {
			log.Fatalf("git-server: %v", err)
		}
		srv.TLSConfig = certs.tlsConfig()
		scheme = "https"
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	log.Printf("git-server: serving %s on %s://%s (push %s, auth %s)", *root, scheme, *listen, onOff(!*readOnly), onOff(*authFile != ""))
	if scheme == "https" {
		err = srv.ListenAndServeTLS("", "")
	} else {
		err = srv.ListenAndServe()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("git-server: %v", err)
	}
}

// httpBackend finds git's CGI program, which lives in git's exec path, not on PATH.
func httpBackend() (string, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return "", fmt.Errorf("git not found: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return "", fmt.Errorf("git-http-backend not found: %v", err)
	}
	return backend, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// logRequests logs one line per request: what a test reads when a fetch fails.
func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if r.URL.Path != "/healthz" {
			log.Printf("%s %s %s %d %s", r.RemoteAddr, r.Method, r.URL.RequestURI(), rec.status, time.Since(start).Round(time.Millisecond))
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush keeps streaming working through the recorder (git sends progress).
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
