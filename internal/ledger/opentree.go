package ledger

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// openTree continues the records' Merkle tree on Open. The last entry of
// the checkpoint log holds the tree's frontier at its size and where its
// last record ends, so only the records after it are read and hashed — a
// few thousand at most after a clean stop or a crash, whatever the size of
// the ledger. Without a usable entry the tree is rebuilt from the first
// record that exists. A ledger without a checkpoint log (new, or written
// before checkpoints existed) gets its instance id and a first checkpoint
// here, before any record is acknowledged.
func (l *Ledger) openTree() error {
	logName := l.cp.logPath
	e, ok, err := lastLogEntry(logName)
	if err != nil {
		return fmt.Errorf("checkpoint log: %w", err)
	}
	if !ok {
		id, err := newInstanceID()
		if err != nil {
			return err
		}
		l.cp.origin = OriginPrefix + id
		if l.tree, err = l.rebuildTree(); err != nil {
			return err
		}
		// The first checkpoint stores the instance id; it is written
		// before Open returns so that no record exists under no id.
		if err := l.cp.write(cpRequest{tree: l.tree.clone(), last: l.last, offset: l.size, boundary: true}); err != nil {
			return fmt.Errorf("first checkpoint: %w", err)
		}
		return nil
	}
	cp, err := ParseCheckpoint([]byte(e.Checkpoint))
	if err != nil {
		return fmt.Errorf("checkpoint log %s: last entry: %w", logName, err)
	}
	if cp.Size != e.Size {
		return fmt.Errorf("checkpoint log %s: last entry says size %d, its checkpoint %d", logName, e.Size, cp.Size)
	}
	if uint64(e.Size) > l.seq {
		return fmt.Errorf("the last checkpoint (in %s) covers %d records but the ledger ends at seq %d: "+
			"records were removed; refusing to write a second history under a signed one "+
			"(run 'proxy ledger verify'; move the ledger and its files aside to start a new one)", logName, e.Size, l.seq)
	}
	l.cp.origin = cp.Origin
	l.cp.written = e.Size
	l.cp.latest.Store(cp)
	if l.tree, err = l.treeFrom(e, cp); err != nil {
		l.log.Warn("ledger: rebuilding the Merkle tree from the first record", "path", l.path, "reason", err)
		if l.tree, err = l.rebuildTree(); err != nil {
			return err
		}
	}
	return nil
}

// treeFrom continues the tree from a checkpoint log entry.
func (l *Ledger) treeFrom(e LogEntry, cp *Checkpoint) (frontier, error) {
	t, err := newFrontier(e.Size, e.Frontier)
	if err != nil {
		return frontier{}, err
	}
	if t.root() != cp.Root {
		return frontier{}, errors.New("the entry's frontier does not hash to its checkpoint's root")
	}
	files, err := Files(l.path)
	if err != nil {
		return frontier{}, err
	}
	start, off, err := locate(files, l.path, e)
	if err != nil {
		return frontier{}, err
	}
	return l.extendTree(t, e.Last, files[start:], off)
}

// locate finds where the records after a log entry begin: the index of
// the file and the offset in it.
func locate(files []string, path string, e LogEntry) (int, int64, error) {
	if e.Size == 0 {
		return 0, 0, nil
	}
	for i, name := range files {
		if name != path {
			last, err := rotatedSeq(path, name)
			if err != nil {
				return 0, 0, err
			}
			if last < uint64(e.Size) {
				continue
			}
			if last == uint64(e.Size) {
				return i + 1, 0, nil
			}
		}
		if e.Offset <= 0 {
			return 0, 0, fmt.Errorf("record %d is inside %s but the entry has no offset", e.Size, name)
		}
		if err := checkLineAt(name, e.Offset, uint64(e.Size), e.Last); err != nil {
			return 0, 0, err
		}
		return i, e.Offset, nil
	}
	return 0, 0, fmt.Errorf("no file holds record %d", e.Size)
}

