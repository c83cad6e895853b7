package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/firetower-go/firetower/grpcapi"
	pb "github.com/firetower-go/firetower/grpcapi/firetowerpb"
	"github.com/firetower-go/firetower/httpapi"
)

// TestBatchReservedTopicSendsNothing: a batch with a reserved topic in the
// middle is refused before anything goes out.
func TestBatchReservedTopicSendsNothing(t *testing.T) {
	e := newEnv(t, grpcapi.Config{}, nil)
	sub := e.dial("sub", nil)
	sub.subscribe("/t")
	for _, msgs := range [][]*pb.PublishRequest{
		{{Topic: "/t", Data: []byte("1")}, {Topic: "$firetower/control", Data: []byte("2")}, {Topic: "/t", Data: []byte("3")}},
		{{Topic: "/t", Data: []byte("1")}, {Topics: []string{"/t", "$firetower/stats"}, Data: []byte("2")}},
	} {
		_, err := e.api.PublishBatch(e.ctx(), &pb.PublishBatchRequest{Messages: msgs})
		wantStatus(t, err, codes.PermissionDenied, "forbidden")
		if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
			t.Errorf("refused batch had an effect: the subscriber received %s", leaked)
		}
	}
	_, err := e.api.Publish(e.ctx(), &pb.PublishRequest{Topics: []string{"/t", "$firetower/control"}, Data: []byte("1")})
	wantStatus(t, err, codes.PermissionDenied, "forbidden")
	if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
		t.Errorf("refused publish had an effect: %s", leaked)
	}
}

// TestBatchCountsTopics: each topic of each message counts toward
// MaxBatch.
func TestBatchCountsTopics(t *testing.T) {
	e := newEnv(t, grpcapi.Config{MaxBatch: 3}, nil)
	sub := e.dial("sub", nil)
	sub.subscribe("/t")
	for _, msgs := range [][]*pb.PublishRequest{
		{{Topics: []string{"/t", "/a", "/b", "/c"}, Data: []byte("1")}},
		{{Topics: []string{"/t", "/a"}, Data: []byte("1")}, {Topic: "/t", Topics: []string{"/b"}, Data: []byte("2")}},
	} {
		_, err := e.api.PublishBatch(e.ctx(), &pb.PublishBatchRequest{Messages: msgs})
		wantStatus(t, err, codes.InvalidArgument, "bad_request")
		if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
			t.Errorf("refused batch had an effect: the subscriber received %s", leaked)
		}
	}
	_, err := e.api.Publish(e.ctx(), &pb.PublishRequest{Topic: "/t", Topics: []string{"/a", "/b", "/c"}, Data: []byte("1")})
	wantStatus(t, err, codes.InvalidArgument, "bad_request")
	res, err := e.api.PublishBatch(e.ctx(), &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{
		{Topics: []string{"/t", "/a"}, Data: []byte("1")}, {Topic: "/t", Data: []byte("2")},
	}})
	if err != nil || res.GetPublished() != 3 {
		t.Fatalf("a batch of exactly 3 publishes: %v, %v", res, err)
	}
	sub.expect("/t", "1")
	sub.expect("/t", "2")
}

// TestWrongKeysRateLimited: with a Guard, past its burst of wrong keys a
// client gets RESOURCE_EXHAUSTED whatever it sends, the right key
// included; calls without a key are not counted.
func TestWrongKeysRateLimited(t *testing.T) {
	const key = "s3cret-key"
	g := httpapi.NewGuard(httpapi.GuardConfig{APIKey: key, FailedKeyBurst: 3, FailedKeyEvery: time.Hour})
	e := newEnv(t, grpcapi.Config{APIKey: key, Guard: g}, nil)
	call := func(kv ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if kv != nil {
			ctx = metadata.AppendToOutgoingContext(ctx, kv...)
		}
		_, err := e.api.Publish(ctx, &pb.PublishRequest{Topic: "/t", Data: []byte(`"x"`)})
		return err
	}
	for range 5 {
		wantStatus(t, call(), codes.Unauthenticated, "unauthorized")
	}
	for range 3 {
		wantStatus(t, call("x-api-key", "guess"), codes.Unauthenticated, "unauthorized")
	}
	wantStatus(t, call("authorization", "Bearer guess"), codes.ResourceExhausted, "too_many_attempts")
	wantStatus(t, call("x-api-key", key), codes.ResourceExhausted, "too_many_attempts")

	// Another server sharing nothing: the key works.
	other := newEnv(t, grpcapi.Config{APIKey: key, Guard: httpapi.NewGuard(httpapi.GuardConfig{APIKey: key})}, nil)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
	if _, err := other.api.Publish(ctx, &pb.PublishRequest{Topic: "/t", Data: []byte("1")}); err != nil {
		t.Fatalf("the right key on a fresh Guard: %v", err)
	}
}
