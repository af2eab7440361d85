// Command oracle reads pods (v1, one JSON document a line) on stdin and prints, one JSON
// line per pod, what Kubernetes v1.37 makes of each: the pod as the apiserver hands it to
// a validating admission webhook on CREATE, and the effective requests and limits that
// component-helpers computes for it. nodelimits' tests compare their own answers with it
// (tests/unit/test_oracle.py): the upstream functions are the oracle, not a re-reading of
// them.
//
// What it runs, in the apiserver's order for a Pod CREATE:
//  1. decode: the apiserver's own JSON serializer into v1.Pod (quantities trimmed and
//     parsed by resource.Quantity.UnmarshalJSON), then the scheme's defaulting
//     (SetObjectDefaults_Pod: SetDefaults_ResourceList rounds every quantity up to milli,
//     a container limit without a request becomes the request), then conversion to the
//     internal type, as legacyscheme's UniversalDecoder does;
//  2. podStrategy.PrepareForCreate (DefaultPodLevelResources under v1.37's default
//     gates: PodLevelResources and PodLevelResourcesFixDefaulting on);
//  3. podStrategy.Validate: a pod that fails it never reaches a webhook ("invalid");
//  4. conversion back to v1 (what the webhook receives), then resource.PodRequests with
//     the options kube-scheduler's fit plugin uses (pod-level resources honoured) and
//     resource.PodLimits with the default options.
//
// Output fields: "decodeError" (string) if the line is not a pod the apiserver would
// decode; otherwise "invalid" (validation messages, empty when valid), "pod" (the v1 pod
// as the webhook sees it), "requests" and "limits" (resource name -> exact decimal in base
// units, e.g. "4.001" cores, "1073741824" bytes).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	api "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	podstore "k8s.io/kubernetes/pkg/registry/core/pod"
)

type result struct {
	DecodeError string            `json:"decodeError,omitempty"`
	Invalid     []string          `json:"invalid,omitempty"`
	Pod         *v1.Pod           `json:"pod,omitempty"`
	Requests    map[string]string `json:"requests,omitempty"`
	Limits      map[string]string `json:"limits,omitempty"`
}

var podGVK = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}

func exact(list v1.ResourceList) map[string]string {
	out := make(map[string]string, len(list))
	for name, q := range list {
		out[string(name)] = q.AsDec().String()
	}
	return out
}

func one(line []byte) (res result) {
	defer func() {
		if r := recover(); r != nil { // an upstream panic is a finding, not a crash of the run
			res = result{DecodeError: fmt.Sprintf("panic: %v", r)}
		}
	}()
	decoder := legacyscheme.Codecs.UniversalDecoder(api.SchemeGroupVersion)
	obj, _, err := decoder.Decode(line, &podGVK, nil)
	if err != nil {
		return result{DecodeError: err.Error()}
	}
	pod, ok := obj.(*api.Pod)
	if !ok {
		return result{DecodeError: fmt.Sprintf("decoded a %T, not a Pod", obj)}
	}
	if pod.Namespace == "" {
		pod.Namespace = metav1.NamespaceDefault
	}
	if pod.Name == "" {
		pod.Name = "oracle"
	}
	ctx := genericapirequest.WithNamespace(context.Background(), pod.Namespace)
	podstore.Strategy.PrepareForCreate(ctx, pod)
	for _, e := range podstore.Strategy.Validate(ctx, pod) {
		res.Invalid = append(res.Invalid, e.Error())
	}
	out := &v1.Pod{}
	if err := legacyscheme.Scheme.Convert(pod, out, nil); err != nil {
		return result{DecodeError: "convert to v1: " + err.Error()}
	}
	out.Status = v1.PodStatus{} // set by PrepareForCreate; nodelimits reads the spec
	res.Pod = out
	// Each on its own copy: PodLimits adds the overhead into a pod-level limit in place when
	// that Quantity is backed by an inf.Dec (the map entry shares the pointer), which would
	// corrupt the pod printed as the webhook's view.
	res.Requests = exact(resourcehelper.PodRequests(out.DeepCopy(), resourcehelper.PodResourcesOptions{
		SkipPodLevelResources: false, // kube-scheduler: !EnablePodLevelResources, on in v1.37
	}))
	res.Limits = exact(resourcehelper.PodLimits(out.DeepCopy(), resourcehelper.PodResourcesOptions{}))
	return res
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	for in.Scan() {
		if err := enc.Encode(one(in.Bytes())); err != nil {
			fmt.Fprintln(os.Stderr, "oracle:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "oracle: reading stdin:", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "oracle:", err)
		os.Exit(1)
	}
}
