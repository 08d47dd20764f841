"""The Store's aggregation contract (issue 12, item 6): the same tests with exact numbers on
every backend (`store` fixture: SQLite in memory, SQLite file, the real osmem-server)."""

from __future__ import annotations

from typing import Any

import pytest

from crm_templates import CrmValidationError
from crm_templates.ids import new_id, utc_now
from crm_templates.model import Entry
from crm_templates.storage.aggregations import Aggregation, Bucket, Metric


def entry(entity: str = "deals", ref: str = "cus_1", **values: Any) -> Entry:
    now = utc_now()
    return Entry(
        id=new_id(),
        entity=entity,
        reference_type="customer",
        reference_id=ref,
        values=values,
        created_at=now,
        updated_at=now,
    )


@pytest.fixture
def seeded(store: Any) -> Any:
    """Six deals of two customers (one deleted afterwards) and a decoy entity."""
    deals = [
        entry(ref="cus_ann", amount=5.0, stage="new", tags=["a", "b"], ok=True,
              when="2026-01-31", at="2026-01-31T23:59:59.999999Z"),
        entry(ref="cus_ann", amount=12.5, stage="won", tags=["a"], ok=False,
              when="2026-02-01", at="2026-02-01T00:00:00Z"),
        entry(ref="cus_bob", amount=-2.5, stage="new", tags=[], ok=True,
              when="2026-02-02", at="2026-02-09T10:00:00.5Z"),
        entry(ref="cus_bob", amount=None, stage=None, ok=None, when=None),
        entry(ref="cus_bob", note="nothing else"),
        # Other shapes under the keys: not numbers / terms / dates of the aggregated kind.
        entry(ref="cus_bob", amount="7", stage=3, ok="true", when="2026-02-30",
              at="yesterday", tags={"a": 1}),
    ]  # fmt: skip
    gone = entry(ref="cus_ann", amount=1000.0, stage="lost", tags=["a"], ok=True,
                 when="2026-01-01")  # fmt: skip
    decoy = entry(entity="other", amount=1e6, stage="new", tags=["a"], ok=True, when="2026-01-31")
    store.insert_entries([*deals, gone, decoy])
    assert store.delete_entry(gone.id)
    return store


def one(store: Any, request: Aggregation) -> Any:
    (result,) = store.aggregate("deals", [request])
    assert result.request == request
    assert result.entries == 6
    return result


def test_metric_counts_only_numbers_of_current_entries_of_the_entity(seeded: Any) -> None:
    result = one(seeded, Aggregation("metric", "amount"))
    assert result.metric == Metric(count=3, sum=15.0, avg=5.0, min=-2.5, max=12.5)
    assert result.missing == 3  # null, absent, a string


def test_metric_over_no_numbers(seeded: Any) -> None:
    result = one(seeded, Aggregation("metric", "note"))
    assert result.metric == Metric(count=0, sum=None, avg=None, min=None, max=None)
    assert result.missing == 6


def test_terms_of_a_select_and_of_a_multiselect(seeded: Any) -> None:
    stage = one(seeded, Aggregation("terms", "stage"))
    assert stage.buckets == (Bucket("new", 2), Bucket("won", 1))
    assert (stage.missing, stage.other) == (3, 0)
    # A multiselect: an entry counts once in each option it holds; [] and an object are missing.
    tags = one(seeded, Aggregation("terms", "tags"))
    assert tags.buckets == (Bucket("a", 2), Bucket("b", 1))
    assert tags.missing == 4


def test_terms_size_and_other(seeded: Any) -> None:
    tags = one(seeded, Aggregation("terms", "tags", size=1))
    assert tags.buckets == (Bucket("a", 2),)
    assert tags.other == 1


def test_terms_of_a_boolean(seeded: Any) -> None:
    ok = one(seeded, Aggregation("terms", "ok", value_type="boolean"))
    assert ok.buckets == (Bucket(True, 2), Bucket(False, 1))
    assert ok.missing == 3


def test_terms_ties_are_ordered_by_key(store: Any) -> None:
    store.insert_entries([entry(stage=s) for s in ("b", "a", "c", "a", "b")])
    (result,) = store.aggregate("deals", [Aggregation("terms", "stage")])
    assert result.buckets == (Bucket("a", 2), Bucket("b", 2), Bucket("c", 1))


def test_histogram_buckets_by_interval_including_negatives(seeded: Any) -> None:
    result = one(seeded, Aggregation("histogram", "amount", interval=5))
    assert result.buckets == (Bucket(-5.0, 1), Bucket(5.0, 1), Bucket(10.0, 1))
    assert result.missing == 3
    fine = one(seeded, Aggregation("histogram", "amount", interval=2.5))
    assert fine.buckets == (Bucket(-2.5, 1), Bucket(5.0, 1), Bucket(12.5, 1))


