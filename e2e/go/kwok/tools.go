//go:build tools

// Package tools pins the kwok command weft's local cluster runs.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
