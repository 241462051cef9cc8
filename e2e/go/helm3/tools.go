//go:build tools

// Package tools pins the Helm 3 command the chart tests run.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
