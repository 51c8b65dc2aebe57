"""Token buckets per client: bursts up to the rate, refills over time, bounded memory."""

from __future__ import annotations

from kitchencam.ratelimit import RateLimiter, retry_after_s


def test_a_burst_of_one_minutes_worth_then_one_token_per_interval() -> None:
    limiter = RateLimiter(rate_per_min=6)  # a token every 10 s
    assert [limiter.take("10.0.0.1", 0.0) for _ in range(6)] == [0.0] * 6
    assert limiter.take("10.0.0.1", 0.0) == 10.0
    assert limiter.take("10.0.0.1", 5.0) == 5.0
    assert limiter.take("10.0.0.1", 10.0) == 0.0
    assert limiter.take("10.0.0.2", 10.0) == 0.0  # others have their own bucket


def test_refills_to_capacity_only() -> None:
    limiter = RateLimiter(rate_per_min=2)
    limiter.take("a", 0.0)
    limiter.take("a", 0.0)
    allowed = [limiter.take("a", 3600.0) == 0.0 for _ in range(3)]
    assert allowed == [True, True, False]


def test_a_rate_of_zero_is_no_limit() -> None:
    limiter = RateLimiter(rate_per_min=0)
    assert not limiter.enabled
    assert all(limiter.take("a", 0.0) == 0.0 for _ in range(1000))
    assert len(limiter) == 0


def test_memory_is_bounded_by_forgetting_the_least_recent_client() -> None:
    limiter = RateLimiter(rate_per_min=1, max_clients=3)
    for client in ("a", "b", "c", "a", "d"):
        limiter.take(client, 0.0)
    assert len(limiter) == 3
    assert limiter.take("a", 0.0) > 0  # "a" was kept (recently seen): its bucket is empty
    assert limiter.take("b", 0.0) == 0.0  # "b" was forgotten: a full bucket again


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after_s(0.01) == 1
    assert retry_after_s(2.1) == 3
