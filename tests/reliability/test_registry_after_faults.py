"""The in-memory index of registered works equals the database after faults: a transaction that verified
works and then failed, and a process killed while its verification was not yet committed.

The index decides what the gate protects: a work missing from it can be uploaded by anyone as their
own (the mimic failure mode), a stale one blocks its real owner.
"""

from __future__ import annotations

import signal

import pytest

from mimicsafe import portfolio
from mimicsafe.context import Instance
from mimicsafe.registry import Registry
from tests.reliability.helpers import (
    indexed_portfolio,
    make_people,
    start_child,
    submit_portfolio,
    verified_in_database,
    work,
)


class ConnectionDropped(Exception):
    """Stands for whatever fails after the service call and before COMMIT (network, disk, a bug)."""


@pytest.fixture
def bob_pending(instance: Instance) -> list[int]:
    make_people(instance, {"bob": "artist", "root": "admin"})
    return submit_portfolio(instance, "bob", [work(2, 0), work(2, 1)])


def _agree(instance: Instance, registry: Registry) -> set[tuple[str, str]]:
    """Assert that `registry`, a registry rebuilt from scratch and the database agree; return that view."""
    in_database = verified_in_database(instance)
    assert indexed_portfolio(instance, registry) == in_database
    assert indexed_portfolio(instance, Registry(instance.settings)) == in_database
    return in_database


def test_a_rolled_back_verification_leaves_the_index_equal_to_the_database(
        instance: Instance, bob_pending: list[int]) -> None:
    registry = instance.registry
    assert _agree(instance, registry) == set()
    # Verifying two works searches the index between them, inside the transaction: the index sees the
    # first, uncommitted verification. Then the transaction fails and is rolled back.
    with pytest.raises(ConnectionDropped), instance.transaction() as session:
        verified, _ = portfolio.verify_items(session=session, registry=registry, username="bob", admin="root")
        assert len(verified) == 2
        raise ConnectionDropped
    assert _agree(instance, registry) == set()

    # The next verification reuses the audit sequence numbers of the rolled-back one.
    with instance.transaction() as session:
        portfolio.verify_items(session=session, registry=registry, username="bob", admin="root",
                               item_ids=bob_pending[1:])
    assert len(_agree(instance, registry)) == 1


def test_a_process_killed_before_commit_leaves_the_index_equal_to_the_database(
        instance: Instance, bob_pending: list[int]) -> None:
    registry = instance.registry  # long-lived, like a server's
    assert _agree(instance, registry) == set()
    child = start_child(instance, (
        "import sys\nfrom mimicsafe import portfolio\n"
        "with inst.transaction() as s:\n"
        "    verified, _ = portfolio.verify_items(session=s, registry=inst.registry, username='bob', admin='root')\n"
        "    print(len(verified), flush=True)\n"
        "    sys.stdin.readline()\n"  # holds the transaction open until it is killed
    ))
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == "2", child.stderr.read() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert _agree(instance, registry) == set()

    with instance.transaction() as session:
        portfolio.verify_items(session=session, registry=registry, username="bob", admin="root")
    assert len(_agree(instance, registry)) == 2