// checkLineAt checks that the line ending at off in name is record seq
// with chain hash last.
func checkLineAt(name string, off int64, seq uint64, last string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	line, end, err := lastLine(f, off)
	if err != nil {
		return fmt.Errorf("%s at %d: %w", name, off, err)
	}
	if end != off || line == nil {
		return fmt.Errorf("%s: no line ends at %d", name, off)
	}
	if got, err := parseSeq(line); err != nil || got != seq || hashLine(line) != last {
		return fmt.Errorf("%s: the line ending at %d is not record %d of the checkpoint", name, off, seq)
	}
	return nil
}

// rotatedSeq is the seq in a rotated file's name.
func rotatedSeq(path, name string) (uint64, error) {
	suffix, ok := strings.CutPrefix(filepath.Base(name), filepath.Base(path)+".")
	if !ok {
		return 0, fmt.Errorf("%s is not a rotated file of %s", name, path)
	}
	return strconv.ParseUint(suffix, 10, 64)
}

// rebuildTree hashes every record that exists. When the oldest files are
// gone, the tree before the first remaining record comes from the
// checkpoint log entry of that size (every rotation writes one).
func (l *Ledger) rebuildTree() (frontier, error) {
	files, err := Files(l.path)
	if err != nil {
		return frontier{}, err
	}
	first, err := firstRecord(files)
	if err != nil {
		return frontier{}, err
	}
	if first == nil || first.seq == 1 {
		return l.extendTree(frontier{}, "", files, 0)
	}
	entries, err := ReadCheckpointLog(l.cp.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return frontier{}, fmt.Errorf("checkpoint log: %w", err)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if uint64(e.Size) != first.seq-1 || e.Last != first.prev {
			continue
		}
		t, err := newFrontier(e.Size, e.Frontier)
		if err != nil {
			continue
		}
		return l.extendTree(t, e.Last, files, 0)
	}
	return frontier{}, fmt.Errorf("the oldest file starts at seq %d, and no checkpoint holds the tree of the %d records before it: "+
		"the Merkle tree cannot be continued (run 'proxy ledger verify')", first.seq, first.seq-1)
}

type firstRec struct {
	seq  uint64
	prev string
}

// firstRecord reads the first record of the first file that has one.
func firstRecord(files []string) (*firstRec, error) {
	w := &walker{files: files}
	defer w.close()
	p, line, complete, tooLong, err := w.next()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !complete || tooLong {
		return nil, fmt.Errorf("%s:%d: not a complete record", p.file, p.line)
	}
	seq, prev, err := parseChain(line)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", p.file, p.line, err)
	}
	return &firstRec{seq, prev}, nil
}

// extendTree adds the records of files (the first read from off) to t,
// checking that they follow on — seq by one, prev the hash of the line
// before — and that they end at the ledger's head.
func (l *Ledger) extendTree(t frontier, last string, files []string, off int64) (frontier, error) {
	w := &walker{files: files, offset: off}
	defer w.close()
	for {
		p, line, complete, tooLong, err := w.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return frontier{}, err
		}
		if !complete || tooLong {
			return frontier{}, fmt.Errorf("%s:%d: not a complete record", p.file, p.line)
		}
		seq, prev, err := parseChain(line)
		if err != nil {
			return frontier{}, fmt.Errorf("%s:%d: %w", p.file, p.line, err)
		}
		if seq != uint64(t.n)+1 || prev != last {
			return frontier{}, fmt.Errorf("%s:%d: seq %d does not follow on from seq %d (run 'proxy ledger verify')", p.file, p.line, seq, t.n)
		}
		last = hashLine(line)
		t.add(leafHash(line), nil)
	}
	if uint64(t.n) != l.seq || last != l.last {
		return frontier{}, fmt.Errorf("the records end at seq %d, the ledger's head is seq %d", t.n, l.seq)
	}
	return t, nil
}
