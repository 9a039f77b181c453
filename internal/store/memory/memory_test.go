package memory

import (
	"testing"

	"mailwarden/internal/store"
	"mailwarden/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return New() })
}
