package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Scan calls fn with every record of files, in chain order, one at a time: memory stays bounded
// by one line however long the ledger (Query keeps what it selects; the documents that sum up a
// whole period must not). A torn last line of a file is skipped (it was never acknowledged); any
// other line that does not parse is an error naming its file and line. fn's record is reused for
// the next line: copy what it keeps. An error from fn stops the scan and is returned.
func Scan(files []string, fn func(*Record) error) error {
	var r Record
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		lr := newLineReader(f)
		for n := 1; ; n++ {
			line, complete, tooLong, err := lr.next()
			if errors.Is(err, io.EOF) || (err == nil && !complete) {
				break
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("ledger: %s: %w", name, err)
			}
			if tooLong {
				f.Close()
				return fmt.Errorf("ledger: %s:%d: line longer than %d bytes", name, n, maxLine)
			}
			r = Record{}
			if err := json.Unmarshal(line, &r); err != nil {
				f.Close()
				return fmt.Errorf("ledger: %s:%d: %w", name, n, err)
			}
			if err := fn(&r); err != nil {
				f.Close()
				return err
			}
		}
		f.Close()
	}
	return nil
}
