package cli

import (
	"net"
	"testing"
	"time"
)

// At most max connections are accepted at once; closing one admits the
// next, and accepted connections can still half-close (net/http needs it
// to deliver a 431 or 400 before closing).
func TestLimitListener(t *testing.T) {
	ln, err := listen("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted with max 2")
	case <-time.After(200 * time.Millisecond):
	}
	if _, ok := first.(interface{ CloseWrite() error }); !ok {
		t.Fatal("accepted connections cannot half-close")
	}
	first.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("closing a connection did not admit the waiting one")
	}
}
