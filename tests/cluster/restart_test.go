package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A restart on the same DIR must find the trust material of the first start,
// byte for byte: kubeconfigs name the CA, and minted tokens need the same keys.
func TestLoadOrWritePKIReusesWhatAPreviousStartWrote(t *testing.T) {
	dir := t.TempDir()
	first, reused, err := loadOrWritePKI(dir)
	if err != nil || reused {
		t.Fatalf("fresh dir: reused=%v err=%v", reused, err)
	}
	before := readAll(t, first)
	second, reused, err := loadOrWritePKI(dir)
	if err != nil || !reused {
		t.Fatalf("second start: reused=%v err=%v", reused, err)
	}
	if after := readAll(t, second); !bytes.Equal(before, after) {
		t.Fatal("the trust material changed on restart")
	}
}

// A DIR with part of the material (a start that died while writing it) gets
// all of it anew rather than a mix that does not fit together.
func TestLoadOrWritePKIRegeneratesIncompleteMaterial(t *testing.T) {
	dir := t.TempDir()
	first, _, err := loadOrWritePKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	before := readAll(t, first)
	if err := os.Remove(first.saPub); err != nil {
		t.Fatal(err)
	}
	second, reused, err := loadOrWritePKI(dir)
	if err != nil || reused {
		t.Fatalf("incomplete dir: reused=%v err=%v", reused, err)
	}
	if bytes.Equal(before, readAll(t, second)) {
		t.Fatal("incomplete material was not regenerated")
	}
}

func TestWriteTokenFileKeepsTheTokensOfKnownUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.csv")
	first := identities()
	if err := writeTokenFile(path, first); err != nil {
		t.Fatal(err)
	}
	second := identities()
	if err := writeTokenFile(path, second); err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if first[i].token == "" || first[i].token != second[i].token {
			t.Fatalf("%s: token %q became %q", first[i].user, first[i].token, second[i].token)
		}
	}
}

func TestRememberedPortPrefersTheRequestThenTheRecordedPort(t *testing.T) {
	dir := t.TempDir()
	if got := rememberedPort(dir, 0); got != 0 {
		t.Fatalf("fresh dir: %d, want 0 (a free port)", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "port"), []byte("34567\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := rememberedPort(dir, 0); got != 34567 {
		t.Fatalf("recorded port: %d, want 34567", got)
	}
	if got := rememberedPort(dir, 40000); got != 40000 {
		t.Fatalf("requested port: %d, want 40000", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "port"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := rememberedPort(dir, 0); got != 0 {
		t.Fatalf("unreadable record: %d, want 0", got)
	}
}

func readAll(t *testing.T, p *pki) []byte {
	t.Helper()
	var all []byte
	for _, f := range []string{p.caCert, p.servingCert, p.servingKey, p.saKey, p.saPub} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, data...)
	}
	return all
}
