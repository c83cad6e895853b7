package firetower_test

import (
	"testing"

	"github.com/firetower-go/firetower/managertest"
)

// The history and recovery scenarios of the conformance suite on the
// in-process LocalManager (history_local.go).
func TestLocalManagerHistoryConformance(t *testing.T) {
	managertest.RunHistory(t, localCluster())
}
