package adminapi

import (
	"net/http"
	"slices"
)

// probeMethods are the methods AllowedMethods tries.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// AllowedMethods lists the methods mux serves r's path with, other than
// through its catch-all pattern "/". A catch-all keeps ServeMux from
// answering 405 by itself, so the admin API and the dashboard call this
// from theirs to answer 405 Method Not Allowed with an Allow header
// (RFC 9110 §15.5.6) rather than 404 for a path that exists.
func AllowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range probeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if slices.Equal(allow, []string{http.MethodHead}) {
		return nil
	}
	return allow
}
