"""M1 at a tenth of its size (issue 14, item 2): the real ``crm-templates serve`` process's RSS
after 2,000 requests from 200 signed-in customers stays within 1.1× of its RSS after the first
200 requests (20 customers). The benchmark (``python -m benchmarks.run --only M1``) runs
20,000 requests from 2,000 customers; `benchmarks.m1_memory` explains the traffic.

Every customer signs in through the real flow (form, logged link, confirmation) and checks
that their dashboard shows no one else's weigh-ins and then their own — so the run also proves
that 200 sessions served concurrently never see each other's data.
"""

from __future__ import annotations

import pytest

from benchmarks import m1_memory


@pytest.mark.slow
def test_serve_memory_does_not_grow_with_customers() -> None:
    m = m1_memory.measure(customers=200, first=20)
    assert m.rss_first > 10 * 2**20, "the RSS reading is not the server's"
    assert m.ratio <= 1.1, (
        f"RSS grew from {m.rss_first / 2**20:.1f} MB after {m.customers_first} customers to "
        f"{m.rss_total / 2**20:.1f} MB after {m.customers_total}"
    )


def test_rss_reading_is_of_the_given_process() -> None:
    import os

    assert m1_memory.rss_bytes(os.getpid()) > 1 * 2**20
    with pytest.raises(OSError):
        m1_memory.rss_bytes(2**22 + 12345)
