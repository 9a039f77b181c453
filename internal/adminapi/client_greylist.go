package adminapi

import (
	"context"
	"net/http"
)

// AllowTriplet lets a greylisted triplet through from now on and returns
// it as the daemon stored it (the client as its netblock, addresses
// lowercased); the daemon records the caller in an admin event. No such
// triplet is an *APIError with status 404, malformed input one with 400.
func (c *Client) AllowTriplet(ctx context.Context, req AllowRequest) (AllowRequest, error) {
	var out AllowRequest
	return out, c.do(ctx, http.MethodPost, "/v1/greylist/allow", nil, req, &out)
}
