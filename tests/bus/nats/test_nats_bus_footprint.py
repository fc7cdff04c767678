"""What an idle NatsBus holds, where a small change can double it (issue #17)."""

from __future__ import annotations

from natsbus.bus.nats import NatsBus


def test_a_bus_keeps_fewer_attributes_than_cpython_shares_keys_for() -> None:
    # From the 30th attribute on, CPython gives every instance a dict of its own (~1.6 KiB
    # instead of ~0.3): fold a new attribute into an existing one rather than cross the line.
    buses = [NatsBus(servers="nats://127.0.0.1:1", channel=f"c{i}") for i in range(3)]
    assert all(len(vars(bus)) < 30 for bus in buses)
