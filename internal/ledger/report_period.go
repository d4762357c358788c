package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Start returns the time of the first record in files (in chain order): where the records, and so
// any report over them, begin. A report for a person gives its period as dates, and "from the
// start of the records" is not one. Zero, with no error, when there is no record.
func Start(files []string) (time.Time, error) {
	for _, name := range files {
		t, err := firstTime(name)
		if err != nil {
			return time.Time{}, err
		}
		if !t.IsZero() {
			return t, nil
		}
	}
	return time.Time{}, nil
}

func firstTime(name string) (time.Time, error) {
	f, err := os.Open(name)
	if err != nil {
		return time.Time{}, fmt.Errorf("ledger start: %w", err)
	}
	defer f.Close()
	lr := newLineReader(f)
	for n := 1; ; n++ {
		line, complete, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return time.Time{}, nil
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("ledger start: %s: %w", name, err)
		}
		if !complete {
			return time.Time{}, nil // a torn last line was never acknowledged
		}
		if tooLong {
			return time.Time{}, fmt.Errorf("ledger start: %s:%d: line longer than %d bytes", name, n, maxLine)
		}
		var r struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return time.Time{}, fmt.Errorf("ledger start: %s:%d: %w", name, n, err)
		}
		if !r.Time.IsZero() {
			return r.Time, nil
		}
	}
}
