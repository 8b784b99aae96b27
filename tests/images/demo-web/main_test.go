package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestGreetingAndProbes(t *testing.T) {
	a := &app{greeting: "hello from git", hostname: "web-1"}
	a.ready.Store(true)
	h := a.routes()
	if code, body := get(t, h, "/"); code != 200 || body != "hello from git (from web-1)\n" {
		t.Fatalf("/ = %d %q", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}
	a.ready.Store(false)
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Fatalf("/readyz while stopping = %d %q", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("/healthz while stopping = %d", code)
	}
	if code, _ := get(t, h, "/nope"); code != 404 {
		t.Fatalf("/nope = %d", code)
	}
}
