//go:build tools

// Package tools pins the etcd server weft's local cluster runs.
package tools

import _ "go.etcd.io/etcd/server/v3"
