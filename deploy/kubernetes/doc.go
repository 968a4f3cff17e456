// Package kubernetes holds berth's Kubernetes manifests (the YAML files here) and the
// tests that hold them to the Kubernetes API types, to each other, and to a real berth
// server. It has no code of its own.
package kubernetes
