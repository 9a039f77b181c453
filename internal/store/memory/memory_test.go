package memory_test

import (
	"testing"

	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

func TestImport(t *testing.T) {
	storetest.RunImport(t, func(t *testing.T) store.Store { return memory.New() })
}
