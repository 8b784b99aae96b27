package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// apiServerListen is where kube-apiserver serves and what it advertises.
type apiServerListen struct {
	address                 string // bind and advertise
	servingCert, servingKey string
	serviceRange            string
	// endpointReconciler keeps Service default/kubernetes pointing at address;
	// "none" on loopback, which cannot be a Service endpoint.
	endpointReconciler string
}

// loopbackListen is the control plane without a node: loopback only.
func loopbackListen(pk *pki) apiServerListen {
	return apiServerListen{
		address:            "127.0.0.1",
		servingCert:        pk.servingCert,
		servingKey:         pk.servingKey,
		serviceRange:       "10.96.0.0/16",
		endpointReconciler: "none",
	}
}

// The Node authorizer and NodeRestriction confine a node's credentials to its
// own Node and the objects its pods use, as on a real cluster; with no node they
// change nothing.
func apiServerArgs(dir string, port int, etcdURL string, pk *pki, tokenFile string, l apiServerListen) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + l.address,
		"--advertise-address=" + l.address,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + dir + "/pki",
		"--tls-cert-file=" + l.servingCert,
		"--tls-private-key-file=" + l.servingKey,
		"--client-ca-file=" + pk.caCert,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-signing-key-file=" + pk.saKey,
		"--service-account-key-file=" + pk.saPub,
		"--service-cluster-ip-range=" + l.serviceRange,
		"--endpoint-reconciler-type=" + l.endpointReconciler,
		"--allow-privileged=true",
		"--profiling=false",
		"--v=0",
	}
}

// nodeListen is the control plane of a cluster with a node: kube-apiserver on
// the host's end of the node's veth, the only host address pods can reach, and
// the endpoint of Service default/kubernetes.
func nodeListen(n *nodeNet, np *nodePKI) apiServerListen {
	return apiServerListen{
		address:            n.hostIP.String(),
		servingCert:        np.apiServerCert,
		servingKey:         np.apiServerKey,
		serviceRange:       n.serviceCIDR.String(),
		endpointReconciler: "lease",
	}
}

// nodeAPIServerArgs: kube-apiserver reaches the kubelet API (logs, exec,
// port-forward) on the node IP with its own client certificate and verifies
// the kubelet's serving certificate; webhooks behind Services are called at
// their endpoints' pod IPs (the host has no route to ClusterIPs).
func nodeAPIServerArgs(pk *pki, np *nodePKI) []string {
	return []string{
		"--kubelet-client-certificate=" + np.kubeletClientCert,
		"--kubelet-client-key=" + np.kubeletClientKey,
		"--kubelet-certificate-authority=" + pk.caCert,
		"--kubelet-preferred-address-types=InternalIP",
		"--enable-aggregator-routing=true",
	}
}

// admissionArgs points kube-apiserver at an AdmissionConfiguration file. The
// ManifestBasedAdmissionControlConfig gate (alpha in 1.36, beta and on by
// default in 1.37) is named explicitly so the file's staticManifestsDir works
// on either version.
func admissionArgs(file string) []string {
	return []string{
		"--admission-control-config-file=" + file,
		"--feature-gates=ManifestBasedAdmissionControlConfig=true",
	}
}

// startAPIServer runs kube-apiserver's own command in a goroutine; the channel
// receives its result when it stops.
func startAPIServer(args []string) <-chan error {
	done := make(chan error, 1)
	cmd := apiserverapp.NewAPIServerCommand()
	cmd.SetArgs(args)
	go func() { done <- cmd.Execute() }()
	return done
}

// adminRESTConfig is how the harness talks to kube-apiserver as admin.
func adminRESTConfig(server, caFile, token string) *rest.Config {
	return &rest.Config{Host: server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}, QPS: 50, Burst: 100}
}

// waitForAPIServer polls /readyz as admin until it answers ok.
func waitForAPIServer(ctx context.Context, server, caFile, token string, apiDone <-chan error) (*kubernetes.Clientset, error) {
	cs, err := kubernetes.NewForConfig(adminRESTConfig(server, caFile, token))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-apiDone:
			return nil, fmt.Errorf("kube-apiserver exited during start-up: %v", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return cs, nil
		}
		last = err
	}
	return nil, fmt.Errorf("kube-apiserver not ready within 3 minutes: %v", last)
}

// bindClusterAdmins gives the human test users full rights through RBAC, as a
// real cluster's administrators would have. A binding that exists (a restart on
// the same DIR) is left alone without a write: an admission webhook enforcing
// since this start may refuse admin's writes.
func bindClusterAdmins(ctx context.Context, cs *kubernetes.Clientset, ids []*identity) error {
	for _, id := range ids {
		if !id.bindClusterAdmin {
			continue
		}
		name := "test-cluster-admin-" + id.user
		if _, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); err == nil {
			continue
		}
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: id.user}},
		}
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("binding cluster-admin to %s: %w", id.user, err)
		}
	}
	return nil
}

// bindKubeletClient lets kube-apiserver use the kubelet API (logs, exec,
// port-forward): the kubelet asks the API server whether this user may, as
// kubeadm sets it up.
func bindKubeletClient(ctx context.Context, cs *kubernetes.Clientset) error {
	name := "test-cluster:" + kubeletClientUser
	if _, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); err == nil {
		return nil
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: kubeletClientUser}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding system:kubelet-api-admin to %s: %w", kubeletClientUser, err)
	}
	return nil
}

// waitForDefaultNamespace waits for namespace default and its default service
// account: the latter proves the controller-manager is writing.
func waitForDefaultNamespace(ctx context.Context, cs *kubernetes.Clientset) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		_, nsErr := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		_, saErr := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if nsErr == nil && saErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("namespace default or its default service account did not appear within 2 minutes")
}

// controllers are the kube-controller-manager loops the tests rely on: enough for
// namespaces to finalize, owners to cascade, service accounts and their tokens to
// exist, and Deployments to produce ReplicaSets.
var controllers = "namespace-controller,garbage-collector-controller,serviceaccount-controller," +
	"serviceaccount-token-controller,root-ca-certificate-publisher-controller,deployment-controller," +
	"replicaset-controller,statefulset-controller,daemonset-controller,job-controller," +
	"clusterrole-aggregation-controller"

// nodeControllers are added when pods run: the Node loses its not-ready taint
// once Ready (and gets it back if the kubelet stops reporting), Services get
// endpoints (kube-proxy routes to them), orphaned pods are collected, claims
// bind to the node's local volumes (and are protected while in use),
// PodDisruptionBudgets are kept, CronJobs run, finished Jobs expire.
var nodeControllers = ",node-lifecycle-controller,endpoints-controller,endpointslice-controller," +
	"endpointslice-mirroring-controller,pod-garbage-collector-controller," +
	"persistentvolume-binder-controller,persistentvolume-protection-controller," +
	"persistentvolumeclaim-protection-controller,disruption-controller,cronjob-controller," +
	"ttl-after-finished-controller"

// runControllerManager runs kube-controller-manager in this process. Its cobra
// command would install a second signal handler, so the same steps run here directly.
func runControllerManager(ctx context.Context, kubeconfig string, pk *pki, controllers string) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	fss := s.Flags(kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	s.ParsedFlags = &fss
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range fss.FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + pk.saKey,
		"--root-ca-file=" + pk.caCert,
		"--controllers=" + controllers,
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-gc-syncs=5",
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kube-controller-manager flags: %w", err)
	}
	c, err := s.Config(ctx, kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	if err != nil {
		return fmt.Errorf("kube-controller-manager config: %w", err)
	}
	return kcmapp.Run(ctx, c.Complete())
}
