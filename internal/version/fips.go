package version

import "crypto/fips140"

func fipsEnabled() bool { return fips140.Enabled() }
