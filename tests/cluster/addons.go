package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// The node's add-ons, as a local cluster has them: cluster DNS and storage.
// They are applied (server-side, by fieldManager addonManager) once the Node
// is Ready, before the cluster is reported ready, so a test can rely on
// Service names resolving and a PVC without a class binding.

//go:embed addons/coredns.yaml
var coreDNSManifest string

//go:embed addons/storage.yaml
var storageManifest string

// addonManager is the field manager of everything the harness applies.
const addonManager = "gitwarden-cluster"

// clusterDomain is the kubelet's and CoreDNS's DNS domain.
const clusterDomain = "cluster.local"

// localVolumes is how many local PersistentVolumes the node offers, and
// localVolumeSize what each claims to hold (the host's disk, unenforced).
const (
	localVolumes    = 12
	localVolumeSize = "5Gi"
)

// installAddons applies the DNS and storage add-ons and waits until CoreDNS
// answers (its Deployment is Available).
func installAddons(ctx context.Context, cfg *rest.Config, cs *kubernetes.Clientset, n *nodeNet, p nodePaths) error {
	start := time.Now()
	manifest := strings.ReplaceAll(coreDNSManifest, "${CLUSTER_DNS}", n.clusterDNSIP().String())
	if err := applyManifest(ctx, cfg, cs, manifest+"\n---\n"+storageManifest); err != nil {
		return fmt.Errorf("applying the node's add-ons: %w", err)
	}
	if err := createLocalVolumes(ctx, cs, p); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err == nil && deploymentAvailable(d) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CoreDNS not Available after 2m (is its image imported? see kubectl -n kube-system describe pods -l k8s-app=kube-dns)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	logf("node: cluster DNS at %s and %d local volumes after %.1fs", n.clusterDNSIP(), localVolumes, time.Since(start).Seconds())
	return nil
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return d.Status.ObservedGeneration >= d.Generation
		}
	}
	return false
}

// applyManifest server-side applies every document of a multi-document YAML.
func applyManifest(ctx context.Context, cfg *rest.Config, cs *kubernetes.Clientset, manifest string) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	groups, err := restmapper.GetAPIGroupResources(cs.Discovery())
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(manifest)), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if ns := obj.GetNamespace(); ns != "" {
			ri = dyn.Resource(mapping.Resource).Namespace(ns)
		}
		body, err := obj.MarshalJSON()
		if err != nil {
			return err
		}
		force := true
		if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: addonManager, Force: &force}); err != nil {
			return fmt.Errorf("applying %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
}

// createLocalVolumes makes the node's local PersistentVolumes, each a
// directory under DIR/node/volumes that outlives node restarts (as a disk
// would); existing ones are kept, with their data.
func createLocalVolumes(ctx context.Context, cs *kubernetes.Clientset, p nodePaths) error {
	size := resource.MustParse(localVolumeSize)
	for i := 1; i <= localVolumes; i++ {
		name := fmt.Sprintf("local-pv-%02d", i)
		path := filepath.Join(p.volumes, name)
		if err := os.MkdirAll(path, 0o755); err != nil {
			return err
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"gitwarden.test/node-volume": "true"}},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				StorageClassName:              "standard",
				PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path}},
				NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
						Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{nodeName},
					}}}},
				}},
			},
		}
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{FieldManager: addonManager}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating PersistentVolume %s: %w", name, err)
		}
	}
	return nil
}
