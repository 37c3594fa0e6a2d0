"""Set-to-set flow: masks respected, truth-permutation invariance, reco equivariance, multiplicities."""

from __future__ import annotations

import torch

from models.sets import SetFlowConfig, SetToSetModel, class_embedding, decode_class

CONFIG = SetFlowConfig(truth_dim=3, reco_dim=3, n_classes=5, event_dim=2, n_max=10, width=32)


def batch(seed: int, b: int = 6, n_truth: int = 12):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(b, n_truth, 3, generator=g)
    counts = torch.randint(2, n_truth + 1, (b,), generator=g)
    truth_mask = torch.arange(n_truth)[None] < counts[:, None]
    return truth, truth_mask, g


def model(seed: int = 0) -> SetToSetModel:
    torch.manual_seed(seed)
    return SetToSetModel(CONFIG).eval()


def test_padded_slots_on_both_sides_change_nothing():
    m = model()
    truth, truth_mask, g = batch(1)
    reco = torch.randn(6, 10, 8, generator=g)
    reco_mask = torch.arange(10)[None] < torch.tensor([0, 3, 10, 1, 5, 7])[:, None]
    y = torch.randn(6, 3, generator=g)
    t = torch.rand(6, generator=g)
    with torch.no_grad():
        v = m.particles.velocity(reco, t, reco_mask, m.particles.encode(truth, truth_mask, y))
        junk_truth = torch.where(truth_mask[..., None], truth, torch.full_like(truth, 1e3))
        junk_reco = torch.where(reco_mask[..., None], reco, torch.full_like(reco, -1e3))
        v2 = m.particles.velocity(
            junk_reco, t, reco_mask, m.particles.encode(junk_truth, truth_mask, y)
        )
        pooled = m.event.encoder(truth, truth_mask)[2]
        pooled2 = m.event.encoder(junk_truth, truth_mask)[2]
    assert torch.isfinite(v).all()  # an event with no reco slot is still defined
    assert (v[~reco_mask] == 0).all()
    torch.testing.assert_close(v, v2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, pooled2, atol=1e-5, rtol=1e-5)


def test_truth_permutation_leaves_generated_events_unchanged_and_reco_is_equivariant():
    m = model()
    truth, truth_mask, _ = batch(2)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    out = m.generate(truth, truth_mask, nfe=4, generator=torch.Generator().manual_seed(7))
    shuffled = m.generate(
        truth[:, perm], truth_mask[:, perm], nfe=4, generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(out["n"], shuffled["n"])
    torch.testing.assert_close(out["reco"], shuffled["reco"], atol=1e-4, rtol=1e-4)
    assert torch.equal(out["cls"], shuffled["cls"])
    # permuting the reco tokens permutes the velocity and nothing else
    g = torch.Generator().manual_seed(4)
    reco = torch.randn(6, 10, 8, generator=g)
    mask = torch.ones(6, 10, dtype=torch.bool)
    y, t = torch.randn(6, 3, generator=g), torch.rand(6, generator=g)
    rp = torch.randperm(10, generator=g)
    with torch.no_grad():
        enc = m.particles.encode(truth, truth_mask, y)
        v = m.particles.velocity(reco, t, mask, enc)
        v_perm = m.particles.velocity(reco[:, rp], t, mask, enc)
    torch.testing.assert_close(v[:, rp], v_perm, atol=1e-5, rtol=1e-5)


def test_generated_multiplicities_follow_the_event_model():
    torch.manual_seed(0)
    m = SetToSetModel(CONFIG)
    opt = torch.optim.Adam(m.event.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(5)
    for _ in range(250):  # truth sets of 2..12 particles; n_reco = n_truth // 2 + {0, 1}
        truth, truth_mask, _ = batch(int(torch.randint(0, 10**6, (1,), generator=g)), b=64)
        n_truth = truth_mask.sum(1)
        n_reco = n_truth // 2 + torch.randint(0, 2, (64,), generator=g)
        loss = m.event.loss(truth, truth_mask, n_reco, torch.randn(64, 2, generator=g), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    truth, truth_mask, _ = batch(9, b=400)
    out = m.generate(truth, truth_mask, nfe=8, generator=torch.Generator().manual_seed(1))
    n_event, _ = m.event.sample(
        truth, truth_mask, nfe=8, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(out["n"], n_event)  # the particle stage fills exactly the event model's n
    assert torch.equal(out["mask"].sum(1), out["n"])
    assert ((out["cls"] >= 0) == out["mask"]).all() and (out["reco"][~out["mask"]] == 0).all()
    n_truth = truth_mask.sum(1)
    for lo, hi in ((2, 5), (9, 12)):
        sel = (n_truth >= lo) & (n_truth <= hi)
        want = (n_truth[sel] // 2).float().mean() + 0.5
        got = out["n"][sel].float().mean()
        assert abs(got - want) < 0.6, (lo, hi, float(got), float(want))


def test_class_embedding_round_trip_and_a_training_step():
    cls = torch.tensor([[0, 4, 2], [1, 3, 3]])
    z = class_embedding(cls, 5)
    assert z.shape == (2, 3, 5) and set(z.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(decode_class(z + 0.3 * torch.randn(z.shape)), cls)
    m = SetToSetModel(CONFIG)
    truth, truth_mask, g = batch(6)
    reco_mask = torch.arange(10)[None] < torch.tensor([1, 4, 10, 0, 6, 2])[:, None]
    loss = m.loss(
        truth, truth_mask, torch.randn(6, 10, 3, generator=g),
        torch.randint(0, 5, (6, 10), generator=g), reco_mask, torch.randn(6, 2, generator=g), g,
    )  # fmt: skip
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in m.particles.blocks.parameters())
