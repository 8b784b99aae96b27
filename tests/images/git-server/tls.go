package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certFiles serves the certificate in two PEM files and picks up a new one when the
// files change (a renewed Secret), checking at most every few seconds.
type certFiles struct {
	cert, key string

	mu      sync.Mutex
	current *tls.Certificate
	checked time.Time
	stamp   string
}

func (c *certFiles) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.load()
		},
	}
}

func (c *certFiles) load() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil && time.Since(c.checked) < 5*time.Second {
		return c.current, nil
	}
	c.checked = time.Now()
	stamp, err := modStamp(c.cert, c.key)
	if err != nil {
		return c.orError(err)
	}
	if c.current != nil && stamp == c.stamp {
		return c.current, nil
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return c.orError(err)
	}
	c.current, c.stamp = &pair, stamp
	return c.current, nil
}

// orError keeps serving the last good certificate while the files are being replaced.
func (c *certFiles) orError(err error) (*tls.Certificate, error) {
	if c.current != nil {
		return c.current, nil
	}
	return nil, fmt.Errorf("loading %s and %s: %w", c.cert, c.key, err)
}

func modStamp(paths ...string) (string, error) {
	stamp := ""
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%s:%d:%d;", p, info.Size(), info.ModTime().UnixNano())
	}
	return stamp, nil
}
