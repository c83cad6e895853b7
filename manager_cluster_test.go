package firetower_test

import (
	"testing"

	"github.com/firetower-go/firetower/managertest"
)

func TestLocalManagerConformance(t *testing.T) {
	managertest.Run(t, localCluster())
}
