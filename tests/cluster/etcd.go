package main

import (
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

type etcdServer struct {
	e   *embed.Etcd
	url string
}

// startEtcd runs etcd in this process, listening on free loopback ports only.
func startEtcd(dataDir string) (*etcdServer, error) {
	// Both chosen while both are held, so they cannot be the same port.
	ports, err := chooseDistinctPorts(2)
	if err != nil {
		return nil, err
	}
	clientPort, peerPort := ports[0], ports[1]
	cfg := embed.NewConfig()
	cfg.Name = "gitwarden-test"
	cfg.Dir = dataDir
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	clientURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd was not ready within 60s")
	}
	return &etcdServer{e: e, url: clientURL.String()}, nil
}

// Close stops etcd; safe to call more than once.
func (s *etcdServer) Close() {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}
