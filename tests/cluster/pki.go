package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the file paths of the cluster's own trust material. It is generated
// for every new cluster (nothing secret is ever committed) and kept in DIR, so a
// control plane restarted on the same DIR serves the same certificate and
// accepts the service-account tokens it minted before.
type pki struct {
	caCert      string
	caKey       string // kept to sign a node's credentials (nodepki.go)
	servingCert string
	servingKey  string
	saKey       string
	saPub       string
}

// pkiPaths names the trust material's files in dir.
func pkiPaths(dir string) *pki {
	return &pki{
		caCert:      filepath.Join(dir, "ca.crt"),
		caKey:       filepath.Join(dir, "pki", "ca.key"),
		servingCert: filepath.Join(dir, "pki", "apiserver.crt"),
		servingKey:  filepath.Join(dir, "pki", "apiserver.key"),
		saKey:       filepath.Join(dir, "pki", "sa.key"),
		saPub:       filepath.Join(dir, "pki", "sa.pub"),
	}
}

// loadOrWritePKI reuses the trust material a previous run left in dir when all
// of it is there and parses; otherwise (a fresh DIR, or a partial one) it
// generates everything anew. It reports whether the material was reused.
func loadOrWritePKI(dir string) (*pki, bool, error) {
	p := pkiPaths(dir)
	if err := p.check(); err == nil {
		return p, true, nil
	}
	p, err := writePKI(dir)
	return p, false, err
}

// check verifies that every file exists and holds the PEM block it should,
// and that the serving certificate has not expired.
func (p *pki) check() error {
	for _, f := range []struct{ path, typ string }{
		{p.caCert, "CERTIFICATE"},
		{p.servingCert, "CERTIFICATE"},
		{p.servingKey, "EC PRIVATE KEY"},
		{p.saKey, "RSA PRIVATE KEY"},
		{p.saPub, "PUBLIC KEY"},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return err
		}
		block, _ := pem.Decode(data)
		if block == nil || block.Type != f.typ {
			return fmt.Errorf("%s: no %s PEM block", f.path, f.typ)
		}
		if f.path == p.servingCert {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("%s: %w", f.path, err)
			}
			if time.Now().After(cert.NotAfter) {
				return fmt.Errorf("%s expired at %s", f.path, cert.NotAfter)
			}
		}
	}
	return nil
}

// writePKI creates a CA, a serving certificate for 127.0.0.1/localhost signed by
// it, and an RSA key pair for signing service-account tokens.
func writePKI(dir string) (*pki, error) {
	p := pkiPaths(dir)
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "gitwarden-test-cluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return nil, err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, err
	}
	writes := []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{p.caCert, "CERTIFICATE", caDER, 0o644},
		{p.caKey, "EC PRIVATE KEY", caKeyDER, 0o600},
		{p.servingCert, "CERTIFICATE", srvDER, 0o644},
		{p.servingKey, "EC PRIVATE KEY", srvKeyDER, 0o600},
		{p.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey), 0o600},
		{p.saPub, "PUBLIC KEY", saPubDER, 0o644},
	}
	for _, w := range writes {
		data := pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der})
		if err := os.WriteFile(w.path, data, w.mode); err != nil {
			return nil, fmt.Errorf("writing %s: %w", w.path, err)
		}
	}
	return p, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// randomToken returns a 32-hex-character bearer token.
func randomToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
