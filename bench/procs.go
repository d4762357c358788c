package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// proc is one child process of the harness.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *tailBuffer // the last bytes of its stderr (and stdout after the announce line)
	done chan struct{}
	err  error // exit status, valid after done
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, with its exit error and log tail.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.log.String())
	default:
		return nil
	}
}

// procSet owns every child process the harness starts; stop kills them all.
type procSet struct {
	mu    sync.Mutex
	procs []*proc
}

// start runs bin with args. When announce is true it waits for the
// "listening ADDR" line the helper servers print and returns ADDR.
func (ps *procSet) start(ctx context.Context, name, bin string, args []string, announce bool) (*proc, string, error) {
	cmd := exec.Command(bin, args...)
	setDeathSignal(cmd)
	p := &proc{name: name, cmd: cmd, log: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	cmd.Stderr = p.log
	var stdout io.ReadCloser
	if announce {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, "", err
		}
	} else {
		cmd.Stdout = p.log
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	addrc := make(chan string, 1)
	go func() {
		if stdout != nil {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
					addrc <- a
					break
				}
				p.log.Write([]byte(sc.Text() + "\n"))
			}
			_, _ = io.Copy(p.log, stdout)
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	if !announce {
		return p, "", nil
	}
	select {
	case a := <-addrc:
		return p, a, nil
	case <-p.done:
		return nil, "", p.exited()
	case <-time.After(30 * time.Second):
		return nil, "", fmt.Errorf("%s: no listening address after 30s: %s", name, p.log.String())
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

// stopAll kills every process of the set.
func (ps *procSet) stopAll() {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.procs...)
	ps.mu.Unlock()
	ps.stop(all...)
}

// stop kills the given processes and waits for them to exit.
func (ps *procSet) stop(only ...*proc) {
	ps.mu.Lock()
	var keep, kill []*proc
	for _, p := range ps.procs {
		if containsProc(only, p) {
			kill = append(kill, p)
		} else {
			keep = append(keep, p)
		}
	}
	ps.procs = keep
	ps.mu.Unlock()
	for _, p := range kill {
		_ = p.cmd.Process.Kill()
	}
	for _, p := range kill {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
}

func containsProc(list []*proc, p *proc) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

// waitHTTP polls url until it answers 200, the process exits or the timeout passes.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := p.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not ready after %s: %s", p.name, url, timeout, p.log.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort returns a 127.0.0.1 address with a port that was free a moment ago.
func freePort() (string, error) {
	addrs, err := freePorts(1)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// freePorts returns n distinct such addresses: all are held until all are
// chosen, since a port closed a moment ago can be handed out again (a
// Pare started with the same port for --listen and --admin refused to
// run, and TestQuick failed).
func freePorts(n int) ([]string, error) {
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// cpuSeconds is the user+system CPU time a process has used so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/PID/stat format")
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(ut+st) / clockTicks, nil
}

// statusKB reads a "Key: N kB" line of /proc/PID/status (VmHWM, VmRSS).
func statusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, key)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
