"""Token buckets and the backoff schedule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cooee_agent.bus.limits import PeerRateLimiter, RateLimit, backoff_delay


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    limiter = PeerRateLimiter(RateLimit(rate=2.0, burst=3.0), clock=clock)
    assert [limiter.allow("p") for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back
    assert [limiter.allow("p") for _ in range(2)] == [True, False]
    clock.now += 100  # never more than the burst
    assert sum(limiter.allow("p") for _ in range(10)) == 3


def test_each_peer_has_its_own_bucket() -> None:
    limiter = PeerRateLimiter(RateLimit(rate=0.0, burst=1.0), clock=FakeClock())
    assert limiter.allow("flooder") and not limiter.allow("flooder")
    assert limiter.allow("honest")


def test_the_number_of_remembered_peers_is_bounded() -> None:
    limiter = PeerRateLimiter(RateLimit(rate=0.0, burst=1.0), max_keys=10, clock=FakeClock())
    for n in range(1000):
        limiter.allow(f"sybil-{n}")
    assert len(limiter._buckets) == 10


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    rnd=st.floats(min_value=0.0, max_value=1.0),
)
def test_backoff_stays_within_the_jittered_cap(attempt: int, rnd: float) -> None:
    delay = backoff_delay(attempt, base=0.5, cap=30.0, jitter=0.2, rng=lambda: rnd)
    assert 0.0 <= delay <= 30.0 * 1.2
    assert delay >= min(30.0, 0.5 * 2 ** min(attempt, 62)) * 0.8 - 1e-9


def test_backoff_doubles_without_jitter() -> None:
    delays = [backoff_delay(n, base=1.0, cap=10.0, jitter=0.0) for n in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
