package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
)

// Server hands every Envoy that connects the current Config over ADS.
// Every sidecar gets the same config (contracts are company-wide; what
// differs per workload, its service name, is ext_proc's --service), so the
// snapshot cache keys all nodes to one entry.
type Server struct {
	opt   Options
	log   *slog.Logger
	cache cache.SnapshotCache

	mu      sync.Mutex
	current *Config
}

// snapshotKey is the one cache entry all nodes share.
const snapshotKey = "pare"

type oneSnapshot struct{}

func (oneSnapshot) ID(*corev3.Node) string { return snapshotKey }

// NewServer returns a server that serves the NoPolicy config until the
// first successful Update. opt is checked now: a bad flag fails at start.
func NewServer(opt Options, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opt:   opt,
		log:   log,
		cache: cache.NewSnapshotCache(true, oneSnapshot{}, cacheLogger{log}),
	}
	cfg, err := NoPolicy(opt)
	if err != nil {
		return nil, err
	}
	if err := s.publish(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// Update builds the config of contracts and publishes it as a new snapshot
// version when it differs from the current one. On error the current
// config stays: Envoys keep what they have.
func (s *Server) Update(contracts map[string]*contract.Contract) (*Config, error) {
	cfg, err := Build(contracts, s.opt)
	if err != nil {
		return nil, err
	}
	if err := s.publish(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Current returns the config being served.
func (s *Server) Current() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

func (s *Server) publish(cfg *Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != nil && s.current.Version == cfg.Version {
		return nil
	}
	snap, err := cfg.Snapshot()
	if err != nil {
		return err
	}
	if err := s.cache.SetSnapshot(context.Background(), snapshotKey, snap); err != nil {
		return fmt.Errorf("set snapshot %s: %w", cfg.Version, err)
	}
	s.current = cfg
	return nil
}

// Serve answers ADS on ln until ctx is done, then stops: streams are
// long-lived, so stopping does not wait for them (Envoy reconnects and
// keeps its last config meanwhile).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	g := grpc.NewServer(
		// Find Envoys that went away without closing their stream.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	xs := serverv3.NewServer(ctx, s.cache, s.callbacks())
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, xs)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ln) }()
	select {
	case <-ctx.Done():
		g.Stop()
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("xds: %w", err)
	}
}

// callbacks log what an operator needs: which Envoys connect, and every
// config an Envoy rejects (a NACK carries error_detail), which means that
// sidecar still runs its previous config.
func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			node := req.GetNode().GetId()
			if d := req.GetErrorDetail(); d != nil {
				s.log.Error("envoy rejected config: it keeps its previous one",
					"node", node, "type", req.GetTypeUrl(), "version", req.GetVersionInfo(),
					"nonce", req.GetResponseNonce(), "err", d.GetMessage())
			} else if req.GetResponseNonce() == "" {
				s.log.Info("envoy subscribed", "stream", id, "node", node, "type", req.GetTypeUrl())
			}
			return nil
		},
		StreamClosedFunc: func(id int64, node *corev3.Node) {
			s.log.Info("envoy stream closed", "stream", id, "node", node.GetId())
		},
	}
}

// cacheLogger sends go-control-plane's log lines to slog.
type cacheLogger struct{ log *slog.Logger }

func (l cacheLogger) Debugf(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l cacheLogger) Infof(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l cacheLogger) Warnf(f string, a ...any)  { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l cacheLogger) Errorf(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }

// Watch reloads the policies directory dir whenever a file below it
// changes, until ctx is done, and publishes the config of each policy that
// compiles — the same reload, debounce and "last good policy stays" as
// proxy serve, so both see the same contracts. current is the policy
// already published from dir (nil if none loaded).
func (s *Server) Watch(ctx context.Context, dir string, current *engine.Policy) error {
	// engine.Watch owns the watcher proxy serve uses; the engine it swaps
	// policies into only remembers the last revision here.
	eng, err := engine.New(engine.Options{})
	if err != nil {
		return err
	}
	if current != nil {
		eng.Swap(current)
	}
	return eng.Watch(ctx, dir, engine.LoadOptions{CacheBytes: -1}, func(p *engine.Policy, err error) {
		if err != nil {
			s.log.Error("policy reload failed: Envoys keep the last good config", "err", err)
			return
		}
		cfg, err := s.Update(p.Contracts)
		if err != nil {
			s.log.Error("policy reloaded but its Envoy config is invalid: Envoys keep the last good config",
				"revision", p.Revision[:12], "err", err)
			return
		}
		s.log.Info("policy reloaded", "revision", p.Revision[:12], "version", cfg.Version, "vendors", len(p.Contracts))
	})
}
