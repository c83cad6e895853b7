package firetower_test

import (
	"testing"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/managertest"
)

// The history and recovery scenarios of the conformance suite on the
// in-process LocalManager (history_local.go).
func TestLocalManagerHistoryConformance(t *testing.T) {
	managertest.RunHistory(t, managertest.Cluster{
		Name:  "local",
		Exact: true,
		Managers: func(t *testing.T, n int) []firetower.Manager {
			m := firetower.NewLocalManager()
			out := make([]firetower.Manager, n)
			for i := range out {
				out[i] = m
			}
			return out
		},
	})
}