@pytest.mark.parametrize(
    ("interval", "key", "expected"),
    [
        ("day", "when", [("2026-01-31", 1), ("2026-02-01", 1), ("2026-02-02", 1)]),
        ("week", "when", [("2026-01-26", 2), ("2026-02-02", 1)]),
        ("month", "when", [("2026-01-01", 1), ("2026-02-01", 2)]),
        ("day", "at", [("2026-01-31", 1), ("2026-02-01", 1), ("2026-02-09", 1)]),
        ("week", "at", [("2026-01-26", 2), ("2026-02-09", 1)]),
        ("month", "at", [("2026-01-01", 1), ("2026-02-01", 2)]),
    ],
)
def test_date_histogram_across_a_month_boundary(
    seeded: Any, interval: str, key: str, expected: list[tuple[str, int]]
) -> None:
    result = one(seeded, Aggregation("date_histogram", key, interval=interval))
    assert result.buckets == tuple(Bucket(day, n) for day, n in expected)
    assert result.missing == 3  # null / absent / not a real date


def test_many_requests_in_one_call_keep_their_order(seeded: Any) -> None:
    requests = [
        Aggregation("terms", "stage"),
        Aggregation("metric", "amount"),
        Aggregation("date_histogram", "when", interval="month"),
    ]
    results = seeded.aggregate("deals", requests)
    assert [r.request for r in results] == requests
    assert results[1].metric.sum == 15.0


def test_an_unknown_entity_has_nothing(store: Any) -> None:
    store.insert_entries([entry(amount=1.0)])
    (result,) = store.aggregate("nope", [Aggregation("metric", "amount")])
    assert (result.entries, result.missing, result.metric.count) == (0, 0, 0)
    assert store.aggregate("deals", []) == []


def test_each_customer_counts_in_the_entity_totals_but_other_entities_never(store: Any) -> None:
    store.insert_entries(
        [entry(ref="cus_ann", amount=1.0), entry(ref="cus_bob", amount=2.0),
         entry(entity="notes", ref="cus_ann", amount=100.0)]
    )  # fmt: skip
    (deals,) = store.aggregate("deals", [Aggregation("metric", "amount")])
    (notes,) = store.aggregate("notes", [Aggregation("metric", "amount")])
    assert (deals.metric.sum, notes.metric.sum) == (3.0, 100.0)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (Aggregation("median", "amount"), "kind"),  # type: ignore[arg-type]
        (Aggregation("metric", "bad key!"), "field key"),
        (Aggregation("histogram", "amount"), "interval"),
        (Aggregation("histogram", "amount", interval=0), "interval"),
        (Aggregation("histogram", "amount", interval=float("nan")), "interval"),
        (Aggregation("date_histogram", "when", interval="year"), "interval"),
        (Aggregation("terms", "stage", size=0), "size"),
        (Aggregation("terms", "stage", value_type="number"), "value_type"),  # type: ignore[arg-type]
    ],
)
def test_bad_requests_are_refused_before_querying(
    store: Any, request_: Aggregation, message: str
) -> None:
    with pytest.raises(CrmValidationError, match=message):
        store.aggregate("deals", [Aggregation("metric", "amount"), request_])


def test_list_values_count_every_number_but_each_entry_once_per_bucket(store: Any) -> None:
    store.insert_entries(
        [entry(nums=[1, 2, 2, 7], tags=["a", "a", "b"]), entry(nums=3.5, tags="a"),
         entry(nums=[[4]], tags=[["a"]]), entry(nums={"x": 1}, tags={"a": "a"})]
    )  # fmt: skip
    metric, histogram, terms = store.aggregate(
        "deals",
        [Aggregation("metric", "nums"), Aggregation("histogram", "nums", interval=5),
         Aggregation("terms", "tags")],
    )  # fmt: skip
    assert metric.metric == Metric(count=5, sum=15.5, avg=3.1, min=1.0, max=7.0)
    assert metric.missing == 2  # a nested list and an object hold no number
    assert histogram.buckets == (Bucket(0.0, 2), Bucket(5.0, 1))
    assert terms.buckets == (Bucket("a", 2), Bucket("b", 1))
    assert terms.missing == 2


def test_an_entries_index_from_before_the_date_sub_field_gains_it(
    search_store_factory: Any,
) -> None:
    """A cluster whose entries index was created without ``kv.s.date`` (an earlier version):
    the first date aggregation adds the sub-field and re-indexes, then counts the old entries."""
    import copy
    import uuid

    from crm_templates.storage import elasticsearch as es

    prefix = f"t{uuid.uuid4().hex[:12]}_"
    old = copy.deepcopy(es._MAPPINGS["entries"])
    old["properties"]["kv"]["properties"]["s"] = {"type": "keyword", "ignore_above": 1024}
    first = search_store_factory(prefix=prefix)
    first.client.indices.delete(index=first._entries)
    first.client.indices.create(index=first._entries, mappings=old)
    first.insert_entries([entry(when="2026-01-31"), entry(when="2026-02-01T10:00:00Z")])
    store = search_store_factory(prefix=prefix)  # opens the existing index as it is
    (result,) = store.aggregate("deals", [Aggregation("date_histogram", "when", interval="month")])
    fields = store.client.indices.get_mapping(index=store._entries).body[store._entries][
        "mappings"
    ]["properties"]["kv"]["properties"]["s"]["fields"]
    assert fields["date"]["type"] == "date"
    store.client.indices.refresh(index=store._entries)
    (result,) = store.aggregate("deals", [Aggregation("date_histogram", "when", interval="month")])
    assert result.buckets == (Bucket("2026-01-01", 1), Bucket("2026-02-01", 1))
