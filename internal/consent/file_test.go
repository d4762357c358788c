package consent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOpenFileTestdata(t *testing.T) {
	want := map[string][]Consent{
		"u-123": {{
			Purpose: "marketing", Status: StatusWithdrawn, Time: ts("2026-11-01T10:00:00Z"),
			Evidence: Evidence{Action: "clicked unsubscribe", Where: "newsletter footer"},
		}},
		"u-456": {{
			Purpose: "marketing", Status: StatusGranted, Time: ts("2026-10-02T06:30:00Z"),
			Evidence: Evidence{Action: "ticked 'Keep me informed'", Where: "webinar registration", PolicyVersion: "2026-09"},
		}},
		"nobody": {},
		"":       {},
	}
	for _, path := range []string{"testdata/consents.yaml", "testdata/consents.json"} {
		t.Run(path, func(t *testing.T) {
			f, err := OpenFile(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for subject, w := range want {
				got, err := f.Lookup(context.Background(), subject)
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(path, ".yaml") && subject == "u-123" {
					// The YAML file has one more purpose for u-123.
					w = append([]Consent{{
						Purpose: "analytics", Status: StatusGranted, Time: ts("2026-10-01T10:00:00Z"),
						Evidence: Evidence{Action: "accepted analytics cookies", Where: "cookie banner", PolicyVersion: "2026-09"},
					}}, w...)
				}
				if got == nil || !reflect.DeepEqual(got, w) {
					t.Errorf("Lookup(%q) = %#v, want %#v", subject, got, w)
				}
			}
		})
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "subjects:\n  u-1:\n    - {purpose: a, status: on, time: 2026-10-01T10:00:00Z}\n")
	toml := filepath.Join(dir, "c.toml")
	writeFile(t, toml, "")
	for _, tt := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.yaml"), "no such file"},
		{toml, "unknown consent file format"},
		{bad, bad + `:3: status must be "granted" or "withdrawn", got "on"`},
	} {
		_, err := OpenFile(tt.path, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("OpenFile(%s) error = %v, want it to contain %q", tt.path, err, tt.want)
		}
	}
}

func TestFileLookupReturnsACopy(t *testing.T) {
	f, err := OpenFile("testdata/consents.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := f.Lookup(context.Background(), "u-456")
	got[0].Status = StatusWithdrawn
	again, _ := f.Lookup(context.Background(), "u-456")
	if again[0].Status != StatusGranted {
		t.Error("a caller's change to a Lookup result changed the source")
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes data next to path and renames it over path, as editors and config managers do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	writeFile(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func consentFile(status string) string {
	return "subjects:\n  u-1:\n    - {purpose: marketing, status: " + status +
		", time: 2026-10-01T10:00:00Z, evidence: {action: clicked}}\n"
}

// watched opens path with a fast debounce, starts Watch and returns the file and the stream of
// OnReload results (nil for a successful reload).
func watched(t *testing.T, path string) (*File, <-chan error) {
	t.Helper()
	reloads := make(chan error, 100)
	f, err := OpenFileWithOptions(path, FileOptions{
		Debounce: 20 * time.Millisecond,
		OnReload: func(ok bool, err error) {
			if ok != (err == nil) {
				t.Errorf("OnReload(%v, %v): ok and err disagree", ok, err)
			}
			reloads <- err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	return f, reloads
}

// awaitReload waits for an OnReload result accepted by match, skipping others: an in-place write
// can be seen half done (truncated), which is a legitimate failed reload before the good one.
func awaitReload(t *testing.T, reloads <-chan error, match func(error) bool) error {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-reloads:
			if match(err) {
				return err
			}
		case <-timeout:
			t.Fatal("no matching reload within 5s")
			return nil
		}
	}
}

func isOK(err error) bool { return err == nil }

func statusOf(t *testing.T, f *File) string {
	t.Helper()
	got, err := f.Lookup(context.Background(), "u-1")
	if err != nil || len(got) != 1 {
		t.Fatalf("Lookup = %v, %v; want one consent", got, err)
	}
	return got[0].Status
}

func TestFileWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "consents.yaml")
	writeFile(t, path, consentFile("granted"))
	f, reloads := watched(t, path)

	// An in-place write.
	writeFile(t, path, consentFile("withdrawn"))
	awaitReload(t, reloads, isOK)
	if got := statusOf(t, f); got != StatusWithdrawn {
		t.Fatalf("after an in-place write: status %q, want withdrawn", got)
	}

	// A rename over the file, which ends a watch on the file itself.
	replaceFile(t, path, consentFile("granted"))
	awaitReload(t, reloads, isOK)
	if got := statusOf(t, f); got != StatusGranted {
		t.Fatalf("after a rename: status %q, want granted", got)
	}

	// An invalid edit keeps the last good state and reports file:line.
	replaceFile(t, path, "subjects:\n  u-1:\n    - {purpose: marketing, status: withdrawn}\n")
	err := awaitReload(t, reloads, func(err error) bool { return err != nil })
	if want := path + ":3: time is required"; !strings.Contains(err.Error(), want) {
		t.Errorf("reload error %q does not contain %q", err, want)
	}
	if got := statusOf(t, f); got != StatusGranted {
		t.Fatalf("after an invalid edit: status %q, want the last good (granted)", got)
	}

	// Unrelated changes in the directory and attribute changes do not reload.
	writeFile(t, filepath.Join(dir, "other.txt"), "x")
	if err := os.Chtimes(path, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reloads:
		t.Fatalf("unexpected reload (%v) without a content change", err)
	case <-time.After(200 * time.Millisecond):
	}

	// Fixing the file is picked up.
	replaceFile(t, path, consentFile("withdrawn"))
	awaitReload(t, reloads, isOK)
	if got := statusOf(t, f); got != StatusWithdrawn {
		t.Fatalf("after the fix: status %q, want withdrawn", got)
	}

	// Removal keeps the last good state; recreation is read.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	err = awaitReload(t, reloads, func(err error) bool { return err != nil })
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reload error after removal = %v, want not exist", err)
	}
	if got := statusOf(t, f); got != StatusWithdrawn {
		t.Fatalf("after removal: status %q, want the last good (withdrawn)", got)
	}
	replaceFile(t, path, consentFile("withdrawn"))
	awaitReload(t, reloads, isOK)
}

// TestFileWatchSymlinkSwap updates the file the way Kubernetes updates a mounted ConfigMap: the
// file is a symlink through ..data, and ..data is swapped for a symlink to a new directory.
func TestFileWatchSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, status string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "consents.yaml"), consentFile(status))
	}
	version("..v1", "granted")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Skipf("symlinks: %v", err)
	}
	path := filepath.Join(dir, "consents.yaml")
	if err := os.Symlink(filepath.Join("..data", "consents.yaml"), path); err != nil {
		t.Fatal(err)
	}
	f, reloads := watched(t, path)

	version("..v2", "withdrawn")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	awaitReload(t, reloads, isOK)
	if got := statusOf(t, f); got != StatusWithdrawn {
		t.Fatalf("after the swap: status %q, want withdrawn", got)
	}
}

