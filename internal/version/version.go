// Package version tells which Conclave this is: the release version set
// at build time (scripts/release passes -ldflags "-X
// conclave/internal/version.Version=v1.2.3") and what the Go build info
// records (revision, commit time, whether the tree was modified, Go
// version).
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is the release version; "dev" for builds outside scripts/release.
var Version = "dev"

// Info is the build's identity.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
	FIPS      bool   `json:"fips140,omitempty"`
}

// Get reads the build info.
func Get() Info {
	in := Info{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	in.FIPS = fipsEnabled()
	return in
}

// String is the one-line form printed by `conclave version`.
func (i Info) String() string {
	s := "conclave " + i.Version
	if i.Revision != "" {
		r := i.Revision
		if len(r) > 12 {
			r = r[:12]
		}
		s += " (" + r
		if i.Modified {
			s += ", modified"
		}
		if i.Time != "" {
			s += ", " + i.Time
		}
		s += ")"
	}
	return s + " " + i.GoVersion + " " + i.Platform
}
