"""The testbed's forget set: stratified over duplication levels, reproducible, a partition."""

from collections import Counter

import pytest

from lmaudit.data import Record
from lmaudit.testbed.forget import allocate, select_forget


def _members():
    levels = [1] * 450 + [4] * 150 + [32] * 400
    return [Record(id=f"bio-{i:05d}", text=f"doc {i}", source="m.jsonl", line=i + 1, meta={"duplication": d}) for i, d in enumerate(levels)]


def test_forget_set_is_stratified_and_the_rest_is_retained():
    members = _members()
    forget, retain, record = select_forget(members, 100, seed=0)
    assert Counter(r.meta["duplication"] for r in forget) == {1: 45, 4: 15, 32: 40}
    assert record["levels"] == {"1": {"members": 450, "forget": 45}, "4": {"members": 150, "forget": 15},
                                "32": {"members": 400, "forget": 40}}
    ids = [r.id for r in members]
    assert sorted(r.id for r in forget + retain) == sorted(ids) and not {r.id for r in forget} & {r.id for r in retain}
    # both keep the members' order
    assert [r.id for r in forget] == [i for i in ids if i in {r.id for r in forget}]
    assert [r.id for r in retain] == [i for i in ids if i in {r.id for r in retain}]


def test_forget_set_is_reproducible_and_seeded():
    a = [r.id for r in select_forget(_members(), 100, seed=0)[0]]
    assert a == [r.id for r in select_forget(_members(), 100, seed=0)[0]]
    assert a != [r.id for r in select_forget(_members(), 100, seed=1)[0]]


def test_allocation_sums_to_n_and_follows_the_proportions():
    for n in (0, 1, 7, 99, 1000):
        shares = allocate({"1": 450, "4": 150, "32": 400}, n)
        assert sum(shares.values()) == n
        for k, c in {"1": 450, "4": 150, "32": 400}.items():
            assert abs(shares[k] - n * c / 1000) < 1  # within one of the exact quota
    with pytest.raises(ValueError, match="cannot choose 1001 of 1000"):
        allocate({"1": 450, "4": 150, "32": 400}, 1001)


def test_members_without_the_field_form_their_own_level():
    members = [Record(id=str(i), text="x", source="m.jsonl", line=i + 1, meta={} if i < 4 else {"duplication": 2}) for i in range(8)]
    forget, _, record = select_forget(members, 4, seed=3)
    assert record["levels"] == {"2": {"members": 4, "forget": 2}, "none": {"members": 4, "forget": 2}}
