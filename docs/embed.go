// Package docs embeds the documents the server serves itself: the
// OpenAPI 3 description of the management API (openapi.yaml), which
// GET /api/openapi.json returns.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
