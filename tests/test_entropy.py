"""Token entropy coding: exact symbol round trips from integer tables."""
import torch
import pytest

from imfcodec.entropy import EntropyError, TokenEntropyModel, _symbol_bits, resize_buffers_for


@pytest.fixture(scope="module")
def ent():
    e = TokenEntropyModel(32)
    g = torch.Generator().manual_seed(0)
    e.update(torch.rand(8, 32, generator=g) * 10 + 0.05)
    return e


@pytest.mark.parametrize("n", [1, 2, 8, 31])
@pytest.mark.parametrize("quality", [1, 4, 8])
def test_round_trip(ent, n, quality):
    g = torch.Generator().manual_seed(n * 10 + quality)
    sym = torch.randint(-6, 7, (n, 32), generator=g)
    sym[0, 3] = 5000           # far outside every table: escape-coded
    sym[-1, 7] = -123456
    data = ent.encode(sym, quality)
    assert torch.equal(ent.decode(data, n, quality), sym)


def test_tables_survive_save_load(ent):
    sd = ent.state_dict()
    fresh = TokenEntropyModel(32)
    resize_buffers_for(fresh, sd)
    fresh.load_state_dict(sd)
    sym = torch.randint(-3, 4, (8, 32))
    assert fresh.encode(sym, 2) == ent.encode(sym, 2)
    assert torch.equal(fresh.decode(ent.encode(sym, 2), 8, 2), sym)


def test_rate_follows_the_tables():
    """Narrow tables make zeros nearly free (the rANS string's fixed 8 bytes); wide tables
    cost more for the same zeros, and far more for large values."""
    e = TokenEntropyModel(32)
    zeros = torch.zeros(8, 32, dtype=torch.long)
    e.update(torch.full((8, 32), 0.2))
    narrow = len(e.encode(zeros, 1))
    e.update(torch.full((8, 32), 3.0))
    wide = len(e.encode(zeros, 1))
    assert narrow <= 8 < wide
    assert len(e.encode(zeros + 7, 1)) > wide


def test_fit_chooses_the_cheapest_table_and_still_round_trips():
    """Rounded differences at a coarse step (mostly 0, some +-1, a few larger) under tables
    built for a narrow Gaussian: fit picks, per (quality, channel), the table that codes them
    in the fewest bits of all the built ones; a level with no differences keeps its tables."""
    e = TokenEntropyModel(4, levels=2)
    e.update(torch.full((2, 4), 0.15))
    before = e.index_table.clone()
    g = torch.Generator().manual_seed(0)
    d = torch.where(torch.rand(400, 4, generator=g) < 0.3, torch.randint(-1, 2, (400, 4), generator=g), 0)
    d[::50] = 4
    d[7, 2] = -900                                      # an escape
    old_bits = e.bits(d, 1)
    e.fit([d, torch.zeros(0, 4, dtype=torch.long)])
    assert torch.equal(e.index_table[1], before[1])
    assert e.bits(d, 1) < 0.9 * old_bits
    cdf, lengths, offsets = e._tables()

    def cost(c, i):         # brute force: channel c's bits under table i
        return sum(_symbol_bits(v - offsets[i], cdf[i], lengths[i] - 2) for v in d[:, c].tolist())
    chosen = e.index_table[0].tolist()
    for c in range(4):
        assert cost(c, chosen[c]) == min(cost(c, i) for i in range(len(lengths)))
    assert e.bits(d, 1) == pytest.approx(sum(cost(c, chosen[c]) for c in range(4)))
    data = e.encode(d[:31], 1)
    assert torch.equal(e.decode(data, 31, 1), d[:31])
    with pytest.raises(EntropyError, match="all 2 quality levels"):
        e.fit([d])


def test_errors():
    e = TokenEntropyModel(4)
    with pytest.raises(EntropyError, match="not built"):
        e.encode(torch.zeros(1, 4, dtype=torch.long), 1)
    e.update(torch.ones(8, 4))
    with pytest.raises(EntropyError, match="quality"):
        e.encode(torch.zeros(1, 4, dtype=torch.long), 9)
