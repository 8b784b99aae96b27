// flux-bench: Flux's own apply engine, driven the way kustomize-controller
// drives it, for gitwarden's `scripts/bench kustomize` (see BENCHMARKS.md).
//
//	flux-bench apply --kubeconfig K --root REPO --path overlays/prod
//
// Render: fluxcd/pkg/kustomize's generator.WriteFile then SecureBuild,
// restricted to the repository root, no remote bases, on a copy of the
// repository (the controller works on an extracted artifact, never on git's
// work tree). Apply: fluxcd/pkg/ssa ResourceManager.ApplyAllStaged with the
// controller's options (owner labels, cleanup of kubectl's managers and
// annotations, exclusion selectors), concurrency 4 (--concurrent-ssa's
// default). No health wait. Prints one JSON line on stdout.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fluxcd/pkg/kustomize"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/normalize"
	ssautil "github.com/fluxcd/pkg/ssa/utils"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const group = "kustomize.toolkit.fluxcd.io"

type result struct {
	RenderSeconds float64 `json:"renderSeconds"`
	ApplySeconds  float64 `json:"applySeconds"`
	Objects       int     `json:"objects"`
	Changed       int     `json:"changed"`
	Unchanged     int     `json:"unchanged"`
	PeakRssMiB    float64 `json:"peakRssMiB"`
}

func main() {
	if len(os.Args) < 2 || os.Args[1] != "apply" {
		fmt.Fprintln(os.Stderr, "usage: flux-bench apply --kubeconfig K [--root REPO] --path DIR [--field-manager kustomize-controller] [--qps -1] [--burst 300] [--concurrency 4]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("apply", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	root := fs.String("root", "", "repository root the build is restricted to (default: --path)")
	path := fs.String("path", "", "the kustomization directory (relative to --root, or absolute inside it)")
	fieldManager := fs.String("field-manager", "kustomize-controller", "server-side apply field manager")
	qps := fs.Float64("qps", -1, "client QPS (kustomize-controller ships 50; negative: no client-side limit)")
	burst := fs.Int("burst", 300, "client burst (kustomize-controller ships 300)")
	concurrency := fs.Int("concurrency", 4, "concurrent server-side applies (kustomize-controller's --concurrent-ssa default)")
	name := fs.String("name", "bench", "the Kustomization's name (owner labels)")
	_ = fs.Parse(os.Args[2:])
	if err := run(*kubeconfig, *root, *path, *fieldManager, *qps, *burst, *concurrency, *name); err != nil {
		fmt.Fprintln(os.Stderr, "flux-bench:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, root, path, fieldManager string, qps float64, burst, concurrency int, name string) error {
	if path == "" {
		return fmt.Errorf("--path is required")
	}
	if root == "" {
		root = path
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	rel := path
	if filepath.IsAbs(path) {
		if rel, err = filepath.Rel(root, path); err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("--path %s is not inside --root %s", path, root)
		}
	}

	// The controller's working copy: the extracted artifact.
	workDir, err := os.MkdirTemp("", "flux-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)
	if err := os.CopyFS(workDir, os.DirFS(root)); err != nil {
		return fmt.Errorf("copying the repository: %w", err)
	}
	_ = os.RemoveAll(filepath.Join(workDir, ".git"))
	dirPath := filepath.Join(workDir, rel)

	// Render, as KustomizationReconciler.generate and .build.
	started := time.Now()
	ks := unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/v1",
		"kind":       "Kustomization",
		"metadata":   map[string]any{"name": name, "namespace": "flux-system"},
		"spec":       map[string]any{"path": rel, "prune": true, "interval": "10m"},
	}}
	if _, err := kustomize.NewGenerator(workDir, ks).WriteFile(dirPath); err != nil {
		return fmt.Errorf("kustomize generate: %w", err)
	}
	m, err := kustomize.SecureBuild(workDir, dirPath, false)
	if err != nil {
		return fmt.Errorf("kustomize build: %w", err)
	}
	for _, res := range m.Resources() {
		if res.GetName() == "" || res.GetKind() == "" || res.GetApiVersion() == "" {
			return fmt.Errorf("failed to decode apiVersion, kind and name from: %v", res.String())
		}
	}
	resources, err := m.AsYaml()
	if err != nil {
		return fmt.Errorf("kustomize build: %w", err)
	}
	objects, err := ssautil.ReadObjects(bytes.NewReader(resources))
	if err != nil {
		return err
	}
	renderSeconds := time.Since(started).Seconds()

	// Apply, as KustomizationReconciler.apply.
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS = float32(qps)
	cfg.Burst = burst
	kubeClient, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	ctx := context.Background()
	started = time.Now()
	manager := ssa.NewResourceManager(kubeClient, nil, ssa.Owner{Field: fieldManager, Group: group})
	manager.SetOwnerLabels(objects, name, "flux-system")
	manager.SetConcurrency(concurrency)
	if err := normalize.UnstructuredList(objects); err != nil {
		return err
	}
	opts := ssa.DefaultApplyOptions()
	opts.ExclusionSelector = map[string]string{group + "/reconcile": "disabled", group + "/ssa": "Ignore"}
	opts.IfNotPresentSelector = map[string]string{group + "/ssa": "IfNotPresent"}
	opts.ForceSelector = map[string]string{group + "/force": "enabled"}
	opts.Cleanup = ssa.ApplyCleanupOptions{
		Annotations: []string{corev1.LastAppliedConfigAnnotation, group + "/checksum", "fluxcd.io/sync-checksum"},
		Labels:      []string{"fluxcd.io/sync-gc-mark"},
		FieldManagers: []ssa.FieldManager{
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationApply},
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: "before-first-apply", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: fieldManager, OperationType: metav1.ManagedFieldsOperationUpdate},
		},
		Exclusions: map[string]string{group + "/ssa": "Merge"},
	}
	changeSet, err := manager.ApplyAllStaged(ctx, objects, opts)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	out := result{
		RenderSeconds: renderSeconds,
		ApplySeconds:  time.Since(started).Seconds(),
		Objects:       len(objects),
		PeakRssMiB:    peakRssMiB(),
	}
	for _, e := range changeSet.Entries {
		switch e.Action {
		case ssa.UnchangedAction, ssa.SkippedAction:
			out.Unchanged++
		default:
			out.Changed++
		}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// peakRssMiB is this process's VmHWM: the kernel's own high-water mark.
func peakRssMiB() float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return kb / 1024
		}
	}
	return 0
}
