"""Data sets for evaluation (splitimpera.data): subsets, seeding."""

import splitimpera as si


def _sc(repo_root, **over):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over)


def test_limit_takes_a_seeded_subset_across_classes(repo_root):
    from splitimpera.data import load_dataset

    sc = _sc(repo_root, **{"data.limit": 30})
    a = load_dataset(sc.data, (1, 32, 32), seed=0)
    b = load_dataset(sc.data, (1, 32, 32), seed=0)
    labels = [int(a[i][1]) for i in range(len(a))]
    assert len(a) == 30 and a.indices == b.indices
    assert len(set(labels)) >= 8  # not just the first classes of the list
