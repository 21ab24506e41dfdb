package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestLogAppend: records get consecutive indexes, also when two store
// handles on one database (a server and the admin CLI) append at once, and
// read back in order.
func TestLogAppend(t *testing.T) { forEachEngine(t, testLogAppend) }

func testLogAppend(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	a := eng.DB
	b, err := eng.open()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.AppendLogRecord(ctx, nil); err == nil {
		t.Error("an empty record was appended")
	}
	var wg sync.WaitGroup
	for i, s := range []*DB{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if _, err := s.AppendLogRecord(ctx, []byte(fmt.Sprintf("%d-%d", i, j))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	all, err := a.LogRecords(ctx, 0, 100)
	if err != nil || len(all) != 40 {
		t.Fatalf("%d records, %v", len(all), err)
	}
	tail, _ := b.LogRecords(ctx, 38, 10)
	if len(tail) != 2 || string(tail[1]) != string(all[39]) {
		t.Errorf("tail %q", tail)
	}
}
