package firetower

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestCapRowsFitsTheBound(t *testing.T) {
	var rows []TopicCount
	for i := range 50000 {
		rows = append(rows, TopicCount{Topic: fmt.Sprintf("room/%07d<&>\"", i), Count: int64(1 << 40)})
	}
	kept := capRows(rows, maxAnswerBytes)
	if len(kept) == 0 || len(kept) == len(rows) {
		t.Fatalf("kept %d of %d rows", len(kept), len(rows))
	}
	b, err := json.Marshal(&ctlMsg{Op: opAnswer, Req: 1 << 60, From: 65535, Rows: kept})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxAnswerBytes+1024 {
		t.Fatalf("answer of %d bytes, over the %d bound", len(b), maxAnswerBytes)
	}
	if got := capRows(rows[:3], maxAnswerBytes); len(got) != 3 {
		t.Fatalf("small list cut to %d", len(got))
	}
}
