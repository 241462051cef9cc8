//go:build tools

// Package tools pins the Helm 4 command the chart tests run.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
