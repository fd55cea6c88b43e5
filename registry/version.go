package registry

import (
	"github.com/Masterminds/semver/v3"
)

// Latest picks the version GetTaskTemplate and CreateTask use when none is
// given: the highest semantic version that is not a pre-release, or the
// highest pre-release when there is nothing else. Versions that differ only
// in build metadata rank equal; the greater string wins, so the choice never
// depends on the order of versions. Strings that are not semantic versions
// are skipped. It reports false when nothing is left.
func Latest(versions []string) (string, bool) {
	var best, bestPre *semver.Version
	better := func(v, than *semver.Version) bool {
		if than == nil {
			return true
		}
		if c := v.Compare(than); c != 0 {
			return c > 0
		}
		return v.Original() > than.Original()
	}
	for _, s := range versions {
		v, err := semver.StrictNewVersion(s)
		switch {
		case err != nil:
		case v.Prerelease() == "":
			if better(v, best) {
				best = v
			}
		default:
			if better(v, bestPre) {
				bestPre = v
			}
		}
	}
	switch {
	case best != nil:
		return best.Original(), true
	case bestPre != nil:
		return bestPre.Original(), true
	}
	return "", false
}
