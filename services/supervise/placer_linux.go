package supervise

import "hardvisor.dev/hardvisor/services/cgroups"

// TreePlacer places services in t's hardvisor.slice.
func TreePlacer(t *cgroups.Tree) Placer { return treePlacer{t} }

type treePlacer struct{ t *cgroups.Tree }

func (p treePlacer) Place(name string, l cgroups.Limits) (Cgroup, error) {
	g, err := p.t.Place(name, l)
	if err != nil {
		return nil, err
	}
	return g, nil
}

var _ Cgroup = (*cgroups.Group)(nil)
