package accept

import "net"

// Listener wraps ln so that every connection it accepts is admitted
// through t, for servers that take a net.Listener and own their accept
// loop (net/http, go-milter). A connection t refuses is closed and never returned;
// an admitted one is returned as a *Conn, whose Close releases its
// place.
func (t *Tracker) Listener(ln net.Listener) net.Listener {
	return &trackedListener{Listener: ln, t: t}
}

type trackedListener struct {
	net.Listener
	t *Tracker
}

func (l *trackedListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c, err := l.t.Admit(nc)
		if err != nil {
			nc.Close() // the tracker logs refusals
			continue
		}
		return c, nil
	}
}