func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	writeFile(t, path, `{"subjects": {}}`)
	var calls []bool
	f, err := OpenFileWithOptions(path, FileOptions{OnReload: func(ok bool, _ error) { calls = append(calls, ok) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err != nil { // unchanged, but Reload always reads
		t.Fatal(err)
	}
	writeFile(t, path, `{"subjects": {"u-1": [{"purpose": "marketing"}]}}`)
	if err := f.Reload(); err == nil || !strings.Contains(err.Error(), path+":1: status is required") {
		t.Errorf("Reload error = %v", err)
	}
	if !reflect.DeepEqual(calls, []bool{true, false}) {
		t.Errorf("OnReload calls = %v, want [true false]", calls)
	}
	if f.Path() != path {
		t.Errorf("Path() = %q", f.Path())
	}
}

// TestFileConcurrentLookupAndReload is for the race detector: lookups never see half a reload.
func TestFileConcurrentLookupAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, path, consentFile("granted"))
	f, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := f.Lookup(context.Background(), "u-1")
				if err != nil || len(got) != 1 {
					t.Errorf("Lookup = %v, %v", got, err)
					return
				}
			}
		})
	}
	for i := range 50 {
		writeFile(t, path, consentFile([]string{"granted", "withdrawn"}[i%2]))
		if err := f.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestFileReloadNeverBlocksLookups stops a reload of a new file in the middle
// (between reading and swapping) and looks subjects up meanwhile: every
// lookup answers at once, from the old state, and the new state is what
// lookups see once the reload ends.
func TestFileReloadNeverBlocksLookups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "consents.json")
	writeFile(t, path, `{"subjects": {"u-1": [{"purpose": "marketing", "status": "granted", "time": "2026-10-01T10:00:00Z", "evidence": {"action": "checked"}}]}}`)
	f, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, `{"subjects": {"u-1": [{"purpose": "marketing", "status": "withdrawn", "time": "2026-11-01T10:00:00Z"}]}}`)
	inReload, release := make(chan struct{}), make(chan struct{})
	reloadHook = func() { close(inReload); <-release }
	defer func() { reloadHook = nil }()
	done := make(chan error)
	go func() { done <- f.Reload() }()
	<-inReload
	for range 100 {
		got, err := f.Lookup(context.Background(), "u-1")
		if err != nil || len(got) != 1 || got[0].Status != StatusGranted {
			t.Fatalf("lookup during a reload: %+v, %v; want the old grant", got, err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Lookup(context.Background(), "u-1"); len(got) != 1 || got[0].Status != StatusWithdrawn {
		t.Fatalf("after the reload: %+v, want the withdrawal", got)
	}
}
