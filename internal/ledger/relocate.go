package ledger

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// checkPath reports errMoved when the ledger's path no longer names the
// file whose identity is fi (nil: nothing to compare).
func (l *Ledger) checkPath(fi os.FileInfo) error {
	if fi == nil {
		return nil
	}
	pfi, err := os.Stat(l.path)
	if err != nil {
		return fmt.Errorf("%w: %v", errMoved, err)
	}
	if !os.SameFile(fi, pfi) {
		return errMoved
	}
	return nil
}

// watch runs every watchEvery in the writer goroutine. It notices, even
// while no record arrives, that the path no longer names the open file,
// and then recovers at once rather than at the next record: a sidecar that
// answers not ready may get no record to trigger it. It also makes the
// time-based checkpoints.
func (l *Ledger) watch() {
	if l.failed == nil && l.f != nil {
		if err := l.checkPath(l.fi); err != nil {
			l.lost(err)
		}
	}
	if l.failed != nil && l.moved && len(l.retry) == 0 {
		_ = l.writable() // failures are logged and counted there
	}
	if l.cp != nil && l.failed == nil && l.seq > l.cpSeq && time.Since(l.cpTime) >= l.cpInterval {
		l.postCheckpoint(false)
	}
}

// lost enters the failed state because the path no longer names the open
// file (err wraps errMoved): the records written but not yet acknowledged
// are written again once relocate has started a new file.
func (l *Ledger) lost(err error) {
	l.waitSync() // the in-flight fsync, if any, settles first
	if l.failed != nil {
		return
	}
	l.unacked = l.wsize - l.size
	l.moved = true
	l.fail(fmt.Errorf("ledger %s: %w", l.path, err))
	l.lose(l.pending)
	clear(l.pending)
	l.pending = l.pending[:0]
}

func replacedName(path string) string {
	return fmt.Sprintf("%s.replaced-%d", path, time.Now().UnixNano())
}

// maybeCheckpoint asks for a checkpoint when CheckpointEvery records
// became durable since the last one.
func (l *Ledger) maybeCheckpoint() {
	if l.cp != nil && l.seq-l.cpSeq >= l.cpEvery {
		l.postCheckpoint(false)
	}
}

// postCheckpoint hands the durable tree to the checkpointer. offset is
// where the last durable record ends in the current file; 0 when the
// current file holds no durable record, and then that record ended the
// rotated file named after its seq.
func (l *Ledger) postCheckpoint(boundary bool) {
	l.cp.post(cpRequest{tree: l.tree.clone(), last: l.last, offset: l.size, boundary: boundary})
	l.cpSeq, l.cpTime = l.seq, time.Now()
}

// relocate starts a new file when the ledger's path no longer names the
// file the writer has open: it was deleted, renamed or replaced under it.
// Every acknowledged record is in that open file, so nothing is lost yet:
// its bytes up to the last acknowledged record are copied to the name a
// rotation would have given it (path.<seq>), where Files finds them and the
// chain and the tree run on into the new file; the records written after
// it are written again by the retry, as after any failure. Whatever the
// path names now was not written by this writer: it is moved aside
// (path.replaced-<unix nanoseconds>), never appended to or deleted. If the
// lock file went too (the directory was removed and recreated), the lock is
// taken again first, so a second writer cannot have taken over. Until all
// of this succeeds the ledger stays failed (Append fails, Err is set), and
// watch tries again every watchEvery.
func (l *Ledger) relocate() error {
	if err := l.relock(); err != nil {
		return err
	}
	saved := ""
	if l.size > 0 {
		var err error
		if saved, err = l.saveSegment(); err != nil {
			return fmt.Errorf("save the records of the lost file: %w", err)
		}
	}
	if _, err := os.Lstat(l.path); err == nil {
		aside := replacedName(l.path)
		if err := os.Rename(l.path, aside); err != nil {
			return fmt.Errorf("move aside what replaced the ledger file: %w", err)
		}
		l.log.Error("ledger: the ledger path named a file this writer did not write; moved it aside, untouched",
			"path", l.path, "aside", aside)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := l.open(l.path)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		_ = f.Close()
		return err
	}
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f, l.fi, l.moved = f, fi, false
	l.size, l.wsize, l.retryRot = 0, 0, 0
	l.wseq, l.wlast = l.seq, l.last
	if l.cp != nil {
		l.wtree = l.tree.clone()
		l.postCheckpoint(true)
	}
	l.relocs.Add(1)
	l.log.Warn("ledger: the ledger file was deleted, renamed or replaced; its records were saved and a new file continues the chain",
		"path", l.path, "seq", l.seq, "saved_to", saved)
	return nil
}

// relock takes the lock again when its file is no longer the one we hold.
func (l *Ledger) relock() error {
	if l.lockFI == nil {
		return nil // no locking on this platform
	}
	name := l.path + ".lock"
	if fi, err := os.Stat(name); err == nil && os.SameFile(fi, l.lockFI) {
		return nil
	}
	unlock, fi, err := lockFile(name)
	if err != nil {
		return fmt.Errorf("take the lock again: %w", err)
	}
	_ = l.unlock()
	l.unlock, l.lockFI = unlock, fi
	return nil
}

// saveSegment copies the acknowledged part of the open file to its rotated
// name, durably, and returns that name.
func (l *Ledger) saveSegment() (string, error) {
	name := RotatedName(l.path, l.seq)
	if fi, err := os.Stat(name); err == nil {
		if os.SameFile(fi, l.fi) && fi.Size() >= l.size {
			return name, nil // renamed to exactly the name a rotation gives it
		}
		return "", fmt.Errorf("%s exists and is not the lost file", name)
	}
	src := io.NewSectionReader(l.f, 0, l.size)
	if err := copyFileAtomic(name, src, false); err != nil {
		return "", err
	}
	return name, nil
}

// copyFileAtomic makes path hold what r reads, durably: a temporary file in
// the same directory, fsync'd, then renamed over path (replace) or linked
// to it (!replace: fails with os.ErrExist when path exists), then the
// directory fsync'd.
func copyFileAtomic(path string, r io.Reader, replace bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // after a rename it is gone already
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := io.Copy(tmp, r); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if replace {
		err = os.Rename(name, path)
	} else {
		err = os.Link(name, path)
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}
