package main

import (
	"bufio"
	"crypto/subtle"
	"log"
	"net/http"
	"os"
	"strings"
)

// authenticate checks basic auth against the auth file, read at every request so a
// rotated Secret applies at once. It returns the user name.
func (s *server) authenticate(r *http.Request) (string, bool) {
	user, password, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	f, err := os.Open(s.authFile)
	if err != nil {
		log.Printf("git-server: auth file: %v", err)
		return "", false
	}
	defer f.Close()
	given := []byte(user + ":" + password)
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(line), given) == 1 {
			return user, true
		}
	}
	return "", false
}
