package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// LoadDir loads the policies directory dir from disk.
func LoadDir(ctx context.Context, dir string, opt LoadOptions) (*Policy, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("policies: %s is not a directory", dir)
	}
	p, err := Load(ctx, os.DirFS(dir), opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return p, nil
}

// Watch reloads dir into e whenever a file below it changes, until ctx is
// done. Each attempt's result goes to report: on failure the previous policy
// stays in place. Events are debounced because editors write a file in
// several steps (truncate, write, rename) and a half-written file must not
// count as a failed reload.
func (e *Engine) Watch(ctx context.Context, dir string, opt LoadOptions, report func(*Policy, error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policies: %w", err)
	}
	defer w.Close()
	addAll := func() error {
		return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return w.Add(path)
			}
			return nil
		})
	}
	if err := addAll(); err != nil {
		return fmt.Errorf("watch policies: %w", err)
	}
	const debounce = 150 * time.Millisecond
	// One load once the watches are in place: an edit made between the
	// caller's first load and now raised no event. An unchanged directory
	// is skipped below by its revision.
	timer := time.NewTimer(debounce)
	failing := false // the last attempt reported failed
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch policies: watcher closed")
			}
			if ev.Op.Has(fsnotify.Create) {
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
					_ = w.Add(ev.Name)
				}
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch policies: watcher closed")
			}
			failing = true
			report(nil, fmt.Errorf("watch policies: %w", err))
		case <-timer.C:
			p, err := LoadDir(ctx, dir, opt)
			if err == nil {
				if old := e.Policy(); old != nil && old.Revision == p.Revision {
					if !failing {
						continue // touched, not changed
					}
					// The last good policy restored after a failed
					// attempt: nothing to swap, but the failure must
					// not be the last word reported.
				} else {
					e.Swap(p)
				}
			}
			failing = err != nil
			report(p, err)
		}
	}
}
