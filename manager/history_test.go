package manager_test

import (
	"testing"

	"github.com/firetower-go/firetower/managertest"
)

// The history and recovery scenarios of the conformance suite on manager
// nodes: one, and two (the gateways keep both in sync and use the first).
func TestOneManagerHistoryConformance(t *testing.T) { managertest.RunHistory(t, nodeCluster(1, false)) }
func TestTwoManagersHistoryConformance(t *testing.T) {
	managertest.RunHistory(t, nodeCluster(2, false))
}
