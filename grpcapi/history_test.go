package grpcapi_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/grpcapi"
	pb "github.com/firetower-go/firetower/grpcapi/firetowerpb"
)

// historyAPI serves the push service of a Tower keeping history for the
// topics under "h/".
func historyAPI(t *testing.T) pb.PushServiceClient {
	t.Helper()
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithHistory(10, time.Hour, "h/"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	g := grpcapi.New(tw, grpcapi.Config{}).NewGRPCServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		g.GracefulStop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tw.Shutdown(ctx)
	})
	return pb.NewPushServiceClient(cc)
}

func TestPublishReturnsPositionsAndHistory(t *testing.T) {
	api := historyAPI(t)
	ctx := context.Background()
	var last *pb.TopicPosition
	for i, d := range []string{`1`, `2`, `3`} {
		res, err := api.Publish(ctx, &pb.PublishRequest{Topics: []string{"h/1", "plain"}, Data: []byte(d)})
		if err != nil {
			t.Fatal(err)
		}
		ps := res.GetPositions()
		if len(ps) != 1 || ps[0].GetTopic() != "h/1" || ps[0].GetOffset() != uint64(i+1) || ps[0].GetEpoch() == "" {
			t.Fatalf("publish %d: positions %v, want h/1 at %d only", i+1, ps, i+1)
		}
		if last != nil && ps[0].GetEpoch() != last.GetEpoch() {
			t.Fatalf("epoch changed between publishes: %v then %v", last, ps[0])
		}
		last = ps[0]
	}

	r, err := api.History(ctx, &pb.HistoryRequest{Topic: "h/1", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetOffset() != 3 || r.GetEpoch() != last.GetEpoch() || len(r.GetPublications()) != 2 ||
		r.GetPublications()[0].GetOffset() != 2 || string(r.GetPublications()[1].GetData()) != "3" {
		t.Fatalf("History limit 2: %v", r)
	}
	r, err = api.History(ctx, &pb.HistoryRequest{Topic: "h/1", Since: &pb.Position{Offset: 1, Epoch: last.GetEpoch()}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.GetRecovered() || len(r.GetPublications()) != 2 || r.GetPublications()[0].GetOffset() != 2 {
		t.Fatalf("History since 1: %v", r)
	}
	r, err = api.History(ctx, &pb.HistoryRequest{Topic: "h/1", Since: &pb.Position{Offset: 1, Epoch: "other"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetRecovered() || len(r.GetPublications()) != 0 || r.GetOffset() != 3 {
		t.Fatalf("History since another epoch: %v", r)
	}

	for _, c := range []struct {
		req  *pb.HistoryRequest
		code codes.Code
		why  string
	}{
		{&pb.HistoryRequest{Topic: "plain"}, codes.NotFound, "not_found"},
		{&pb.HistoryRequest{Topic: "h/1", Limit: -1}, codes.InvalidArgument, "bad_request"},
		{&pb.HistoryRequest{Topic: "bad topic"}, codes.InvalidArgument, "invalid_topic"},
	} {
		_, err := api.History(ctx, c.req)
		if status.Code(err) != c.code || grpcapi.ErrorCode(err) != c.why {
			t.Errorf("History(%v): %v, want %v %s", c.req, err, c.code, c.why)
		}
	}
}
