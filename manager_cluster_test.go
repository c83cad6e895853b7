package firetower_test

import (
	"testing"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/managertest"
)

func TestLocalManagerConformance(t *testing.T) {
	managertest.Run(t, managertest.Cluster{
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
