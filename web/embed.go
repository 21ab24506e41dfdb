// Package web holds Conclave's browser client: the HTML pages and the static
// tree (ES modules and CSS) that the server embeds and serves as they are,
// with no build step.
package web

import "embed"

// FS holds index.html (home), meeting.html (served at /r/<alias>),
// admin.html (/admin), enrol.html (/enrol) and the static/ directory
// (served under /static/).
//
//go:embed *.html static
var FS embed.FS
