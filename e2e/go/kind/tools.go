//go:build tools

// Package tools pins kind, which creates the e2e cluster from weft's node image.
package tools

import _ "sigs.k8s.io/kind"
