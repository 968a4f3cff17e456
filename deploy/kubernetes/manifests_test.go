package kubernetes

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// KEDA's resources, with the fields these manifests use. Decoding is strict, so a field
// not declared here fails as a typo would: add it here (from KEDA's CRDs) to use it.
type kedaTrigger struct {
	Type              string            `json:"type"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
}

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name       string `json:"name"`
			Kind       string `json:"kind,omitempty"`
			APIVersion string `json:"apiVersion,omitempty"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32        `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32        `json:"maxReplicaCount,omitempty"`
		PollingInterval *int32        `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32        `json:"cooldownPeriod,omitempty"`
		Triggers        []kedaTrigger `json:"triggers"`
	} `json:"spec"`
}

type scaledJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobTargetRef               batchv1.JobSpec `json:"jobTargetRef"`
		PollingInterval            *int32          `json:"pollingInterval,omitempty"`
		MaxReplicaCount            *int32          `json:"maxReplicaCount,omitempty"`
		SuccessfulJobsHistoryLimit *int32          `json:"successfulJobsHistoryLimit,omitempty"`
		FailedJobsHistoryLimit     *int32          `json:"failedJobsHistoryLimit,omitempty"`
		ScalingStrategy            struct {
			Strategy string `json:"strategy,omitempty"`
		} `json:"scalingStrategy"`
		Triggers []kedaTrigger `json:"triggers"`
	} `json:"spec"`
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// newObject is the Go type of a manifest's apiVersion and kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "keda.sh/v1alpha1 ScaledObject":
		return &scaledObject{}, nil
	case "keda.sh/v1alpha1 ScaledJob":
		return &scaledJob{}, nil
	case "keda.sh/v1alpha1 TriggerAuthentication":
		return &triggerAuthentication{}, nil
	}
	return nil, fmt.Errorf("no Go type for %s %s", apiVersion, kind)
}

// decode decodes one YAML document strictly: an unknown or repeated field is an error.
func decode(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	return obj, nil
}

// manifests decodes every document of every YAML file here, by file.
func manifests(t *testing.T) map[string][]any {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string][]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			obj, err := decode([]byte(doc))
			if err != nil {
				t.Errorf("%s, document %d: %v", f, i+1, err)
				continue
			}
			out[f] = append(out[f], obj)
		}
	}
	return out
}

// only returns the one object of type T in file.
func only[T any](t *testing.T, all map[string][]any, file string) T {
	t.Helper()
	var found []T
	for _, o := range all[file] {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%s has %d %T, want 1", file, len(found), zero)
	}
	return found[0]
}

// The strict decoding catches a typo: a misspelt field of a Kubernetes type and of a
// KEDA type.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicass: 3\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      terminationGracePeriodSecond: 3\n",
		"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  minReplicas: 0\n",
		"apiVersion: keda.sh/v1alpha1\nkind: ScaledJob\nmetadata: {name: x}\nspec:\n  jobTargetRef:\n    parallelismm: 1\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {}\nspec: {}\n",
	} {
		if _, err := decode([]byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

// containerEnv is a container's env by name.
func containerEnv(c corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

// checkWorkerPod checks a worker pod: berth worker as its command, the token from the
// berth-worker Secret, BERTH_WORKER_ID from the pod's name, and a grace period that
// covers the drain timeout, the kill grace and a margin.
func checkWorkerPod(t *testing.T, where string, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", where, len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Command) < 2 || c.Command[0] != "berth" || c.Command[1] != "worker" {
		t.Errorf("%s: command %q, want berth worker …", where, c.Command)
	}
	env := containerEnv(c)
	if ref := env["BERTH_TOKEN"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "berth-worker" || ref.SecretKeyRef.Key != "token" {
		t.Errorf("%s: BERTH_TOKEN is not the berth-worker Secret's token", where)
	}
	if ref := env["BERTH_WORKER_ID"].ValueFrom; ref == nil || ref.FieldRef == nil || ref.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("%s: BERTH_WORKER_ID is not the pod's name", where)
	}
	if u := env["BERTH_URL"].Value; u != "http://berth:8080" {
		t.Errorf("%s: BERTH_URL %q, want the Service, http://berth:8080", where, u)
	}
	drain, err1 := time.ParseDuration(env["BERTH_DRAIN_TIMEOUT"].Value)
	grace, err2 := time.ParseDuration(env["BERTH_KILL_GRACE"].Value)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: BERTH_DRAIN_TIMEOUT and BERTH_KILL_GRACE: %v, %v", where, err1, err2)
	}
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatalf("%s: no terminationGracePeriodSeconds", where)
	}
	period := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if margin := period - drain - grace; margin < 10*time.Second {
		t.Errorf("%s: terminationGracePeriodSeconds %v leaves %v after the %v drain and %v kill grace, want at least 10s", where, period, margin, drain, grace)
	}
	return c
}

