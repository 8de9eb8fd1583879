import dataclasses

import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.system import topology
from openlpu.system.netexec import ScheduleViolation, execute
from openlpu.system.schedule import Transfer, schedule

RACK = topology.build(chips=72)


@pytest.fixture(scope="module")
def traffic():
    rng = np.random.default_rng(7)
    transfers = [Transfer(0, 71, 20_000), Transfer(5, 60, 999, earliest=300), Transfer(60, 5, 64),
                 Transfer(13, 14, 0)]
    payloads = {t: rng.integers(0, 256, tr.nbytes, dtype=np.uint8) for t, tr in enumerate(transfers)}
    return transfers, payloads, schedule(RACK, transfers)


def test_every_byte_arrives_where_it_was_sent(traffic):
    transfers, payloads, sched = traffic
    assert sched.hop_link.size > sched.flits  # some flits cross several links
    run = execute(sched, payloads)
    assert run.ok and run.hops == len(sched.hop_flit)
    for t in range(len(transfers)):
        assert np.array_equal(run.received[t], payloads[t])
    assert set(run.by_chip(5)) == {2} and np.array_equal(run.by_chip(5)[2], payloads[2])


def test_payloads_of_any_dtype_travel_as_bytes():
    sched = schedule(RACK, [Transfer(3, 40, 4000)])
    values = np.linspace(-1, 1, 1000, dtype=np.float32)
    got = execute(sched, {0: values}).received[0].view(np.float32)
    assert np.array_equal(got, values)
    with pytest.raises(UserError, match="has 3996 bytes, but 4000 were scheduled"):
        execute(sched, {0: values[:-1]})


def _tampered(sched, **arrays):
    return dataclasses.replace(sched, **{k: v.copy() for k, v in arrays.items()})


def test_a_flit_sent_before_it_arrived_is_refused(traffic):
    _, payloads, sched = traffic
    multi = np.flatnonzero(sched.hop_index == 1)[0]
    slots = sched.hop_slot.copy()
    prev = np.flatnonzero((sched.hop_flit == sched.hop_flit[multi]) & (sched.hop_index == 0))[0]
    slots[multi] = slots[prev] + 1  # one slot after it left the previous chip: still on the wire
    with pytest.raises(ScheduleViolation, match="can only leave at cycle"):
        execute(_tampered(sched, hop_slot=slots), payloads)


def test_two_flits_in_one_slot_are_refused(traffic):
    _, payloads, sched = traffic
    slots = sched.hop_slot.copy()
    first = np.flatnonzero(sched.hop_flit == 0)[0]
    same_link = np.flatnonzero(sched.hop_channel == sched.hop_channel[first])
    slots[same_link[1]] = slots[same_link[0]]
    with pytest.raises(ScheduleViolation, match="both use slot"):
        execute(_tampered(sched, hop_slot=slots), payloads)


def test_an_arrival_the_receiver_was_not_told_is_refused(traffic):
    _, payloads, sched = traffic
    arrival = sched.flit_arrival.copy()
    arrival[3] += 1
    with pytest.raises(ScheduleViolation, match="the schedule told the receiving program"):
        execute(_tampered(sched, flit_arrival=arrival), payloads)


def test_a_dead_link_is_detected_by_the_chip_expecting_its_flits(traffic):
    transfers, payloads, sched = traffic
    hop = np.flatnonzero(sched.flit_transfer[sched.hop_flit] == 0)[0]  # the first hop of transfer 0
    link = int(sched.hop_link[hop])
    run = execute(sched, payloads, failed_links=[link])
    assert not run.ok
    lost_here = np.flatnonzero(sched.hop_link == link)
    earliest = lost_here[np.argmin(sched.hop_arrive[lost_here])]
    first = run.detections[0]
    assert (first.link, first.cycle, first.chip) == (link, sched.hop_arrive[earliest], sched.hop_to[earliest])
    gone = run.missing[0]
    on_that_route = sched.flit_route[sched.flit_base[0]:sched.flit_base[1]] == sched.flit_route[sched.hop_flit[hop]]
    assert np.array_equal(gone, np.flatnonzero(on_that_route))

    def vectors(data):
        return np.pad(data, (0, -len(data) % 320)).reshape(-1, 320)

    got, sent = vectors(run.received[0]), vectors(payloads[0])
    assert np.array_equal(got[~on_that_route], sent[~on_that_route])
    assert not got[on_that_route].any()
    for t in (1, 2, 3):
        if not len(run.missing[t]):
            assert np.array_equal(run.received[t], payloads[t])
