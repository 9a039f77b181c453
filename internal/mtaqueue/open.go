package mtaqueue

import (
	"fmt"

	"mailwarden/internal/config"
)

// Open returns the queue the config's queue: section names, after
// checking that its programs are there. The CLI and the daemon both open
// queues through it.
func Open(qc config.Queue) (Queue, error) {
	switch qc.MTA {
	case config.QueuePostfix:
		p := &Postfix{Postqueue: qc.Postqueue, Postsuper: qc.Postsuper, ConfigDir: qc.ConfigDirectory}
		if err := p.Check(); err != nil {
			return nil, err
		}
		return p, nil
	case config.QueueExim:
		e := &Exim{Binary: qc.Exim, Config: qc.EximConfig, SpoolDir: qc.SpoolDirectory}
		if err := e.Check(); err != nil {
			return nil, err
		}
		return e, nil
	}
	return nil, fmt.Errorf("queue.mta %q: want postfix or exim", qc.MTA)
}