// The manifests decode strictly into the Kubernetes API types (and KEDA's fields), and
// fit together: the Service selects both forms of the server, the worker's probes reach
// its --health-addr, the KEDA triggers scale the worker Deployment with the worker
// token's Secret, and the ScaledJob's workers exit when idle.
func TestManifests(t *testing.T) {
	all := manifests(t)
	want := []string{"keda-scaledjob.yaml", "keda-scaledobject.yaml", "server-postgres.yaml", "server-sqlite.yaml", "service.yaml", "worker-secret.yaml", "worker.yaml"}
	var got []string
	for f := range all {
		got = append(got, f)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("manifests %v, want %v", got, want)
	}

	svc := only[*corev1.Service](t, all, "service.yaml")
	if svc.Name != "berth" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("service.yaml: want Service berth, port 8080 to the pods' port http: %+v", svc.Spec)
	}
	checkServer := func(file string, pod corev1.PodTemplateSpec) corev1.Container {
		t.Helper()
		for k, v := range svc.Spec.Selector {
			if pod.Labels[k] != v {
				t.Errorf("%s: the Service's selector %v does not select its pods %v", file, svc.Spec.Selector, pod.Labels)
			}
		}
		c := pod.Spec.Containers[0]
		if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
			t.Errorf("%s: ports %+v, want http 8080 (the image's)", file, c.Ports)
		}
		if c.Command != nil || c.Args != nil {
			t.Errorf("%s: command %q args %q, want the image's own (berth serve --addr 0.0.0.0:8080 --data-dir /data)", file, c.Command, c.Args)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: want liveness /healthz and readiness /readyz", file)
		}
		sc := pod.Spec.SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.FSGroup == nil || *sc.FSGroup != 65532 {
			t.Errorf("%s: want runAsUser and fsGroup 65532, the image's user", file)
		}
		mounted := false
		for _, m := range c.VolumeMounts {
			mounted = mounted || (m.Name == "data" && m.MountPath == "/data")
		}
		if !mounted {
			t.Errorf("%s: no volume data at /data", file)
		}
		return c
	}

	sts := only[*appsv1.StatefulSet](t, all, "server-sqlite.yaml")
	checkServer("server-sqlite.yaml", sts.Spec.Template)
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Errorf("server-sqlite.yaml: want exactly 1 replica (SQLite has one writer)")
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("server-sqlite.yaml: want a volume claim template named data")
	}

	pg := only[*appsv1.Deployment](t, all, "server-postgres.yaml")
	c := checkServer("server-postgres.yaml", pg.Spec.Template)
	if pg.Spec.Replicas == nil || *pg.Spec.Replicas < 2 {
		t.Errorf("server-postgres.yaml: want several replicas")
	}
	if ref := containerEnv(c)["BERTH_DATABASE_URL"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "berth-database" || ref.SecretKeyRef.Key != "url" {
		t.Errorf("server-postgres.yaml: BERTH_DATABASE_URL is not the berth-database Secret's url")
	}

	secret := only[*corev1.Secret](t, all, "worker-secret.yaml")
	if secret.Name != "berth-worker" || secret.StringData["token"] == "" {
		t.Errorf("worker-secret.yaml: want Secret berth-worker with a token")
	}

	wd := only[*appsv1.Deployment](t, all, "worker.yaml")
	wc := checkWorkerPod(t, "worker.yaml", wd.Spec.Template.Spec)
	_, port, err := net.SplitHostPort(containerEnv(wc)["BERTH_HEALTH_ADDR"].Value)
	if err != nil {
		t.Fatalf("worker.yaml: BERTH_HEALTH_ADDR: %v", err)
	}
	if len(wc.Ports) != 1 || fmt.Sprint(wc.Ports[0].ContainerPort) != port || wc.Ports[0].Name != "health" {
		t.Errorf("worker.yaml: ports %+v, want health on %s", wc.Ports, port)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": wc.LivenessProbe, "readiness": wc.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.StrVal != "health" {
			t.Errorf("worker.yaml: the %s probe is not GET /healthz on the health port", name)
		}
	}

	auth := only[*triggerAuthentication](t, all, "keda-scaledobject.yaml")
	if len(auth.Spec.SecretTargetRef) != 1 || auth.Spec.SecretTargetRef[0] != (struct {
		Parameter string `json:"parameter"`
		Name      string `json:"name"`
		Key       string `json:"key"`
	}{"token", "berth-worker", "token"}) {
		t.Errorf("keda-scaledobject.yaml: the TriggerAuthentication does not give the berth-worker Secret's token as the bearer token: %+v", auth.Spec)
	}
	checkTrigger := func(file string, tr []kedaTrigger) {
		t.Helper()
		if len(tr) != 1 || tr[0].Type != "metrics-api" || tr[0].AuthenticationRef == nil || tr[0].AuthenticationRef.Name != auth.Name {
			t.Fatalf("%s: want one metrics-api trigger authenticated by %s: %+v", file, auth.Name, tr)
		}
		md := tr[0].Metadata
		if md["authMode"] != "bearer" || md["valueLocation"] != "depth" || md["targetValue"] == "" {
			t.Errorf("%s: trigger metadata %v: want authMode bearer, valueLocation depth, a targetValue", file, md)
		}
		u, err := url.Parse(md["url"])
		if err != nil || u.Hostname() != svc.Name+".berth.svc.cluster.local" || u.Port() != "8080" ||
			!regexp.MustCompile(`^/api/v1/cloud/environments/[^/]+/work/stats$`).MatchString(u.Path) {
			t.Errorf("%s: trigger url %q, want the Service's /api/v1/cloud/environments/{id}/work/stats", file, md["url"])
		}
	}
	so := only[*scaledObject](t, all, "keda-scaledobject.yaml")
	if so.Spec.ScaleTargetRef.Name != wd.Name {
		t.Errorf("keda-scaledobject.yaml scales %q, want the worker Deployment %q", so.Spec.ScaleTargetRef.Name, wd.Name)
	}
	checkTrigger("keda-scaledobject.yaml", so.Spec.Triggers)
	if so.Spec.Triggers[0].Metadata["targetValue"] != containerEnv(wc)["BERTH_CAPACITY"].Value {
		t.Errorf("keda-scaledobject.yaml: targetValue %s, want the workers' capacity %s", so.Spec.Triggers[0].Metadata["targetValue"], containerEnv(wc)["BERTH_CAPACITY"].Value)
	}

	sj := only[*scaledJob](t, all, "keda-scaledjob.yaml")
	checkTrigger("keda-scaledjob.yaml", sj.Spec.Triggers)
	pod := sj.Spec.JobTargetRef.Template.Spec
	jc := checkWorkerPod(t, "keda-scaledjob.yaml", pod)
	if !slices.Contains(jc.Command, "--exit-when-idle") {
		t.Errorf("keda-scaledjob.yaml: command %q, want --exit-when-idle", jc.Command)
	}
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("keda-scaledjob.yaml: restartPolicy %q, want Never", pod.RestartPolicy)
	}
	if sj.Spec.ScalingStrategy.Strategy != "accurate" {
		t.Errorf("keda-scaledjob.yaml: scaling strategy %q, want accurate (depth does not count running items)", sj.Spec.ScalingStrategy.Strategy)
	}
}

// The README's Deploying section points to every manifest here, and to nothing here
// that does not exist.
func TestREADMEPointsToTheManifests(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := bytes.Cut(b, []byte("\n## Deploying\n"))
	if !ok {
		t.Fatal("README has no Deploying section")
	}
	if i := bytes.Index(section, []byte("\n## ")); i >= 0 {
		section = section[:i]
	}
	linked := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(deploy/kubernetes/([^)\s]+\.yaml)\)`).FindAllSubmatch(section, -1) {
		linked[string(m[1])] = true
		if _, err := os.Stat(string(m[1])); err != nil {
			t.Errorf("README links deploy/kubernetes/%s: %v", m[1], err)
		}
	}
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if !linked[f] {
			t.Errorf("README's Deploying section does not link deploy/kubernetes/%s", f)
		}
	}
}
