package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// nodePKI is the node's trust material, all signed by the cluster's CA
// (ca.crt, whose key pki/ca.key keeps) and written anew on every node start:
// kube-apiserver's serving certificate with the node-facing names, its client
// certificate for the kubelet API, and the node's own credentials.
type nodePKI struct {
	apiServerCert, apiServerKey         string // serving: 127.0.0.1, the host's veth address, the kubernetes ClusterIP
	kubeletClientCert, kubeletClientKey string // kube-apiserver → kubelet (CN kube-apiserver-kubelet-client)
	nodeClientCert, nodeClientKey       string // kubelet → kube-apiserver (system:node:NAME in system:nodes)
	kubeletServingCert, kubeletServKey  string // the kubelet's own HTTPS endpoint on the node IP
	proxyClientCert, proxyClientKey     string // kube-proxy → kube-apiserver (system:kube-proxy)
}

// kubeletClientUser is the user kube-apiserver is to the kubelets.
const kubeletClientUser = "kube-apiserver-kubelet-client"

func writeNodePKI(dir string, pk *pki, n *nodeNet, nodeName string) (*nodePKI, error) {
	caCert, caKey, err := loadCA(pk)
	if err != nil {
		return nil, err
	}
	pkiDir := filepath.Join(dir, "node", "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return nil, err
	}
	path := func(name string) string { return filepath.Join(pkiDir, name) }
	np := &nodePKI{
		apiServerCert: path("apiserver.crt"), apiServerKey: path("apiserver.key"),
		kubeletClientCert: path("apiserver-kubelet-client.crt"), kubeletClientKey: path("apiserver-kubelet-client.key"),
		nodeClientCert: path("kubelet-client.crt"), nodeClientKey: path("kubelet-client.key"),
		kubeletServingCert: path("kubelet-serving.crt"), kubeletServKey: path("kubelet-serving.key"),
		proxyClientCert: path("kube-proxy.crt"), proxyClientKey: path("kube-proxy.key"),
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	certs := []struct {
		cert, key string
		tmpl      *x509.Certificate
		rsa       bool
	}{
		// RSA, as kubeadm issues it: small TLS clients in pods (busybox's wget)
		// offer only RSA signature schemes.
		{np.apiServerCert, np.apiServerKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "kube-apiserver"},
			ExtKeyUsage: server,
			DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), n.hostIP, n.kubernetesServiceIP()},
		}, true},
		{np.kubeletClientCert, np.kubeletClientKey, &x509.Certificate{
			Subject: pkix.Name{CommonName: kubeletClientUser}, ExtKeyUsage: client,
		}, false},
		{np.nodeClientCert, np.nodeClientKey, &x509.Certificate{
			Subject: pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}}, ExtKeyUsage: client,
		}, false},
		{np.kubeletServingCert, np.kubeletServKey, &x509.Certificate{
			Subject: pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}}, ExtKeyUsage: server,
			DNSNames: []string{nodeName}, IPAddresses: []net.IP{n.nodeIP},
		}, false},
		{np.proxyClientCert, np.proxyClientKey, &x509.Certificate{
			Subject: pkix.Name{CommonName: "system:kube-proxy"}, ExtKeyUsage: client,
		}, false},
	}
	for _, c := range certs {
		if err := signLeaf(caCert, caKey, c.tmpl, c.cert, c.key, c.rsa); err != nil {
			return nil, fmt.Errorf("writing %s: %w", c.cert, err)
		}
	}
	return np, nil
}

// loadCA reads the cluster CA's certificate and key. Directories created
// before the key was kept cannot sign node credentials.
func loadCA(pk *pki) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	keyPEM, err := os.ReadFile(pk.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("the cluster CA's key %s is missing (state from before nodes were supported): start over with tests/cluster/down: %w", pk.caKey, err)
	}
	certPEM, err := os.ReadFile(pk.caCert)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s holds no PEM block", pk.caCert, pk.caKey)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// signLeaf issues a certificate for a fresh P-256 (or RSA-2048) key, valid for a year.
func signLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate, certPath, keyPath string, useRSA bool) error {
	var key crypto.Signer
	var keyBlock *pem.Block
	if useRSA {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		key, keyBlock = k, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return err
		}
		key, keyBlock = k, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if useRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(keyBlock), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
